#include "tests/dkim/test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace salvo::dkim::testing {

std::string DataPath(std::string_view rel) {
  return std::string(SALVO_SOURCE_DIR) + "/tests/data/dkim/" + std::string(rel);
}

std::string ReadFileOrDie(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  return testsupport::ReadFile(path);
}

void WriteFileOrDie(const std::string& path, std::string_view data, int mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) ADD_FAILURE() << "cannot write " << path;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

DkimKey LoadTestKey(std::string_view rel, std::string_view domain, std::string_view selector) {
  KeySpec spec{std::string(domain), std::string(selector), "", KeyType::kAuto};
  auto key = ParseKey(ReadFileOrDie(DataPath(rel)), spec, rel);
  if (!key.ok()) {
    ADD_FAILURE() << key.status();
    return DkimKey{};
  }
  return *std::move(key);
}

ProcessResult RunProcess(const std::vector<std::string>& argv, std::string_view input,
                         int timeout_ms) {
  testsupport::RunResult r =
      testsupport::RunWithInput(argv, std::string(input), std::chrono::milliseconds(timeout_ms));
  if (r.code == -1) ADD_FAILURE() << argv[0] << " timed out after " << timeout_ms << " ms";
  ProcessResult result;
  result.exit_code = r.code >= 128 ? -1 : r.code;
  result.out = std::move(r.out);
  result.err = std::move(r.err);
  return result;
}

}  // namespace salvo::dkim::testing
