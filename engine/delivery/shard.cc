// The shard: thread, mailbox, results, the registry of pools and
// connections, shutdown. The work itself is in router.cc, site_pool.cc,
// connection.cc and compose_farm.cc. Shard thread only, except Post/Stop.
#include "engine/delivery/shard.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "engine/common/log.h"
#include "engine/delivery/compose_farm.h"
#include "engine/delivery/connection.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/router.h"
#include "engine/delivery/site_pool.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

namespace {

absl::Duration ToAbsl(config::Seconds s) { return absl::Milliseconds(s.count() * 1000.0); }

smtp::Outcome ShutdownOutcome(std::string_view host = {}) {
  return smtp::OutcomeForLocal("shutdown", "the engine is shutting down; will retry", false,
                               smtp::Scope::kSite, host);
}

// Domains a shard's router remembers at most (LRU beyond); pools are swept
// when unused, every kSweepEvery.
constexpr size_t kMaxCachedDomains = 100'000;
constexpr std::chrono::seconds kSweepEvery{30};

}  // namespace

SitePolicy SitePolicy::FromConfig(const config::Config& config) {
  const config::DeliveryConfig& d = config.delivery;
  auto dur = [](config::Seconds s) { return std::chrono::duration_cast<Duration>(s); };
  SitePolicy p;
  p.max_connections = static_cast<size_t>(std::max(1, d.connections_per_site));
  p.messages_per_connection = static_cast<uint64_t>(std::max(1, d.messages_per_connection));
  p.connect_timeout = dur(d.timeouts.connect);
  p.idle_timeout = dur(d.idle_timeout);
  p.host_retry_delay = dur(d.site_retry_delay);
  p.max_backoff = std::max(dur(d.site_retry_delay), Duration(std::chrono::milliseconds(1)));
  p.first_backoff = std::min<Duration>(std::chrono::seconds(1), p.max_backoff);
  return p;
}

Shard::Shard(Engine* engine, int index, metrics::ShardCounters* counters)
    : engine_(engine),
      engine_clock_(engine->clock()),
      index_(index),
      counters_(counters),
      session_clock_(engine_clock_) {
  defaults_ = SitePolicy::FromConfig(engine->config());
  helo_name_ = engine->config().delivery.helo_name;
  durable_gate_ = engine->config().queue.durable_before_next;
  if (helo_name_.empty()) {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) == 0 && buf[0])
      helo_name_ = buf;
    else
      helo_name_ = "localhost";
  }
}

Shard::~Shard() = default;

void Shard::ThreadMain(std::promise<absl::Status>* started) {
  const config::Config& cfg = engine_->config();
  reactor::ReactorOptions ro;
  ro.clock = engine_clock_;
  if (cfg.pin_threads) {
    unsigned n = std::thread::hardware_concurrency();
    ro.pin_cpu = n ? static_cast<int>(index_ % n) : -1;
  }
  auto r = reactor::Reactor::Create(ro);
  if (!r.ok()) {
    started->set_value(r.status());
    return;
  }
  reactor_ = std::move(*r);
  {
    // Always: a shaping table may ask for TLS where [tls] mode is "off".
    smtp::TlsClientConfig tc;
    tc.ca_file = cfg.tls.ca_file;
    auto t = smtp::TlsClientContext::Create(tc);
    if (t.ok()) {
      tls_ = std::move(*t);
    } else if (cfg.tls.mode != config::TlsMode::kOff) {
      started->set_value(t.status());
      reactor_.reset();
      return;
    }
  }
  auto resolver = dns::Resolver::Create(reactor_.get(), engine_->resolver_options());
  if (!resolver.ok()) {
    started->set_value(resolver.status());
    reactor_.reset();
    return;
  }
  resolver_ = std::move(*resolver);
  router_ = std::make_unique<DomainRouter>(this, kMaxCachedDomains);
  farm_ = std::make_unique<ComposeFarm>(this, engine_->shard_count());
  sweep_timer_ = reactor_->RunAfter(kSweepEvery, [this] { SweepPools(); });
  started->set_value(absl::OkStatus());
  reactor_->Run();
  router_.reset();
  resolver_.reset();
  // Connections still open here were abandoned by a hard stop (the engine
  // gave up waiting); the reactor is gone with its fds, free the objects.
  reactor_.reset();
  for (Connection* c : all_) {
    if (c->fd() >= 0) close(c->fd());
    delete c;
    engine_->ReleaseConnectionSlot();
  }
  all_.clear();
  pools_.clear();
}

void Shard::Post(absl::AnyInvocable<void()> task) { reactor_->Post(std::move(task)); }
void Shard::Stop() { reactor_->Stop(); }

// ---------------------------------------------------------------------------
// Jobs in.

void Shard::AcceptJobs(std::vector<Job> jobs) {
  if (draining_) {
    for (Job& job : jobs) Report(std::move(job), ShutdownOutcome());
    return;
  }
  router_->Accept(std::move(jobs));
}

SitePolicy Shard::PolicyFor(const SiteInfo& info) const {
  SitePolicy p = defaults_;
  shaping::Shaper* shaper = engine_->shaper();
  std::shared_ptr<const shaping::Resolved> r = info.shaping;
  if (!r) {  // a site built without shaping (tests): the defaults
    r = std::make_shared<shaping::Resolved>(
        shaping::Resolve(*shaper->config(), info.domain, info.mx_names));
  }
  p.key = r->key;
  p.max_connections = static_cast<size_t>(std::max(1, r->max_connections));
  p.messages_per_connection = static_cast<uint64_t>(std::max(1, r->max_messages_per_connection));
  p.max_recipients_per_message = static_cast<size_t>(std::max(1, r->max_recipients_per_message));
  p.tls = r->tls;
  if (info.route_auth >= 0) {
    const Engine::RouteAuth& ra = engine_->route_auth()[static_cast<size_t>(info.route_auth)];
    if (ra.tls) p.tls = *ra.tls;
    p.credentials = ra.credentials;
    p.route = ra.pattern + " (" + ra.where + ")";
  }
  // A [domain] table's key is shared by name; any other pool has a key of its
  // own ("site <hosts>"), registered too so status and metrics can see it.
  // Limits hold per egress source x shaping key: "provider.google@ip2".
  const std::string at =
      info.source >= 0 ? "@" + engine_->egress_sources()[static_cast<size_t>(info.source)].name
                       : std::string();
  // The lanes of a spread route share one key (by the key without the lane).
  const std::string& site_key = info.limits_key.empty() ? info.key : info.limits_key;
  p.own = shaper->Shared(r->domain.empty() ? "site " + site_key : r->key + at, r->max_connections,
                         r->message_rate, r->connection_rate);
  if (!r->provider.empty())
    p.provider = shaper->Shared("provider." + r->provider + at, r->provider_max_connections,
                                r->provider_message_rate, r->provider_connection_rate);
  return p;
}

void Shard::ShapingReloaded() {
  router_->Forget();
  std::shared_ptr<const shaping::ShapingConfig> config = engine_->shaper()->config();
  for (auto& [key, pool] : pools_) {
    const SiteInfo& info = *pool->info();
    auto fresh = std::make_shared<SiteInfo>(info);
    fresh->shaping =
        std::make_shared<shaping::Resolved>(shaping::Resolve(*config, info.domain, info.mx_names));
    pool->Reconfigure(PolicyFor(*fresh));
  }
}

SitePool* Shard::PoolFor(const std::shared_ptr<const SiteInfo>& info) {
  auto it = pools_.find(info->key);
  if (it != pools_.end()) {
    it->second->Refresh(info);
    return it->second.get();
  }
  auto pool = std::make_unique<SitePool>(this, info, PolicyFor(*info));
  SitePool* raw = pool.get();
  pools_.emplace(info->key, std::move(pool));
  return raw;
}

void Shard::AcceptForSite(std::shared_ptr<const SiteInfo> info, std::vector<Job> jobs) {
  if (jobs.empty()) return;
  if (draining_) {
    for (Job& job : jobs) Report(std::move(job), ShutdownOutcome());
    return;
  }
  SitePool* pool = PoolFor(info);
  for (Job& job : jobs) pool->Enqueue(std::move(job));
  pool->Pump();
}

void Shard::AcceptComposed(std::vector<ComposeWork> work) {
  farm_->AcceptComposed(std::move(work));
  CheckDrained();
}

void Shard::SweepPools() {
  sweep_timer_ = 0;
  const auto now = Now();
  for (auto it = pools_.begin(); it != pools_.end();) {
    auto next = std::next(it);
    if (it->second->Unused(now)) pools_.erase(it);
    it = next;
  }
  if (!draining_) sweep_timer_ = reactor_->RunAfter(kSweepEvery, [this] { SweepPools(); });
}

// ---------------------------------------------------------------------------
// Connections.

// Each connection holds one slot of delivery.max_connections (taken by the
// pool before it asks for the connection) until it is forgotten.
Connection* Shard::NewConnection(SitePool* pool) {
  auto* c = new Connection(this, pool);
  all_.insert(c);
  return c;
}

void Shard::Forget(Connection* c) {
  all_.erase(c);
  delete c;
  engine_->ReleaseConnectionSlot();
}

void Shard::CloseAnIdleConnection(const SitePool* wanting) {
  for (auto& [key, pool] : pools_) {
    if (pool.get() == wanting || pool->idle.empty() || !pool->ready.empty() ||
        !pool->composed.empty() || pool->composing != 0)
      continue;
    pool->idle.back()->Quit();
    return;
  }
}

void Shard::SessionOpened(metrics::DomainSlot domain) {
  counters_->ConnectionOpened(domain);
  uint64_t open = open_sessions_.load(std::memory_order_relaxed) + 1;
  open_sessions_.store(open, std::memory_order_relaxed);
  if (open > peak_sessions_.load(std::memory_order_relaxed))
    peak_sessions_.store(open, std::memory_order_relaxed);
}

void Shard::SessionClosed(metrics::DomainSlot domain) {
  counters_->ConnectionClosed(domain);
  open_sessions_.store(open_sessions_.load(std::memory_order_relaxed) - 1,
                       std::memory_order_relaxed);
}

smtp::Options Shard::SessionOptions(const SiteHost& host, const SitePolicy& policy,
                                    int source) const {
  const config::Config& cfg = engine_->config();
  smtp::Options o;
  o.helo_name = helo_name_;
  if (source >= 0 && !engine_->egress_sources()[static_cast<size_t>(source)].ehlo.empty())
    o.helo_name = engine_->egress_sources()[static_cast<size_t>(source)].ehlo;
  o.host = host.name;
  o.host_label = host.label;
  switch (policy.tls) {
    case shaping::Tls::kOff:
      o.tls = smtp::TlsMode::kDisabled;
      break;
    case shaping::Tls::kOpportunistic:
      o.tls = smtp::TlsMode::kOpportunistic;
      break;
    case shaping::Tls::kRequired:
      o.tls = smtp::TlsMode::kRequired;
      o.verify_peer = cfg.tls.verify;
      break;
  }
  o.tls_context = tls_.get();
  o.auth = policy.credentials;
  o.clock = &session_clock_;
  const config::TimeoutConfig& t = cfg.delivery.timeouts;
  o.timeouts.greeting = ToAbsl(t.greeting);
  o.timeouts.ehlo = ToAbsl(t.ehlo);
  o.timeouts.starttls = ToAbsl(t.starttls);
  o.timeouts.mail = ToAbsl(t.mail);
  o.timeouts.rcpt = ToAbsl(t.rcpt);
  o.timeouts.data_init = ToAbsl(t.data);
  o.timeouts.data_block = ToAbsl(t.data_block);
  o.timeouts.data_final = ToAbsl(t.data_end);
  o.timeouts.rset = ToAbsl(t.mail);
  o.timeouts.quit = ToAbsl(t.quit);
  return o;
}

// ---------------------------------------------------------------------------
// Results.

void Shard::Report(Job job, const smtp::Outcome& outcome) {
  JobResult r;
  r.recipients = std::move(job.recipients);
  r.outcomes.assign(r.recipients.size(), outcome);
  for (size_t i = 0; i < r.outcomes.size(); ++i) CountOutcome(job.labels, outcome);
  AddResult(std::move(r));
}

void Shard::CountOutcome(const metrics::OutcomeLabels& labels, const smtp::Outcome& o) {
  if (o.held()) return;  // not attempted: neither a delivery nor a deferral
  switch (o.disposition) {
    case smtp::Disposition::kDelivered:
      counters_->CountRecipient(labels, metrics::RecipientEvent::kDelivered);
      break;
    case smtp::Disposition::kDeferred:
      counters_->CountRecipient(labels, metrics::RecipientEvent::kDeferred, o.bounce_class);
      break;
    case smtp::Disposition::kBounced:
      counters_->CountRecipient(labels, metrics::RecipientEvent::kBounced, o.bounce_class);
      break;
  }
}

void Shard::AddResult(JobResult result) {
  results_.push_back(std::move(result));
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    // Runs at the next loop turn: one hand-off per turn, not per job.
    reactor_->Post([this] { FlushResults(); });
  }
}

void Shard::FlushResults() {
  flush_scheduled_ = false;
  if (results_.empty()) return;
  std::vector<JobResult> out;
  out.swap(results_);
  engine_->PostResults(index_, ++flush_seq_, std::move(out));
}

void Shard::DurableUpTo(uint64_t seq) {
  durable_seq_ = std::max(durable_seq_, seq);
  if (gated_.empty()) return;
  std::vector<Connection*> go;
  for (Connection* c : gated_)
    if (c->AwaitsDurable() <= durable_seq_) go.push_back(c);
  for (Connection* c : go) gated_.erase(c);
  // Each sends its held end of data or starts its next transaction (or
  // closes); none is freed before its turn (freeing happens in a later
  // reactor callback).
  for (Connection* c : go) c->DurableNow();
}

// ---------------------------------------------------------------------------
// Shutdown.

void Shard::BeginDrain() {
  draining_ = true;
  if (router_) router_->Drain();
  if (sweep_timer_) reactor_->CancelTimer(sweep_timer_);
  sweep_timer_ = 0;
  // Connections holding an end of data finish their transaction (the feeder
  // acknowledges records until every shard has stopped); those waiting to
  // start one start none.
  std::vector<Connection*> idle;
  for (Connection* c : gated_)
    if (!c->HoldsEnd()) idle.push_back(c);
  for (Connection* c : idle) gated_.erase(c);
  for (auto& [key, pool] : pools_) {
    pool->DeferAll(ShutdownOutcome());
    idle.insert(idle.end(), pool->idle.begin(), pool->idle.end());
  }
  for (Connection* c : idle) c->Quit();
  CheckDrained();
}

void Shard::ForceClose() {
  draining_ = true;
  if (router_) router_->Drain();
  if (sweep_timer_) reactor_->CancelTimer(sweep_timer_);
  sweep_timer_ = 0;
  std::vector<Connection*> all(all_.begin(), all_.end());
  for (Connection* c : all) c->Abandon(ShutdownOutcome());
  for (auto& [key, pool] : pools_) pool->DeferAll(ShutdownOutcome());
  CheckDrained();
}

void Shard::CheckDrained() {
  // Jobs out for composition come back here and are reported then.
  if (!draining_ || reported_drained_ || !all_.empty() || (farm_ && farm_->composing() != 0))
    return;
  reported_drained_ = true;
  FlushResults();
  engine_->ShardStopped();
}

}  // namespace salvo::delivery
