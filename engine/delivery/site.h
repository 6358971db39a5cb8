#pragma once
// Where mail for a destination goes: a Site is the ordered list of hosts a
// domain's mail rolls up to (its MX set, or a routing override's host list).
// Its key decides which shard owns it: every domain that resolves to the same
// host set shares one site, one connection pool and one owner shard.
//
// SiteInfo is immutable once built and shared (shared_ptr<const>) between
// shards. Shards build it from the DNS resolver's dns::Site (routing
// overrides included).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/config/config.h"

namespace salvo::delivery {

struct SiteHost {
  std::string name;   // host name as configured or from MX (SNI, logs)
  std::string label;  // "name[ip]:port" for Outcome::host and logs
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

struct SiteInfo {
  std::string key;              // stable identity: the ordered host list
  std::vector<SiteHost> hosts;  // in preference order (failover order)
};

// FNV-1a: stable across runs, so a site always lands on the same shard.
uint64_t StableHash(std::string_view s);
int ShardFor(std::string_view key, int shard_count);

// Builds a SiteInfo from "host:port" strings; host names are resolved with
// getaddrinfo (start-up only: blocking). Each address becomes its own host.
absl::StatusOr<std::shared_ptr<const SiteInfo>> MakeSite(const std::vector<std::string>& hosts,
                                                         std::string_view what);

}  // namespace salvo::delivery
