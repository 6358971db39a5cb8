// Shard internals: sites, connection pools and the drive loop that connects
// an smtp::Session to the reactor's sockets. Shard thread only.
#include "engine/delivery/shard.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "engine/common/log.h"
#include "engine/delivery/engine.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

using Steady = std::chrono::steady_clock;

namespace {

absl::Duration ToAbsl(config::Seconds s) { return absl::Milliseconds(s.count() * 1000.0); }
reactor::Duration ToReactor(config::Seconds s) {
  return std::chrono::duration_cast<reactor::Duration>(s);
}

// Compose ahead (and spread over the shards) only when composing a copy
// costs more than this on average; see Shard::TopUp.
constexpr std::chrono::microseconds kComposeAheadAbove{50};

smtp::Outcome ShutdownOutcome(std::string_view host = {}) {
  return smtp::OutcomeForLocal("shutdown", "the engine is shutting down; will retry", false,
                               smtp::Scope::kSite, host);
}

}  // namespace

// One destination site owned by this shard: its queues and pool. A job is in
// exactly one place: `ready`, out for composition (`composing` counts them),
// `composed`, or on a connection.
struct Site {
  std::shared_ptr<const SiteInfo> info;
  std::deque<Job> ready;                       // in arrival order; most not composed yet
  std::deque<Job> composed;                    // bodies ready: what a ready connection sends next
  size_t composing = 0;                        // sent to a compose shard, not back yet
  std::vector<Connection*> idle;               // LIFO: reuse the warmest connection
  size_t connections = 0;                      // every open or opening connection
  size_t starting = 0;                         // connections not yet ready for a first job
  size_t live = 0;                             // connections that reached kReady at least once
  std::vector<Steady::time_point> down_until;  // per host: connect failed
  smtp::Outcome last_failure;
  Steady::time_point paused_until{};
  // Backoff after site-scope temporary failures (421, greeting or EHLO
  // refusals while other connections work): no new connection before
  // `backoff_until`; the delay starts at 1 s and doubles while failures
  // repeat with no delivery in between, up to site_retry_delay. Each failure
  // also halves `open_cap` (the connections the pool may open, at most
  // connections_per_site); it grows by one per backoff period without one.
  Steady::duration backoff{};
  Steady::time_point backoff_until{};
  Steady::time_point last_site_failure{};
  Steady::time_point last_growth{};
  reactor::TimerId backoff_timer = 0;
  size_t open_cap = 0;  // 0 until the site is first used
};

// One SMTP connection. Owned by its Shard; freed in the reactor's Close
// callback (after which no callback for its fd can run).
struct Connection {
  Site* site = nullptr;
  int fd = -1;
  size_t host = 0;
  std::unique_ptr<smtp::Session> session;
  bool closing = false;
  bool counted_open = false;
  bool ever_ready = false;
  bool session_closed = false;
  bool send_in_flight = false;
  bool connect_timed_out = false;
  bool is_idle = false;
  int retry_host = -1;  // after close: connect again to this host index
  std::string wbuf;     // bytes being sent (the reactor needs them stable)
  std::optional<Job> job;
  uint64_t envelope_id = 0;
  uint64_t messages = 0;
  smtp::Outcome close_outcome;
  reactor::TimerId connect_timer = 0;
  reactor::TimerId deadline_timer = 0;
  absl::Time armed_deadline = absl::InfiniteFuture();
  reactor::TimerId idle_timer = 0;
};

Shard::Shard(Engine* engine, int index, metrics::ShardCounters* counters)
    : engine_(engine), index_(index), counters_(counters) {
  helo_name_ = engine->config().delivery.helo_name;
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
  if (cfg.tls.mode != config::TlsMode::kOff) {
    smtp::TlsClientConfig tc;
    tc.ca_file = cfg.tls.ca_file;
    auto t = smtp::TlsClientContext::Create(tc);
    if (!t.ok()) {
      started->set_value(t.status());
      reactor_.reset();
      return;
    }
    tls_ = std::move(*t);
  }
  auto resolver = dns::Resolver::Create(reactor_.get(), engine_->resolver_options());
  if (!resolver.ok()) {
    started->set_value(resolver.status());
    reactor_.reset();
    return;
  }
  resolver_ = std::move(*resolver);
  compose_out_.resize(static_cast<size_t>(engine_->shard_count()));
  next_composer_ = static_cast<size_t>(index_);  // shards start the round-robin apart
  started->set_value(absl::OkStatus());
  reactor_->Run();
  resolver_.reset();
  // Connections still open here were abandoned by a hard stop (the engine
  // gave up waiting); the reactor is gone with its fds, free the objects.
  reactor_.reset();
  for (Connection* c : all_) {
    if (c->fd >= 0) close(c->fd);
    delete c;
  }
  all_.clear();
}

void Shard::Post(absl::AnyInvocable<void()> task) { reactor_->Post(std::move(task)); }
void Shard::Stop() { reactor_->Stop(); }

// ---------------------------------------------------------------------------
// Jobs in.

void Shard::AcceptJobs(std::vector<Job> jobs) {
  auto now = Steady::now();
  for (Job& job : jobs) {
    if (draining_) {
      Report(std::move(job), ShutdownOutcome());
      continue;
    }
    auto it = domain_sites_.find(job.domain);
    if (it != domain_sites_.end() && it->second.expires > now) {
      RouteJob(it->second.site, std::move(job));
      continue;
    }
    std::vector<Job>& waiting = resolving_[job.domain];
    bool first = waiting.empty();
    std::string domain = job.domain;
    waiting.push_back(std::move(job));
    if (first) StartResolve(domain);
  }
  FlushRouted();
}

void Shard::StartResolve(const std::string& domain) {
  if (auto now = resolver_->TryResolveMxNow(domain)) {
    OnResolved(domain, *std::move(now));
    return;
  }
  resolver_->ResolveMx(domain, [this, domain](absl::StatusOr<dns::Site> result) {
    OnResolved(domain, std::move(result));
    FlushRouted();
  });
}

void Shard::OnResolved(const std::string& domain, absl::StatusOr<dns::Site> result) {
  auto node = resolving_.extract(domain);
  if (node.empty()) return;
  std::vector<Job> jobs = std::move(node.mapped());
  if (draining_) {
    for (Job& job : jobs) Report(std::move(job), ShutdownOutcome());
    return;
  }
  if (!result.ok()) {
    smtp::Outcome o = smtp::OutcomeForDnsFailure(dns::FailureOf(result.status()), domain,
                                                 std::string(result.status().message()));
    for (Job& job : jobs) Report(std::move(job), o);
    return;
  }
  std::shared_ptr<const SiteInfo> info = ToSiteInfo(*result);
  if (!info) {
    smtp::Outcome o = smtp::OutcomeForDnsFailure(smtp::DnsFailure::kNoAddressYet, domain,
                                                 "no MX host of the domain has an address");
    for (Job& job : jobs) Report(std::move(job), o);
    return;
  }
  // Routed answers and DNS answers are reused for their TTL (routes: 60 s).
  uint32_t ttl = result->routed ? 60 : std::max<uint32_t>(1, result->ttl_seconds);
  domain_sites_[domain] = {info, Steady::now() + std::chrono::seconds(ttl)};
  for (Job& job : jobs) RouteJob(info, std::move(job));
}

std::shared_ptr<const SiteInfo> Shard::ToSiteInfo(const dns::Site& site) {
  if (auto it = site_infos_.find(site.key); it != site_infos_.end()) {
    // Same host set as before; refresh only if the addresses changed.
    if (it->second.use_count() > 0) {
      size_t n = 0;
      for (const dns::MxHost& h : site.hosts) n += h.addresses.size();
      if (n == it->second->hosts.size()) return it->second;
    }
  }
  auto info = std::make_shared<SiteInfo>();
  info->key = site.key;
  for (const dns::MxHost& h : site.hosts) {
    for (const dns::IpAddress& ip : h.addresses) {
      SiteHost sh;
      sh.name = h.name;
      sh.addr_len = ip.ToSockaddr(h.port, &sh.addr);
      std::string ips = ip.ToString();
      sh.label = h.name == ips
                     ? (ip.is_v6() ? "[" + ips + "]:" : ips + ":") + std::to_string(h.port)
                     : h.name + "[" + ips + "]:" + std::to_string(h.port);
      info->hosts.push_back(std::move(sh));
    }
  }
  if (info->hosts.empty()) return nullptr;
  if (info->key.empty()) info->key = info->hosts.front().label;
  site_infos_[info->key] = info;
  return info;
}

void Shard::RouteJob(const std::shared_ptr<const SiteInfo>& info, Job job) {
  int owner =
      static_cast<int>(dns::ShardForSite(info->key, static_cast<unsigned>(engine_->shard_count())));
  auto& slot = outgoing_[owner][info->key];
  if (!slot.first) slot.first = info;
  slot.second.push_back(std::move(job));
}

void Shard::FlushRouted() {
  auto out = std::move(outgoing_);
  outgoing_.clear();
  for (auto& [owner, by_site] : out) {
    for (auto& [key, slot] : by_site) {
      if (owner == index_) {
        AcceptForSite(std::move(slot.first), std::move(slot.second));
      } else {
        Shard* s = engine_->shard(owner);
        s->Post([s, si = std::move(slot.first), j = std::move(slot.second)]() mutable {
          s->AcceptForSite(std::move(si), std::move(j));
        });
      }
    }
  }
}

Site* Shard::SiteFor(const std::shared_ptr<const SiteInfo>& info) {
  auto it = sites_.find(info->key);
  if (it != sites_.end()) return it->second.get();
  auto site = std::make_unique<Site>();
  site->info = info;
  site->down_until.assign(info->hosts.size(), Steady::time_point{});
  site->open_cap =
      static_cast<size_t>(std::max(1, engine_->config().delivery.connections_per_site));
  Site* raw = site.get();
  sites_.emplace(info->key, std::move(site));
  return raw;
}

void Shard::AcceptForSite(std::shared_ptr<const SiteInfo> info, std::vector<Job> jobs) {
  Site* site = SiteFor(info);
  if (jobs.empty()) return;
  for (Job& job : jobs) {
    if (draining_)
      Report(std::move(job), ShutdownOutcome());
    else
      site->ready.push_back(std::move(job));
  }
  Pump(site);
}

// ---------------------------------------------------------------------------
// The pool.

void Shard::Pump(Site* site) {
  if (site->ready.empty() && site->composed.empty()) return;
  if (draining_) {
    DeferAll(site, ShutdownOutcome());
    return;
  }
  auto now = Steady::now();
  if (site->paused_until > now && site->live == 0) {
    // Every host failed recently and nothing works: defer, don't hold.
    DeferAll(site, site->last_failure);
    return;
  }
  while (!site->idle.empty()) {
    std::optional<Job> job = TakeJob(site, site->idle.size() - 1);
    if (!job) break;
    Connection* c = site->idle.back();
    Unidle(c);
    if (StartJob(c, std::move(*job)))
      Drive(c);
    else
      OnReady(c);
  }
  // Backing off: no new connection now; the backoff timer pumps again.
  const size_t limit = site->backoff_until > now ? 0 : site->open_cap;
  while (site->ready.size() + site->composed.size() + site->composing > site->starting &&
         site->connections < limit) {
    OpenConnection(site);
  }
  TopUp(site);
}

// Compose-ahead: keep about one composed (or composing) job per connection of
// the site, at most two per allowed connection, so a connection that becomes
// ready finds its next message signed and memory stays bounded by the pool,
// not the queue. The signing goes round-robin to every shard (this one
// included): a few big sites no longer load their owner shard alone.
//
// Only when composing is dear: a hand-off to another shard and back costs a
// few microseconds of CPU (two mailbox posts, ring wake-ups, a 20 KB body
// read on another core), about what rendering alone costs (~5 us for 20 KB),
// while RSA-2048 signing costs ~350 us and Ed25519 ~80 us. Below the
// threshold every job is composed by the connection that sends it, as
// before. The cost is this shard's moving average over its own Compose calls
// (its round-robin share included, so it follows the campaign mix).
void Shard::TopUp(Site* site) {
  if (draining_ || compose_out_.size() < 2 || compose_avg_ < kComposeAheadAbove) return;
  const size_t cap =
      2 * static_cast<size_t>(std::max(1, engine_->config().delivery.connections_per_site));
  const size_t target = std::clamp<size_t>(site->connections, 1, cap);
  // Ship in batches of a quarter of the target, not one job per finished
  // transaction: fewer mailbox posts and ring wake-ups per copy.
  if (site->composed.size() + site->composing + std::max<size_t>(1, target / 4) > target) return;
  bool queued = false;
  while (!site->ready.empty() && site->composed.size() + site->composing < target) {
    Job job = std::move(site->ready.front());
    site->ready.pop_front();
    if (job.body) {  // the source gave the body: nothing to compose
      site->composed.push_back(std::move(job));
      continue;
    }
    size_t to = next_composer_++ % compose_out_.size();
    compose_out_[to].push_back(ComposeWork{site, std::move(job), {}, false});
    site->composing++;
    composing_++;
    queued = true;
  }
  if (queued && !compose_flush_scheduled_) {
    compose_flush_scheduled_ = true;
    // At the next loop turn: one hand-off per compose shard per turn.
    reactor_->Post([this] { FlushCompose(); });
  }
}

void Shard::FlushCompose() {
  compose_flush_scheduled_ = false;
  std::vector<ComposeWork> own;
  for (size_t i = 0; i < compose_out_.size(); ++i) {
    if (compose_out_[i].empty()) continue;
    std::vector<ComposeWork> work;
    work.swap(compose_out_[i]);
    if (static_cast<int>(i) == index_) {
      own = std::move(work);  // after the others have theirs: they work meanwhile
      continue;
    }
    Shard* s = engine_->shard(static_cast<int>(i));
    s->Post(
        [s, owner = index_, w = std::move(work)]() mutable { s->ComposeFor(owner, std::move(w)); });
  }
  if (!own.empty()) ComposeFor(index_, std::move(own));
}

void Shard::ComposeFor(int owner, std::vector<ComposeWork> work) {
  // Composed even when this shard is draining: only the owner knows whether
  // the copy is still wanted, and the work is bounded by the owner's pools.
  for (ComposeWork& w : work) w.status = ComposeHere(&w.job, &w.permanent);
  if (owner == index_) {
    AcceptComposed(std::move(work));
    return;
  }
  Shard* s = engine_->shard(owner);
  s->Post([s, w = std::move(work)]() mutable { s->AcceptComposed(std::move(w)); });
}

void Shard::AcceptComposed(std::vector<ComposeWork> work) {
  std::vector<Site*> touched;
  for (ComposeWork& w : work) {
    Site* site = w.site;
    site->composing--;
    composing_--;
    if (draining_) {
      Report(std::move(w.job), ShutdownOutcome());
    } else if (!w.status.ok() || !w.job.body) {
      ReportComposeFailure(std::move(w.job), w.status, w.permanent);
    } else {
      site->composed.push_back(std::move(w.job));
    }
    if (std::find(touched.begin(), touched.end(), site) == touched.end()) touched.push_back(site);
  }
  for (Site* site : touched) Pump(site);
  CheckDrained();
}

absl::Status Shard::ComposeHere(Job* job, bool* permanent) {
  auto start = Steady::now();
  absl::Status st = engine_->source()->Compose(job, index_, permanent);
  // Exponential moving average, weight 1/8 for the newest sample. A sample
  // counts at most twice the threshold: it is wall time, and a preempted or
  // cold-cache render must not switch cheap composition to shipping (about
  // five such outliers in a row would); RSA or Ed25519 signing still lands
  // well above it.
  Steady::duration took = std::min<Steady::duration>(Steady::now() - start, 2 * kComposeAheadAbove);
  compose_avg_ =
      compose_avg_ == Steady::duration::zero() ? took : compose_avg_ + (took - compose_avg_) / 8;
  return st;
}

// The next job for a ready connection of `site`, `waiting` other connections
// of the site being idle: a composed one if any. Else, when no job in
// composition is owed to this connection (each waiting connection is owed
// one), a job from the ready queue that it composes itself, so a connection
// never waits for a copy that is not already on its way. Else nothing: the
// connection waits (idle) for the composed job. Then tops the queue up again.
std::optional<Job> Shard::TakeJob(Site* site, size_t waiting) {
  std::optional<Job> job;
  if (!site->composed.empty()) {
    job.emplace(std::move(site->composed.front()));
    site->composed.pop_front();
  } else if (!site->ready.empty() && (site->composing <= waiting || site->ready.front().body)) {
    job.emplace(std::move(site->ready.front()));
    site->ready.pop_front();
  }
  TopUp(site);
  return job;
}

void Shard::ReportComposeFailure(Job job, const absl::Status& status, bool permanent) {
  std::string why = status.ok() ? "no message body" : std::string(status.message());
  Report(std::move(job),
         smtp::OutcomeForLocal("composition", why, permanent, smtp::Scope::kMessage, ""));
}

// Jobs out for composition are deferred when they come back (AcceptComposed
// with draining_), or queued again and deferred with the rest.
void Shard::DeferAll(Site* site, const smtp::Outcome& outcome) {
  std::deque<Job> jobs;
  jobs.swap(site->composed);
  for (Job& job : jobs) Report(std::move(job), outcome);
  jobs.clear();
  jobs.swap(site->ready);
  for (Job& job : jobs) Report(std::move(job), outcome);
}

void Shard::OpenConnection(Site* site) {
  auto now = Steady::now();
  size_t host = site->info->hosts.size();
  for (size_t i = 0; i < site->info->hosts.size(); ++i) {
    if (site->down_until[i] <= now) {
      host = i;
      break;
    }
  }
  if (host == site->info->hosts.size()) host = 0;  // all marked down: try in order again
  auto* c = new Connection;
  all_.insert(c);
  c->site = site;
  site->connections++;
  site->starting++;
  connections_++;
  ConnectTo(c, host);
}

void Shard::ConnectTo(Connection* c, size_t host_index) {
  const SiteHost& host = c->site->info->hosts[host_index];
  c->host = host_index;
  c->session.reset();
  c->ever_ready = false;
  c->session_closed = false;
  c->connect_timed_out = false;
  c->closing = false;
  c->retry_host = -1;
  c->close_outcome = smtp::Outcome{};
  c->armed_deadline = absl::InfiniteFuture();
  c->fd = socket(host.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    int err = errno;
    // Out of descriptors or similar: a local problem, not the host's fault.
    smtp::Outcome o = smtp::OutcomeForConnectFailure(err, host.label);
    c->site->last_failure = o;
    c->site->connections--;
    c->site->starting--;
    connections_--;
    all_.erase(c);
    delete c;
    CheckDrained();
    return;
  }
  // SMTP writes whole command groups (RFC 2920) and whole message bodies; Nagle
  // would hold back the small tail of each (the final dot) until the peer's
  // delayed ACK, tens of milliseconds per transaction.
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->connect_timer =
      reactor_->RunAfter(ToReactor(engine_->config().delivery.timeouts.connect), [this, c] {
        c->connect_timer = 0;
        c->connect_timed_out = true;
        // Cancels the connect; its callback runs with -ECANCELED.
        HostFailed(c,
                   smtp::OutcomeForConnectFailure(ETIMEDOUT, c->site->info->hosts[c->host].label),
                   true);
      });
  reactor_->Connect(c->fd, reinterpret_cast<const sockaddr*>(&host.addr), host.addr_len,
                    [this, c](int res) { OnConnected(c, res); });
}

void Shard::OnConnected(Connection* c, int res) {
  if (c->closing) return;
  if (c->connect_timer) {
    reactor_->CancelTimer(c->connect_timer);
    c->connect_timer = 0;
  }
  const SiteHost& host = c->site->info->hosts[c->host];
  if (res < 0) {
    counters_->Add(metrics::Counter::kConnectFailures);
    HostFailed(c, smtp::OutcomeForConnectFailure(-res, host.label), true);
    return;
  }
  counters_->Add(metrics::Counter::kSessionsOpened);
  c->counted_open = true;
  uint64_t open = open_sessions_.load(std::memory_order_relaxed) + 1;
  open_sessions_.store(open, std::memory_order_relaxed);
  if (open > peak_sessions_.load(std::memory_order_relaxed))
    peak_sessions_.store(open, std::memory_order_relaxed);
  c->session = std::make_unique<smtp::Session>(SessionOptions(host));
  reactor_->Recv(c->fd, [this, c](int n, std::string_view bytes) {
    if (c->closing || !c->session) return;
    if (n > 0)
      c->session->Feed(bytes);
    else
      c->session->OnConnectionLost();
    Drive(c);
  });
  Drive(c);
}

smtp::Options Shard::SessionOptions(const SiteHost& host) const {
  const config::Config& cfg = engine_->config();
  smtp::Options o;
  o.helo_name = helo_name_;
  o.host = host.name;
  o.host_label = host.label;
  switch (cfg.tls.mode) {
    case config::TlsMode::kOff:
      o.tls = smtp::TlsMode::kDisabled;
      break;
    case config::TlsMode::kOpportunistic:
      o.tls = smtp::TlsMode::kOpportunistic;
      break;
    case config::TlsMode::kRequired:
      o.tls = smtp::TlsMode::kRequired;
      o.verify_peer = cfg.tls.verify;
      break;
  }
  o.tls_context = tls_.get();
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
// The drive loop: session events → actions, output → socket, deadline → timer.

void Shard::Drive(Connection* c) {
  if (c->closing || !c->session) return;
  smtp::Session& s = *c->session;
  for (int guard = 0; s.HasEvents() && guard < 64; ++guard) {
    for (smtp::Event& e : s.TakeEvents()) {
      switch (e.type) {
        case smtp::Event::Type::kReady:
          if (!c->ever_ready) {
            c->ever_ready = true;
            if (const smtp::TlsInfo& tls = c->session->tls_info(); tls.active) {
              counters_->Add(metrics::Counter::kTlsSessions);
              if (tls.resumed) counters_->Add(metrics::Counter::kTlsResumed);
            }
            c->site->starting--;
            c->site->live++;
            c->site->down_until[c->host] = Steady::time_point{};
          }
          OnReady(c);
          break;
        case smtp::Event::Type::kTransactionDone:
          if (c->job && e.envelope_id == c->envelope_id) ReportJob(c, std::move(e.outcomes));
          break;
        case smtp::Event::Type::kClosed:
          c->session_closed = true;
          c->close_outcome = std::move(e.outcome);
          break;
      }
    }
  }
  Flush(c);
  if (c->session_closed) {
    if (!c->send_in_flight && s.PendingOutput().empty()) SessionFinished(c);
    return;
  }
  ArmDeadline(c);
}

void Shard::OnReady(Connection* c) {
  Site* site = c->site;
  const int max_msgs = engine_->config().delivery.messages_per_connection;
  while (true) {
    if (draining_ || c->messages >= static_cast<uint64_t>(max_msgs)) {
      c->session->Quit();
      return;
    }
    std::optional<Job> job = TakeJob(site, site->idle.size());
    if (!job) {
      MakeIdle(c);
      return;
    }
    if (StartJob(c, std::move(*job))) return;
  }
}

bool Shard::StartJob(Connection* c, Job job) {
  if (!job.body) {
    // Nothing composed ahead was available: compose here, now.
    bool permanent = false;
    absl::Status st = ComposeHere(&job, &permanent);
    if (!st.ok() || !job.body) {
      ReportComposeFailure(std::move(job), st, permanent);
      return false;
    }
  }
  smtp::Envelope env;
  env.id = c->envelope_id = next_envelope_id_++;
  env.mail_from = job.mail_from;
  for (const JobRecipient& r : job.recipients) env.rcpts.push_back(r.address);
  env.body = *job.body;
  env.body_owner = job.body;
  env.needs_8bit = job.needs_8bitmime;
  env.needs_smtputf8 = job.needs_smtputf8;
  c->job = std::move(job);
  if (!c->session->StartTransaction(std::move(env))) {
    Job j = std::move(*c->job);
    c->job.reset();
    Report(std::move(j),
           smtp::OutcomeForLocal("other", "the SMTP session was not ready", false,
                                 smtp::Scope::kConnection, c->site->info->hosts[c->host].label));
    return false;
  }
  return true;
}

void Shard::ReportJob(Connection* c, std::vector<smtp::Outcome> outcomes) {
  Job job = std::move(*c->job);
  c->job.reset();
  c->messages++;
  JobResult r;
  r.recipients = std::move(job.recipients);
  r.outcomes = std::move(outcomes);
  r.outcomes.resize(r.recipients.size(), r.outcomes.empty() ? smtp::Outcome{} : r.outcomes.back());
  bool any_delivered = false;
  for (const smtp::Outcome& o : r.outcomes) {
    CountOutcome(o);
    any_delivered |= o.delivered();
  }
  if (any_delivered) {
    counters_->Add(metrics::Counter::kMessagesSent);
    Delivered(c->site);
  }
  AddResult(std::move(r));
}

// A site-scope temporary failure (the site said "not now"): back off.
void Shard::BackOff(Site* site, const smtp::Outcome& why) {
  const auto now = Steady::now();
  const auto cap = std::max<Steady::duration>(
      std::chrono::milliseconds(1),
      std::chrono::duration_cast<Steady::duration>(engine_->config().delivery.site_retry_delay));
  site->last_failure = why;
  site->last_site_failure = now;
  if (site->backoff_until > now) return;  // already backing off: one step per period
  site->backoff = site->backoff == Steady::duration::zero()
                      ? std::min<Steady::duration>(std::chrono::seconds(1), cap)
                      : std::min<Steady::duration>(2 * site->backoff, cap);
  site->backoff_until = now + site->backoff;
  // The failing connection still counts here: keep half of the others.
  site->open_cap = std::max<size_t>(1, (site->connections > 0 ? site->connections - 1 : 0) / 2);
  SALVO_LOG(kDebug, "shard {}: site {} backs off {} ms (at most {} connections): {}", index_,
            site->info->key,
            std::chrono::duration_cast<std::chrono::milliseconds>(site->backoff).count(),
            site->open_cap, why.reply.empty() ? why.detail : why.reply.ToString());
  if (site->backoff_timer) reactor_->CancelTimer(site->backoff_timer);
  site->backoff_timer = reactor_->RunAfter(site->backoff, [this, site] {
    site->backoff_timer = 0;
    Pump(site);
  });
}

// A transaction was delivered: the failures (if any) no longer repeat.
void Shard::Delivered(Site* site) {
  site->backoff = Steady::duration::zero();
  const size_t limit =
      static_cast<size_t>(std::max(1, engine_->config().delivery.connections_per_site));
  if (site->open_cap >= limit) return;
  const auto now = Steady::now();
  const auto period = std::max<Steady::duration>(std::chrono::seconds(1), site->backoff);
  if (now - site->last_site_failure < period || now - site->last_growth < period) return;
  site->last_growth = now;
  site->open_cap++;
}

void Shard::Report(Job job, const smtp::Outcome& outcome) {
  JobResult r;
  r.recipients = std::move(job.recipients);
  r.outcomes.assign(r.recipients.size(), outcome);
  for (size_t i = 0; i < r.outcomes.size(); ++i) CountOutcome(outcome);
  AddResult(std::move(r));
}

void Shard::CountOutcome(const smtp::Outcome& o) {
  switch (o.disposition) {
    case smtp::Disposition::kDelivered:
      counters_->Add(metrics::Counter::kRecipientsDelivered);
      break;
    case smtp::Disposition::kDeferred:
      counters_->Add(metrics::Counter::kRecipientsDeferred);
      break;
    case smtp::Disposition::kBounced:
      counters_->Add(metrics::Counter::kRecipientsBounced);
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
  engine_->PostResults(std::move(out));
}

void Shard::Flush(Connection* c) {
  if (c->send_in_flight || c->closing || !c->session) return;
  if (c->session->PendingOutput().empty()) return;
  c->session->TakeOutput(&c->wbuf);  // a buffer swap, not a copy
  c->send_in_flight = true;
  counters_->Add(metrics::Counter::kBytesSent, c->wbuf.size());
  reactor_->Send(c->fd, c->wbuf.data(), c->wbuf.size(), [this, c](int res) {
    c->send_in_flight = false;
    if (c->closing) return;
    if (res < 0 && c->session && !c->session->closed()) c->session->OnConnectionLost();
    Drive(c);
  });
}

void Shard::ArmDeadline(Connection* c) {
  absl::Time d = c->session->NextDeadline();
  if (d == absl::InfiniteFuture()) return;
  if (c->deadline_timer != 0 && d >= c->armed_deadline) return;
  if (c->deadline_timer != 0) reactor_->CancelTimer(c->deadline_timer);
  c->armed_deadline = d;
  absl::Duration left = std::max(absl::ZeroDuration(), d - absl::Now());
  c->deadline_timer =
      reactor_->RunAfter(absl::ToChronoNanoseconds(left) + std::chrono::milliseconds(1), [this, c] {
        c->deadline_timer = 0;
        c->armed_deadline = absl::InfiniteFuture();
        if (c->closing || !c->session) return;
        c->session->OnTimeout(absl::Now());
        Drive(c);
      });
}

void Shard::MakeIdle(Connection* c) {
  if (c->is_idle) return;
  c->is_idle = true;
  c->site->idle.push_back(c);
  // An idle connection keeps no message-sized buffers (the send buffer and
  // the session's swap partner stay while messages flow). One that only waits
  // for a job in composition owed to it (one per idle connection) keeps them:
  // it sends again within a loop turn or two.
  if (c->site->composing < c->site->idle.size()) {
    if (!c->send_in_flight) std::string().swap(c->wbuf);
    c->session->ReleaseBuffers();
  }
  c->idle_timer = reactor_->RunAfter(ToReactor(engine_->config().delivery.idle_timeout), [this, c] {
    c->idle_timer = 0;
    if (c->closing || !c->session) return;
    Unidle(c);
    c->session->Quit();
    Drive(c);
  });
}

void Shard::Unidle(Connection* c) {
  if (!c->is_idle) return;
  c->is_idle = false;
  auto& idle = c->site->idle;
  idle.erase(std::remove(idle.begin(), idle.end(), c), idle.end());
  if (c->idle_timer) {
    reactor_->CancelTimer(c->idle_timer);
    c->idle_timer = 0;
  }
}

// The session is over (QUIT answered, or it failed).
void Shard::SessionFinished(Connection* c) {
  if (c->job) {
    // The session closed without reporting the transaction: never delivered.
    smtp::Outcome o = c->close_outcome;
    if (o.kind == smtp::FailureKind::kNone) o.host = c->site->info->hosts[c->host].label;
    Job j = std::move(*c->job);
    c->job.reset();
    Report(std::move(j), smtp::AsRetry(std::move(o)));
  }
  if (!c->ever_ready && c->close_outcome.kind != smtp::FailureKind::kNone) {
    // Greeting/EHLO/TLS trouble before any transaction: try the next host,
    // but don't mark this one down (421 "too busy" is not "dead").
    HostFailed(c, c->close_outcome, false);
    return;
  }
  // A 421 (or another site-scope refusal) ends the session: the site says
  // "not now", so no new connection replaces this one before the backoff.
  // Recipient- and message-scope failures never end a session.
  if (c->close_outcome.site_temporary()) BackOff(c->site, c->close_outcome);
  CloseConnection(c, -1);
}

void Shard::HostFailed(Connection* c, const smtp::Outcome& outcome, bool mark_down) {
  Site* site = c->site;
  site->last_failure = outcome;
  SALVO_LOG(kDebug, "shard {}: {} failed: {}", index_, site->info->hosts[c->host].label,
            outcome.detail.empty() ? outcome.reply.ToString() : outcome.detail);
  auto now = Steady::now();
  auto retry =
      std::chrono::duration_cast<Steady::duration>(engine_->config().delivery.site_retry_delay);
  if (mark_down) site->down_until[c->host] = now + retry;
  // The next host in preference order that is not known to be down.
  int next = -1;
  if (!draining_) {
    for (size_t i = c->host + 1; i < site->info->hosts.size(); ++i) {
      if (site->down_until[i] <= now) {
        next = static_cast<int>(i);
        break;
      }
    }
  }
  if (next < 0 && !draining_ && site->live == 0) {
    // Every host of the site failed and no connection works: defer what is
    // queued now instead of holding it, and pause the site for a while.
    site->paused_until = now + retry;
    smtp::Outcome o = smtp::OutcomeForSiteDown(outcome);
    site->last_failure = o;
    DeferAll(site, o);
  } else if (next < 0 && !draining_ && !mark_down && outcome.site_temporary()) {
    // Refused at the greeting or EHLO while other connections work: back
    // off rather than reconnect at once.
    BackOff(site, outcome);
  }
  CloseConnection(c, next);
}

void Shard::CloseConnection(Connection* c, int retry_host) {
  if (c->closing) return;
  c->closing = true;
  c->retry_host = retry_host;
  Unidle(c);
  if (c->connect_timer) reactor_->CancelTimer(c->connect_timer);
  if (c->deadline_timer) reactor_->CancelTimer(c->deadline_timer);
  c->connect_timer = c->deadline_timer = 0;
  if (c->counted_open) {
    c->counted_open = false;
    open_sessions_.store(open_sessions_.load(std::memory_order_relaxed) - 1,
                         std::memory_order_relaxed);
  }
  reactor_->Close(c->fd, [this, c] { Destroyed(c); });
}

void Shard::Destroyed(Connection* c) {
  c->fd = -1;  // closed by the reactor
  Site* site = c->site;
  if (c->ever_ready) site->live--;
  if (c->retry_host >= 0 && !draining_) {
    if (c->ever_ready) site->starting++;
    c->wbuf.clear();
    ConnectTo(c, static_cast<size_t>(c->retry_host));
    return;
  }
  if (!c->ever_ready) site->starting--;
  site->connections--;
  connections_--;
  all_.erase(c);
  delete c;
  Pump(site);
  CheckDrained();
}

// ---------------------------------------------------------------------------
// Shutdown.

void Shard::BeginDrain() {
  draining_ = true;
  for (auto& [domain, jobs] : resolving_)
    for (Job& job : jobs) Report(std::move(job), ShutdownOutcome());
  resolving_.clear();
  std::vector<Connection*> idle;
  for (auto& [key, site] : sites_) {
    DeferAll(site.get(), ShutdownOutcome());
    idle.insert(idle.end(), site->idle.begin(), site->idle.end());
  }
  for (Connection* c : idle) {
    Unidle(c);
    c->session->Quit();
    Drive(c);
  }
  CheckDrained();
}

void Shard::ForceClose() {
  draining_ = true;
  for (auto& [domain, jobs] : resolving_)
    for (Job& job : jobs) Report(std::move(job), ShutdownOutcome());
  resolving_.clear();
  std::vector<Connection*> all;
  for (Connection* c : all_) all.push_back(c);
  for (Connection* c : all) {
    if (c->closing) continue;
    if (c->session && !c->session->closed()) {
      c->session->OnConnectionLost();
      for (smtp::Event& e : c->session->TakeEvents()) {
        if (e.type == smtp::Event::Type::kTransactionDone && c->job &&
            e.envelope_id == c->envelope_id)
          ReportJob(c, std::move(e.outcomes));
      }
    }
    if (c->job) {
      Job j = std::move(*c->job);
      c->job.reset();
      Report(std::move(j), ShutdownOutcome(c->site->info->hosts[c->host].label));
    }
    CloseConnection(c, -1);
  }
  for (auto& [key, site] : sites_) DeferAll(site.get(), ShutdownOutcome());
  CheckDrained();
}

void Shard::CheckDrained() {
  // Jobs out for composition come back here and are reported then.
  if (!draining_ || reported_drained_ || connections_ != 0 || composing_ != 0) return;
  reported_drained_ = true;
  FlushResults();
  engine_->ShardStopped();
}

}  // namespace salvo::delivery
