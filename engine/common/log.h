#pragma once
// Minimal logging: one line per event on stderr, "LEVEL file:line message".
// Debian's abseil (20220623) predates absl/log, so this is our own small layer.
#include <fmt/format.h>

#include <string_view>

namespace salvo {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug|info|warning|error|off"; returns false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* out);
void LogLine(LogLevel level, const char* file, int line, std::string_view message);
// Prints "FATAL file:line: invariant violated: what" and aborts.
[[noreturn]] void CheckFailed(const char* file, int line, std::string_view what);

}  // namespace salvo

#define SALVO_LOG(level, ...)                                                                     \
  do {                                                                                            \
    if (::salvo::LogLevel::level >= ::salvo::GetLogLevel())                                       \
      ::salvo::LogLine(::salvo::LogLevel::level, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)

// A broken invariant: crash deliberately, naming the invariant.
#define SALVO_CHECK(cond)                                         \
  do {                                                            \
    if (!(cond)) ::salvo::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)
