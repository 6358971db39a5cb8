#pragma once
// Debian's abseil is built with its own absl::string_view (not an alias of
// std::string_view), so absl::StrCat/StrSplit do not take std::string_view.
// The dns API speaks std::string_view; these convert at the seams.
#include <string_view>

#include "absl/strings/string_view.h"

namespace salvo::dns {

inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view Sv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace salvo::dns
