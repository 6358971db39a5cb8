#pragma once
// One delivery shard: a thread with its own io_uring Reactor, its mailbox
// (Post), its counters, and the parts that do the work, each in its own file:
//   router.h        DomainRouter: domain -> site (DNS, routes, bounded cache)
//   site_pool.h     SitePool: one site's queues, connections, failover, backoff
//   connection.h    Connection: one SMTP connection and its drive loop
//   compose_farm.h  ComposeFarm: composing copies ahead, spread over shards
// The shard itself keeps the thread, the mailbox, results, the registry of
// pools and connections, and shutdown (drain).
//
// Everything here is touched only from the shard's thread, except Post()
// (the mailbox) and the counters (single writer, relaxed reads).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "engine/delivery/site.h"
#include "engine/delivery/site_policy.h"
#include "engine/delivery/source.h"
#include "engine/dns/resolver.h"
#include "engine/reactor/reactor.h"
#include "engine/smtp/session.h"
#include "metrics/metrics.h"

namespace salvo::delivery {

class Engine;
class Connection;
class ComposeFarm;
class DomainRouter;
class SitePool;
struct ComposeWork;

class Shard {
 public:
  Shard(Engine* engine, int index, metrics::ShardCounters* counters);
  ~Shard();

  // The shard thread's body: creates the reactor (and TLS context), reports
  // through `started`, then runs the loop until Stop().
  void ThreadMain(std::promise<absl::Status>* started);

  // Thread-safe: run `task` on this shard's thread.
  void Post(absl::AnyInvocable<void()> task);
  void Stop();

  // --- Mailbox entries (shard thread only). ---
  // Jobs whose domain hashes to this shard: the router finds their site and
  // forwards them to its owner shard.
  void AcceptJobs(std::vector<Job> jobs);
  // Jobs for a site this shard owns.
  void AcceptForSite(std::shared_ptr<const SiteInfo> site, std::vector<Job> jobs);
  // The shaping file was reloaded: routes are resolved again, every pool
  // takes its new limits (open connections stay).
  void ShapingReloaded();
  // Graceful: defer queued jobs, finish open transactions, QUIT.
  void BeginDrain();
  // Now: close every connection; open transactions are reported deferred.
  void ForceClose();
  // Owner shard: jobs back from a compose shard.
  void AcceptComposed(std::vector<ComposeWork> work);
  // The feeder recorded this shard's result batches up to `seq` durably:
  // connections waiting for that go on.
  void DurableUpTo(uint64_t seq);

  // Any thread (relaxed reads of single-writer counters).
  uint64_t open_sessions() const { return open_sessions_.load(std::memory_order_relaxed); }
  uint64_t peak_sessions() const { return peak_sessions_.load(std::memory_order_relaxed); }
  metrics::ShardCounters* counters() const { return counters_; }
  int index() const { return index_; }

  // --- For the parts (shard thread only). ---
  Engine* engine() const { return engine_; }
  reactor::Reactor* reactor() const { return reactor_.get(); }
  dns::Resolver* resolver() const { return resolver_.get(); }
  ComposeFarm* farm() const { return farm_.get(); }
  bool draining() const { return draining_; }
  // The engine's monotonic clock (fresh, not the reactor's per-turn cache).
  std::chrono::steady_clock::time_point Now() const { return engine_clock_->Now(); }
  // The SMTP sessions' clock: wall time moving with the engine's clock.
  const Clock* session_clock() const { return &session_clock_; }
  // Session options for a connection to `host` (TLS, HELO name, timeouts)
  // of a pool with `policy`, sent from egress source `source` (-1: default).
  smtp::Options SessionOptions(const SiteHost& host, const SitePolicy& policy,
                               int source = -1) const;
  uint64_t NextEnvelopeId() { return next_envelope_id_++; }
  // Every recipient of `job` gets `outcome`; results go to the feeder in one
  // batch per loop turn.
  void Report(Job job, const smtp::Outcome& outcome);
  void AddResult(JobResult result);
  // [queue] durable_before_next: the number of the result batch a result
  // added now goes out in; a connection that reported a delivery holds its
  // next transaction (the end of data with DATA, the start with BDAT) until
  // that batch is recorded (WaitDurable, then Connection::DurableNow). 0 when
  // the gate is off.
  uint64_t PendingResultBatch() const { return durable_gate_ ? flush_seq_ + 1 : 0; }
  bool IsDurable(uint64_t batch) const { return batch <= durable_seq_; }
  void WaitDurable(Connection* c) { gated_.insert(c); }
  void StopWaiting(Connection* c) { gated_.erase(c); }
  void CountOutcome(const metrics::OutcomeLabels& labels, const smtp::Outcome& o);
  // Connection registry: every connection object alive, for ForceClose and
  // the drain check. The shard owns them (freed in Forget).
  Connection* NewConnection(SitePool* pool);
  void Forget(Connection* c);
  // delivery.max_connections is reached and `wanting` has work but no
  // connection: QUITs one idle connection of a site of this shard with
  // nothing queued, if there is one, so its slot goes to where work waits.
  void CloseAnIdleConnection(const SitePool* wanting);
  void SessionOpened(metrics::DomainSlot domain);
  void SessionClosed(metrics::DomainSlot domain);
  // Stops when draining and nothing is left (connections, compositions).
  void CheckDrained();

 private:
  SitePool* PoolFor(const std::shared_ptr<const SiteInfo>& info);
  // Where per-site limits are decided: today the [delivery] defaults; the
  // shaping rules (issue 13) resolve into the policy here.
  SitePolicy PolicyFor(const SiteInfo& info) const;
  // Drops pools with nothing queued, no connection and no penalty running
  // (the map stays bounded by the sites in use).
  void SweepPools();
  void FlushResults();

  Engine* engine_;
  const MonotonicClock* engine_clock_;
  const int index_;
  metrics::ShardCounters* counters_;
  std::unique_ptr<reactor::Reactor> reactor_;
  std::unique_ptr<smtp::TlsClientContext> tls_;
  std::unique_ptr<dns::Resolver> resolver_;
  std::unique_ptr<DomainRouter> router_;
  std::unique_ptr<ComposeFarm> farm_;
  SitePolicy defaults_;
  WallFromMonotonic session_clock_;
  absl::flat_hash_map<std::string, std::unique_ptr<SitePool>> pools_;
  absl::flat_hash_set<Connection*> all_;  // every connection object alive
  std::vector<JobResult> results_;
  bool flush_scheduled_ = false;
  bool durable_gate_ = true;                // [queue] durable_before_next
  uint64_t flush_seq_ = 0;                  // result batches handed to the feeder
  uint64_t durable_seq_ = 0;                // of those, recorded durably (DurableUpTo)
  absl::flat_hash_set<Connection*> gated_;  // waiting for DurableUpTo
  bool draining_ = false;
  bool reported_drained_ = false;
  reactor::TimerId sweep_timer_ = 0;
  std::atomic<uint64_t> open_sessions_{0};
  std::atomic<uint64_t> peak_sessions_{0};
  uint64_t next_envelope_id_ = 1;
  std::string helo_name_;
};

}  // namespace salvo::delivery
