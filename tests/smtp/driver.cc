#include "tests/smtp/driver.h"
#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace salvo::smtp::testing {

int RunCommand(const std::string& command, std::string* output) {
  testsupport::RunResult r = testsupport::RunShell(command + " 2>&1");
  if (output != nullptr) *output = r.out;
  return r.code >= 0 && r.code < 128 ? r.code : -1;
}

absl::Status GenerateTestPki(const std::string& dir) {
  const std::string d = "'" + dir + "'";
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string script =
      "set -e; cd " + d + ";" +
      "printf 'subjectAltName=DNS:mx.test,IP:127.0.0.1\\n' > san.cnf;"
      "openssl req -x509" +
      ec +
      " -keyout ca.key -out ca.crt -days 2 -subj '/CN=Salvo Test CA'"
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign;"
      "openssl req" +
      ec +
      " -keyout server.key -out server.csr -subj /CN=mx.test;"
      "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
      " -out server.crt -days 2 -extfile san.cnf;"
      "openssl req -x509" +
      ec +
      " -keyout selfsigned.key -out selfsigned.crt -days 2"
      " -subj /CN=mx.test -addext subjectAltName=DNS:mx.test,IP:127.0.0.1;"
      "chmod 644 *.key";
  std::string out;
  if (RunCommand(script, &out) != 0) return absl::InternalError("openssl failed: " + out);
  return absl::OkStatus();
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

const std::vector<Outcome>* DriveResult::Find(uint64_t id) const {
  for (const auto& [tid, outcomes] : transactions) {
    if (tid == id) return &outcomes;
  }
  return nullptr;
}

DriveResult Drive(Session& s, int fd, const std::function<void(Session&, const Event&)>& on_event,
                  absl::Duration wall_limit) {
  DriveResult r;
  const absl::Time wall_end = absl::Now() + wall_limit;
  auto handle_events = [&] {
    // Events may produce more events (StartTransaction can finish at once).
    for (int round = 0; round < 100 && s.HasEvents(); ++round) {
      for (Event& e : s.TakeEvents()) {
        if (e.type == Event::Type::kTransactionDone) {
          r.transactions.emplace_back(e.envelope_id, e.outcomes);
        } else if (e.type == Event::Type::kClosed) {
          r.closed = e.outcome;
        }
        on_event(s, e);
        r.events.push_back(std::move(e));
      }
    }
  };
  auto write_some = [&]() -> bool {
    std::string_view out = s.PendingOutput();
    if (out.empty()) return true;
    ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      r.sent.append(out.data(), n);
      s.ConsumeOutput(n);
      return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  };
  for (int turn = 0; turn < 1000000; ++turn) {
    handle_events();
    if (s.closed()) {
      // Flush what is left (QUIT), best effort, then close.
      for (int i = 0; i < 100 && !s.PendingOutput().empty(); ++i) {
        if (!write_some()) break;
      }
      break;
    }
    absl::Time now = absl::Now();
    if (now >= wall_end) {
      r.wall_limit_hit = true;
      break;
    }
    absl::Time until = std::min(s.NextDeadline(), wall_end);
    int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(until - now) + 1);
    pollfd p{fd, static_cast<short>(POLLIN | (s.PendingOutput().empty() ? 0 : POLLOUT)), 0};
    int pr = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    if (pr > 0 && (p.revents & POLLOUT)) {
      if (!write_some()) {
        s.OnConnectionLost();
        continue;
      }
    }
    if (pr > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[65536];
      ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        s.Feed(std::string_view(buf, n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        s.OnConnectionLost();
      }
      continue;
    }
    if (absl::Now() >= s.NextDeadline()) s.OnTimeout(absl::Now());
  }
  handle_events();
  close(fd);
  return r;
}

DriveResult SendAll(const Options& options, int port, std::vector<Envelope> envelopes,
                    absl::Duration wall_limit, std::unique_ptr<Session>* session_out) {
  auto s = std::make_unique<Session>(options);
  int fd = ConnectLoopback(port);
  if (fd < 0) {
    DriveResult r;
    r.closed = OutcomeForConnectFailure(fd, "127.0.0.1");
    return r;
  }
  size_t next = 0;
  DriveResult r = Drive(
      *s, fd,
      [&](Session& session, const Event& e) {
        if (e.type != Event::Type::kReady) return;
        if (next < envelopes.size()) {
          session.StartTransaction(std::move(envelopes[next++]));
        } else {
          session.Quit();
        }
      },
      wall_limit);
  if (session_out != nullptr) *session_out = std::move(s);
  return r;
}

}  // namespace salvo::smtp::testing
