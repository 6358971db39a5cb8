// Placeholder until this subcommand group lands: a clear error, never a fake success.
#include "engine/cli/commands.h"

namespace salvo::cli {

void RegisterBenchCommand(CLI::App& app, CommandContext& ctx) {
  CLI::App* bench = app.add_subcommand(
      "bench", "Measure end-to-end throughput against a sink (not yet available)");
  bench->allow_extras();
  bench->callback([&ctx] {
    PrintError("'salvo bench' is not yet available in this build");
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace salvo::cli
