#pragma once
// Shared by the sink acceptance tests: runs the real `salvo sink` binary as a
// child process on a run-time loopback port (Process, SinkProcessTest), plus
// small helpers (ReadFile, Which). Test-only; each test executable includes it once.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include "gtest/gtest.h"
#include "tests/sink/test_client.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace salvo::sink {
namespace {

using std::chrono::milliseconds;
using testing::RawClient;

using testsupport::ReadFile;

using testsupport::Which;

// tests/support's Process with this file's calling convention: files
// <dir>/<name>.out/.err, and a timed-out Wait kills the child.
class Process : public testsupport::Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& dir, const std::string& name)
      : testsupport::Process(argv, dir + "/" + name + ".out", dir + "/" + name + ".err") {}
  // Waits up to `timeout`; returns the exit code, or -1 (then kills it).
  int Wait(milliseconds timeout) {
    int rc = testsupport::Process::Wait(timeout);
    if (rc == -1) {
      Signal(SIGKILL);
      testsupport::Process::Wait(std::chrono::seconds(5));
    }
    return rc;
  }
  std::string Out() const { return out(); }
  std::string Err() const { return err(); }
};

class SinkProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("salvo-sink-acc-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    stats_ = dir_ + "/stats.json";
  }
  void TearDown() override {
    sink_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts `salvo sink` on 127.0.0.1:0 and learns its port from stdout.
  void StartSink(std::vector<std::string> extra) {
    std::vector<std::string> argv = {SALVO_BINARY,  "sink",         "--listen",
                                     "127.0.0.1:0", "--stats-file", stats_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    sink_ = std::make_unique<Process>(argv, dir_, "sink");
    const std::string marker = "listening on 127.0.0.1:";
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::string out = sink_->Out();
      size_t pos = out.find(marker);
      if (pos != std::string::npos && out.find('\n', pos) != std::string::npos) {
        port_ = static_cast<uint16_t>(std::stoi(out.substr(pos + marker.size())));
      } else {
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    ASSERT_NE(port_, 0) << "sink did not start: " << sink_->Err();
  }

  // SIGTERM, expect a clean exit, then parse the final stats file.
  nlohmann::json StopSink() {
    kill(sink_->pid(), SIGTERM);
    int rc = sink_->Wait(milliseconds(10000));
    EXPECT_EQ(rc, 0) << sink_->Err();
    EXPECT_NE(sink_->Out().find("salvo sink: exiting: connections="), std::string::npos);
    return nlohmann::json::parse(ReadFile(stats_));
  }

  nlohmann::json CurrentStats() {
    std::string text = ReadFile(stats_);
    if (text.empty()) return nlohmann::json::object();
    return nlohmann::json::parse(text, nullptr, false);
  }

  std::string dir_, stats_;
  std::unique_ptr<Process> sink_;
  uint16_t port_ = 0;
};

}  // namespace
}  // namespace salvo::sink
