#pragma once
// Domain -> site for the domains whose home is this shard (the feeder sends
// each job to dns::ShardForSite(domain)): routing overrides and MX answers
// from the shard's dns::Resolver, then the job goes to the site's owner shard
// (dns::ShardForSite(site key)), batched once per loop turn.
//
// The domain cache keeps an answer for its DNS TTL (routes: 60 s) and at most
// `max_domains` entries (least recently used dropped first); the SiteInfo
// table holds only sites some cached domain still points at. A new answer
// with new addresses under the same MX names builds a new SiteInfo, which
// reaches the owner's pool (SitePool::Refresh).
// Owned by its Shard; shard thread only.
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/delivery/site.h"
#include "engine/delivery/source.h"
#include "engine/dns/site.h"

namespace salvo::delivery {

class Shard;

class DomainRouter {
 public:
  using Steady = std::chrono::steady_clock;

  DomainRouter(Shard* shard, size_t max_domains);

  // Routes each job (cached answer) or resolves its domain first.
  void Accept(std::vector<Job> jobs);
  // Shutdown: jobs waiting for DNS are reported (shutdown outcome).
  void Drain();

  size_t cached_domains() const { return domains_.size(); }
  size_t cached_sites() const { return sites_.size(); }

  // The shaping file changed: forget every cached answer, so domains are
  // resolved (and shaped) again.
  void Forget();

  // Builds the engine's view of a resolved site for `domain`: one SiteHost
  // per address, in try order, and what `shaping` says applies (a key of its
  // own when that depends on the domain's name). nullptr when no host has an
  // address.
  // `route_auth`: the Engine::route_auth() entry of a routed site, or -1.
  static std::shared_ptr<const SiteInfo> ToSiteInfo(const dns::Site& site,
                                                    const std::string& domain,
                                                    const shaping::ShapingConfig& shaping,
                                                    int route_auth = -1);

 private:
  struct CachedDomain {
    std::shared_ptr<const SiteInfo> site;
    Steady::time_point expires;
    std::list<std::string>::iterator lru;  // position in lru_ (front = newest)
  };

  void StartResolve(const std::string& domain);
  void OnResolved(const std::string& domain, absl::StatusOr<dns::Site> result);
  void Remember(const std::string& domain, std::shared_ptr<const SiteInfo> site,
                Steady::duration ttl);
  std::shared_ptr<const SiteInfo> Intern(std::shared_ptr<const SiteInfo> fresh);
  void Route(const std::shared_ptr<const SiteInfo>& info, Job job);
  // `info` on shard `lane` (a spread route): its own key and pool there.
  std::shared_ptr<const SiteInfo> Laned(const std::shared_ptr<const SiteInfo>& info, int lane);
  uint64_t lane_turn_ = 0;
  // `info` sent from egress source `source`: its own key and pool.
  std::shared_ptr<const SiteInfo> Sourced(const std::shared_ptr<const SiteInfo>& info, int source);
  void Flush();

  Shard* shard_;
  size_t max_domains_;
  absl::flat_hash_map<std::string, CachedDomain> domains_;
  std::list<std::string> lru_;
  // Site key -> the newest SiteInfo for it (weak: gone with its domains).
  absl::flat_hash_map<std::string, std::weak_ptr<const SiteInfo>> sites_;
  // Round-robin position per egress pool.
  absl::flat_hash_map<int, uint64_t> egress_turn_;
  // Jobs waiting for their domain's MX resolution.
  absl::flat_hash_map<std::string, std::vector<Job>> resolving_;
  // Resolved jobs to hand to owner shards at the end of this turn.
  absl::flat_hash_map<
      int, absl::flat_hash_map<std::string,
                               std::pair<std::shared_ptr<const SiteInfo>, std::vector<Job>>>>
      outgoing_;
};

}  // namespace salvo::delivery
