#include "dkim/alignment.h"

#include <libpsl.h>

#include "engine/common/base64.h"
#include "engine/common/strings.h"

namespace salvo::dkim {
namespace {

// The Public Suffix List, loaded once per process: the newest of the list
// libpsl was built with and Debian's `publicsuffix` package
// (/usr/share/publicsuffix). A loaded context is immutable, so every thread
// may query it.
const psl_ctx_t* PublicSuffixList() {
  static const psl_ctx_t* psl = [] {
    const psl_ctx_t* latest = psl_latest(nullptr);
    return latest != nullptr ? latest : psl_builtin();
  }();
  return psl;
}

}  // namespace

absl::StatusOr<std::string> FromDomain(std::string_view from) {
  std::string_view addr = from;
  // "Display Name <local@domain>": the address is inside the last <...>.
  const std::size_t lt = addr.rfind('<');
  if (lt != std::string_view::npos) {
    const std::size_t gt = addr.find('>', lt);
    addr = addr.substr(lt + 1, gt == std::string_view::npos ? std::string_view::npos : gt - lt - 1);
  }
  addr = StripWhitespace(addr);
  const std::size_t at = addr.rfind('@');
  if (at == std::string_view::npos || at + 1 >= addr.size()) {
    return absl::InvalidArgumentError(Cat("no address with a domain in From '", from, "'"));
  }
  std::string_view domain = addr.substr(at + 1);
  // Stop at anything that cannot be part of a domain (comments, commas).
  const std::size_t end = domain.find_first_of(" \t\r\n>(),;\"");
  domain = domain.substr(0, end);
  while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.find('.') == std::string_view::npos) {
    return absl::InvalidArgumentError(Cat("From domain in '", from, "' is not a domain"));
  }
  return AsciiLower(domain);
}

std::string OrganizationalDomain(std::string_view domain) {
  std::string d = AsciiLower(domain);
  while (!d.empty() && d.back() == '.') d.pop_back();
  const psl_ctx_t* psl = PublicSuffixList();
  if (psl == nullptr) return d;
  // The registrable domain: one label below the longest public suffix, ICANN
  // and private sections alike (RFC 7489 3.2 with the whole list).
  const char* reg = psl_registrable_domain(psl, d.c_str());
  return reg != nullptr ? std::string(reg) : d;
}

absl::StatusOr<std::vector<const DkimKey*>> SelectKeysForFrom(const KeyStore& store,
                                                              std::string_view from) {
  auto domain = FromDomain(from);
  if (!domain.ok()) return domain.status();
  const std::string org = OrganizationalDomain(*domain);
  // The From domain itself, then each parent up to the organisational domain.
  std::string_view d = *domain;
  while (true) {
    auto keys = store.KeysFor(d);
    if (!keys.empty()) return keys;
    if (d.size() <= org.size()) break;
    const std::size_t dot = d.find('.');
    if (dot == std::string_view::npos) break;
    d.remove_prefix(dot + 1);
  }
  const std::vector<std::string> configured = store.Domains();
  return absl::NotFoundError(Cat(
      "no DKIM key for From domain ", *domain,
      " (configured: ", configured.empty() ? std::string("none") : Join(configured, ", "), ")"));
}

}  // namespace salvo::dkim
