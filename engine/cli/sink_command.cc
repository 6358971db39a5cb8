// Placeholder until this subcommand group lands: a clear error, never a fake success.
#include "engine/cli/commands.h"

namespace salvo::cli {

void RegisterSinkCommand(CLI::App& app, CommandContext& ctx) {
  CLI::App* sink = app.add_subcommand("sink", "Run the Salvo SMTP sink (a fast receiving server for tests and benchmarks) (not yet available)");
  sink->allow_extras();
  sink->callback([&ctx] {
    PrintError("'salvo sink' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace salvo::cli
