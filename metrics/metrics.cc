#include "metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"

namespace salvo::metrics {
namespace {

struct Info {
  std::string_view name;
  std::string_view help;
};
constexpr Info kCounterInfo[] = {
#define SALVO_COUNTER_INFO(id, name, help) {name, help},
    SALVO_COUNTERS(SALVO_COUNTER_INFO)
#undef SALVO_COUNTER_INFO
};
static_assert(sizeof(kCounterInfo) / sizeof(kCounterInfo[0]) == kCounterCount);

constexpr Info kHistogramInfo[] = {
#define SALVO_HISTOGRAM_INFO(id, name, help) {name, help},
    SALVO_HISTOGRAMS(SALVO_HISTOGRAM_INFO)
#undef SALVO_HISTOGRAM_INFO
};
static_assert(sizeof(kHistogramInfo) / sizeof(kHistogramInfo[0]) == kHistogramCount);

// Upper bounds in seconds, ascending (the +Inf bucket is implicit).
const std::vector<double>& Buckets(Histogram h) {
  static const std::vector<double> kBuckets[kHistogramCount] = {
      // delivery latency: first attempt to final outcome, seconds to days
      {1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200},
      // SMTP transaction
      {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
      // DKIM signing (RSA-2048 ~0.3 ms, Ed25519 ~25 us, 1 MB bodies ~1 ms)
      {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1},
      // DNS look-up
      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
  };
  return kBuckets[static_cast<int>(h)];
}

// The labelled recipient families, in Layout family order.
struct FamilyInfo {
  std::string_view name;
  std::string_view help;
  RecipientEvent event;
  bool categorized;
  const char* phase;  // bounces only
};
constexpr FamilyInfo kFamilyInfo[Layout::kFamilies] = {
    {"salvo_recipients_delivered_total", "", RecipientEvent::kDelivered, false, nullptr},
    {"salvo_recipients_deferred_total", "", RecipientEvent::kDeferred, true, nullptr},
    {"salvo_recipients_bounced_total", "", RecipientEvent::kBounced, true, "sync"},
    {"salvo_recipients_bounced_total", "", RecipientEvent::kBounced, true, "async"},
    {"salvo_recipients_expired_total",
     "Recipients given up on: still deferred when the campaign's retry period (max_age) ran out",
     RecipientEvent::kExpired, false, nullptr},
    {"salvo_recipients_suppressed_total",
     "Recipients skipped because the address is on the suppression list",
     RecipientEvent::kSuppressed, false, nullptr},
    {"salvo_complaints_total", "Feedback-loop complaints (ARF reports) about delivered messages",
     RecipientEvent::kComplaint, false, nullptr},
};

// The plain counter a labelled event also adds to (Engine::Stats reads it),
// or kCount for none.
Counter PlainCounterOf(RecipientEvent e) {
  switch (e) {
    case RecipientEvent::kDelivered:
      return Counter::kRecipientsDelivered;
    case RecipientEvent::kDeferred:
      return Counter::kRecipientsDeferred;
    case RecipientEvent::kBounced:
      return Counter::kRecipientsBounced;
    default:
      return Counter::kCount;
  }
}

// Plain counters exported as part of a labelled family instead of on their own.
bool ExportedWithLabels(Counter c) {
  return c == Counter::kRecipientsDelivered || c == Counter::kRecipientsDeferred ||
         c == Counter::kRecipientsBounced || c == Counter::kSessionsOpened ||
         c == Counter::kConnectFailures;
}

prometheus::MetricFamily Family(std::string_view name, std::string_view help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::string(name);
  f.help = std::string(help);
  f.type = type;
  return f;
}

prometheus::ClientMetric::Label L(std::string_view name, std::string_view value) {
  return {std::string(name), std::string(value)};
}

// One sample of a counter or gauge family (the family's type decides which).
void Add(prometheus::MetricFamily* f, std::vector<prometheus::ClientMetric::Label> labels,
         double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  (f->type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value) = value;
  f->metric.push_back(std::move(m));
}

template <typename T>
std::unique_ptr<std::atomic<T>[]> Zeroed(size_t n) {
  std::unique_ptr<std::atomic<T>[]> a(new std::atomic<T>[n]);
  for (size_t i = 0; i < n; ++i) a[i].store(0, std::memory_order_relaxed);
  return a;
}

}  // namespace

std::string_view CounterName(Counter c) { return kCounterInfo[static_cast<int>(c)].name; }
std::string_view CounterHelp(Counter c) { return kCounterInfo[static_cast<int>(c)].help; }

Layout::Layout(int campaign_slots, int domain_slots)
    : campaigns(campaign_slots), domains(domain_slots) {
  for (int f = 0; f < kFamilies; ++f) {
    offset[f] = cells;
    categories[f] = kFamilyInfo[f].categorized ? smtp::kCategoryCount : 1;
    cells += static_cast<size_t>(campaigns) * domains * categories[f];
  }
}

int Layout::Family(RecipientEvent e, BouncePhase phase) {
  switch (e) {
    case RecipientEvent::kDelivered:
      return 0;
    case RecipientEvent::kDeferred:
      return 1;
    case RecipientEvent::kBounced:
      return phase == BouncePhase::kSync ? 2 : 3;
    case RecipientEvent::kExpired:
      return 4;
    case RecipientEvent::kSuppressed:
      return 5;
    case RecipientEvent::kComplaint:
      return 6;
  }
  return 0;
}

ShardCounters::ShardCounters(const Layout* layout, const CampaignLabels* campaigns)
    : layout_(layout),
      campaigns_(campaigns),
      recipients_(Zeroed<uint64_t>(layout->cells)),
      opened_(Zeroed<uint64_t>(layout->domains)),
      failed_(Zeroed<uint64_t>(layout->domains)),
      open_(Zeroed<int64_t>(layout->domains)) {}

void ShardCounters::CountRecipient(const OutcomeLabels& labels, RecipientEvent event,
                                   smtp::Category category, BouncePhase phase, uint64_t n) {
  const int family = Layout::Family(event, phase);
  int campaign = labels.campaign.index;
  // A campaign that lost its label to a newer one counts as "other".
  if (!campaigns_->Current(labels.campaign)) campaign = 0;
  int k = 0;
  if (layout_->categories[family] > 1)
    k = static_cast<int>(category == smtp::Category::kNone ? smtp::Category::kOther : category);
  // Plain total first, then the labelled share: a concurrent scrape reads the
  // share first, so it never sees more labelled than plain counts.
  if (Counter plain = PlainCounterOf(event); plain != Counter::kCount) Add(plain, n);
  Bump(labelled_[static_cast<int>(event)], n);
  Bump(recipients_[layout_->Index(family, campaign, labels.domain.index, k)], n);
}

void ShardCounters::ConnectionOpened(DomainSlot domain) {
  Add(Counter::kSessionsOpened);
  Bump(opened_labelled_, 1);
  Bump(opened_[domain.index], 1);
  std::atomic<int64_t>& open = open_[domain.index];
  open.store(open.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void ShardCounters::ConnectionClosed(DomainSlot domain) {
  std::atomic<int64_t>& open = open_[domain.index];
  open.store(open.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

void ShardCounters::ConnectFailed(DomainSlot domain) {
  Add(Counter::kConnectFailures);
  Bump(failed_labelled_, 1);
  Bump(failed_[domain.index], 1);
}

void ShardCounters::Observe(Histogram h, double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // NaN or a clock step backwards
  const std::vector<double>& bounds = Buckets(h);
  size_t b = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  HistogramCells& cells = histograms_[static_cast<int>(h)];
  Bump(cells.buckets[b], 1);
  cells.sum.store(cells.sum.load(std::memory_order_relaxed) + seconds, std::memory_order_relaxed);
}

Registry::Registry(RegistryOptions options)
    : domains_(options.domains),
      layout_(options.max_campaigns + 1, domains_.size()),
      campaigns_(options.max_campaigns),
      set_aside_(layout_.cells, 0) {}

ShardCounters* Registry::AddShard() {
  absl::MutexLock lock(&mu_);
  shards_.push_back(std::make_unique<ShardCounters>(&layout_, &campaigns_));
  return shards_.back().get();
}

CampaignSlot Registry::ResolveCampaign(uint64_t id, std::string_view name) {
  absl::MutexLock lock(&mu_);
  return ResolveLocked(id, name);
}

CampaignSlot Registry::ResolveLocked(uint64_t id, std::string_view name) const {
  return campaigns_.Resolve(id, name, [this](uint16_t slot) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    // The slot's counts so far belong to the campaign leaving it.
    for (int f = 0; f < Layout::kFamilies; ++f)
      for (int d = 0; d < layout_.domains; ++d)
        for (int k = 0; k < layout_.categories[f]; ++k) {
          size_t i = layout_.Index(f, slot, d, k);
          set_aside_[i] = SumCell(i);
        }
  });
}

void Registry::SetQueueSource(QueueSource source) {
  absl::MutexLock lock(&mu_);
  queue_source_ = std::move(source);
}

void Registry::SetThrottleSource(ThrottleSource source) {
  absl::MutexLock lock(&mu_);
  throttle_source_ = std::move(source);
}

void Registry::SetSpoolHealthSource(SpoolHealthSource source) {
  absl::MutexLock lock(&mu_);
  spool_source_ = std::move(source);
}

void Registry::SetInboundSource(InboundSource source) {
  absl::MutexLock lock(&mu_);
  inbound_source_ = std::move(source);
}

uint64_t Registry::SumCell(size_t index) const {
  uint64_t sum = 0;
  for (const auto& shard : shards_)
    sum += shard->recipients_[index].load(std::memory_order_relaxed);
  return sum;
}

uint64_t Registry::Total(Counter c) const {
  absl::MutexLock lock(&mu_);
  uint64_t sum = 0;
  for (const auto& shard : shards_) sum += shard->Get(c);
  return sum;
}

uint64_t Registry::RecipientCount(RecipientEvent event, std::string_view campaign,
                                  std::string_view domain, smtp::Category category,
                                  BouncePhase phase) const {
  absl::MutexLock lock(&mu_);
  const int f = Layout::Family(event, phase);
  CampaignSlot c = campaign == kOtherLabel ? CampaignSlot{} : campaigns_.Find(campaign);
  if (c.index == 0 && campaign != kOtherLabel) return 0;
  DomainSlot d = domains_.Resolve(domain);
  if (d.index == 0 && domain != kOtherLabel) return 0;
  uint64_t sum = 0;
  for (int k = 0; k < layout_.categories[f]; ++k) {
    if (category != smtp::Category::kNone && k != static_cast<int>(category)) continue;
    size_t i = layout_.Index(f, c.index, d.index, k);
    sum += SumCell(i) - set_aside_[i];
  }
  return sum;
}

void Registry::SetEngineResources(const EngineResources& r) {
  connections_.store(r.connections, std::memory_order_relaxed);
  connection_waits_.store(r.connection_waits, std::memory_order_relaxed);
  composed_bytes_.store(r.composed_bytes, std::memory_order_relaxed);
  compose_waits_.store(r.compose_waits, std::memory_order_relaxed);
  resources_set_.store(true, std::memory_order_relaxed);
}

std::vector<prometheus::MetricFamily> Registry::Collect() const {
  using prometheus::MetricType;
  // Outside the lock: the sources may take their own locks (the spool's).
  QueueSource queue_source;
  ThrottleSource throttle_source;
  SpoolHealthSource spool_source;
  InboundSource inbound_source;
  {
    absl::MutexLock lock(&mu_);
    queue_source = queue_source_;
    throttle_source = throttle_source_;
    spool_source = spool_source_;
    inbound_source = inbound_source_;
  }
  std::optional<InboundSample> inbound;
  if (inbound_source) inbound = inbound_source();
  std::optional<SpoolSample> spool;
  if (spool_source) spool = spool_source();
  std::vector<CampaignQueueSample> queue;
  if (queue_source) queue = queue_source();
  std::vector<ThrottleSample> throttles;
  if (throttle_source) throttles = throttle_source();

  std::vector<prometheus::MetricFamily> families;
  absl::MutexLock lock(&mu_);

  // Queue gauges first: campaigns with recipients still to send get their
  // label here, newest first, so the counters below can use it.
  std::map<std::pair<std::string, std::string>, uint64_t> queue_cells;
  std::sort(queue.begin(), queue.end(),
            [](const CampaignQueueSample& a, const CampaignQueueSample& b) { return a.id > b.id; });
  for (const CampaignQueueSample& q : queue) {
    bool pending = false;
    for (const auto& [state, n] : q.recipients)
      if (n > 0 &&
          (state == "queued" || state == "in_flight" || state == "deferred" || state == "paused"))
        pending = true;
    CampaignSlot slot = pending ? ResolveLocked(q.id, q.name) : campaigns_.Find(q.name);
    std::string label = slot.index == 0 ? std::string(kOtherLabel) : q.name;
    for (const auto& [state, n] : q.recipients) queue_cells[{label, state}] += n;
  }
  const std::vector<std::string> campaign_names = campaigns_.Names();

  // Plain counters.
  for (int i = 0; i < kCounterCount; ++i) {
    Counter c = static_cast<Counter>(i);
    if (ExportedWithLabels(c)) continue;
    prometheus::MetricFamily f = Family(CounterName(c), CounterHelp(c), MetricType::Counter);
    uint64_t sum = 0;
    for (const auto& shard : shards_) sum += shard->Get(c);
    Add(&f, {}, static_cast<double>(sum));
    families.push_back(std::move(f));
  }

  // Labelled recipient counters: sum the shards cell by cell.
  std::vector<uint64_t> cells(layout_.cells, 0);
  uint64_t labelled[kRecipientEventCount] = {};
  uint64_t plain[kCounterCount] = {};
  for (const auto& shard : shards_) {
    // The labelled share before the plain totals (see CountRecipient).
    for (int e = 0; e < kRecipientEventCount; ++e)
      labelled[e] += shard->labelled_[e].load(std::memory_order_relaxed);
    for (size_t i = 0; i < layout_.cells; ++i)
      cells[i] += shard->recipients_[i].load(std::memory_order_relaxed);
  }
  for (const auto& shard : shards_)
    for (int i = 0; i < kCounterCount; ++i) plain[i] += shard->Get(static_cast<Counter>(i));

  for (int f = 0; f < Layout::kFamilies; ++f) {
    const FamilyInfo& info = kFamilyInfo[f];
    // Bounced sync and async share one family.
    if (f > 0 && kFamilyInfo[f - 1].name == info.name) continue;
    Counter plain_counter = PlainCounterOf(info.event);
    std::string_view help =
        plain_counter == Counter::kCount ? info.help : CounterHelp(plain_counter);
    prometheus::MetricFamily fam = Family(info.name, help, MetricType::Counter);
    for (int ff = f; ff < Layout::kFamilies && kFamilyInfo[ff].name == info.name; ++ff) {
      for (int c = 0; c < layout_.campaigns; ++c) {
        if (campaign_names[c].empty()) continue;
        for (int d = 0; d < layout_.domains; ++d) {
          for (int k = 0; k < layout_.categories[ff]; ++k) {
            size_t i = layout_.Index(ff, c, d, k);
            uint64_t v = cells[i] - std::min(cells[i], set_aside_[i]);
            if (v == 0) continue;
            std::vector<prometheus::ClientMetric::Label> labels = {
                L("campaign", campaign_names[c]),
                L("domain", domains_.Name(DomainSlot{static_cast<uint16_t>(d)}))};
            if (kFamilyInfo[ff].categorized)
              labels.push_back(L("category", smtp::CategoryName(static_cast<smtp::Category>(k))));
            if (kFamilyInfo[ff].phase) labels.push_back(L("phase", kFamilyInfo[ff].phase));
            Add(&fam, std::move(labels), static_cast<double>(v));
          }
        }
      }
    }
    // Counts made without labels (the engine's plain Add path) stay visible
    // as one unlabelled series, so nothing counted is ever missing.
    if (plain_counter != Counter::kCount) {
      uint64_t total = plain[static_cast<int>(plain_counter)];
      uint64_t share = labelled[static_cast<int>(info.event)];
      if (total > share) Add(&fam, {}, static_cast<double>(total - share));
    }
    // Nothing counted yet: one zero series, so rate() has a start point
    // before the first count (Prometheus loses what a series had at its
    // first scrape).
    if (fam.metric.empty()) Add(&fam, {}, 0);
    families.push_back(std::move(fam));
  }

  // Connections per domain label.
  {
    std::vector<uint64_t> opened(layout_.domains, 0), failed(layout_.domains, 0);
    std::vector<int64_t> open(layout_.domains, 0);
    uint64_t opened_labelled = 0, failed_labelled = 0;
    for (const auto& shard : shards_) {
      opened_labelled += shard->opened_labelled_.load(std::memory_order_relaxed);
      failed_labelled += shard->failed_labelled_.load(std::memory_order_relaxed);
      for (int d = 0; d < layout_.domains; ++d) {
        opened[d] += shard->opened_[d].load(std::memory_order_relaxed);
        failed[d] += shard->failed_[d].load(std::memory_order_relaxed);
        open[d] += shard->open_[d].load(std::memory_order_relaxed);
      }
    }
    auto domain_name = [this](int d) {
      return domains_.Name(DomainSlot{static_cast<uint16_t>(d)});
    };
    prometheus::MetricFamily fo =
        Family(CounterName(Counter::kSessionsOpened), CounterHelp(Counter::kSessionsOpened),
               MetricType::Counter);
    prometheus::MetricFamily ff =
        Family(CounterName(Counter::kConnectFailures), CounterHelp(Counter::kConnectFailures),
               MetricType::Counter);
    prometheus::MetricFamily fg = Family(
        "salvo_smtp_sessions_open", "SMTP sessions open now, by destination", MetricType::Gauge);
    for (int d = 0; d < layout_.domains; ++d) {
      if (opened[d] > 0) {
        Add(&fo, {L("domain", domain_name(d))}, static_cast<double>(opened[d]));
        Add(&fg, {L("domain", domain_name(d))}, static_cast<double>(std::max<int64_t>(0, open[d])));
      }
      if (failed[d] > 0) Add(&ff, {L("domain", domain_name(d))}, static_cast<double>(failed[d]));
    }
    uint64_t opened_plain = plain[static_cast<int>(Counter::kSessionsOpened)];
    uint64_t failed_plain = plain[static_cast<int>(Counter::kConnectFailures)];
    if (opened_plain > opened_labelled || fo.metric.empty())
      Add(&fo, {}, static_cast<double>(opened_plain - std::min(opened_plain, opened_labelled)));
    if (failed_plain > failed_labelled || ff.metric.empty())
      Add(&ff, {}, static_cast<double>(failed_plain - std::min(failed_plain, failed_labelled)));
    if (fg.metric.empty()) Add(&fg, {}, 0);
    families.push_back(std::move(fo));
    families.push_back(std::move(ff));
    families.push_back(std::move(fg));
  }

  // DKIM signatures by algorithm.
  {
    prometheus::MetricFamily f = Family("salvo_dkim_signatures_total",
                                        "DKIM signatures made, by algorithm", MetricType::Counter);
    constexpr std::string_view kNames[kDkimAlgorithmCount] = {"rsa-sha256", "ed25519-sha256"};
    for (int a = 0; a < kDkimAlgorithmCount; ++a) {
      uint64_t sum = 0;
      for (const auto& shard : shards_) sum += shard->dkim_[a].load(std::memory_order_relaxed);
      Add(&f, {L("algorithm", kNames[a])}, static_cast<double>(sum));
    }
    families.push_back(std::move(f));
  }

  // Histograms: per-shard buckets summed.
  for (int h = 0; h < kHistogramCount; ++h) {
    const std::vector<double>& bounds = Buckets(static_cast<Histogram>(h));
    prometheus::MetricFamily f =
        Family(kHistogramInfo[h].name, kHistogramInfo[h].help, MetricType::Histogram);
    prometheus::ClientMetric m;
    uint64_t counts[kMaxBuckets + 1] = {};
    double sum = 0;
    for (const auto& shard : shards_) {
      const ShardCounters::HistogramCells& hc = shard->histograms_[h];
      for (size_t b = 0; b <= bounds.size(); ++b)
        counts[b] += hc.buckets[b].load(std::memory_order_relaxed);
      sum += hc.sum.load(std::memory_order_relaxed);
    }
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= bounds.size(); ++b) {
      cumulative += counts[b];
      prometheus::ClientMetric::Bucket bucket;
      bucket.cumulative_count = cumulative;
      bucket.upper_bound = b < bounds.size() ? bounds[b] : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back(bucket);
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = sum;
    f.metric.push_back(std::move(m));
    families.push_back(std::move(f));
  }

  // Gauges from outside the shards.
  {
    prometheus::MetricFamily f =
        Family("salvo_jobs_in_flight",
               "Messages taken from the queue and not yet completed (delivery.in_flight_limit)",
               MetricType::Gauge);
    Add(&f, {}, static_cast<double>(jobs_in_flight_.load(std::memory_order_relaxed)));
    families.push_back(std::move(f));
  }
  if (resources_set_.load(std::memory_order_relaxed)) {
    auto one = [&](const char* name, const char* help, MetricType type,
                   const std::atomic<uint64_t>& v) {
      prometheus::MetricFamily f = Family(name, help, type);
      Add(&f, {}, static_cast<double>(v.load(std::memory_order_relaxed)));
      families.push_back(std::move(f));
    };
    one("salvo_delivery_connections",
        "SMTP connections open or opening now on every shard (delivery.max_connections)",
        MetricType::Gauge, connections_);
    one("salvo_delivery_connection_waits_total",
        "Times a site's pool waited for a connection slot at delivery.max_connections",
        MetricType::Counter, connection_waits_);
    one("salvo_delivery_composed_bytes",
        "Bytes of copies composed ahead and not yet sent (delivery.max_composed_bytes)",
        MetricType::Gauge, composed_bytes_);
    one("salvo_delivery_compose_waits_total",
        "Copies not composed ahead because delivery.max_composed_bytes was reached",
        MetricType::Counter, compose_waits_);
  }
  if (spool) {
    prometheus::MetricFamily w =
        Family("salvo_spool_writable",
               "1 while the spool records outcomes and leases new work; 0 while the disk is full "
               "or failing, or free space is under queue.min_free_bytes",
               MetricType::Gauge);
    Add(&w, {}, spool->writable ? 1.0 : 0.0);
    families.push_back(std::move(w));
    prometheus::MetricFamily e = Family(
        "salvo_spool_write_errors_total",
        "Spool writes the storage refused (ENOSPC, EIO); their outcomes are held and retried",
        MetricType::Counter);
    Add(&e, {}, static_cast<double>(spool->write_errors));
    families.push_back(std::move(e));
    prometheus::MetricFamily h =
        Family("salvo_spool_held_outcomes",
               "Attempt outcomes held in memory because the spool could not write them",
               MetricType::Gauge);
    Add(&h, {}, static_cast<double>(spool->held_outcomes));
    families.push_back(std::move(h));
  }
  if (inbound) {
    auto labelled = [&](const char* name, const char* help, const char* label,
                        const std::map<std::string, uint64_t>& counts,
                        std::initializer_list<const char*> always) {
      prometheus::MetricFamily f = Family(name, help, MetricType::Counter);
      std::map<std::string, uint64_t> all = counts;
      for (const char* v : always) all.emplace(v, 0);  // zero series exist from the start
      for (const auto& [value, n] : all) Add(&f, {L(label, value)}, static_cast<double>(n));
      families.push_back(std::move(f));
    };
    if (inbound->listener) {
      labelled("salvo_inbound_messages_total",
               "Messages the inbound listener received: accepted (stored before the 250), "
               "too_big (552), store_failed (451, the spool refused the write)",
               "result", inbound->messages, {"accepted", "too_big", "store_failed"});
      labelled("salvo_inbound_rejected_total",
               "What the inbound listener refused: relay (RCPT outside [inbound] domains, 550 "
               "5.7.1), bare_line_ending (521), too_many_connections (421), idle_timeout (421)",
               "reason", inbound->rejected,
               {"relay", "bare_line_ending", "too_many_connections", "idle_timeout"});
      labelled("salvo_inbound_processed_total",
               "Stored inbound messages processed, by what they were (bounce, delayed, complaint, "
               "auto_reply, duplicate, forged, unmatched, not_a_report, unsubscribe, "
               "unsubscribe_forged, failed, retry)",
               "result", inbound->processed, {});
      prometheus::MetricFamily p =
          Family("salvo_inbound_pending", "Inbound messages stored and not processed yet",
                 MetricType::Gauge);
      Add(&p, {}, static_cast<double>(inbound->pending));
      families.push_back(std::move(p));
      prometheus::MetricFamily b =
          Family("salvo_inbound_buffered_bytes",
                 "Bytes reserved for inbound messages being received or stored now "
                 "(inbound.max_buffered_bytes)",
                 MetricType::Gauge);
      Add(&b, {}, static_cast<double>(inbound->buffered_bytes));
      families.push_back(std::move(b));
    }
    if (inbound->unsubscribe)
      labelled("salvo_unsubscribe_requests_total",
               "One-click unsubscribe HTTP requests: unsubscribed, forged (token does not "
               "verify, 403), unknown_campaign (404), bad_request (400), confirmation_page (GET), "
               "method_not_allowed (405), failed (503)",
               "result", inbound->unsubscribe_requests, {"unsubscribed", "forged"});
  }
  if (queue_source) {
    prometheus::MetricFamily f = Family(
        "salvo_queue_recipients",
        "Recipients in the queue by campaign and state (queued, in_flight, deferred, paused, "
        "delivered, bounced, expired, suppressed, cancelled)",
        MetricType::Gauge);
    for (const auto& [key, n] : queue_cells)
      Add(&f, {L("campaign", key.first), L("state", key.second)}, static_cast<double>(n));
    families.push_back(std::move(f));
  }
  if (throttle_source) {
    std::stable_sort(throttles.begin(), throttles.end(),
                     [](const ThrottleSample& a, const ThrottleSample& b) {
                       if (a.suspended != b.suspended) return a.suspended;
                       return a.key < b.key;
                     });
    size_t suspended = 0;
    for (const ThrottleSample& t : throttles) suspended += t.suspended ? 1 : 0;
    prometheus::MetricFamily rate = Family(
        "salvo_throttle_message_rate_limit",
        "Message rate now allowed per shaping key, per second (0 = unlimited)", MetricType::Gauge);
    prometheus::MetricFamily conns = Family(
        "salvo_throttle_connection_limit",
        "Concurrent connections now allowed per shaping key (0 = unlimited)", MetricType::Gauge);
    prometheus::MetricFamily susp =
        Family("salvo_throttle_suspended",
               "1 while sending to the shaping key is suspended, else 0", MetricType::Gauge);
    for (size_t i = 0; i < throttles.size() && i < kMaxThrottleKeys; ++i) {
      const ThrottleSample& t = throttles[i];
      Add(&rate, {L("key", t.key)}, t.message_rate_limit);
      Add(&conns, {L("key", t.key)}, t.connection_limit);
      Add(&susp, {L("key", t.key)}, t.suspended ? 1 : 0);
    }
    prometheus::MetricFamily total =
        Family("salvo_throttle_suspended_keys", "Shaping keys suspended now (all of them)",
               MetricType::Gauge);
    Add(&total, {}, static_cast<double>(suspended));
    families.push_back(std::move(rate));
    families.push_back(std::move(conns));
    families.push_back(std::move(susp));
    families.push_back(std::move(total));
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
