// A site's pool: queues, connections, failover, backoff. Shard thread only.
#include "engine/delivery/site_pool.h"

#include <algorithm>
#include <cmath>

#include "absl/time/time.h"

#include "engine/common/log.h"
#include "engine/common/strings.h"
#include "engine/delivery/compose_farm.h"
#include "engine/delivery/connection.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/shard.h"
#include "engine/smtp/classifier.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

SitePool::SitePool(Shard* shard, std::shared_ptr<const SiteInfo> info, SitePolicy policy)
    : shard_(shard),
      info_(std::move(info)),
      policy_(policy),
      down_until_(info_->hosts.size()),
      open_cap_(std::max<size_t>(1, policy_.max_connections)) {}

SitePool::~SitePool() {
  SetActive(false);
  if (wakeup_ && shard_->reactor()) shard_->reactor()->CancelTimer(wakeup_);
}

void SitePool::Refresh(std::shared_ptr<const SiteInfo> info) {
  if (info == info_ || info->SameHosts(*info_)) return;
  SALVO_LOG(kDebug, "shard {}: site {} now has {} hosts", shard_->index(), info->key,
            info->hosts.size());
  info_ = std::move(info);
  down_until_.assign(info_->hosts.size(), Steady::time_point{});
}

namespace {

// A throttled pool keeps what it can send in this long (5 s); the rest goes back
// to the queue (held: no attempt, no deferral) so it never fills the
// engine's in-flight limit with jobs it will not send for minutes.
constexpr int64_t kHoldHorizonNs = 5'000'000'000;
// After a fleet slot refusal: its worker (engine/fleet, 10 ms tick, woken by
// the refusal) has leased the slots by then.
constexpr std::chrono::milliseconds kFleetRetry{15};

std::string_view ReplyOrDetail(const smtp::Outcome& o, std::string* buf) {
  if (o.reply.empty()) return o.detail;
  *buf = o.reply.ToString();
  return *buf;
}

}  // namespace

void SitePool::Enqueue(Job job) {
  const size_t max = std::max<size_t>(1, policy_.max_recipients_per_message);
  if (job.recipients.size() <= max) {
    ready.push_back(std::move(job));
    return;
  }
  // Split: every part carries the same message (composed once if it was).
  std::vector<JobRecipient> all = std::move(job.recipients);
  for (size_t i = 0; i < all.size(); i += max) {
    Job part;
    part.domain = job.domain;
    part.mail_from = job.mail_from;
    part.body = job.body;
    part.needs_8bitmime = job.needs_8bitmime;
    part.needs_smtputf8 = job.needs_smtputf8;
    part.body_crlf = job.body_crlf;
    part.context = job.context;
    part.campaign = job.campaign;
    part.egress_pool = job.egress_pool;
    part.recipients.assign(std::make_move_iterator(all.begin() + i),
                           std::make_move_iterator(all.begin() + std::min(all.size(), i + max)));
    ready.push_back(std::move(part));
  }
}

void SitePool::Reconfigure(SitePolicy policy) {
  SALVO_LOG(kDebug, "shard {}: site {} now shaped as {}", shard_->index(), info_->key, policy.key);
  SetActive(false);
  policy_ = std::move(policy);
  open_cap_ = std::max<size_t>(1, std::min(open_cap_, policy_.max_connections));
  if (open_cap_ < policy_.max_connections && backoff_ == Steady::duration::zero())
    open_cap_ = policy_.max_connections;
  Pump();
}

bool SitePool::MayOpenConnection(Steady::time_point now) const {
  if (connections >= open_cap_ || connections >= policy_.max_connections || backoff_until_ > now)
    return false;
  if (policy_.credentials && !auth_proven_ && connections >= 1) return false;
  const int64_t ns = Ns(now);
  // Held to a rate, a site needs few connections: one per 5 messages a
  // second (at least 2). More would only wait for tokens and idle out.
  double rate = policy_.own->effective_rate();
  if (policy_.provider) rate = std::min(rate, policy_.provider->effective_rate());
  if (rate > 0 && !std::isinf(rate) &&
      connections >= std::max<size_t>(2, static_cast<size_t>(std::ceil(rate / 5))))
    return false;
  for (const shaping::KeyState* k :
       {policy_.provider.get(), info_->lane >= 0 ? policy_.own.get() : nullptr}) {
    if (!k) continue;
    const int share = k->Share();
    if (share > 0 && connections >= static_cast<size_t>(share)) return false;
  }
  // A site's own key (one pool): its part of a fleet-wide limit.
  if (const int part = info_->lane < 0 ? policy_.own->FleetPart() : 0;
      part > 0 && connections >= static_cast<size_t>(part))
    return false;
  return policy_.own->MayOpen(ns) && (!policy_.provider || policy_.provider->MayOpen(ns));
}

bool SitePool::OverShare() const {
  for (const shaping::KeyState* k :
       {policy_.provider.get(), info_->lane >= 0 ? policy_.own.get() : nullptr}) {
    if (!k) continue;
    const int share = k->Share();
    if (share > 0 && connections > static_cast<size_t>(share)) return true;
  }
  const int part = info_->lane < 0 ? policy_.own->FleetPart() : 0;
  return part > 0 && connections > static_cast<size_t>(part);
}

int64_t SitePool::SendWait(Steady::time_point now) const {
  const int64_t ns = Ns(now);
  int64_t wait = policy_.own->MessageWait(ns);
  if (policy_.provider) wait = std::max(wait, policy_.provider->MessageWait(ns));
  return wait;
}

void SitePool::ArmWakeup(Steady::time_point at) {
  if (wakeup_ && wakeup_at_ <= at) return;
  reactor::Reactor* r = shard_->reactor();
  if (wakeup_) r->CancelTimer(wakeup_);
  wakeup_at_ = at;
  wakeup_ = r->RunAfter(std::max(Steady::duration::zero(), at - shard_->Now()), [this] {
    wakeup_ = 0;
    Pump();
  });
}

void SitePool::SetActive(bool active) {
  if (active == active_) return;
  active_ = active;
  if (policy_.provider) policy_.provider->PoolActive(active);
  if (info_->lane >= 0) policy_.own->PoolActive(active);  // lanes share out the route's slots
}

void SitePool::Pump() {
  SetActive(!ready.empty() || !composed.empty());
  if (ready.empty() && composed.empty()) return;
  if (shard_->draining()) {
    DeferAll(smtp::OutcomeForLocal("shutdown", "the engine is shutting down; will retry", false,
                                   smtp::Scope::kSite, ""));
    return;
  }
  const auto now = shard_->Now();
  if (paused_until_ > now && live == 0) {
    // Every host failed recently and nothing works: defer, don't hold.
    DeferAll(last_failure_);
    return;
  }
  const int64_t ns = Ns(now);
  if (!suspended_domains_.empty()) HoldSuspendedDomains(ns);
  {
    const int64_t until = std::max(policy_.own->suspended_until(),
                                   policy_.provider ? policy_.provider->suspended_until() : 0);
    if (until > ns) {
      HoldAll(policy_.provider && policy_.provider->suspended(ns)
                  ? std::string_view(policy_.provider->name())
                  : std::string_view(policy_.own->name()),
              until - ns);
      return;
    }
  }
  if (const int64_t wait = SendWait(now); wait > 0) {
    HoldExcess(ns);
    ArmWakeup(now + std::chrono::nanoseconds(wait));
    return;
  }
  while (!idle.empty()) {
    std::optional<Job> job = TakeJob(idle.size() - 1);
    if (!job) break;
    Connection* c = idle.back();
    if (c->StartJob(std::move(*job)))
      c->Drive();
    else
      c->OnReady();
  }
  // A connection still idle here found no job it may send (a rate said "not
  // yet"): another connection would only wait beside it.
  shaping::KeyState* fleet_wait = nullptr;
  while (idle.empty() && ready.size() + composed.size() + composing > starting &&
         MayOpenConnection(now)) {
    const size_t before = connections;
    fleet_wait = OpenConnection();
    if (connections <= before) break;  // no socket (out of descriptors): not now
  }
  if (fleet_wait) {
    // The fleet's slots are leased by its worker within a tick: ask for all
    // the connections this pool would open now in one round trip, and pump
    // again when they should have arrived (not only at the next completion).
    const size_t work = ready.size() + composed.size() + composing;
    const size_t want =
        std::min(work > starting ? work - starting : 1,
                 policy_.max_connections > connections ? policy_.max_connections - connections : 1);
    fleet_wait->WantFleetConnections(static_cast<int>(want));
    ArmWakeup(now + kFleetRetry);
  }
  // Backing off: the wakeup pumps again when new connections may open.
  if (backoff_until_ > now && ready.size() + composed.size() > 0) ArmWakeup(backoff_until_);
  // Work but no connection, and a shaping key said "not now" (its slots are
  // taken, by other sites too, or its connection rate) or every slot of
  // delivery.max_connections is taken: ask again soon. At that cap an idle
  // connection of another site of this shard is closed to free a slot.
  else if (connections == 0 && ready.size() + composed.size() > 0) {
    if (shard_->engine()->AtConnectionCap()) shard_->CloseAnIdleConnection(this);
    ArmWakeup(now + std::chrono::milliseconds(50));
  }
  shard_->farm()->TopUp(this);
}

// The next job for a ready connection, `waiting` other connections of the
// site being idle: a composed one if any. Else, when no job in composition
// is owed to this connection (each waiting connection is owed one), a job
// from the ready queue that it composes itself, so a connection never waits
// for a copy that is not already on its way. Else nothing: the connection
// waits (idle) for the composed job. Then tops the queue up again.
void SitePool::HoldSuspendedCampaigns(int64_t ns) {
  shaping::Shaper* shaper = shard_->engine()->shaper();
  for (std::deque<Job>* q : {&composed, &ready}) {
    while (!q->empty() && q->front().campaign != 0) {
      const int64_t until = shaper->CampaignSuspendedUntil(q->front().campaign, ns);
      if (until == 0) break;
      Job job = std::move(q->front());
      q->pop_front();
      shard_->Report(std::move(job),
                     smtp::OutcomeForHold(Cat("campaign ", job.campaign, " is suspended"),
                                          std::max<int64_t>(1, (until - ns) / 1'000'000)));
    }
  }
}

std::optional<Job> SitePool::TakeJob(size_t waiting) {
  std::optional<Job> job;
  if (shard_->engine()->shaper()->AnyCampaignSuspended()) HoldSuspendedCampaigns(Ns(shard_->Now()));
  if (composed.empty() && (ready.empty() || !(composing <= waiting || ready.front().body)))
    return job;  // nothing to take: no token either
  // One message token from every shaping key of the pool, or none.
  const auto now = shard_->Now();
  const int64_t ns = Ns(now);
  int64_t wait = policy_.own->TakeMessage(ns);
  if (wait == 0 && policy_.provider) {
    wait = policy_.provider->TakeMessage(ns);
    if (wait != 0) policy_.own->RefundMessage();
  }
  if (wait != 0) {
    ArmWakeup(now + std::chrono::nanoseconds(wait));
    return job;
  }
  if (!composed.empty()) {
    job.emplace(std::move(composed.front()));
    composed.pop_front();
  } else if (!ready.empty() && (composing <= waiting || ready.front().body)) {
    job.emplace(std::move(ready.front()));
    ready.pop_front();
  }
  shard_->farm()->TopUp(this);
  return job;
}

// Jobs out for composition are deferred when they come back (draining), or
// queued again and deferred with the rest.
void SitePool::DeferAll(const smtp::Outcome& outcome) {
  std::deque<Job> jobs;
  jobs.swap(composed);
  for (Job& job : jobs) shard_->Report(std::move(job), outcome);
  jobs.clear();
  jobs.swap(ready);
  for (Job& job : jobs) shard_->Report(std::move(job), outcome);
}

shaping::KeyState* SitePool::OpenConnection() {
  const auto now = shard_->Now();
  size_t host = info_->hosts.size();
  for (size_t i = 0; i < info_->hosts.size(); ++i) {
    if (down_until_[i] <= now) {
      host = i;
      break;
    }
  }
  if (host == info_->hosts.size()) host = 0;  // all marked down: try in order again
  // A slot of delivery.max_connections (every shard's connections) and of
  // each shaping key (connection limits and rates), or no connection: the
  // pool waits (Pump's wakeup), nothing is deferred.
  Engine* engine = shard_->engine();
  if (!engine->TakeConnectionSlot()) return nullptr;
  const int64_t ns = Ns(now);
  bool fleet_wait = false;
  if (!policy_.own->AcquireConnection(ns, &fleet_wait)) {
    engine->ReleaseConnectionSlot();
    return fleet_wait ? policy_.own.get() : nullptr;
  }
  if (policy_.provider && !policy_.provider->AcquireConnection(ns, &fleet_wait)) {
    policy_.own->ReleaseConnection();
    engine->ReleaseConnectionSlot();
    return fleet_wait ? policy_.provider.get() : nullptr;
  }
  Connection* c = shard_->NewConnection(this);
  c->TakeSlots(policy_.own, policy_.provider);
  connections++;
  starting++;
  c->ConnectTo(host);
  return nullptr;
}

void SitePool::HostWorks(size_t host) {
  starting--;
  live++;
  auth_proven_ = true;  // ready = past AUTH, when the route has credentials
  if (host < down_until_.size()) down_until_[host] = Steady::time_point{};
}

int SitePool::HostFailed(size_t host, const smtp::Outcome& outcome, bool mark_down) {
  last_failure_ = outcome;
  SALVO_LOG(kDebug, "shard {}: {} failed: {}", shard_->index(),
            host < info_->hosts.size() ? info_->hosts[host].label : info_->key,
            outcome.detail.empty() ? outcome.reply.ToString() : outcome.detail);
  const auto now = shard_->Now();
  if (mark_down && host < down_until_.size()) down_until_[host] = now + policy_.host_retry_delay;
  // The next host in preference order that is not known to be down.
  int next = -1;
  if (!shard_->draining()) {
    for (size_t i = host + 1; i < info_->hosts.size(); ++i) {
      if (down_until_[i] <= now) {
        next = static_cast<int>(i);
        break;
      }
    }
  }
  if (next < 0 && !shard_->draining() && live == 0) {
    // Every host of the site failed and no connection works: defer what is
    // queued now instead of holding it, and pause the site for a while.
    paused_until_ = now + policy_.host_retry_delay;
    last_failure_ = smtp::OutcomeForSiteDown(outcome);
    DeferAll(last_failure_);
  } else if (next < 0 && !shard_->draining() && !mark_down && outcome.site_temporary()) {
    // Refused at the greeting or EHLO while other connections work: back
    // off rather than reconnect at once.
    BackOff(outcome);
  }
  return next;
}

void SitePool::BackOff(const smtp::Outcome& why) {
  const auto now = shard_->Now();
  last_failure_ = why;
  last_site_failure_ = now;
  if (backoff_until_ > now) return;  // already backing off: one step per period
  backoff_ = backoff_ == Steady::duration::zero()
                 ? Steady::duration(policy_.first_backoff)
                 : std::min<Steady::duration>(2 * backoff_, policy_.max_backoff);
  backoff_until_ = now + backoff_;
  // The failing connection still counts here: keep half of the others.
  open_cap_ = std::max<size_t>(1, (connections > 0 ? connections - 1 : 0) / 2);
  SALVO_LOG(kDebug, "shard {}: site {} backs off {} ms (at most {} connections): {}",
            shard_->index(), info_->key,
            std::chrono::duration_cast<std::chrono::milliseconds>(backoff_).count(), open_cap_,
            why.reply.empty() ? why.detail : why.reply.ToString());
  ArmWakeup(backoff_until_);
}

void SitePool::Delivered() {
  backoff_ = Steady::duration::zero();
  if (open_cap_ >= policy_.max_connections) return;
  const auto now = shard_->Now();
  const auto period = std::max<Steady::duration>(policy_.first_backoff, backoff_);
  if (now - last_site_failure_ < period || now - last_growth_ < period) return;
  last_growth_ = now;
  open_cap_++;
}

void SitePool::Feedback(const smtp::Outcome& o, std::string_view domain, uint64_t campaign) {
  const int64_t ns = Ns(shard_->Now());
  shaping::KeyState* keys[2] = {policy_.own.get(), policy_.provider.get()};
  if (o.delivered()) {
    for (shaping::KeyState* k : keys)
      if (k && k->Delivered(ns))
        SALVO_LOG(kDebug, "shaping: {} speeds up: {}", k->name(), k->Describe(ns));
    return;
  }
  if (o.held()) return;
  if (o.rule && o.rule->action == smtp::RuleAction::kSuspend) {
    Suspend(o, domain, campaign, ns);
    return;
  }
  if (o.bounce_class == smtp::Category::kRateLimited ||
      (o.rule && o.rule->action == smtp::RuleAction::kBackoff)) {
    std::string buf;
    for (shaping::KeyState* k : keys)
      if (k && k->SlowDown(ns))
        SALVO_LOG(kInfo, "shaping: {} slows down to {} (observed {:.1f}/s) after {}: {}", k->name(),
                  k->Describe(ns), k->observed_rate(ns), o.host, ReplyOrDetail(o, &buf));
  }
}

void SitePool::AuthFailed(const smtp::Outcome& o) {
  constexpr int64_t kAuthHoldNs = 600'000'000'000;  // 10 minutes
  const int64_t ns = Ns(shard_->Now());
  if (policy_.own->suspended(ns)) return;
  policy_.own->Suspend(ns + kAuthHoldNs);
  std::string buf;
  SALVO_LOG(kError,
            "route {}: authentication as '{}' failed at {}: {}. Its mail is held in the queue "
            "(not deferred) and tried again in 10 minutes; fix the credentials and restart.",
            policy_.route, policy_.credentials ? policy_.credentials->username : "", o.host,
            ReplyOrDetail(o, &buf));
  Pump();
}

void SitePool::Suspend(const smtp::Outcome& o, std::string_view domain_in, uint64_t campaign,
                       int64_t ns) {
  const smtp::Rule& rule = *o.rule;
  const int64_t until = ns + absl::ToInt64Nanoseconds(rule.duration);
  std::string buf;
  std::string_view why = ReplyOrDetail(o, &buf);
  shaping::KeyState* key = policy_.own.get();
  switch (rule.scope) {
    case smtp::RuleScope::kCampaign:
      if (campaign != 0) {
        // Everywhere: every shard's pools hold this campaign's jobs.
        shard_->engine()->shaper()->SuspendCampaign(campaign, until);
        SALVO_LOG(kInfo, "shaping: campaign {} suspended for {} by rule '{}' ({}): {}", campaign,
                  absl::FormatDuration(rule.duration), rule.name, o.host, why);
        Pump();
        return;
      }
      break;  // a job without a campaign: its destination
    case smtp::RuleScope::kProvider:
      if (policy_.provider) key = policy_.provider.get();
      break;
    case smtp::RuleScope::kDomain:
      if (policy_.key.rfind("domain.", 0) != 0 && !domain_in.empty()) {
        // The domain shares this pool with others: hold only its jobs.
        const std::string domain(domain_in);
        bool found = false;
        for (auto& [d, t] : suspended_domains_)
          if (d == domain) t = std::max(t, until), found = true;
        if (!found) suspended_domains_.emplace_back(domain, until);
        SALVO_LOG(kInfo, "shaping: domain {} suspended for {} by rule '{}': {}", domain,
                  absl::FormatDuration(rule.duration), rule.name, why);
        Pump();
        return;
      }
      break;
    default:
      break;
  }
  key->Suspend(until);
  SALVO_LOG(kInfo, "shaping: {} suspended for {} by rule '{}' ({}): {}", key->name(),
            absl::FormatDuration(rule.duration), rule.name, o.host, why);
  Pump();
}

void SitePool::HoldAll(std::string_view why, int64_t hold_ns) {
  const smtp::Outcome held =
      smtp::OutcomeForHold(Cat(why, " is suspended"), std::max<int64_t>(1, hold_ns / 1'000'000));
  std::deque<Job> jobs;
  jobs.swap(composed);
  for (Job& job : jobs) shard_->Report(std::move(job), held);
  jobs.clear();
  jobs.swap(ready);
  for (Job& job : jobs) shard_->Report(std::move(job), held);
}

void SitePool::HoldExcess(int64_t ns) {
  double rate = policy_.own->effective_rate();
  if (policy_.provider) rate = std::min(rate, policy_.provider->effective_rate());
  if (!(rate > 0) || std::isinf(rate)) return;
  const size_t keep =
      std::max<size_t>(2 * policy_.max_connections + 1,
                       static_cast<size_t>(rate * static_cast<double>(kHoldHorizonNs) / 1e9));
  if (ready.size() + composed.size() <= keep) return;
  size_t excess = ready.size() + composed.size() - keep;
  excess = std::min(excess, ready.size());
  if (excess == 0) return;
  // Back to the queue, due again when about half of what is kept is sent: the
  // pool never runs dry waiting for the queue to hand them out again.
  const auto hold_ms = static_cast<int64_t>(500.0 * static_cast<double>(keep) / rate);
  const smtp::Outcome held =
      smtp::OutcomeForHold(Cat(policy_.key, " is throttled"), std::max<int64_t>(500, hold_ms));
  SALVO_LOG(kDebug, "shaping: {} throttled at {:.1f}/s: {} jobs back to the queue for {} ms",
            policy_.key, rate, excess, hold_ms);
  (void)ns;
  for (size_t i = 0; i < excess; ++i) {
    shard_->Report(std::move(ready.back()), held);
    ready.pop_back();
  }
}

void SitePool::HoldSuspendedDomains(int64_t ns) {
  std::erase_if(suspended_domains_, [ns](const auto& e) { return e.second <= ns; });
  if (suspended_domains_.empty()) return;
  auto until_of = [&](const std::string& domain) -> int64_t {
    for (const auto& [d, t] : suspended_domains_)
      if (d == domain) return t;
    return 0;
  };
  for (std::deque<Job>* q : {&composed, &ready}) {
    std::deque<Job> keep;
    for (Job& job : *q) {
      if (int64_t t = until_of(job.domain); t > ns)
        shard_->Report(std::move(job),
                       smtp::OutcomeForHold(Cat("domain ", job.domain, " is suspended"),
                                            std::max<int64_t>(1, (t - ns) / 1'000'000)));
      else
        keep.push_back(std::move(job));
    }
    q->swap(keep);
  }
}

bool SitePool::Unused(Steady::time_point now) const {
  if (connections != 0 || composing != 0 || !ready.empty() || !composed.empty()) return false;
  if (paused_until_ > now || backoff_until_ > now || wakeup_ != 0) return false;
  // A suspension lives in the pool (its own key, its domains): keep it.
  if (!suspended_domains_.empty() || policy_.own->suspended(Ns(now))) return false;
  for (const auto& t : down_until_)
    if (t > now) return false;
  return true;
}

}  // namespace salvo::delivery
