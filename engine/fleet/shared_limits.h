#pragma once
// Fleet-wide limits: a provider's message rate and connection limits held by
// the whole fleet, not per node (ten nodes each sending Gmail's 3,000/min
// would be 30,000/min). The state lives in Redis:
//
// - Message rates: GCRA (generic cell rate algorithm) in one Lua script per
//   grant. Redis keeps the key's theoretical arrival time (TAT, from Redis's
//   own clock, so node clocks do not matter); a grant takes up to `want`
//   messages at once and moves the TAT by want x (1 / rate). The burst
//   tolerance is one batch, so the fleet's long-run rate is the limit.
// - Connections: leases with expiry in a sorted set per key (member = node
//   and slot, score = expiry); a node renews its leases every lease_ttl / 3,
//   so a dead node's connections are freed after lease_ttl.
// - Fairness between nodes: a node refused a slot is marked waiting (a second
//   sorted set per key, node -> expiry). While another node waits, no node is
//   granted more than ceil(limit / nodes holding or waiting), and a node that
//   holds more learns it within fair_interval (NodeCap) and gives slots back
//   as its connections end their transaction (the engine's pools close a
//   connection over their share). Without this the node that started first
//   keeps every slot of a busy key for as long as it stays busy.
//
// Batches keep Redis off the per-message path: a worker thread takes grants
// of `batch` worth of the rate (200 ms by default) into a local pool before
// it runs dry; TakeMessages and AcquireConnection only touch the pool (a
// mutex, no I/O), so a delivery shard never waits on Redis.
//
// Redis unreachable (connect or command fails, or takes longer than
// redis_timeout): each node falls back to its share of every limit, limit /
// fleet_size for rates and ceil(limit / fleet_size) connections — never to
// no limit — and tries Redis again every retry_interval; once it answers the
// node takes shared grants again (connections it holds are leased again).
//
// Who calls it: the traffic shaping engine (engine/shaping, issue 13) asks
// TakeMessages / AcquireConnection per shaping key before it sends, in
// addition to its own local limits. One SharedLimits per process, shared by
// every shard; all methods are thread-safe.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace salvo::fleet {

class RedisClient;

struct SharedLimitsOptions {
  std::string redis;                               // "host:port"
  std::string node_id;                             // unique in the fleet (e.g. the host name)
  int fleet_size = 1;                              // N: the fallback share is limit / N
  absl::Duration batch = absl::Milliseconds(200);  // a grant covers this much of the rate
  absl::Duration lease_ttl = absl::Seconds(15);    // a dead node's connections free after this
  absl::Duration redis_timeout = absl::Milliseconds(250);
  absl::Duration retry_interval = absl::Seconds(1);  // while falling back
  absl::Duration tick = absl::Milliseconds(10);      // worker period
  // How often a node holding more than its share of a connection limit asks
  // whether another node waits, and how long a refused node counts as waiting.
  absl::Duration fair_interval = absl::Milliseconds(250);
  absl::Duration wait_ttl = absl::Seconds(1);
  std::string key_prefix = "salvo:fleet:";
};

struct SharedLimitsStats {
  bool shared = false;  // false: falling back to the local share
  uint64_t redis_round_trips = 0;
  uint64_t messages_granted = 0;     // by Redis, in batches
  uint64_t messages_taken = 0;       // by TakeMessages (shared or fallback)
  uint64_t message_refusals = 0;     // TakeMessages calls that got nothing (pool empty)
  uint64_t connection_refusals = 0;  // AcquireConnection calls refused (no slot held yet)
  uint64_t connections_yielded = 0;  // slots given back because another node waited
  uint64_t fallbacks = 0;            // times Redis was lost
  uint64_t recoveries = 0;           // times it came back
};

class SharedLimits {
 public:
  explicit SharedLimits(SharedLimitsOptions options);
  // Releases every connection lease, then stops the worker.
  ~SharedLimits();
  SharedLimits(const SharedLimits&) = delete;
  SharedLimits& operator=(const SharedLimits&) = delete;

  // Declares (or changes) the fleet-wide limits of a shaping key:
  // messages_per_second 0 = no rate limit, max_connections 0 = none.
  void SetLimit(std::string_view key, double messages_per_second, int max_connections);

  // How many of `want` messages to `key` may be sent now (0..want). Never
  // blocks on Redis. A key without a rate limit grants everything.
  int64_t TakeMessages(std::string_view key, int64_t want);
  // A connection slot for `key`, or false (none free now: try later). Every
  // true must be paired with ReleaseConnection.
  bool AcquireConnection(std::string_view key);
  void ReleaseConnection(std::string_view key);
  // A pool refused a slot still wants `n` more connections of `key`: the
  // next round trip asks Redis for that many at once (not one per refusal
  // per tick, which would open a busy pool's connections one tick apart).
  void WantConnections(std::string_view key, int n);
  // The connections of `key` this node may hold now so that every node that
  // holds or waits for one gets its part: 0 = no cap besides the limit (no
  // other node waits). Set by the worker; the pointer stays valid for the
  // life of this object (null for a key never declared by SetLimit). The
  // engine closes connections above it at their next transaction end, and
  // ReleaseConnection then gives the slot back to the fleet at once.
  const std::atomic<int>* NodeCap(std::string_view key);

  SharedLimitsStats Stats() const;
  bool shared() const { return shared_.load(); }

  // Tests: stop the worker without releasing anything, as if the process
  // died (its leases then expire after lease_ttl).
  void AbandonForTest();

 private:
  struct Key {
    std::string name;
    double rate = 0;  // messages per second, fleet-wide
    int max_connections = 0;
    double tokens = 0;  // granted and not yet taken
    bool wants_messages = false;
    absl::Time next_grant = absl::InfinitePast();
    absl::Time fallback_last;         // local refill clock
    std::vector<std::string> leases;  // slots this node holds in Redis
    int in_use = 0;
    bool wants_connection = false;
    int wanted = 0;  // AcquireConnection refusals since the last tick (slots to ask for)
    uint64_t next_slot = 0;
    absl::Time idle_since = absl::InfiniteFuture();
    std::atomic<int> node_cap{0};        // see NodeCap
    std::vector<std::string> releasing;  // given back, to remove from Redis
    absl::Time next_fair_check = absl::InfinitePast();
  };
  int64_t BatchSize(const Key& k) const;
  int FallbackConnections(const Key& k) const;
  std::string WaitKey(std::string_view name) const;  // nodes waiting for a slot of `name`
  void Run();
  void Tick(std::unique_lock<std::mutex>& lock);
  void LoseRedis(const std::string& why);

  const SharedLimitsOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Key, std::less<>> keys_;
  std::unique_ptr<RedisClient> redis_;  // worker thread only
  absl::Time next_redis_try_ = absl::InfinitePast();
  absl::Time next_renew_ = absl::InfinitePast();
  absl::Time reclaim_until_ = absl::InfinitePast();  // after a recovery: no new slots yet
  std::atomic<bool> shared_{false};
  std::minstd_rand jitter_;  // grant pacing; the worker thread only
  std::atomic<bool> stop_{false};
  bool release_on_stop_ = true;
  SharedLimitsStats stats_;
  std::thread worker_;
};

}  // namespace salvo::fleet
