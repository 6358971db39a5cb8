#pragma once
// Small string helpers for engine/smtp. Debian's abseil 20220623 is built with
// its own absl::string_view (not std::string_view), so absl::StrCat & co. do
// not take std::string_view; these do.
#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/string_view.h"

namespace salvo::smtp::internal {

inline void AppendPiece(std::string* s, std::string_view v) { s->append(v); }
inline void AppendPiece(std::string* s, const char* v) { s->append(v); }
inline void AppendPiece(std::string* s, const std::string& v) { s->append(v); }
inline void AppendPiece(std::string* s, absl::string_view v) { s->append(v.data(), v.size()); }
inline void AppendPiece(std::string* s, char c) { s->push_back(c); }
template <typename T>
requires(std::is_integral_v<T> && !std::is_same_v<T, char> &&
         !std::is_same_v<T, bool>) inline void AppendPiece(std::string* s, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  s->append(buf, r.ptr);
}

template <typename... A>
void Append(std::string* s, const A&... a) {
  (AppendPiece(s, a), ...);
}

template <typename... A>
std::string Cat(const A&... a) {
  std::string s;
  (AppendPiece(&s, a), ...);
  return s;
}

inline std::string AsciiLower(std::string_view in) {
  std::string s(in);
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

inline std::string AsciiUpper(std::string_view in) {
  std::string s(in);
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

}  // namespace salvo::smtp::internal
