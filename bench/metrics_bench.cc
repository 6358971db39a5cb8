// Metric increments on the delivery path and the cost of a scrape.
// A shard counts with a relaxed load + store on its own arrays (one writer);
// the scrape thread sums every shard.
//
//   ./build/bench/metrics_bench
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "metrics/metrics.h"

namespace {

using salvo::metrics::BouncePhase;
using salvo::metrics::CampaignSlot;
using salvo::metrics::Counter;
using salvo::metrics::DefaultLabelledDomains;
using salvo::metrics::Histogram;
using salvo::metrics::OutcomeLabels;
using salvo::metrics::RecipientEvent;
using salvo::metrics::Registry;
using salvo::metrics::ShardCounters;
using salvo::smtp::Category;

// One delivered recipient as the shard counted it before labels: recipient,
// message, bytes.
void BM_CountDelivery(benchmark::State& state) {
  Registry registry;
  ShardCounters* c = registry.AddShard();
  for (auto _ : state) {
    c->Add(Counter::kRecipientsDelivered);
    c->Add(Counter::kMessagesSent);
    c->Add(Counter::kBytesSent, 20480);
    benchmark::ClobberMemory();
  }
  if (registry.Total(Counter::kRecipientsDelivered) != static_cast<uint64_t>(state.iterations()))
    state.SkipWithError("lost increments");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CountDelivery);

// Labels a mix of outcomes over the default domain list and 10 campaigns
// cycles through, resolved once up front (as the engine resolves them once
// per campaign and per domain).
struct Mix {
  std::vector<OutcomeLabels> labels;
  explicit Mix(Registry& registry) {
    std::vector<CampaignSlot> campaigns;
    for (int i = 0; i < 10; ++i)
      campaigns.push_back(registry.ResolveCampaign(i + 1, "campaign-" + std::to_string(i)));
    std::vector<std::string> domains = DefaultLabelledDomains();
    domains.push_back("long-tail.example");
    for (size_t i = 0; i < 4096; ++i)
      labels.push_back(registry.Labels(campaigns[(i * 7) % campaigns.size()],
                                       domains[(i * 13) % domains.size()]));
  }
};

// One recipient outcome as the wired engine counts it: the labelled counter
// (92% delivered, 5% deferred, 3% bounced, categories varied) plus message,
// bytes and the SMTP transaction time.
void CountOutcome(ShardCounters* c, const OutcomeLabels& l, uint64_t i) {
  uint64_t r = i % 100;
  if (r < 92) {
    c->CountRecipient(l, RecipientEvent::kDelivered);
  } else if (r < 97) {
    c->CountRecipient(l, RecipientEvent::kDeferred,
                      r & 1 ? Category::kRateLimited : Category::kQuotaIssues);
  } else {
    c->CountRecipient(l, RecipientEvent::kBounced, Category::kBadMailbox, BouncePhase::kSync);
  }
  c->Add(Counter::kMessagesSent);
  c->Add(Counter::kBytesSent, 20480);
  c->Observe(Histogram::kSmtpTransaction, 0.004 + static_cast<double>(i % 50) * 0.001);
}

void BM_CountOutcomeLabelled(benchmark::State& state) {
  Registry registry;
  ShardCounters* c = registry.AddShard();
  Mix mix(registry);
  uint64_t i = 0;
  for (auto _ : state) {
    CountOutcome(c, mix.labels[i & 4095], i);
    ++i;
    benchmark::ClobberMemory();
  }
  if (registry.Total(Counter::kMessagesSent) != static_cast<uint64_t>(state.iterations()))
    state.SkipWithError("lost increments");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CountOutcomeLabelled);

// Increments while another thread scrapes continuously (the counters' lines
// are shared with the reader): what a shard pays when Prometheus polls.
void BM_CountDeliveryWhileScraped(benchmark::State& state) {
  static Registry* registry = nullptr;
  static ShardCounters* counters[2] = {};
  if (state.thread_index() == 0) {
    registry = new Registry();
    counters[0] = registry->AddShard();
    counters[1] = registry->AddShard();
  }
  // Threads start together after setup: thread 0 counts, thread 1 scrapes.
  for (auto _ : state) {
    if (state.thread_index() == 0) {
      counters[0]->Add(Counter::kRecipientsDelivered);
      counters[0]->Add(Counter::kBytesSent, 20480);
    } else {
      benchmark::DoNotOptimize(registry->Total(Counter::kRecipientsDelivered));
    }
  }
  if (state.thread_index() == 0) {
    state.SetItemsProcessed(state.iterations());
    delete registry;
    registry = nullptr;
  }
}
BENCHMARK(BM_CountDeliveryWhileScraped)->Threads(2);

// Labelled outcomes counted while another thread runs full text scrapes
// back to back (far more often than Prometheus would, every 15 s or 1 s: the
// worst case for the counting shard's cache lines). Compare with
// BM_CountOutcomeLabelled.
void BM_CountOutcomeLabelledWhileScraped(benchmark::State& state) {
  Registry registry;
  ShardCounters* counter = registry.AddShard();
  registry.AddShard();
  Mix mix(registry);
  std::atomic<bool> stop{false};
  uint64_t scrapes = 0;
  std::thread scraper([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      std::string text = registry.Scrape();
      benchmark::DoNotOptimize(text);
      ++scrapes;
    }
  });
  uint64_t i = 0;
  for (auto _ : state) {
    CountOutcome(counter, mix.labels[i & 4095], i);
    ++i;
    benchmark::ClobberMemory();
  }
  stop.store(true);
  scraper.join();
  state.SetItemsProcessed(state.iterations());
  state.counters["scrapes"] = static_cast<double>(scrapes);
}
BENCHMARK(BM_CountOutcomeLabelledWhileScraped)->UseRealTime();

// A full Prometheus text scrape with N shards, every shard having counted
// outcomes over every domain label and 10 campaigns.
void BM_Scrape(benchmark::State& state) {
  Registry registry;
  std::vector<ShardCounters*> shards;
  for (int i = 0; i < state.range(0); ++i) shards.push_back(registry.AddShard());
  Mix mix(registry);
  for (uint64_t i = 0; i < 200000; ++i)
    CountOutcome(shards[i % shards.size()], mix.labels[i & 4095], i);
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = registry.Scrape();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Scrape)->Arg(2)->Arg(16)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
