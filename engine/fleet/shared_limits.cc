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

// Who contends for a connection limit. KEYS[1]: the leases (member
// "<node>:<slot>" -> expiry ms of Redis's clock); KEYS[2]: the nodes waiting
// for a slot (node -> expiry ms). Drops expired entries; returns how many
// leases there are, how many `me` holds, how many other nodes wait, and how
// many nodes hold or wait (`me` counted).
constexpr char kCensus[] = R"lua(
local function census(conn, wait, me, now)
  redis.call('ZREMRANGEBYSCORE', conn, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', wait, '-inf', now)
  local seen, nodes, mine, others = {}, 0, 0, 0
  local leases = redis.call('ZRANGE', conn, 0, -1)
  for _, m in ipairs(leases) do
    local node = string.match(m, '^(.*):[^:]*$') or m
    if node == me then mine = mine + 1 end
    if not seen[node] then seen[node] = true; nodes = nodes + 1 end
  end
  for _, node in ipairs(redis.call('ZRANGE', wait, 0, -1)) do
    if node ~= me then
      others = others + 1
      if not seen[node] then seen[node] = true; nodes = nodes + 1 end
    end
  end
  if not seen[me] then nodes = nodes + 1 end
  return #leases, mine, others, nodes
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
)lua";

// Connection leases. KEYS: leases, waiting (see kCensus). ARGV: limit, ttl
// ms, me, wait ttl ms, then the members wanted. While another node waits, a
// node gets no more than ceil(limit / nodes holding or waiting); a node that
// gets less than it asked for is marked waiting. Returns how many of the
// members were leased (in order) and the node's cap (0 = none).
const std::string kLeaseScript = std::string(kCensus) + R"lua(
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local me = ARGV[3]
local wait_ttl = tonumber(ARGV[4])
local held, mine, others, nodes = census(KEYS[1], KEYS[2], me, now)
local cap = 0
local allowed = limit - held
if others > 0 then
  cap = math.ceil(limit / nodes)
  allowed = math.min(allowed, cap - mine)
end
local granted = 0
for i = 5, #ARGV do
  if granted >= allowed then break end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  granted = granted + 1
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
if granted < #ARGV - 4 then
  redis.call('ZADD', KEYS[2], now + wait_ttl, me)
  redis.call('PEXPIRE', KEYS[2], wait_ttl * 2)
else
  redis.call('ZREM', KEYS[2], me)
end
return {granted, cap}
)lua";

// A node's cap on every key it holds much of: KEYS are pairs (leases,
// waiting); ARGV: me, then each key's limit. Returns a cap per key,
// ceil(limit / nodes) while another node waits, else 0.
const std::string kFairScript = std::string(kCensus) + R"lua(
local me = ARGV[1]
local caps = {}
for i = 1, #KEYS / 2 do
  local limit = tonumber(ARGV[i + 1])
  local held, mine, others, nodes = census(KEYS[2 * i - 1], KEYS[2 * i], me, now)
  if others > 0 then caps[i] = math.ceil(limit / nodes) else caps[i] = 0 end
end
return caps
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

std::string SharedLimits::WaitKey(std::string_view name) const {
  return fmt::format("{}wait:{}", options_.key_prefix, name);
}

int SharedLimits::FallbackConnections(const Key& k) const {
  const int n = std::max(1, options_.fleet_size);
  return std::max(1, (k.max_connections + n - 1) / n);
}

void SharedLimits::SetLimit(std::string_view key, double messages_per_second, int max_connections) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    it = keys_.try_emplace(std::string(key)).first;
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
  int cap = shared_.load() ? static_cast<int>(k.leases.size()) : FallbackConnections(k);
  if (const int fair = k.node_cap.load(std::memory_order_relaxed); fair > 0)
    cap = std::min(cap, fair);
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
  // Over this node's part while another node waits: the slot goes back to
  // the fleet now (not after a second idle, when this node's own pools
  // would have taken it again).
  const int fair = k.node_cap.load(std::memory_order_relaxed);
  if (fair > 0 && static_cast<int>(k.leases.size()) > std::max(fair, k.in_use)) {
    k.releasing.push_back(std::move(k.leases.back()));
    k.leases.pop_back();
    ++stats_.connections_yielded;
    wake_.notify_all();
  }
  if (static_cast<int>(k.leases.size()) > k.in_use && k.idle_since == absl::InfiniteFuture())
    k.idle_since = absl::Now();
}

const std::atomic<int>* SharedLimits::NodeCap(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &it->second.node_cap;
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
  for (auto& [name, k] : keys_) {
    k.leases.clear();
    k.releasing.clear();
    k.node_cap.store(0, std::memory_order_relaxed);
  }
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
      if (!k.leases.empty() || !k.releasing.empty()) {
        std::vector<std::string> members = k.leases;
        members.insert(members.end(), k.releasing.begin(), k.releasing.end());
        held.emplace_back(options_.key_prefix + "conn:" + name, std::move(members));
      }
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
  std::vector<Lease> leases, renews, releases, fair_keys;
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
    // At its part while another node waits: nothing more to ask for (the
    // fairness check below says when the other node is served).
    const int fair = k.node_cap.load(std::memory_order_relaxed);
    const bool at_part = fair > 0 && held >= fair;
    const int need = std::max(
        k.in_use - held, k.wants_connection && !reclaiming && !at_part ? std::max(1, k.wanted) : 0);
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
    // Slots given back for another node, and slots idle for a second, go
    // back to the fleet.
    Lease back{name, rkey, 0, std::move(k.releasing)};
    k.releasing.clear();
    if (held > k.in_use && now - k.idle_since > absl::Seconds(1)) {
      while (static_cast<int>(k.leases.size()) > k.in_use) {
        back.members.push_back(std::move(k.leases.back()));
        k.leases.pop_back();
      }
      k.idle_since = absl::InfiniteFuture();
    }
    if (!back.members.empty()) releases.push_back(std::move(back));
    if (renew && !k.leases.empty()) renews.push_back({name, rkey, 0, k.leases});
    // Holding more than an even part of the limit (or capped): does another
    // node wait? One round trip for every such key, every fair_interval.
    const int nodes = std::max(2, options_.fleet_size);
    const int even = (k.max_connections + nodes - 1) / nodes;
    const int now_held = static_cast<int>(k.leases.size());
    if (now >= k.next_fair_check && (fair > 0 || (now_held > 1 && now_held > even))) {
      k.next_fair_check = now + options_.fair_interval;
      fair_keys.push_back({name, rkey, k.max_connections, {}});
    }
  }
  for (auto& [name, k] : keys_) k.wants_messages = false;
  if (renew) next_renew_ = now + options_.lease_ttl / 3;
  if (grants.empty() && leases.empty() && renews.empty() && releases.empty() && fair_keys.empty())
    return;

  const uint64_t trips_before = redis_->round_trips();
  lock.unlock();
  std::string error;
  std::vector<std::pair<std::string, int64_t>> granted;
  std::vector<std::pair<std::string, std::vector<std::string>>> leased;
  std::vector<std::pair<std::string, int64_t>> caps;  // key -> NodeCap
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
    std::vector<std::string> args = {
        std::to_string(l.limit), std::to_string(absl::ToInt64Milliseconds(options_.lease_ttl)),
        options_.node_id, std::to_string(absl::ToInt64Milliseconds(options_.wait_ttl))};
    args.insert(args.end(), l.members.begin(), l.members.end());
    auto r = redis_->Eval(kLeaseScript, {l.rkey, WaitKey(l.name)}, args);
    if (!r.ok() || r->size() < 2) {
      error = r.ok() ? "short reply" : std::string(r.status().message());
    } else {
      const int64_t n = std::clamp<int64_t>((*r)[0], 0, static_cast<int64_t>(l.members.size()));
      leased.emplace_back(l.name,
                          std::vector<std::string>(l.members.begin(), l.members.begin() + n));
      caps.emplace_back(l.name, (*r)[1]);
    }
  }
  if (!fair_keys.empty() && error.empty()) {
    std::vector<std::string> keys, args = {options_.node_id};
    for (const Lease& l : fair_keys) {
      keys.push_back(l.rkey);
      keys.push_back(WaitKey(l.name));
      args.push_back(std::to_string(l.limit));
    }
    auto r = redis_->Eval(kFairScript, keys, args);
    if (!r.ok() || r->size() != fair_keys.size()) {
      error = r.ok() ? "short reply" : std::string(r.status().message());
    } else {
      for (size_t i = 0; i < fair_keys.size(); ++i) caps.emplace_back(fair_keys[i].name, (*r)[i]);
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
  for (const auto& [name, cap] : caps) {
    auto it = keys_.find(name);
    if (it == keys_.end()) continue;
    Key& k = it->second;
    const int fair = static_cast<int>(std::clamp<int64_t>(cap, 0, k.max_connections));
    if (fair != k.node_cap.load(std::memory_order_relaxed))
      SALVO_LOG(kDebug, "fleet limits: {} connections of {} for this node{}", name,
                fair > 0 ? std::to_string(fair) : "any",
                fair > 0 ? " while another node waits" : "");
    k.node_cap.store(fair, std::memory_order_relaxed);
    // Idle slots above the part go back at once; busy ones as their
    // connections end a transaction (the engine's pools close them).
    while (fair > 0 && static_cast<int>(k.leases.size()) > std::max(fair, k.in_use)) {
      k.releasing.push_back(std::move(k.leases.back()));
      k.leases.pop_back();
      ++stats_.connections_yielded;
    }
  }
  if (!error.empty()) LoseRedis(error);
}

}  // namespace salvo::fleet
