// salvo campaign load|list|status|pause|resume|cancel and
// salvo suppression add|remove|list|import.
//
// Every command first asks a running engine over its admin socket (RocksDB
// admits one writer process, and `salvo run` holds the spool); only when no
// engine answers does it open the spool directly. Both paths run the same
// queue::HandleAdminRequest, so the answers are identical.
//
// Data directory: --data-dir, else the --config file's data_dir, else
// ./salvo-data. The admin socket: the config's [queue] admin_socket, else
// <data_dir>/admin.sock.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/cli/commands.h"
#include "engine/cli/wiring.h"
#include "engine/config/config.h"
#include "queue/admin_server.h"
#include "queue/campaign.h"
#include "queue/spool.h"

namespace salvo::cli {

namespace {

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted.store(true); }

std::string S(absl::string_view v) { return std::string(v.data(), v.size()); }

struct Target {
  std::string data_dir;
  std::string socket;
  std::string node;  // the config's fleet.node (SALVO_NODE)
  config::Config config;
};

struct CommonArgs {
  std::string data_dir;
  std::string config_file;
  bool json = false;
};

absl::StatusOr<Target> ResolveTarget(const CommonArgs& args) {
  Target t;
  t.data_dir = args.data_dir;
  // The file (if any), then the SALVO_* environment, then the flags.
  absl::StatusOr<config::Config> cfg = LoadCliConfig(args.config_file);
  if (!cfg.ok()) return cfg.status();
  t.config = *cfg;
  if (t.data_dir.empty()) t.data_dir = cfg->data_dir;
  if (!cfg->queue.admin_socket.empty()) t.socket = cfg->queue.admin_socket;
  t.node = cfg->fleet.node;
  if (t.data_dir.empty()) t.data_dir = "./salvo-data";
  if (t.socket.empty()) t.socket = queue::AdminSocketPath(t.data_dir);
  return t;
}

// Sends `request` to the running engine, or runs it on the spool directly
// when none answers. `direct` (optional) replaces HandleAdminRequest for the
// direct path (loads, for the progress bar and Ctrl-C handling).
absl::StatusOr<nlohmann::json> Execute(
    const Target& target, const nlohmann::json& request, bool create_if_missing,
    const std::function<nlohmann::json(queue::Spool&)>& direct = nullptr) {
  absl::StatusOr<nlohmann::json> remote = queue::AdminCall(target.socket, request);
  if (remote.ok()) return remote;
  if (remote.status().code() != absl::StatusCode::kUnavailable) return remote.status();
  queue::Spool::Options options;
  options.create_if_missing = create_if_missing;
  absl::StatusOr<std::unique_ptr<queue::Spool>> spool =
      queue::Spool::Open(target.data_dir, options);
  if (!spool.ok()) {
    if (spool.status().code() == absl::StatusCode::kUnavailable) {
      return absl::UnavailableError(target.data_dir +
                                    " is in use by another process and no engine answers on " +
                                    target.socket);
    }
    if (spool.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(S(spool.status().message()) +
                                 " (load a campaign first, or pass --data-dir/--config)");
    }
    return spool.status();
  }
  if (direct) return direct(**spool);
  queue::AdminOptions admin;
  admin.validate_template = TemplateValidator();
  return queue::HandleAdminRequest(**spool, request, admin);
}

// Common tail: print an error response or hand the good one to `print`.
int Finish(const absl::StatusOr<nlohmann::json>& r,
           const std::function<void(const nlohmann::json&)>& print) {
  if (!r.ok()) {
    PrintError(S(r.status().message()));
    return kExitFailure;
  }
  if (!r->value("ok", false)) {
    PrintError(r->value("error", std::string("unknown error")));
    return kExitFailure;
  }
  print(*r);
  return kExitOk;
}

void AddCommon(CLI::App* cmd, CommonArgs* args, bool with_json = true) {
  cmd->add_option("--data-dir", args->data_dir,
                  "Spool directory (default: the config's data_dir, else ./salvo-data)");
  cmd->add_option("--config", args->config_file, "salvo run configuration (data_dir, admin socket)")
      ->check(ReadableFile());
  if (with_json) cmd->add_flag("--json", args->json, "Print JSON");
}

std::string Percent(double v) { return fmt::format("{:.1f}%", v * 100); }

constexpr const char* kStateOrder[] = {"queued",  "in_flight", "deferred",   "delivered",
                                       "bounced", "expired",   "suppressed", "cancelled"};

std::string CountsLine(const nlohmann::json& counts) {
  std::string out;
  for (const char* s : kStateOrder) {
    uint64_t n = counts.value(s, uint64_t{0});
    out += fmt::format("{}{} {}", out.empty() ? "" : "  ", s, n);
  }
  return out;
}

// ---- load -------------------------------------------------------------------

struct LoadArgs {
  CommonArgs common;
  std::string campaign_file;
  std::string name, template_path, recipients, from, dkim_domain;
  std::string node;  // --node i/N
  bool strict = false;
  bool allow_duplicate_name = false;
  bool case_sensitive_local_parts = false;
};

void PrintProgress(const queue::LoadProgress& p) {
  const double frac =
      p.bytes_total == 0 ? 0 : std::min(1.0, static_cast<double>(p.bytes_read) / p.bytes_total);
  const int width = 30;
  const int filled = static_cast<int>(frac * width);
  std::fprintf(stderr, "\rloading [%s%s] %5.1f%%  %llu rows", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), frac * 100,
               static_cast<unsigned long long>(p.rows));
  std::fflush(stderr);
}

int RunLoad(const LoadArgs& a) {
  queue::CampaignSpec spec;
  if (int rc = CampaignSpecFromFlags(
          {a.campaign_file, a.name, a.template_path, a.recipients, a.from, a.dkim_domain},
          "campaign load", &spec);
      rc != kExitOk)
    return rc;

  absl::StatusOr<Target> target = ResolveTarget(a.common);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  if (int rc = CheckEgressPool(spec, target->config, a.campaign_file); rc != kExitOk) return rc;
  if (int rc = CheckDkimDomain(spec, target->config, a.campaign_file); rc != kExitOk) return rc;
  // This node's share of the list: --node, else fleet.node (SALVO_NODE).
  queue::NodeShare node;
  if (int rc = ResolveNodeShare(a.node.empty() ? target->node : a.node, &node); rc != kExitOk)
    return rc;
  nlohmann::json request = {{"op", "load"},
                            {"spec", queue::SpecToJson(spec)},
                            {"strict", a.strict},
                            {"allow_duplicate_name", a.allow_duplicate_name},
                            {"case_sensitive_local_parts", a.case_sensitive_local_parts}};
  if (!node.whole()) request["node"] = node.ToString();
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto direct = [&](queue::Spool& spool) -> nlohmann::json {
    queue::LoadOptions lo;
    lo.strict = a.strict;
    lo.refuse_duplicates = !a.allow_duplicate_name;
    lo.case_sensitive_local_parts = a.case_sensitive_local_parts;
    lo.validate_template = TemplateValidator();
    // With the configuration's DKIM keys when this user can read them (the
    // engine, which signs, may run as another user: then unsigned here).
    // Without a configuration file the keys are unknown, not absent (the
    // engine's configuration may have them): CheckDkimDomain warned.
    absl::StatusOr<std::shared_ptr<const dkim::KeyStore>> keys = LoadKeys(target->config);
    // The [verp] of the configuration: a global bounce domain needs its
    // secret here too (an unreadable one is reported by the check).
    absl::StatusOr<message::VerpSettings> verp = VerpFromConfig(target->config);
    lo.check_first_copy =
        FirstCopyCheck(keys.ok() && !target->config.source_file.empty() ? *keys : nullptr,
                       verp.ok() ? *verp : message::VerpSettings{});
    lo.interrupted = &g_interrupted;
    lo.node = node;
    if (tty) lo.progress = PrintProgress;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    struct sigaction old_int {
    }, old_term{};
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    absl::StatusOr<queue::LoadReport> report = spool.LoadCampaign(spec, lo);
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (!report.ok()) return {{"ok", false}, {"error", S(report.status().message())}};
    return {{"ok", true}, {"report", queue::LoadReportToJson(*report)}};
  };
  return Finish(
      Execute(*target, request, /*create_if_missing=*/true, direct), [&](const nlohmann::json& r) {
        const nlohmann::json& rep = r["report"];
        if (a.common.json) {
          std::printf("%s\n", rep.dump(2).c_str());
          return;
        }
        std::fprintf(stderr,
                     "loaded campaign %llu '%s': %llu accepted, %llu duplicates, %llu "
                     "suppressed, %llu invalid (%.1f s)\n",
                     static_cast<unsigned long long>(rep.value("id", uint64_t{0})),
                     Printable(spec.name).c_str(),
                     static_cast<unsigned long long>(rep.value("accepted", uint64_t{0})),
                     static_cast<unsigned long long>(rep.value("duplicates", uint64_t{0})),
                     static_cast<unsigned long long>(rep.value("suppressed", uint64_t{0})),
                     static_cast<unsigned long long>(rep.value("invalid", uint64_t{0})),
                     rep.value("seconds", 0.0));
        if (!node.whole())
          std::fprintf(stderr, "node %s: %llu recipient(s) left to the other nodes\n",
                       node.ToString().c_str(),
                       static_cast<unsigned long long>(rep.value("other_nodes", uint64_t{0})));
        for (const auto& e : rep["first_errors"])
          std::fprintf(stderr, "  %s\n", Printable(e.get<std::string>()).c_str());
        if (rep.value("invalid", uint64_t{0}) > rep["first_errors"].size())
          std::fprintf(stderr, "  ... and %llu more invalid addresses\n",
                       static_cast<unsigned long long>(rep.value("invalid", uint64_t{0}) -
                                                       rep["first_errors"].size()));
        std::printf("%llu\n", static_cast<unsigned long long>(rep.value("id", uint64_t{0})));
      });
}

// ---- list / status / pause / resume / cancel ----------------------------------

int RunList(const CommonArgs& a) {
  absl::StatusOr<Target> target = ResolveTarget(a);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  return Finish(Execute(*target, {{"op", "list"}}, false), [&](const nlohmann::json& r) {
    if (a.json) {
      std::printf("%s\n", r["campaigns"].dump(2).c_str());
      return;
    }
    std::printf("%-6s %-24s %-10s %-20s %10s %10s %10s %10s\n", "ID", "NAME", "STATE", "CREATED",
                "TOTAL", "PENDING", "DELIVERED", "BOUNCED");
    for (const auto& c : r["campaigns"]) {
      const auto& n = c["counts"];
      const uint64_t pending = n.value("queued", uint64_t{0}) + n.value("deferred", uint64_t{0}) +
                               n.value("in_flight", uint64_t{0});
      std::printf("%-6llu %-24s %-10s %-20s %10llu %10llu %10llu %10llu\n",
                  static_cast<unsigned long long>(c["id"].get<uint64_t>()),
                  Printable(c["name"].get<std::string>()).c_str(),
                  c["state"].get<std::string>().c_str(), c["created"].get<std::string>().c_str(),
                  static_cast<unsigned long long>(n.value("total", uint64_t{0})),
                  static_cast<unsigned long long>(pending),
                  static_cast<unsigned long long>(n.value("delivered", uint64_t{0})),
                  static_cast<unsigned long long>(n.value("bounced", uint64_t{0}) +
                                                  n.value("expired", uint64_t{0})));
    }
  });
}

struct IdArgs {
  CommonArgs common;
  std::string campaign;
  size_t top = 10;
};

int RunStatus(const IdArgs& a) {
  absl::StatusOr<Target> target = ResolveTarget(a.common);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  nlohmann::json req = {{"op", "status"}, {"campaign", a.campaign}, {"top", a.top}};
  return Finish(Execute(*target, req, false), [&](const nlohmann::json& r) {
    const nlohmann::json& s = r["status"];
    if (a.common.json) {
      std::printf("%s\n", s.dump(2).c_str());
      return;
    }
    std::printf(
        "campaign %llu '%s' (%s) from %s, created %s\n",
        static_cast<unsigned long long>(s["id"].get<uint64_t>()),
        Printable(s["name"].get<std::string>()).c_str(), s["state"].get<std::string>().c_str(),
        Printable(s["from"].get<std::string>()).c_str(), s["created"].get<std::string>().c_str());
    if (s.contains("pause_reason"))
      std::printf("paused by the engine: %s\n  (fix it, then: salvo campaign resume %llu)\n",
                  Printable(s["pause_reason"].get<std::string>()).c_str(),
                  static_cast<unsigned long long>(s["id"].get<uint64_t>()));
    if (s.contains("spool") && !s["spool"].value("writable", true)) {
      const nlohmann::json& sp = s["spool"];
      if (sp.value("held_outcomes", uint64_t{0}) > 0 || !sp.contains("free_bytes")) {
        std::printf(
            "spool cannot write (%s): sending paused, %llu outcome(s) held in memory and "
            "retried\n",
            Printable(sp.value("last_error", std::string("unknown error"))).c_str(),
            static_cast<unsigned long long>(sp.value("held_outcomes", uint64_t{0})));
        if (sp.value("needs_restart", false))
          std::printf(
              "  it cannot write again without a restart (a failing disk): stop salvo, check "
              "the disk, start it again; held outcomes are written at the stop if the disk "
              "allows\n");
      } else {
        std::printf("spool: %llu bytes free, under queue.min_free_bytes (%llu): sending paused\n",
                    static_cast<unsigned long long>(sp.value("free_bytes", uint64_t{0})),
                    static_cast<unsigned long long>(sp.value("min_free_bytes", uint64_t{0})));
      }
    }
    std::printf("recipients: %llu  done: %s\n",
                static_cast<unsigned long long>(s["counts"].value("total", uint64_t{0})),
                s.value("done", false) ? "yes" : "no");
    std::printf("  %s\n", CountsLine(s["counts"]).c_str());
    std::printf("bounce rate %s (bounced+expired of finished)  deferral rate %s (of attempted)\n",
                Percent(s.value("bounce_rate", 0.0)).c_str(),
                Percent(s.value("deferral_rate", 0.0)).c_str());
    if (s.contains("reports")) {
      const nlohmann::json& r = s["reports"];
      auto n = [&r](const char* k) {
        return static_cast<unsigned long long>(r.value(k, uint64_t{0}));
      };
      std::printf(
          "reports received later: %llu bounce(s) (recipient now bounced), %llu complaint(s) "
          "(complaint rate %s of delivered), %llu soft bounce(s), %llu delay warning(s), %llu "
          "auto-reply(ies)\n",
          n("async_bounces"), n("complaints"), Percent(s.value("complaint_rate", 0.0)).c_str(),
          n("async_soft_bounces"), n("delayed"), n("auto_replies"));
    }
    if (s.contains("categories") && !s["categories"].empty()) {
      std::string line;
      for (const auto& [c, n] : s["categories"].items())
        line += (line.empty() ? "" : ", ") + c + " " + std::to_string(n.get<uint64_t>());
      std::printf("not delivered, by category: %s\n", line.c_str());
    }
    if (s.contains("window"))
      std::printf("send window: %s (%s)\n", s["window"].get<std::string>().c_str(),
                  s.value("window_open", false) ? "open"
                                                : ("closed: recipients wait, not deferred; opens " +
                                                   s.value("window_opens", std::string("?")))
                                                      .c_str());
    if (s.contains("shaping")) {
      // From the running engine: what shaping holds back now.
      if (s["shaping"].empty())
        std::printf("shaping now: nothing throttled or suspended\n");
      else
        std::printf("shaping now:\n");
      for (const auto& k : s["shaping"])
        std::printf("  %-30s %s\n", Printable(k.value("key", "")).c_str(),
                    Printable(k.value("now", "")).c_str());
    }
    auto reasons = [](const char* title, const nlohmann::json& list) {
      if (!list.is_array() || list.empty()) return;
      std::printf("%s\n", title);
      for (const auto& r : list)
        std::printf("  %-18s %8llu  e.g. %s\n", r.value("category", "").c_str(),
                    static_cast<unsigned long long>(r.value("count", uint64_t{0})),
                    r.value("sample", "").empty() ? "(no reply)"
                                                  : Printable(r.value("sample", "")).c_str());
    };
    reasons("top bounce reasons (recipients, last reply):",
            s.value("bounce_reasons", nlohmann::json()));
    reasons("top deferral reasons (deferred or expired recipients, last reply):",
            s.value("deferral_reasons", nlohmann::json()));
    if (!s["top_domains"].empty()) {
      std::printf(
          "destination domains (recipients; attempts; bounce and deferral rate of attempts):\n");
      std::printf("  %-30s %8s %8s %8s %8s %8s %8s %8s %7s %7s\n", "domain", "rcpts", "waiting",
                  "attempts", "deliv", "deferral", "bounce", "expired", "bounce%", "defer%");
    }
    std::vector<nlohmann::json> rows(s["top_domains"].begin(), s["top_domains"].end());
    if (s.contains("other_domains")) rows.push_back(s["other_domains"]);
    for (const auto& d : rows) {
      auto u = [&d](const char* k) {
        return static_cast<unsigned long long>(d.value(k, uint64_t{0}));
      };
      const nlohmann::json& c = d["counts"];
      const uint64_t waiting = c.value("queued", uint64_t{0}) + c.value("deferred", uint64_t{0}) +
                               c.value("in_flight", uint64_t{0});
      std::printf("  %-30s %8llu %8llu %8llu %8llu %8llu %8llu %8llu %7s %7s\n",
                  Printable(d["domain"].get<std::string>()).c_str(),
                  static_cast<unsigned long long>(c.value("total", uint64_t{0})),
                  static_cast<unsigned long long>(waiting), u("attempts"), u("deliveries"),
                  u("deferrals"), u("bounces"),
                  static_cast<unsigned long long>(d["counts"].value("expired", uint64_t{0})),
                  Percent(d.value("bounce_rate", 0.0)).c_str(),
                  Percent(d.value("deferral_rate", 0.0)).c_str());
    }
  });
}

int RunAction(const IdArgs& a, const std::string& op) {
  absl::StatusOr<Target> target = ResolveTarget(a.common);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  nlohmann::json req = {{"op", op}, {"campaign", a.campaign}};
  return Finish(Execute(*target, req, false), [&](const nlohmann::json& r) {
    if (a.common.json) {
      std::printf("%s\n", r.dump(2).c_str());
      return;
    }
    std::printf("campaign %llu is %s\n", static_cast<unsigned long long>(r["id"].get<uint64_t>()),
                r["state"].get<std::string>().c_str());
  });
}

// ---- suppression ----------------------------------------------------------------

struct SuppressionArgs {
  CommonArgs common;
  std::vector<std::string> emails;
  std::string reason;
  std::string file;
  size_t limit = 1000;
  std::string after;
  bool case_sensitive_local_parts = false;
};

int RunSuppression(const SuppressionArgs& a, const std::string& op) {
  absl::StatusOr<Target> target = ResolveTarget(a.common);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  nlohmann::json req = {{"op", "suppression_" + op}};
  if (op == "add" || op == "remove") req["emails"] = a.emails;
  if (op != "list") req["case_sensitive_local_parts"] = a.case_sensitive_local_parts;
  if (op == "add") req["reason"] = a.reason.empty() ? "manual" : a.reason;
  if (op == "list") {
    req["limit"] = a.limit;
    req["after"] = a.after;
  }
  if (op == "import") {
    std::error_code ec;
    req["path"] = std::filesystem::absolute(a.file, ec).string();
    req["reason"] = a.reason.empty() ? "import:" + a.file : a.reason;
  }
  const bool create = op == "add" || op == "import";
  return Finish(Execute(*target, req, create), [&](const nlohmann::json& r) {
    if (a.common.json) {
      std::printf("%s\n", r.dump(2).c_str());
      return;
    }
    if (op == "add")
      std::printf("added %llu\n", static_cast<unsigned long long>(r["added"].get<uint64_t>()));
    if (op == "remove")
      std::printf("removed %llu\n", static_cast<unsigned long long>(r["removed"].get<uint64_t>()));
    if (op == "list") {
      for (const auto& e : r["entries"])
        std::printf("%s\t%s\t%s\n", Printable(e["email"].get<std::string>()).c_str(),
                    e["added"].get<std::string>().c_str(),
                    Printable(e["reason"].get<std::string>()).c_str());
    }
    if (op == "import") {
      const auto& rep = r["report"];
      std::printf("imported %llu new, %llu already listed, %llu invalid\n",
                  static_cast<unsigned long long>(rep["added"].get<uint64_t>()),
                  static_cast<unsigned long long>(rep["already"].get<uint64_t>()),
                  static_cast<unsigned long long>(rep["invalid"].get<uint64_t>()));
      for (const auto& e : rep["first_errors"])
        std::fprintf(stderr, "  %s\n", Printable(e.get<std::string>()).c_str());
    }
  });
}

// ---- export ---------------------------------------------------------------------

struct ExportArgs {
  CommonArgs common;
  std::string campaign;
  std::string state;
  std::string format = "csv";
};

// RFC 4180: quoted when it holds a comma, a quote or a line break.
std::string CsvField(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// Streams the campaign's recipients page by page (from the running engine,
// or from the spool opened once), so memory stays one page whatever the size.
int RunExport(const ExportArgs& a) {
  absl::StatusOr<Target> target = ResolveTarget(a.common);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  std::unique_ptr<queue::Spool> local;
  auto call = [&](const nlohmann::json& req) -> absl::StatusOr<nlohmann::json> {
    if (!local) {
      absl::StatusOr<nlohmann::json> remote = queue::AdminCall(target->socket, req);
      if (remote.ok() || remote.status().code() != absl::StatusCode::kUnavailable) return remote;
      queue::Spool::Options options;
      options.create_if_missing = false;
      auto spool = queue::Spool::Open(target->data_dir, options);
      if (!spool.ok()) return spool.status();
      local = std::move(*spool);
    }
    return queue::HandleAdminRequest(*local, req, {});
  };
  const bool csv = a.format == "csv";
  if (csv) std::printf("email,state,attempts,last_reply,category,queued,next_attempt\n");
  uint64_t after = 0, rows = 0;
  while (true) {
    nlohmann::json req = {{"op", "export"},
                          {"campaign", a.campaign},
                          {"after", after},
                          {"limit", 10000},
                          {"state", a.state}};
    absl::StatusOr<nlohmann::json> r = call(req);
    if (!r.ok() || !r->value("ok", false)) {
      PrintError(!r.ok() ? S(r.status().message())
                         : r->value("error", std::string("export failed")));
      return kExitFailure;
    }
    for (const auto& row : (*r)["rows"]) {
      ++rows;
      if (!csv) {
        std::printf("%s\n", row.dump().c_str());
        continue;
      }
      std::printf("%s,%s,%llu,%s,%s,%s,%s\n", CsvField(row.value("email", "")).c_str(),
                  row.value("state", "").c_str(),
                  static_cast<unsigned long long>(row.value("attempts", uint64_t{0})),
                  CsvField(row.value("last_reply", "")).c_str(),
                  CsvField(row.value("category", "")).c_str(), row.value("queued", "").c_str(),
                  row.value("next_attempt", "").c_str());
    }
    if (std::ferror(stdout)) {
      PrintError("writing the export failed (disk full, or the reader went away)");
      return kExitFailure;
    }
    if ((*r)["done"].get<bool>()) break;
    after = (*r)["next"].get<uint64_t>();
  }
  std::fflush(stdout);
  std::fprintf(stderr, "exported %llu recipient(s)\n", static_cast<unsigned long long>(rows));
  return kExitOk;
}

// ---- recipient ------------------------------------------------------------------

struct RecipientArgs {
  CommonArgs common;
  std::string email;
  std::string campaign;
};

int RunRecipientShow(const RecipientArgs& a) {
  absl::StatusOr<Target> target = ResolveTarget(a.common);
  if (!target.ok()) {
    PrintError(S(target.status().message()));
    return kExitFailure;
  }
  nlohmann::json req = {{"op", "recipient"}, {"email", a.email}};
  if (!a.campaign.empty()) req["campaign"] = a.campaign;
  return Finish(Execute(*target, req, false), [&](const nlohmann::json& r) {
    if (a.common.json) {
      std::printf("%s\n", r.dump(2).c_str());
      return;
    }
    const nlohmann::json& sup = r["suppression"];
    if (sup.is_object())
      std::printf("%s: suppressed since %s (%s)\n", Printable(sup.value("email", "")).c_str(),
                  sup.value("added", "").c_str(), Printable(sup.value("reason", "")).c_str());
    else
      std::printf("%s: not on the suppression list\n", Printable(a.email).c_str());
    if (r["recipients"].empty())
      std::printf("no recipient with this address%s\n",
                  a.campaign.empty() ? " in any campaign" : " in that campaign");
    for (const auto& v : r["recipients"]) {
      std::printf("\ncampaign %llu '%s': %s, %llu attempt(s)%s%s\n",
                  static_cast<unsigned long long>(v.value("campaign_id", uint64_t{0})),
                  Printable(v.value("campaign", "")).c_str(), v.value("state", "").c_str(),
                  static_cast<unsigned long long>(v.value("attempts", uint64_t{0})),
                  v.contains("next_attempt") ? ", next attempt " : "",
                  v.value("next_attempt", "").c_str());
      for (const auto& h : v["history"]) {
        std::string what = h.value("from", "") + " -> " + h.value("to", "");
        std::string facts;
        for (const char* k : {"category", "scope"})
          if (!h.value(k, "").empty()) facts += std::string("  ") + k + " " + h.value(k, "");
        std::printf("  %s  %-22s %s%s\n", h.value("at", "").c_str(), what.c_str(),
                    Printable(h.value("host", "")).c_str(), Printable(facts).c_str());
        if (!h.value("reply", "").empty())
          std::printf("      %s\n", Printable(h.value("reply", "")).c_str());
      }
    }
  });
}

}  // namespace

void RegisterCampaignCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* campaign = app.add_subcommand("campaign", "Load and operate campaigns");
  campaign->require_subcommand(1);

  auto load_args = std::make_shared<LoadArgs>();
  CLI::App* load = campaign->add_subcommand(
      "load", "Load a campaign (CAMPAIGN.toml, or the flags); prints the campaign ID");
  load->add_option("campaign_file", load_args->campaign_file, "Campaign file (TOML)")
      ->check(ReadableFile());
  load->add_option("--name", load_args->name, "Campaign name");
  load->add_option("--template", load_args->template_path,
                   "Message template (RFC 5322 with {{placeholders}})");
  load->add_option("--recipients", load_args->recipients,
                   "Recipient list (CSV with an email column)");
  load->add_option("--from", load_args->from, "Sender address");
  load->add_option("--dkim-domain", load_args->dkim_domain, "Domain to sign with (d=)");
  load->add_flag("--strict", load_args->strict,
                 "Fail on the first invalid address instead of skipping it");
  load->add_flag("--allow-duplicate-name", load_args->allow_duplicate_name,
                 "Load even if a campaign that is not cancelled has the same name or the same "
                 "template, list and sender (its recipients get a second copy)");
  load->add_flag("--case-sensitive-local-parts", load_args->case_sensitive_local_parts,
                 "Treat Ann@example.com and ann@example.com as two recipients (default: one; "
                 "the domain is always compared case-insensitively)");
  load->add_option("--node", load_args->node,
                   "Fleet: keep only node i's share of N (i/N, or auto/N from the host name; "
                   "default: the config's fleet.node)");
  AddCommon(load, &load_args->common);
  load->callback([&ctx, load_args] { ctx.exit_code = RunLoad(*load_args); });

  auto list_args = std::make_shared<CommonArgs>();
  CLI::App* list = campaign->add_subcommand("list", "List campaigns with their counts");
  AddCommon(list, list_args.get());
  list->callback([&ctx, list_args] { ctx.exit_code = RunList(*list_args); });

  auto status_args = std::make_shared<IdArgs>();
  CLI::App* status = campaign->add_subcommand(
      "status", "Counts per state, top destination domains, bounce and deferral rates");
  status->add_option("campaign", status_args->campaign, "Campaign ID or name")->required();
  status->add_option("--top", status_args->top, "How many destination domains to show")
      ->default_val(10)
      ->check(NonNegativeCount());
  AddCommon(status, &status_args->common);
  status->callback([&ctx, status_args] { ctx.exit_code = RunStatus(*status_args); });

  for (const char* op : {"pause", "resume", "cancel"}) {
    auto args = std::make_shared<IdArgs>();
    const std::string help = std::string(op) == "pause" ? "Stop handing out a campaign's recipients"
                             : std::string(op) == "resume"
                                 ? "Resume a paused campaign"
                                 : "Cancel a campaign (queued and deferred recipients)";
    CLI::App* cmd = campaign->add_subcommand(op, help);
    cmd->add_option("campaign", args->campaign, "Campaign ID or name")->required();
    AddCommon(cmd, &args->common);
    std::string op_name = op;
    cmd->callback([&ctx, args, op_name] { ctx.exit_code = RunAction(*args, op_name); });
  }

  {
    auto args = std::make_shared<ExportArgs>();
    CLI::App* cmd = campaign->add_subcommand(
        "export",
        "Stream every recipient with its state, attempts, last reply and category (for a CRM)");
    cmd->add_option("campaign", args->campaign, "Campaign ID or name")->required();
    cmd->add_option("--state", args->state,
                    "Only recipients in this state (queued, deferred, delivered, bounced, "
                    "expired, suppressed, cancelled)");
    cmd->add_option("--format", args->format, "csv (with a header line) or jsonl")
        ->check(CLI::IsMember({"csv", "jsonl"}));
    AddCommon(cmd, &args->common, /*with_json=*/false);
    cmd->callback([&ctx, args] { ctx.exit_code = RunExport(*args); });
  }
  CLI::App* recipient = app.add_subcommand("recipient", "What happened to one address");
  recipient->require_subcommand(1);
  {
    auto args = std::make_shared<RecipientArgs>();
    CLI::App* cmd = recipient->add_subcommand(
        "show",
        "Every attempt of an address in every campaign (time, host, reply, category, failure "
        "scope, next attempt) and its suppression entry");
    cmd->add_option("email", args->email, "The address (compared case-insensitively)")->required();
    cmd->add_option("--campaign", args->campaign, "Only this campaign (ID or name)");
    AddCommon(cmd, &args->common);
    cmd->callback([&ctx, args] { ctx.exit_code = RunRecipientShow(*args); });
  }
  CLI::App* queue_cmd = app.add_subcommand("queue", "Spool maintenance");
  queue_cmd->require_subcommand(1);
  {
    auto common = std::make_shared<CommonArgs>();
    auto from = std::make_shared<std::string>();
    CLI::App* cmd = queue_cmd->add_subcommand(
        "recover",
        "Record the outcomes a failing disk kept the spool from writing (a rescue file of "
        "queue.rescue_dir, or the log's \"spool rescue:\" lines) so they are not sent again");
    cmd->add_option("--from", *from, "The rescue file, or a copy of the log")
        ->required()
        ->check(ReadableFile());
    AddCommon(cmd, common.get());
    cmd->callback([&ctx, common, from] {
      absl::StatusOr<Target> target = ResolveTarget(*common);
      if (!target.ok()) {
        PrintError(S(target.status().message()));
        ctx.exit_code = kExitFailure;
        return;
      }
      std::error_code ec;
      nlohmann::json req = {{"op", "recover"},
                            {"path", std::filesystem::absolute(*from, ec).string()}};
      ctx.exit_code = Finish(Execute(*target, req, false), [&](const nlohmann::json& r) {
        if (common->json) {
          std::printf("%s\n", r.dump(2).c_str());
          return;
        }
        std::printf("recovered %llu of %llu outcome(s) (%llu already recorded)\n",
                    static_cast<unsigned long long>(r.value("recovered", uint64_t{0})),
                    static_cast<unsigned long long>(r.value("read", uint64_t{0})),
                    static_cast<unsigned long long>(r.value("already_recorded", uint64_t{0})));
      });
    });
  }
  CLI::App* suppression = app.add_subcommand("suppression", "Manage the suppression list");
  suppression->require_subcommand(1);
  {
    auto args = std::make_shared<SuppressionArgs>();
    CLI::App* cmd = suppression->add_subcommand("add", "Add addresses to the suppression list");
    cmd->add_option("emails", args->emails, "Addresses")->required();
    cmd->add_option("--reason", args->reason, "Why (default: manual)");
    cmd->add_flag("--case-sensitive-local-parts", args->case_sensitive_local_parts,
                  "List only this spelling of the local part (default: every spelling)");
    AddCommon(cmd, &args->common);
    cmd->callback([&ctx, args] { ctx.exit_code = RunSuppression(*args, "add"); });
  }
  {
    auto args = std::make_shared<SuppressionArgs>();
    CLI::App* cmd =
        suppression->add_subcommand("remove", "Remove addresses from the suppression list");
    cmd->add_option("emails", args->emails, "Addresses")->required();
    cmd->add_flag("--case-sensitive-local-parts", args->case_sensitive_local_parts,
                  "Remove only the entry of this exact spelling (default: every entry that stops "
                  "the address)");
    AddCommon(cmd, &args->common);
    cmd->callback([&ctx, args] { ctx.exit_code = RunSuppression(*args, "remove"); });
  }
  {
    auto args = std::make_shared<SuppressionArgs>();
    CLI::App* cmd =
        suppression->add_subcommand("list", "List suppressed addresses (address order)");
    cmd->add_option("--limit", args->limit, "At most this many")
        ->default_val(1000)
        ->check(NonNegativeCount());
    cmd->add_option("--after", args->after, "Start after this address (paging)");
    AddCommon(cmd, &args->common);
    cmd->callback([&ctx, args] { ctx.exit_code = RunSuppression(*args, "list"); });
  }
  {
    auto args = std::make_shared<SuppressionArgs>();
    CLI::App* cmd = suppression->add_subcommand(
        "import",
        "Import addresses (one per line, or a CSV with an email column), e.g. unsubscribes");
    cmd->add_option("file", args->file, "File to import")->required()->check(ReadableFile());
    cmd->add_option("--reason", args->reason, "Why (default: import:FILE)");
    cmd->add_flag("--case-sensitive-local-parts", args->case_sensitive_local_parts,
                  "List only these spellings of the local parts (default: every spelling)");
    AddCommon(cmd, &args->common);
    cmd->callback([&ctx, args] { ctx.exit_code = RunSuppression(*args, "import"); });
  }
}

int CheckEgressPool(const queue::CampaignSpec& spec, const config::Config& config,
                    std::string_view campaign_file) {
  if (spec.egress_pool.empty() || config.EgressPoolIndex(spec.egress_pool) >= 0) return kExitOk;
  std::string known;
  for (const config::EgressPoolConfig& p : config.egress_pools)
    known += (known.empty() ? "" : ", ") + p.name;
  PrintError(std::string(campaign_file.empty() ? "campaign" : campaign_file) +
             ": egress_pool = \"" + spec.egress_pool + "\" is not an [[egress.pool]] of " +
             (config.source_file.empty() ? std::string("the configuration") : config.source_file) +
             (known.empty() ? std::string(" (it defines none)") : " (it defines: " + known + ")"));
  return kExitFailure;
}

int CheckDkimDomain(const queue::CampaignSpec& spec, const config::Config& config,
                    std::string_view campaign_file) {
  if (spec.dkim_domain.empty()) return kExitOk;
  const std::string where = std::string(campaign_file.empty() ? "campaign" : campaign_file) +
                            ": dkim_domain = \"" + spec.dkim_domain + "\"";
  bool has_key = false;
  std::string known;
  for (const config::DkimKeyConfig& k : config.dkim_keys) {
    if (EqualsIgnoreCase(k.domain, spec.dkim_domain)) has_key = true;
    if (known.find(k.domain) == std::string::npos) known += (known.empty() ? "" : ", ") + k.domain;
  }
  if (!has_key && !config.source_file.empty()) {
    PrintError(
        where + " has no [[dkim.keys]] in " + config.source_file +
        (known.empty() ? std::string(" (it has none)") : " (it has keys for: " + known + ")"));
    return kExitFailure;
  }
  if (!has_key)
    std::fprintf(stderr,
                 "salvo: warning: %s: no --config given, so no key was checked: the engine "
                 "refuses to send it unless its configuration has [[dkim.keys]] for %s\n",
                 Printable(where).c_str(), Printable(spec.dkim_domain).c_str());
  // DMARC (RFC 7489, relaxed alignment): d= must be the From domain, or one
  // of them a subdomain of the other. Not aligned: signed, but DMARC fails.
  std::string from = spec.from;
  const size_t at = from.rfind('@');
  from = at == std::string::npos ? std::string() : from.substr(at + 1);
  while (!from.empty() && from.back() == '>') from.pop_back();
  std::string d = spec.dkim_domain;
  for (char& c : from) c = AsciiLower(c);
  for (char& c : d) c = AsciiLower(c);
  auto under = [](const std::string& sub, const std::string& parent) {
    return sub == parent || (sub.size() > parent.size() &&
                             sub.compare(sub.size() - parent.size(), parent.size(), parent) == 0 &&
                             sub[sub.size() - parent.size() - 1] == '.');
  };
  if (!from.empty() && !under(from, d) && !under(d, from))
    std::fprintf(stderr,
                 "salvo: warning: %s is not aligned with the From domain %s: the signature "
                 "will not count for DMARC (sign with the From domain or a parent of it)\n",
                 Printable(where).c_str(), Printable(from).c_str());
  return kExitOk;
}

int CampaignSpecFromFlags(const CampaignFlags& f, std::string_view who, queue::CampaignSpec* spec) {
  const bool any_flag = !f.name.empty() || !f.template_path.empty() || !f.recipients.empty() ||
                        !f.from.empty() || !f.dkim_domain.empty();
  if (!f.campaign_file.empty()) {
    if (any_flag) {
      PrintError("give either a campaign file or --name/--template/--recipients/--from, not both");
      return kExitUsage;
    }
    absl::StatusOr<queue::CampaignSpec> parsed = queue::ParseCampaignFile(f.campaign_file);
    if (!parsed.ok()) {
      PrintError(std::string(parsed.status().message()));
      return kExitFailure;
    }
    *spec = std::move(*parsed);
  } else {
    if (f.name.empty() || f.template_path.empty() || f.recipients.empty() || f.from.empty()) {
      PrintError(std::string(who) +
                 " needs CAMPAIGN.toml or all of --name, --template, --recipients, --from");
      return kExitUsage;
    }
    spec->name = f.name;
    spec->template_path = f.template_path;
    spec->recipients_path = f.recipients;
    spec->from = f.from;
    spec->dkim_domain = f.dkim_domain;
  }
  // The engine may run in another directory: absolute paths.
  std::error_code ec;
  spec->template_path = std::filesystem::absolute(spec->template_path, ec).string();
  spec->recipients_path = std::filesystem::absolute(spec->recipients_path, ec).string();
  for (auto& [key, value] : spec->options)
    if (queue::IsPathOption(key) && !value.empty())
      value = std::filesystem::absolute(value, ec).string();
  return kExitOk;
}

}  // namespace salvo::cli
