#pragma once
// The MessageSource backed by the RocksDB campaign spool (queue/spool.h):
// leases due recipients per destination domain, renders each copy from the
// campaign's template (engine/message) and DKIM-signs it (dkim/) on the
// sending shard, and records every outcome with Spool::CompleteBatch.
//
// Threads: Fetch/Complete/Done run on the engine's feeder thread (the only
// one that touches the spool here, apart from the admin server, which the
// spool itself serializes). Compose runs on shard threads: campaign contexts
// are immutable once built (shared_ptr<const>), and each shard has its own
// dkim::Signer, so no locks are taken on that path.
#include <atomic>
#include <string>
#include <vector>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/container/flat_hash_set.h"

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "dkim/key_store.h"
#include "dkim/signer.h"
#include "engine/delivery/composer.h"
#include "engine/delivery/source.h"
#include "engine/deliverylog/writer.h"
#include "engine/message/verp.h"
#include "metrics/metrics.h"
#include "queue/spool.h"

namespace salvo::delivery {

struct SpoolSourceOptions {
  int shards = 1;               // Compose is called with shard < shards
  size_t max_per_domain = 200;  // per lease call
  // queue::LeaseLimits::backlog_in_flight (0 = 2 x max_per_domain).
  size_t backlog_in_flight = 0;
  // Recipients of identical copies (same campaign and domain, a template
  // with no per-recipient values and no unsubscribe link) share one
  // transaction, up to this many ([delivery] max_recipients_per_message).
  size_t max_recipients_per_message = 1;
  // `salvo send`: Done() once this campaign has nothing pending. Unset: run
  // forever (`salvo run`).
  std::optional<queue::CampaignId> until_done;
  std::chrono::milliseconds done_check_interval{250};
  // The config's [[egress.pool]] names, in order: a campaign's egress_pool
  // becomes Job::egress_pool (its index).
  std::vector<std::string> egress_pools;
  // Labelled counts (expiries, suppressions, delivery latency; the shards
  // count the attempts) and the `campaign` label of every job. Optional.
  metrics::Registry* registry = nullptr;
  // One JSON line per recipient outcome (engine/deliverylog). Optional.
  deliverylog::Producer* delivery_log = nullptr;
  // The [[egress.source]] addresses, in order, for the log's source_ip.
  std::vector<std::string> egress_addresses;
  // The config's [verp] (secret read): campaigns without VERP options of
  // their own use it. A VERP campaign's copies carry one recipient each.
  message::VerpSettings verp;
};

class SpoolSource final : public MessageSource {
 public:
  // `spool` and `keys` (may be empty) must outlive the source.
  SpoolSource(queue::Spool* spool, std::shared_ptr<const dkim::KeyStore> keys,
              SpoolSourceOptions options);
  ~SpoolSource() override;

  absl::StatusOr<std::vector<Job>> Fetch(size_t max_jobs) override;
  absl::Status Complete(absl::Span<JobResult> results) override;
  bool Done(size_t in_flight) override;
  bool Durable() override;
  absl::Status Compose(Job* job, int shard, bool* permanent) override;

 private:
  std::shared_ptr<const CampaignComposer> ContextFor(queue::CampaignId id);
  // The spool's outcome listener (feeder thread): expiries, suppressions and
  // latency counted, one delivery log line per notice.
  // Also called from the thread that processes received reports
  // (engine/bounce/intake): record_mu_ serializes it with the feeder thread.
  void Record(absl::Span<const queue::OutcomeNotice> notices) ABSL_LOCKS_EXCLUDED(record_mu_);
  void RecordReport(const queue::OutcomeNotice& n, deliverylog::Record* rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(record_mu_);
  metrics::CampaignSlot CampaignLabel(queue::CampaignId id, std::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(record_mu_);
  // Guards what Record touches from two threads: counters_ (one writer at a
  // time), the delivery log producer and campaign_labels_.
  absl::Mutex record_mu_;

  queue::Spool* spool_;
  std::shared_ptr<const dkim::KeyStore> keys_;
  SpoolSourceOptions options_;
  absl::flat_hash_set<std::string> warned_pools_;  // feeder thread: unknown egress pools
  // Feeder thread only. Bounded: past kMaxCampaignContexts, contexts not
  // used by the last few fetches are dropped (jobs in flight keep theirs;
  // a campaign seen again is rebuilt).
  struct CachedContext {
    std::shared_ptr<const CampaignComposer> context;
    uint64_t used = 0;  // fetch_count_ when last used
  };
  static constexpr size_t kMaxCampaignContexts = 256;
  absl::flat_hash_map<uint64_t, CachedContext> campaigns_;
  uint64_t fetch_count_ = 0;
  std::chrono::steady_clock::time_point next_done_check_{};
  bool done_ = false;
  metrics::ShardCounters* counters_ = nullptr;  // the feeder's own, when registry is set
  absl::flat_hash_map<uint64_t, metrics::CampaignSlot> campaign_labels_;  // feeder thread
  // One signer per shard, each touched only by its shard.
  std::vector<std::unique_ptr<dkim::Signer>> signers_;
};

}  // namespace salvo::delivery
