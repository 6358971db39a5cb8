// The engine over STARTTLS against the real sink (in-process, its own
// io_uring shards): every connection negotiates TLS, the engine's metrics
// and the sink agree on how many, and each connection after the first
// resumes the TLS session the previous one received (single-use TLS 1.3
// tickets, pooled per host).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/memory_source.h"
#include "engine/sink/sink.h"
#include "metrics/metrics.h"

namespace salvo::delivery {
namespace {

using smtp::Disposition;

TEST(EngineTlsTest, SequentialConnectionsResumeAndAreCounted) {
  sink::SinkOptions so;
  auto addr = sink::ParseListenAddress("127.0.0.1:0");
  ASSERT_TRUE(addr.ok());
  so.listen = {*addr};
  so.tls = true;
  sink::Sink sink(so);
  ASSERT_TRUE(sink.Start().ok());
  const std::string hostport = "127.0.0.1:" + std::to_string(sink.Bound()[0].port);

  // One connection at a time, 2 messages each: 5 connections for 10.
  std::string text =
      "shards = 1\npin_threads = false\n"
      "[tls]\nmode = \"required\"\nverify = false\n"
      "[queue]\npoll_interval = \"20ms\"\n"
      "[delivery]\nconnections_per_site = 1\nmessages_per_connection = 2\n"
      "[[route]]\ndomain = \"*\"\nhosts = [\"" +
      hostport + "\"]\n";
  auto cfg = config::ParseConfig(text, "test.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();

  InMemorySource source;
  std::vector<std::string> rcpts;
  for (int i = 0; i < 10; ++i) rcpts.push_back("user" + std::to_string(i) + "@example.com");
  source.AddSimple("sender@sender.test", rcpts,
                   "From: a@sender.test\r\nTo: b@example.com\r\nSubject: tls\r\n\r\nHello.\r\n");
  metrics::Registry registry;
  auto engine = Engine::Create(*cfg, &source, &registry);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->Run().ok());
  sink.Stop();

  EXPECT_EQ(source.Count(Disposition::kDelivered), 10u);
  sink::SinkStats st = sink.Stats();
  EXPECT_EQ(st.messages, 10u);
  EXPECT_EQ(st.connections, 5u);
  EXPECT_EQ(st.tls_sessions, 5u);
  EXPECT_EQ(st.tls_resumed, 4u);  // all but the first
  EXPECT_EQ(registry.Total(metrics::Counter::kTlsSessions), 5u);
  EXPECT_EQ(registry.Total(metrics::Counter::kTlsResumed), 4u);
  EXPECT_NE(registry.Scrape().find("salvo_smtp_tls_resumed_total 4"), std::string::npos)
      << registry.Scrape();
}

}  // namespace
}  // namespace salvo::delivery
