// Reports received later (bounce messages, complaints, delay warnings,
// auto-replies): Spool::RecordReport and friends. Kept apart from spool.cc,
// which holds the attempt path.
//
// Storage (default column family):
//   "report/" ID                 JSON {campaign, recipient, effect, at_us}: applied once
//   "reports/" u64 campaign      5 x u64: ReportCounts
//   "reports/stray"              2 x u64: StrayReportCounts
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/common/strings.h"
#include "queue/address.h"
#include "queue/spool_impl.h"

namespace salvo::queue {
namespace {

std::string ReportIdKey(std::string_view id) { return Cat("report/", id); }
std::string ReportCountsKey(CampaignId c) {
  std::string k = "reports/";
  keys::PutU64(&k, Value(c));
  return k;
}
constexpr std::string_view kStrayKey = "reports/stray";

std::string EncodeReportCounts(const ReportCounts& c) {
  std::string v;
  for (uint64_t n :
       {c.async_bounces, c.async_soft_bounces, c.complaints, c.delayed, c.auto_replies})
    keys::PutU64(&v, n);
  return v;
}
ReportCounts DecodeReportCounts(std::string_view v) {
  ReportCounts c;
  uint64_t* fields[] = {&c.async_bounces, &c.async_soft_bounces, &c.complaints, &c.delayed,
                        &c.auto_replies};
  for (size_t i = 0; i < 5 && (i + 1) * 8 <= v.size(); ++i) *fields[i] = keys::GetU64(v, i * 8);
  return c;
}

std::string_view EffectName(Spool::ReportEffect e) {
  switch (e) {
    case Spool::ReportEffect::kHardBounce:
      return "hard-bounce";
    case Spool::ReportEffect::kSoftBounce:
      return "soft-bounce";
    case Spool::ReportEffect::kComplaint:
      return "complaint";
    case Spool::ReportEffect::kDelayed:
      return "delayed";
    case Spool::ReportEffect::kAutoReply:
      return "auto-reply";
  }
  return "";
}

OutcomeNotice::Source SourceOf(Spool::ReportEffect e) {
  switch (e) {
    case Spool::ReportEffect::kHardBounce:
      return OutcomeNotice::Source::kAsyncBounce;
    case Spool::ReportEffect::kSoftBounce:
      return OutcomeNotice::Source::kAsyncSoftBounce;
    case Spool::ReportEffect::kComplaint:
      return OutcomeNotice::Source::kComplaint;
    case Spool::ReportEffect::kDelayed:
      return OutcomeNotice::Source::kDelayed;
    case Spool::ReportEffect::kAutoReply:
      return OutcomeNotice::Source::kAutoReply;
  }
  return OutcomeNotice::Source::kAttempt;
}

// Reads "reports/..." (absent: zeros).
absl::StatusOr<std::string> GetOrEmpty(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                       std::string_view key, bool* found) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, key, &value);
  *found = s.ok();
  if (s.IsNotFound()) return std::string();
  if (!s.ok()) return FromRocks(s, "reading report counts");
  return value;
}

}  // namespace

absl::StatusOr<Spool::ReportApplied> Spool::RecordReport(const Report& report) {
  if (report.report_id.empty()) return absl::InvalidArgumentError("a report needs a report id");
  ReportApplied out;
  {
    Impl& m = *impl_;
    absl::MutexLock lock(&m.mu_);
    // Outcomes held through a storage fault go first: one of them may be this
    // recipient's, and written after the report it would undo it.
    if (!m.held_.empty() && !m.RetryHeld(/*force=*/true))
      return absl::UnavailableError(
          Cat("the spool cannot write now (", m.last_write_error_, "): report kept for later"));
    bool found = false;
    auto seen = GetOrEmpty(m.db_, m.default_cf_, ReportIdKey(report.report_id), &found);
    if (!seen.ok()) return seen.status();
    auto cit = m.campaigns_.find(Value(report.campaign));
    if (cit == m.campaigns_.end())
      return absl::NotFoundError(Cat("no campaign with ID ", Value(report.campaign)));
    CampaignEntry& e = cit->second;
    std::string value;
    rocksdb::Status s = m.db_->Get(rocksdb::ReadOptions(), m.recipients_cf_,
                                   keys::Recipient(report.campaign, report.id), &value);
    if (s.IsNotFound())
      return absl::NotFoundError(
          Cat("no recipient ", Value(report.id), " in campaign ", Value(report.campaign)));
    if (!s.ok()) return FromRocks(s, "reading recipient");
    keys::RecipientRecord r;
    if (!keys::DecodeRecord(value, &r)) return absl::DataLossError("corrupt recipient record");
    out.email = r.email;
    out.before = out.after = r.state;
    if (found) {
      out.duplicate = true;
      return out;
    }
    if (m.inflight_.contains({Value(report.campaign), Value(report.id)}))
      return absl::UnavailableError(Cat("campaign ", Value(report.campaign), " recipient ",
                                        Value(report.id),
                                        " is in flight (an attempt is running): retry later"));

    const absl::Time now = m.clock_->Now();
    const uint64_t now_us = keys::TimeToMicros(now);
    bool counts_found = false;
    auto counts_value =
        GetOrEmpty(m.db_, m.default_cf_, ReportCountsKey(report.campaign), &counts_found);
    if (!counts_value.ok()) return counts_value.status();
    ReportCounts counts = DecodeReportCounts(*counts_value);

    rocksdb::WriteBatch batch;
    StateCounts state_counts = e.counts;
    RecipientState to = r.state;
    bool history = false;
    std::string suppress_reason;
    switch (report.effect) {
      case ReportEffect::kHardBounce:
        counts.async_bounces++;
        history = true;
        suppress_reason = Cat("bounce: ", report.reply);
        if (r.state == RecipientState::kDelivered || r.state == RecipientState::kQueued ||
            r.state == RecipientState::kDeferred) {
          if (r.state != RecipientState::kDelivered)  // it was due again: no more attempts
            batch.Delete(m.schedule_cf_,
                         keys::Schedule(r.domain, r.next_us, report.campaign, report.id));
          to = RecipientState::kBounced;
        }
        break;
      case ReportEffect::kSoftBounce:
        counts.async_soft_bounces++;
        history = true;
        break;
      case ReportEffect::kComplaint:
        counts.complaints++;
        history = true;
        suppress_reason = Cat("complaint: ", report.reply.empty() ? "abuse" : report.reply);
        break;
      case ReportEffect::kDelayed:
        counts.delayed++;
        break;
      case ReportEffect::kAutoReply:
        counts.auto_replies++;
        break;
    }
    if (history) {
      keys::HistoryRecord h{now_us,          r.state,       to, report.reply,
                            report.category, report.detail, 0,  ""};
      m.PutHistory(&batch, report.campaign, report.id, &r, h);
    }
    if (to != r.state) {
      state_counts[r.state]--;
      state_counts[to]++;
      r.state = to;
      r.last_reply = report.reply;
      r.category = report.category;
      m.PutCounts(&batch, report.campaign, state_counts);
    }
    if (history)
      batch.Put(m.recipients_cf_, keys::Recipient(report.campaign, report.id),
                keys::EncodeRecord(r));
    if (!suppress_reason.empty()) {
      const std::string key = MailboxKey(r.email.substr(0, r.email.rfind('@') + 1) + r.domain);
      std::string existing;
      if (!m.db_->Get(rocksdb::ReadOptions(), m.suppression_cf_, key, &existing).ok()) {
        nlohmann::json v = {{"reason", suppress_reason}, {"added_us", now_us}};
        m.MaySuppress();
        batch.Put(m.suppression_cf_, key, v.dump());
        out.suppressed = true;
      }
    }
    batch.Put(m.default_cf_, ReportCountsKey(report.campaign), EncodeReportCounts(counts));
    nlohmann::json marker = {{"campaign", Value(report.campaign)},
                             {"recipient", Value(report.id)},
                             {"effect", std::string(EffectName(report.effect))},
                             {"at_us", now_us}};
    batch.Put(m.default_cf_, ReportIdKey(report.report_id), marker.dump());
    if (auto st = FromRocks(m.db_->Write(m.SyncWrite(), &batch), "recording a report"); !st.ok())
      return st;
    e.counts = state_counts;
    out.after = r.state;
    if (m.listener_) {
      OutcomeNotice n;
      n.at = now;
      n.campaign = report.campaign;
      n.id = report.id;
      n.campaign_name = e.info.name;
      n.email = r.email;
      n.domain = r.domain;
      n.to = r.state;
      n.attempts = r.attempts;
      n.first_attempt = m.FirstAttempt(report.campaign, report.id, r, 0);
      n.queued_at = keys::MicrosToTime(r.queued_us);
      n.reason = report.reply;
      n.source = SourceOf(report.effect);
      n.category = report.category;
      m.notices_.push_back(std::move(n));
    }
  }
  DeliverNotices();
  return out;
}

absl::StatusOr<bool> Spool::RecordStrayReport(std::string_view report_id, StrayReport kind) {
  if (report_id.empty()) return absl::InvalidArgumentError("a report needs a report id");
  {
    Impl& m = *impl_;
    absl::MutexLock lock(&m.mu_);
    bool found = false;
    auto seen = GetOrEmpty(m.db_, m.default_cf_, ReportIdKey(report_id), &found);
    if (!seen.ok()) return seen.status();
    if (found) return false;
    bool counts_found = false;
    auto v = GetOrEmpty(m.db_, m.default_cf_, kStrayKey, &counts_found);
    if (!v.ok()) return v.status();
    StrayReportCounts c;
    if (v->size() >= 16) {
      c.forged = keys::GetU64(*v, 0);
      c.unmatched = keys::GetU64(*v, 8);
    }
    (kind == StrayReport::kForged ? c.forged : c.unmatched)++;
    std::string enc;
    keys::PutU64(&enc, c.forged);
    keys::PutU64(&enc, c.unmatched);
    const absl::Time now = m.clock_->Now();
    nlohmann::json marker = {{"effect", kind == StrayReport::kForged ? "forged" : "unmatched"},
                             {"at_us", keys::TimeToMicros(now)}};
    rocksdb::WriteBatch batch;
    batch.Put(m.default_cf_, kStrayKey, enc);
    batch.Put(m.default_cf_, ReportIdKey(report_id), marker.dump());
    if (auto st = FromRocks(m.db_->Write(m.SyncWrite(), &batch), "recording a report"); !st.ok())
      return st;
    if (m.listener_) {
      OutcomeNotice n;
      n.at = now;
      n.source = kind == StrayReport::kForged ? OutcomeNotice::Source::kForged
                                              : OutcomeNotice::Source::kUnmatched;
      m.notices_.push_back(std::move(n));
    }
  }
  DeliverNotices();
  return true;
}

StrayReportCounts Spool::StrayReports() const {
  StrayReportCounts c;
  std::string v;
  if (impl_->db_->Get(rocksdb::ReadOptions(), impl_->default_cf_, kStrayKey, &v).ok() &&
      v.size() >= 16) {
    c.forged = keys::GetU64(v, 0);
    c.unmatched = keys::GetU64(v, 8);
  }
  return c;
}

absl::StatusOr<ReportCounts> Spool::Reports(CampaignId id) const {
  std::string v;
  rocksdb::Status s =
      impl_->db_->Get(rocksdb::ReadOptions(), impl_->default_cf_, ReportCountsKey(id), &v);
  if (s.IsNotFound()) return ReportCounts{};
  if (!s.ok()) return FromRocks(s, "reading report counts");
  return DecodeReportCounts(v);
}

}  // namespace salvo::queue
