#pragma once
// Child processes for tests: started with fork/exec, stdin from /dev/null,
// stdout and stderr to files, killed and reaped by the destructor (also when
// a test fails), and bounded waits.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
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
