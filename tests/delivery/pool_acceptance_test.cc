// Issue 12 acceptance for the site pool, against the real sink (in-process,
// its own io_uring shards) with its fault injection. Sessions and 421 replies
// are counted where they happen: at the sink.
//   - A 421 storm (the sink's --max-rate) backs the site off instead of
//     reconnecting at once, and everything is delivered in the end.
//   - Recipient-scope refusals (450/451/550 to RCPT) keep the session: the
//     next transaction goes out on the same connection after RSET.
// Bounded durations: each test gives up after a fixed time (the engine is
// shut down and the counts asserted then). Times are never asserted.
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

namespace salvo::delivery {
namespace {

using smtp::Disposition;
using Clock = std::chrono::steady_clock;

const char kBody[] = "From: a@sender.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";

config::Config MakeConfig(const std::string& hostport, const std::string& delivery) {
  std::string text =
      "shards = 2\npin_threads = false\n[tls]\nmode = \"off\"\n"
      "[queue]\npoll_interval = \"20ms\"\n[delivery]\n" +
      delivery + "[[route]]\ndomain = \"*\"\nhosts = [\"" + hostport + "\"]\n";
  auto c = config::ParseConfig(text, "test.toml");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : config::Config{};
}

std::unique_ptr<sink::Sink> StartSink(sink::SinkOptions so) {
  auto addr = sink::ParseListenAddress("127.0.0.1:0");
  EXPECT_TRUE(addr.ok());
  so.listen = {*addr};
  so.shards = 2;
  so.seed = 12;
  auto s = std::make_unique<sink::Sink>(so);
  EXPECT_TRUE(s->Start().ok());
  return s;
}

std::string HostPort(const sink::Sink& s) {
  return "127.0.0.1:" + std::to_string(s.Bound()[0].port);
}

std::vector<std::string> Recipients(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("user" + std::to_string(i) + "@example.com");
  return v;
}

// Polls `done` every 50 ms until it holds or `limit` passes (a bound on the
// test, not a wait for a retry: the engine's own timers do the retrying).
template <typename F>
bool WaitUntil(F done, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// 1,500 messages at 50/s: at least 30 s of storm, so the first 30 s (where
// the connections are counted) are all under the sink's limit.
TEST(DeliveryAcceptance, A421StormOpensFewConnectionsAndEverythingIsDelivered) {
  sink::SinkOptions so;
  so.max_rate = 50;  // msgs/s over the whole sink; above it: 421 4.7.0 and close
  auto sink = StartSink(so);
  auto cfg = MakeConfig(HostPort(*sink), "site_retry_delay = \"10s\"\n");
  // What is asserted here is the pool's answer to 421s, not durability: with
  // queue.durable_before_next on (the default) this run took 201 s instead
  // of 95 s (2026-12-04, quiet machine), close to the 240 s bound below; the
  // gate's cost is issue 19's to cut (README, "queue.durable_before_next").
  cfg.queue.durable_before_next = false;
  InMemorySource::Options o;
  o.retry_deferred = true;  // the 421'd transactions come back (the queue's part)
  o.retry_delay = std::chrono::milliseconds(500);
  o.max_attempts = 1000;
  InMemorySource source(o);
  source.AddSimple("s@sender.test", Recipients(1500), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  const auto start = Clock::now();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  WaitUntil([&] { return Clock::now() - start >= std::chrono::seconds(30); },
            std::chrono::seconds(31));
  const sink::SinkStats at30 = sink->Stats();
  const bool all = WaitUntil([&] { return source.Count(Disposition::kDelivered) == 1500; },
                             std::chrono::seconds(240));
  (*e)->RequestShutdown();
  runner.join();
  const sink::SinkStats end = sink->Stats();
  std::printf(
      "421 storm: %llu connections and %llu 421 replies in the first 30 s; "
      "%llu connections, %llu 421 replies, %zu delivered in %.1f s\n",
      static_cast<unsigned long long>(at30.connections),
      static_cast<unsigned long long>(at30.rejected_421),
      static_cast<unsigned long long>(end.connections),
      static_cast<unsigned long long>(end.rejected_421), source.Count(Disposition::kDelivered),
      std::chrono::duration<double>(Clock::now() - start).count());
  EXPECT_LT(at30.connections, 200u);
  EXPECT_TRUE(all);
  EXPECT_EQ(source.Count(Disposition::kDelivered), 1500u);
  EXPECT_EQ(end.messages, 1500u);
}

// The backoff runs on the engine's clock: after a 421 no connection opens
// until the (fake) clock moves past the backoff, however long the test
// waits in real time; each move lets the pool try again.
TEST(DeliveryAcceptance, A421BacksTheSiteOffUntilTheClockMoves) {
  sink::SinkOptions so;
  so.max_per_connection = 1;  // the second MAIL on a connection: 421 and close
  auto sink = StartSink(so);
  FakeMonotonicClock clock;
  auto cfg = MakeConfig(HostPort(*sink), "connections_per_site = 4\nsite_retry_delay = \"1m\"\n");
  InMemorySource::Options o;
  o.retry_deferred = true;
  o.retry_delay = std::chrono::seconds(1);
  o.max_attempts = 100;
  o.clock = &clock;
  InMemorySource source(o);
  source.AddSimple("s@sender.test", Recipients(12), kBody);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  ASSERT_TRUE(WaitUntil([&] { return sink->Stats().rejected_421 >= 1; }, std::chrono::seconds(20)));
  // Let the other first connections finish too, then nothing more happens
  // while the clock stands still.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const uint64_t before = sink->Stats().connections;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(sink->Stats().connections, before);
  EXPECT_LE(before, 4u);
  for (int i = 0; i < 400 && source.Count(Disposition::kDelivered) < 12; ++i) {
    clock.Advance(std::chrono::seconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (*e)->RequestShutdown();
  runner.join();
  const sink::SinkStats st = sink->Stats();
  std::printf(
      "backoff on a fake clock: %llu connections before the clock moved, %llu in all "
      "for 12 messages, %llu 421 replies\n",
      static_cast<unsigned long long>(before), static_cast<unsigned long long>(st.connections),
      static_cast<unsigned long long>(st.rejected_421));
  EXPECT_EQ(source.Count(Disposition::kDelivered), 12u);
  EXPECT_EQ(st.messages, 12u);
}

TEST(DeliveryAcceptance, RefusedRecipientsDoNotCostSessions) {
  sink::SinkOptions so;
  so.defer_rate = 0.3;
  so.bounce_rate = 0.05;
  auto sink = StartSink(so);
  const int kPool = 32, kPerConnection = 100;
  auto cfg = MakeConfig(HostPort(*sink),
                        "connections_per_site = " + std::to_string(kPool) +
                            "\nmessages_per_connection = " + std::to_string(kPerConnection) + "\n");
  InMemorySource::Options o;
  o.retry_deferred = true;
  o.retry_delay = std::chrono::milliseconds(50);
  o.max_attempts = 50;
  InMemorySource source(o);
  const int kRecipients = 10000;
  source.AddSimple("s@sender.test", Recipients(kRecipients), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  // Run() returns when every recipient is delivered or bounced; the bound
  // only stops a broken engine.
  const bool done = WaitUntil([&] { return source.pending() == 0; }, std::chrono::seconds(120));
  if (!done) (*e)->RequestShutdown();
  runner.join();
  const sink::SinkStats st = sink->Stats();
  // One job per recipient here, so every attempt is one transaction
  // (retries included).
  const size_t transactions = source.Attempts().size();
  const double bound = 1.2 * static_cast<double>(transactions) / kPerConnection + kPool;
  std::printf(
      "refused recipients: %llu sessions for %zu transactions (bound %.0f); "
      "%llu deferred and %llu bounced RCPTs at the sink\n",
      static_cast<unsigned long long>(st.connections), transactions, bound,
      static_cast<unsigned long long>(st.recipients_deferred),
      static_cast<unsigned long long>(st.recipients_bounced));
  EXPECT_TRUE(done);
  EXPECT_GT(st.recipients_deferred, 0u);
  EXPECT_LE(static_cast<double>(st.connections), bound);
  EXPECT_EQ(source.Count(Disposition::kDelivered) + source.Count(Disposition::kBounced),
            static_cast<size_t>(kRecipients));
  EXPECT_EQ(source.Count(Disposition::kDelivered), st.messages);
}

}  // namespace
}  // namespace salvo::delivery
