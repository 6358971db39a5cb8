// salvo shaping check|show, salvo bounce classify (engine/shaping); salvo bounce
// parse is in bounce_commands.cc.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "engine/cli/commands.h"
#include "engine/common/strings.h"
#include "engine/config/config.h"
#include "engine/shaping/shaping.h"
#include "engine/smtp/classifier.h"
#include "engine/smtp/failure_scope.h"
#include "engine/smtp/reply.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace salvo::cli {
namespace {

struct ShapingArgs {
  std::string file;
  std::string config_file;
  std::string domain;
  std::vector<std::string> mx;
  bool json = false;
};

std::string RateText(const shaping::Rate& r) {
  if (r.unlimited()) return "unlimited";
  return fmt::format("{} ({:.3g}/s, burst {:g})", r.text, r.per_second, shaping::BurstOf(r));
}

absl::StatusOr<shaping::ShapingConfig> LoadFor(const ShapingArgs& a) {
  absl::StatusOr<config::Config> cfg = LoadCliConfig(a.config_file);
  if (!cfg.ok()) return cfg.status();
  if (!a.file.empty()) return shaping::LoadShapingFile(a.file, shaping::DefaultsFrom(*cfg));
  return shaping::LoadShaping(*cfg);
}

int RunCheck(const ShapingArgs& a) {
  absl::StatusOr<shaping::ShapingConfig> c = LoadFor(a);
  if (!c.ok()) {
    PrintError(Sv(c.status().message()));
    return kExitFailure;
  }
  // The rules must compile together with the shipped ones, as the engine does.
  if (auto cl = shaping::BuildClassifier(c->rules); !cl.ok()) {
    PrintError(Sv(cl.status().message()));
    return kExitFailure;
  }
  if (a.json) {
    std::printf("%s\n", nlohmann::json({{"file", c->source},
                                        {"ok", true},
                                        {"providers", c->providers.size()},
                                        {"domains", c->domains.size()},
                                        {"rules", c->rules.size()}})
                            .dump(2)
                            .c_str());
  } else {
    std::printf("%s: ok (%zu providers, %zu domain tables, %zu rules)\n", c->source.c_str(),
                c->providers.size(), c->domains.size(), c->rules.size());
  }
  return kExitOk;
}

int RunShow(const ShapingArgs& a) {
  absl::StatusOr<shaping::ShapingConfig> c = LoadFor(a);
  if (!c.ok()) {
    PrintError(Sv(c.status().message()));
    return kExitFailure;
  }
  const std::string domain = AsciiLower(a.domain);
  shaping::Resolved r = shaping::Resolve(*c, domain, a.mx);
  if (a.json) {
    nlohmann::json j = {{"domain", domain},
                        {"key", r.key},
                        {"provider", r.provider},
                        {"own_site_pool", r.by_name},
                        {"why", r.why},
                        {"per_site_pool",
                         {{"max_connections", r.max_connections},
                          {"max_messages_per_connection", r.max_messages_per_connection},
                          {"max_recipients_per_message", r.max_recipients_per_message},
                          {"max_message_rate", r.message_rate.text},
                          {"max_connection_rate", r.connection_rate.text},
                          {"tls", shaping::TlsName(r.tls)}}}};
    if (!r.provider.empty())
      j["provider_shared"] = {{"max_connections", r.provider_max_connections},
                              {"max_message_rate", r.provider_message_rate.text},
                              {"max_connection_rate", r.provider_connection_rate.text}};
    std::printf("%s\n", j.dump(2).c_str());
    return kExitOk;
  }
  std::printf("%s: shaping key %s%s\n", domain.c_str(), r.key.c_str(),
              r.by_name ? " (a site pool of its own)" : "");
  for (const std::string& w : r.why) std::printf("  because %s\n", w.c_str());
  std::printf("per site pool:\n");
  std::printf("  max_connections              %d\n", r.max_connections);
  std::printf("  max_messages_per_connection  %d\n", r.max_messages_per_connection);
  std::printf("  max_recipients_per_message   %d\n", r.max_recipients_per_message);
  std::printf("  max_message_rate             %s\n", RateText(r.message_rate).c_str());
  std::printf("  max_connection_rate          %s\n", RateText(r.connection_rate).c_str());
  std::printf("  tls                          %s\n", std::string(shaping::TlsName(r.tls)).c_str());
  if (!r.provider.empty()) {
    std::printf("shared by every member of provider.%s, on every shard:\n", r.provider.c_str());
    std::printf("  max_connections              %s\n",
                r.provider_max_connections > 0 ? std::to_string(r.provider_max_connections).c_str()
                                               : "unlimited");
    std::printf("  max_message_rate             %s\n", RateText(r.provider_message_rate).c_str());
    std::printf("  max_connection_rate          %s\n",
                RateText(r.provider_connection_rate).c_str());
  }
  return kExitOk;
}

struct ClassifyArgs {
  std::string rules;
  bool json = false;
};

// "550 5.1.1 text" -> Reply; false when the line has no 3-digit code.
bool ParseReplyLine(std::string_view line, smtp::Reply* out) {
  line = StripWhitespace(line);
  if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
      !std::isdigit(static_cast<unsigned char>(line[1])) ||
      !std::isdigit(static_cast<unsigned char>(line[2])) ||
      (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
    return false;
  out->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  out->enhanced = std::string(smtp::SplitEnhancedCode(&text));
  out->text = std::string(text);
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<const smtp::Classifier>> ClassifierWithRulesFile(
    const std::string& rules_file) {
  std::vector<smtp::Rule> user;
  if (!rules_file.empty()) {
    std::string text;
    FILE* f = std::fopen(rules_file.c_str(), "rb");
    if (f == nullptr)
      return absl::InvalidArgumentError(
          fmt::format("{}: cannot read: {}", rules_file, std::strerror(errno)));
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() < (16u << 20))
      text.append(buf, n);
    std::fclose(f);
    absl::StatusOr<std::vector<smtp::Rule>> r = shaping::ParseRules(text, rules_file);
    if (!r.ok()) return r.status();
    user = *std::move(r);
  }
  return shaping::BuildClassifier(user);
}

namespace {

int RunClassify(const ClassifyArgs& a) {
  absl::StatusOr<std::unique_ptr<const smtp::Classifier>> cl = ClassifierWithRulesFile(a.rules);
  if (!cl.ok()) {
    PrintError(Sv(cl.status().message()));
    return kExitFailure;
  }
  smtp::InstallClassifier(*std::move(cl));
  std::string line;
  int lineno = 0;
  int bad = 0;
  nlohmann::json all = nlohmann::json::array();
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (StripWhitespace(line).empty()) continue;
    smtp::Reply reply;
    if (!ParseReplyLine(line, &reply) || reply.code < 400 || reply.code > 599) {
      std::fprintf(stderr, "salvo: error: stdin:%d: not a 4xx/5xx reply: %s\n", lineno,
                   Printable(line.substr(0, 200)).c_str());
      ++bad;
      if (a.json)
        all.push_back({{"line", lineno}, {"error", "not a 4xx/5xx reply"}});
      else
        std::printf("-\t-\t-\n");
      continue;
    }
    // The engine's path: the failure module decides, consulting the rules.
    smtp::Outcome o = smtp::OutcomeForReply(reply, smtp::Phase::kRcpt, "");
    const std::string category(smtp::CategoryName(o.bounce_class));
    const char* hardness = reply.code >= 500 ? "hard" : "soft";
    const std::string rule = o.rule ? o.rule->name : "keywords:" + o.category;
    if (a.json) {
      nlohmann::json j = {{"reply", reply.ToString()},
                          {"category", category},
                          {"hard", reply.code >= 500},
                          {"rule", rule},
                          {"suppress", o.suppress}};
      if (o.rule && o.rule->action != smtp::RuleAction::kNone)
        j["action"] = std::string(smtp::RuleActionName(o.rule->action));
      all.push_back(j);
    } else {
      std::printf("%s\t%s\t%s\n", category.c_str(), hardness, rule.c_str());
    }
  }
  if (a.json) std::printf("%s\n", all.dump(2).c_str());
  return bad ? kExitFailure : kExitOk;
}

}  // namespace

void RegisterShapingCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* shaping = app.add_subcommand("shaping", "Traffic shaping: check a file, show limits");
  shaping->require_subcommand(1);

  auto ca = std::make_shared<ShapingArgs>();
  CLI::App* check = shaping->add_subcommand(
      "check", "Validate a shaping file (limits and [[rule]]s); exit 1 with file:line:column");
  check->add_option("file", ca->file, "The shaping file")->required()->check(ReadableFile());
  check->add_option("--config", ca->config_file, "salvo.toml whose [delivery] gives the defaults");
  check->add_flag("--json", ca->json, "Print JSON");
  check->callback([ca, &ctx] { ctx.exit_code = RunCheck(*ca); });

  auto sa = std::make_shared<ShapingArgs>();
  CLI::App* show = shaping->add_subcommand(
      "show", "Print the limits that apply to a destination domain, and why");
  show->add_option("domain", sa->domain, "Destination domain")->required();
  show->add_option("--mx", sa->mx,
                   "An MX host of the domain (repeatable; matched against "
                   "providers' mx_suffixes)");
  show->add_option("--file", sa->file, "Shaping file (default: shaping_file of --config)")
      ->check(ReadableFile());
  show->add_option("--config", sa->config_file, "salvo.toml (its shaping_file and defaults)");
  show->add_flag("--json", sa->json, "Print JSON");
  show->callback([sa, &ctx] { ctx.exit_code = RunShow(*sa); });

  CLI::App* bounce = app.add_subcommand("bounce", "Bounce and deferral replies");
  bounce->require_subcommand(1);
  auto cl = std::make_shared<ClassifyArgs>();
  CLI::App* classify = bounce->add_subcommand(
      "classify",
      "Classify replies read from stdin, one per line: CATEGORY<TAB>hard|soft<TAB>RULE");
  classify
      ->add_option("--rules", cl->rules, "A file of [[rule]] tables tried before the shipped rules")
      ->check(ReadableFile());
  classify->add_flag("--json", cl->json, "Print JSON");
  classify->callback([cl, &ctx] { ctx.exit_code = RunClassify(*cl); });
  RegisterBounceParseCommand(*bounce, ctx);
}

}  // namespace salvo::cli
