// Resource caps (issue 16 item 7) against the real sink on loopback: at a cap
// the engine slows down, it does not fall over. delivery.max_connections
// (every shard's connections) and delivery.max_composed_bytes (copies
// composed ahead and not yet sent).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/memory_source.h"
#include "tests/delivery/sink_peer.h"

namespace salvo::delivery {
namespace {

using salvo::testing::SinkPeer;
using smtp::Disposition;

std::vector<std::string> Recipients(int n, const std::string& domain) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("user" + std::to_string(i) + "@" + domain);
  return v;
}

// Every domain routed to `hostport`: sites "d0.example".."dN.example" all
// land on the one sink, each its own site pool (routes per domain).
config::Config MakeConfig(const std::string& delivery, const std::vector<std::string>& domains,
                          const std::string& hostport) {
  std::string text = "shards = 2\npin_threads = false\n[tls]\nmode = \"off\"\n";
  text += "[queue]\npoll_interval = \"20ms\"\n[delivery]\n" + delivery + "\n[routes]\n";
  for (const std::string& d : domains) text += "\"" + d + "\" = \"" + hostport + "\"\n";
  auto c = config::ParseConfig(text, "caps.toml");
  EXPECT_TRUE(c.ok()) << c.status() << "\n" << text;
  return c.ok() ? *c : config::Config{};
}

// Bodies composed on the shards, slowly (as DKIM signing is), so the engine
// composes ahead; each copy is `size` bytes.
class SlowComposeSource : public MessageSource {
 public:
  SlowComposeSource(size_t size, std::chrono::microseconds compose_time)
      : size_(size), compose_time_(compose_time) {}
  void Add(const std::vector<std::string>& recipients) {
    inner_.AddSimple("s@sender.test", recipients, "x");
  }
  absl::StatusOr<std::vector<Job>> Fetch(size_t max) override {
    auto jobs = inner_.Fetch(max);
    if (jobs.ok())
      for (Job& j : *jobs) j.body.reset();
    return jobs;
  }
  absl::Status Complete(absl::Span<JobResult> r) override { return inner_.Complete(r); }
  bool Done(size_t in_flight) override { return inner_.Done(in_flight); }
  absl::Status Compose(Job* job, int, bool*) override {
    std::this_thread::sleep_for(compose_time_);
    composed_++;
    std::string body = "Subject: for " + job->recipients[0].address + "\r\n\r\n";
    while (body.size() + 80 < size_) body += std::string(76, 'x') + "\r\n";
    job->body = std::make_shared<const std::string>(std::move(body));
    return absl::OkStatus();
  }
  InMemorySource inner_;
  size_t size_;
  std::chrono::microseconds compose_time_;
  std::atomic<int> composed_{0};
};

TEST(CapsTest, MaxConnectionsHoldsAcrossShardsAndEverythingIsDelivered) {
  // Eight sites on two shards, each allowed 4 connections (32 in all), under
  // a total cap of 3: every message is delivered, never more than 3
  // connections are open at the sink at once, and nothing is deferred.
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(5);  // transactions overlap
  SinkPeer server(o);
  std::vector<std::string> domains;
  for (int i = 0; i < 8; ++i) domains.push_back("d" + std::to_string(i) + ".example");
  auto cfg = MakeConfig("connections_per_site = 4\nmax_connections = 3\nidle_timeout = \"200ms\"",
                        domains, server.hostport());
  ASSERT_EQ(cfg.delivery.max_connections, 3);
  InMemorySource source;
  for (const std::string& d : domains)
    source.AddSimple("s@sender.test", Recipients(25, d), "Subject: hi\r\n\r\nhello\r\n");
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->Run().ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 200u);
  EXPECT_EQ(source.Count(Disposition::kDeferred), 0u);
  EXPECT_EQ(server.message_count(), 200u);
  EXPECT_LE(server.peak_connections(), 3);
  EngineStats st = (*e)->Stats();
  EXPECT_LE(st.connections_peak, 3u);
  EXPECT_EQ(st.connections, 0u);  // every slot given back
  // The cap was binding: pools waited for a slot.
  EXPECT_GT(st.connection_waits, 0u);
}

TEST(CapsTest, MaxComposedBytesBoundsCopiesComposedAheadAndEverythingIsDelivered) {
  // 8 KiB copies, composed slowly (so ahead, on both shards), under a cap of
  // 20 KiB: every copy is delivered once and composed once (a copy composed
  // while another shard filled the cap is sent uncounted, not composed, and
  // so signed, again); the bytes held by copies composed ahead never pass the
  // cap plus one copy.
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(2);
  SinkPeer server(o);
  std::vector<std::string> domains = {"a.example", "b.example", "c.example"};
  auto cfg = MakeConfig("connections_per_site = 4\nmax_composed_bytes = \"20k\"", domains,
                        server.hostport());
  ASSERT_EQ(cfg.delivery.max_composed_bytes, 20u * 1024);
  const size_t kCopy = 8 * 1024;
  SlowComposeSource source(kCopy, std::chrono::microseconds(300));
  for (const std::string& d : domains) source.Add(Recipients(60, d));
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->Run().ok());
  EXPECT_EQ(source.inner_.Count(Disposition::kDelivered), 180u);
  EXPECT_EQ(server.message_count(), 180u);
  EXPECT_EQ(source.composed_.load(), 180);
  EngineStats st = (*e)->Stats();
  EXPECT_GT(st.composed_bytes_peak, 0u);  // copies were composed ahead
  EXPECT_LE(st.composed_bytes_peak, 20u * 1024 + kCopy);
  EXPECT_GT(st.compose_waits, 0u);   // and the cap was binding
  EXPECT_EQ(st.composed_bytes, 0u);  // every copy sent gave its bytes back
}

TEST(CapsTest, ACopyLargerThanMaxComposedBytesStillGoes) {
  // One 64 KiB copy under a 1 KiB cap: it goes (alone).
  SinkPeer server;
  auto cfg = MakeConfig("max_composed_bytes = 1024", {"big.example"}, server.hostport());
  SlowComposeSource source(64 * 1024, std::chrono::microseconds(300));
  source.Add(Recipients(5, "big.example"));
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->Run().ok());
  EXPECT_EQ(source.inner_.Count(Disposition::kDelivered), 5u);
  ASSERT_EQ(server.message_count(), 5u);
  EXPECT_GE(server.messages()[0].data.size(), 60u * 1024);
}

TEST(CapsTest, ZeroOrNegativeCapsAreConfigErrors) {
  for (const char* bad :
       {"[delivery]\nmax_connections = 0\n", "[delivery]\nmax_connections = -4\n",
        "[delivery]\nmax_composed_bytes = 0\n", "[delivery]\nmax_composed_bytes = -1\n"}) {
    auto c = config::ParseConfig(bad, "caps.toml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_THAT(std::string(c.status().message()), ::testing::HasSubstr("caps.toml:2"));
    EXPECT_THAT(std::string(c.status().message()), ::testing::HasSubstr("max_"));
  }  // The listener's buffer must hold at least one message.
  auto c = config::ParseConfig("[inbound]\nmax_buffered_bytes = \"1M\"\n", "caps.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              ::testing::HasSubstr("caps.toml:2:22: [inbound] max_buffered_bytes (1048576) must "
                                   "be at least max_message_size (10485760)"));
  for (const char* bad :
       {"[inbound]\nmax_buffered_bytes = 0\n", "[inbound]\nmax_buffered_bytes = -1\n"})
    EXPECT_FALSE(config::ParseConfig(bad, "caps.toml").ok()) << bad;
}

}  // namespace
}  // namespace salvo::delivery
