#pragma once
// Helpers shared by the queue tests: temp dirs, files, a logical dump of the
// spool's RocksDB (to prove "the database is unchanged").
#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace salvo::queue::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes `content` to path()/name and returns the full path.
  std::string Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// Every key/value of every column family of the (closed) spool at `dir`.
using Dump = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;
Dump DumpSpool(const std::string& dir);

std::string ReadFile(const std::string& path);

// Runs a command with /bin/sh, capturing stdout and stderr separately.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult Run(const std::string& command, int timeout_seconds = 120);

// A child process (argv[0] is a path), stdout+stderr to a file. Killed with
// SIGKILL on destruction if still running.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path);
  ~Child();
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits up to `seconds`; returns the exit status (as from waitpid) or -1 on timeout.
  int Wait(double seconds);
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

}  // namespace salvo::queue::testing
