#pragma once
// Base64 (RFC 4648) on std::string_view, over abseil's codec.
#include <string>
#include <string_view>

namespace salvo {

// Standard alphabet, padded, no line breaks (DKIM b=, bh=, p=; MIME parts
// wrap it themselves).
std::string Base64Encode(std::string_view data);
// URL-safe alphabet (section 5), no padding (tokens in URLs).
std::string Base64UrlEncode(std::string_view data);
// Standard alphabet; spaces, tabs, CR and LF anywhere are ignored (DKIM tag
// values are folded); padding optional. False on any other character.
bool Base64Decode(std::string_view in, std::string* out);

}  // namespace salvo
