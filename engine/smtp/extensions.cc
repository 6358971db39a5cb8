#include "engine/smtp/extensions.h"

#include <vector>

#include "engine/common/strings.h"

namespace salvo::smtp {
namespace {

std::vector<std::string_view> Split(std::string_view s, std::string_view seps, bool skip_empty) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || seps.find(s[i]) != std::string_view::npos) {
      if (!skip_empty || i > start) out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

Extensions Extensions::Parse(const Reply& ehlo_reply) {
  Extensions ext;
  ext.esmtp = true;
  bool first = true;
  for (std::string_view line : Split(ehlo_reply.text, "\n", false)) {
    std::vector<std::string_view> words = Split(line, " \t=\r", true);
    if (first) {
      first = false;
      if (!words.empty()) ext.server_name.assign(words[0]);
      continue;
    }
    if (words.empty()) continue;
    std::string kw = AsciiUpper(words[0]);
    if (kw == "PIPELINING") {
      ext.pipelining = true;
    } else if (kw == "SIZE") {
      ext.size = true;
      uint64_t n = 0;
      if (words.size() > 1 && ParseU64(words[1], &n)) ext.max_size = n;
    } else if (kw == "8BITMIME") {
      ext.eight_bit_mime = true;
    } else if (kw == "SMTPUTF8") {
      ext.smtputf8 = true;
    } else if (kw == "STARTTLS") {
      ext.starttls = true;
    } else if (kw == "ENHANCEDSTATUSCODES") {
      ext.enhanced_status_codes = true;
    } else if (kw == "CHUNKING") {
      ext.chunking = true;
    } else if (kw == "DSN") {
      ext.dsn = true;
    } else if (kw == "AUTH") {
      ext.auth = true;
      for (size_t i = 1; i < words.size(); ++i) {
        std::string mech = AsciiUpper(words[i]);
        if (mech == "PLAIN") ext.auth_plain = true;
        if (mech == "LOGIN") ext.auth_login = true;
      }
    }
  }
  return ext;
}

}  // namespace salvo::smtp
