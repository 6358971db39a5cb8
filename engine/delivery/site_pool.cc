// A site's pool: queues, connections, failover, backoff. Shard thread only.
#include "engine/delivery/site_pool.h"

#include <algorithm>

#include "engine/common/log.h"
#include "engine/delivery/compose_farm.h"
#include "engine/delivery/connection.h"
#include "engine/delivery/shard.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

SitePool::SitePool(Shard* shard, std::shared_ptr<const SiteInfo> info, SitePolicy policy)
    : shard_(shard),
      info_(std::move(info)),
      policy_(policy),
      down_until_(info_->hosts.size()),
      open_cap_(std::max<size_t>(1, policy_.max_connections)) {}

SitePool::~SitePool() {
  if (wakeup_ && shard_->reactor()) shard_->reactor()->CancelTimer(wakeup_);
}

void SitePool::Refresh(std::shared_ptr<const SiteInfo> info) {
  if (info == info_ || info->SameHosts(*info_)) return;
  SALVO_LOG(kDebug, "shard {}: site {} now has {} hosts", shard_->index(), info->key,
            info->hosts.size());
  info_ = std::move(info);
  down_until_.assign(info_->hosts.size(), Steady::time_point{});
}

bool SitePool::MayOpenConnection(Steady::time_point now) const {
  return connections < open_cap_ && backoff_until_ <= now;
}

bool SitePool::MaySendNow(Steady::time_point now) const {
  (void)now;  // no rate limit yet: shaping (issue 13) decides here
  return true;
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

void SitePool::Pump() {
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
  if (!MaySendNow(now)) {
    ArmWakeup(now + std::chrono::milliseconds(10));
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
  while (ready.size() + composed.size() + composing > starting && MayOpenConnection(now)) {
    const size_t before = connections;
    OpenConnection();
    if (connections <= before) break;  // no socket (out of descriptors): not now
  }
  // Backing off: the wakeup pumps again when new connections may open.
  if (backoff_until_ > now && ready.size() + composed.size() > 0) ArmWakeup(backoff_until_);
  shard_->farm()->TopUp(this);
}

// The next job for a ready connection, `waiting` other connections of the
// site being idle: a composed one if any. Else, when no job in composition
// is owed to this connection (each waiting connection is owed one), a job
// from the ready queue that it composes itself, so a connection never waits
// for a copy that is not already on its way. Else nothing: the connection
// waits (idle) for the composed job. Then tops the queue up again.
std::optional<Job> SitePool::TakeJob(size_t waiting) {
  std::optional<Job> job;
  if (!MaySendNow(shard_->Now())) return job;
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

void SitePool::OpenConnection() {
  const auto now = shard_->Now();
  size_t host = info_->hosts.size();
  for (size_t i = 0; i < info_->hosts.size(); ++i) {
    if (down_until_[i] <= now) {
      host = i;
      break;
    }
  }
  if (host == info_->hosts.size()) host = 0;  // all marked down: try in order again
  Connection* c = shard_->NewConnection(this);
  connections++;
  starting++;
  c->ConnectTo(host);
}

void SitePool::HostWorks(size_t host) {
  starting--;
  live++;
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

bool SitePool::Unused(Steady::time_point now) const {
  if (connections != 0 || composing != 0 || !ready.empty() || !composed.empty()) return false;
  if (paused_until_ > now || backoff_until_ > now || wakeup_ != 0) return false;
  for (const auto& t : down_until_)
    if (t > now) return false;
  return true;
}

}  // namespace salvo::delivery
