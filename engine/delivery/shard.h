#pragma once
// One delivery shard: a thread with its own io_uring Reactor, the sites it
// owns (ready queue, composed queue and connection pool per site), its TLS
// context and its counters. It also composes jobs for any shard's sites
// (ComposeFor), so signing is spread over every shard. Everything here is
// touched only from the shard's thread, except Post() (the mailbox) and the
// counters (single writer, relaxed reads).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "engine/delivery/site.h"
#include "engine/delivery/source.h"
#include "engine/dns/resolver.h"
#include "engine/reactor/reactor.h"
#include "engine/smtp/session.h"
#include "metrics/metrics.h"

namespace salvo::delivery {

class Engine;
struct Connection;
struct Site;

// A job on its way to a compose shard and back, by value. `site` is the
// owner shard's Site: an opaque handle elsewhere, dereferenced only on the
// owner's thread (sites live as long as their shard).
struct ComposeWork {
  Site* site = nullptr;
  Job job;
  absl::Status status;     // Compose()'s answer
  bool permanent = false;  // with a failed status: bounce, else defer
};

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

  // --- Shard thread only. ---
  // Jobs whose domain hashes to this shard: find their site, forward to its
  // owner shard.
  void AcceptJobs(std::vector<Job> jobs);
  // Jobs for a site this shard owns.
  void AcceptForSite(std::shared_ptr<const SiteInfo> site, std::vector<Job> jobs);
  // Graceful: defer queued jobs, finish open transactions, QUIT.
  void BeginDrain();
  // Now: close every connection; open transactions are reported deferred.
  void ForceClose();
  // Compose shard: render + sign jobs for `owner` (any shard, this one
  // included), then hand them back to it.
  void ComposeFor(int owner, std::vector<ComposeWork> work);
  // Owner shard: jobs back from a compose shard.
  void AcceptComposed(std::vector<ComposeWork> work);

  // Any thread (relaxed reads of single-writer counters).
  uint64_t open_sessions() const { return open_sessions_.load(std::memory_order_relaxed); }
  uint64_t peak_sessions() const { return peak_sessions_.load(std::memory_order_relaxed); }
  metrics::ShardCounters* counters() const { return counters_; }
  int index() const { return index_; }

 private:
  friend struct Connection;
  Site* SiteFor(const std::shared_ptr<const SiteInfo>& info);
  void StartResolve(const std::string& domain);
  void OnResolved(const std::string& domain, absl::StatusOr<dns::Site> result);
  std::shared_ptr<const SiteInfo> ToSiteInfo(const dns::Site& site);
  void RouteJob(const std::shared_ptr<const SiteInfo>& info, Job job);
  void FlushRouted();
  void Pump(Site* site);
  void TopUp(Site* site);
  void FlushCompose();
  std::optional<Job> TakeJob(Site* site, size_t waiting);
  absl::Status ComposeHere(Job* job, bool* permanent);
  void ReportComposeFailure(Job job, const absl::Status& status, bool permanent);
  void DeferAll(Site* site, const smtp::Outcome& outcome);
  void OpenConnection(Site* site);
  void ConnectTo(Connection* c, size_t host_index);
  void OnConnected(Connection* c, int res);
  void Drive(Connection* c);
  void OnReady(Connection* c);
  bool StartJob(Connection* c, Job job);
  void ReportJob(Connection* c, std::vector<smtp::Outcome> outcomes);
  void BackOff(Site* site, const smtp::Outcome& why);
  void Delivered(Site* site);
  void Flush(Connection* c);
  void ArmDeadline(Connection* c);
  void SessionFinished(Connection* c);
  void HostFailed(Connection* c, const smtp::Outcome& outcome, bool mark_down);
  void CloseConnection(Connection* c, int retry_host);
  void Destroyed(Connection* c);
  void MakeIdle(Connection* c);
  void Unidle(Connection* c);
  void Report(Job job, const smtp::Outcome& outcome);
  void AddResult(JobResult result);
  void FlushResults();
  void CountOutcome(const smtp::Outcome& o);
  void CheckDrained();
  smtp::Options SessionOptions(const SiteHost& host) const;

  Engine* engine_;
  const int index_;
  metrics::ShardCounters* counters_;
  std::unique_ptr<reactor::Reactor> reactor_;
  std::unique_ptr<smtp::TlsClientContext> tls_;
  std::unique_ptr<dns::Resolver> resolver_;
  struct DomainSite {
    std::shared_ptr<const SiteInfo> site;
    std::chrono::steady_clock::time_point expires;
  };
  // Domains whose home is this shard → their site (cached per TTL).
  absl::flat_hash_map<std::string, DomainSite> domain_sites_;
  absl::flat_hash_map<std::string, std::shared_ptr<const SiteInfo>> site_infos_;
  // Jobs waiting for their domain's MX resolution.
  absl::flat_hash_map<std::string, std::vector<Job>> resolving_;
  // Resolved jobs to hand to owner shards at the end of this turn.
  absl::flat_hash_map<
      int, absl::flat_hash_map<std::string,
                               std::pair<std::shared_ptr<const SiteInfo>, std::vector<Job>>>>
      outgoing_;
  absl::flat_hash_map<std::string, std::unique_ptr<Site>> sites_;
  absl::flat_hash_set<Connection*> all_;  // every connection object alive
  std::vector<JobResult> results_;
  bool flush_scheduled_ = false;
  // Compose-ahead: jobs to send to each compose shard at the end of this
  // turn (index = shard), the next shard in the round-robin, and how many of
  // this shard's jobs are being composed (here or elsewhere) right now.
  std::vector<std::vector<ComposeWork>> compose_out_;
  bool compose_flush_scheduled_ = false;
  size_t next_composer_ = 0;
  size_t composing_ = 0;
  std::chrono::steady_clock::duration compose_avg_{};  // Compose() time here, moving average
  bool draining_ = false;
  bool reported_drained_ = false;
  size_t connections_ = 0;
  std::atomic<uint64_t> open_sessions_{0};
  std::atomic<uint64_t> peak_sessions_{0};
  uint64_t next_envelope_id_ = 1;
  std::string helo_name_;
};

}  // namespace salvo::delivery
