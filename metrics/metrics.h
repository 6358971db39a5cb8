#pragma once
// Salvo's metrics: declared once, counted per shard, summed at scrape time.
//
// Every metric is declared here with its Prometheus name and help text:
// plain counters in SALVO_COUNTERS, histograms in SALVO_HISTOGRAMS, the
// labelled recipient counters in RecipientEvent (names in metrics.cc). Each
// shard owns one ShardCounters and writes plain integers on its own thread
// (a relaxed load + store: no shared atomic bouncing between cores); the
// scrape thread reads them with relaxed loads and sums them in
// Registry::Collect().
//
// Labels never cost a hash on the hot path: a recipient domain and a campaign
// are resolved to slots once (labels.h) and the shard indexes an array
// [campaign][domain][category] with them. The label sets are bounded (see
// README.md "Metrics": cardinality).
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/smtp/category.h"
#include "metrics/labels.h"
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
    "Recipients that failed permanently (5xx, null MX, NXDOMAIN, a later bounce message)")  \
  X(kMessagesSent, "salvo_messages_sent_total", "Transactions that reached the final dot")  \
  X(kSessionsOpened, "salvo_smtp_sessions_opened_total", "SMTP sessions opened")            \
  X(kConnectFailures, "salvo_smtp_connect_failures_total", "TCP connects that failed")      \
  X(kBytesSent, "salvo_smtp_bytes_sent_total", "Bytes written to SMTP peers")               \
  X(kTlsSessions, "salvo_smtp_tls_sessions_total", "SMTP sessions that completed STARTTLS") \
  X(kTlsResumed, "salvo_smtp_tls_resumed_total",                                            \
    "STARTTLS handshakes that resumed a cached session instead of a full handshake")        \
  X(kTlsFailures, "salvo_smtp_tls_failures_total",                                          \
    "STARTTLS handshakes that failed (alert, bad certificate, protocol error, timeout)")    \
  X(kDnsLookups, "salvo_dns_lookups_total",                                                 \
    "Destination domains resolved (MX and address records), cache hits included")           \
  X(kDnsCacheHits, "salvo_dns_cache_hits_total", "DNS look-ups answered from the cache")    \
  X(kDnsFailures, "salvo_dns_failures_total",                                               \
    "DNS look-ups that failed (NXDOMAIN, SERVFAIL, timeout, refused, bad answer)")          \
  X(kReportsForged, "salvo_reports_forged_total",                                           \
    "Received reports whose VERP token did not verify or named an unknown campaign or "     \
    "recipient: counted, nothing changed")                                                  \
  X(kReportsUnmatched, "salvo_reports_unmatched_total",                                     \
    "Received bounces, complaints and auto-replies that identify no copy (no VERP token, "  \
    "no Message-ID of ours)")                                                               \
  X(kReportsSoftBounces, "salvo_reports_soft_bounces_total",                                \
    "Bounce messages with a temporary (4.x.x) status about delivered copies: history only") \
  X(kReportsDelayed, "salvo_reports_delayed_total",                                         \
    "Delay warnings (DSN action=delayed) received for our copies: nothing changed")         \
  X(kReportsAutoReplies, "salvo_reports_auto_replies_total",                                \
    "Auto-replies (vacation, out-of-office) received for our copies: nothing changed")

enum class Counter : int {
#define SALVO_COUNTER_ENUM(id, name, help) id,
  SALVO_COUNTERS(SALVO_COUNTER_ENUM)
#undef SALVO_COUNTER_ENUM
      kCount
};
inline constexpr int kCounterCount = static_cast<int>(Counter::kCount);

std::string_view CounterName(Counter c);
std::string_view CounterHelp(Counter c);

// X(enum name, Prometheus name, help text); buckets in metrics.cc.
#define SALVO_HISTOGRAMS(X)                                                                  \
  X(kDeliveryLatency, "salvo_delivery_latency_seconds",                                      \
    "Time from a recipient's first attempt to its final outcome (delivered, bounced or "     \
    "expired)")                                                                              \
  X(kSmtpTransaction, "salvo_smtp_transaction_seconds",                                      \
    "One SMTP transaction, from MAIL FROM to the reply to the final dot")                    \
  X(kDkimSigning, "salvo_dkim_signing_seconds", "DKIM-signing one message copy (every key)") \
  X(kDnsLookup, "salvo_dns_lookup_seconds",                                                  \
    "Resolving a destination domain over the network (cache hits not included)")

enum class Histogram : int {
#define SALVO_HISTOGRAM_ENUM(id, name, help) id,
  SALVO_HISTOGRAMS(SALVO_HISTOGRAM_ENUM)
#undef SALVO_HISTOGRAM_ENUM
      kCount
};
inline constexpr int kHistogramCount = static_cast<int>(Histogram::kCount);
inline constexpr int kMaxBuckets = 20;  // upper bounds per histogram, +Inf not counted

// What happened to a recipient, for the labelled recipient counters
// (salvo_recipients_<event>_total{campaign,domain[,category][,phase]}).
enum class RecipientEvent : uint8_t {
  kDelivered,   // salvo_recipients_delivered_total
  kDeferred,    // salvo_recipients_deferred_total{category}
  kBounced,     // salvo_recipients_bounced_total{category,phase}
  kExpired,     // salvo_recipients_expired_total: gave up after the retry period
  kSuppressed,  // salvo_recipients_suppressed_total: skipped, on the suppression list
  kComplaint,   // salvo_complaints_total: a feedback-loop (ARF) complaint came back
};
inline constexpr int kRecipientEventCount = 6;

// `phase` of a bounce: during the SMTP transaction (or DNS, or a local
// decision) or from a bounce message (DSN) received afterwards.
enum class BouncePhase : uint8_t { kSync, kAsync };

enum class DkimAlgorithm : uint8_t { kRsaSha256, kEd25519Sha256 };
inline constexpr int kDkimAlgorithmCount = 2;

// The labels of one recipient's counts: resolved once per campaign
// (Registry::ResolveCampaign) and per destination domain
// (Registry::domains().Resolve), carried with the job.
struct OutcomeLabels {
  CampaignSlot campaign;
  DomainSlot domain;
};

// The shape of the per-shard label arrays; fixed when the Registry is built.
struct Layout {
  int campaigns = 1;  // slots, "other" included
  int domains = 1;    // slots, "other" included
  // Recipient counter "families": delivered, deferred, bounced (sync),
  // bounced (async), expired, suppressed, complaints.
  static constexpr int kFamilies = 7;
  size_t offset[kFamilies] = {};
  int categories[kFamilies] = {};  // 1, or smtp::kCategoryCount
  size_t cells = 0;

  Layout() = default;
  Layout(int campaigns, int domains);
  static int Family(RecipientEvent e, BouncePhase phase);
  size_t Index(int family, int campaign, int domain, int category) const {
    return offset[family] +
           (static_cast<size_t>(campaign) * domains + domain) * categories[family] + category;
  }
};

// One shard's counters. Written only by the owning shard thread; read by the
// scrape thread. Single writer, so an increment is a relaxed load + store,
// not a locked read-modify-write. Created by Registry::AddShard; lives as
// long as the Registry.
class ShardCounters {
 public:
  ShardCounters(const Layout* layout, const CampaignLabels* campaigns);
  ShardCounters(const ShardCounters&) = delete;
  ShardCounters& operator=(const ShardCounters&) = delete;

  // ---- Plain counters ----
  void Add(Counter c, uint64_t n = 1) { Bump(values_[static_cast<int>(c)], n); }
  uint64_t Get(Counter c) const {
    return values_[static_cast<int>(c)].load(std::memory_order_relaxed);
  }

  // ---- Recipients ----
  // One recipient's outcome (or complaint). `category` labels deferrals and
  // bounces (kNone is counted as "other"); `phase` labels bounces. Also adds
  // to the plain totals Engine::Stats reads (delivered, deferred, bounced).
  void CountRecipient(const OutcomeLabels& labels, RecipientEvent event,
                      smtp::Category category = smtp::Category::kNone,
                      BouncePhase phase = BouncePhase::kSync, uint64_t n = 1);

  // ---- Connections, per domain label (the site's) ----
  void ConnectionOpened(DomainSlot domain);  // also salvo_smtp_sessions_opened_total
  void ConnectionClosed(DomainSlot domain);  // every opened connection closes once
  void ConnectFailed(DomainSlot domain);     // also salvo_smtp_connect_failures_total

  // ---- DKIM ----
  // One signature made; its time goes to salvo_dkim_signing_seconds only via
  // Observe(kDkimSigning) (once per copy, whatever the number of keys).
  void CountDkimSignature(DkimAlgorithm algorithm) { Bump(dkim_[static_cast<int>(algorithm)], 1); }

  // ---- Histograms ----
  void Observe(Histogram h, double seconds);

 private:
  friend class Registry;
  static void Bump(std::atomic<uint64_t>& v, uint64_t n) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  struct HistogramCells {
    std::atomic<uint64_t> buckets[kMaxBuckets + 1] = {};  // last = +Inf
    std::atomic<double> sum{0};
  };

  const Layout* layout_;
  const CampaignLabels* campaigns_;
  std::atomic<uint64_t> values_[kCounterCount] = {};
  std::unique_ptr<std::atomic<uint64_t>[]> recipients_;        // layout_->cells
  std::atomic<uint64_t> labelled_[kRecipientEventCount] = {};  // sums of recipients_ per event
  std::unique_ptr<std::atomic<uint64_t>[]> opened_;            // [domain]
  std::unique_ptr<std::atomic<uint64_t>[]> failed_;            // [domain]
  std::unique_ptr<std::atomic<int64_t>[]> open_;               // [domain]
  std::atomic<uint64_t> opened_labelled_{0}, failed_labelled_{0};
  std::atomic<uint64_t> dkim_[kDkimAlgorithmCount] = {};
  HistogramCells histograms_[kHistogramCount];
};

// One destination site's connection counters, on the site's owner shard:
// built with the site, dropped with it, used only on that shard's thread. A
// default-constructed probe counts nothing (engines built without metrics).
class SiteProbe {
 public:
  SiteProbe() = default;
  SiteProbe(ShardCounters* shard, DomainSlot domain) : shard_(shard), domain_(domain) {}
  void ConnectionOpened() {
    if (shard_) shard_->ConnectionOpened(domain_);
  }
  void ConnectionClosed() {
    if (shard_) shard_->ConnectionClosed(domain_);
  }
  void ConnectFailed() {
    if (shard_) shard_->ConnectFailed(domain_);
  }
  DomainSlot domain() const { return domain_; }

 private:
  ShardCounters* shard_ = nullptr;
  DomainSlot domain_;
};

// Scrape-time samples from outside the shards (gauges of the queue and of
// traffic shaping), pulled by the collector through the sources below.
struct CampaignQueueSample {
  uint64_t id = 0;   // larger = newer (decides who keeps a campaign label)
  std::string name;  // the campaign label candidate
  // Recipients per state: queued, in_flight, deferred, delivered, bounced,
  // expired, suppressed, cancelled, paused (queued or deferred recipients of
  // a paused campaign). Zero counts may be left out.
  std::vector<std::pair<std::string, uint64_t>> recipients;
};
using QueueSource = std::function<std::vector<CampaignQueueSample>()>;

struct ThrottleSample {
  std::string key;                // the shaping key ("provider:google", "domain:example.org")
  double message_rate_limit = 0;  // messages per second now in force; 0 = unlimited
  double connection_limit = 0;    // concurrent connections now allowed; 0 = unlimited
  bool suspended = false;         // sending to it is suspended
};
using ThrottleSource = std::function<std::vector<ThrottleSample>()>;

// The spool's storage health (queue::SpoolHealth, without the queue dependency).
struct SpoolSample {
  bool writable = true;       // new work is leased (disk accepts writes, above the floor)
  uint64_t write_errors = 0;  // writes RocksDB refused since start
  uint64_t held_outcomes = 0;
};
using SpoolHealthSource = std::function<SpoolSample()>;

// The inbound listener and the unsubscribe endpoint (engine/inbound), by
// label value; exported only while a source is set (`salvo run` with
// [inbound] listen or [unsubscribe] listen).
struct InboundSample {
  bool listener = false;  // [inbound] listen is on: the three inbound families are exported
  // salvo_inbound_messages_total{result}: accepted, too_big, store_failed
  std::map<std::string, uint64_t> messages;
  // salvo_inbound_rejected_total{reason}: relay, bare_line_ending, too_many_connections,
  // idle_timeout
  std::map<std::string, uint64_t> rejected;
  // salvo_inbound_processed_total{result}: bounce, delayed, complaint,
  // auto_reply, duplicate, forged, unmatched, not_a_report, unsubscribe, unsubscribe_forged,
  // failed, retry
  std::map<std::string, uint64_t> processed;
  uint64_t pending = 0;  // salvo_inbound_pending: stored, not processed yet
  // salvo_inbound_buffered_bytes: reserved for messages being received or
  // stored now (inbound.max_buffered_bytes)
  uint64_t buffered_bytes = 0;
  bool unsubscribe = false;  // [unsubscribe] listen is on
  // salvo_unsubscribe_requests_total{result}: unsubscribed, forged,
  // unknown_campaign, bad_request, confirmation_page, method_not_allowed, failed
  std::map<std::string, uint64_t> unsubscribe_requests;
};
using InboundSource = std::function<InboundSample()>;

// At most this many shaping keys are exported per scrape (suspended ones
// first, then by key); salvo_throttle_suspended_keys counts every suspended one.
inline constexpr size_t kMaxThrottleKeys = 100;

struct RegistryOptions {
  // `domain` label values: metrics.domains (default: DefaultLabelledDomains()).
  std::vector<std::string> domains = DefaultLabelledDomains();
  // `campaign` label values: metrics.max_campaigns.
  int max_campaigns = 10;
};

// Owns every shard's counters and the label tables, and sums them for
// Prometheus. Thread-safe.
class Registry final : public prometheus::Collectable {
 public:
  Registry() : Registry(RegistryOptions{}) {}
  explicit Registry(RegistryOptions options);

  // A new zeroed set of counters for one shard (or any other single writer
  // thread); stable address for the life of the Registry.
  ShardCounters* AddShard();

  // Label resolution, once per domain or campaign (never per increment).
  const DomainLabels& domains() const { return domains_; }
  // Any thread; takes the registry's lock. See CampaignLabels for who keeps
  // a label when more than max_campaigns campaigns run.
  CampaignSlot ResolveCampaign(uint64_t id, std::string_view name);
  OutcomeLabels Labels(CampaignSlot campaign, std::string_view domain) const {
    return OutcomeLabels{campaign, domains_.Resolve(domain)};
  }

  // Gauges set from outside the shards.
  void SetJobsInFlight(uint64_t n) { jobs_in_flight_.store(n, std::memory_order_relaxed); }
  // The engine's resource caps (delivery.max_connections,
  // delivery.max_composed_bytes), set about once a second; exported once set.
  struct EngineResources {
    uint64_t connections = 0;       // salvo_delivery_connections
    uint64_t connection_waits = 0;  // salvo_delivery_connection_waits_total
    uint64_t composed_bytes = 0;    // salvo_delivery_composed_bytes
    uint64_t compose_waits = 0;     // salvo_delivery_compose_waits_total
  };
  void SetEngineResources(const EngineResources& r);
  // Called on the scrape thread, outside the registry's lock; must be
  // thread-safe and quick. Set before serving, or any time (thread-safe).
  void SetQueueSource(QueueSource source);
  void SetThrottleSource(ThrottleSource source);
  void SetSpoolHealthSource(SpoolHealthSource source);
  void SetInboundSource(InboundSource source);

  // Sums over shards (tests, Engine::Stats).
  uint64_t Total(Counter c) const;
  // Labelled recipient count for one label set (category kNone = every
  // category; phase only for bounces). Counts of campaigns that lost their
  // label are not included. Tests and `campaign status`-style reports.
  uint64_t RecipientCount(RecipientEvent event, std::string_view campaign, std::string_view domain,
                          smtp::Category category = smtp::Category::kNone,
                          BouncePhase phase = BouncePhase::kSync) const;

  std::vector<prometheus::MetricFamily> Collect() const override;
  // The Prometheus text exposition of Collect().
  std::string Scrape() const;

 private:
  CampaignSlot ResolveLocked(uint64_t id, std::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t SumCell(size_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DomainLabels domains_;
  const Layout layout_;
  std::atomic<uint64_t> jobs_in_flight_{0};
  std::atomic<bool> resources_set_{false};
  std::atomic<uint64_t> connections_{0}, connection_waits_{0}, composed_bytes_{0},
      compose_waits_{0};

  mutable absl::Mutex mu_;
  // Mutable: a scrape gives labels to campaigns with queued recipients, so the
  // queue gauges and the recipient counters name the same campaigns.
  mutable CampaignLabels campaigns_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<ShardCounters>> shards_ ABSL_GUARDED_BY(mu_);
  // Per recipient cell: counts of campaigns that gave their slot to a newer
  // one, subtracted at scrape time.
  mutable std::vector<uint64_t> set_aside_ ABSL_GUARDED_BY(mu_);
  QueueSource queue_source_ ABSL_GUARDED_BY(mu_);
  ThrottleSource throttle_source_ ABSL_GUARDED_BY(mu_);
  SpoolHealthSource spool_source_ ABSL_GUARDED_BY(mu_);
  InboundSource inbound_source_ ABSL_GUARDED_BY(mu_);
};

// Serves `registry` at http://ADDR:PORT/metrics (prometheus-cpp's exposer on
// its own thread). Errors name the address.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartExposer(
    const std::string& listen_address, std::shared_ptr<Registry> registry);

}  // namespace salvo::metrics
