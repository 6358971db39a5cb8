#pragma once
// Internal to queue/: the RocksDB-backed implementation behind Spool. Split
// from spool.cc only so the loader (loader.cc) can share it.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "queue/keys.h"
#include "queue/spool.h"

namespace salvo::queue {

struct CampaignEntry {
  CampaignInfo info;
  StateCounts counts;       // as stored: in-flight recipients count in their stored state
  StateCounts leased_from;  // in flight now, by stored state (queued or deferred)
  std::shared_ptr<const std::vector<std::string>> columns;
};

// A leased recipient. Leasing writes nothing: the recipient keeps its stored
// state and its schedule entry until Complete() (skipped by the lease scan
// meanwhile), so after a crash it is simply due again.
struct InFlightEntry {
  keys::RecipientRecord record;  // as stored (state queued or deferred)
  uint64_t lease_us = 0;
  std::string schedule_key;
};

// What callers see: stored counts with leased recipients moved to in_flight.
StateCounts VisibleCounts(const CampaignEntry& e);

class Spool::Impl {
 public:
  ~Impl();

  // Column family handles (owned here; closed in the destructor).
  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* default_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* campaigns_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* templates_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* recipients_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* schedule_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* inflight_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* history_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* suppression_cf_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;

  std::string data_dir_;
  Spool::Options options_;
  Clock* clock_ = nullptr;
  size_t recovered_at_open_ = 0;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, CampaignEntry> campaigns_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, InFlightEntry> inflight_ ABSL_GUARDED_BY(mu_);
  // Round-robin position: the next LeaseDue starts at this schedule key.
  std::string rr_position_ ABSL_GUARDED_BY(mu_);
  // Per domain, the last schedule key leased: the next scan of the domain
  // seeks past it instead of walking the delete tombstones left behind.
  absl::flat_hash_map<std::string, std::string> domain_cursor_ ABSL_GUARDED_BY(mu_);
  uint64_t next_campaign_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);

  rocksdb::WriteOptions SyncWrite() const {
    rocksdb::WriteOptions w;
    w.sync = true;
    return w;
  }
  rocksdb::WriteOptions HotWrite() const {
    rocksdb::WriteOptions w;
    w.sync = options_.sync_writes;
    return w;
  }

  // Adds a schedule entry, keeping domain cursors valid.
  void AddSchedule(rocksdb::WriteBatch* b, const keys::RecipientRecord& r, CampaignId c,
                   RecipientId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutCounts(rocksdb::WriteBatch* b, CampaignId c, const StateCounts& counts);
  void PutHistory(rocksdb::WriteBatch* b, CampaignId c, RecipientId id, keys::RecipientRecord* r,
                  const keys::HistoryRecord& h);
  // Deletes everything stored for a campaign (a failed or half load).
  absl::Status DropCampaignData(CampaignId c);
  absl::Status Recover() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<CampaignEntry*> Find(CampaignId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistCampaign(const CampaignInfo& info);
  bool Suppressed(std::string_view normalized) const;
  double Jitter() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<LoadReport> Load(const CampaignSpec& spec, const LoadOptions& options);
};

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);

}  // namespace salvo::queue
