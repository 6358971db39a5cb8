#include "engine/message/verp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/common/strings.h"
#include "engine/message/hmac_sha256.h"

namespace salvo::message {
namespace {

constexpr std::string_view kContext = "salvo-verp-v1";
constexpr size_t kMacBytes = 10;  // 80 bits: 16 base32 characters
constexpr size_t kMacChars = 16;
constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Mac(std::string_view secret, uint64_t campaign, uint64_t recipient,
                std::string_view address) {
  // Per thread: the key schedule is hashed once per secret (not an algorithm
  // fetch and key setup per recipient) and the input buffer is reused.
  thread_local internal::HmacSha256 hmac;
  thread_local std::string data;
  data.assign(kContext);
  data.push_back('\0');
  Append(&data, campaign);
  data.push_back('\0');
  Append(&data, recipient);
  data.push_back('\0');
  for (char c : address) data.push_back(Lower(c));
  unsigned char mac[32];
  if (!hmac.Mac(secret, data, mac)) return std::string();
  static_assert(kMacBytes <= sizeof mac);
  // Base32 of the first 80 bits: 16 groups of 5 bits.
  std::string out;
  out.reserve(kMacChars);
  uint64_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < kMacBytes; ++i) {
    acc = (acc << 8) | mac[i];
    bits += 8;
    while (bits >= 5) {
      out.push_back(kBase32[(acc >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  OPENSSL_cleanse(mac, sizeof mac);
  return out;
}

bool IsAtext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*/=?^_`{|}~-", c) != nullptr && c != '\0';
}

bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return absl::SimpleAtoi(Av(s), out) && *out != 0;
}

std::string Option(const std::map<std::string, std::string>& options, const std::string& key) {
  auto it = options.find(key);
  return it == options.end() ? std::string() : it->second;
}

}  // namespace

absl::Status ValidateVerpDomain(std::string_view domain, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        Cat(what, ": '", domain, "' is not a valid bounce domain (", why, ")"));
  };
  if (domain.empty()) return bad("empty");
  if (domain.size() > 253) return bad("longer than 253 octets");
  size_t labels = 0;
  size_t start = 0;
  while (start <= domain.size()) {
    size_t dot = domain.find('.', start);
    if (dot == std::string_view::npos) dot = domain.size();
    std::string_view label = domain.substr(start, dot - start);
    if (label.empty()) return bad("empty label");
    if (label.size() > 63) return bad("a label longer than 63 octets");
    if (label.front() == '-' || label.back() == '-') return bad("a label starts or ends with '-'");
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
        return bad("letters, digits, '-' and '.' only");
    }
    ++labels;
    start = dot + 1;
  }
  if (labels < 2) return bad("needs at least two labels");
  return absl::OkStatus();
}

absl::Status ValidateVerpPrefix(std::string_view prefix, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        Cat(what, ": '", prefix, "' is not a valid VERP prefix (", why, ")"));
  };
  if (prefix.empty()) return bad("empty");
  if (prefix.size() > 32) return bad("longer than 32 octets");
  if (prefix.front() == '.' || prefix.back() == '.' || prefix.find("..") != std::string_view::npos)
    return bad("a '.' at either end or twice in a row");
  for (char c : prefix) {
    if (c == '+') return bad("'+' separates the prefix from the token");
    if (c != '.' && !IsAtext(c)) return bad("letters, digits and !#$%&'*/=?^_`{|}~-. only");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadVerpSecretFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(Cat(what, ": cannot read '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string secret = ss.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return absl::InvalidArgumentError(Cat(what, ": '", path, "' is empty"));
  return secret;
}

absl::StatusOr<VerpSettings> VerpFromOptions(const std::map<std::string, std::string>& options,
                                             const VerpSettings& global) {
  VerpSettings s = global;
  const std::string mode = Option(options, "verp");
  if (!mode.empty() && mode != "on" && mode != "off")
    return absl::InvalidArgumentError(
        Cat("option verp must be \"on\" or \"off\", got '", mode, "'"));
  if (std::string d = Option(options, "verp_domain"); !d.empty()) {
    if (auto st = ValidateVerpDomain(d, "option verp_domain"); !st.ok()) return st;
    s.domain = d;
  }
  if (std::string p = Option(options, "verp_prefix"); !p.empty()) {
    if (auto st = ValidateVerpPrefix(p, "option verp_prefix"); !st.ok()) return st;
    s.prefix = p;
  }
  if (std::string f = Option(options, "verp_secret_file"); !f.empty()) {
    auto secret = ReadVerpSecretFile(f, "option verp_secret_file");
    if (!secret.ok()) return secret.status();
    s.secret = std::move(*secret);
  }
  if (mode == "off") {
    s.domain.clear();
    return s;
  }
  if (mode == "on" && s.domain.empty())
    return absl::InvalidArgumentError(
        "option verp = \"on\" needs a bounce domain: set verp_domain or [verp] domain in the "
        "configuration");
  if (!s.enabled()) return s;
  if (s.secret.empty()) {
    if (const char* env = std::getenv("SALVO_VERP_SECRET"); env && *env) s.secret = env;
  }
  if (s.secret.empty())
    return absl::InvalidArgumentError(
        "VERP is on (bounce domain " + s.domain +
        ") but there is no HMAC secret: set verp_secret_file, [verp] secret_file or the "
        "SALVO_VERP_SECRET environment variable");
  return s;
}

std::string MakeVerpToken(std::string_view secret, uint64_t campaign, uint64_t recipient,
                          std::string_view address) {
  std::string mac = Mac(secret, campaign, recipient, address);
  if (mac.empty()) return std::string();
  return Cat(campaign, "-", recipient, "-", mac);
}

std::string MakeVerpAddress(const VerpSettings& settings, uint64_t campaign, uint64_t recipient,
                            std::string_view address) {
  std::string token = MakeVerpToken(settings.secret, campaign, recipient, address);
  if (token.empty()) return std::string();
  return Cat(settings.prefix, "+", token, "@", settings.domain);
}

std::optional<VerpToken> ParseVerpAddress(std::string_view address) {
  while (!address.empty() && (address.front() == '<' || address.front() == ' '))
    address.remove_prefix(1);
  while (!address.empty() && (address.back() == '>' || address.back() == ' '))
    address.remove_suffix(1);
  size_t at = address.rfind('@');
  std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  size_t plus = local.rfind('+');
  if (plus == std::string_view::npos) return std::nullopt;
  std::string_view token = local.substr(plus + 1);
  size_t d1 = token.find('-');
  if (d1 == std::string_view::npos) return std::nullopt;
  size_t d2 = token.find('-', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  VerpToken t;
  if (!ParseDecimal(token.substr(0, d1), &t.campaign) ||
      !ParseDecimal(token.substr(d1 + 1, d2 - d1 - 1), &t.recipient))
    return std::nullopt;
  std::string_view mac = token.substr(d2 + 1);
  if (mac.size() != kMacChars) return std::nullopt;
  for (char c : mac) {
    char l = Lower(c);
    if (!((l >= 'a' && l <= 'z') || (l >= '2' && l <= '7'))) return std::nullopt;
    t.mac.push_back(l);
  }
  return t;
}

bool VerifyVerpToken(std::string_view secret, const VerpToken& token, std::string_view address) {
  if (secret.empty() || token.mac.size() != kMacChars) return false;
  std::string expected = Mac(secret, token.campaign, token.recipient, address);
  if (expected.size() != kMacChars) return false;
  return CRYPTO_memcmp(expected.data(), token.mac.data(), kMacChars) == 0;
}

}  // namespace salvo::message
