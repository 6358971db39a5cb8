// Crash test (issue 6 acceptance): a real `salvo run` sending a 100,000-
// recipient campaign to `salvo sink` is killed with SIGKILL at several random
// moments and restarted; in the end every recipient is delivered, none is
// lost, and the recipients delivered twice (counted at the sink) stay within
// the engine's in-flight limit per kill.
//
// Skipped (with the reason) while `salvo run` is not available in the build.
// Size and kills can be changed with SALVO_CRASH_RECIPIENTS / SALVO_CRASH_KILLS.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "tests/queue/test_util.h"

namespace salvo::queue {
namespace {

using testing::Child;
using testing::RunResult;
using testing::TempDir;

size_t EnvOr(const char* name, size_t def) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : def;
}

int WaitForSinkPort(const std::string& log, double seconds) {
  const std::string marker = "listening on 127.0.0.1:";
  for (int i = 0; i < seconds * 20; ++i) {
    std::string text = testing::ReadFile(log);
    size_t at = text.find(marker);
    if (at != std::string::npos) return std::atoi(text.c_str() + at + marker.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

TEST(CrashTest, SigkillDuringSendingLosesNothing) {
  RunResult probe = testing::Run(std::string(SALVO_BINARY) + " run --help");
  if (probe.exit_code != 0 || probe.err.find("not yet available") != std::string::npos ||
      probe.out.find("not yet available") != std::string::npos) {
    GTEST_SKIP() << "`salvo run` is not yet available in this build: " << probe.err;
  }
  const size_t n = EnvOr("SALVO_CRASH_RECIPIENTS", 100000);
  const size_t kills = EnvOr("SALVO_CRASH_KILLS", 3);
  const size_t in_flight_limit = 1000;
  TempDir dir;
  {
    std::ofstream csv(dir.File("list.csv"));
    csv << "email,name\n";
    for (size_t i = 0; i < n; ++i)
      csv << "u" << i << "@d" << (i % 200) << ".example,N" << i << "\n";
  }
  dir.Write("message.eml", "From: news@example.com\r\nSubject: Hi {{name}}\r\n\r\nHello\r\n");

  Child sink({SALVO_BINARY, "sink", "--listen", "127.0.0.1:0", "--track-duplicates", "--stats-file",
              dir.File("sink-stats.json")},
             dir.File("sink.log"));
  const int port = WaitForSinkPort(dir.File("sink.log"), 20);
  ASSERT_GT(port, 0) << testing::ReadFile(dir.File("sink.log"));

  const std::string config = dir.Write(
      "salvo.toml", "data_dir = \"" + dir.File("data") + "\"\nshards = 2\npin_threads = false\n" +
                        "[routes]\n\"*\" = \"127.0.0.1:" + std::to_string(port) + "\"\n" +
                        "[tls]\nmode = \"off\"\n[delivery]\nin_flight_limit = " +
                        std::to_string(in_flight_limit) + "\n[queue]\npoll_interval = \"50ms\"\n");
  RunResult load =
      testing::Run(std::string(SALVO_BINARY) + " campaign load --name crash --template " +
                   dir.File("message.eml") + " --recipients " + dir.File("list.csv") +
                   " --from news@example.com --config " + config);
  ASSERT_EQ(load.exit_code, 0) << load.err;
  const std::string id = load.out.substr(0, load.out.find('\n'));

  // Each kill lands while mail is flowing: wait until the sink has seen new
  // deliveries from this run (bounded), then a random extra delay.
  auto sink_delivered = [&] {
    nlohmann::json st =
        nlohmann::json::parse(testing::ReadFile(dir.File("sink-stats.json")), nullptr, false);
    return st.is_discarded() ? uint64_t{0} : st.value("recipients_delivered", uint64_t{0});
  };
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> delay_ms(0, 1500);
  for (size_t k = 0; k < kills; ++k) {
    const uint64_t before = sink_delivered();
    Child run({SALVO_BINARY, "run", "--config", config},
              dir.File("run" + std::to_string(k) + ".log"));
    for (int i = 0; i < 300 && sink_delivered() <= before; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    run.Signal(SIGKILL);
    run.Wait(10);
    std::printf("crash test: kill %zu after the sink saw %llu deliveries\n", k + 1,
                static_cast<unsigned long long>(sink_delivered()));
  }
  // Final run until the campaign is done (bounded), then a clean stop.
  Child run({SALVO_BINARY, "run", "--config", config}, dir.File("run-final.log"));
  nlohmann::json status;
  bool done = false;
  for (int i = 0; i < 600 && !done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    RunResult st = testing::Run(std::string(SALVO_BINARY) + " campaign status " + id +
                                " --json --config " + config);
    if (st.exit_code != 0) continue;
    status = nlohmann::json::parse(st.out, nullptr, false);
    done = !status.is_discarded() && status.value("done", false);
  }
  run.Signal(SIGTERM);
  run.Wait(60);
  ASSERT_TRUE(done) << "campaign not finished in time; last status: " << status.dump()
                    << "\nengine log: " << testing::ReadFile(dir.File("run-final.log"));
  EXPECT_EQ(status["counts"]["delivered"], n) << status.dump();

  sink.Signal(SIGTERM);
  sink.Wait(20);
  nlohmann::json stats =
      nlohmann::json::parse(testing::ReadFile(dir.File("sink-stats.json")), nullptr, false);
  ASSERT_FALSE(stats.is_discarded());
  const uint64_t duplicates = stats.value("duplicate_recipients", uint64_t{0});
  const uint64_t delivered_at_sink = stats.value("recipients_delivered", uint64_t{0});
  std::printf("crash test: %zu recipients, %zu kills, sink delivered %llu, duplicates %llu\n", n,
              kills, static_cast<unsigned long long>(delivered_at_sink),
              static_cast<unsigned long long>(duplicates));
  EXPECT_GE(delivered_at_sink, n);  // zero lost
  EXPECT_LE(duplicates, in_flight_limit * kills);
}

}  // namespace
}  // namespace salvo::queue
