#pragma once
// Helpers for the dkim tests: test data paths, temp dirs, files, processes.
#include <string>
#include <string_view>
#include <vector>

#include "dkim/key_store.h"
#include "tests/support/files.h"

namespace salvo::dkim::testing {

// tests/data/dkim/<rel>
std::string DataPath(std::string_view rel);
std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, std::string_view data, int mode = 0600);

// A fresh directory under /tmp (tests/support), with File(name).
class TempDir : public testsupport::TempDir {
 public:
  TempDir() : testsupport::TempDir("salvo-dkim-test") {}
  std::string File(std::string_view name) const { return *this / std::string(name); }
};

// Loads a key from test data (ignores file permissions: git does not keep 0600).
DkimKey LoadTestKey(std::string_view rel, std::string_view domain, std::string_view selector);

struct ProcessResult {
  int exit_code = -1;  // -1: did not exit normally (killed by the timeout)
  std::string out;     // stdout
  std::string err;     // stderr
};
// Runs argv with `input` on stdin; kills it after timeout_ms.
ProcessResult RunProcess(const std::vector<std::string>& argv, std::string_view input = "",
                         int timeout_ms = 60000);

}  // namespace salvo::dkim::testing
