#pragma once
// String helpers for every folder of Salvo, on std::string_view.
//
// Debian's abseil (20220623) is built with its own absl::string_view (not an
// alias of std::string_view), so absl::StrCat, StrSplit and friends do not
// take std::string_view. `Av`/`Sv` convert at the seams; `Cat`/`Append`
// concatenate strings, views (either kind), characters, integers and
// floating-point numbers. They live in namespace salvo so that code in any
// salvo:: namespace calls them unqualified.
#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace salvo {

inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view Sv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

namespace strings_internal {
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
template <typename T>
requires(std::is_floating_point_v<T>) inline void AppendPiece(std::string* s, T v) {
  absl::StrAppend(s, v);  // %g, six significant digits, as absl::StrCat
}
}  // namespace strings_internal

// Appends every argument to *s.
template <typename... A>
void Append(std::string* s, const A&... a) {
  (strings_internal::AppendPiece(s, a), ...);
}

// Concatenates every argument.
template <typename... A>
std::string Cat(const A&... a) {
  std::string s;
  (strings_internal::AppendPiece(&s, a), ...);
  return s;
}

inline char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline std::string AsciiLower(std::string_view in) {
  std::string s(in);
  for (char& c : s) c = AsciiLower(c);
  return s;
}

inline std::string AsciiUpper(std::string_view in) {
  std::string s(in);
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

// Without leading and trailing spaces, tabs, CR and LF (and VT, FF).
inline std::string_view StripWhitespace(std::string_view s) {
  return Sv(absl::StripAsciiWhitespace(Av(s)));
}

// Every piece between `sep`s (n separators give n + 1 pieces, empty ones kept).
inline std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

template <typename Range>
std::string Join(const Range& parts, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& p : parts) {
    if (!first) out.append(sep);
    first = false;
    out.append(p);
  }
  return out;
}

// Text from data (addresses, campaign names, peers' replies) for a human on a
// terminal: C0 controls (ESC, CR, LF, TAB, ...), DEL and C1 controls (U+0080..
// U+009F, which some terminals act on as CSI, NEL, ...) become \xNN for each
// of their bytes, and so does every byte that is not part of valid UTF-8; valid
// UTF-8 text passes unchanged. So data cannot move the cursor, clear the
// screen or forge an earlier line (issue 16 item 5). Not for JSON output,
// which escapes controls itself.
inline std::string EscapeControls(std::string_view in) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(in.size());
  auto escape = [&out](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  auto byte = [&in](size_t i) { return static_cast<unsigned char>(in[i]); };
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f)
        escape(c);
      else
        out += static_cast<char>(c);
      ++i;
      continue;
    }
    // The length of a well-formed UTF-8 sequence starting here, and the range
    // its second byte must fall in (no overlong forms, surrogates or > U+10FFFF).
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    }
    bool valid = len != 0 && i + len <= in.size() && byte(i + 1) >= lo && byte(i + 1) <= hi;
    for (size_t k = 2; valid && k < len; ++k) valid = byte(i + k) >= 0x80 && byte(i + k) <= 0xbf;
    if (!valid) {
      escape(c);
      ++i;
      continue;
    }
    if (c == 0xc2 && byte(i + 1) <= 0x9f) {  // U+0080..U+009F: a C1 control
      escape(c);
      escape(byte(i + 1));
    } else {
      out.append(in.substr(i, len));
    }
    i += len;
  }
  return out;
}

}  // namespace salvo
