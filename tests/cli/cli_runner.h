#pragma once
// Runs the built `salvo` binary with arguments and captures its exit code,
// stdout and stderr. Shared by the CLI tests.
#include <string>
#include <vector>

namespace salvo::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs SALVO_BINARY with `args` (no shell), stdin from /dev/null or `input`.
CommandResult RunSalvo(const std::vector<std::string>& args, const std::string& input = "");

}  // namespace salvo::testing
