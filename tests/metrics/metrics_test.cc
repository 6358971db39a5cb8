#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace salvo::metrics {
namespace {

TEST(MetricsTest, ShardsAreSummedAtScrape) {
  Registry registry;
  ShardCounters* a = registry.AddShard();
  ShardCounters* b = registry.AddShard();
  a->Add(Counter::kRecipientsDelivered, 3);
  b->Add(Counter::kRecipientsDelivered);
  b->Add(Counter::kRecipientsBounced, 2);
  EXPECT_EQ(registry.Total(Counter::kRecipientsDelivered), 4u);
  EXPECT_EQ(registry.Total(Counter::kRecipientsBounced), 2u);
  EXPECT_EQ(registry.Total(Counter::kRecipientsDeferred), 0u);
}

TEST(MetricsTest, ScrapeIsPrometheusTextWithHelpAndType) {
  Registry registry;
  registry.AddShard()->Add(Counter::kRecipientsDeferred, 7);
  std::string text = registry.Scrape();
  EXPECT_NE(text.find("# HELP salvo_recipients_deferred_total"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE salvo_recipients_deferred_total counter"), std::string::npos);
  EXPECT_NE(text.find("salvo_recipients_deferred_total 7"), std::string::npos) << text;
}

TEST(MetricsTest, OwningThreadWritesWhileScraperReads) {
  Registry registry;
  ShardCounters* shard = registry.AddShard();
  constexpr uint64_t kN = 200000;
  std::thread writer([&] {
    for (uint64_t i = 0; i < kN; ++i) shard->Add(Counter::kBytesSent);
  });
  uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    uint64_t now = registry.Total(Counter::kBytesSent);
    EXPECT_GE(now, last);  // monotonic as seen by the scraper
    last = now;
  }
  writer.join();
  EXPECT_EQ(registry.Total(Counter::kBytesSent), kN);
}

TEST(MetricsTest, ExposerBindFailureIsAStatusNamingTheAddress) {
  auto registry = std::make_shared<Registry>();
  auto exposer = StartExposer("256.0.0.1:1", registry);
  ASSERT_FALSE(exposer.ok());
  EXPECT_NE(exposer.status().message().find("256.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace salvo::metrics
