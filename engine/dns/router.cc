#include "engine/dns/router.h"

#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/common/host_port.h"
#include "engine/common/strings.h"
#include "engine/dns/site.h"

namespace salvo::dns {
namespace {

std::string Prefix(absl::string_view where) {
  return where.empty() ? std::string() : absl::StrCat(where, ": ");
}

}  // namespace

absl::StatusOr<std::string> NormalizeDomain(std::string_view domain_in) {
  const absl::string_view domain = Av(domain_in);
  std::string d = absl::AsciiStrToLower(absl::StripAsciiWhitespace(domain));
  if (!d.empty() && d.back() == '.') d.pop_back();
  if (d.empty()) return absl::InvalidArgumentError("empty domain name");
  if (d.size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat("domain name '", d.substr(0, 64), "...' is longer than 253 characters"));
  }
  for (absl::string_view label : absl::StrSplit(d, '.')) {
    if (label.empty() || label.size() > 63) {
      return absl::InvalidArgumentError(
          absl::StrCat("domain name '", d, "' has an empty or over-long (>63) label"));
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') {
        return absl::InvalidArgumentError(
            absl::StrCat("domain name '", d, "' contains the character '", std::string(1, c),
                         "', which a host name cannot have"));
      }
    }
  }
  return d;
}

std::string RouteTarget::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<RouteTarget> ParseRouteTarget(std::string_view text_in) {
  const absl::string_view text = absl::StripAsciiWhitespace(Av(text_in));
  RouteTarget t;
  absl::StatusOr<HostPort> hp = ParseHostPort(Sv(text), {.default_port = 25});
  if (!hp.ok())
    return absl::InvalidArgumentError(absl::StrCat("route target: ", hp.status().message()));
  t.port = static_cast<uint16_t>(hp->port);
  const absl::string_view host = Av(hp->host);
  const bool bracketed = absl::StartsWith(text, "[");
  IpAddress ip;
  const bool literal = IpAddress::Parse(Sv(host), &ip);
  // "::1:25" could be an address or an address and a port: brackets decide.
  if (!bracketed && host.find(':') != absl::string_view::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("route target '", text, "': write IPv6 addresses in brackets, e.g. [::1]:25"));
  if (bracketed && !(literal && ip.is_v6()))
    return absl::InvalidArgumentError(
        absl::StrCat("route target '", text, "': '", host, "' is not an IPv6 address"));
  if (literal) {
    t.host = ip.ToString();
    t.is_ip_literal = true;
    return t;
  }
  absl::StatusOr<std::string> name = NormalizeDomain(Sv(host));
  if (!name.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("route target '", text, "': ", name.status().message()));
  }
  t.host = *std::move(name);
  return t;
}

absl::Status Router::AddRoute(std::string_view pattern_in, std::string_view targets_in,
                              std::string_view where_in) {
  const absl::string_view pattern = absl::StripAsciiWhitespace(Av(pattern_in));
  const absl::string_view targets = Av(targets_in);
  const absl::string_view where = Av(where_in);
  std::vector<RouteTarget> parsed;
  for (absl::string_view item :
       absl::StrSplit(targets, absl::ByAnyChar(", \t"), absl::SkipEmpty())) {
    absl::StatusOr<RouteTarget> t = ParseRouteTarget(Sv(item));
    if (!t.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Prefix(where), "route for '", pattern, "': ", t.status().message()));
    }
    parsed.push_back(*std::move(t));
  }
  if (parsed.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(where), "route for '", pattern, "' has no target host"));
  }
  if (pattern == "*") {
    default_ = std::move(parsed);
    has_default_ = true;
    return absl::OkStatus();
  }
  absl::string_view domain = pattern;
  const bool wildcard = absl::ConsumePrefix(&domain, "*.");
  absl::StatusOr<std::string> name = NormalizeDomain(Sv(domain));
  if (!name.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(where), "route pattern '", pattern, "': ", name.status().message()));
  }
  (wildcard ? suffix_ : exact_)[*name] = std::move(parsed);
  return absl::OkStatus();
}

absl::Status Router::AddRoutes(std::string_view spec_in, std::string_view where_in) {
  const absl::string_view spec = Av(spec_in);
  const absl::string_view where = Av(where_in);
  int index = 0;
  for (absl::string_view entry :
       absl::StrSplit(spec, absl::ByAnyChar(";\n"), absl::SkipWhitespace())) {
    ++index;
    const size_t eq = entry.find('=');
    const std::string here =
        where.empty() ? absl::StrCat("route ", index) : absl::StrCat(where, " route ", index);
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(here, ": '", absl::StripAsciiWhitespace(entry),
                                                     "' is not of the form pattern=host:port"));
    }
    if (absl::Status s = AddRoute(Sv(entry.substr(0, eq)), Sv(entry.substr(eq + 1)), here);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

const std::vector<RouteTarget>* Router::Lookup(std::string_view domain_in) const {
  const absl::string_view domain = Av(domain_in);
  if (auto it = exact_.find(domain); it != exact_.end()) return &it->second;
  if (!suffix_.empty()) {
    // Walk "a.b.example.com" -> "b.example.com" -> "example.com" -> "com":
    // the first hit is the longest suffix.
    absl::string_view rest = domain;
    for (size_t dot = rest.find('.'); dot != absl::string_view::npos; dot = rest.find('.')) {
      rest = rest.substr(dot + 1);
      if (auto it = suffix_.find(rest); it != suffix_.end()) return &it->second;
    }
  }
  return has_default_ ? &default_ : nullptr;
}

}  // namespace salvo::dns
