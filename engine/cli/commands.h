#pragma once
// The `salvo` command line. main.cc builds the CLI11 app; each subcommand
// group registers itself from its own file so that each concept owns its
// command surface:
//   sink_command.cc      salvo sink                 (engine/sink)
//   dkim_commands.cc     salvo dkim keygen|sign     (dkim/)
//   campaign_commands.cc salvo campaign ..., salvo suppression ...  (queue/)
//   preview_command.cc   salvo campaign preview     (engine/message)
//   run_commands.cc      salvo run, salvo send      (engine/delivery)
//   bench_command.cc     salvo bench                (bench/)
//   fleet_commands.cc    salvo health, salvo fleet status  (deploy/: a node of a fleet)
//   shaping_commands.cc  salvo shaping check|show, salvo bounce classify  (engine/shaping)
//   wiring.h/.cc         what they share: config -> spool and DKIM keys for the engine
//                        (OpenEngineInputs), the template check, the key conversion
//
// Exit codes are the same everywhere: 0 ok, 1 runtime failure, 2 usage error.
// Errors go to stderr as one line: "salvo: error: <what and where>".
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/common/strings.h"
#include "engine/smtp/classifier.h"

namespace salvo::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Shared by all subcommands; a subcommand's callback stores its exit code here.
struct CommandContext {
  int exit_code = kExitOk;
};

// Prints "salvo: error: <message>" to stderr (one line; embedded newlines are
// replaced so the error stays on one line).
void PrintError(std::string_view message);

// The campaign named by `salvo campaign load` / `salvo send` arguments: a
// campaign file, or all of --name --template --recipients --from (never
// both). Paths come back absolute (the engine may run elsewhere). Returns an
// exit code; on anything but kExitOk the error is already printed. `who`
// names the command in the usage error. Defined in campaign_commands.cc.
struct CampaignFlags {
  std::string campaign_file, name, template_path, recipients, from, dkim_domain;
};

// Data (addresses, names, replies) for a human on a terminal: control
// characters (C0, DEL, C1) and bytes that are not UTF-8 become \xNN so they
// cannot move the cursor or rewrite earlier lines; valid UTF-8 passes
// unchanged (issue 16 item 5; salvo::EscapeControls in engine/common).
inline std::string Printable(std::string_view in) { return EscapeControls(in); }

// An input file option: like CLI::ExistingFile, but the message is the real
// cause (a symlink loop, permission denied), not always "does not exist".
inline CLI::Validator ReadableFile() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        std::error_code ec;
        auto st = std::filesystem::status(v, ec);
        if (ec) return v + ": " + ec.message();
        if (st.type() == std::filesystem::file_type::not_found) return v + ": no such file";
        if (st.type() == std::filesystem::file_type::directory) return v + ": is a directory";
        return "";
      },
      "FILE");
}

// A count option: "-3" is a usage error naming the flag, not a wrapped-around
// unsigned or an error about something else (issue 16 item 2).
inline CLI::Validator NonNegativeCount() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        if (!v.empty() && v[0] == '-') return "must be a non-negative whole number, not " + v;
        return "";
      },
      "N>=0");
}
}  // namespace salvo::cli
namespace salvo::queue {
struct CampaignSpec;
struct NodeShare;
}  // namespace salvo::queue
namespace salvo::config {
struct Config;
}
namespace salvo::cli {
int CampaignSpecFromFlags(const CampaignFlags& flags, std::string_view who,
                          queue::CampaignSpec* spec);
// A campaign's egress_pool must be an [[egress.pool]] of the configuration
// that sends it: else the error names the campaign file and the pools there
// are (exit 1). kExitOk when it names none.
int CheckEgressPool(const queue::CampaignSpec& spec, const config::Config& config,
                    std::string_view campaign_file);

// A campaign's dkim_domain must have [[dkim.keys]] in the configuration given
// with --config (else the error names the campaign file and the domains it
// has keys for, exit 1); without --config a warning says nothing was checked.
// A d= not aligned with the From domain (DMARC relaxed) is a warning.
int CheckDkimDomain(const queue::CampaignSpec& spec, const config::Config& config,
                    std::string_view campaign_file);

// The shipped bounce rules plus those of `rules_file` ("" = none): what
// `bounce classify --rules` and `bounce parse --rules` use. Errors name the file.
absl::StatusOr<std::unique_ptr<const smtp::Classifier>> ClassifierWithRulesFile(
    const std::string& rules_file);

void RegisterSinkCommand(CLI::App& app, CommandContext& ctx);
void RegisterDkimCommands(CLI::App& app, CommandContext& ctx);
void RegisterCampaignCommands(CLI::App& app, CommandContext& ctx);
// Called after RegisterCampaignCommands: adds `preview` under `campaign`.
void RegisterPreviewCommand(CLI::App& app, CommandContext& ctx);
void RegisterRunCommands(CLI::App& app, CommandContext& ctx);
void RegisterBenchCommand(CLI::App& app, CommandContext& ctx);
void RegisterFleetCommands(CLI::App& app, CommandContext& ctx);
void RegisterShapingCommands(CLI::App& app, CommandContext& ctx);
// `salvo bounce parse`, under the `bounce` group RegisterShapingCommands makes.
void RegisterBounceParseCommand(CLI::App& bounce, CommandContext& ctx);

// Fleet helpers (fleet_commands.cc). The node share "i/N" or "auto/N" (the
// host name's trailing number); "" = the whole list. Errors are printed.
int ResolveNodeShare(const std::string& text, queue::NodeShare* share);
// The admin token: the first line of `path`, trimmed; never empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);
// The configuration of a CLI command: `config_file` ("" = the defaults) with
// the SALVO_* environment applied (config::kEnvOverrides).
absl::StatusOr<config::Config> LoadCliConfig(const std::string& config_file);

}  // namespace salvo::cli
