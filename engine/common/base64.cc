#include "engine/common/base64.h"

#include "absl/strings/escaping.h"
#include "engine/common/strings.h"

namespace salvo {

std::string Base64Encode(std::string_view data) { return absl::Base64Escape(Av(data)); }

std::string Base64UrlEncode(std::string_view data) { return absl::WebSafeBase64Escape(Av(data)); }

bool Base64Decode(std::string_view in, std::string* out) {
  std::string compact;
  compact.reserve(in.size());
  for (char c : in) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '-' || c == '_') return false;  // the URL-safe alphabet is not accepted here
    compact.push_back(c);
  }
  out->clear();
  return absl::Base64Unescape(compact, out);
}

}  // namespace salvo
