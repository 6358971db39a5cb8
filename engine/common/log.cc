#include "engine/common/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace salvo {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kOff:
      return "OFF";
  }
  return "?";
}
const char* Basename(const char* path) {
  const char* slash = path;
  for (const char* p = path; *p; ++p)
    if (*p == '/') slash = p + 1;
  return slash;
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  if (text == "debug")
    *out = LogLevel::kDebug;
  else if (text == "info")
    *out = LogLevel::kInfo;
  else if (text == "warning" || text == "warn")
    *out = LogLevel::kWarning;
  else if (text == "error")
    *out = LogLevel::kError;
  else if (text == "off")
    *out = LogLevel::kOff;
  else
    return false;
  return true;
}

void LogLine(LogLevel level, const char* file, int line, std::string_view message) {
  // One write per line so lines from different shards never interleave.
  std::string out = fmt::format("{} {}:{} {}\n", LevelName(level), Basename(file), line, message);
  std::fwrite(out.data(), 1, out.size(), stderr);
}

void CheckFailed(const char* file, int line, std::string_view what) {
  std::string out =
      fmt::format("FATAL {}:{}: invariant violated: {}\n", Basename(file), line, what);
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::abort();
}

}  // namespace salvo
