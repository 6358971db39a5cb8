// Placeholder until this subcommand group lands: a clear error, never a fake success.
#include "engine/cli/commands.h"

namespace salvo::cli {

void RegisterCampaignCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* campaign = app.add_subcommand("campaign", "Load and operate campaigns (not yet available)");
  campaign->allow_extras();
  campaign->callback([&ctx] {
    PrintError("'salvo campaign' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
  CLI::App* suppression = app.add_subcommand("suppression", "Manage the suppression list (not yet available)");
  suppression->allow_extras();
  suppression->callback([&ctx] {
    PrintError("'salvo suppression' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace salvo::cli
