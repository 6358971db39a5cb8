#include "queue/spool.h"
#include "engine/common/strings.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdarg>
#include <cstring>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/common/log.h"
#include "queue/address.h"
#include "queue/retry.h"
#include "queue/spool_impl.h"

namespace salvo::queue {

namespace {

constexpr const char* kCfNames[] = {"default",  "campaigns", "templates", "recipients",
                                    "schedule", "inflight",  "history",   "suppression"};
constexpr size_t kChunk = 10000;  // records per WriteBatch in bulk operator actions

std::string ReplyText(const smtp::Outcome& o) {
  if (o.reply.code == 0) return o.detail;
  std::string s = Cat(o.reply.code);
  if (!o.reply.enhanced.empty()) absl::StrAppend(&s, " ", o.reply.enhanced);
  if (!o.reply.text.empty())
    absl::StrAppend(&s, " ", absl::StrReplaceAll(o.reply.text, {{"\n", " "}}));
  return s;
}

// RocksDB's info log, sent to salvo's log instead of a LOG file in the data
// directory: on a full disk the file's writer fails, and RocksDB 7.8 asserts
// (`sync_without_flush_called_`, an abort) on the next line written to a
// writer that saw an error; its first line on a full disk is the one saying
// the disk is full.
class SpoolLogger final : public rocksdb::Logger {
 public:
  SpoolLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    va_list copy;
    va_copy(copy, ap);
    int n = std::vsnprintf(buf, sizeof buf, format, copy);
    va_end(copy);
    if (n < 0) return;
    std::string_view line(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
    while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL)
      SALVO_LOG(kError, "rocksdb: {}", line);
    else
      SALVO_LOG(kWarning, "rocksdb: {}", line);
  }
};

// smtp::ScopeName without linking the SMTP library.
std::string_view ScopeText(smtp::Scope s) {
  switch (s) {
    case smtp::Scope::kRecipient:
      return "recipient";
    case smtp::Scope::kMessage:
      return "message";
    case smtp::Scope::kConnection:
      return "connection";
    case smtp::Scope::kSite:
      return "site";
  }
  return "";
}

std::string CampaignPrefixEnd(CampaignId c) { return keys::Campaign(CampaignId{Value(c) + 1}); }

}  // namespace

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = Cat(what, ": ", s.ToString());
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::UnavailableError(
        Cat(msg, " (another salvo process, e.g. `salvo run`, holds this data directory)"));
  }
  if (s.IsBusy() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

const std::string* LeasedRecipient::Variable(std::string_view name) const {
  if (!columns) return nullptr;
  for (size_t i = 0; i < columns->size() && i < values.size(); ++i)
    if ((*columns)[i] == name) return &values[i];
  return nullptr;
}

Spool::Impl::~Impl() {
  if (db_ == nullptr) return;
  {
    absl::MutexLock lock(&mu_);
    bool written = RetryHeld(/*force=*/true);
    if (!written && needs_restart_) written = ReopenAndWriteHeld();
    if (!written) {
      SALVO_LOG(kError,
                "spool closing with {} outcome(s) it could not write ({}); {} of them final "
                "(delivered or bounced) are rescued so they are not sent again (`salvo queue "
                "recover --from FILE`), the others are attempted again by the next run",
                held_outcomes_, last_write_error_, held_rescue_.size());
      WriteRescue();
    }
  }
  CloseDb();
}

void Spool::Impl::AssignHandles() {
  default_cf_ = handles_[0];
  campaigns_cf_ = handles_[1];
  templates_cf_ = handles_[2];
  recipients_cf_ = handles_[3];
  schedule_cf_ = handles_[4];
  inflight_cf_ = handles_[5];
  history_cf_ = handles_[6];
  suppression_cf_ = handles_[7];
}

void Spool::Impl::CloseDb() {
  if (db_ == nullptr) return;
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  handles_.clear();
  delete db_;
  db_ = nullptr;
}

bool Spool::Impl::ReopenAndWriteHeld() {
  // RocksDB writes nothing more after a fatal error, but a fresh open of the
  // same files does if the disk accepts writes again (a transient EIO). The
  // failed WAL record, if part of it reached the file, is dropped by
  // point-in-time recovery (or replayed whole); the held batches are Puts and
  // Deletes written again in order, so one applied twice changes nothing.
  // Only at close: the database is not shared with anyone any more.
  CloseDb();
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = rocksdb::DB::Open(db_options_, data_dir_, cf_descriptors_, &handles, &db);
  if (!s.ok()) {
    last_write_error_ = s.ToString();
    return false;
  }
  db_ = db;
  handles_ = std::move(handles);
  AssignHandles();
  size_t written = 0;
  for (; written < held_.size(); ++written) {
    s = db_->Write(HotWrite(), &held_[written]);
    if (!s.ok()) break;
  }
  held_.erase(held_.begin(), held_.begin() + static_cast<ptrdiff_t>(written));
  if (!held_.empty()) {
    last_write_error_ = s.ToString();
    return false;
  }
  SALVO_LOG(kWarning, "spool reopened at close: {} held outcome(s) recorded", held_outcomes_);
  held_outcomes_ = 0;
  held_rescue_.clear();
  return true;
}

void Spool::Impl::WriteHot(rocksdb::WriteBatch* batch, size_t outcomes,
                           const std::vector<std::pair<std::string, std::string>>* records,
                           const std::vector<std::pair<std::string, std::string>>* suppressions) {
  rocksdb::Status s;
  if (held_.empty()) {
    s = db_->Write(HotWrite(), batch);
    if (s.ok()) return;
  }
  // Held, in order behind any batch already held: the notices wait with it.
  held_.push_back(std::move(*batch));
  held_outcomes_ += outcomes;
  const absl::Time held_at = clock_->Now();
  if (records != nullptr) {
    for (const auto& [key, value] : *records) {
      keys::RecipientRecord r;
      if (key.size() != 16 || !keys::DecodeRecord(value, &r)) continue;
      if (r.state != RecipientState::kDelivered && r.state != RecipientState::kBounced) continue;
      RescuedOutcome o;
      o.campaign = CampaignId{keys::GetU64(key, 0)};
      o.id = RecipientId{keys::GetU64(key, 8)};
      o.email = r.email;
      o.state = r.state;
      o.reply = r.last_reply;
      o.category = r.category;
      o.at = held_at;
      if (o.state == RecipientState::kBounced && suppressions != nullptr) {
        const std::string k = MailboxKey(r.email.substr(0, r.email.rfind('@') + 1) + r.domain);
        o.suppress = std::any_of(suppressions->begin(), suppressions->end(),
                                 [&k](const auto& kv) { return kv.first == k; });
      }
      held_rescue_.push_back(std::move(o));
    }
  }
  // The notices point at the caller's outcomes: held ones get their own copy.
  for (OutcomeNotice& n : notices_) {
    if (n.outcome != nullptr) {
      held_outcomes_copies_.push_back(std::make_unique<smtp::Outcome>(*n.outcome));
      n.outcome = held_outcomes_copies_.back().get();
    }
    held_notices_.push_back(std::move(n));
  }
  notices_.clear();
  if (s.ok()) {  // behind earlier held batches: try them all now
    RetryHeld(/*force=*/false);
    return;
  }
  ++write_errors_;
  last_write_error_ = s.ToString();
  const auto now = std::chrono::steady_clock::now();
  if (unwritable_since_ == absl::InfinitePast()) {
    unwritable_since_ = clock_->Now();
    next_fault_log_ = now + std::chrono::seconds(30);
    next_retry_ = now + std::chrono::seconds(1);
    SALVO_LOG(
        kError,
        "spool cannot write ({}): new leases paused, {} outcome(s) held in memory and "
        "retried every second; sending resumes by itself when the disk accepts writes (a full "
        "disk; a failing one may need a restart, said at the first retry)",
        last_write_error_, held_outcomes_);
  }
}

bool Spool::Impl::RetryHeld(bool force) {
  if (held_.empty()) return true;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now < next_retry_) return false;
  next_retry_ = now + std::chrono::seconds(1);
  // RocksDB stops writing after a failed write (a background error) until
  // it is resumed: by itself for a full disk once free space exceeds a
  // write buffer (its SstFileManager polls every 5 s; Resume() answers Busy
  // meanwhile), by Resume() for other errors. A write then tells.
  rocksdb::Status s = db_->Resume();
  if (!s.ok() && !s.IsBusy() && !s.IsNoSpace() && !needs_restart_) {
    // Not a full disk (RocksDB resumes from that by itself): a failed write
    // it made fatal (EIO). It refuses every write until reopened.
    needs_restart_ = true;
    last_write_error_ = s.ToString();
    SALVO_LOG(kError,
              "spool cannot resume writing without a restart ({}): {} outcome(s) held in "
              "memory, no new leases; they are written when salvo stops if the disk accepts "
              "writes by then, else those recipients are sent again after the restart. Stop "
              "salvo (SIGTERM), check the disk, start it again",
              last_write_error_, held_outcomes_);
  }
  if (s.ok() || s.IsBusy()) {
    size_t written = 0;
    for (; written < held_.size(); ++written) {
      s = db_->Write(HotWrite(), &held_[written]);
      if (!s.ok()) break;
    }
    held_.erase(held_.begin(), held_.begin() + static_cast<ptrdiff_t>(written));
  }
  if (held_.empty()) {
    SALVO_LOG(
        kWarning, "spool writable again after {}: {} held outcome(s) recorded; leasing resumes",
        absl::FormatDuration(absl::Trunc(clock_->Now() - unwritable_since_, absl::Seconds(1))),
        held_outcomes_);
    held_outcomes_ = 0;
    held_rescue_.clear();
    unwritable_since_ = absl::InfinitePast();
    for (OutcomeNotice& n : held_notices_) notices_.push_back(std::move(n));
    held_notices_.clear();
    for (auto& o : held_outcomes_copies_) notice_outcomes_.push_back(std::move(o));
    held_outcomes_copies_.clear();
    return true;
  }
  if (!s.ok()) last_write_error_ = s.ToString();
  if (now >= next_fault_log_) {
    next_fault_log_ = now + std::chrono::seconds(30);
    SALVO_LOG(
        kError, "spool still cannot write after {}: {} outcome(s) held; {}",
        absl::FormatDuration(absl::Trunc(clock_->Now() - unwritable_since_, absl::Seconds(1))),
        held_outcomes_, last_write_error_);
  }
  return false;
}

void Spool::Impl::CheckFloor() {
  if (options_.min_free_bytes == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_floor_check_) return;
  next_floor_check_ = now + std::chrono::seconds(1);
  struct statvfs vfs {};
  if (::statvfs(data_dir_.c_str(), &vfs) != 0) return;  // unknown: keep the last answer
  free_bytes_ = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  const bool below = free_bytes_ < options_.min_free_bytes;
  if (below && !below_floor_)
    SALVO_LOG(kError,
              "spool: {} bytes free on {}, under queue.min_free_bytes ({}): new leases paused "
              "until space returns",
              free_bytes_, data_dir_, options_.min_free_bytes);
  else if (!below && below_floor_)
    SALVO_LOG(kWarning, "spool: {} bytes free on {} again: leasing resumes", free_bytes_,
              data_dir_);
  below_floor_ = below;
}

bool Spool::Impl::LeasingAllowed() {
  CheckFloor();
  return RetryHeld(/*force=*/false) && !below_floor_;
}

void Spool::Impl::AddSchedule(rocksdb::WriteBatch* b, const keys::RecipientRecord& r, CampaignId c,
                              RecipientId id) {
  std::string key = keys::Schedule(r.domain, r.next_us, c, id);
  IndexSchedule(r.domain, key);
  b->Put(schedule_cf_, key, rocksdb::Slice());
}

void Spool::Impl::IndexSchedule(std::string_view domain, std::string_view key) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) {
    domains_.emplace(std::string(domain), DomainState{});
    return;
  }
  DomainState& state = it->second;
  if (!state.cursor.empty() && key <= state.cursor) state.cursor.clear();
  if (state.not_before_us != 0) {
    keys::ScheduleKey sk;
    state.not_before_us =
        keys::ParseSchedule(key, &sk) ? std::min(state.not_before_us, sk.due_us) : 0;
  }
}

absl::Status Spool::Impl::BuildDomainIndex() {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), schedule_cf_));
  it->SeekToFirst();
  while (it->Valid()) {
    keys::ScheduleKey sk;
    if (!keys::ParseSchedule(it->key().ToStringView(), &sk)) {
      it->Next();  // not ours
      continue;
    }
    const std::string domain(sk.domain);
    domains_.try_emplace(domain);
    it->Seek(keys::ScheduleDomainEnd(domain));
  }
  return FromRocks(it->status(), "indexing the schedule");
}

void Spool::Impl::PutCounts(rocksdb::WriteBatch* b, CampaignId c, const StateCounts& counts) {
  b->Put(default_cf_, keys::Counts(c), keys::EncodeCounts(counts));
}

void Spool::Impl::PutHistory(rocksdb::WriteBatch* b, CampaignId c, RecipientId id,
                             keys::RecipientRecord* r, const keys::HistoryRecord& h) {
  if (r->has_delivered_attempt) {  // rows stay in order: the one the record held first
    b->Put(history_cf_, keys::History(c, id, r->transitions++),
           keys::EncodeHistory(DeliveredAttemptRow(*r)));
    r->has_delivered_attempt = false;
  }
  b->Put(history_cf_, keys::History(c, id, r->transitions++), keys::EncodeHistory(h));
}

keys::HistoryRecord DeliveredAttemptRow(const keys::RecipientRecord& r) {
  const keys::DeliveredAttempt& a = r.delivered_attempt;
  return {a.at_us,  a.from,    RecipientState::kDelivered, r.last_reply, r.category,
          a.detail, a.lease_us};
}

absl::Time Spool::Impl::FirstAttempt(CampaignId c, RecipientId id, const keys::RecipientRecord& r,
                                     uint64_t lease_us) const {
  if (r.attempts == 0) return absl::InfinitePast();
  if (r.attempts == 1 && lease_us != 0) return keys::MicrosToTime(lease_us);
  // The first history entry that is an attempt (operator transitions such as
  // a pause come without a lease time). A few reads, for retried recipients only.
  std::string value;
  for (uint32_t seq = 0; seq < std::min<uint32_t>(r.transitions, 8); ++seq) {
    keys::HistoryRecord h;
    if (db_->Get(rocksdb::ReadOptions(), history_cf_, keys::History(c, id, seq), &value).ok() &&
        keys::DecodeHistory(value, &h) && h.lease_us != 0)
      return keys::MicrosToTime(h.lease_us);
  }
  return lease_us != 0 ? keys::MicrosToTime(lease_us) : keys::MicrosToTime(r.queued_us);
}

void Spool::Impl::Notice(CampaignId c, RecipientId id, const keys::RecipientRecord& r,
                         RecipientState to, absl::Time at, uint64_t lease_us,
                         const smtp::Outcome* outcome, std::string reason) {
  if (!listener_) return;
  OutcomeNotice n;
  n.at = at;
  n.campaign = c;
  n.id = id;
  if (auto it = campaigns_.find(Value(c)); it != campaigns_.end())
    n.campaign_name = it->second.info.name;
  n.email = r.email;
  n.domain = r.domain;
  n.to = to;
  n.attempts = r.attempts;
  n.first_attempt = FirstAttempt(c, id, r, lease_us);
  n.queued_at = keys::MicrosToTime(r.queued_us);
  n.outcome = outcome;
  n.reason = std::move(reason);
  notices_.push_back(std::move(n));
}

void Spool::SetOutcomeListener(OutcomeListener listener) {
  absl::MutexLock lock(&impl_->mu_);
  impl_->listener_ =
      listener ? std::make_shared<const OutcomeListener>(std::move(listener)) : nullptr;
}

void Spool::DeliverNotices() {
  std::vector<OutcomeNotice> notices;
  std::vector<std::unique_ptr<smtp::Outcome>> outcomes;  // what held notices point at
  std::shared_ptr<const OutcomeListener> listener;
  {
    absl::MutexLock lock(&impl_->mu_);
    notices.swap(impl_->notices_);
    outcomes.swap(impl_->notice_outcomes_);
    listener = impl_->listener_;
  }
  if (listener && !notices.empty()) (*listener)(notices);
}

double Spool::Impl::Jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

bool Spool::Impl::Suppressed(std::string_view normalized) const {
  if (!AnySuppressed()) return false;
  std::string value;
  rocksdb::ReadOptions ro;
  return db_->Get(ro, suppression_cf_, normalized, &value).ok();
}

bool Spool::Impl::SuppressedMailbox(std::string_view mailbox) const {
  const std::string key = MailboxKey(mailbox);
  return Suppressed(key) || (key != mailbox && Suppressed(mailbox));
}

absl::Status Spool::Impl::FoldSuppressionKeys() {
  static constexpr char kMarker[] = "meta/suppression_keys_folded";
  std::string value;
  if (db_->Get(rocksdb::ReadOptions(), default_cf_, kMarker, &value).ok()) return absl::OkStatus();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), suppression_cf_));
  rocksdb::WriteBatch batch;
  size_t folded = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string key = it->key().ToString();
    const std::string want = MailboxKey(key);
    if (want == key) continue;
    // Kept as the key's entry unless the folded form is listed already.
    MaySuppress();
    if (!Suppressed(want)) batch.Put(suppression_cf_, want, it->value());
    batch.Delete(suppression_cf_, key);
    ++folded;
  }
  if (auto s = FromRocks(it->status(), "scanning the suppression list"); !s.ok()) return s;
  batch.Put(default_cf_, kMarker, "1");
  if (folded > 0)
    SALVO_LOG(kInfo,
              "suppression list: {} address(es) with upper-case local parts now match "
              "every spelling (stored lower-cased)",
              folded);
  return FromRocks(db_->Write(SyncWrite(), &batch), "folding suppression keys");
}

absl::StatusOr<CampaignEntry*> Spool::Impl::Find(CampaignId id) {
  auto it = campaigns_.find(Value(id));
  if (it == campaigns_.end()) return absl::NotFoundError(Cat("no campaign with ID ", Value(id)));
  return &it->second;
}

absl::Status Spool::Impl::PersistCampaign(const CampaignInfo& info) {
  return FromRocks(
      db_->Put(SyncWrite(), campaigns_cf_, keys::Campaign(info.id), keys::EncodeCampaign(info)),
      "writing campaign");
}

absl::Status Spool::Impl::DropCampaignData(CampaignId c) {
  const std::string begin = keys::Campaign(c);
  const std::string end = CampaignPrefixEnd(c);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, recipients_cf_));
  rocksdb::WriteBatch batch;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    keys::RecipientRecord r;
    if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
    batch.Delete(schedule_cf_,
                 keys::Schedule(r.domain, r.next_us, c,
                                RecipientId{keys::GetU64(it->key().ToStringView(), 8)}));
    if (batch.Count() >= kChunk) {
      if (auto s = FromRocks(db_->Write(HotWrite(), &batch), "dropping campaign"); !s.ok())
        return s;
      batch.Clear();
    }
  }
  if (auto s = FromRocks(it->status(), "scanning campaign"); !s.ok()) return s;
  batch.DeleteRange(recipients_cf_, begin, end);
  batch.DeleteRange(history_cf_, begin, end);
  batch.DeleteRange(inflight_cf_, begin, end);
  batch.Delete(templates_cf_, begin);
  batch.Delete(default_cf_, keys::Counts(c));
  batch.Delete(campaigns_cf_, begin);
  return FromRocks(db_->Write(SyncWrite(), &batch), "dropping campaign");
}

absl::Status Spool::Impl::Recover() {
  // Campaigns: load metadata and counts; drop half-loaded ones.
  std::vector<CampaignId> half_loaded;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), campaigns_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      absl::StatusOr<CampaignInfo> info = keys::DecodeCampaign(it->value().ToStringView());
      if (!info.ok()) return info.status();
      next_campaign_id_ = std::max(next_campaign_id_, Value(info->id) + 1);
      if (info->state == CampaignState::kLoading) {
        half_loaded.push_back(info->id);
        continue;
      }
      CampaignEntry e;
      e.columns = std::make_shared<const std::vector<std::string>>(info->columns);
      std::string counts;
      if (db_->Get(rocksdb::ReadOptions(), default_cf_, keys::Counts(info->id), &counts).ok())
        keys::DecodeCounts(counts, &e.counts);
      e.info = std::move(*info);
      campaigns_.emplace(Value(e.info.id), std::move(e));
    }
    if (auto s = FromRocks(it->status(), "reading campaigns"); !s.ok()) return s;
  }
  for (CampaignId c : half_loaded) {
    SALVO_LOG(kWarning, "removing campaign {} left half-loaded by an interrupted load", Value(c));
    if (auto s = DropCampaignData(c); !s.ok()) return s;
  }
  // Recipients in flight when the previous process died never left the
  // schedule on disk: they are due again. What needs fixing is a campaign
  // cancelled while some were in flight: cancel those stragglers now.
  const uint64_t now_us = keys::TimeToMicros(clock_->Now());
  for (auto& [cid, e] : campaigns_) {
    if (e.info.state != CampaignState::kCancelled || e.counts.Pending() == 0) continue;
    const CampaignId c{cid};
    const std::string begin = keys::Campaign(c);
    const std::string end = CampaignPrefixEnd(c);
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, recipients_cf_));
    rocksdb::WriteBatch batch;
    keys::RecipientRecord r;
    for (it->Seek(begin); it->Valid(); it->Next()) {
      if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
      if (r.state != RecipientState::kQueued && r.state != RecipientState::kDeferred) continue;
      const RecipientId rid{keys::GetU64(it->key().ToStringView(), 8)};
      batch.Delete(schedule_cf_, keys::Schedule(r.domain, r.next_us, c, rid));
      PutHistory(&batch, c, rid, &r,
                 {now_us, r.state, RecipientState::kCancelled, "", "",
                  "cancelled (was in flight when the campaign was cancelled)"});
      e.counts[r.state]--;
      e.counts[RecipientState::kCancelled]++;
      r.state = RecipientState::kCancelled;
      batch.Put(recipients_cf_, it->key(), keys::EncodeRecord(r));
      ++recovered_at_open_;
    }
    if (auto s = FromRocks(it->status(), "scanning recipients"); !s.ok()) return s;
    PutCounts(&batch, c, e.counts);
    if (auto s = FromRocks(db_->Write(SyncWrite(), &batch), "cancelling stragglers"); !s.ok())
      return s;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Spool::~Spool() = default;

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& data_dir, Options options) {
  auto impl = std::make_unique<Impl>();
  impl->data_dir_ = data_dir;
  impl->options_ = options;
  impl->clock_ = options.clock != nullptr ? options.clock : Clock::System();
  {
    absl::MutexLock lock(&impl->mu_);
    impl->rng_.seed(options.rng_seed != 0 ? options.rng_seed
                                          : static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  }
  std::error_code ec;
  if (options.create_if_missing) {
    std::filesystem::create_directories(data_dir, ec);
    if (ec)
      return absl::FailedPreconditionError(
          Cat(data_dir, ": cannot create data directory: ", ec.message()));
  } else if (!std::filesystem::exists(std::filesystem::path(data_dir) / "CURRENT", ec)) {
    if (ec)
      return absl::PermissionDeniedError(
          Cat(data_dir, ": cannot open data directory: ", ec.message()));
    return absl::NotFoundError(Cat(data_dir, ": no salvo data directory here"));
  }
  // Private by default: recipient addresses are in every file, so the
  // directory is the owner's alone (a data directory made by an older salvo
  // with 0755 is tightened here too). Files are 0600 via salvo's umask.
  ::chmod(data_dir.c_str(), 0700);

  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  db_options.max_open_files = 256;
  db_options.keep_log_file_num = 3;
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_options.info_log = std::make_shared<SpoolLogger>();
  if (options.env != nullptr) db_options.env = options.env;
  // Restart time: replay the WAL into memtables without writing L0 files first
  // (12 s -> see README figures with 1M queued on this box).
  db_options.avoid_flush_during_recovery = true;
  db_options.max_total_wal_size = options.max_wal_bytes;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(64 << 20);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Blocks a flush writes go to the block cache too: a big load ends
  // flushed, and the leases that follow read its records from the tables.
  table.prepopulate_block_cache =
      rocksdb::BlockBasedTableOptions::PrepopulateBlockCache::kFlushOnly;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.write_buffer_size = options.write_buffer_bytes;
  cf_options.compression = rocksdb::kNoCompression;
  // The feeder's lease reads (issue 19 item 2): each leased recipient's
  // record is looked up in the memtable before the tables, and after a big
  // load (flushed) it is not there; a whole-key bloom filter in the recipients
  // memtable answers those misses without a skiplist search.
  rocksdb::ColumnFamilyOptions recipients_options = cf_options;
  recipients_options.memtable_prefix_bloom_size_ratio = 0.02;
  recipients_options.memtable_whole_key_filtering = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const char* name : kCfNames) {
    const std::string_view n(name);
    cfs.emplace_back(name, n == "recipients" ? recipients_options : cf_options);
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, data_dir, cfs, &impl->handles_, &db);
  if (!s.ok()) return FromRocks(s, Cat("opening spool in ", data_dir));
  impl->db_ = db;
  impl->db_options_ = db_options;
  impl->cf_descriptors_ = cfs;
  impl->AssignHandles();
  {
    absl::MutexLock lock(&impl->mu_);
    if (absl::Status st = impl->Recover(); !st.ok()) return st;
    if (absl::Status st = impl->BuildDomainIndex(); !st.ok()) return st;
  }
  if (absl::Status st = impl->FoldSuppressionKeys(); !st.ok()) return st;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        impl->db_->NewIterator(rocksdb::ReadOptions(), impl->suppression_cf_));
    it->SeekToFirst();
    if (!it->status().ok()) return FromRocks(it->status(), "reading the suppression list");
    impl->any_suppressed_.store(it->Valid());
  }
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

const std::string& Spool::data_dir() const { return impl_->data_dir_; }
absl::Time Spool::Now() const { return impl_->clock_->Now(); }

absl::StatusOr<size_t> Spool::RecoverInFlight() {
  // Nothing to do: a lease is not written to disk, so recipients that were in
  // flight when a process died are still queued/deferred with their schedule
  // entry, due again. Open() has already cancelled those of cancelled
  // campaigns; that count is returned.
  return impl_->recovered_at_open_;
}

StateCounts VisibleCounts(const CampaignEntry& e) {
  StateCounts c = e.counts;
  for (size_t i = 0; i < kNumRecipientStates; ++i) {
    c.n[i] -= std::min(c.n[i], e.leased_from.n[i]);
    c[RecipientState::kInFlight] += e.leased_from.n[i];
  }
  return c;
}

std::string RescuedOutcome::ToJson() const {
  nlohmann::json j = {{"campaign", Value(campaign)},
                      {"recipient", Value(id)},
                      {"email", email},
                      {"state", std::string(RecipientStateName(state))},
                      {"reply", reply},
                      {"at", absl::FormatTime(absl::RFC3339_sec, at, absl::UTCTimeZone())}};
  if (!category.empty()) j["category"] = category;
  if (suppress) j["suppress"] = true;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<RescuedOutcome> RescuedOutcome::FromJson(std::string_view line) {
  constexpr std::string_view kMarker = "spool rescue: ";
  if (size_t at = line.find(kMarker); at != std::string_view::npos)
    line = line.substr(at + kMarker.size());
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  RescuedOutcome o;
  auto u64 = [&](const char* key, uint64_t* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned()) return false;
    *out = it->get<uint64_t>();
    return true;
  };
  uint64_t c = 0, r = 0;
  if (!u64("campaign", &c) || c == 0)
    return absl::InvalidArgumentError("\"campaign\": missing or not a campaign ID");
  if (!u64("recipient", &r))
    return absl::InvalidArgumentError("\"recipient\": missing or not a number");
  o.campaign = CampaignId{c};
  o.id = RecipientId{r};
  const std::string state = j.value("state", std::string());
  if (state == RecipientStateName(RecipientState::kDelivered))
    o.state = RecipientState::kDelivered;
  else if (state == RecipientStateName(RecipientState::kBounced))
    o.state = RecipientState::kBounced;
  else
    return absl::InvalidArgumentError(
        Cat("\"state\": \"", state, "\" is not \"delivered\" or \"bounced\""));
  o.email = j.value("email", std::string());
  o.reply = j.value("reply", std::string());
  o.category = j.value("category", std::string());
  o.suppress = j.value("suppress", false);
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, j.value("at", std::string()), &o.at, &err))
    o.at = absl::InfinitePast();
  return o;
}

void Spool::Impl::WriteRescue() {
  if (held_rescue_.empty()) return;
  std::string text;
  for (const RescuedOutcome& o : held_rescue_) absl::StrAppend(&text, o.ToJson(), "\n");
  if (!options_.rescue_dir.empty()) {
    const std::string path =
        Cat(options_.rescue_dir, "/salvo-rescue-",
            absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()), "-", ::getpid(),
            ".jsonl");
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < text.size();) {
      ssize_t n = ::write(fd, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) off += static_cast<size_t>(n);
    }
    if (ok) ok = ::fsync(fd) == 0;
    const int err = errno;
    if (fd >= 0) ::close(fd);
    if (ok) {
      SALVO_LOG(kError,
                "spool: {} final outcome(s) it could not write are in {}: run `salvo queue "
                "recover --from {}` before sending again, or they are sent twice",
                held_rescue_.size(), path, path);
      return;
    }
    SALVO_LOG(kError, "spool: cannot write the rescue file {}: {}; the outcomes follow in the log",
              path, std::strerror(err));
  }
  SALVO_LOG(kError,
            "spool: {} final outcome(s) it could not write follow, one per line: save them and "
            "run `salvo queue recover --from FILE` before sending again, or they are sent twice",
            held_rescue_.size());
  for (const RescuedOutcome& o : held_rescue_) SALVO_LOG(kError, "spool rescue: {}", o.ToJson());
}

absl::StatusOr<size_t> Spool::RecoverOutcomes(absl::Span<const RescuedOutcome> outcomes) {
  std::vector<Completion> done;
  {
    Impl& m = *impl_;
    absl::MutexLock lock(&m.mu_);
    for (const RescuedOutcome& o : outcomes) {
      auto ce = m.campaigns_.find(Value(o.campaign));
      if (ce == m.campaigns_.end()) continue;  // deleted since
      if (m.inflight_.contains({Value(o.campaign), Value(o.id)})) continue;
      std::string value;
      const std::string rkey = keys::Recipient(o.campaign, o.id);
      rocksdb::Status s = m.db_->Get(rocksdb::ReadOptions(), m.recipients_cf_, rkey, &value);
      if (s.IsNotFound()) continue;
      if (!s.ok()) return FromRocks(s, "reading a recipient");
      keys::RecipientRecord r;
      if (!keys::DecodeRecord(value, &r)) continue;
      if (r.state != RecipientState::kQueued && r.state != RecipientState::kDeferred) continue;
      // Leased here, as LeaseDue would, so CompleteBatch records it with
      // every index and count kept right.
      std::string schedule_key = keys::Schedule(r.domain, r.next_us, o.campaign, o.id);
      m.domains_[r.domain].in_flight++;
      ce->second.leased_from[r.state]++;
      const uint64_t now_us = keys::TimeToMicros(m.clock_->Now());
      m.inflight_.emplace(std::make_pair(Value(o.campaign), Value(o.id)),
                          InFlightEntry{std::move(r), now_us, std::move(schedule_key)});
      Completion c;
      c.campaign = o.campaign;
      c.id = o.id;
      c.outcome.disposition = o.state == RecipientState::kDelivered ? smtp::Disposition::kDelivered
                                                                    : smtp::Disposition::kBounced;
      c.outcome.category = o.category;
      c.outcome.suppress = o.suppress;
      c.outcome.detail = Cat(o.reply.empty() ? "" : o.reply + "; ",
                             "recorded from a rescue file (the spool's disk had refused it)");
      done.push_back(std::move(c));
    }
  }
  if (done.empty()) return size_t{0};
  if (absl::Status st = CompleteBatch(done); !st.ok()) return st;
  if (!AllOutcomesWritten())
    return absl::UnavailableError(
        Cat("the spool cannot write (", Health().last_error, "): nothing was recovered"));
  return done.size();
}

absl::StatusOr<std::vector<RescuedOutcome>> ReadRescueFile(const std::string& path,
                                                           size_t* skipped) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(Cat(path, ": cannot open: ", std::strerror(errno)));
  std::vector<RescuedOutcome> outcomes;
  std::string line;
  size_t line_no = 0;
  *skipped = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const bool tagged = line.find("spool rescue: ") != std::string::npos;
    if (!tagged && (line.empty() || line[0] != '{')) {
      ++*skipped;
      continue;
    }
    absl::StatusOr<RescuedOutcome> o = RescuedOutcome::FromJson(line);
    if (!o.ok())
      return absl::InvalidArgumentError(
          Cat(path, ":", line_no, ": not a rescued outcome: ", o.status().message()));
    outcomes.push_back(*std::move(o));
  }
  if (in.bad()) return absl::DataLossError(Cat(path, ": read error: ", std::strerror(errno)));
  return outcomes;
}

absl::StatusOr<RescueDirReport> Spool::RecoverRescueDir(const std::string& dir) {
  RescueDirReport report;
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, "salvo-rescue-") && absl::EndsWith(name, ".jsonl") &&
        e.is_regular_file())
      files.push_back(e.path().string());
  }
  if (ec) return absl::FailedPreconditionError(Cat(dir, ": cannot list: ", ec.message()));
  std::sort(files.begin(), files.end());  // the names start with their UTC time
  for (const std::string& path : files) {
    size_t skipped = 0;
    absl::StatusOr<std::vector<RescuedOutcome>> outcomes = ReadRescueFile(path, &skipped);
    if (!outcomes.ok()) return outcomes.status();
    absl::StatusOr<size_t> n = RecoverOutcomes(*outcomes);
    if (!n.ok()) return absl::Status(n.status().code(), Cat(path, ": ", n.status().message()));
    report.files++;
    report.read += outcomes->size();
    report.recorded += *n;
    SALVO_LOG(kWarning,
              "spool: recorded {} of {} outcome(s) from the rescue file {} ({} already recorded)",
              *n, outcomes->size(), path, outcomes->size() - *n);
    // Applying a file again changes nothing (each recipient is final now),
    // so a rename that fails costs only this line at the next start.
    if (std::rename(path.c_str(), (path + ".recovered").c_str()) != 0)
      SALVO_LOG(kWarning, "spool: cannot rename {} to {}.recovered: {}", path, path,
                std::strerror(errno));
  }
  return report;
}

bool Spool::AllOutcomesWritten() const {
  absl::MutexLock lock(&impl_->mu_);
  return impl_->held_.empty();
}

SpoolHealth Spool::Health() const {
  absl::MutexLock lock(&impl_->mu_);
  const Impl& m = *impl_;
  SpoolHealth h;
  h.writable = m.held_.empty() && !m.below_floor_;
  h.held_outcomes = m.held_outcomes_;
  h.write_errors = m.write_errors_;
  h.last_error = m.last_write_error_;
  h.unwritable_since = m.unwritable_since_;
  h.below_floor = m.below_floor_;
  h.free_bytes = m.free_bytes_;
  h.min_free_bytes = m.options_.min_free_bytes;
  h.needs_restart = m.needs_restart_;
  return h;
}

size_t Spool::InFlight() const {
  absl::MutexLock lock(&impl_->mu_);
  return impl_->inflight_.size();
}

absl::StatusOr<std::vector<DomainBatch>> Spool::LeaseDue(absl::Time now,
                                                         const LeaseLimits& limits) {
  auto out = LeaseDueInner(now, limits);
  DeliverNotices();
  return out;
}

absl::StatusOr<std::vector<DomainBatch>> Spool::LeaseDueInner(absl::Time now,
                                                              const LeaseLimits& limits) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu_);
  std::vector<DomainBatch> out;
  if (limits.max_total == 0 || limits.max_per_domain == 0) return out;
  // A full or failing disk: no new work until held outcomes are written and
  // the free-space floor is met (attempts in flight still complete).
  if (!m.LeasingAllowed()) return out;
  const uint64_t now_us = keys::TimeToMicros(now);
  // Entries skipped per domain (in flight behind an entry of a campaign still
  // loading, or of such a campaign) before moving on: bounds the work of one call.
  constexpr size_t kMaxSkipPerDomain = 20000;

  struct Candidate {
    std::string key;
    size_t batch;
  };
  std::vector<Candidate> candidates;
  std::vector<DomainState*> batch_domain;  // parallel to `out`
  // This call's batch of each domain leased from and how many it took (a
  // backlog domain can be scanned twice in one call: in the backlog share and
  // again when the round robin reaches it, up to max_per_domain in all).
  struct Taken {
    size_t batch;
    size_t count;
  };
  absl::flat_hash_map<const DomainState*, Taken> taken_by;
  std::string domain_end, last_end;
  rocksdb::Slice upper;
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it;
  size_t scanned = 0;  // domains whose schedule was read (limits.max_domains_visited)
  // Scans one domain's due schedule from its cursor and takes up to `quota`;
  // may drop the domain from the index (`d` is invalid afterwards) and moves
  // it into or out of the backlog.
  auto scan_domain = [&](std::map<std::string, DomainState, std::less<>>::iterator d,
                         size_t quota) -> absl::Status {
    const std::string& domain = d->first;
    DomainState& state = d->second;
    if (limits.domain_quota) quota = std::min(quota, limits.domain_quota(domain));
    if (quota == 0) return absl::OkStatus();
    if (state.not_before_us > now_us) {
      // Nothing to lease here before then (see DomainState::not_before_us):
      // no seek. Found with nothing in flight either: forget the domain.
      // Not due: out of the backlog (the round robin brings it back).
      m.lease_backlog_.erase(domain);
      if (state.not_before_us == DomainState::kNothingAfterCursor && state.in_flight == 0 &&
          !taken_by.contains(&state)) {
        m.domains_.erase(d);
      }
      return absl::OkStatus();
    }
    ++scanned;
    // Bounded to the domain's range: a scan that runs off the end of this
    // domain stops at the bound instead of walking the tombstones at the
    // front of the next domain. One iterator serves ascending domains,
    // re-seeked with each domain's bound (RocksDB re-reads the bound at every
    // Seek); a new one when the next domain is not after the last one (a
    // wrap, or the round robin after the backlog share) keeps the bounds of
    // one iterator ascending.
    domain_end = keys::ScheduleDomainEnd(domain);
    upper = rocksdb::Slice(domain_end);
    if (!it || domain_end <= last_end) it.reset(m.db_->NewIterator(ro, m.schedule_cf_));
    last_end = domain_end;
    if (state.cursor.empty()) {
      it->Seek(domain);
    } else {
      it->Seek(state.cursor);
      if (it->Valid() && it->key().compare(state.cursor) == 0) it->Next();
    }
    auto found = taken_by.find(&state);
    size_t taken = 0, skipped = 0;
    bool reached_end = false, at_quota = false;
    // The cursor moves over what this scan leases and over entries in flight,
    // until the first entry it must find again (a campaign not active yet).
    bool cursor_moves = true;
    // The due time of the entry the scan stopped at because it is not due yet.
    uint64_t stopped_at_due = 0;
    std::string new_cursor;
    for (;; it->Next()) {
      if (!it->Valid()) {
        reached_end = it->status().ok();
        break;
      }
      if (taken >= quota) {
        at_quota = true;
        break;
      }
      if (skipped >= kMaxSkipPerDomain) break;
      keys::ScheduleKey sk;
      if (!keys::ParseSchedule(it->key().ToStringView(), &sk)) continue;  // not ours
      if (sk.domain != domain) {  // past the bound (RocksDB checks it; so do we)
        reached_end = true;
        break;
      }
      if (sk.due_us > now_us) {
        stopped_at_due = sk.due_us;
        break;
      }
      auto ce = m.campaigns_.find(Value(sk.campaign));
      if (ce == m.campaigns_.end() || ce->second.info.state != CampaignState::kActive) {
        ++skipped;
        cursor_moves = false;
        continue;
      }
      if (m.inflight_.contains({Value(sk.campaign), Value(sk.recipient)})) {
        ++skipped;
        if (cursor_moves) new_cursor.assign(it->key().data(), it->key().size());
        continue;
      }
      if (found == taken_by.end()) {
        found = taken_by.emplace(&state, Taken{out.size(), 0}).first;
        out.push_back(DomainBatch{domain, {}});
        batch_domain.push_back(&state);
      }
      candidates.push_back({it->key().ToString(), found->second.batch});
      if (cursor_moves) new_cursor = candidates.back().key;
      ++taken;
      ++found->second.count;
    }
    if (auto s = FromRocks(it->status(), "scanning the schedule"); !s.ok()) return s;
    if (!new_cursor.empty()) state.cursor = std::move(new_cursor);
    // Everything after the cursor leased, in flight or not due yet (no entry
    // of a campaign still loading, no bound hit): skip the domain until its
    // next entry comes due or a Put adds one.
    if (cursor_moves) {
      if (reached_end)
        state.not_before_us = DomainState::kNothingAfterCursor;
      else if (stopped_at_due != 0)
        state.not_before_us = stopped_at_due;
    }
    if (reached_end && taken == 0 && skipped == 0 && state.in_flight == 0 &&
        found == taken_by.end()) {
      // Nothing scheduled after the cursor and nothing in flight or leased by
      // this call: forget the domain (IndexSchedule brings it back with its
      // next entry).
      m.lease_backlog_.erase(domain);
      m.domains_.erase(d);
      return absl::OkStatus();
    }
    // A domain that stopped at its quota joins the backlog (served first by
    // the next calls); one that ran out of due work leaves it.
    if (at_quota)
      m.lease_backlog_.insert(domain);
    else
      m.lease_backlog_.erase(domain);
    return absl::OkStatus();
  };

  // 1. The backlog share: domains whose last scan stopped at their quota (more
  // due than one batch: the big providers) are served in turn first, each up
  // to max_per_domain, with at most half of this call's budget, and only while
  // fewer than limits.backlog_in_flight of the domain are in flight (a
  // throttled or slow domain must not fill the engine's window; the round
  // robin below still visits it). Without it a long tail of small domains,
  // each leased whole per visit, holds a big domain to one batch per pass
  // over the whole index. The rest of the budget goes to the round robin, so
  // the tail progresses in every call too.
  const size_t backlog_budget = limits.max_total / 2;
  const size_t backlog_in_flight_cap =
      limits.backlog_in_flight != 0 ? limits.backlog_in_flight : 2 * limits.max_per_domain;
  if (backlog_budget > 0 && !m.lease_backlog_.empty()) {
    auto b = m.lease_backlog_.upper_bound(m.backlog_position_);
    for (size_t n = m.lease_backlog_.size();
         n > 0 && candidates.size() < backlog_budget && scanned < limits.max_domains_visited; --n) {
      if (b == m.lease_backlog_.end()) b = m.lease_backlog_.begin();  // wrap
      m.backlog_position_ = *b;
      auto d = m.domains_.find(*b);
      if (d == m.domains_.end()) {  // defensive: the index dropped it
        b = m.lease_backlog_.erase(b);
        continue;
      }
      ++b;  // before the scan, which may erase this entry
      if (d->second.in_flight >= backlog_in_flight_cap) continue;
      const size_t quota = std::min(limits.max_per_domain, backlog_budget - candidates.size());
      if (auto st = scan_domain(d, quota); !st.ok()) return st;
      // The scan may have erased entries: find our place again by name.
      b = m.lease_backlog_.upper_bound(m.backlog_position_);
    }
  }

  // 2. Round-robin over the domain index, starting after the domain visited
  // last, with the rest of the budget.
  auto d = m.rr_position_.empty() ? m.domains_.begin() : m.domains_.upper_bound(m.rr_position_);
  const size_t n_domains = m.domains_.size();
  size_t visited = 0;  // every domain stepped over, skipped or not
  while (visited < n_domains && candidates.size() < limits.max_total &&
         scanned < limits.max_domains_visited) {
    if (d == m.domains_.end()) d = m.domains_.begin();  // wrap
    ++visited;
    m.rr_position_ = d->first;
    auto next = std::next(d);
    size_t already = 0;
    if (auto t = taken_by.find(&d->second); t != taken_by.end()) already = t->second.count;
    const size_t quota = std::min(limits.max_per_domain - std::min(limits.max_per_domain, already),
                                  limits.max_total - candidates.size());
    if (auto st = scan_domain(d, quota); !st.ok()) return st;
    d = next;
  }

  // Read the records. Leasing itself writes nothing; only recipients found
  // expired or suppressed change state here (one WriteBatch).
  std::vector<std::string> rkey_storage;
  rkey_storage.reserve(candidates.size());
  for (const Candidate& c : candidates) {
    keys::ScheduleKey sk;
    keys::ParseSchedule(c.key, &sk);
    rkey_storage.push_back(keys::Recipient(sk.campaign, sk.recipient));
  }
  // Batched MultiGet on sorted keys (one pass through memtable and files).
  std::vector<size_t> order(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return rkey_storage[a] < rkey_storage[b]; });
  std::vector<rocksdb::Slice> rkeys;
  rkeys.reserve(order.size());
  for (size_t i : order) rkeys.emplace_back(rkey_storage[i]);
  std::vector<rocksdb::PinnableSlice> pinned(rkeys.size());
  std::vector<rocksdb::Status> sorted_statuses(rkeys.size());
  if (!rkeys.empty()) {
    m.db_->MultiGet(rocksdb::ReadOptions(), m.recipients_cf_, rkeys.size(), rkeys.data(),
                    pinned.data(), sorted_statuses.data(), /*sorted_input=*/true);
  }
  // The records are decoded where MultiGet left them (`pinned` lives until
  // the end of this call), not copied first.
  std::vector<std::string_view> values(candidates.size());
  std::vector<rocksdb::Status> statuses(candidates.size());
  for (size_t j = 0; j < order.size(); ++j) {
    statuses[order[j]] = sorted_statuses[j];
    if (sorted_statuses[j].ok()) values[order[j]] = pinned[j].ToStringView();
  }
  rocksdb::WriteBatch batch;
  absl::flat_hash_map<uint64_t, bool> touched;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    keys::ScheduleKey sk;
    keys::ParseSchedule(c.key, &sk);
    keys::RecipientRecord r;
    if (!statuses[i].ok() || !keys::DecodeRecord(values[i], &r) ||
        (r.state != RecipientState::kQueued && r.state != RecipientState::kDeferred)) {
      SALVO_LOG(kWarning, "dropping stale schedule entry for campaign {} recipient {}",
                Value(sk.campaign), Value(sk.recipient));
      batch.Delete(m.schedule_cf_, c.key);
      continue;
    }
    CampaignEntry& e = m.campaigns_[Value(sk.campaign)];
    // Expired while waiting (e.g. the engine was down for days)? Suppressed since?
    RecipientState final_state = RecipientState::kQueued;
    std::string why;
    if (now >= keys::MicrosToTime(r.queued_us) + e.info.retry.max_age) {
      final_state = RecipientState::kExpired;
      why = "expired before the next attempt (older than max_age)";
    } else if (m.AnySuppressed() &&
               m.SuppressedMailbox(r.email.substr(0, r.email.rfind('@') + 1) + r.domain)) {
      final_state = RecipientState::kSuppressed;
      why = "on the suppression list";
    }
    if (final_state != RecipientState::kQueued) {
      touched[Value(sk.campaign)] = true;
      e.counts[r.state]--;
      e.counts[final_state]++;
      m.PutHistory(&batch, sk.campaign, sk.recipient, &r,
                   {now_us, r.state, final_state, r.last_reply, r.category, why});
      m.Notice(sk.campaign, sk.recipient, r, final_state, now, 0, nullptr, why);
      r.state = final_state;
      batch.Delete(m.schedule_cf_, c.key);
      batch.Put(m.recipients_cf_, rkey_storage[i], keys::EncodeRecord(r));
      continue;
    }
    e.leased_from[r.state]++;
    LeasedRecipient lr;
    lr.campaign = sk.campaign;
    lr.id = sk.recipient;
    lr.email = r.email;
    lr.domain = r.domain;
    lr.columns = e.columns;
    lr.values = r.values;
    lr.attempts = r.attempts;
    lr.queued_at = keys::MicrosToTime(r.queued_us);
    out[c.batch].recipients.push_back(std::move(lr));
    batch_domain[c.batch]->in_flight++;
    m.inflight_.emplace(std::make_pair(Value(sk.campaign), Value(sk.recipient)),
                        InFlightEntry{std::move(r), now_us, c.key});
  }
  for (const auto& [c, unused] : touched)
    m.PutCounts(&batch, CampaignId{c}, m.campaigns_[c].counts);
  // Expiries and suppressions found here: held like completions when the
  // disk refuses them (memory already counts them).
  if (batch.Count() > 0) m.WriteHot(&batch, 0);
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const DomainBatch& b) { return b.recipients.empty(); }),
            out.end());
  return out;
}

absl::Status Spool::Complete(CampaignId campaign, RecipientId id, const smtp::Outcome& outcome) {
  Completion c{campaign, id, outcome};
  return CompleteBatch(absl::MakeConstSpan(&c, 1));
}

absl::Status Spool::CompleteBatch(absl::Span<const Completion> completions) {
  absl::Status st = CompleteBatchInner(completions);
  DeliverNotices();
  return st;
}

absl::Status Spool::CompleteBatchInner(absl::Span<const Completion> completions) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu_);
  const absl::Time now = m.clock_->Now();
  const uint64_t now_us = keys::TimeToMicros(now);
  absl::flat_hash_map<uint64_t, bool> touched;
  absl::Status first_error;
  // The batch is built per column family and sorted: sorted memtable inserts
  // reuse the skiplist's search path (the completions arrive in domain order,
  // which scatters their keys).
  // The vectors and the write batch are the Impl's, reused from call to call:
  // allocating them fresh (each 1 KB or more) made glibc consolidate its
  // fast bins on every call, a tenth of the feeder thread's CPU.
  Impl::CompletionScratch& scratch = m.completion_scratch_;
  scratch.Clear();
  auto& records = scratch.records;
  auto& history = scratch.history;
  auto& new_schedule = scratch.new_schedule;
  auto& suppress = scratch.suppress;
  auto& old_schedule = scratch.old_schedule;
  for (const Completion& c : completions) {
    auto it = m.inflight_.find({Value(c.campaign), Value(c.id)});
    if (it == m.inflight_.end()) {
      if (first_error.ok())
        first_error = absl::FailedPreconditionError(
            Cat("campaign ", Value(c.campaign), " recipient ", Value(c.id),
                " is not in flight (completed twice or never leased)"));
      continue;
    }
    keys::RecipientRecord r = std::move(it->second.record);
    const uint64_t lease_us = it->second.lease_us;
    old_schedule.push_back(std::move(it->second.schedule_key));
    m.inflight_.erase(it);
    {
      keys::ScheduleKey sk;
      SALVO_CHECK(keys::ParseSchedule(old_schedule.back(), &sk));
      auto d = m.domains_.find(sk.domain);
      // A domain with recipients in flight is never dropped from the index.
      SALVO_CHECK(d != m.domains_.end() && d->second.in_flight > 0);
      d->second.in_flight--;
    }
    CampaignEntry& e = m.campaigns_[Value(c.campaign)];
    touched[Value(c.campaign)] = true;
    e.leased_from[r.state]--;
    const smtp::Outcome& o = c.outcome;
    if (o.held() && e.info.state != CampaignState::kCancelled) {
      // Held back by shaping, never tried: back in the queue as it was, due
      // again after the hold; no attempt, no deferral, no history line.
      r.next_us = std::max<uint64_t>(
          r.next_us, static_cast<uint64_t>(now_us) + static_cast<uint64_t>(o.hold_ms) * 1000);
      if (e.info.state == CampaignState::kActive) {
        std::string key = keys::Schedule(r.domain, r.next_us, c.campaign, c.id);
        m.IndexSchedule(r.domain, key);
        new_schedule.emplace_back(std::move(key), std::string());
      }
      records.emplace_back(keys::Recipient(c.campaign, c.id), keys::EncodeRecord(r));
      continue;
    }
    const std::string reply = ReplyText(o);
    RecipientState to;
    std::string detail = o.host.empty() ? o.detail : o.host;
    r.attempts++;
    switch (o.disposition) {
      case smtp::Disposition::kDelivered:
        to = RecipientState::kDelivered;
        break;
      case smtp::Disposition::kBounced:
        to = RecipientState::kBounced;
        if (o.suppress) {  // decided by engine/smtp/failure_scope, not here
          nlohmann::json v = {{"reason", Cat("bounce: ", reply)}, {"added_us", now_us}};
          suppress.emplace_back(MailboxKey(r.email.substr(0, r.email.rfind('@') + 1) + r.domain),
                                v.dump());
        }
        break;
      case smtp::Disposition::kDeferred:
      default: {
        if (e.info.state == CampaignState::kCancelled) {
          to = RecipientState::kCancelled;
          detail = "campaign cancelled";
          break;
        }
        absl::Time next =
            NextAttempt(e.info.retry, keys::MicrosToTime(r.queued_us), now, r.attempts, m.Jitter());
        if (next == absl::InfiniteFuture()) {
          to = RecipientState::kExpired;
          detail = Cat("expired after ", r.attempts, " attempts (older than max_age); ", detail);
        } else {
          to = RecipientState::kDeferred;
          r.next_us = keys::TimeToMicros(next);
        }
        break;
      }
    }
    // The category stored and shown is the shared one (engine/smtp/category.h:
    // bad-mailbox, rate-limited ...), decided by the failure module and its rules.
    const std::string category = o.bounce_class != smtp::Category::kNone
                                     ? std::string(smtp::CategoryName(o.bounce_class))
                                     : o.category;
    if (to == RecipientState::kDelivered && r.attempts == 1 &&
        !m.options_.history_for_first_deliveries && !r.has_delivered_attempt) {
      // The common case, kept in the record itself: one write less per
      // message (Spool::History shows it as the row it stands for).
      r.has_delivered_attempt = true;
      r.delivered_attempt = {now_us, lease_us, r.state, detail};
    } else {
      if (r.has_delivered_attempt) {
        history.emplace_back(keys::History(c.campaign, c.id, r.transitions++),
                             keys::EncodeHistory(DeliveredAttemptRow(r)));
        r.has_delivered_attempt = false;
      }
      keys::HistoryRecord h{
          now_us,   r.state,
          to,       reply,
          category, detail,
          lease_us, to == RecipientState::kDelivered ? "" : std::string(ScopeText(o.scope))};
      history.emplace_back(keys::History(c.campaign, c.id, r.transitions++),
                           keys::EncodeHistory(h));
    }
    e.counts[r.state]--;
    e.counts[to]++;
    r.state = to;
    r.last_reply = reply;
    r.category = category;
    if (to == RecipientState::kDeferred && e.info.state == CampaignState::kActive) {
      std::string key = keys::Schedule(r.domain, r.next_us, c.campaign, c.id);
      m.IndexSchedule(r.domain, key);
      new_schedule.emplace_back(std::move(key), std::string());
    }
    m.Notice(c.campaign, c.id, r, to, now, lease_us, &o, reply.empty() ? detail : reply);
    records.emplace_back(keys::Recipient(c.campaign, c.id), keys::EncodeRecord(r));
  }
  rocksdb::WriteBatch& batch = scratch.batch;
  // Every delete goes before every put: a held or deferred recipient whose
  // new schedule key equals its old one (the clock stepped back) keeps it.
  std::sort(old_schedule.begin(), old_schedule.end());
  for (const auto& k : old_schedule) batch.Delete(m.schedule_cf_, k);
  // By key only and stably: a key put twice in one batch (two campaigns
  // bouncing one mailbox) keeps the value of the later completion, as the
  // batch's later put of a key wins.
  auto put_sorted = [&batch](rocksdb::ColumnFamilyHandle* cf, auto& kvs) {
    std::stable_sort(kvs.begin(), kvs.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [k, v] : kvs) batch.Put(cf, k, v);
  };
  put_sorted(m.schedule_cf_, new_schedule);
  put_sorted(m.recipients_cf_, records);
  put_sorted(m.history_cf_, history);
  if (!suppress.empty()) m.MaySuppress();
  put_sorted(m.suppression_cf_, suppress);
  for (const auto& [c, unused] : touched)
    m.PutCounts(&batch, CampaignId{c}, m.campaigns_[c].counts);
  // Memory is ahead of disk until this is written: held and retried when
  // the disk refuses it (see the storage-fault note in spool.h).
  if (batch.Count() > 0)
    m.WriteHot(&batch, records.size(), &records,
               &suppress);  // a held batch is moved out; Clear() renews it
  else
    m.RetryHeld(/*force=*/false);
  return first_error;
}

// ---- Campaigns -------------------------------------------------------------

absl::StatusOr<CampaignInfo> Spool::GetCampaign(CampaignId id) const {
  absl::MutexLock lock(&impl_->mu_);
  auto it = impl_->campaigns_.find(Value(id));
  if (it == impl_->campaigns_.end())
    return absl::NotFoundError(Cat("no campaign with ID ", Value(id)));
  return it->second.info;
}

absl::StatusOr<CampaignId> Spool::FindCampaign(std::string_view id_or_name) const {
  absl::MutexLock lock(&impl_->mu_);
  uint64_t n;
  if (absl::SimpleAtoi(Av(id_or_name), &n) && impl_->campaigns_.contains(n)) return CampaignId{n};
  uint64_t newest_cancelled = 0;
  std::vector<uint64_t> live;
  for (const auto& [id, e] : impl_->campaigns_) {
    if (e.info.name != id_or_name) continue;
    if (e.info.state == CampaignState::kCancelled)
      newest_cancelled = std::max(newest_cancelled, id);
    else
      live.push_back(id);
  }
  if (live.size() == 1) return CampaignId{live[0]};
  if (live.size() > 1) {
    std::sort(live.begin(), live.end());
    return absl::FailedPreconditionError(Cat("campaign name '", id_or_name,
                                             "' is ambiguous: campaigns ",
                                             absl::StrJoin(live, ", "), " have it (use the ID)"));
  }
  if (newest_cancelled != 0) return CampaignId{newest_cancelled};
  return absl::NotFoundError(Cat("no campaign with ID or name '", id_or_name, "'"));
}

absl::StatusOr<std::string> Spool::GetTemplate(CampaignId id) const {
  std::string text;
  rocksdb::Status s =
      impl_->db_->Get(rocksdb::ReadOptions(), impl_->templates_cf_, keys::Campaign(id), &text);
  if (s.IsNotFound()) return absl::NotFoundError(Cat("no template for campaign ", Value(id)));
  if (!s.ok()) return FromRocks(s, "reading template");
  return text;
}

std::vector<CampaignInfo> Spool::ListCampaigns() const {
  absl::MutexLock lock(&impl_->mu_);
  std::vector<CampaignInfo> out;
  for (const auto& [id, e] : impl_->campaigns_) out.push_back(e.info);
  std::sort(out.begin(), out.end(),
            [](const CampaignInfo& a, const CampaignInfo& b) { return Value(a.id) < Value(b.id); });
  return out;
}

absl::StatusOr<StateCounts> Spool::Counts(CampaignId id) const {
  absl::MutexLock lock(&impl_->mu_);
  auto it = impl_->campaigns_.find(Value(id));
  if (it == impl_->campaigns_.end())
    return absl::NotFoundError(Cat("no campaign with ID ", Value(id)));
  return VisibleCounts(it->second);
}

absl::StatusOr<bool> Spool::AllDone(CampaignId id) const {
  absl::StatusOr<StateCounts> c = Counts(id);
  if (!c.ok()) return c.status();
  return c->Pending() == 0;
}

absl::StatusOr<CampaignStatus> Spool::Status(CampaignId id, size_t top_domains) const {
  CampaignStatus st;
  {
    absl::MutexLock lock(&impl_->mu_);
    auto it = impl_->campaigns_.find(Value(id));
    if (it == impl_->campaigns_.end())
      return absl::NotFoundError(Cat("no campaign with ID ", Value(id)));
    st.info = it->second.info;
    st.counts = VisibleCounts(it->second);
  }
  // Per-domain counts from a scan of the stored records (in-flight ones show
  // their stored state, queued or deferred).
  const std::string begin = keys::Campaign(id);
  const std::string end = CampaignPrefixEnd(id);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db_->NewIterator(ro, impl_->recipients_cf_));
  absl::flat_hash_map<std::string, DomainCount> domains;
  absl::flat_hash_map<std::string, uint64_t> categories;
  absl::flat_hash_map<std::string, FailureReason> bounce_reasons, deferral_reasons;
  uint64_t attempted = 0, ever_deferred = 0;
  keys::RecipientRecord r;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
    DomainCount& d = domains[r.domain];
    d.counts[r.state]++;
    // The last attempt decided the state; every attempt before it was a
    // deferral (a bounce or a delivery ends the retries).
    d.attempts += r.attempts;
    if (r.attempts > 0 && r.state == RecipientState::kDelivered) {
      d.deliveries++;
      d.deferrals += r.attempts - 1;
    } else if (r.attempts > 0 && r.state == RecipientState::kBounced) {
      d.bounces++;
      d.deferrals += r.attempts - 1;
    } else {
      d.deferrals += r.attempts;
    }
    if (r.state == RecipientState::kBounced || r.state == RecipientState::kExpired ||
        r.state == RecipientState::kDeferred) {
      auto& reasons = r.state == RecipientState::kBounced ? bounce_reasons : deferral_reasons;
      FailureReason& fr = reasons[r.category.empty() ? std::string("other") : r.category];
      fr.count++;
      if (fr.sample.empty()) fr.sample = r.last_reply;
    }
    if (!r.category.empty() &&
        (r.state == RecipientState::kBounced || r.state == RecipientState::kExpired ||
         r.state == RecipientState::kDeferred))
      categories[r.category]++;
    if (r.attempts > 0) {
      ++attempted;
      if (r.state == RecipientState::kDeferred || r.state == RecipientState::kExpired ||
          r.attempts > 1)
        ++ever_deferred;
    }
  }
  if (auto s = FromRocks(it->status(), "scanning recipients"); !s.ok()) return s;
  std::vector<DomainCount> all;
  all.reserve(domains.size());
  for (auto& [name, d] : domains) {
    all.push_back(std::move(d));
    all.back().domain = name;
  }
  const size_t n = std::min(top_domains, all.size());
  std::partial_sort(all.begin(), all.begin() + n, all.end(),
                    [](const DomainCount& a, const DomainCount& b) {
                      if (a.counts.Total() != b.counts.Total())
                        return a.counts.Total() > b.counts.Total();
                      return a.domain < b.domain;
                    });
  for (size_t i = n; i < all.size(); ++i) {
    DomainCount& o = st.other_domains;
    o.domain = "other";
    for (size_t k = 0; k < kNumRecipientStates; ++k) o.counts.n[k] += all[i].counts.n[k];
    o.attempts += all[i].attempts;
    o.deliveries += all[i].deliveries;
    o.deferrals += all[i].deferrals;
    o.bounces += all[i].bounces;
  }
  all.resize(n);
  st.top_domains = std::move(all);
  auto top_reasons = [](absl::flat_hash_map<std::string, FailureReason>& from) {
    std::vector<FailureReason> out;
    for (auto& [category, fr] : from) {
      out.push_back(std::move(fr));
      out.back().category = category;
    }
    std::sort(out.begin(), out.end(), [](const FailureReason& a, const FailureReason& b) {
      return a.count != b.count ? a.count > b.count : a.category < b.category;
    });
    if (out.size() > 5) out.resize(5);
    return out;
  };
  st.bounce_reasons = top_reasons(bounce_reasons);
  st.deferral_reasons = top_reasons(deferral_reasons);
  st.categories.assign(categories.begin(), categories.end());
  std::sort(st.categories.begin(), st.categories.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  const uint64_t failed = st.counts[RecipientState::kBounced] + st.counts[RecipientState::kExpired];
  const uint64_t finished = failed + st.counts[RecipientState::kDelivered];
  st.bounce_rate = finished == 0 ? 0 : static_cast<double>(failed) / finished;
  st.deferral_rate = attempted == 0 ? 0 : static_cast<double>(ever_deferred) / attempted;
  absl::StatusOr<ReportCounts> reports = Reports(id);
  if (!reports.ok()) return reports.status();
  st.reports = *reports;
  // Complaints are about delivered copies: those delivered now and those a
  // bounce message turned into bounced later.
  const uint64_t reached = st.counts[RecipientState::kDelivered] + st.reports.async_bounces;
  st.complaint_rate = reached == 0 ? 0 : static_cast<double>(st.reports.complaints) / reached;
  return st;
}

absl::Status Spool::Pause(CampaignId id, std::string_view reason) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu_);
  absl::StatusOr<CampaignEntry*> e = m.Find(id);
  if (!e.ok()) return e.status();
  CampaignInfo& info = (*e)->info;
  if (info.state == CampaignState::kPaused) return absl::OkStatus();
  if (info.state != CampaignState::kActive)
    return absl::FailedPreconditionError(
        Cat("campaign ", Value(id), " is ", CampaignStateName(info.state), ", not active"));
  // Remove the campaign's schedule entries so a paused campaign costs the
  // lease scan nothing; Resume puts them back. Done under the mutex so no
  // completion can slip between the two.
  const std::string begin = keys::Campaign(id);
  const std::string end = CampaignPrefixEnd(id);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(m.db_->NewIterator(ro, m.recipients_cf_));
  rocksdb::WriteBatch batch;
  keys::RecipientRecord r;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
    if (r.state != RecipientState::kQueued && r.state != RecipientState::kDeferred) continue;
    const RecipientId rid{keys::GetU64(it->key().ToStringView(), 8)};
    // In flight too: a paused campaign has no schedule entries at all.
    batch.Delete(m.schedule_cf_, keys::Schedule(r.domain, r.next_us, id, rid));
    if (batch.Count() >= kChunk) {
      if (auto s = FromRocks(m.db_->Write(m.HotWrite(), &batch), "pausing"); !s.ok()) return s;
      batch.Clear();
    }
  }
  if (auto s = FromRocks(it->status(), "scanning recipients"); !s.ok()) return s;
  info.state = CampaignState::kPaused;
  info.pause_reason = std::string(reason);
  batch.Put(m.campaigns_cf_, keys::Campaign(id), keys::EncodeCampaign(info));
  return FromRocks(m.db_->Write(m.SyncWrite(), &batch), "pausing");
}

absl::Status Spool::Resume(CampaignId id) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu_);
  absl::StatusOr<CampaignEntry*> e = m.Find(id);
  if (!e.ok()) return e.status();
  CampaignInfo& info = (*e)->info;
  if (info.state == CampaignState::kActive) return absl::OkStatus();
  if (info.state != CampaignState::kPaused)
    return absl::FailedPreconditionError(
        Cat("campaign ", Value(id), " is ", CampaignStateName(info.state), ", not paused"));
  const std::string begin = keys::Campaign(id);
  const std::string end = CampaignPrefixEnd(id);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(m.db_->NewIterator(ro, m.recipients_cf_));
  rocksdb::WriteBatch batch;
  keys::RecipientRecord r;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
    if (r.state != RecipientState::kQueued && r.state != RecipientState::kDeferred) continue;
    const RecipientId rid{keys::GetU64(it->key().ToStringView(), 8)};
    // In flight too: keeps the invariant that every queued/deferred recipient of an
    // active campaign has its schedule entry (the scan skips leased ones).
    m.AddSchedule(&batch, r, id, rid);
    if (batch.Count() >= kChunk) {
      if (auto s = FromRocks(m.db_->Write(m.HotWrite(), &batch), "resuming"); !s.ok()) return s;
      batch.Clear();
    }
  }
  if (auto s = FromRocks(it->status(), "scanning recipients"); !s.ok()) return s;
  info.state = CampaignState::kActive;
  info.pause_reason.clear();
  batch.Put(m.campaigns_cf_, keys::Campaign(id), keys::EncodeCampaign(info));
  return FromRocks(m.db_->Write(m.SyncWrite(), &batch), "resuming");
}

absl::Status Spool::Cancel(CampaignId id) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu_);
  absl::StatusOr<CampaignEntry*> e = m.Find(id);
  if (!e.ok()) return e.status();
  CampaignInfo& info = (*e)->info;
  StateCounts& counts = (*e)->counts;
  if (info.state == CampaignState::kCancelled) return absl::OkStatus();
  const uint64_t now_us = keys::TimeToMicros(m.clock_->Now());
  const std::string begin = keys::Campaign(id);
  const std::string end = CampaignPrefixEnd(id);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(m.db_->NewIterator(ro, m.recipients_cf_));
  rocksdb::WriteBatch batch;
  keys::RecipientRecord r;
  // Mark the campaign first (in memory): from here on completions of its
  // in-flight recipients turn deferrals into cancellations.
  info.state = CampaignState::kCancelled;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
    if (r.state != RecipientState::kQueued && r.state != RecipientState::kDeferred) continue;
    const RecipientId rid{keys::GetU64(it->key().ToStringView(), 8)};
    if (m.inflight_.contains({Value(id), Value(rid)})) continue;
    batch.Delete(m.schedule_cf_, keys::Schedule(r.domain, r.next_us, id, rid));
    m.PutHistory(&batch, id, rid, &r,
                 {now_us, r.state, RecipientState::kCancelled, "", "", "cancelled by operator"});
    counts[r.state]--;
    counts[RecipientState::kCancelled]++;
    r.state = RecipientState::kCancelled;
    batch.Put(m.recipients_cf_, it->key(), keys::EncodeRecord(r));
    if (batch.Count() >= kChunk) {
      m.PutCounts(&batch, id, counts);
      if (auto s = FromRocks(m.db_->Write(m.HotWrite(), &batch), "cancelling"); !s.ok()) return s;
      batch.Clear();
    }
  }
  if (auto s = FromRocks(it->status(), "scanning recipients"); !s.ok()) return s;
  m.PutCounts(&batch, id, counts);
  batch.Put(m.campaigns_cf_, keys::Campaign(id), keys::EncodeCampaign(info));
  return FromRocks(m.db_->Write(m.SyncWrite(), &batch), "cancelling");
}

absl::StatusOr<LoadReport> Spool::LoadCampaign(const CampaignSpec& spec,
                                               const LoadOptions& options) {
  return impl_->Load(spec, options);
}

// ---- Recipients ------------------------------------------------------------

absl::StatusOr<RecipientView> Spool::GetRecipient(CampaignId campaign, RecipientId id) const {
  std::string value;
  rocksdb::Status s = impl_->db_->Get(rocksdb::ReadOptions(), impl_->recipients_cf_,
                                      keys::Recipient(campaign, id), &value);
  if (s.IsNotFound())
    return absl::NotFoundError(Cat("no recipient ", Value(id), " in campaign ", Value(campaign)));
  if (!s.ok()) return FromRocks(s, "reading recipient");
  keys::RecipientRecord r;
  if (!keys::DecodeRecord(value, &r)) return absl::DataLossError("corrupt recipient record");
  RecipientView v;
  v.campaign = campaign;
  v.id = id;
  v.email = r.email;
  v.state = r.state;
  {
    absl::MutexLock lock(&impl_->mu_);
    if (impl_->inflight_.contains({Value(campaign), Value(id)}))
      v.state = RecipientState::kInFlight;
  }
  v.attempts = r.attempts;
  v.queued_at = keys::MicrosToTime(r.queued_us);
  v.next_attempt = keys::MicrosToTime(r.next_us);
  v.last_reply = r.last_reply;
  v.category = r.category;
  v.values = r.values;
  return v;
}

absl::StatusOr<std::vector<HistoryEntry>> Spool::History(CampaignId campaign,
                                                         RecipientId id) const {
  const std::string begin = keys::Recipient(campaign, id);
  const std::string end = keys::Recipient(campaign, RecipientId{Value(id) + 1});
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db_->NewIterator(ro, impl_->history_cf_));
  std::vector<HistoryEntry> out;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    keys::HistoryRecord h;
    if (!keys::DecodeHistory(it->value().ToStringView(), &h)) continue;
    if (h.lease_us != 0) {  // an attempt: two transitions
      out.push_back(
          {keys::MicrosToTime(h.lease_us), h.from, RecipientState::kInFlight, "", "", "leased"});
      h.from = RecipientState::kInFlight;
    }
    out.push_back(
        {keys::MicrosToTime(h.at_us), h.from, h.to, h.reply, h.category, h.detail, h.scope});
  }
  if (auto s = FromRocks(it->status(), "reading history"); !s.ok()) return s;
  // A first-attempt delivery may be kept in the record instead of a row.
  std::string value;
  rocksdb::Status rs =
      impl_->db_->Get(rocksdb::ReadOptions(), impl_->recipients_cf_, begin, &value);
  if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "reading history");
  keys::RecipientRecord r;
  if (rs.ok() && keys::DecodeRecord(value, &r) && r.has_delivered_attempt) {
    const keys::HistoryRecord h = DeliveredAttemptRow(r);
    out.push_back(
        {keys::MicrosToTime(h.lease_us), h.from, RecipientState::kInFlight, "", "", "leased"});
    out.push_back({keys::MicrosToTime(h.at_us), RecipientState::kInFlight, h.to, h.reply,
                   h.category, h.detail});
  }
  return out;
}

absl::StatusOr<Spool::ExportPage> Spool::Export(CampaignId campaign, RecipientId after,
                                                size_t limit,
                                                std::optional<RecipientState> state) const {
  ExportPage page;
  limit = std::max<size_t>(1, limit);
  const std::string begin = keys::Recipient(campaign, RecipientId{Value(after) + 1});
  const std::string end = CampaignPrefixEnd(campaign);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db_->NewIterator(ro, impl_->recipients_cf_));
  size_t read = 0;
  page.next = after;
  keys::RecipientRecord r;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const std::string_view key = it->key().ToStringView();
    if (key.size() != 16) continue;
    const RecipientId id{keys::GetU64(key, 8)};
    page.next = id;
    if (!keys::DecodeRecord(it->value().ToStringView(), &r)) continue;
    if (!state || r.state == *state) {
      RecipientView v;
      v.campaign = campaign;
      v.id = id;
      v.email = std::move(r.email);
      v.state = r.state;
      v.attempts = r.attempts;
      v.queued_at = keys::MicrosToTime(r.queued_us);
      v.next_attempt = keys::MicrosToTime(r.next_us);
      v.last_reply = std::move(r.last_reply);
      v.category = std::move(r.category);
      page.rows.push_back(std::move(v));
    }
    if (page.rows.size() >= limit || ++read >= 50 * limit) return page;
  }
  if (auto s = FromRocks(it->status(), "exporting recipients"); !s.ok()) return s;
  page.done = true;
  return page;
}

absl::StatusOr<std::vector<RecipientView>> Spool::FindRecipient(
    std::string_view email, std::optional<CampaignId> campaign) const {
  std::vector<CampaignId> campaigns;
  if (campaign) {
    campaigns.push_back(*campaign);
  } else {
    for (const CampaignInfo& c : ListCampaigns()) campaigns.push_back(c.id);
  }
  std::vector<RecipientView> out;
  for (CampaignId c : campaigns) {
    const std::string begin = keys::Campaign(c);
    const std::string end = CampaignPrefixEnd(c);
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db_->NewIterator(ro, impl_->recipients_cf_));
    keys::RecipientRecord r;
    for (it->Seek(begin); it->Valid(); it->Next()) {
      if (!keys::DecodeRecord(it->value().ToStringView(), &r) ||
          !absl::EqualsIgnoreCase(r.email, absl::string_view(email.data(), email.size())))
        continue;
      const std::string_view key = it->key().ToStringView();
      if (key.size() != 16) continue;
      absl::StatusOr<RecipientView> v =
          GetRecipient(CampaignId{keys::GetU64(key, 0)}, RecipientId{keys::GetU64(key, 8)});
      if (v.ok()) out.push_back(std::move(*v));
    }
    if (auto s = FromRocks(it->status(), "scanning recipients"); !s.ok()) return s;
  }
  return out;
}

// ---- Suppression -----------------------------------------------------------

absl::Status Spool::AddSuppression(std::string_view email, std::string_view reason,
                                   bool case_sensitive_local) {
  absl::StatusOr<Address> a = ParseAddress(email);
  if (!a.ok())
    return absl::InvalidArgumentError(Cat("invalid address '", email, "': ", a.status().message()));
  nlohmann::json v = {{"reason", std::string(reason)},
                      {"added_us", keys::TimeToMicros(impl_->clock_->Now())}};
  impl_->MaySuppress();
  return FromRocks(impl_->db_->Put(impl_->SyncWrite(), impl_->suppression_cf_,
                                   a->Key(case_sensitive_local), v.dump()),
                   "adding to the suppression list");
}

absl::Status Spool::RemoveSuppression(std::string_view email, bool case_sensitive_local) {
  absl::StatusOr<Address> a = ParseAddress(email);
  // By default every entry that stops this address: its key and its exact form.
  std::vector<std::string> keys;
  if (!a.ok()) {
    keys.emplace_back(email);
  } else {
    keys.push_back(a->Key(case_sensitive_local));
    if (!case_sensitive_local && a->Mailbox() != keys[0]) keys.push_back(a->Mailbox());
  }
  rocksdb::WriteBatch batch;
  for (const std::string& key : keys)
    if (impl_->Suppressed(key)) batch.Delete(impl_->suppression_cf_, key);
  if (batch.Count() == 0)
    return absl::NotFoundError(Cat("'", email, "' is not on the suppression list"));
  return FromRocks(impl_->db_->Write(impl_->SyncWrite(), &batch),
                   "removing from the suppression list");
}

bool Spool::IsSuppressed(std::string_view email) const {
  absl::StatusOr<Address> a = ParseAddress(email);
  return a.ok() ? impl_->SuppressedMailbox(a->Mailbox()) : impl_->Suppressed(email);
}

absl::StatusOr<SuppressionEntry> Spool::GetSuppression(std::string_view email) const {
  absl::StatusOr<Address> a = ParseAddress(email);
  const std::string key = a.ok() ? a->Normalized() : std::string(email);
  std::string value;
  rocksdb::Status s = impl_->db_->Get(rocksdb::ReadOptions(), impl_->suppression_cf_, key, &value);
  if (s.IsNotFound()) return absl::NotFoundError(Cat(key, " is not on the suppression list"));
  if (!s.ok()) return FromRocks(s, "reading the suppression list");
  SuppressionEntry e;
  e.email = key;
  nlohmann::json v = nlohmann::json::parse(value, nullptr, false);
  if (v.is_object()) {
    e.reason = v.value("reason", "");
    e.added = keys::MicrosToTime(v.value("added_us", uint64_t{0}));
  }
  return e;
}

std::vector<SuppressionEntry> Spool::ListSuppression(size_t limit, std::string_view after) const {
  std::vector<SuppressionEntry> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db_->NewIterator(rocksdb::ReadOptions(), impl_->suppression_cf_));
  it->Seek(after);
  if (!after.empty() && it->Valid() && it->key().ToStringView() == after) it->Next();
  for (; it->Valid() && out.size() < limit; it->Next()) {
    SuppressionEntry e;
    e.email = it->key().ToString();
    nlohmann::json v = nlohmann::json::parse(it->value().ToStringView(), nullptr, false);
    if (v.is_object()) {
      e.reason = v.value("reason", "");
      e.added = keys::MicrosToTime(v.value("added_us", uint64_t{0}));
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace salvo::queue
