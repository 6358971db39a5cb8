#include "metrics/metrics.h"

#include <exception>

#include "absl/status/status.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"

namespace salvo::metrics {
namespace {
struct Info {
  std::string_view name;
  std::string_view help;
};
constexpr Info kInfo[] = {
#define SALVO_COUNTER_INFO(id, name, help) {name, help},
    SALVO_COUNTERS(SALVO_COUNTER_INFO)
#undef SALVO_COUNTER_INFO
};
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == kCounterCount);
}  // namespace

std::string_view CounterName(Counter c) { return kInfo[static_cast<int>(c)].name; }
std::string_view CounterHelp(Counter c) { return kInfo[static_cast<int>(c)].help; }

ShardCounters* Registry::AddShard() {
  absl::MutexLock lock(&mu_);
  shards_.push_back(std::make_unique<ShardCounters>());
  return shards_.back().get();
}

uint64_t Registry::Total(Counter c) const {
  absl::MutexLock lock(&mu_);
  uint64_t sum = 0;
  for (const auto& shard : shards_) sum += shard->Get(c);
  return sum;
}

std::vector<prometheus::MetricFamily> Registry::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  families.reserve(kCounterCount);
  for (int i = 0; i < kCounterCount; ++i) {
    Counter c = static_cast<Counter>(i);
    prometheus::MetricFamily family;
    family.name = std::string(CounterName(c));
    family.help = std::string(CounterHelp(c));
    family.type = prometheus::MetricType::Counter;
    prometheus::ClientMetric metric;
    metric.counter.value = static_cast<double>(Total(c));
    family.metric.push_back(std::move(metric));
    families.push_back(std::move(family));
  }
  return families;
}

std::string Registry::Scrape() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(Collect());
}

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartExposer(
    const std::string& listen_address, std::shared_ptr<Registry> registry) {
  // prometheus-cpp (civetweb) reports a bind failure by throwing; this is
  // start-up, not the data path, so translate it to a Status here.
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(listen_address);
    exposer->RegisterCollectable(registry);
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError("cannot serve metrics on " + listen_address + ": " + e.what());
  }
}

}  // namespace salvo::metrics
