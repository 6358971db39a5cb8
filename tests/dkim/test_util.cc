#include "tests/dkim/test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace salvo::dkim::testing {

std::string DataPath(std::string_view rel) {
  return std::string(SALVO_SOURCE_DIR) + "/tests/data/dkim/" + std::string(rel);
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, std::string_view data, int mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) ADD_FAILURE() << "cannot write " << path;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/salvo-dkim-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (std::getenv("SALVO_KEEP_TEST_DIRS") != nullptr) {  // for debugging a failure
    std::fprintf(stderr, "keeping %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

DkimKey LoadTestKey(std::string_view rel, std::string_view domain, std::string_view selector) {
  KeySpec spec{std::string(domain), std::string(selector), "", KeyType::kAuto};
  auto key = ParseKey(ReadFileOrDie(DataPath(rel)), spec, rel);
  if (!key.ok()) {
    ADD_FAILURE() << key.status();
    return DkimKey{};
  }
  return *std::move(key);
}

ProcessResult RunProcess(const std::vector<std::string>& argv, std::string_view input,
                         int timeout_ms) {
  ProcessResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe failed";
    return result;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::signal(SIGPIPE, SIG_IGN);
  std::size_t written = 0;
  if (input.empty()) {
    ::close(in_pipe[1]);
    in_pipe[1] = -1;
  }
  ::fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << argv[0] << " timed out after " << timeout_ms << " ms";
      break;
    }
    pollfd fds[3] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}, {in_pipe[1], POLLOUT, 0}};
    const int nfds = in_pipe[1] >= 0 ? 3 : 2;
    if (!out_open) fds[0].fd = -1;
    if (!err_open) fds[1].fd = -1;
    if (::poll(fds, nfds, static_cast<int>(left)) < 0) continue;
    char buf[65536];
    if (fds[0].revents) {
      const ssize_t n = ::read(out_pipe[0], buf, sizeof(buf));
      if (n > 0)
        result.out.append(buf, static_cast<std::size_t>(n));
      else
        out_open = false;
    }
    if (fds[1].revents) {
      const ssize_t n = ::read(err_pipe[0], buf, sizeof(buf));
      if (n > 0)
        result.err.append(buf, static_cast<std::size_t>(n));
      else
        err_open = false;
    }
    if (nfds == 3 && fds[2].revents) {
      const ssize_t n = ::write(in_pipe[1], input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<std::size_t>(n);
      if (n < 0 || written == input.size()) {
        ::close(in_pipe[1]);
        in_pipe[1] = -1;
      }
    }
  }
  if (in_pipe[1] >= 0) ::close(in_pipe[1]);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace salvo::dkim::testing
