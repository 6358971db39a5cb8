// salvo bounce parse (engine/bounce): what a received report says.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/bounce/report.h"
#include "engine/cli/commands.h"
#include "engine/common/strings.h"
#include "engine/shaping/shaping.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace salvo::cli {
namespace {

struct ParseArgs {
  std::vector<std::string> files;
  std::string rules;
  bool json = false;
};

// Reads a whole file, at most `max` bytes plus one (so an oversized file is
// reported as such by the parser rather than read whole).
bool ReadFileText(const std::string& path, size_t max, std::string* out, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    *error = std::strerror(errno);
    return false;
  }
  char buf[65536];
  size_t n;
  while (out->size() <= max && (n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) {
    *error = "read error";
    return false;
  }
  return true;
}

nlohmann::json ToJson(const std::string& file, const bounce::Report& r) {
  nlohmann::json rcpts = nlohmann::json::array();
  for (const bounce::FailedRecipient& fr : r.recipients) {
    nlohmann::json j = {{"recipient", fr.final_recipient},
                        {"original_recipient", fr.original_recipient},
                        {"action", fr.action},
                        {"status", fr.status},
                        {"diagnostic_code", fr.diagnostic_code},
                        {"remote_mta", fr.remote_mta}};
    if (fr.category != smtp::Category::kNone) {
      j["category"] = std::string(smtp::CategoryName(fr.category));
      j["hard"] = fr.hard;
      j["rule"] = fr.rule;
      j["reply"] = fr.reply;
    }
    rcpts.push_back(std::move(j));
  }
  nlohmann::json out = {{"file", file},
                        {"kind", std::string(bounce::ReportKindName(r.kind))},
                        {"format", r.format},
                        {"subject", r.subject},
                        {"from", r.from},
                        {"reporting_mta", r.reporting_mta},
                        {"recipients", rcpts},
                        {"original_message_id", r.original_message_id},
                        {"original_return_path", r.original_return_path},
                        {"feedback_id", r.feedback_id}};
  if (r.complaint) {
    out["complaint"] = {{"feedback_type", r.complaint->feedback_type},
                        {"user_agent", r.complaint->user_agent},
                        {"original_rcpt_to", r.complaint->original_rcpt_to},
                        {"original_mail_from", r.complaint->original_mail_from},
                        {"source_ip", r.complaint->source_ip},
                        {"arrival_date", r.complaint->arrival_date}};
  }
  return out;
}

int RunParse(const ParseArgs& a) {
  absl::StatusOr<std::unique_ptr<const smtp::Classifier>> rules = ClassifierWithRulesFile(a.rules);
  if (!rules.ok()) {
    PrintError(Sv(rules.status().message()));
    return kExitFailure;
  }
  const bounce::ParseLimits limits;
  int bad = 0;
  nlohmann::json all = nlohmann::json::array();
  for (const std::string& file : a.files) {
    std::string text, error;
    if (!ReadFileText(file, limits.max_message_bytes, &text, &error)) {
      PrintError(fmt::format("{}: cannot read: {}", file, error));
      if (a.json) all.push_back({{"file", file}, {"error", "cannot read: " + error}});
      ++bad;
      continue;
    }
    absl::StatusOr<bounce::Report> r = bounce::ParseReport(text, limits);
    if (!r.ok()) {
      PrintError(fmt::format("{}: {}", file, Sv(r.status().message())));
      if (a.json) all.push_back({{"file", file}, {"error", std::string(r.status().message())}});
      ++bad;
      continue;
    }
    bounce::Classify(&*r, rules->get());
    if (a.json) {
      all.push_back(ToJson(file, *r));
      continue;
    }
    // One line per recipient: FILE KIND RECIPIENT STATUS CATEGORY hard|soft DIAGNOSTIC.
    const std::string kind(bounce::ReportKindName(r->kind));
    const std::string shown_file = Printable(file);
    if (r->recipients.empty())
      std::printf("%s\t%s\t-\t-\t-\t-\t-\n", shown_file.c_str(), kind.c_str());
    for (const bounce::FailedRecipient& fr : r->recipients) {
      const bool classified = fr.category != smtp::Category::kNone;
      std::printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shown_file.c_str(), kind.c_str(),
                  Printable(fr.final_recipient).c_str(),
                  fr.status.empty() ? "-" : Printable(fr.status).c_str(),
                  classified ? std::string(smtp::CategoryName(fr.category)).c_str() : "-",
                  classified ? (fr.hard ? "hard" : "soft") : "-",
                  fr.diagnostic_code.empty() ? "-" : Printable(fr.diagnostic_code).c_str());
    }
  }
  if (a.json) std::printf("%s\n", all.dump(2).c_str());
  return bad ? kExitFailure : kExitOk;
}

}  // namespace

void RegisterBounceParseCommand(CLI::App& bounce, CommandContext& ctx) {
  auto pa = std::make_shared<ParseArgs>();
  CLI::App* parse = bounce.add_subcommand(
      "parse",
      "Read received bounces, delay warnings, complaints (ARF) and auto-replies: per "
      "recipient FILE<TAB>KIND<TAB>RECIPIENT<TAB>STATUS<TAB>CATEGORY<TAB>hard|soft<TAB>DIAGNOSTIC");
  parse->add_option("files", pa->files, "Message files (RFC 5322, one message each)")->required();
  parse
      ->add_option("--rules", pa->rules, "A file of [[rule]] tables tried before the shipped rules")
      ->check(ReadableFile());
  parse->add_flag("--json", pa->json, "Print JSON (every field the parser found)");
  parse->callback([pa, &ctx] { ctx.exit_code = RunParse(*pa); });
}

}  // namespace salvo::cli
