#pragma once
// Routing overrides: send a domain's mail to fixed hosts instead of its MX
// records. Used by tests, the demo and smarthost relaying. Built once from
// configuration, then read-only: each shard may hold a copy or share a const
// one (no mutation after start, so no locks).
//
// Patterns: "example.com" (exactly that domain), "*.example.com" (any
// subdomain of example.com, not example.com itself), "*" (everything). The most
// specific pattern wins: exact, then the longest "*." suffix, then "*".
// Targets: "host", "host:port", "192.0.2.1:2525", "[2001:db8::1]:25"; a list is
// the failover order.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace salvo::dns {

struct RouteTarget {
  std::string host;  // lower-case host name or IP literal (no brackets)
  uint16_t port = 25;
  bool is_ip_literal = false;
  std::string ToString() const;  // "host:port" / "[v6]:port"
};

// Parses one target; the error names the text.
absl::StatusOr<RouteTarget> ParseRouteTarget(std::string_view text);

class Router {
 public:
  // Adds (or replaces) the route for `pattern`; `targets` is a comma- or
  // space-separated list. `where` (e.g. "salvo.toml:12") prefixes errors.
  absl::Status AddRoute(std::string_view pattern, std::string_view targets,
                        std::string_view where = "");

  // Parses "pattern=target[,target...]" entries separated by ';' or newlines
  // (the form of a --route flag or an environment variable).
  absl::Status AddRoutes(std::string_view spec, std::string_view where = "");

  // The targets for `domain` (lower-case, no trailing dot), or nullptr when
  // mail for it goes by DNS.
  const std::vector<RouteTarget>* Lookup(std::string_view domain) const;

  bool empty() const { return exact_.empty() && suffix_.empty() && !has_default_; }

 private:
  absl::flat_hash_map<std::string, std::vector<RouteTarget>> exact_;
  absl::flat_hash_map<std::string, std::vector<RouteTarget>> suffix_;  // key: "example.com"
  std::vector<RouteTarget> default_;
  bool has_default_ = false;
};

// Lower-cases, strips one trailing dot and checks `domain` is a plausible
// host name (labels 1..63 of letters, digits, '-', '_'; total <= 253).
// The error names the domain and what is wrong.
absl::StatusOr<std::string> NormalizeDomain(std::string_view domain);

}  // namespace salvo::dns
