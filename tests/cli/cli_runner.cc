#include "tests/cli/cli_runner.h"

#include "tests/support/process.h"

namespace salvo::testing {

CommandResult RunSalvo(const std::vector<std::string>& args, const std::string& input) {
  std::vector<std::string> argv = {SALVO_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  testsupport::RunResult r = testsupport::RunWithInput(argv, input, std::chrono::minutes(5));
  return CommandResult{r.code, std::move(r.out), std::move(r.err)};
}

}  // namespace salvo::testing
