#pragma once
// Process harness for end-to-end tests of the real `salvo` binary: temp
// directories, child processes (killed and reaped by their destructor, also
// when a test fails), `salvo sink` instances on 127.0.0.x with ports chosen
// at run time (port 0, read back from the stats file).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace salvo::itest {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/salvo-itest-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process with stdout/stderr in files.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& out_file, const std::string& err_file)
      : out_(out_file), err_(err_file) {
    pid_ = fork();
    if (pid_ == 0) {
      int o = open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int n = open("/dev/null", O_RDONLY);
      dup2(n, 0);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() { Kill(); }
  Process(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig) {
    if (pid_ > 0 && !exited_) kill(pid_, sig);
  }
  // Waits up to `timeout`; returns the exit code, or -1 on timeout, or
  // 128+signal when killed by a signal.
  int Wait(std::chrono::milliseconds timeout) {
    if (exited_) return code_;
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
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
  int code = -1;
  std::string out, err;
};

// Runs salvo with `args` to completion (bounded by `timeout`).
inline RunResult RunSalvo(const TempDir& dir, std::vector<std::string> args,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  static int n = 0;
  ++n;
  args.insert(args.begin(), SALVO_BINARY);
  Process p(args, dir / ("run" + std::to_string(n) + ".out"),
            dir / ("run" + std::to_string(n) + ".err"));
  RunResult r;
  r.code = p.Wait(timeout);
  if (r.code == -1) p.Kill();
  r.out = p.out();
  r.err = p.err();
  return r;
}

// `salvo sink` on `ip`:0 with a stats file (and optional save dir).
class Sink {
 public:
  Sink(const TempDir& dir, const std::string& name, const std::string& ip,
       std::vector<std::string> extra = {}) {
    stats_ = dir / (name + "-stats.json");
    std::vector<std::string> argv = {SALVO_BINARY, "sink",         "--listen",
                                     ip + ":0",    "--stats-file", stats_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<Process>(argv, dir / (name + ".out"), dir / (name + ".err"));
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      nlohmann::json j = Stats();
      if (j.contains("listen") && !j["listen"].empty()) {
        std::string l = j["listen"][0].get<std::string>();
        port_ = std::stoi(l.substr(l.rfind(':') + 1));
      }
    }
    hostport_ = ip + ":" + std::to_string(port_);
  }
  ~Sink() { Stop(); }
  void Stop() { proc_->Kill(); }
  int port() const { return port_; }
  const std::string& hostport() const { return hostport_; }
  nlohmann::json Stats() const {
    std::string text = ReadFile(stats_);
    if (text.empty()) return nlohmann::json::object();
    try {
      return nlohmann::json::parse(text);
    } catch (...) {
      return nlohmann::json::object();
    }
  }
  uint64_t Count(const char* key) const { return Stats().value(key, uint64_t{0}); }
  std::string err() const { return proc_->err(); }

 private:
  std::unique_ptr<Process> proc_;
  std::string stats_;
  int port_ = 0;
  std::string hostport_;
};

// A loopback address:port with nothing listening.
inline std::string DeadHostPort(const std::string& ip) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ip + ":" + std::to_string(ntohs(a.sin_port));
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

}  // namespace salvo::itest
