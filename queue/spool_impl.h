#pragma once
// Internal to queue/: the RocksDB-backed implementation behind Spool. Split
// from spool.cc only so the loader (loader.cc) can share it.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
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

// LeaseDue's view of one destination domain (Spool::Impl::domains_).
struct DomainState {
  // Empty, or a schedule key of this domain such that every schedule key of
  // the domain <= cursor is leased (in flight) or deleted: the next scan
  // starts after it. It never passes an entry skipped because its campaign is
  // not active (loading), and inserting a key <= cursor clears it (a retry
  // scheduled early, the clock going backwards, a resumed campaign).
  std::string cursor;
  // Recipients of this domain in flight (leased, not completed). A domain
  // with none, and no schedule entry after its cursor, is dropped.
  size_t in_flight = 0;
  // LeaseDue skips the domain without a seek until this time (microseconds):
  // its last scan found nothing leasable after the cursor before the first
  // entry due then (kNothingAfterCursor: no entry at all). Lowered by every
  // schedule Put of the domain (IndexSchedule); 0 = scan at the next visit.
  // In-flight recipients come back only through a Put (a retry, a hold) or
  // leave with their entry deleted, so the skip never hides due work. A scan
  // that skipped an entry of a campaign not active yet, or stopped at its
  // quota or skip bound, leaves it at 0.
  static constexpr uint64_t kNothingAfterCursor = ~uint64_t{0};
  uint64_t not_before_us = 0;
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

  // CompleteBatch's working buffers, kept for their capacity (see there).
  struct CompletionScratch {
    std::vector<std::pair<std::string, std::string>> records, history, new_schedule, suppress;
    std::vector<std::string> old_schedule;
    rocksdb::WriteBatch batch;
    void Clear() {
      records.clear();
      history.clear();
      new_schedule.clear();
      suppress.clear();
      old_schedule.clear();
      batch.Clear();
    }
  };

  mutable absl::Mutex mu_;
  CompletionScratch completion_scratch_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, CampaignEntry> campaigns_ ABSL_GUARDED_BY(mu_);
  // A node map: its rehashes move pointers, not the records (a flat map of
  // whole InFlightEntry slots spent 3% of the feeder thread in resize).
  absl::node_hash_map<std::pair<uint64_t, uint64_t>, InFlightEntry> inflight_ ABSL_GUARDED_BY(mu_);
  // The destination domains that may have schedule entries: a superset of
  // the domains with entries. Built at Open by one scan, extended by every
  // schedule Put (IndexSchedule), pruned by LeaseDue when a domain is found
  // empty with nothing in flight. LeaseDue round-robins over it and seeks each
  // domain's cursor directly, so it never walks the delete tombstones that
  // completed recipients leave at the front of a domain's key range.
  std::map<std::string, DomainState, std::less<>> domains_ ABSL_GUARDED_BY(mu_);
  // Round-robin position: the domain LeaseDue visited last; the next call
  // starts after it.
  std::string rr_position_ ABSL_GUARDED_BY(mu_);
  // The lease backlog: domains whose last scan stopped at its quota (more due
  // than one batch), served first by LeaseDue with part of each call's budget
  // (see LeaseDueInner); backlog_position_ is the one served last.
  std::set<std::string, std::less<>> lease_backlog_ ABSL_GUARDED_BY(mu_);
  std::string backlog_position_ ABSL_GUARDED_BY(mu_);
  uint64_t next_campaign_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // SetOutcomeListener; the notices of the call in progress (see DeliverNotices).
  std::shared_ptr<const OutcomeListener> listener_ ABSL_GUARDED_BY(mu_);
  std::vector<OutcomeNotice> notices_ ABSL_GUARDED_BY(mu_);
  // Copies of the outcomes that held notices point at (a held notice outlives
  // the CompleteBatch call whose span it came from); handed over with notices_.
  std::vector<std::unique_ptr<smtp::Outcome>> notice_outcomes_ ABSL_GUARDED_BY(mu_);

  // ---- Storage faults (a full or failing disk) ----
  // Batches of outcomes RocksDB refused to write (ENOSPC, EIO), in order, with
  // their notices. Memory already reflects them (counts, leases released), so
  // they are written as they are once the disk accepts writes again; until
  // then LeaseDue hands out nothing: the recipients they complete still have
  // their schedule entries on disk and must not be leased again. Bounded by
  // what was in flight when writing failed (no new leases meanwhile).
  std::vector<rocksdb::WriteBatch> held_ ABSL_GUARDED_BY(mu_);
  std::vector<OutcomeNotice> held_notices_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<smtp::Outcome>> held_outcomes_copies_ ABSL_GUARDED_BY(mu_);
  size_t held_outcomes_ ABSL_GUARDED_BY(mu_) = 0;  // completions inside held_
  // The final outcomes inside held_ (delivered, bounced), for WriteRescue.
  std::vector<RescuedOutcome> held_rescue_ ABSL_GUARDED_BY(mu_);
  uint64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
  bool needs_restart_ ABSL_GUARDED_BY(mu_) = false;  // Resume() refused: see SpoolHealth
  // What Open used, to reopen the database at close and write what is held
  // (see ~Impl).
  rocksdb::Options db_options_;
  std::vector<rocksdb::ColumnFamilyDescriptor> cf_descriptors_;
  std::string last_write_error_ ABSL_GUARDED_BY(mu_);
  absl::Time unwritable_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::chrono::steady_clock::time_point next_retry_ ABSL_GUARDED_BY(mu_){};
  std::chrono::steady_clock::time_point next_fault_log_ ABSL_GUARDED_BY(mu_){};
  // Free-space floor (Options::min_free_bytes), checked with statvfs at most
  // once a second.
  bool below_floor_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t free_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point next_floor_check_ ABSL_GUARDED_BY(mu_){};

  // StoreInbound: the next inbound message id (0 = not read from disk yet).
  absl::Mutex inbound_mu_;
  uint64_t next_inbound_id_ ABSL_GUARDED_BY(inbound_mu_) = 0;

  rocksdb::WriteOptions SyncWrite() const {
    rocksdb::WriteOptions w;
    w.sync = true;
    return w;
  }
  // At close, after a fatal write error: closes and reopens the database and
  // writes the held batches. False (last_write_error_ says why) if it cannot.
  bool ReopenAndWriteHeld() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseDb();
  void AssignHandles();  // the *_cf_ pointers from handles_ (kCfNames order)

  rocksdb::WriteOptions HotWrite() const {
    rocksdb::WriteOptions w;
    w.sync = options_.sync_writes;
    return w;
  }

  // Writes a hot batch (completions, expiries found at lease time). When the
  // disk refuses it, or earlier batches are still held, the batch is held
  // (with the notices of this call) and retried; the caller's memory changes
  // stand. `outcomes`: completions in the batch. Never fails: a held batch is
  // the spool's to record.
  // `records`: the recipient records in the batch (key, encoded record): the
  // final ones are remembered for the rescue at close if the batch is held.
  // `suppressions`: the suppression keys the batch adds (a rescued bounce
  // that added one says so, and adds it again when recovered).
  void WriteHot(rocksdb::WriteBatch* batch, size_t outcomes,
                const std::vector<std::pair<std::string, std::string>>* records = nullptr,
                const std::vector<std::pair<std::string, std::string>>* suppressions = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // At close, the held final outcomes nothing could write: to
  // Options::rescue_dir (or the log).
  void WriteRescue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retries the held batches (at most once a second unless `force`): resumes
  // RocksDB from its background error, then writes them in order. True when
  // nothing is held any more.
  bool RetryHeld(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // New leases allowed: nothing held and free space above the floor.
  bool LeasingAllowed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckFloor() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Adds a schedule entry to the batch and IndexSchedule()s it.
  void AddSchedule(rocksdb::WriteBatch* b, const keys::RecipientRecord& r, CampaignId c,
                   RecipientId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every schedule Put goes through here, under mu_ together with its write
  // (or after it, when the write happens outside mu_: the loader): puts the
  // key's domain in domains_ and clears the domain's cursor when the key is
  // at or before it. `domain` is the key's domain.
  void IndexSchedule(std::string_view domain, std::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills domains_ from the schedule at Open (one Seek per domain).
  absl::Status BuildDomainIndex() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutCounts(rocksdb::WriteBatch* b, CampaignId c, const StateCounts& counts);
  void PutHistory(rocksdb::WriteBatch* b, CampaignId c, RecipientId id, keys::RecipientRecord* r,
                  const keys::HistoryRecord& h);
  // Deletes everything stored for a campaign (a failed or half load).
  absl::Status DropCampaignData(CampaignId c);
  absl::Status Recover() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<CampaignEntry*> Find(CampaignId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistCampaign(const CampaignInfo& info);
  // Exactly this key is on the suppression list.
  bool Suppressed(std::string_view key) const;
  // A stored mailbox (local part as written, domain lower-case) is
  // suppressed: its default key (local part lower-cased) or its exact form is
  // listed. Both, whatever the campaign's case sensitivity: an entry added
  // case-insensitively covers every spelling, one added with
  // --case-sensitive-local-parts only its own.
  bool SuppressedMailbox(std::string_view mailbox) const;
  // False while the suppression list is known to be empty (most spools):
  // the lease then skips its per-recipient lookups. Found at Open; set
  // (MaySuppress) before every write that puts an entry, so a reader never
  // misses one that is written.
  std::atomic<bool> any_suppressed_{true};
  void MaySuppress() { any_suppressed_.store(true); }
  bool AnySuppressed() const { return any_suppressed_.load(); }
  // Older spools stored suppression keys with the local part as written:
  // folds them once (marker in the default column family).
  absl::Status FoldSuppressionKeys();
  double Jitter() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a recipient was first attempted (from this lease or its history);
  // InfinitePast when never.
  absl::Time FirstAttempt(CampaignId c, RecipientId id, const keys::RecipientRecord& r,
                          uint64_t lease_us) const;
  // Collects a notice for the listener (no-op without one).
  void Notice(CampaignId c, RecipientId id, const keys::RecipientRecord& r, RecipientState to,
              absl::Time at, uint64_t lease_us, const smtp::Outcome* outcome, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<LoadReport> Load(const CampaignSpec& spec, const LoadOptions& options);
};

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);
// The history row a record's DeliveredAttempt stands for.
keys::HistoryRecord DeliveredAttemptRow(const keys::RecipientRecord& r);

}  // namespace salvo::queue
