// Metric increments on the delivery path and the cost of a scrape.
// A shard counts with a relaxed load + store on its own cache line set (one
// writer); the scrape thread sums every shard.
//
//   ./build/bench/metrics_bench
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "metrics/metrics.h"

namespace {

using salvo::metrics::Counter;
using salvo::metrics::Registry;

// One delivered recipient as the shard counts it: recipient, message, bytes.
void BM_CountDelivery(benchmark::State& state) {
  Registry registry;
  salvo::metrics::ShardCounters* c = registry.AddShard();
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

// Increments while another thread scrapes continuously (the counters' lines
// are shared with the reader): what a shard pays when Prometheus polls.
void BM_CountDeliveryWhileScraped(benchmark::State& state) {
  static Registry* registry = nullptr;
  static salvo::metrics::ShardCounters* counters[2] = {};
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

// A full Prometheus text scrape with N shards.
void BM_Scrape(benchmark::State& state) {
  Registry registry;
  for (int i = 0; i < state.range(0); ++i) {
    salvo::metrics::ShardCounters* c = registry.AddShard();
    c->Add(Counter::kRecipientsDelivered, 1000 + i);
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = registry.Scrape();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Scrape)->Arg(2)->Arg(16)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
