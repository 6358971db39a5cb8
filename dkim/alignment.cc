#include "dkim/alignment.h"

#include "dkim/text.h"

#include <array>

namespace salvo::dkim {
namespace {

// Multi-label public suffixes common in bulk mail. An approximation of the
// Public Suffix List (which Salvo does not ship): a From domain under one of
// these has a three-label organisational domain.
constexpr std::array<std::string_view, 40> kMultiLabelSuffixes = {
    "co.uk",  "org.uk", "ac.uk",  "gov.uk", "me.uk",  "ltd.uk", "plc.uk", "net.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz",  "org.nz", "net.nz",
    "co.jp",  "ne.jp",  "or.jp",  "ac.jp",  "co.kr",  "or.kr",  "com.br", "net.br",
    "com.cn", "net.cn", "org.cn", "com.mx", "com.ar", "com.tr", "co.in",  "net.in",
    "co.za",  "com.sg", "com.hk", "com.tw", "co.il",  "com.pl", "co.id",  "com.my"};

}  // namespace

absl::StatusOr<std::string> FromDomain(std::string_view from) {
  std::string_view addr = from;
  // "Display Name <local@domain>": the address is inside the last <...>.
  const std::size_t lt = addr.rfind('<');
  if (lt != std::string_view::npos) {
    const std::size_t gt = addr.find('>', lt);
    addr = addr.substr(lt + 1, gt == std::string_view::npos ? std::string_view::npos : gt - lt - 1);
  }
  addr = text::Trim(addr);
  const std::size_t at = addr.rfind('@');
  if (at == std::string_view::npos || at + 1 >= addr.size()) {
    return absl::InvalidArgumentError(text::Cat("no address with a domain in From '", from, "'"));
  }
  std::string_view domain = addr.substr(at + 1);
  // Stop at anything that cannot be part of a domain (comments, commas).
  const std::size_t end = domain.find_first_of(" \t\r\n>(),;\"");
  domain = domain.substr(0, end);
  while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.find('.') == std::string_view::npos) {
    return absl::InvalidArgumentError(text::Cat("From domain in '", from, "' is not a domain"));
  }
  return text::ToLower(domain);
}

std::string OrganizationalDomain(std::string_view domain) {
  std::string d = text::ToLower(domain);
  while (!d.empty() && d.back() == '.') d.pop_back();
  std::vector<std::string_view> labels = text::Split(d, '.');
  if (labels.size() <= 2) return d;
  const std::string last_two = text::Cat(labels[labels.size() - 2], ".", labels[labels.size() - 1]);
  std::size_t keep = 2;
  for (std::string_view s : kMultiLabelSuffixes) {
    if (s == last_two) keep = 3;
  }
  if (labels.size() <= keep) return d;
  return text::Join(
      std::vector<std::string_view>(labels.end() - static_cast<std::ptrdiff_t>(keep), labels.end()),
      ".");
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
  return absl::NotFoundError(
      text::Cat("no DKIM key for From domain ", *domain, " (configured: ",
                configured.empty() ? std::string("none") : text::Join(configured, ", "), ")"));
}

}  // namespace salvo::dkim
