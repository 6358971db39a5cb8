#pragma once
// Debian's abseil (20220623) is built with its own absl::string_view (not
// std::string_view), so absl string helpers don't take std::string_view.
// These adapters keep queue/ on std::string_view throughout.
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace salvo::queue {

inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view SV(absl::string_view s) { return std::string_view(s.data(), s.size()); }

namespace internal {
template <typename T>
decltype(auto) CatArg(const T& v) {
  if constexpr (std::is_same_v<T, std::string_view>) {
    return AV(v);
  } else {
    return (v);
  }
}
}  // namespace internal

// absl::StrCat that also takes std::string_view.
template <typename... A>
std::string Cat(const A&... a) {
  return absl::StrCat(internal::CatArg(a)...);
}

inline std::string Lower(std::string_view s) { return absl::AsciiStrToLower(AV(s)); }
inline std::string_view Strip(std::string_view s) { return SV(absl::StripAsciiWhitespace(AV(s))); }

}  // namespace salvo::queue
