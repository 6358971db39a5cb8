#include "engine/fleet/shared_limits.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "engine/common/log.h"
#include "engine/fleet/redis_client.h"
#include "fmt/format.h"

namespace salvo::fleet {
namespace {

// GCRA, one grant. KEYS[1] holds the theoretical arrival time (TAT) in
// microseconds of Redis's clock. ARGV: emission interval T (us per message),
// burst tolerance tau (us), want. Returns {granted, us until `want` would
// be granted}.
constexpr char kGcraScript[] = R"lua(
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local n = math.floor((now + tau - tat) / t)
if n > want then n = want end
if n < 0 then n = 0 end
if n > 0 then
  tat = tat + n * t
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local wait = 0
if n < want then wait = tat + (want - n) * t - tau - now end
if wait < 0 then wait = 0 end
return {n, math.floor(wait)}
)lua";

// Connection leases. KEYS[1]: sorted set member -> expiry (ms of Redis's
// clock). ARGV: limit, ttl ms, then the members wanted. Expired leases are
// dropped first; returns how many of the members were leased (in order).
constexpr char kLeaseScript[] = R"lua(
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = limit - redis.call('ZCARD', KEYS[1])
local granted = 0
for i = 3, #ARGV do
  if granted >= free then break end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  granted = granted + 1
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return granted
)lua";

// Renews this node's leases (ZADD XX: an expired, dropped lease is not
// revived). ARGV: ttl ms, members. Returns how many were still held.
constexpr char kRenewScript[] = R"lua(
local ttl = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = 0
for i = 2, #ARGV do
  held = held + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return held
)lua";

constexpr char kReleaseScript[] = R"lua(
local n = 0
for i = 1, #ARGV do n = n + redis.call('ZREM', KEYS[1], ARGV[i]) end
return n
)lua";

}  // namespace

SharedLimits::SharedLimits(SharedLimitsOptions options)
    : options_(std::move(options)),
      jitter_(static_cast<uint32_t>(std::hash<std::string>{}(options_.node_id) ^
                                    static_cast<size_t>(absl::ToUnixNanos(absl::Now())))) {
  worker_ = std::thread([this] { Run(); });
}

SharedLimits::~SharedLimits() {
  stop_.store(true);
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void SharedLimits::AbandonForTest() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    release_on_stop_ = false;
  }
  stop_.store(true);
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

int64_t SharedLimits::BatchSize(const Key& k) const {
  return std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(k.rate * absl::ToDoubleSeconds(options_.batch))));
}

int SharedLimits::FallbackConnections(const Key& k) const {
  const int n = std::max(1, options_.fleet_size);
  return std::max(1, (k.max_connections + n - 1) / n);
}

void SharedLimits::SetLimit(std::string_view key, double messages_per_second, int max_connections) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    it = keys_.emplace(std::string(key), Key{}).first;
    it->second.name = std::string(key);
    it->second.fallback_last = absl::Now();
  }
  it->second.rate = std::max(0.0, messages_per_second);
  it->second.max_connections = std::max(0, max_connections);
}

int64_t SharedLimits::TakeMessages(std::string_view key, int64_t want) {
  if (want <= 0) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end() || it->second.rate <= 0) return want;
  Key& k = it->second;
  const int64_t n = std::min<int64_t>(want, static_cast<int64_t>(std::floor(k.tokens)));
  k.tokens -= static_cast<double>(n);
  k.wants_messages = true;
  if (n == 0) ++stats_.message_refusals;
  stats_.messages_taken += static_cast<uint64_t>(n);
  return n;
}

bool SharedLimits::AcquireConnection(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end() || it->second.max_connections <= 0) return true;
  Key& k = it->second;
  const int cap = shared_.load() ? static_cast<int>(k.leases.size()) : FallbackConnections(k);
  if (k.in_use < cap) {
    ++k.in_use;
    k.idle_since = absl::InfiniteFuture();
    return true;
  }
  k.wants_connection = true;
  ++k.wanted;
  ++stats_.connection_refusals;
  wake_.notify_all();
  return false;
}

void SharedLimits::ReleaseConnection(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end() || it->second.max_connections <= 0) return;
  Key& k = it->second;
  if (k.in_use > 0) --k.in_use;
  if (static_cast<int>(k.leases.size()) > k.in_use && k.idle_since == absl::InfiniteFuture())
    k.idle_since = absl::Now();
}

void SharedLimits::WantConnections(std::string_view key, int n) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end() || it->second.max_connections <= 0) return;
  Key& k = it->second;
  k.wants_connection = true;
  k.wanted = std::max(k.wanted, std::min(n, k.max_connections));
  wake_.notify_all();
}

SharedLimitsStats SharedLimits::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SharedLimitsStats s = stats_;
  s.shared = shared_.load();
  return s;
}

void SharedLimits::LoseRedis(const std::string& why) {
  redis_.reset();
  next_redis_try_ = absl::Now() + options_.retry_interval;
  if (shared_.exchange(false) || stats_.fallbacks == 0) {
    ++stats_.fallbacks;
    SALVO_LOG(kWarning,
              "fleet limits: Redis {} unavailable ({}): each node keeps 1/{} of every limit",
              options_.redis, why, options_.fleet_size);
  }
  // Leases held in Redis expire by themselves; locally the fallback cap applies.
  for (auto& [name, k] : keys_) k.leases.clear();
}

void SharedLimits::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_.load()) {
    Tick(lock);
    wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.tick));
  }
  // Give the fleet back this node's connections.
  if (release_on_stop_ && redis_) {
    std::vector<std::pair<std::string, std::vector<std::string>>> held;
    for (auto& [name, k] : keys_)
      if (!k.leases.empty()) held.emplace_back(options_.key_prefix + "conn:" + name, k.leases);
    lock.unlock();
    for (auto& [rkey, members] : held) (void)redis_->Eval(kReleaseScript, {rkey}, members);
  }
}

// Called with the lock held; drops it around every Redis round trip.
void SharedLimits::Tick(std::unique_lock<std::mutex>& lock) {
  const absl::Time now = absl::Now();
  if (!redis_) {
    lock.unlock();
    // Connecting happens without the lock: only this thread touches redis_.
    const bool ok = [&] {
      if (absl::Now() < next_redis_try_) return false;
      absl::StatusOr<std::unique_ptr<RedisClient>> c =
          RedisClient::Connect(options_.redis, options_.redis_timeout);
      if (!c.ok() || !(*c)->Ping().ok()) return false;
      redis_ = std::move(*c);
      return true;
    }();
    lock.lock();
    if (ok) {
      stats_.redis_round_trips += 1;
      shared_.store(true);
      if (stats_.fallbacks > 0) {
        ++stats_.recoveries;
        SALVO_LOG(kInfo, "fleet limits: Redis {} is back: limits are shared again", options_.redis);
      }
      next_renew_ = absl::InfinitePast();
      // After a fallback, every node re-leases the connections it kept open
      // meanwhile before any node takes new slots (they all reconnect within
      // retry_interval): else a fast node could fill the limit while a slow
      // one still holds connections from its fallback share, and the fleet
      // would overshoot. Not at the first connection of a node that never
      // fell back: it holds nothing to reclaim, and waiting there left a
      // starting node without connections for 2 s.
      if (stats_.fallbacks > 0) reclaim_until_ = absl::Now() + 2 * options_.retry_interval;
      // Demand from the fallback is stale (the pools ask again): only what is
      // asked from now on is leased when the reclaim window ends.
      for (auto& [name, k] : keys_) {
        k.wants_connection = false;
        k.wanted = 0;
      }
    } else if (absl::Now() >= next_redis_try_) {
      LoseRedis("cannot connect");
    }
  }

  if (!shared_.load()) {
    // Fallback: this node's share of each rate, refilled locally.
    const double n = std::max(1, options_.fleet_size);
    for (auto& [name, k] : keys_) {
      if (k.rate <= 0) continue;
      const double share = k.rate / n;
      const double cap = std::max(1.0, share * absl::ToDoubleSeconds(options_.batch));
      const double add = share * absl::ToDoubleSeconds(now - k.fallback_last);
      k.tokens = std::min(cap, k.tokens + add);
      k.fallback_last = now;
    }
    return;
  }

  // Shared: collect the round trips to make, then make them without the lock.
  struct Grant {
    std::string name;
    std::string rkey;
    int64_t want;
    double t_us, tau_us;
  };
  struct Lease {
    std::string name;
    std::string rkey;
    int limit;
    std::vector<std::string> members;
  };
  std::vector<Grant> grants;
  std::vector<Lease> leases, renews, releases;
  const bool renew = now >= next_renew_;
  for (auto& [name, k] : keys_) {
    k.fallback_last = now;
    if (k.rate > 0 && k.wants_messages && now >= k.next_grant) {
      const int64_t batch = BatchSize(k);
      if (k.tokens < static_cast<double>(batch) / 2) {
        const int64_t want = batch - static_cast<int64_t>(std::floor(k.tokens));
        const double t = 1e6 / k.rate;
        grants.push_back({name, options_.key_prefix + "rate:" + name, want, t, batch * t});
      }
    }
    if (k.max_connections <= 0) continue;
    const std::string rkey = options_.key_prefix + "conn:" + name;
    const int held = static_cast<int>(k.leases.size());
    // One more slot on demand (not while the fleet reclaims after a
    // fallback), and re-lease what is in use after a fallback.
    const bool reclaiming = now < reclaim_until_;
    // As many new slots as connections were refused since the last tick (a
    // pool opening 16 connections gets them in one round trip, not 16 ticks).
    const int need =
        std::max(k.in_use - held, k.wants_connection && !reclaiming ? std::max(1, k.wanted) : 0);
    if (need > 0 && held < k.max_connections) {
      Lease l{name, rkey, k.max_connections, {}};
      for (int i = 0; i < need && held + i < k.max_connections; ++i)
        l.members.push_back(fmt::format("{}:{}", options_.node_id, k.next_slot++));
      leases.push_back(std::move(l));
    }
    if (!reclaiming) {
      k.wants_connection = false;  // a real demand asks again (the pools retry)
      k.wanted = 0;
    }  // else kept: the demand is served in one round trip when the window ends
    // Slots idle for a second go back to the fleet.
    if (held > k.in_use && now - k.idle_since > absl::Seconds(1)) {
      Lease l{name, rkey, 0, {}};
      while (static_cast<int>(k.leases.size()) > k.in_use) {
        l.members.push_back(k.leases.back());
        k.leases.pop_back();
      }
      k.idle_since = absl::InfiniteFuture();
      releases.push_back(std::move(l));
    }
    if (renew && !k.leases.empty()) renews.push_back({name, rkey, 0, k.leases});
  }
  for (auto& [name, k] : keys_) k.wants_messages = false;
  if (renew) next_renew_ = now + options_.lease_ttl / 3;
  if (grants.empty() && leases.empty() && renews.empty() && releases.empty()) return;

  const uint64_t trips_before = redis_->round_trips();
  lock.unlock();
  std::string error;
  std::vector<std::pair<std::string, int64_t>> granted;
  std::vector<std::pair<std::string, std::vector<std::string>>> leased;
  for (const Grant& g : grants) {
    if (!error.empty()) break;
    auto r = redis_->Eval(
        kGcraScript, {g.rkey},
        {fmt::format("{:.3f}", g.t_us), fmt::format("{:.3f}", g.tau_us), std::to_string(g.want)});
    if (!r.ok() || r->empty())
      error = r.ok() ? "empty reply" : std::string(r.status().message());
    else
      granted.emplace_back(g.name, (*r)[0]);
  }
  for (const Lease& l : leases) {
    if (!error.empty()) break;
    std::vector<std::string> args = {std::to_string(l.limit),
                                     std::to_string(absl::ToInt64Milliseconds(options_.lease_ttl))};
    args.insert(args.end(), l.members.begin(), l.members.end());
    auto r = redis_->Eval(kLeaseScript, {l.rkey}, args);
    if (!r.ok() || r->empty()) {
      error = r.ok() ? "empty reply" : std::string(r.status().message());
    } else {
      const int64_t n = std::min<int64_t>((*r)[0], static_cast<int64_t>(l.members.size()));
      leased.emplace_back(l.name,
                          std::vector<std::string>(l.members.begin(), l.members.begin() + n));
    }
  }
  for (const Lease& l : renews) {
    if (!error.empty()) break;
    std::vector<std::string> args = {std::to_string(absl::ToInt64Milliseconds(options_.lease_ttl))};
    args.insert(args.end(), l.members.begin(), l.members.end());
    auto r = redis_->Eval(kRenewScript, {l.rkey}, args);
    if (!r.ok()) error = std::string(r.status().message());
  }
  for (const Lease& l : releases) {
    if (!error.empty()) break;
    auto r = redis_->Eval(kReleaseScript, {l.rkey}, l.members);
    if (!r.ok()) error = std::string(r.status().message());
  }
  const uint64_t trips = redis_->round_trips() - trips_before;
  lock.lock();
  stats_.redis_round_trips += trips;
  for (auto& [name, n] : granted) {
    auto it = keys_.find(name);
    if (it == keys_.end()) continue;
    Key& k = it->second;
    k.tokens += static_cast<double>(n);
    stats_.messages_granted += static_cast<uint64_t>(n);
    // Every node asks at most about once per half batch, at a jittered
    // moment. Asking whenever the local pool runs low made the fleet unfair
    // when the rate binds: the node that was winning drained its pool
    // fastest, so it asked most often and took what accumulated, while the
    // one that got a partial grant waited and found the bucket empty (seen:
    // 69 vs 740 messages in 4 s). With the same cadence on every node and a
    // random phase, each ask takes what accumulated since the previous ask
    // by anyone, which evens out. Alone, a node still gets the full rate: an
    // ask every 1/4..3/4 batch fetches up to a batch, and GCRA's burst
    // tolerance is one batch.
    const double spread = std::uniform_real_distribution<double>(0.25, 0.75)(jitter_);
    k.next_grant = absl::Now() + options_.batch * spread;
  }
  for (auto& [name, members] : leased) {
    auto it = keys_.find(name);
    if (it == keys_.end()) continue;
    for (std::string& m : members) it->second.leases.push_back(std::move(m));
  }
  if (!error.empty()) LoseRedis(error);
}

}  // namespace salvo::fleet
