// salvo: the command-line entry point. See commands.h for the layout.
#include <sys/stat.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <string_view>

#include "engine/cli/commands.h"
#include "engine/common/log.h"
#include "salvo_version.h"

namespace salvo::cli {

void PrintError(std::string_view message) {
  std::string line(message);
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  std::fprintf(stderr, "salvo: error: %s\n", line.c_str());
}

namespace {

int Main(int argc, char** argv) {
  // Private by default: the spool, logs, saved copies and sockets are
  // readable by their owner only (issue 16 item 3).
  ::umask(077);
  CLI::App app{"Salvo: a high-throughput bulk email sending engine", "salvo"};
  app.set_version_flag("-V,--version", std::string("salvo ") + SALVO_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug|info|warning|error|off")
      ->default_val("info")
      ->check(CLI::IsMember({"debug", "info", "warning", "warn", "error", "off"}));
  app.footer("Exit codes: 0 ok, 1 runtime failure, 2 usage error.");

  CommandContext ctx;
  RegisterSinkCommand(app, ctx);
  RegisterDkimCommands(app, ctx);
  RegisterCampaignCommands(app, ctx);
  RegisterPreviewCommand(app, ctx);
  RegisterRunCommands(app, ctx);
  RegisterBenchCommand(app, ctx);
  RegisterFleetCommands(app, ctx);
  // Parse first, then apply the log level, then run the chosen subcommand:
  // CLI11 runs callbacks inside parse(), so set the level in a pre-callback.
  app.parse_complete_callback([&] {
    LogLevel level;
    if (ParseLogLevel(log_level, &level)) SetLogLevel(level);
  });

  // CLI11 reports an unknown first word as "A subcommand is required", which
  // hides the typo: name it instead.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--log-level") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({}))
      if (sub->check_name(std::string(arg))) known = true;
    if (!known) {
      PrintError("unknown subcommand '" + std::string(arg) + "' (run 'salvo --help')");
      return kExitUsage;
    }
    break;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    PrintError(std::string(e.what()) + " (run 'salvo --help')");
    return kExitUsage;
  }
  return ctx.exit_code;
}

}  // namespace
}  // namespace salvo::cli

int main(int argc, char** argv) { return salvo::cli::Main(argc, argv); }
