// Domain -> site: routes and MX answers, a bounded per-shard cache, and the
// hand-off to each site's owner shard. Shard thread only.
#include "engine/delivery/router.h"

#include <algorithm>

#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "engine/delivery/engine.h"
#include "engine/delivery/shard.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

namespace {

smtp::Outcome ShutdownOutcome() {
  return smtp::OutcomeForLocal("shutdown", "the engine is shutting down; will retry", false,
                               smtp::Scope::kSite, "");
}

}  // namespace

DomainRouter::DomainRouter(Shard* shard, size_t max_domains)
    : shard_(shard), max_domains_(std::max<size_t>(1, max_domains)) {}

void DomainRouter::Accept(std::vector<Job> jobs) {
  const auto now = shard_->Now();
  metrics::ShardCounters* counters = shard_->counters();
  for (Job& job : jobs) {
    // A look-up per job: answered by the cache (or by a query already on its
    // way), or a query over the network (StartResolve).
    counters->Add(metrics::Counter::kDnsLookups);
    auto it = domains_.find(job.domain);
    if (it != domains_.end()) {
      if (it->second.expires > now) {
        counters->Add(metrics::Counter::kDnsCacheHits);
        lru_.splice(lru_.begin(), lru_, it->second.lru);  // most recently used
        Route(it->second.site, std::move(job));
        continue;
      }
      lru_.erase(it->second.lru);  // expired: ask again
      domains_.erase(it);
    }
    std::vector<Job>& waiting = resolving_[job.domain];
    bool first = waiting.empty();
    std::string domain = job.domain;
    waiting.push_back(std::move(job));
    if (first)
      StartResolve(domain);
    else
      counters->Add(metrics::Counter::kDnsCacheHits);
  }
  Flush();
}

void DomainRouter::Drain() {
  for (auto& [domain, jobs] : resolving_)
    for (Job& job : jobs) shard_->Report(std::move(job), ShutdownOutcome());
  resolving_.clear();
}

void DomainRouter::StartResolve(const std::string& domain) {
  dns::Resolver* resolver = shard_->resolver();
  if (auto now = resolver->TryResolveMxNow(domain)) {
    shard_->counters()->Add(metrics::Counter::kDnsCacheHits);
    if (!now->ok()) shard_->counters()->Add(metrics::Counter::kDnsFailures);
    OnResolved(domain, *std::move(now));
    return;
  }
  const absl::Time started = absl::Now();  // real time: this measures the look-up
  resolver->ResolveMx(domain, [this, domain, started](absl::StatusOr<dns::Site> result) {
    metrics::ShardCounters* counters = shard_->counters();
    counters->Observe(metrics::Histogram::kDnsLookup, absl::ToDoubleSeconds(absl::Now() - started));
    if (!result.ok()) counters->Add(metrics::Counter::kDnsFailures);
    OnResolved(domain, std::move(result));
    Flush();
  });
}

void DomainRouter::OnResolved(const std::string& domain, absl::StatusOr<dns::Site> result) {
  auto node = resolving_.extract(domain);
  if (node.empty()) return;
  std::vector<Job> jobs = std::move(node.mapped());
  if (shard_->draining()) {
    for (Job& job : jobs) shard_->Report(std::move(job), ShutdownOutcome());
    return;
  }
  if (!result.ok()) {
    // Typed by the resolver, mapped by the one failure module.
    smtp::Outcome o = smtp::OutcomeForDnsFailure(dns::FailureOf(result.status()), domain,
                                                 std::string(result.status().message()));
    for (Job& job : jobs) shard_->Report(std::move(job), o);
    return;
  }
  std::shared_ptr<const SiteInfo> info =
      ToSiteInfo(*result, domain, *shard_->engine()->shaper()->config(),
                 result->routed ? shard_->engine()->RouteAuthFor(domain) : -1);
  if (!info) {
    smtp::Outcome o = smtp::OutcomeForDnsFailure(smtp::DnsFailure::kNoAddressYet, domain,
                                                 "no MX host of the domain has an address");
    for (Job& job : jobs) shard_->Report(std::move(job), o);
    return;
  }
  info = Intern(std::move(info));
  // Routed answers and DNS answers are reused for their TTL (routes: 60 s).
  uint32_t ttl = result->routed ? 60 : std::max<uint32_t>(1, result->ttl_seconds);
  Remember(domain, info, std::chrono::seconds(ttl));
  for (Job& job : jobs) Route(info, std::move(job));
}

void DomainRouter::Remember(const std::string& domain, std::shared_ptr<const SiteInfo> site,
                            Steady::duration ttl) {
  if (auto it = domains_.find(domain); it != domains_.end()) {
    lru_.erase(it->second.lru);
    domains_.erase(it);
  }
  while (domains_.size() >= max_domains_ && !lru_.empty()) {
    domains_.erase(lru_.back());  // least recently used
    lru_.pop_back();
  }
  lru_.push_front(domain);
  domains_[domain] = CachedDomain{std::move(site), shard_->Now() + ttl, lru_.begin()};
  // The site table holds weak references: drop the ones nobody uses.
  if (sites_.size() > 2 * domains_.size() + 64) {
    for (auto it = sites_.begin(); it != sites_.end();) {
      auto next = std::next(it);
      if (it->second.expired()) sites_.erase(it);
      it = next;
    }
  }
}

// One SiteInfo per site key while the hosts stay the same, so domains
// sharing an MX set share the object; a new answer with other addresses
// replaces it (the owner's pool follows: SitePool::Refresh).
std::shared_ptr<const SiteInfo> DomainRouter::Intern(std::shared_ptr<const SiteInfo> fresh) {
  std::weak_ptr<const SiteInfo>& slot = sites_[fresh->key];
  if (std::shared_ptr<const SiteInfo> known = slot.lock(); known && known->SameHosts(*fresh))
    return known;
  slot = fresh;
  return fresh;
}

void DomainRouter::Forget() {
  domains_.clear();
  lru_.clear();
  sites_.clear();
}

std::shared_ptr<const SiteInfo> DomainRouter::ToSiteInfo(const dns::Site& site,
                                                         const std::string& domain,
                                                         const shaping::ShapingConfig& shaping,
                                                         int route_auth) {
  auto info = std::make_shared<SiteInfo>();
  info->key = site.key;
  info->domain = domain;
  for (const dns::MxHost& h : site.hosts) {
    if (info->mx_names.empty() || info->mx_names.back() != h.name) info->mx_names.push_back(h.name);
    for (const dns::IpAddress& ip : h.addresses) {
      SiteHost sh;
      sh.name = h.name;
      sh.addr_len = ip.ToSockaddr(h.port, &sh.addr);
      std::string ips = ip.ToString();
      sh.label = h.name == ips
                     ? (ip.is_v6() ? "[" + ips + "]:" : ips + ":") + std::to_string(h.port)
                     : h.name + "[" + ips + "]:" + std::to_string(h.port);
      info->hosts.push_back(std::move(sh));
    }
  }
  if (info->hosts.empty()) return nullptr;
  if (info->key.empty()) info->key = info->hosts.front().label;
  auto resolved =
      std::make_shared<shaping::Resolved>(shaping::Resolve(shaping, domain, info->mx_names));
  if (site.routed && route_auth >= 0) {
    // A smarthost route with its own credentials or TLS: a pool of its own.
    info->route_auth = route_auth;
    info->key += "|route=" + std::to_string(route_auth);
  }
  if (resolved->by_name) info->key += "|" + resolved->key;
  info->shaping = std::move(resolved);
  return info;
}

std::shared_ptr<const SiteInfo> DomainRouter::Sourced(const std::shared_ptr<const SiteInfo>& info,
                                                      int source) {
  const std::string key =
      info->key + "|src=" + shard_->engine()->egress_sources()[static_cast<size_t>(source)].name;
  std::weak_ptr<const SiteInfo>& slot = sites_[key];
  if (std::shared_ptr<const SiteInfo> known = slot.lock();
      known && known->SameHosts(*info) && known->shaping == info->shaping)
    return known;
  auto s = std::make_shared<SiteInfo>(*info);
  s->key = key;
  s->source = source;
  slot = s;
  return s;
}

std::shared_ptr<const SiteInfo> DomainRouter::Laned(const std::shared_ptr<const SiteInfo>& info,
                                                    int lane) {
  const std::string key = info->key + "|lane=" + std::to_string(lane);
  std::weak_ptr<const SiteInfo>& slot = sites_[key];
  if (std::shared_ptr<const SiteInfo> known = slot.lock();
      known && known->SameHosts(*info) && known->shaping == info->shaping)
    return known;
  auto s = std::make_shared<SiteInfo>(*info);
  s->limits_key = info->limits_key.empty() ? info->key : info->limits_key;
  s->key = key;
  s->lane = lane;
  slot = s;
  return s;
}

void DomainRouter::Route(const std::shared_ptr<const SiteInfo>& base, Job job) {
  std::shared_ptr<const SiteInfo> info = base;
  const auto& pools = shard_->engine()->egress_pools();
  if (job.egress_pool >= 0 && static_cast<size_t>(job.egress_pool) < pools.size() &&
      !pools[static_cast<size_t>(job.egress_pool)].empty()) {
    // The campaign's pool: its sources in turn, each a site pool of its own.
    const std::vector<int>& members = pools[static_cast<size_t>(job.egress_pool)];
    uint64_t& turn = egress_turn_[job.egress_pool];
    // In turn; a source at its warm-up cap for this destination's shaping
    // key today passes the job to the next one.
    const std::string& key = base->shaping
                                 ? base->shaping->key == "default" ? base->key : base->shaping->key
                                 : base->key;
    int chosen = -1;
    for (size_t k = 0; k < members.size() && chosen < 0; ++k) {
      const int src = members[(turn + k) % members.size()];
      if (shard_->engine()->WarmupTake(src, key)) chosen = src;
    }
    ++turn;
    if (chosen < 0) {
      // Every source of the pool is at its warm-up cap: tomorrow.
      const absl::Time now = absl::Now();
      const absl::Time midnight = absl::FromCivil(
          absl::CivilDay(absl::ToCivilDay(now, absl::UTCTimeZone())) + 1, absl::UTCTimeZone());
      shard_->Report(
          std::move(job),
          smtp::OutcomeForHold("every egress source of the pool is at its warm-up cap today",
                               std::max<int64_t>(1000, absl::ToInt64Milliseconds(midnight - now))));
      return;
    }
    info = Sourced(base, chosen);
  }
  const int shards = shard_->engine()->shard_count();
  if (info->route_auth >= 0 &&
      shard_->engine()->route_auth()[static_cast<size_t>(info->route_auth)].spread && shards > 1) {
    // A spread route: its jobs go to every shard in turn, one pool each.
    info = Laned(info, static_cast<int>(lane_turn_++ % static_cast<uint64_t>(shards)));
  }
  int owner = info->lane >= 0
                  ? info->lane
                  : static_cast<int>(dns::ShardForSite(info->key, static_cast<unsigned>(shards)));
  auto& slot = outgoing_[owner][info->key];
  if (!slot.first) slot.first = info;
  slot.second.push_back(std::move(job));
}

void DomainRouter::Flush() {
  auto out = std::move(outgoing_);
  outgoing_.clear();
  for (auto& [owner, by_site] : out) {
    for (auto& [key, slot] : by_site) {
      if (owner == shard_->index()) {
        shard_->AcceptForSite(std::move(slot.first), std::move(slot.second));
      } else {
        Shard* s = shard_->engine()->shard(owner);
        s->Post([s, si = std::move(slot.first), j = std::move(slot.second)]() mutable {
          s->AcceptForSite(std::move(si), std::move(j));
        });
      }
    }
  }
}

}  // namespace salvo::delivery
