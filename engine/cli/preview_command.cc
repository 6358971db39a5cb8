// Placeholder until message composition lands.
#include "engine/cli/commands.h"

namespace salvo::cli {

void RegisterPreviewCommand(CLI::App& app, CommandContext& ctx) {
  CLI::App* campaign = app.get_subcommand("campaign");
  CLI::App* preview = campaign->add_subcommand("preview", "Print the exact bytes one recipient would get (not yet available)");
  preview->allow_extras();
  preview->callback([&ctx] {
    PrintError("'salvo campaign preview' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace salvo::cli
