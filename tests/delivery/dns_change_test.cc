// Issue 12 item 7: a DNS change reaches the pool. A real unbound serves the
// MX host's address; two in-process sinks listen on the old and the new
// address (port 25: MX hosts always use it, so this needs root, as CI has;
// it skips otherwise). The engine runs on a FakeMonotonicClock, so the
// answer's TTL passes when the test advances time, not in real time.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/common/clock.h"
#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/memory_source.h"
#include "engine/sink/sink.h"
#include "tests/dns/unbound_fixture.h"

namespace salvo::delivery {
namespace {

using smtp::Disposition;

std::unique_ptr<sink::Sink> SinkOn(const std::string& ip) {
  sink::SinkOptions so;
  auto addr = sink::ParseListenAddress(ip + ":25");
  EXPECT_TRUE(addr.ok());
  so.listen = {*addr};
  auto s = std::make_unique<sink::Sink>(so);
  absl::Status st = s->Start();
  EXPECT_TRUE(st.ok()) << st;
  return s;
}

std::string Zone(const std::string& mx_ip) {
  return "  local-zone: \"change.test.\" static\n"
         "  local-data: \"change.test. 300 IN MX 10 mx.change.test.\"\n"
         "  local-data: \"mx.change.test. 300 IN A " +
         mx_ip + "\"\n";
}

void AddJobs(InMemorySource* source, int from, int n) {
  std::vector<std::string> rcpts;
  for (int i = from; i < from + n; ++i) rcpts.push_back("u" + std::to_string(i) + "@change.test");
  source->AddSimple("s@sender.test", rcpts, "Subject: hi\r\n\r\nhi\r\n");
}

template <typename F>
bool WaitUntil(F done) {
  for (int i = 0; i < 500 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return done();
}

TEST(DeliveryAcceptance, ADnsChangeReachesThePool) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to bind port 25 on 127.0.78.x";
  auto old_mx = SinkOn("127.0.78.1");
  auto new_mx = SinkOn("127.0.78.2");
  auto unbound = dns::testing::UnboundServer::Start(Zone("127.0.78.1"), "");
  ASSERT_TRUE(unbound.ok()) << unbound.status();
  auto cfg = config::ParseConfig(
      "shards = 1\npin_threads = false\n[tls]\nmode = \"off\"\n"
      "[queue]\npoll_interval = \"20ms\"\n[dns]\nservers = [\"" +
          (*unbound)->address() + "\"]\n",
      "test.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  FakeMonotonicClock clock;
  InMemorySource::Options so;
  so.run_forever = true;
  so.clock = &clock;
  InMemorySource source(so);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(*cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });

  // The feeder fetches when its poll interval has passed on the clock.
  auto delivered = [&](size_t n) {
    return WaitUntil([&] {
      clock.Advance(std::chrono::milliseconds(20));
      return source.Count(Disposition::kDelivered) >= n;
    });
  };
  AddJobs(&source, 0, 3);
  EXPECT_TRUE(delivered(3));
  EXPECT_EQ(old_mx->Stats().messages, 3u);

  // The MX host moves. Until the answer's TTL (300 s) passes, mail still
  // goes to the old address (cached); after it, to the new one.
  ASSERT_TRUE((*unbound)->Reload(Zone("127.0.78.2"), "").ok());
  AddJobs(&source, 3, 2);
  EXPECT_TRUE(delivered(5));
  EXPECT_EQ(old_mx->Stats().messages, 5u);
  clock.Advance(std::chrono::seconds(301));
  AddJobs(&source, 5, 3);
  EXPECT_TRUE(delivered(8));
  EXPECT_EQ(new_mx->Stats().messages, 3u);
  EXPECT_EQ(old_mx->Stats().messages, 5u);

  (*e)->RequestShutdown();
  runner.join();
}

}  // namespace
}  // namespace salvo::delivery
