#pragma once
// Where mail for a destination goes: a Site is the ordered list of hosts a
// domain's mail rolls up to (its MX set, or a routing override's host list).
// Its key decides which shard owns it: every domain that resolves to the same
// host set shares one site, one pool and one owner shard
// (dns::ShardForSite(key)).
//
// SiteInfo is immutable once built and shared (shared_ptr<const>) between
// shards; the router (router.h) builds it from the resolver's dns::Site. When
// DNS gives the same MX names new addresses, a new SiteInfo with the same key
// replaces the old one in the pool (connections keep the one they use).
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/shaping/shaping.h"

namespace salvo::delivery {

struct SiteHost {
  std::string name;   // host name as configured or from MX (SNI, logs)
  std::string label;  // "name[ip]:port" for Outcome::host and logs
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

struct SiteInfo {
  std::string key;              // stable identity: the MX host set (dns::SiteKey)
  std::vector<SiteHost> hosts;  // in preference order (failover order), one per address
  // What shaping resolved for the domain this site was first routed for (its
  // limits, its shaping key and provider); set by the router. A destination
  // whose shaping depends on its name ([domain] table, a provider's
  // `domains`) has a key of its own ("<hosts>|domain.NAME"), so its pool
  // is apart from other domains with the same MX hosts.
  std::shared_ptr<const shaping::Resolved> shaping;
  // The egress source (Engine::egress_sources) its connections bind to and
  // EHLO with; -1 = the default. Part of the key ("...|src=NAME"): each
  // source has its own pool and limits.
  int source = -1;
  // The smarthost route's AUTH/TLS settings (Engine::route_auth), or -1.
  int route_auth = -1;
  // A spread route's lane: the shard that owns this copy (key "...|lane=N");
  // -1 otherwise. `limits_key` is the key without the lane: the lanes share
  // their shaping key by it.
  int lane = -1;
  std::string limits_key;
  std::string domain;                 // the domain it was resolved for
  std::vector<std::string> mx_names;  // MX host names (for re-resolution on reload)

  // Same hosts at the same addresses (in any order: equal-preference MX
  // hosts are shuffled on every lookup, which is no reason to replace a site).
  bool SameHosts(const SiteInfo& other) const {
    if (hosts.size() != other.hosts.size()) return false;
    std::vector<std::string_view> a, b;
    for (const SiteHost& h : hosts) a.push_back(h.label);
    for (const SiteHost& h : other.hosts) b.push_back(h.label);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    return a == b;
  }
};

}  // namespace salvo::delivery
