#pragma once
// The end-to-end tests' view of tests/support: the real `salvo` binary
// (SALVO_BINARY) run to completion, and `salvo sink` as a child process.
#include <chrono>
#include <string>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/ports.h"
#include "tests/support/process.h"
#include "tests/support/sink.h"

namespace salvo::itest {

using testsupport::DeadHostPort;
using testsupport::Process;
using testsupport::ReadFile;
using testsupport::RunResult;
using testsupport::TempDir;
using testsupport::WaitFor;
using testsupport::WriteFile;

// Runs salvo with `args` to completion (bounded by `timeout`).
inline RunResult RunSalvo(const TempDir& dir, std::vector<std::string> args,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  static int n = 0;
  ++n;
  args.insert(args.begin(), SALVO_BINARY);
  return testsupport::Run(std::move(args), dir / ("run" + std::to_string(n) + ".out"),
                          dir / ("run" + std::to_string(n) + ".err"), timeout);
}

// `salvo sink` on `ip`:0 with a stats file (and optional extra flags).
class Sink : public testsupport::SinkProcess {
 public:
  Sink(const TempDir& dir, const std::string& name, const std::string& ip,
       std::vector<std::string> extra = {})
      : SinkProcess(SALVO_BINARY, dir, name, ip, std::move(extra)) {}
};

}  // namespace salvo::itest
