// Shaping keys at run time: GCRA, connection slots, AIMD, suspension.
// Every member is an atomic: any shard may touch a shared key.
#include "engine/shaping/throttle.h"

#include <algorithm>
#include <cmath>

#include "engine/common/strings.h"
#include "fmt/format.h"

namespace salvo::shaping {
namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr double kCutFactor = 0.9;           // a cut goes to 90% of the observed rate
constexpr double kRaiseFactor = 0.05;        // +5% (at least 0.5/s) per second without trouble
constexpr double kFloor = 0.1;               // never below 0.1 message/s (6/min)
constexpr int64_t kFleetWaitNs = 5'000'000;  // no fleet grant in the pool yet: ask again

double Burst(double rate) { return std::max(1.0, rate / 10.0); }

}  // namespace

int64_t Gcra::TryTake(int64_t now_ns, double rate, double burst) {
  if (!(rate > 0) || std::isinf(rate)) return 0;
  const auto t = static_cast<int64_t>(1e9 / rate);
  const auto tau = static_cast<int64_t>(static_cast<double>(t) * (burst - 1));
  int64_t tat = tat_.load(std::memory_order_relaxed);
  while (true) {
    const int64_t base = std::max(tat, now_ns);
    if (base - now_ns > tau) return base - now_ns - tau;
    if (tat_.compare_exchange_weak(tat, base + t, std::memory_order_relaxed)) return 0;
  }
}

int64_t Gcra::WaitFor(int64_t now_ns, double rate, double burst) const {
  if (!(rate > 0) || std::isinf(rate)) return 0;
  const auto t = static_cast<int64_t>(1e9 / rate);
  const auto tau = static_cast<int64_t>(static_cast<double>(t) * (burst - 1));
  const int64_t base = std::max(tat_.load(std::memory_order_relaxed), now_ns);
  return base - now_ns > tau ? base - now_ns - tau : 0;
}

void Gcra::Refund(double rate) {
  if (!(rate > 0) || std::isinf(rate)) return;
  tat_.fetch_sub(static_cast<int64_t>(1e9 / rate), std::memory_order_relaxed);
}

KeyState::KeyState(std::string name, int max_connections, Rate message_rate, Rate connection_rate)
    : name_(std::move(name)) {
  Configure(max_connections, message_rate, connection_rate);
}

void KeyState::AttachFleet(fleet::SharedLimits* fleet) {
  fleet_ = fleet;
  if (fleet_) {
    fleet_->SetLimit(name_, configured_rate(), configured_connections());
    fleet_cap_ = fleet_->NodeCap(name_);
  }
}

void KeyState::Configure(int max_connections, Rate message_rate, Rate connection_rate) {
  const int conns = std::max(0, max_connections);
  const double rate = message_rate.unlimited() ? 0 : message_rate.per_second;
  if (fleet_) fleet_->SetLimit(name_, rate, conns);
  max_connections_.store(conns, std::memory_order_relaxed);
  configured_rate_.store(rate, std::memory_order_relaxed);
  configured_conn_rate_.store(connection_rate.unlimited() ? 0 : connection_rate.per_second,
                              std::memory_order_relaxed);
  if (rate > 0 && rate_cap_.load() >= rate) rate_cap_.store(kUnlimited);
  if (conns > 0 && conn_cap_.load() >= conns) conn_cap_.store(0);
}

double KeyState::effective_rate() const {
  double cap = rate_cap_.load(std::memory_order_relaxed);
  return configured_rate() > 0 ? std::min(configured_rate(), cap) : cap;
}

int KeyState::connections_now() const {
  const int cap = conn_cap_.load(std::memory_order_relaxed);
  if (cap <= 0) return configured_connections();
  return configured_connections() > 0 ? std::min(cap, configured_connections()) : cap;
}

bool KeyState::MayOpen(int64_t now_ns) const {
  if (suspended(now_ns)) return false;
  const int limit = connections_now();
  if (limit > 0 && open() >= limit) return false;
  const double conn_rate = configured_conn_rate_.load(std::memory_order_relaxed);
  return connections_.WaitFor(now_ns, conn_rate, Burst(conn_rate)) == 0;
}

bool KeyState::AcquireConnection(int64_t now_ns, bool* fleet_wait) {
  if (fleet_wait) *fleet_wait = false;
  if (suspended(now_ns)) return false;
  const int limit = connections_now();
  int n = open_.load(std::memory_order_relaxed);
  do {
    if (limit > 0 && n >= limit) return false;
  } while (!open_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  const double conn_rate = configured_conn_rate_.load(std::memory_order_relaxed);
  if (connections_.TryTake(now_ns, conn_rate, Burst(conn_rate)) != 0) {
    open_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  // The fleet's slot last: a local refusal costs the fleet nothing.
  if (fleet_ && !fleet_->AcquireConnection(name_)) {
    connections_.Refund(conn_rate);
    open_.fetch_sub(1, std::memory_order_relaxed);
    if (fleet_wait) *fleet_wait = true;
    return false;
  }
  return true;
}

void KeyState::WantFleetConnections(int n) {
  if (fleet_) fleet_->WantConnections(name_, n);
}

int KeyState::Share() const {
  int limit = connections_now();
  if (limit <= 0) return 0;
  // This node's part of the fleet's limit while another node waits for a
  // slot: connections above it close at their next transaction end.
  if (const int part = FleetPart(); part > 0) limit = std::min(limit, part);
  const int pools = std::max(1, active_pools_.load(std::memory_order_relaxed));
  return std::max(1, (limit + pools - 1) / pools);
}

void KeyState::ReleaseConnection() {
  open_.fetch_sub(1, std::memory_order_relaxed);
  if (fleet_) fleet_->ReleaseConnection(name_);
}

int64_t KeyState::TakeMessage(int64_t now_ns) {
  if (int64_t s = suspended_until(); s > now_ns) return s - now_ns;
  const double rate = effective_rate();
  if (fleet_) {
    // Local first without taking, then the fleet's grant (never waits on
    // Redis: the grant pool is refilled by its own thread), then the local
    // token. A lost race after the grant wastes one grant, never exceeds.
    if (int64_t w = messages_.WaitFor(now_ns, rate, Burst(rate)); w > 0) return w;
    if (fleet_->TakeMessages(name_, 1) == 0) return kFleetWaitNs;
  }
  return messages_.TryTake(now_ns, rate, Burst(rate));
}

void KeyState::RefundMessage() { messages_.Refund(effective_rate()); }

int64_t KeyState::MessageWait(int64_t now_ns) const {
  if (int64_t s = suspended_until(); s > now_ns) return s - now_ns;
  const double rate = effective_rate();
  return messages_.WaitFor(now_ns, rate, Burst(rate));
}

void KeyState::CountDelivery(int64_t now_ns) {
  const int64_t sec = now_ns / kSecond;
  int64_t w = window_.load(std::memory_order_relaxed);
  if (w != sec && window_.compare_exchange_strong(w, sec, std::memory_order_relaxed)) {
    prev_.store(sec == w + 1 ? cur_.exchange(0, std::memory_order_relaxed) : 0,
                std::memory_order_relaxed);
    if (sec != w + 1) cur_.store(0, std::memory_order_relaxed);
  }
  cur_.fetch_add(1, std::memory_order_relaxed);
}

double KeyState::observed_rate(int64_t now_ns) const {
  const int64_t sec = now_ns / kSecond;
  const int64_t w = window_.load(std::memory_order_relaxed);
  if (w == sec) return static_cast<double>(prev_.load(std::memory_order_relaxed));
  if (w == sec - 1) return static_cast<double>(cur_.load(std::memory_order_relaxed));
  return 0;
}

bool KeyState::SlowDown(int64_t now_ns) {
  int64_t last = last_cut_.load(std::memory_order_relaxed);
  if (now_ns - last < kSecond) return false;
  if (!last_cut_.compare_exchange_strong(last, now_ns, std::memory_order_relaxed)) return false;
  const double current = effective_rate();
  const double observed = observed_rate(now_ns);
  double next;
  if (observed > 0)
    next = std::min(current, observed) * kCutFactor;
  else
    next = std::isinf(current) ? kFloor * 10 : current / 2;
  rate_cap_.store(std::max(kFloor, next), std::memory_order_relaxed);
  const int conns =
      std::max(1, std::min(open(), connections_now() > 0 ? connections_now() : open()));
  conn_cap_.store(std::max(1, conns * 3 / 4), std::memory_order_relaxed);
  return true;
}

bool KeyState::Delivered(int64_t now_ns) {
  CountDelivery(now_ns);
  if (now_ns - last_cut_.load(std::memory_order_relaxed) < kSecond) return false;
  int64_t last = last_raise_.load(std::memory_order_relaxed);
  if (now_ns - last < kSecond) return false;
  if (!last_raise_.compare_exchange_strong(last, now_ns, std::memory_order_relaxed)) return false;
  bool changed = false;
  double cap = rate_cap_.load(std::memory_order_relaxed);
  if (!std::isinf(cap)) {
    cap += std::max(0.5, cap * kRaiseFactor);
    if ((configured_rate() > 0 && cap >= configured_rate()) || cap > 1e7) cap = kUnlimited;
    rate_cap_.store(cap, std::memory_order_relaxed);
    changed = true;
  }
  int cc = conn_cap_.load(std::memory_order_relaxed);
  if (cc > 0) {
    cc++;
    if (configured_connections() > 0 && cc >= configured_connections()) cc = 0;
    if (configured_connections() == 0 && cc > 100000) cc = 0;
    conn_cap_.store(cc, std::memory_order_relaxed);
    changed = true;
  }
  return changed;
}

void KeyState::Suspend(int64_t until_ns) {
  int64_t cur = suspended_until_.load(std::memory_order_relaxed);
  while (cur < until_ns &&
         !suspended_until_.compare_exchange_weak(cur, until_ns, std::memory_order_relaxed)) {
  }
}

std::string KeyState::Describe(int64_t now_ns) const {
  std::string s;
  const double rate = effective_rate();
  if (std::isinf(rate))
    s = "rate unlimited";
  else
    s = fmt::format("rate {:.1f}/s", rate);
  if (configured_rate() > 0 && rate < configured_rate())
    s += fmt::format(" of {:g}/s", configured_rate());
  const int c = connections_now();
  s += c > 0 ? fmt::format(", connections {}", c) : std::string(", connections unlimited");
  if (configured_connections() > 0 && c < configured_connections())
    s += fmt::format(" of {}", configured_connections());
  s += fmt::format(" ({} open)", open());
  if (suspended(now_ns))
    s += fmt::format(", suspended {:.0f} s more",
                     static_cast<double>(suspended_until() - now_ns) / 1e9);
  return s;
}

Shaper::Shaper(ShapingConfig config)
    : config_(std::make_shared<const ShapingConfig>(std::move(config))) {}

std::shared_ptr<const ShapingConfig> Shaper::config() const {
  std::lock_guard<std::mutex> lock(mu_);
  return config_;
}

void Shaper::Reload(ShapingConfig config) {
  auto fresh = std::make_shared<const ShapingConfig>(std::move(config));
  std::lock_guard<std::mutex> lock(mu_);
  config_ = fresh;
  // Shared keys named by the new file take its limits now; the others keep
  // theirs until their pools re-resolve and let them go.
  for (auto it = keys_.begin(); it != keys_.end();) {
    auto next = std::next(it);
    std::shared_ptr<KeyState> k = it->second.lock();
    if (!k) {
      keys_.erase(it);
    } else if (k->name().rfind("provider.", 0) == 0) {
      const std::string name = k->name().substr(9);
      for (const Provider& p : fresh->providers)
        if (p.name == name)
          k->Configure(p.limits.max_connections.value_or(0),
                       p.limits.max_message_rate.value_or(Rate{}),
                       p.limits.max_connection_rate.value_or(Rate{}));
    }
    it = next;
  }
  generation_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<KeyState> Shaper::Shared(const std::string& key, int max_connections,
                                         Rate message_rate, Rate connection_rate) {
  std::lock_guard<std::mutex> lock(mu_);
  std::weak_ptr<KeyState>& slot = keys_[key];
  if (std::shared_ptr<KeyState> k = slot.lock()) {
    // The limits of the configuration in force (a reload may have changed them).
    k->Configure(max_connections, message_rate, connection_rate);
    return k;
  }
  auto k = std::make_shared<KeyState>(key, max_connections, message_rate, connection_rate);
  k->AttachFleet(fleet_);
  slot = k;
  return k;
}

void Shaper::SuspendCampaign(uint64_t campaign, int64_t until_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t& until = suspended_campaigns_[campaign];
  until = std::max(until, until_ns);
  campaigns_suspended_.store(static_cast<int>(suspended_campaigns_.size()),
                             std::memory_order_release);
}

int64_t Shaper::CampaignSuspendedUntil(uint64_t campaign, int64_t now_ns) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = suspended_campaigns_.find(campaign);
  if (it == suspended_campaigns_.end()) return 0;
  if (it->second <= now_ns) {
    // Over: forget it.
    suspended_campaigns_.erase(it);
    campaigns_suspended_.store(static_cast<int>(suspended_campaigns_.size()),
                               std::memory_order_release);
    return 0;
  }
  return it->second;
}

std::vector<KeyView> Shaper::Snapshot(int64_t now_ns, size_t max) const {
  std::vector<KeyView> out;
  for (const std::shared_ptr<KeyState>& k : Keys()) {
    KeyView v;
    v.key = k->name();
    const double rate = k->effective_rate();
    v.rate = std::isinf(rate) ? 0 : rate;
    v.configured_rate = k->configured_rate();
    v.connections = k->connections_now();
    v.configured_connections = k->configured_connections();
    v.open = k->open();
    if (k->suspended(now_ns))
      v.suspended_seconds = static_cast<double>(k->suspended_until() - now_ns) / 1e9;
    v.throttled = (!std::isinf(rate) && (v.configured_rate == 0 || rate < v.configured_rate)) ||
                  (v.configured_connections > 0 && v.connections < v.configured_connections);
    const bool named = v.key.rfind("provider.", 0) == 0 || v.key.rfind("domain.", 0) == 0;
    if (!named && !v.throttled && v.suspended_seconds == 0) continue;
    v.describe = k->Describe(now_ns);
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](const KeyView& a, const KeyView& b) {
    if ((a.suspended_seconds > 0) != (b.suspended_seconds > 0)) return a.suspended_seconds > 0;
    if (a.throttled != b.throttled) return a.throttled;
    return a.key < b.key;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

std::vector<std::shared_ptr<KeyState>> Shaper::Keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<KeyState>> out;
  for (const auto& [name, w] : keys_)
    if (auto k = w.lock()) out.push_back(std::move(k));
  return out;
}

}  // namespace salvo::shaping
