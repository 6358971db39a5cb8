// salvo run  --config FILE            the sending engine, until SIGTERM/SIGINT
// salvo send [CAMPAIGN.toml | --name --template --recipients --from ...]
//            [--config FILE] [--data-dir DIR] [--strict] [--allow-duplicate-name]
//                                     load one campaign, send it until every
//                                     recipient is final, print a summary, exit
//
// Both open the spool in the data directory (RocksDB: one writer process),
// recover recipients left in flight by a crash, start the admin socket (so
// `salvo campaign ...` works meanwhile) and run engine/delivery.
// Signals: SIGHUP = reload the shaping file. SIGTERM or SIGINT = graceful
// shutdown (finish open transactions within [delivery] shutdown_deadline); a
// second SIGINT = close now.
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/cli/commands.h"
#include "engine/cli/inbound_wiring.h"
#include "engine/cli/observability.h"
#include "engine/cli/wiring.h"
#include "engine/common/log.h"
#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/spool_source.h"
#include "engine/message/template.h"
#include "engine/reactor/reactor.h"
#include "metrics/metrics.h"
#include "queue/admin_server.h"
#include "queue/campaign.h"
#include "queue/spool.h"

namespace salvo::cli {
namespace {

std::string S(absl::string_view v) { return std::string(v.data(), v.size()); }

struct RunArgs {
  std::string config_file;
  std::string data_dir;
  int shards = 0;
  // send
  std::string campaign_file;
  std::string name, template_path, recipients, from, dkim_domain;
  std::string metrics_listen;
  std::string node;  // send --node i/N
  bool strict = false;
  bool allow_duplicate_name = false;  // send: load a campaign sent before again
  bool json = false;
  // Progress: a line every progress_interval seconds (0 = none); on a
  // terminal an updating line instead. --quiet: neither.
  double progress_interval = 10;
  bool quiet = false;
};

struct Progress {
  double interval_seconds = 10;  // 0 = no periodic line
  bool quiet = false;
};

// Recipients waiting in the spool (queued, deferred, in flight), every campaign.
uint64_t QueueWaiting(const queue::Spool& spool) {
  uint64_t n = 0;
  for (const queue::CampaignInfo& c : spool.ListCampaigns())
    if (auto counts = spool.Counts(c.id); counts.ok()) n += counts->Pending();
  return n;
}

// Waits for SIGTERM/SIGINT/SIGHUP on its own thread (the signals are blocked
// in every other thread): shutdown requests, and SIGHUP reloads the shaping
// file (a bad one is logged with file:line:column; the old one stays).
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SignalWatcher() {
    Stop();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void Start(delivery::Engine* engine) {
    thread_ = std::thread([this, engine] {
      int interrupts = 0;
      while (!stop_.load()) {
        timespec ts{0, 100'000'000};
        int sig = sigtimedwait(&set_, nullptr, &ts);
        if (sig == SIGHUP) {
          if (absl::Status s = engine->ReloadShaping(); !s.ok())
            SALVO_LOG(kError, "SIGHUP: shaping file not reloaded, the old one stays in force: {}",
                      std::string(s.message()));
        } else if (sig == SIGTERM) {
          SALVO_LOG(kInfo, "SIGTERM: finishing open transactions, then stopping");
          engine->RequestShutdown();
        } else if (sig == SIGINT) {
          if (++interrupts == 1) {
            SALVO_LOG(kInfo, "SIGINT: finishing open transactions (interrupt again to stop now)");
            engine->RequestShutdown();
          } else {
            engine->ForceShutdown();
          }
        }
      }
    });
  }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  bool any() const { return false; }

 private:
  sigset_t set_{}, old_{};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// VmRSS of this process, for the benchmark figures of `salvo send --json`.
unsigned long long CurrentRssBytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024;
}

struct Loaded {
  config::Config config;
  std::unique_ptr<queue::Spool> spool;
  std::shared_ptr<const dkim::KeyStore> keys;
  message::VerpSettings verp;  // [verp], secret read
};

// Config, io_uring check, data dir, spool, DKIM keys. Prints the error and
// returns the exit code on failure.
int Prepare(const RunArgs& a, CLI::App* cmd, Loaded* out) {
  // The file (if any), then the SALVO_* environment, then the flags.
  auto cfg = LoadCliConfig(a.config_file);
  if (!cfg.ok()) {
    PrintError(S(cfg.status().message()));
    return kExitFailure;
  }
  out->config = std::move(*cfg);
  if (!a.data_dir.empty()) out->config.data_dir = a.data_dir;
  if (a.shards > 0) out->config.shards = a.shards;
  // --log-level on the command line wins over the file.
  if (cmd->get_parent() && cmd->get_parent()->get_option("--log-level")->count() == 0) {
    LogLevel level;
    if (ParseLogLevel(out->config.log_level, &level)) SetLogLevel(level);
  }
  auto inputs = OpenEngineInputs(std::move(out->config));
  if (!inputs.ok()) {
    PrintError(S(inputs.status().message()));
    return kExitFailure;
  }
  out->config = std::move(inputs->config);
  out->spool = std::move(inputs->spool);
  out->keys = std::move(inputs->keys);
  out->verp = std::move(inputs->verp);
  return kExitOk;
}

// Runs the engine over the spool with the admin socket up and metrics served
// on `metrics_listen` ("" = none; see StartObservability for `required`).
// Returns the exit code; *finished tells whether the source finished.
int RunEngine(Loaded& l, SignalWatcher& signals, delivery::SpoolSourceOptions so, Progress progress,
              const std::string& metrics_listen, bool metrics_required,
              delivery::EngineStats* stats_out, bool* finished, bool serve_inbound = false) {
  so.shards = l.config.EffectiveShards();
  so.max_per_domain = static_cast<size_t>(l.config.queue.lease_batch);
  // A big domain's share of each lease stops at a quarter of the window in
  // flight (queue/README.md, "Lease order").
  so.backlog_in_flight =
      std::max(2 * so.max_per_domain, static_cast<size_t>(l.config.delivery.in_flight_limit) / 4);
  so.max_recipients_per_message = static_cast<size_t>(l.config.delivery.max_recipients_per_message);
  so.egress_pools.clear();
  for (const config::EgressPoolConfig& p : l.config.egress_pools) so.egress_pools.push_back(p.name);
  so.verp = l.verp;
  auto obs = StartObservability(l.config, metrics_listen, metrics_required, l.spool.get());
  if (!obs.ok()) {
    PrintError(S(obs.status().message()));
    return kExitFailure;
  }
  metrics::Registry* registry = obs->registry.get();
  so.registry = registry;
  so.delivery_log = obs->delivery_log ? obs->delivery_log->AddProducer() : nullptr;
  for (const config::EgressSourceConfig& src : l.config.egress_sources)
    so.egress_addresses.push_back(src.address);
  auto source = std::make_unique<delivery::SpoolSource>(l.spool.get(), l.keys, so);
  // The engine, for the admin thread and the metrics scrape while it exists.
  struct EngineRef {
    std::mutex mu;
    delivery::Engine* engine = nullptr;
  };
  auto engine_ref = std::make_shared<EngineRef>();
  queue::AdminOptions admin_options;
  admin_options.engine_status = [engine_ref] {
    nlohmann::json keys = nlohmann::json::array();
    std::lock_guard<std::mutex> lock(engine_ref->mu);
    if (!engine_ref->engine) return keys;
    for (const shaping::KeyView& v : engine_ref->engine->ShapingSnapshot(50)) {
      if (v.suspended_seconds == 0 && !v.throttled) continue;
      keys.push_back({{"key", v.key},
                      {"now", v.describe},
                      {"message_rate", v.rate},
                      {"configured_message_rate", v.configured_rate},
                      {"connections", v.connections},
                      {"configured_connections", v.configured_connections},
                      {"open", v.open},
                      {"suspended_seconds", v.suspended_seconds}});
    }
    return keys;
  };
  admin_options.validate_template = TemplateValidator();
  admin_options.check_first_copy = FirstCopyCheck(l.keys, l.verp);
  admin_options.socket_path = l.config.AdminSocketPath();
  admin_options.tcp_listen = l.config.queue.admin_listen;
  if (!l.config.queue.admin_token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(l.config.queue.admin_token_file);
    if (!token.ok()) {
      PrintError("queue.admin_token_file: " + S(token.status().message()));
      return kExitFailure;
    }
    admin_options.token = std::move(*token);
  }
  auto admin = queue::AdminServer::Start(l.spool.get(), admin_options);
  if (!admin.ok()) {
    PrintError("admin socket: " + S(admin.status().message()));
    return kExitFailure;
  }
  std::unique_ptr<InboundServices> inbound;
  delivery::EngineOptions eo;
  const bool tty = !progress.quiet && isatty(STDERR_FILENO) == 1;
  // Rates over the last interval (a second on a terminal, else
  // progress.interval_seconds), from the engine's totals.
  struct Last {
    delivery::EngineStats stats;
    std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
  };
  auto last = std::make_shared<Last>();
  queue::Spool* spool = l.spool.get();
  eo.on_tick = [tty, registry, progress, last, spool](const delivery::EngineStats& s) {
    registry->SetJobsInFlight(s.jobs_in_flight);
    registry->SetEngineResources(
        {s.connections, s.connection_waits, s.composed_bytes, s.compose_waits});
    if (progress.quiet || (!tty && progress.interval_seconds <= 0)) return;
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last->at).count();
    if (!tty && secs + 0.5 < progress.interval_seconds) return;
    if (secs <= 0) return;
    auto rate = [secs](uint64_t now_n, uint64_t then_n) {
      return static_cast<double>(now_n - std::min(now_n, then_n)) / secs;
    };
    const double delivered = rate(s.delivered, last->stats.delivered);
    const double deferred = rate(s.deferred, last->stats.deferred);
    const double bounced = rate(s.bounced, last->stats.bounced);
    const uint64_t waiting = QueueWaiting(*spool);
    last->stats = s;
    last->at = now;
    if (tty) {
      std::fprintf(stderr,
                   "\r%.0f delivered/s  %.0f deferred/s  %.0f bounced/s  queue %llu  sessions %llu"
                   "  (total delivered %llu)   ",
                   delivered, deferred, bounced, static_cast<unsigned long long>(waiting),
                   static_cast<unsigned long long>(s.open_sessions),
                   static_cast<unsigned long long>(s.delivered));
      std::fflush(stderr);
      return;
    }
    std::fprintf(stderr,
                 "%s progress: %.1f delivered/s, %.1f deferred/s, %.1f bounced/s over %.0f s; "
                 "queue %llu waiting; sessions %llu; totals: delivered %llu, deferred %llu, "
                 "bounced %llu\n",
                 absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()).c_str(),
                 delivered, deferred, bounced, secs, static_cast<unsigned long long>(waiting),
                 static_cast<unsigned long long>(s.open_sessions),
                 static_cast<unsigned long long>(s.delivered),
                 static_cast<unsigned long long>(s.deferred),
                 static_cast<unsigned long long>(s.bounced));
  };
  auto engine = delivery::Engine::Create(l.config, source.get(), registry, std::move(eo));
  if (!engine.ok()) {
    PrintError(S(engine.status().message()));
    return kExitFailure;
  }
  // salvo run: the inbound listener and the unsubscribe endpoint, once the
  // engine has installed its bounce rules (the intake classifies with them);
  // reports a crash left stored are processed from the start.
  if (serve_inbound) {
    auto started = StartInboundServices(l.config, l.spool.get(), registry, l.verp);
    if (!started.ok()) {
      PrintError(S(started.status().message()));
      (*admin)->Stop();
      return kExitFailure;
    }
    inbound = std::move(*started);
  }
  signals.Start(engine->get());
  {
    std::lock_guard<std::mutex> lock(engine_ref->mu);
    engine_ref->engine = engine->get();
  }
  registry->SetThrottleSource([engine_ref] {
    std::vector<metrics::ThrottleSample> out;
    std::lock_guard<std::mutex> lock(engine_ref->mu);
    if (!engine_ref->engine) return out;
    for (const shaping::KeyView& v : engine_ref->engine->ShapingSnapshot(metrics::kMaxThrottleKeys))
      out.push_back({v.key, v.rate, static_cast<double>(v.connections), v.suspended_seconds > 0});
    return out;
  });
  SALVO_LOG(kInfo, "engine running: {} shard(s), data dir {}, admin socket {}{}{}",
            (*engine)->shard_count(), l.config.data_dir, (*admin)->socket_path(),
            (*admin)->tcp_address().empty() ? "" : ", admin listener ", (*admin)->tcp_address());
  absl::Status st = (*engine)->Run();
  signals.Stop();
  inbound.reset();
  registry->SetThrottleSource(nullptr);
  {
    std::lock_guard<std::mutex> lock(engine_ref->mu);
    engine_ref->engine = nullptr;
  }
  // The source hands its last delivery log lines over as it goes; the writer
  // then writes everything and syncs.
  source.reset();
  if (obs->delivery_log) obs->delivery_log->Stop();
  if (tty) std::fprintf(stderr, "\r\033[K");
  (*admin)->Stop();
  *stats_out = (*engine)->Stats();
  *finished = (*engine)->finished();
  if (!st.ok()) {
    PrintError(S(st.message()));
    return kExitFailure;
  }
  return kExitOk;
}

int DoRun(const RunArgs& a, CLI::App* cmd) {
  // Block SIGTERM/SIGINT before any thread exists (RocksDB starts its own):
  // threads inherit the mask, so only the watcher thread sees them.
  SignalWatcher signals;
  Loaded l;
  if (int rc = Prepare(a, cmd, &l); rc != kExitOk) return rc;
  delivery::EngineStats stats;
  bool finished = false;
  int rc = RunEngine(l, signals, {}, {a.progress_interval, a.quiet}, l.config.metrics.listen,
                     l.config.metrics.listen_set, &stats, &finished, /*serve_inbound=*/true);
  std::fprintf(stderr,
               "salvo run stopped: delivered %llu, deferred %llu, bounced %llu recipient "
               "attempt(s); %llu session(s)\n",
               static_cast<unsigned long long>(stats.delivered),
               static_cast<unsigned long long>(stats.deferred),
               static_cast<unsigned long long>(stats.bounced),
               static_cast<unsigned long long>(stats.sessions_opened));
  return rc;
}

int DoSend(const RunArgs& a, CLI::App* cmd) {
  queue::CampaignSpec spec;
  if (int rc = CampaignSpecFromFlags(
          {a.campaign_file, a.name, a.template_path, a.recipients, a.from, a.dkim_domain},
          "salvo send", &spec);
      rc != kExitOk)
    return rc;

  if (!a.metrics_listen.empty()) {
    std::string host;
    int port = 0;
    if (!config::SplitHostPort(a.metrics_listen, 0, &host, &port).ok() || port == 0) {
      PrintError("--metrics-listen: expected ADDR:PORT, got \"" + a.metrics_listen + "\"");
      return kExitUsage;
    }
  }
  SignalWatcher signals;  // see DoRun
  Loaded l;
  if (int rc = Prepare(a, cmd, &l); rc != kExitOk) return rc;
  if (int rc = CheckEgressPool(spec, l.config, a.campaign_file); rc != kExitOk) return rc;
  if (int rc = CheckDkimDomain(spec, l.config, a.campaign_file); rc != kExitOk) return rc;
  queue::LoadOptions lo;
  lo.strict = a.strict;
  // Running the same `salvo send` twice would mail the whole list twice.
  lo.refuse_duplicates = !a.allow_duplicate_name;
  lo.validate_template = TemplateValidator();
  lo.check_first_copy = FirstCopyCheck(l.keys, l.verp);
  if (int rc = ResolveNodeShare(a.node.empty() ? l.config.fleet.node : a.node, &lo.node);
      rc != kExitOk)
    return rc;
  auto report = l.spool->LoadCampaign(spec, lo);
  if (!report.ok()) {
    PrintError(S(report.status().message()));
    return kExitFailure;
  }
  std::fprintf(stderr,
               "loaded campaign %llu '%s': %llu accepted, %llu duplicates, %llu suppressed, %llu "
               "invalid\n",
               static_cast<unsigned long long>(queue::Value(report->id)), spec.name.c_str(),
               static_cast<unsigned long long>(report->accepted),
               static_cast<unsigned long long>(report->duplicates),
               static_cast<unsigned long long>(report->suppressed),
               static_cast<unsigned long long>(report->invalid));
  if (!lo.node.whole())
    std::fprintf(stderr, "node %s: %llu recipient(s) left to the other nodes\n",
                 lo.node.ToString().c_str(), static_cast<unsigned long long>(report->other_nodes));
  for (const std::string& e : report->first_errors) std::fprintf(stderr, "  %s\n", e.c_str());

  delivery::SpoolSourceOptions so;
  so.until_done = report->id;
  delivery::EngineStats stats;
  bool finished = false;
  auto t0 = std::chrono::steady_clock::now();
  rusage ru0{}, ru1{};
  getrusage(RUSAGE_SELF, &ru0);
  const unsigned long long rss_before = CurrentRssBytes();
  // Metrics only when asked for: --metrics-listen, or metrics.listen in the file.
  std::string listen = !a.metrics_listen.empty()     ? a.metrics_listen
                       : l.config.metrics.listen_set ? l.config.metrics.listen
                                                     : "";
  int rc = RunEngine(l, signals, so, {a.progress_interval, a.quiet || a.json}, listen, true, &stats,
                     &finished);
  getrusage(RUSAGE_SELF, &ru1);
  auto cpu = [](const rusage& r) {
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  const double engine_cpu = cpu(ru1) - cpu(ru0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto counts = l.spool->Counts(report->id);
  if (!counts.ok()) {
    PrintError(S(counts.status().message()));
    return kExitFailure;
  }
  using RS = queue::RecipientState;
  const queue::StateCounts& c = *counts;
  if (a.json) {
    nlohmann::json j = {{"campaign", queue::Value(report->id)},
                        {"finished", finished},
                        {"seconds", secs},
                        {"delivered", c[RS::kDelivered]},
                        {"bounced", c[RS::kBounced]},
                        {"deferred", c[RS::kDeferred]},
                        {"expired", c[RS::kExpired]},
                        {"queued", c[RS::kQueued] + c[RS::kInFlight]},
                        {"suppressed", c[RS::kSuppressed]},
                        {"cancelled", c[RS::kCancelled]},
                        {"sessions", stats.sessions_opened},
                        {"peak_sessions", stats.peak_sessions},
                        {"engine_cpu_seconds", engine_cpu},
                        {"peak_rss_bytes", static_cast<uint64_t>(ru1.ru_maxrss) * 1024ull},
                        {"rss_before_engine_bytes", rss_before}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "campaign %llu %s in %.1f s: delivered %llu, bounced %llu, deferred %llu, expired %llu\n",
        static_cast<unsigned long long>(queue::Value(report->id)),
        finished ? "finished" : "stopped before finishing", secs,
        static_cast<unsigned long long>(c[RS::kDelivered]),
        static_cast<unsigned long long>(c[RS::kBounced]),
        static_cast<unsigned long long>(c[RS::kDeferred]),
        static_cast<unsigned long long>(c[RS::kExpired]));
  }
  if (rc != kExitOk) return rc;
  return finished ? kExitOk : kExitFailure;
}

}  // namespace

void RegisterRunCommands(CLI::App& app, CommandContext& ctx) {
  auto run_args = std::make_shared<RunArgs>();
  CLI::App* run =
      app.add_subcommand("run", "Run the sending engine until stopped (SIGTERM/SIGINT)");
  run->add_option("--config", run_args->config_file, "Configuration file (TOML)")
      ->check(ReadableFile());
  run->add_option("--data-dir", run_args->data_dir, "Spool directory (overrides the config)");
  run->add_option("--shards", run_args->shards, "Delivery threads (overrides the config)")
      ->check(CLI::Range(1, 256));
  run->add_option("--progress-interval", run_args->progress_interval,
                  "Seconds between progress lines (delivered, deferred, bounced per second, "
                  "queue depth) when stderr is not a terminal; 0 = none")
      ->check(CLI::Range(0.0, 86400.0));
  run->add_flag("--quiet", run_args->quiet,
                "No progress output (neither lines nor the terminal line)");
  run->callback([&ctx, run, run_args] { ctx.exit_code = DoRun(*run_args, run); });

  auto send_args = std::make_shared<RunArgs>();
  CLI::App* send = app.add_subcommand(
      "send", "Load a campaign and send it until every recipient is final, then exit");
  send->add_option("campaign_file", send_args->campaign_file, "Campaign file (TOML)")
      ->check(ReadableFile());
  send->add_option("--name", send_args->name, "Campaign name");
  send->add_option("--template", send_args->template_path, "Message template (RFC 5322)")
      ->check(ReadableFile());
  send->add_option("--recipients", send_args->recipients,
                   "Recipient list (CSV with an email column)")
      ->check(ReadableFile());
  send->add_option("--from", send_args->from, "Envelope sender / From address");
  send->add_option("--dkim-domain", send_args->dkim_domain, "DKIM signing domain");
  send->add_flag("--strict", send_args->strict, "An invalid address is fatal");
  send->add_flag("--allow-duplicate-name", send_args->allow_duplicate_name,
                 "Send even if a campaign that is not cancelled has the same name or the same "
                 "template, list and sender (its recipients get a second copy)");
  send->add_option("--config", send_args->config_file, "Configuration file (TOML)")
      ->check(ReadableFile());
  send->add_option("--data-dir", send_args->data_dir, "Spool directory (overrides the config)");
  send->add_option("--shards", send_args->shards, "Delivery threads (overrides the config)")
      ->check(CLI::Range(1, 256));
  send->add_flag("--json", send_args->json, "Print the summary as JSON");
  send->add_option("--progress-interval", send_args->progress_interval,
                   "Seconds between progress lines when stderr is not a terminal; 0 = none")
      ->check(CLI::Range(0.0, 86400.0));
  send->add_flag("--quiet", send_args->quiet, "No progress output");
  send->add_option("--node", send_args->node,
                   "Fleet: send only node i's share of N (i/N or auto/N; default: fleet.node)");
  send->add_option("--metrics-listen", send_args->metrics_listen,
                   "Serve Prometheus metrics on ADDR:PORT while sending");
  send->callback([&ctx, send, send_args] { ctx.exit_code = DoSend(*send_args, send); });
}

}  // namespace salvo::cli
