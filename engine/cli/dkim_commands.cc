// Placeholder until this subcommand group lands: a clear error, never a fake success.
#include "engine/cli/commands.h"

namespace salvo::cli {

void RegisterDkimCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* dkim = app.add_subcommand("dkim", "DKIM keys and signing (not yet available)");
  dkim->allow_extras();
  dkim->callback([&ctx] {
    PrintError("'salvo dkim' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace salvo::cli
