// salvo health         is this node fit to serve? (a container's health check)
// salvo fleet status   campaign counts summed over every node of a fleet
//
// A fleet is N `salvo run` processes, each with its own spool, each loading
// its share of every campaign (`--node i/N`, fleet.node, SALVO_NODE). The
// nodes know nothing of each other; these commands read them through their
// admin endpoints: the Unix socket on the same machine, or the TCP listener
// (queue.admin_listen, with the token of queue.admin_token_file) from
// elsewhere.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cli/commands.h"
#include "engine/config/config.h"
#include "queue/admin_server.h"
#include "queue/campaign.h"

namespace salvo::cli {

namespace {

std::string S(absl::string_view v) { return std::string(v.data(), v.size()); }

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

// The token for TCP calls: --token-file, else the configuration's
// queue.admin_token_file (SALVO_ADMIN_TOKEN_FILE); "" = none.
absl::StatusOr<std::string> TokenFor(const std::string& token_file, const config::Config& cfg) {
  const std::string& path = token_file.empty() ? cfg.queue.admin_token_file : token_file;
  if (path.empty()) return std::string();
  return ReadTokenFile(path);
}

// The spool directory takes a write: create, write, fsync and remove a file.
absl::Status CheckWritable(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return absl::NotFoundError(dir + ": spool directory does not exist");
  const std::string probe = (std::filesystem::path(dir) / fmt::format(".health.{}", ::getpid()));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::UnavailableError(dir + ": spool not writable: " + std::strerror(errno));
  const bool ok = ::write(fd, "ok\n", 3) == 3 && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!ok) return absl::UnavailableError(dir + ": spool not writable: " + std::strerror(err));
  return absl::OkStatus();
}

// ---- salvo health -------------------------------------------------------------

struct HealthArgs {
  std::string config_file, data_dir, admin, token_file;
  double timeout = 5;
  bool json = false;
};

int RunHealth(const HealthArgs& a) {
  absl::StatusOr<config::Config> cfg = LoadCliConfig(a.config_file);
  if (!cfg.ok()) {
    PrintError(S(cfg.status().message()));
    return kExitFailure;
  }
  if (!a.data_dir.empty()) cfg->data_dir = a.data_dir;
  const absl::Duration timeout = absl::Seconds(a.timeout);
  nlohmann::json report = {{"healthy", true}};
  std::vector<std::string> problems;

  // 1. The engine answers on its admin endpoint.
  absl::StatusOr<nlohmann::json> pong;
  std::string endpoint;
  if (!a.admin.empty()) {
    absl::StatusOr<std::string> token = TokenFor(a.token_file, *cfg);
    if (!token.ok()) {
      PrintError(S(token.status().message()));
      return kExitFailure;
    }
    endpoint = a.admin;
    pong = queue::AdminCallTcp(a.admin, *token, {{"op", "ping"}}, timeout);
  } else {
    endpoint = cfg->AdminSocketPath();
    pong = queue::AdminCall(endpoint, {{"op", "ping"}}, timeout);
  }
  report["admin"] = endpoint;
  if (!pong.ok())
    problems.push_back(S(pong.status().message()));
  else if (!pong->value("ok", false))
    problems.push_back(endpoint + ": " + pong->value("error", std::string("ping refused")));
  report["engine_answers"] = pong.ok() && pong->value("ok", false);

  // 2. Its spool takes writes (a full or read-only volume fails here first).
  // Only on the same machine: over TCP the spool is the far node's.
  if (a.admin.empty()) {
    report["data_dir"] = cfg->data_dir;
    absl::Status w = CheckWritable(cfg->data_dir);
    report["spool_writable"] = w.ok();
    if (!w.ok()) problems.push_back(S(w.message()));
  }
  report["healthy"] = problems.empty();
  report["problems"] = problems;
  if (a.json) std::printf("%s\n", report.dump(2).c_str());
  if (!problems.empty()) {
    std::string all;
    for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
    PrintError("unhealthy: " + all);
    return kExitFailure;
  }
  if (!a.json)
    std::printf("healthy: engine answers on %s%s\n", endpoint.c_str(),
                a.admin.empty() ? (", spool " + cfg->data_dir + " writable").c_str() : "");
  return kExitOk;
}

// ---- salvo fleet status ---------------------------------------------------------

struct FleetStatusArgs {
  std::string config_file, token_file, campaign;
  std::vector<std::string> nodes;
  double timeout = 10;
  bool json = false;
};

constexpr const char* kStates[] = {"queued",  "in_flight", "deferred",   "delivered",
                                   "bounced", "expired",   "suppressed", "cancelled"};

int RunFleetStatus(const FleetStatusArgs& a) {
  absl::StatusOr<config::Config> cfg = LoadCliConfig(a.config_file);
  if (!cfg.ok()) {
    PrintError(S(cfg.status().message()));
    return kExitFailure;
  }
  absl::StatusOr<std::string> token = TokenFor(a.token_file, *cfg);
  if (!token.ok()) {
    PrintError(S(token.status().message()));
    return kExitFailure;
  }
  // Campaigns are matched across nodes by name: each node numbers its own.
  struct Sum {
    std::map<std::string, uint64_t> counts;
    std::vector<std::string> nodes;
    std::vector<std::string> states;
  };
  std::map<std::string, Sum> sums;
  nlohmann::json nodes = nlohmann::json::array();
  size_t failed = 0;
  for (const std::string& node : a.nodes) {
    absl::StatusOr<nlohmann::json> r =
        queue::AdminCallTcp(node, *token, {{"op", "list"}}, absl::Seconds(a.timeout));
    std::string error;
    if (!r.ok())
      error = S(r.status().message());
    else if (!r->value("ok", false))
      error = node + ": " + r->value("error", std::string("refused"));
    if (!error.empty()) {
      ++failed;
      nodes.push_back({{"address", node}, {"ok", false}, {"error", error}});
      continue;
    }
    size_t n = 0;
    for (const nlohmann::json& c : (*r)["campaigns"]) {
      const std::string name = c.value("name", std::string());
      if (!a.campaign.empty() && name != a.campaign) continue;
      ++n;
      Sum& sum = sums[name];
      sum.nodes.push_back(node);
      sum.states.push_back(c.value("state", std::string()));
      if (c.contains("counts"))
        for (auto& [state, value] : c["counts"].items())
          if (value.is_number_unsigned()) sum.counts[state] += value.get<uint64_t>();
    }
    nodes.push_back({{"address", node}, {"ok", true}, {"campaigns", n}});
  }
  nlohmann::json campaigns = nlohmann::json::array();
  for (auto& [name, sum] : sums) {
    const uint64_t pending =
        sum.counts["queued"] + sum.counts["deferred"] + sum.counts["in_flight"];
    campaigns.push_back({{"name", name},
                         {"nodes", sum.nodes},
                         {"states", sum.states},
                         {"counts", sum.counts},
                         {"done", pending == 0}});
  }
  if (a.json) {
    std::printf("%s\n", nlohmann::json(
                            {{"nodes", nodes}, {"campaigns", campaigns}, {"complete", failed == 0}})
                            .dump(2)
                            .c_str());
  } else {
    for (const nlohmann::json& n : nodes) {
      if (n["ok"].get<bool>())
        std::printf("node %s: ok, %zu campaign(s)\n", n["address"].get<std::string>().c_str(),
                    n["campaigns"].get<size_t>());
      else
        std::printf("node %s: UNREACHABLE: %s\n", n["address"].get<std::string>().c_str(),
                    Printable(n["error"].get<std::string>()).c_str());
    }
    for (const nlohmann::json& c : campaigns) {
      std::string line;
      for (const char* st : kStates)
        line += fmt::format("  {} {}", st, c["counts"].value(st, uint64_t{0}));
      std::printf("campaign '%s' on %zu node(s): total %llu%s  done: %s\n",
                  Printable(c["name"].get<std::string>()).c_str(), c["nodes"].size(),
                  static_cast<unsigned long long>(c["counts"].value("total", uint64_t{0})),
                  line.c_str(), c["done"].get<bool>() ? "yes" : "no");
    }
  }
  if (failed > 0) {
    PrintError(fmt::format("{} of {} node(s) did not answer: the sums are partial", failed,
                           a.nodes.size()));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

int ResolveNodeShare(const std::string& text, queue::NodeShare* share) {
  *share = queue::NodeShare{};
  if (text.empty()) return kExitOk;
  absl::StatusOr<queue::NodeShare> parsed = queue::ParseNodeShare(text, HostName());
  if (!parsed.ok()) {
    PrintError(S(parsed.status().message()));
    return kExitUsage;
  }
  *share = *parsed;
  return kExitOk;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path + ": cannot read token file: " + std::strerror(errno));
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
    line.pop_back();
  if (line.empty()) return absl::InvalidArgumentError(path + ":1: the token is empty");
  return line;
}

absl::StatusOr<config::Config> LoadCliConfig(const std::string& config_file) {
  config::Config cfg;
  if (!config_file.empty()) {
    absl::StatusOr<config::Config> loaded = config::LoadConfig(config_file);
    if (!loaded.ok()) return loaded.status();
    cfg = std::move(*loaded);
  }
  if (absl::Status s = config::ApplyEnvironment(&cfg); !s.ok()) return s;
  return cfg;
}

void RegisterFleetCommands(CLI::App& app, CommandContext& ctx) {
  auto health_args = std::make_shared<HealthArgs>();
  CLI::App* health = app.add_subcommand(
      "health", "Exit 0 when the engine answers on its admin socket and its spool is writable");
  health->add_option("--config", health_args->config_file, "salvo run configuration")
      ->check(ReadableFile());
  health->add_option("--data-dir", health_args->data_dir, "Spool directory (overrides the config)");
  health->add_option("--admin", health_args->admin,
                     "Ask a node's TCP admin listener HOST:PORT instead (spool not checked)");
  health->add_option("--token-file", health_args->token_file,
                     "Admin token for --admin (default: queue.admin_token_file)");
  health->add_option("--timeout", health_args->timeout, "Seconds to wait for an answer")
      ->default_val(5)
      ->check(CLI::Range(0.1, 600.0));
  health->add_flag("--json", health_args->json, "Print JSON");
  health->callback([&ctx, health_args] { ctx.exit_code = RunHealth(*health_args); });

  CLI::App* fleet = app.add_subcommand("fleet", "Operate a fleet of salvo nodes");
  fleet->require_subcommand(1);
  auto status_args = std::make_shared<FleetStatusArgs>();
  CLI::App* status = fleet->add_subcommand(
      "status", "Campaign counts summed over the nodes' admin listeners (matched by name)");
  status
      ->add_option("--nodes", status_args->nodes,
                   "HOST:PORT of each node's admin listener (comma-separated)")
      ->required()
      ->delimiter(',');
  status->add_option("--token-file", status_args->token_file,
                     "Admin token (default: the config's queue.admin_token_file)");
  status->add_option("--config", status_args->config_file, "salvo run configuration")
      ->check(ReadableFile());
  status->add_option("--campaign", status_args->campaign, "Only this campaign (name)");
  status->add_option("--timeout", status_args->timeout, "Seconds to wait for each node")
      ->default_val(10)
      ->check(CLI::Range(0.1, 600.0));
  status->add_flag("--json", status_args->json, "Print JSON");
  status->callback([&ctx, status_args] { ctx.exit_code = RunFleetStatus(*status_args); });
}

}  // namespace salvo::cli
