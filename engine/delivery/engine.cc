// The engine: shard threads plus the feeder loop on the caller's thread.
#include "engine/delivery/engine.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <chrono>
#include <future>

#include "absl/strings/str_cat.h"
#include "engine/common/log.h"
#include "engine/delivery/shard.h"
#include "engine/reactor/reactor.h"
#include "engine/shaping/shaping.h"
#include "engine/smtp/classifier.h"
#include "metrics/metrics.h"

namespace salvo::delivery {

using Steady = std::chrono::steady_clock;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const config::Config& config,
                                                       MessageSource* source,
                                                       metrics::Registry* registry,
                                                       EngineOptions options) {
  if (absl::Status s = reactor::Reactor::CheckIoUringAvailable(); !s.ok()) return s;
  // Shaping: the file's limits and its rules before the shipped ones; a bad
  // file stops the start with file:line:column.
  absl::StatusOr<shaping::ShapingConfig> shaping = shaping::LoadShaping(config);
  if (!shaping.ok()) return shaping.status();
  absl::StatusOr<std::unique_ptr<const smtp::Classifier>> rules =
      shaping::BuildClassifier(shaping->rules);
  if (!rules.ok()) return rules.status();
  smtp::InstallClassifier(*std::move(rules));
  std::unique_ptr<Engine> e(new Engine(config, source, std::move(options)));
  e->shaper_ = std::make_unique<shaping::Shaper>(*std::move(shaping));
  if (!config.fleet.redis.empty()) {
    fleet::SharedLimitsOptions fo;
    fo.redis = config.fleet.redis;
    fo.node_id = config.fleet.node_id;
    if (fo.node_id.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      fo.node_id = std::string(host) + "/" + std::to_string(::getpid());
    }
    fo.fleet_size = config.fleet.FleetSize();
    SALVO_LOG(kInfo,
              "fleet: the shaping file's provider and domain limits are held fleet-wide in Redis "
              "at {} (node '{}'; without Redis each node keeps to 1/{} of a limit)",
              config.fleet.redis, fo.node_id, fo.fleet_size);
    e->fleet_limits_ = std::make_unique<fleet::SharedLimits>(std::move(fo));
    e->shaper_->SetFleet(e->fleet_limits_.get());
  }
  // DNS and routing overrides: one Resolver per shard, built from these.
  dns::ResolverOptions& ro = e->resolver_options_;
  ro.servers = config.dns.servers;
  ro.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dns.timeout.count() * 1000));
  ro.tries = config.dns.attempts;
  ro.min_ttl = std::chrono::seconds(static_cast<int64_t>(config.dns.min_ttl.count()));
  ro.max_ttl = std::chrono::seconds(static_cast<int64_t>(config.dns.max_ttl.count()));
  ro.negative_ttl = std::chrono::seconds(static_cast<int64_t>(config.dns.negative_ttl.count()));
  if (!config.dns.cache) ro.max_ttl = ro.min_ttl = ro.negative_ttl = std::chrono::seconds(0);
  for (const config::RouteConfig& r : config.routes) {
    std::string targets;
    for (const std::string& h : r.hosts) targets += (targets.empty() ? "" : ",") + h;
    if (absl::Status s = ro.router.AddRoute(r.domain, targets, r.source); !s.ok()) return s;
  }
  for (const config::RouteConfig& r : config.routes) {
    if (r.auth_user.empty() && r.tls.empty() && !r.spread) continue;
    RouteAuth ra;
    ra.spread = r.spread;
    ra.pattern = r.domain;
    ra.where = r.source;
    if (!r.tls.empty())
      ra.tls = r.tls == "off"        ? shaping::Tls::kOff
               : r.tls == "required" ? shaping::Tls::kRequired
                                     : shaping::Tls::kOpportunistic;
    if (!r.auth_user.empty()) {
      smtp::Credentials c;
      c.username = r.auth_user;
      if (!r.auth_password_env.empty()) {
        const char* v = std::getenv(r.auth_password_env.c_str());
        if (v == nullptr || *v == '\0')
          return absl::InvalidArgumentError(
              absl::StrCat(r.source, ": route for '", r.domain, "': the environment variable ",
                           r.auth_password_env, " (auth_password_env) is not set or empty"));
        c.password = v;
      } else {
        std::ifstream in(r.auth_password_file);
        std::getline(in, c.password);
        while (!c.password.empty() && (c.password.back() == '\r' || c.password.back() == ' '))
          c.password.pop_back();
        if (!in && c.password.empty())
          return absl::InvalidArgumentError(absl::StrCat(r.source, ": route for '", r.domain,
                                                         "': cannot read auth_password_file '",
                                                         r.auth_password_file, "'"));
        if (c.password.empty())
          return absl::InvalidArgumentError(
              absl::StrCat(r.source, ": route for '", r.domain, "': auth_password_file '",
                           r.auth_password_file, "' has an empty first line"));
      }
      ra.credentials = std::move(c);
    }
    e->route_auth_.push_back(std::move(ra));
  }
  for (const config::EgressSourceConfig& s : config.egress_sources) {
    EgressSource es;
    es.name = s.name;
    es.ehlo = s.ehlo;
    es.warmup = s.warmup;
    if (!s.warmup_start.empty()) {
      std::string err;
      absl::ParseTime("%Y-%m-%d", s.warmup_start, absl::UTCTimeZone(), &es.warmup_start, &err);
    }
    auto* v4 = reinterpret_cast<sockaddr_in*>(&es.addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&es.addr);
    if (inet_pton(AF_INET, s.address.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      es.addr_len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, s.address.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      es.addr_len = sizeof(sockaddr_in6);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(s.source, ": egress source '", s.name, "': bad address ", s.address));
    }
    e->egress_sources_.push_back(std::move(es));
  }
  for (const config::EgressPoolConfig& p : config.egress_pools) {
    std::vector<int> members;
    for (const std::string& name : p.sources)
      for (size_t i = 0; i < config.egress_sources.size(); ++i)
        if (config.egress_sources[i].name == name) members.push_back(static_cast<int>(i));
    e->egress_pools_.push_back(std::move(members));
  }
  int n = e->options_.shards > 0 ? e->options_.shards : config.EffectiveShards();
  if (registry == nullptr) {
    e->own_registry_ = std::make_unique<metrics::Registry>();
    registry = e->own_registry_.get();
  }
  e->registry_ = registry;
  e->max_connections_ = std::max(1, config.delivery.max_connections);
  e->max_composed_bytes_ = std::max<uint64_t>(1, config.delivery.max_composed_bytes);
  e->compose_queue_ = std::make_unique<ComposeQueue>(n);
  for (int i = 0; i < n; ++i)
    e->shards_.push_back(std::make_unique<Shard>(e.get(), i, registry->AddShard()));
  return e;
}

bool Engine::WarmupTake(int source, const std::string& key) {
  const EgressSource& s = egress_sources_[static_cast<size_t>(source)];
  if (s.warmup.empty()) return true;
  // Day 1 is warmup_start (UTC); before it, day 1's limit.
  const int64_t day =
      std::max<int64_t>(1, absl::ToInt64Hours(absl::Now() - s.warmup_start) / 24 + 1);
  uint64_t limit = s.warmup.front().second;
  for (const auto& [from, cap] : s.warmup)
    if (day >= from) limit = cap;
  if (limit == 0) return true;  // 0: no cap (the end of the warm-up)
  const std::string slot = absl::StrCat(source, "|", key, "|", day);
  absl::MutexLock lock(&warmup_mu_);
  uint64_t& n = warmup_counts_[slot];
  if (n >= limit) return false;
  ++n;
  return true;
}

int Engine::RouteAuthFor(std::string_view domain) const {
  if (route_auth_.empty()) return -1;
  auto find = [&](std::string_view pattern) {
    for (size_t i = 0; i < route_auth_.size(); ++i)
      if (route_auth_[i].pattern == pattern) return static_cast<int>(i);
    return -1;
  };
  // A route with no AUTH/TLS of its own that matches more closely wins: then
  // nothing applies (the dns router picks the same route for the hosts).
  auto routed_exactly = [&](std::string_view pattern) {
    for (const config::RouteConfig& r : config_.routes)
      if (r.domain == pattern) return true;
    return false;
  };
  if (routed_exactly(domain)) return find(domain);
  std::string_view rest = domain;
  for (size_t dot = rest.find('.'); dot != std::string_view::npos; dot = rest.find('.')) {
    rest = rest.substr(dot + 1);
    const std::string pattern = "*." + std::string(rest);
    if (routed_exactly(pattern)) return find(pattern);
  }
  return find("*");
}

absl::Status Engine::ReloadShaping() {
  absl::StatusOr<shaping::ShapingConfig> shaping = shaping::LoadShaping(config_);
  if (!shaping.ok()) return shaping.status();
  absl::StatusOr<std::unique_ptr<const smtp::Classifier>> rules =
      shaping::BuildClassifier(shaping->rules);
  if (!rules.ok()) return rules.status();
  const size_t providers = shaping->providers.size(), domains = shaping->domains.size(),
               n_rules = shaping->rules.size();
  smtp::InstallClassifier(*std::move(rules));
  shaper_->Reload(*std::move(shaping));
  for (auto& s : shards_) {
    Shard* shard = s.get();
    shard->Post([shard] { shard->ShapingReloaded(); });
  }
  SALVO_LOG(kInfo, "shaping: reloaded {} ({} providers, {} domain tables, {} rules)",
            config_.shaping_file.empty() ? "the defaults" : config_.shaping_file, providers,
            domains, n_rules);
  return absl::OkStatus();
}

Engine::Engine(const config::Config& config, MessageSource* source, EngineOptions options)
    : config_(config),
      source_(source),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : MonotonicClock::Real()) {}

Engine::~Engine() {
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

void Engine::RequestShutdown() {
  shutdown_.store(true);
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void Engine::ForceShutdown() {
  shutdown_.store(true);
  force_.store(true);
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void Engine::PostResults(int shard, uint64_t seq, std::vector<JobResult> results) {
  absl::MutexLock lock(&mu_);
  if (static_cast<size_t>(shard) < posted_seq_.size())
    posted_seq_[static_cast<size_t>(shard)] =
        std::max(posted_seq_[static_cast<size_t>(shard)], seq);
  if (results_.empty()) {
    results_ = std::move(results);
  } else {
    for (JobResult& r : results) results_.push_back(std::move(r));
  }
  if (results_.size() >= wake_at_results_) wake_ = true;
}

void Engine::ShardStopped() {
  absl::MutexLock lock(&mu_);
  shards_stopped_++;
  wake_ = true;
}

EngineStats Engine::Stats() const {
  EngineStats st;
  for (const auto& s : shards_) {
    metrics::ShardCounters* c = s->counters();
    st.delivered += c->Get(metrics::Counter::kRecipientsDelivered);
    st.deferred += c->Get(metrics::Counter::kRecipientsDeferred);
    st.bounced += c->Get(metrics::Counter::kRecipientsBounced);
    st.messages += c->Get(metrics::Counter::kMessagesSent);
    st.sessions_opened += c->Get(metrics::Counter::kSessionsOpened);
    st.connect_failures += c->Get(metrics::Counter::kConnectFailures);
    st.bytes_sent += c->Get(metrics::Counter::kBytesSent);
    st.open_sessions += s->open_sessions();
    st.peak_sessions += s->peak_sessions();
  }
  st.jobs_in_flight = in_flight_shadow_.load(std::memory_order_relaxed);
  st.connections = static_cast<uint64_t>(connections_.load(std::memory_order_relaxed));
  st.connections_peak = static_cast<uint64_t>(connections_peak_.load(std::memory_order_relaxed));
  st.connection_waits = connection_waits_.load(std::memory_order_relaxed);
  st.composed_bytes = composed_bytes_.load(std::memory_order_relaxed);
  st.composed_bytes_peak = composed_bytes_peak_.load(std::memory_order_relaxed);
  st.compose_waits = compose_waits_.load(std::memory_order_relaxed);
  return st;
}

namespace {

void RaisePeak(std::atomic<int64_t>* peak, int64_t v) {
  int64_t p = peak->load(std::memory_order_relaxed);
  while (v > p && !peak->compare_exchange_weak(p, v, std::memory_order_relaxed)) {
  }
}

void RaisePeak(std::atomic<uint64_t>* peak, uint64_t v) {
  uint64_t p = peak->load(std::memory_order_relaxed);
  while (v > p && !peak->compare_exchange_weak(p, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

bool Engine::TakeConnectionSlot() {
  int64_t n = connections_.load(std::memory_order_relaxed);
  do {
    if (n >= max_connections_) {
      connection_waits_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!connections_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  RaisePeak(&connections_peak_, n + 1);
  return true;
}

void Engine::ReleaseConnectionSlot() { connections_.fetch_sub(1, std::memory_order_relaxed); }

bool Engine::AdmitComposed(std::shared_ptr<const std::string>* body) {
  const uint64_t size = (*body)->size();
  uint64_t n = composed_bytes_.load(std::memory_order_relaxed);
  do {
    if (n > 0 && n >= max_composed_bytes_) {
      compose_waits_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!composed_bytes_.compare_exchange_weak(n, n + size, std::memory_order_relaxed));
  RaisePeak(&composed_bytes_peak_, n + size);
  // The same bytes under a new owner whose last reference gives them back.
  const std::string* raw = body->get();
  *body = std::shared_ptr<const std::string>(
      raw, [this, size, keep = std::move(*body)](const std::string*) mutable {
        keep.reset();
        composed_bytes_.fetch_sub(size, std::memory_order_relaxed);
      });
  return true;
}

void Engine::Dispatch(std::vector<Job> jobs) {
  const int n = shard_count();
  std::vector<std::vector<Job>> per(n);
  for (Job& job : jobs)
    per[dns::ShardForSite(job.domain, static_cast<unsigned>(n))].push_back(std::move(job));
  for (int i = 0; i < n; ++i) {
    if (per[i].empty()) continue;
    Shard* s = shards_[i].get();
    s->Post([s, j = std::move(per[i])]() mutable { s->AcceptJobs(std::move(j)); });
  }
}

void Engine::AckDurable(const std::vector<uint64_t>& posted) {
  for (size_t i = 0; i < posted.size() && i < acked_seq_.size(); ++i) {
    if (posted[i] <= acked_seq_[i]) continue;
    acked_seq_[i] = posted[i];
    Shard* s = shards_[i].get();
    s->Post([s, seq = posted[i]] { s->DurableUpTo(seq); });
  }
}

void Engine::StopShards(bool force) {
  for (auto& s : shards_) {
    Shard* shard = s.get();
    if (force)
      shard->Post([shard] { shard->ForceClose(); });
    else
      shard->Post([shard] { shard->BeginDrain(); });
  }
}

absl::Status Engine::Run() {
  // Shard threads inherit this thread's signal mask; the CLI blocks SIGTERM
  // and SIGINT before calling Run so only its signal thread sees them.
  const int n = shard_count();
  {
    absl::MutexLock lock(&mu_);
    posted_seq_.assign(static_cast<size_t>(n), 0);
  }
  acked_seq_.assign(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    std::promise<absl::Status> started;
    std::future<absl::Status> ready = started.get_future();
    Shard* s = shards_[i].get();
    threads_.emplace_back([s, &started] { s->ThreadMain(&started); });
    absl::Status st = ready.get();
    if (!st.ok()) {
      threads_.back().join();
      threads_.pop_back();
      for (size_t k = 0; k < threads_.size(); ++k) shards_[k]->Stop();
      for (std::thread& t : threads_) t.join();
      threads_.clear();
      return absl::Status(st.code(),
                          "shard " + std::to_string(i) + ": " + std::string(st.message()));
    }
  }

  const config::Config& cfg = config_;
  const size_t limit = static_cast<size_t>(std::max(1, cfg.delivery.in_flight_limit));
  const size_t batch = static_cast<size_t>(std::max(1, cfg.queue.lease_batch));
  // Leases wait until there is room for a full one (or a quarter of the
  // limit, when that is smaller): completions that each free a few slots
  // would otherwise cost a lease (a RocksDB seek and write, a post to each
  // shard) per feeder turn. With durable_before_next the connections move in
  // step with the feeder's writes, a few dozen results a turn; the pools
  // still hold at least 3/4 of the limit.
  const size_t refill = std::min(batch, std::max<size_t>(1, limit / 4));
  const auto poll = std::chrono::duration_cast<Steady::duration>(cfg.queue.poll_interval);
  const auto grace = std::chrono::duration_cast<Steady::duration>(cfg.delivery.shutdown_deadline);
  absl::Status error;
  bool drain_sent = false, force_sent = false;
  Steady::time_point force_started{}, drain_deadline{}, next_fetch = clock_->Now(),
                                                        next_tick = clock_->Now();
  std::vector<JobResult> results;
  // Per shard, the newest result batch handed to Complete; `unacked`: some
  // of it is not yet durable (the spool holds outcomes its disk refused).
  std::vector<uint64_t> posted(static_cast<size_t>(n), 0);
  bool unacked = false;
  const bool gate = cfg.queue.durable_before_next;
  // Results trickling in, a few per turn (signing bounds the rate, or slow
  // peers): the next wait lingers up to kLinger for kGroupResults of them,
  // so a feeder turn (a RocksDB write, an ack to each shard, a wake-up of
  // this thread) carries more. A connection waiting for its ack waits at
  // most kLinger longer. At the plain bench's rate a turn already finds more.
  bool linger = false;
  constexpr absl::Duration kLinger = absl::Milliseconds(2);
  constexpr size_t kGroupResults = 16;

  while (true) {
    auto now = clock_->Now();
    if (shutdown_.load() && !drain_sent) {
      drain_sent = true;
      drain_deadline = now + grace;
      if (!done_)
        SALVO_LOG(kInfo, "shutting down: {} job(s) in flight, waiting up to {:.0f}s", in_flight_,
                  cfg.delivery.shutdown_deadline.count());
      StopShards(false);
    }
    if (drain_sent && !force_sent && now >= drain_deadline) force_.store(true);
    if (force_.load() && !force_sent) {
      force_sent = true;
      if (!drain_sent) {
        drain_sent = true;
        drain_deadline = now;
      }
      SALVO_LOG(kWarning, "closing all connections now: {} job(s) in flight are deferred",
                in_flight_);
      StopShards(true);
    }
    // Hard cap: shards that cannot close within 5 s of a force are abandoned.
    // Real time on purpose: a safety net against a wedged thread, not a
    // deadline of the product (tests advancing a fake clock must not hit it).
    if (force_sent && force_started == Steady::time_point{}) force_started = Steady::now();
    if (force_sent && Steady::now() >= force_started + std::chrono::seconds(5)) {
      SALVO_LOG(kError, "shards did not stop in time; exiting anyway");
      break;
    }

    bool fetched_full = false;
    if (!drain_sent && error.ok() && limit - std::min(limit, in_flight_) >= refill &&
        now >= next_fetch) {
      auto jobs = source_->Fetch(std::min(limit - in_flight_, batch));
      if (!jobs.ok()) {
        error = jobs.status();
        SALVO_LOG(kError, "message source failed: {}", std::string(error.message()));
        shutdown_.store(true);
        continue;
      }
      if (jobs->empty()) {
        next_fetch = now + poll;
      } else {
        fetched_full = jobs->size() == std::min(limit - in_flight_, batch);
        in_flight_ += jobs->size();
        Dispatch(std::move(*jobs));
        if (!fetched_full) next_fetch = now + poll / 4;
      }
    }

    {
      absl::MutexLock lock(&mu_);
      const bool room = limit - std::min(limit, in_flight_) >= refill;
      auto wait = fetched_full && room ? absl::ZeroDuration() : absl::Milliseconds(50);
      if (!drain_sent && room && next_fetch > now)
        wait = std::min(wait, absl::FromChrono(next_fetch - now));
      if (linger) {
        wake_at_results_ = kGroupResults;
        wait = std::min(wait, kLinger);
      }
      mu_.AwaitWithTimeout(absl::Condition(&wake_), wait);
      wake_ = false;
      wake_at_results_ = 1;
      results.swap(results_);
      if (!results.empty()) posted = posted_seq_;
    }
    linger = !drain_sent && !results.empty() && results.size() < kGroupResults;
    if (!results.empty()) {
      in_flight_ -= std::min(in_flight_, results.size());
      absl::Status st = source_->Complete(absl::MakeSpan(results));
      if (!st.ok()) {
        SALVO_LOG(kError, "recording delivery results failed: {}", std::string(st.message()));
        if (error.ok()) error = st;
        shutdown_.store(true);
      } else {
        unacked = true;
      }
      results.clear();
    }
    // Connections waiting for their last outcome to be recorded go on
    // (at most 50 ms late while the spool holds outcomes and retries).
    // Without durable_before_next none waits: no ack (a post to each shard
    // per turn, waking it for nothing).
    if (unacked && gate && source_->Durable()) {
      unacked = false;
      AckDurable(posted);
    }
    in_flight_shadow_.store(in_flight_, std::memory_order_relaxed);

    if (!drain_sent && source_->Done(in_flight_)) {
      done_ = true;
      shutdown_.store(true);
    }
    if (drain_sent) {
      absl::MutexLock lock(&mu_);
      if (shards_stopped_ >= n && results_.empty() && in_flight_ == 0) break;
    }
    if (options_.on_tick && clock_->Now() >= next_tick) {
      next_tick = clock_->Now() + std::chrono::seconds(1);
      options_.on_tick(Stats());
    }
  }

  for (auto& s : shards_) s->Stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // Results that arrived after the loop (late hand-offs) still count.
  {
    absl::MutexLock lock(&mu_);
    results.swap(results_);
  }
  if (!results.empty()) {
    in_flight_ -= std::min(in_flight_, results.size());
    (void)source_->Complete(absl::MakeSpan(results));
  }
  in_flight_shadow_.store(in_flight_, std::memory_order_relaxed);
  return error;
}

}  // namespace salvo::delivery
