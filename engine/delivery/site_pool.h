#pragma once
// One destination site on its owner shard: its queues, its connections, host
// failover and backoff, under its SitePolicy. A job is in exactly one place:
// `ready`, out for composition (`composing` counts them), `composed`, or on a
// connection.
//
// Where things go (see README.md):
//   - a per-site limit (connections, messages per connection): SitePolicy;
//   - a rate limit or any "not now" decision: MayOpenConnection() (a new
//     connection) and MaySendNow() (the next transaction); a caller told
//     "no" is pumped again by a timer (ArmWakeup);
//   - backoff after a site-scope failure: BackOff() / Delivered();
//   - per-site counters (a probe): a member here, created and dropped with
//     the pool.
// Owned by its Shard; shard thread only.
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "engine/delivery/site.h"
#include "engine/delivery/site_policy.h"
#include "engine/delivery/source.h"
#include "engine/reactor/reactor.h"
#include "engine/smtp/outcome.h"

namespace salvo::delivery {

class Connection;
class Shard;

class SitePool {
 public:
  using Steady = std::chrono::steady_clock;

  SitePool(Shard* shard, std::shared_ptr<const SiteInfo> info, SitePolicy policy);
  ~SitePool();

  const std::shared_ptr<const SiteInfo>& info() const { return info_; }
  const SitePolicy& policy() const { return policy_; }

  // A newer answer for the same site (DNS changed the addresses): new
  // connections use it; open ones keep theirs.
  void Refresh(std::shared_ptr<const SiteInfo> info);

  // Queues a job; one with more recipients than the policy's
  // max_recipients_per_message is split.
  void Enqueue(Job job);
  // New limits (the shaping file was reloaded). Open connections stay.
  void Reconfigure(SitePolicy policy);
  // Hands queued jobs to idle connections, opens connections as the policy
  // allows, tops compose-ahead up.
  void Pump();
  // The next job for a ready connection, `waiting` other connections of the
  // site being idle; nullopt: wait (idle).
  std::optional<Job> TakeJob(size_t waiting);
  // Every queued job (ready and composed) gets `outcome`.
  void DeferAll(const smtp::Outcome& outcome);

  // --- The "may I" hooks: backoff, the shaping keys' limits. ---
  bool MayOpenConnection(Steady::time_point now) const;
  // Nanoseconds until the next message may go (rates, suspension); 0 = now.
  int64_t SendWait(Steady::time_point now) const;
  bool MaySendNow(Steady::time_point now) const { return SendWait(now) == 0; }
  // More connections than this site's share of its provider's limit (other
  // sites of the provider wait), or than this node's part of a fleet-wide
  // limit (another node waits): a connection that finishes a transaction
  // QUITs instead of taking the next job.
  bool OverShare() const;

  // --- Connection events. ---
  // A connection to host `host` failed before its session was ready.
  // `mark_down`: the host itself is unreachable (connect refused/timed out).
  // Returns the next host to try, or -1 (then the connection closes).
  int HostFailed(size_t host, const smtp::Outcome& outcome, bool mark_down);
  // The session on `host` became ready for the first time.
  void HostWorks(size_t host);
  // A site-scope temporary failure (421, greeting refusal...): no new
  // connection before a delay that grows while it repeats.
  void BackOff(const smtp::Outcome& why);
  // A transaction was delivered: the failures no longer repeat.
  void Delivered();
  // Shaping feedback from one finished transaction or session: a delivery
  // (raises throttled limits again), a "slow down" reply (adaptive backoff),
  // a rule that suspends.
  // The smarthost refused our credentials: the route is held (its mail
  // waits, not deferred) for kAuthHold and the reason logged as an error.
  void AuthFailed(const smtp::Outcome& outcome);
  // `domain`: the recipients' domain (for rules with scope = "domain").
  void Feedback(const smtp::Outcome& outcome, std::string_view domain = {}, uint64_t campaign = 0);

  // Nothing queued, composing, connected, or penalised: the shard may drop it.
  bool Unused(Steady::time_point now) const;

  // --- State read by connections and the compose farm. ---
  std::deque<Job> ready;          // in arrival order; most not composed yet
  std::deque<Job> composed;       // bodies ready: what a ready connection sends next
  size_t composing = 0;           // sent to a compose shard, not back yet
  std::vector<Connection*> idle;  // LIFO: reuse the warmest connection
  size_t connections = 0;         // every open or opening connection
  size_t starting = 0;            // connections not yet ready for a first job
  size_t live = 0;                // connections that reached kReady at least once

 private:
  // Opens a connection if every shaping key grants a slot. Returns the key
  // whose fleet slot (engine/fleet) was the only thing missing, else null:
  // the caller asks that key for the rest of its demand and pumps again
  // shortly.
  shaping::KeyState* OpenConnection();
  void SetActive(bool active);
  void ArmWakeup(Steady::time_point at);
  static int64_t Ns(Steady::time_point t) { return t.time_since_epoch().count(); }
  // Every queued job back to the queue, untried, for `hold_ns` (suspension).
  void HoldAll(std::string_view why, int64_t hold_ns);
  // Keeps only what the throttled rate sends in the next kHoldHorizon.
  void HoldExcess(int64_t now_ns);
  void HoldSuspendedDomains(int64_t now_ns);
  void Suspend(const smtp::Outcome& outcome, std::string_view domain, uint64_t campaign,
               int64_t now_ns);
  // Jobs at the front of the queues whose campaign is suspended go back to
  // the queue (held) until it ends.
  void HoldSuspendedCampaigns(int64_t now_ns);

  Shard* shard_;
  std::shared_ptr<const SiteInfo> info_;
  SitePolicy policy_;
  std::vector<Steady::time_point> down_until_;  // per host of info_: connect failed
  smtp::Outcome last_failure_;
  Steady::time_point paused_until_{};  // every host down: defer, don't hold
  // Backoff (site-scope temporary failures): no new connection before
  // `backoff_until_`; each failure also halves `open_cap_`, the connections
  // the pool may open (<= max_connections); it grows back by one per backoff
  // period without a failure.
  Steady::duration backoff_{};
  Steady::time_point backoff_until_{};
  // A route with credentials opens one connection until a session got past
  // AUTH: wrong credentials then cost the smarthost one failed login, not
  // one per connection (which trips lockouts).
  bool auth_proven_ = false;
  Steady::time_point last_site_failure_{};
  Steady::time_point last_growth_{};
  size_t open_cap_;
  bool active_ = false;  // counted in the provider's active pools
  // Domains of this pool suspended by a rule with scope = "domain" (their
  // pool is shared with other domains): until when.
  std::vector<std::pair<std::string, int64_t>> suspended_domains_;
  reactor::TimerId wakeup_ = 0;
  Steady::time_point wakeup_at_{};
};

}  // namespace salvo::delivery
