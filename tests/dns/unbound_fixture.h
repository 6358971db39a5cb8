#pragma once
// A real unbound on 127.0.0.1:<free port>, configured from text, for
// integration tests. Started in the foreground (-d) as a child process with its
// config, pidfile and log in a fresh temp directory; killed (and reaped) by the
// destructor, also when a test fails.
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/support/process.h"

namespace salvo::dns::testing {

class UnboundServer {
 public:
  // `server_lines` go inside the server: clause (local-zone/local-data...),
  // `clauses` after it (forward-zone: ...). Fails with the unbound log if it
  // does not answer within a few seconds.
  static absl::StatusOr<std::unique_ptr<UnboundServer>> Start(std::string server_lines,
                                                              std::string clauses);
  ~UnboundServer();

  // Rewrites the config, sends SIGHUP and waits until the new data is served.
  absl::Status Reload(std::string server_lines, std::string clauses);

  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  std::string Log() const;

 private:
  UnboundServer() = default;
  absl::Status WriteConfig();
  absl::Status WaitReady();

  std::string dir_;
  std::string server_lines_;
  std::string clauses_;
  uint16_t port_ = 0;
  std::unique_ptr<testsupport::TempDir> tmp_;  // declared first: removed last
  std::unique_ptr<testsupport::Process> proc_;
  int generation_ = 0;  // served as a TXT record; proves which config is live
};

// Reads a file below SALVO_SOURCE_DIR/tests/data/dns/.
std::string ReadTestData(const std::string& name);

}  // namespace salvo::dns::testing
