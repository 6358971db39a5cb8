#pragma once
// The real `salvo sink` as a child process on `ip`:0, its port read back
// from its stats file; stats as JSON.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/process.h"

namespace salvo::testsupport {

class SinkProcess {
 public:
  // `salvo` is the binary; files go to `dir` as <name>-stats.json, .out, .err.
  SinkProcess(const std::string& salvo, const TempDir& dir, const std::string& name,
              const std::string& ip, std::vector<std::string> extra = {}) {
    stats_ = dir / (name + "-stats.json");
    std::vector<std::string> argv = {salvo, "sink", "--listen", ip + ":0", "--stats-file", stats_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = std::make_unique<Process>(argv, dir / (name + ".out"), dir / (name + ".err"));
    WaitFor(
        [&] {
          nlohmann::json j = Stats();
          if (!j.contains("listen") || j["listen"].empty()) return false;
          std::string l = j["listen"][0].get<std::string>();
          port_ = std::stoi(l.substr(l.rfind(':') + 1));
          return true;
        },
        std::chrono::seconds(5));
    hostport_ = ip + ":" + std::to_string(port_);
  }
  void Stop() { proc_->Kill(); }
  int port() const { return port_; }  // 0: it did not start
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
  Process& process() { return *proc_; }

 private:
  std::unique_ptr<Process> proc_;
  std::string stats_;
  int port_ = 0;
  std::string hostport_;
};

}  // namespace salvo::testsupport
