#include "queue/address.h"
#include "engine/common/strings.h"

#include <arpa/inet.h>
#include <idn2.h>

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace salvo::queue {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

namespace {

bool IsAtext(unsigned char c) {
  if (c >= 0x80) return true;  // RFC 6531: UTF-8 allowed (validated separately)
  if (absl::ascii_isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

absl::Status CheckLocal(std::string_view local) {
  if (local.empty()) return absl::InvalidArgumentError("empty local part");
  if (local.size() > 64) return absl::InvalidArgumentError("local part longer than 64 octets");
  if (local.front() == '"') {
    // Quoted-string: DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE
    if (local.size() < 2 || local.back() != '"')
      return absl::InvalidArgumentError("unterminated quoted local part");
    for (size_t i = 1; i + 1 < local.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(local[i]);
      if (c == '\\') {
        if (i + 2 >= local.size()) return absl::InvalidArgumentError("bad quoted-pair");
        unsigned char q = static_cast<unsigned char>(local[++i]);
        if (q < 32 || q > 126) return absl::InvalidArgumentError("bad quoted-pair");
        continue;
      }
      if (c == '"') return absl::InvalidArgumentError("bare quote inside quoted local part");
      if (c < 32 || c == 127) return absl::InvalidArgumentError("control character in local part");
    }
    return absl::OkStatus();
  }
  // Dot-string = Atom *("." Atom)
  bool prev_dot = true;
  for (unsigned char c : local) {
    if (c == '.') {
      if (prev_dot)
        return absl::InvalidArgumentError("empty atom in local part ('..' or leading dot)");
      prev_dot = true;
      continue;
    }
    if (!IsAtext(c)) {
      return absl::InvalidArgumentError(
          c < 32 || c == 127 ? std::string("control character in local part")
                             : Cat("character '", std::string(1, static_cast<char>(c)),
                                   "' not allowed in local part"));
    }
    prev_dot = false;
  }
  if (prev_dot) return absl::InvalidArgumentError("local part ends with a dot");
  return absl::OkStatus();
}

absl::Status CheckDomain(std::string_view domain) {
  if (domain.empty()) return absl::InvalidArgumentError("empty domain");
  if (domain.front() == '[') {
    if (domain.back() != ']') return absl::InvalidArgumentError("unterminated address literal");
    std::string inner(domain.substr(1, domain.size() - 2));
    unsigned char buf[16];
    if (inner.rfind("IPv6:", 0) == 0) {
      if (inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1) return absl::OkStatus();
      return absl::InvalidArgumentError("bad IPv6 address literal");
    }
    if (inet_pton(AF_INET, inner.c_str(), buf) == 1) return absl::OkStatus();
    return absl::InvalidArgumentError("bad address literal");
  }
  if (domain.size() > 255) return absl::InvalidArgumentError("domain longer than 255 octets");
  size_t labels = 0;
  size_t start = 0;
  while (start <= domain.size()) {
    size_t end = domain.find('.', start);
    if (end == std::string_view::npos) end = domain.size();
    std::string_view label = domain.substr(start, end - start);
    if (label.empty()) return absl::InvalidArgumentError("empty label in domain");
    if (label.size() > 63) return absl::InvalidArgumentError("domain label longer than 63 octets");
    if (label.front() == '-' || label.back() == '-')
      return absl::InvalidArgumentError("domain label starts or ends with '-'");
    for (unsigned char c : label) {
      if (c >= 0x80) continue;  // U-label (IDN); UTF-8 validity checked by the caller
      if (!absl::ascii_isalnum(c) && c != '-')
        return absl::InvalidArgumentError(
            Cat("character '", std::string(1, static_cast<char>(c)), "' not allowed in domain"));
    }
    ++labels;
    start = end + 1;
    if (end == domain.size()) break;
  }
  if (labels < 2) return absl::InvalidArgumentError("domain has no dot (not a public domain)");
  return absl::OkStatus();
}

// A domain with U-labels becomes its A-label form (IDNA2008 with the UTS #46
// mapping, so "Bücher.Example" and "bücher.example" are one domain).
absl::Status ToALabels(std::string* domain) {
  bool ascii = true;
  for (unsigned char c : *domain) ascii &= c < 0x80;
  if (ascii || domain->front() == '[') return absl::OkStatus();
  char* out = nullptr;
  int rc = idn2_to_ascii_8z(domain->c_str(), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  if (rc != IDN2_OK) {
    return absl::InvalidArgumentError(
        Cat("internationalised domain is not valid IDNA2008: ", idn2_strerror(rc)));
  }
  domain->assign(out);
  idn2_free(out);
  return CheckDomain(*domain);  // the A-label form obeys the same length rules
}

}  // namespace

std::string Address::Key(bool case_sensitive_local) const {
  return (case_sensitive_local ? local : AsciiLower(local)) + "@" + domain;
}

std::string MailboxKey(std::string_view mailbox) {
  const size_t at = mailbox.rfind('@');
  if (at == std::string_view::npos) return std::string(mailbox);
  return AsciiLower(mailbox.substr(0, at)) + std::string(mailbox.substr(at));
}

absl::StatusOr<Address> ParseAddress(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty()) return absl::InvalidArgumentError("empty address");
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("not valid UTF-8");
  if (text.size() > 254) return absl::InvalidArgumentError("address longer than 254 octets");
  size_t at = text.rfind('@');
  if (at == std::string_view::npos) return absl::InvalidArgumentError("no '@'");
  Address a;
  a.local = std::string(text.substr(0, at));
  std::string_view domain = text.substr(at + 1);
  if (a.local.front() != '"' && a.local.find('@') != std::string::npos)
    return absl::InvalidArgumentError("more than one '@'");
  if (absl::Status s = CheckLocal(a.local); !s.ok()) return s;
  if (absl::Status s = CheckDomain(domain); !s.ok()) return s;
  a.domain = AsciiLower(domain);
  if (absl::Status s = ToALabels(&a.domain); !s.ok()) return s;
  return a;
}

}  // namespace salvo::queue
