#pragma once
// The delivery engine: N shards (threads), each with its own io_uring
// Reactor, pinned to a CPU. Every destination site belongs to exactly one
// shard (ShardFor(site key)), so its connection pool and ready queue are
// shard-local and need no locks.
//
// Flow of a Job:
//   feeder thread (the caller of Run): MessageSource::Fetch → Post to the
//     domain's home shard (hash of the domain)
//   home shard: resolve the domain to a Site (routing override, or DNS when
//     a resolver is configured) → Post to the site's owner shard if another
//   owner shard: site ready queue → compose-ahead: a few jobs per site (about
//     one per connection) go to the engine's ComposeQueue, which every shard
//     (the owner included) takes from, ~0.5 ms of jobs per loop turn
//   compose shard: MessageSource::Compose (render + DKIM sign, with its own
//     shard index) → Post the composed job back to the owner
//   owner shard: site composed queue → pooled SMTP connection (MX hosts tried
//     in order on refuse/timeout) → smtp::Session. A connection that finds
//     nothing composed and nothing on its way composes a job itself.
//   owner shard: per-recipient Outcomes batched per loop turn → feeder
//   feeder: MessageSource::Complete (blocking RocksDB writes stay here)
//
// Shutdown: RequestShutdown() (SIGTERM) stops fetching, defers queued jobs,
// lets in-flight transactions finish within `shutdown_deadline`, QUITs, then
// Run() returns. ForceShutdown() (second SIGINT, or the deadline) closes every
// connection at once: open transactions are reported deferred, never
// delivered (only a 250 after the final dot counts as delivered).
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/common/clock.h"
#include "engine/config/config.h"
#include "engine/delivery/compose_farm.h"
#include "engine/delivery/source.h"
#include "engine/dns/resolver.h"
#include "engine/shaping/throttle.h"
#include "engine/smtp/session.h"

namespace salvo::metrics {
class Registry;
}

namespace salvo::delivery {

class Shard;

struct EngineStats {
  uint64_t delivered = 0;  // recipients
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t messages = 0;  // transactions that reached the final dot with a 2xx
  uint64_t sessions_opened = 0;
  uint64_t connect_failures = 0;
  uint64_t bytes_sent = 0;
  uint64_t open_sessions = 0;  // now
  uint64_t peak_sessions = 0;  // max over shards summed (approximate peak)
  uint64_t jobs_in_flight = 0;
  // delivery.max_connections: connections open or opening now (every shard)
  // and the most at once; times a pool had to wait for a slot.
  uint64_t connections = 0;
  uint64_t connections_peak = 0;
  uint64_t connection_waits = 0;
  // delivery.max_composed_bytes: bytes of copies composed ahead and not yet
  // sent, the most at once, and copies not composed ahead for the cap.
  uint64_t composed_bytes = 0;
  uint64_t composed_bytes_peak = 0;
  uint64_t compose_waits = 0;
};

struct EngineOptions {
  // Overrides config.delivery.in_flight_limit etc. when set (tests, bench).
  int shards = 0;  // 0 = config.EffectiveShards()
  // Called on the feeder thread about every second while running (progress).
  std::function<void(const EngineStats&)> on_tick;
  // Time for every timer and deadline (reactor timers, backoff, DNS cache,
  // poll interval, shutdown deadline); nullptr = the real steady clock.
  // Tests pass a FakeMonotonicClock and advance it. Must outlive the engine.
  const MonotonicClock* clock = nullptr;
};

class Engine {
 public:
  // Validates the configuration (routes resolved, TLS context) and checks
  // io_uring. `source` must outlive the engine. `registry` (optional) gets one
  // ShardCounters per shard.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const config::Config& config,
                                                        MessageSource* source,
                                                        metrics::Registry* registry = nullptr,
                                                        EngineOptions options = {});
  ~Engine();

  // Starts the shard threads and runs the feeder loop on the calling thread
  // until the source is Done (and everything in flight completed) or a
  // shutdown finished. Returns an error if a shard could not start or the
  // source failed.
  absl::Status Run();

  // Thread-safe, async-signal-unsafe (call from a signal-handling thread).
  void RequestShutdown();
  void ForceShutdown();
  bool shutting_down() const { return shutdown_.load(); }
  // After Run: true when it ended because the source was done.
  bool finished() const { return done_; }

  EngineStats Stats() const;

  // SIGHUP: reads the shaping file again. A bad file is an error naming
  // file:line:column and the old configuration stays in force; a good one
  // applies to new connections and every site pool at once, open connections
  // stay. Thread-safe (call from the signal-handling thread).
  absl::Status ReloadShaping();
  shaping::Shaper* shaper() const { return shaper_.get(); }
  metrics::Registry* registry() const { return registry_; }
  // Null unless [fleet] redis is set.
  fleet::SharedLimits* fleet_limits() const { return fleet_limits_.get(); }

  // Egress sources ([[egress.source]]) resolved once, and each pool's
  // sources (indices into egress_sources()). Read-only after Create.
  struct EgressSource {
    std::string name;
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string ehlo;  // "" = the default HELO name
    absl::Time warmup_start = absl::InfinitePast();
    std::vector<std::pair<int, uint64_t>> warmup;  // (from day, limit)
  };
  // Warm-up: may `source` take one more message today for shaping key
  // `key`? Counts it when it may. Sources without a schedule always may.
  // Thread-safe (a mutex, taken only for sources warming up).
  bool WarmupTake(int source, const std::string& key);
  const std::vector<EgressSource>& egress_sources() const { return egress_sources_; }
  const std::vector<std::vector<int>>& egress_pools() const { return egress_pools_; }

  // Smarthost routes with SMTP AUTH or their own TLS mode ([[route]]
  // auth_user, auth_password_file/env, tls), passwords read at Create.
  struct RouteAuth {
    std::string pattern;  // the route's domain: "example.com", "*.example.com", "*"
    std::string where;    // "file:line"
    std::optional<smtp::Credentials> credentials;
    std::optional<shaping::Tls> tls;
    bool spread = false;  // one site pool per shard, limits shared
  };
  // The one that applies to mail for `domain` (the route's own matching), or
  // -1. Read-only after Create.
  int RouteAuthFor(std::string_view domain) const;
  const std::vector<RouteAuth>& route_auth() const { return route_auth_; }
  // The shaping keys worth showing now (suspended, throttled, named in the
  // file); at most `max`. Thread-safe.
  std::vector<shaping::KeyView> ShapingSnapshot(size_t max = 100) const {
    return shaper_->Snapshot(clock_->Now().time_since_epoch().count(), max);
  }
  int shard_count() const { return static_cast<int>(shards_.size()); }

  // --- Called by shards (any shard thread). ---
  // `seq`: the shard's number for this batch (1, 2, ...): once the source
  // says it is durable, the shard hears DurableUpTo(seq) (durable_before_next).
  void PostResults(int shard, uint64_t seq, std::vector<JobResult> results);
  Shard* shard(int i) const { return shards_[i].get(); }
  const config::Config& config() const { return config_; }
  const MonotonicClock* clock() const { return clock_; }
  const dns::ResolverOptions& resolver_options() const { return resolver_options_; }
  MessageSource* source() const { return source_; }
  void ShardStopped();

  // delivery.max_connections, shared by every shard without a lock (one
  // atomic per connection opened or closed, never per message). Take one
  // before opening a connection; false: at the cap, the pool waits.
  bool TakeConnectionSlot();
  void ReleaseConnectionSlot();
  bool AtConnectionCap() const {
    return connections_.load(std::memory_order_relaxed) >= max_connections_;
  }
  // delivery.max_composed_bytes. Room to compose another copy ahead?
  bool ComposedRoom() const {
    return composed_bytes_.load(std::memory_order_relaxed) < max_composed_bytes_;
  }
  // A copy composed ahead: counted while its body lives (until it is sent
  // and dropped, or deferred). False (nothing counted, the body untouched)
  // when the cap is reached; a copy is admitted whenever nothing else is
  // held, however large, so the total stays under the cap plus one copy.
  bool AdmitComposed(std::shared_ptr<const std::string>* body);
  // Copies waiting to be composed, for every shard to take (ComposeFarm).
  ComposeQueue* compose_queue() { return compose_queue_.get(); }

 private:
  Engine(const config::Config& config, MessageSource* source, EngineOptions options);
  void Dispatch(std::vector<Job> jobs);
  void StopShards(bool force);
  // Feeder: tells each shard which of its result batches the source has
  // recorded durably (`posted`: the newest batch per shard handed to Complete).
  void AckDurable(const std::vector<uint64_t>& posted);

  config::Config config_;
  MessageSource* source_;
  EngineOptions options_;
  const MonotonicClock* clock_;
  dns::ResolverOptions resolver_options_;
  // Resource caps (delivery.max_connections, delivery.max_composed_bytes);
  // before the shards: bodies their pools hold give their bytes back here.
  int64_t max_connections_ = 1;
  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> connections_peak_{0};
  std::atomic<uint64_t> connection_waits_{0};
  uint64_t max_composed_bytes_ = 1;
  std::atomic<uint64_t> composed_bytes_{0};
  std::atomic<uint64_t> composed_bytes_peak_{0};
  std::atomic<uint64_t> compose_waits_{0};
  // Fleet-wide limits ([fleet] redis); before the shards and the shaper,
  // whose shaping keys use it, so it is destroyed after them.
  std::unique_ptr<fleet::SharedLimits> fleet_limits_;
  // Before the shards: jobs in it point at their owners' pools.
  std::unique_ptr<ComposeQueue> compose_queue_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;

  std::atomic<bool> shutdown_{false};
  std::atomic<bool> force_{false};

  absl::Mutex mu_;
  std::vector<JobResult> results_ ABSL_GUARDED_BY(mu_);
  // Per shard: the newest result batch posted (PostResults' seq).
  std::vector<uint64_t> posted_seq_ ABSL_GUARDED_BY(mu_);
  // Feeder thread: per shard, the newest batch acknowledged as durable.
  std::vector<uint64_t> acked_seq_;
  int shards_stopped_ ABSL_GUARDED_BY(mu_) = 0;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // PostResults wakes the feeder once this many results wait (see Run).
  size_t wake_at_results_ ABSL_GUARDED_BY(mu_) = 1;
  size_t in_flight_ = 0;  // feeder thread only
  bool done_ = false;     // the source finished (as opposed to a shutdown request)
  std::unique_ptr<metrics::Registry> own_registry_;
  metrics::Registry* registry_ = nullptr;  // own_registry_ or the caller's
  std::unique_ptr<shaping::Shaper> shaper_;
  std::vector<EgressSource> egress_sources_;
  absl::Mutex warmup_mu_;
  absl::flat_hash_map<std::string, uint64_t> warmup_counts_ ABSL_GUARDED_BY(warmup_mu_);
  std::vector<RouteAuth> route_auth_;
  std::vector<std::vector<int>> egress_pools_;
  std::atomic<uint64_t> in_flight_shadow_{0};
};

}  // namespace salvo::delivery
