#include "tests/dns/unbound_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tests/support/files.h"
#include "tests/support/ports.h"
#include "tests/support/process.h"

extern char** environ;

namespace salvo::dns::testing {
namespace {

constexpr const char* kUnbound = "/usr/sbin/unbound";

// Sends "gen.salvo-ready.test TXT" and reports whether the answer carries
// `marker`. Bounded: one 100 ms receive.
bool Answers(uint16_t port, const std::string& marker) {
  std::vector<uint8_t> q = {0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  for (const char* label : {"gen", "salvo-ready", "test"}) {
    q.push_back(static_cast<uint8_t>(std::strlen(label)));
    q.insert(q.end(), label, label + std::strlen(label));
  }
  q.insert(q.end(), {0, 0, 16, 0, 1});
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{0, 100'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  if (::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) ==
      static_cast<ssize_t>(q.size())) {
    char buf[1024];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    ok = n > 0 && std::string(buf, n).find(marker) != std::string::npos;
  }
  ::close(fd);
  return ok;
}

}  // namespace

std::string ReadTestData(const std::string& name) {
  const std::string path = std::string(SALVO_SOURCE_DIR) + "/tests/data/dns/" + name;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read test data %s\n", path.c_str());
    std::abort();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::unique_ptr<UnboundServer>> UnboundServer::Start(std::string server_lines,
                                                                    std::string clauses) {
  if (::access(kUnbound, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kUnbound, " is not installed: run deploy/bootstrap.sh test"));
  }
  std::unique_ptr<UnboundServer> s(new UnboundServer());
  s->tmp_ = std::make_unique<testsupport::TempDir>("salvo-unbound");
  s->dir_ = s->tmp_->path();
  s->server_lines_ = std::move(server_lines);
  s->clauses_ = std::move(clauses);
  absl::Status last = absl::UnknownError("not started");
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int port = testsupport::FreeUdpAndTcpPort();
    if (port == 0) return absl::UnavailableError("no free loopback port for unbound");
    s->port_ = static_cast<uint16_t>(port);
    if (absl::Status w = s->WriteConfig(); !w.ok()) return w;
    const std::string log = s->dir_ + "/unbound.log";
    s->proc_ = std::make_unique<testsupport::Process>(
        std::vector<std::string>{kUnbound, "-d", "-c", s->dir_ + "/unbound.conf"}, log, log);
    last = s->WaitReady();
    if (last.ok()) return s;
    // Most likely the port was taken between probe and bind: kill and retry.
    s->proc_->Signal(SIGKILL);
    s->proc_.reset();
  }
  return last;
}

UnboundServer::~UnboundServer() {
  proc_.reset();  // SIGTERM, then SIGKILL after 5 s; then tmp_ goes with its files
}

std::string UnboundServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string UnboundServer::Log() const { return testsupport::ReadFile(dir_ + "/unbound.log"); }

absl::Status UnboundServer::WriteConfig() {
  ++generation_;
  std::ofstream out(dir_ + "/unbound.conf", std::ios::trunc);
  out << "server:\n"
      << "  interface: 127.0.0.1@" << port_ << "\n"
      << "  port: " << port_ << "\n"
      << "  do-daemonize: no\n"
      << "  chroot: \"\"\n"
      << "  username: \"\"\n"
      << "  directory: \"" << dir_ << "\"\n"
      << "  pidfile: \"" << dir_ << "/unbound.pid\"\n"
      << "  use-syslog: no\n"
      << "  logfile: \"\"\n"
      << "  verbosity: 1\n"
      << "  num-threads: 1\n"
      << "  do-ip6: no\n"
      << "  so-reuseport: no\n"
      << "  access-control: 127.0.0.0/8 allow\n"
      << "  module-config: \"iterator\"\n"
      << "  local-zone: \"salvo-ready.test.\" static\n"
      << "  local-data: \"gen.salvo-ready.test. 0 IN TXT gen" << generation_ << "x\"\n"
      << server_lines_ << "\n"
      << "remote-control:\n"
      << "  control-enable: no\n"
      << clauses_ << "\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", dir_, "/unbound.conf"));
  return absl::OkStatus();
}

absl::Status UnboundServer::WaitReady() {
  const std::string marker = absl::StrCat("gen", generation_, "x");
  for (int i = 0; i < 50; ++i) {  // up to ~5 s
    if (Answers(port_, marker)) return absl::OkStatus();
    if (!proc_->running()) {
      return absl::UnavailableError(absl::StrCat("unbound exited at start-up:\n", Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("unbound did not serve generation ", generation_, " within 5 s:\n", Log()));
}

absl::Status UnboundServer::Reload(std::string server_lines, std::string clauses) {
  server_lines_ = std::move(server_lines);
  clauses_ = std::move(clauses);
  if (absl::Status w = WriteConfig(); !w.ok()) return w;
  if (::kill(proc_->pid(), SIGHUP) != 0) {
    return absl::InternalError(absl::StrCat("SIGHUP unbound: ", std::strerror(errno)));
  }
  return WaitReady();
}

}  // namespace salvo::dns::testing
