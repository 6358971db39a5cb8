#pragma once
// Test-only plumbing for running a Session over real loopback sockets: a
// blocking poll(2) loop (the io_uring engine is someone else's), a child
// process wrapper that is always killed, and a throw-away PKI made with the
// openssl command line tool.
#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/smtp/session.h"
#include "tests/support/files.h"

namespace salvo::smtp::testing {

// Runs a shell command; returns its exit status (and output in *output).
int RunCommand(const std::string& command, std::string* output = nullptr);

// A temporary directory removed (recursively) on destruction; mode 0755 so
// that a private Postfix's own users can reach their files inside it.
class TempDir : public testsupport::TempDir {
 public:
  TempDir() : testsupport::TempDir("salvo-smtp-test") { chmod(path().c_str(), 0755); }
};

// A CA and a server certificate for DNS:mx.test + IP:127.0.0.1, signed by the
// CA, plus a self-signed certificate for the same names (not signed by the
// CA). Files: ca.crt ca.key server.crt server.key selfsigned.crt selfsigned.key
absl::Status GenerateTestPki(const std::string& dir);

// Blocking connect to 127.0.0.1:port; returns the fd or -errno.
int ConnectLoopback(int port);

struct DriveResult {
  std::vector<Event> events;
  bool wall_limit_hit = false;
  std::string sent;  // every byte written to the socket
  // Outcomes of every kTransactionDone, by envelope id.
  std::vector<std::pair<uint64_t, std::vector<Outcome>>> transactions;
  Outcome closed;  // from kClosed
  const std::vector<Outcome>* Find(uint64_t id) const;
};

// Runs `s` on `fd` until it closes (or the wall limit). on_event runs for
// every event; it may call s.StartTransaction / s.Quit. Closes fd.
DriveResult Drive(Session& s, int fd, const std::function<void(Session&, const Event&)>& on_event,
                  absl::Duration wall_limit = absl::Seconds(15));

// Connects to 127.0.0.1:port, sends the envelopes one per kReady, then QUIT.
// `session_out` (optional) receives the session after it ended.
DriveResult SendAll(const Options& options, int port, std::vector<Envelope> envelopes,
                    absl::Duration wall_limit = absl::Seconds(15),
                    std::unique_ptr<Session>* session_out = nullptr);

}  // namespace salvo::smtp::testing
