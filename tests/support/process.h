#pragma once
// Child processes for tests: started with fork/exec, stdin from /dev/null,
// stdout and stderr to files, killed and reaped by the destructor (also when
// a test fails), and bounded waits.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/files.h"

namespace salvo::testsupport {

class Process {
 public:
  // argv[0] is a path (execv), or a bare name looked up on PATH (execvp).
  // stdin comes from `in_file`.
  Process(std::vector<std::string> argv, const std::string& out_file, const std::string& err_file,
          const std::string& in_file = "/dev/null")
      : out_(out_file), err_(err_file) {
    pid_ = fork();
    if (pid_ == 0) {
      int o = open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      // The same path for both: one file, one offset (no overwritten lines).
      int e = err_file == out_file ? o : open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int n = open(in_file.c_str(), O_RDONLY);
      dup2(n, 0);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      if (argv[0].find('/') != std::string::npos)
        execv(args[0], args.data());
      else
        execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() { Kill(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (exited_ || pid_ <= 0) return false;
    return Wait(std::chrono::milliseconds(0)) == -1;
  }
  void Signal(int sig) {
    if (pid_ > 0 && !exited_) kill(pid_, sig);
  }
  // Waits up to `timeout`; the exit code, -1 on timeout, 128+signal when a
  // signal ended it.
  int Wait(std::chrono::milliseconds timeout) {
    if (exited_) return code_;
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return code_;
      }
      if (std::chrono::steady_clock::now() >= end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // SIGTERM, then SIGKILL after 5 s.
  void Kill() {
    if (pid_ <= 0 || exited_) return;
    kill(pid_, SIGTERM);
    if (Wait(std::chrono::seconds(5)) == -1) {
      kill(pid_, SIGKILL);
      Wait(std::chrono::seconds(5));
    }
  }
  std::string out() const { return ReadFile(out_); }
  std::string err() const { return ReadFile(err_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  std::string out_, err_;
};

struct RunResult {
  int code = -1;  // -1: timed out (killed)
  std::string out, err;
};

// Runs argv to completion, bounded by `timeout` (then killed: code -1).
inline RunResult Run(std::vector<std::string> argv, const std::string& out_file,
                     const std::string& err_file,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60),
                     const std::string& in_file = "/dev/null") {
  Process p(std::move(argv), out_file, err_file, in_file);
  RunResult r;
  r.code = p.Wait(timeout);
  if (r.code == -1) p.Kill();
  r.out = p.out();
  r.err = p.err();
  return r;
}

// Runs argv to completion with `input` on stdin, in a temporary folder.
inline RunResult RunWithInput(std::vector<std::string> argv, const std::string& input,
                              std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  TempDir dir("salvo-run");
  WriteFile(dir / "in", input);
  return Run(std::move(argv), dir / "out", dir / "err", timeout, dir / "in");
}

// Runs `command` with /bin/sh -c, stdout and stderr apart, bounded.
inline RunResult RunShell(const std::string& command,
                          std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  TempDir dir("salvo-sh");
  return Run({"/bin/sh", "-c", command}, dir / "out", dir / "err", timeout);
}

// A child with stdout on a pipe (read line by line) and stdin held open
// (scripted servers exit when it closes); stderr is inherited. The destructor
// closes stdin, sends SIGTERM, waits up to 3 s, then SIGKILLs.
class PipedProcess {
 public:
  explicit PipedProcess(std::vector<std::string> argv) {
    int out[2], in[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    if (pipe2(in, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    close(in[0]);
    out_fd_ = out[0];
    in_fd_ = in[1];
  }
  ~PipedProcess() {
    if (in_fd_ >= 0) close(in_fd_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      bool reaped = false;
      for (int i = 0; i < 300 && !reaped; ++i) {
        reaped = waitpid(pid_, &status, WNOHANG) == pid_;
        if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!reaped) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    if (out_fd_ >= 0) close(out_fd_);
  }
  PipedProcess(const PipedProcess&) = delete;
  PipedProcess& operator=(const PipedProcess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Reads stdout until a line starting with `prefix`; that line, or nothing
  // when `timeout` passes or stdout closes first.
  std::optional<std::string> WaitForLine(const std::string& prefix,
                                         std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      size_t nl;
      while ((nl = buffered_.find('\n')) != std::string::npos) {
        std::string line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        if (line.rfind(prefix, 0) == 0) return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || out_fd_ < 0) return std::nullopt;
      pollfd p{out_fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) continue;
      char buf[4096];
      ssize_t n = read(out_fd_, buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      buffered_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int in_fd_ = -1;
  std::string buffered_;
};

// Polls `pred` every 20 ms up to `timeout`.
template <typename F>
bool WaitFor(F pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// The full path of an installed tool, "" when it is not installed.
inline std::string Which(const std::string& tool) {
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/", "/usr/local/bin/"}) {
    std::string p = std::string(dir) + tool;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

}  // namespace salvo::testsupport
