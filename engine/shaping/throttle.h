#pragma once
// The run-time side of shaping: the state of each shaping key, shared by
// every site pool it covers, on any shard, without locks (atomics only):
//   - GCRA rate limits for messages and new connections;
//   - the count of open connections against the key's limit;
//   - adaptive backoff (AIMD): a "slow down" reply cuts the key's rate to a
//     little under the rate the destination was accepting (and its
//     connections by a quarter); each second without one raises them by 5%
//     (connections by one), never above the configured limits;
//   - suspension until a time (a rule's action = "suspend").
// Times are nanoseconds on the engine's monotonic clock.
//
// Shaper owns the registry of shared keys (provider.*, domain.*); the
// registry is touched when a site pool is created, never per message.
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/fleet/shared_limits.h"
#include "engine/shaping/shaping.h"

namespace salvo::shaping {

// Generic cell rate algorithm over an atomic theoretical arrival time.
class Gcra {
 public:
  // Takes one unit at `now_ns` if `rate` (per second) allows it, with a
  // burst of `burst` units. Returns 0 when taken, else the nanoseconds to
  // wait before one is available. A rate <= 0 always allows.
  int64_t TryTake(int64_t now_ns, double rate, double burst);
  // Nanoseconds until a unit would be available (0: now), taking nothing.
  int64_t WaitFor(int64_t now_ns, double rate, double burst) const;
  // Gives back a unit taken by TryTake (another limit said no).
  void Refund(double rate);

 private:
  std::atomic<int64_t> tat_{0};
};

// One shaping key's state. Configured limits are set once at creation (and
// on reload); everything else moves at run time.
class KeyState {
 public:
  static constexpr double kUnlimited = std::numeric_limits<double>::infinity();

  KeyState(std::string name, int max_connections, Rate message_rate, Rate connection_rate);

  const std::string& name() const { return name_; }
  // Fleet-wide limits (engine/fleet): the key's configured message rate and
  // connections are also held by the whole fleet; a message or a connection
  // needs a grant from `fleet` besides the local limits. Set once, before use.
  void AttachFleet(fleet::SharedLimits* fleet);
  // New configured limits (reload). The adaptive state is clamped to them.
  void Configure(int max_connections, Rate message_rate, Rate connection_rate);

  // --- Connections. ---
  // Non-consuming check: may a connection open now? (limit, suspension, rate)
  bool MayOpen(int64_t now_ns) const;
  // Takes a connection slot (and a connection-rate token). False: not now;
  // then *fleet_wait (if given) says whether only the fleet's slot was
  // missing (it arrives within a worker tick: ask again shortly).
  bool AcquireConnection(int64_t now_ns, bool* fleet_wait = nullptr);
  // After a fleet refusal: the pool wants `n` more connections of this key.
  void WantFleetConnections(int n);
  void ReleaseConnection();
  int open() const { return open_.load(std::memory_order_relaxed); }
  // Site pools of the key with work queued: the connection limit is shared
  // out between them (Share), so one busy site cannot keep every slot while
  // another waits.
  void PoolActive(bool active) {
    active_pools_.fetch_add(active ? 1 : -1, std::memory_order_relaxed);
  }
  // Connections one active pool may hold: the limit (or this node's part of
  // a fleet-wide limit while another node waits) over the active pools,
  // rounded up, at least 1; 0 = unlimited.
  int Share() const;
  // This node's part of the key's fleet-wide connection limit while another
  // node waits for a slot (engine/fleet NodeCap); 0 = no such part now.
  int FleetPart() const { return fleet_cap_ ? fleet_cap_->load(std::memory_order_relaxed) : 0; }

  // --- Messages. ---
  // Takes a message token; 0 or the nanoseconds to wait.
  int64_t TakeMessage(int64_t now_ns);
  void RefundMessage();
  // Nanoseconds until a message may go (suspension or rate), 0 = now.
  int64_t MessageWait(int64_t now_ns) const;

  // --- Feedback. ---
  // A "slow down" reply: cut the rate and connections (at most once a second).
  // Returns true when the limits changed (the caller logs `Describe`).
  bool SlowDown(int64_t now_ns);
  // A delivery: counts toward the observed rate; may raise the limits again.
  bool Delivered(int64_t now_ns);
  // Suspend until `until_ns` (the later of this and any earlier suspension).
  void Suspend(int64_t until_ns);
  int64_t suspended_until() const { return suspended_until_.load(std::memory_order_relaxed); }
  bool suspended(int64_t now_ns) const { return suspended_until() > now_ns; }

  // Current effective limits (adaptive, <= configured; kUnlimited / 0 = none).
  double effective_rate() const;
  int connections_now() const;
  double configured_rate() const { return configured_rate_.load(std::memory_order_relaxed); }
  int configured_connections() const { return max_connections_.load(std::memory_order_relaxed); }
  // Deliveries per second over the last full second.
  double observed_rate(int64_t now_ns) const;
  // "rate 45.0/s of 1000/s, connections 3 of 20, suspended 12 s" for logs and status.
  std::string Describe(int64_t now_ns) const;

 private:
  void CountDelivery(int64_t now_ns);

  const std::string name_;
  fleet::SharedLimits* fleet_ = nullptr;
  const std::atomic<int>* fleet_cap_ = nullptr;  // fleet_->NodeCap(name_)
  // Configured limits: atomics, as a reload may change them while any shard
  // reads them.
  std::atomic<int> max_connections_{0};          // 0 = unlimited
  std::atomic<double> configured_rate_{0};       // per second, 0 = unlimited
  std::atomic<double> configured_conn_rate_{0};  // per second, 0 = unlimited
  Gcra messages_;
  Gcra connections_;
  std::atomic<int> open_{0};
  std::atomic<int> active_pools_{0};
  std::atomic<double> rate_cap_{kUnlimited};  // adaptive, <= configured
  std::atomic<int> conn_cap_{0};              // adaptive, 0 = configured
  std::atomic<int64_t> last_cut_{std::numeric_limits<int64_t>::min() / 2};
  std::atomic<int64_t> last_raise_{0};
  std::atomic<int64_t> suspended_until_{0};
  // Deliveries in the current and the previous second (observed rate).
  std::atomic<int64_t> window_{0};
  std::atomic<uint64_t> cur_{0};
  std::atomic<uint64_t> prev_{0};
};

// What a key looks like now (status, metrics).
struct KeyView {
  std::string key;
  double rate = 0;             // messages/s now in force; 0 = unlimited
  double configured_rate = 0;  // 0 = unlimited
  int connections = 0;         // connections now allowed; 0 = unlimited
  int configured_connections = 0;
  int open = 0;
  double suspended_seconds = 0;  // > 0: suspended this much longer
  bool throttled = false;        // adaptive backoff holds it under its configuration
  std::string describe;          // KeyState::Describe
};

// Engine-wide: the resolved shaping configuration and the shared keys.
class Shaper {
 public:
  explicit Shaper(ShapingConfig config);

  // The current configuration (replaced by Reload).
  std::shared_ptr<const ShapingConfig> config() const;
  // A new configuration: shared keys keep their run-time state, with the new
  // limits; keys no longer named are dropped when their last pool goes.
  void Reload(ShapingConfig config);
  // Bumped by every Reload: pools re-resolve when it moves.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Fleet-wide limits for every shared key from now on (null: none). Call
  // before the engine starts; `fleet` outlives the Shaper.
  void SetFleet(fleet::SharedLimits* fleet) { fleet_ = fleet; }
  // The shared state of `key` ("provider.NAME" or "domain.NAME"), created on
  // first use with these limits.
  std::shared_ptr<KeyState> Shared(const std::string& key, int max_connections, Rate message_rate,
                                   Rate connection_rate);
  // Campaigns suspended by a rule (scope = "campaign"), on every shard.
  // AnyCampaignSuspended is one atomic load: the data path asks it first.
  void SuspendCampaign(uint64_t campaign, int64_t until_ns);
  bool AnyCampaignSuspended() const {
    return campaigns_suspended_.load(std::memory_order_acquire) > 0;
  }
  // When `campaign`'s suspension ends, or 0 (not suspended at `now_ns`).
  int64_t CampaignSuspendedUntil(uint64_t campaign, int64_t now_ns) const;

  // Every shared key alive (status, metrics).
  std::vector<std::shared_ptr<KeyState>> Keys() const;
  // The keys worth showing at `now_ns`: suspended or throttled ones, and
  // those the shaping file names (provider.*, domain.*); suspended first,
  // then throttled, then by name; at most `max`.
  std::vector<KeyView> Snapshot(int64_t now_ns, size_t max) const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ShapingConfig> config_;
  absl::flat_hash_map<std::string, std::weak_ptr<KeyState>> keys_;
  std::atomic<uint64_t> generation_{0};
  fleet::SharedLimits* fleet_ = nullptr;
  const std::atomic<int>* fleet_cap_ = nullptr;  // fleet_->NodeCap(name_)
  // Under mu_; mutable: a lookup past the end of a suspension forgets it.
  mutable absl::flat_hash_map<uint64_t, int64_t> suspended_campaigns_;
  mutable std::atomic<int> campaigns_suspended_{0};  // entries in suspended_campaigns_
};

}  // namespace salvo::shaping
