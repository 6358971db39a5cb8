// Placeholder until this subcommand group lands: a clear error, never a fake success.
#include "engine/cli/commands.h"

namespace salvo::cli {

void RegisterRunCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* run = app.add_subcommand("run", "Run the sending engine until stopped (not yet available)");
  run->allow_extras();
  run->callback([&ctx] {
    PrintError("'salvo run' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
  CLI::App* send = app.add_subcommand("send", "Load a campaign and send it to completion, then exit (not yet available)");
  send->allow_extras();
  send->callback([&ctx] {
    PrintError("'salvo send' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace salvo::cli
