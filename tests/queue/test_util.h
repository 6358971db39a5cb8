#pragma once
// Helpers shared by the queue tests: temp dirs, files, a logical dump of the
// spool's RocksDB (to prove "the database is unchanged").
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

}  // namespace salvo::queue::testing
