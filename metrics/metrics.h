#pragma once
// Salvo's metrics: declared once, counted per shard, summed at scrape time.
//
// Every counter is declared in SALVO_COUNTERS with its Prometheus name and
// help text. Each shard owns one ShardCounters and increments plain integers
// on its own thread (no shared atomic bouncing between cores); the scrape
// thread reads them with relaxed loads and sums them in Registry::Collect().
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"

namespace salvo::metrics {

// X(enum name, Prometheus name, help text)
#define SALVO_COUNTERS(X)                                                                   \
  X(kRecipientsDelivered, "salvo_recipients_delivered_total",                               \
    "Recipients the receiving server accepted with 250 after the final dot")                \
  X(kRecipientsDeferred, "salvo_recipients_deferred_total",                                 \
    "Recipient attempts that failed temporarily and will be retried")                       \
  X(kRecipientsBounced, "salvo_recipients_bounced_total",                                   \
    "Recipients that failed permanently (5xx, null MX, NXDOMAIN, expiry)")                  \
  X(kMessagesSent, "salvo_messages_sent_total", "Transactions that reached the final dot")  \
  X(kSessionsOpened, "salvo_smtp_sessions_opened_total", "SMTP sessions opened")            \
  X(kConnectFailures, "salvo_smtp_connect_failures_total", "TCP connects that failed")      \
  X(kBytesSent, "salvo_smtp_bytes_sent_total", "Bytes written to SMTP peers")               \
  X(kTlsSessions, "salvo_smtp_tls_sessions_total", "SMTP sessions that completed STARTTLS") \
  X(kTlsResumed, "salvo_smtp_tls_resumed_total",                                            \
    "STARTTLS handshakes that resumed a cached session instead of a full handshake")

enum class Counter : int {
#define SALVO_COUNTER_ENUM(id, name, help) id,
  SALVO_COUNTERS(SALVO_COUNTER_ENUM)
#undef SALVO_COUNTER_ENUM
      kCount
};

inline constexpr int kCounterCount = static_cast<int>(Counter::kCount);

std::string_view CounterName(Counter c);
std::string_view CounterHelp(Counter c);

// One shard's counters. Written only by the owning shard thread; read by the
// scrape thread. Single writer, so an increment is a relaxed load + store,
// not a locked read-modify-write.
class ShardCounters {
 public:
  void Add(Counter c, uint64_t n = 1) {
    std::atomic<uint64_t>& v = values_[static_cast<int>(c)];
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get(Counter c) const {
    return values_[static_cast<int>(c)].load(std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> values_[kCounterCount] = {};
};

// Owns every shard's counters and sums them for Prometheus. Thread-safe.
class Registry final : public prometheus::Collectable {
 public:
  // A new zeroed set of counters for one shard; stable address for the life
  // of the Registry.
  ShardCounters* AddShard();
  uint64_t Total(Counter c) const;
  std::vector<prometheus::MetricFamily> Collect() const override;
  // The Prometheus text exposition of Collect().
  std::string Scrape() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<ShardCounters>> shards_ ABSL_GUARDED_BY(mu_);
};

// Serves `registry` at http://ADDR:PORT/metrics (prometheus-cpp's exposer on
// its own thread). Errors name the address.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartExposer(
    const std::string& listen_address, std::shared_ptr<Registry> registry);

}  // namespace salvo::metrics
