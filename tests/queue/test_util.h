#pragma once
// Helpers shared by the queue tests: temp dirs, files, a logical dump of the
// spool's RocksDB (to prove "the database is unchanged").
#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace salvo::queue::testing {

// A fresh directory under /tmp (tests/support), with File/Write by name.
class TempDir : public testsupport::TempDir {
 public:
  TempDir() : testsupport::TempDir("salvo-queue-test") {}
  std::string File(const std::string& name) const { return *this / name; }
  // Writes `content` to path()/name and returns the full path.
  std::string Write(const std::string& name, const std::string& content) const {
    testsupport::WriteFile(File(name), content);
    return File(name);
  }
};

// Every key/value of every column family of the (closed) spool at `dir`.
using Dump = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;
Dump DumpSpool(const std::string& dir);

using testsupport::ReadFile;

// Runs a command with /bin/sh, capturing stdout and stderr separately.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult Run(const std::string& command, int timeout_seconds = 120);

// A child process (argv[0] is a path), stdout+stderr to one file; killed
// on destruction if still running (tests/support).
class Child : public testsupport::Process {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path)
      : Process(argv, log_path, log_path) {}
  // Waits up to `seconds`; the exit code, -1 on timeout.
  int Wait(double seconds) {
    return Process::Wait(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  }
};

}  // namespace salvo::queue::testing
