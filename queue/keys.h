#pragma once
// Key and value encoding of the spool's column families. Integers in keys are
// big-endian so RocksDB's bytewise order is numeric order and range scans
// (one campaign's recipients, one domain's due entries) are prefix scans.
//
//   CF            key                                            value
//   default       "next_campaign" | "counts/" u64 campaign          u64 | 8 x u64
//                 "reports/" u64 campaign | "reports/stray"    5 x u64 ReportCounts | 2 x u64
//                 "report/" ID (an applied report)             JSON (queue/spool_reports.cc)
//   campaigns     u64 campaign                                   JSON CampaignInfo
//   templates     u64 campaign                                   template text
//   recipients    u64 campaign, u64 recipient                    RecipientRecord (binary)
//   schedule      domain, 0x00, u64 due_us, u64 campaign, u64 rcpt  (empty)
//   inflight      (unused since in-flight state is kept in memory; kept so old spools open)
//   history       u64 campaign, u64 recipient, u32 seq           HistoryEntry (binary)
//   suppression   normalized address                             JSON {reason, added}
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "queue/campaign.h"

namespace salvo::queue::keys {

inline void PutU64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (i * 8)) & 0xFF));
}
inline void PutU32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (i * 8)) & 0xFF));
}
inline uint64_t GetU64(std::string_view s, size_t at = 0) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}
inline uint32_t GetU32(std::string_view s, size_t at = 0) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

inline std::string Campaign(CampaignId c) {
  std::string k;
  PutU64(&k, Value(c));
  return k;
}
inline std::string Recipient(CampaignId c, RecipientId r) {
  std::string k;
  k.reserve(16);
  PutU64(&k, Value(c));
  PutU64(&k, Value(r));
  return k;
}
inline std::string History(CampaignId c, RecipientId r, uint32_t seq) {
  std::string k = Recipient(c, r);
  PutU32(&k, seq);
  return k;
}
inline std::string Counts(CampaignId c) {
  std::string k = "counts/";
  PutU64(&k, Value(c));
  return k;
}
inline uint64_t TimeToMicros(absl::Time t) {
  int64_t us = absl::ToUnixMicros(t);
  return us < 0 ? 0 : static_cast<uint64_t>(us);
}
inline absl::Time MicrosToTime(uint64_t us) {
  return absl::FromUnixMicros(static_cast<int64_t>(us));
}

struct ScheduleKey {
  std::string_view domain;
  uint64_t due_us = 0;
  CampaignId campaign{};
  RecipientId recipient{};
};
inline std::string Schedule(std::string_view domain, uint64_t due_us, CampaignId c, RecipientId r) {
  std::string k;
  k.reserve(domain.size() + 25);
  k.append(domain);
  k.push_back('\0');
  PutU64(&k, due_us);
  PutU64(&k, Value(c));
  PutU64(&k, Value(r));
  return k;
}
// The smallest key after every key of `domain`.
inline std::string ScheduleDomainEnd(std::string_view domain) {
  std::string k(domain);
  k.push_back('\x01');
  return k;
}
inline bool ParseSchedule(std::string_view k, ScheduleKey* out) {
  if (k.size() < 25 || k[k.size() - 25] != '\0') return false;
  out->domain = k.substr(0, k.size() - 25);
  out->due_us = GetU64(k, k.size() - 24);
  out->campaign = CampaignId{GetU64(k, k.size() - 16)};
  out->recipient = RecipientId{GetU64(k, k.size() - 8)};
  return true;
}

struct HistoryRecord;

// A first-attempt delivery kept in the recipient's record instead of a
// history row (Spool::Options::history_for_first_deliveries off): when it
// happened, when it was leased, the state it left and the host. Its reply and
// category are the record's last_reply and category. Spool::History shows it
// as the row it stands for; a later history row writes it out first.
struct DeliveredAttempt {
  uint64_t at_us = 0;
  uint64_t lease_us = 0;
  RecipientState from = RecipientState::kQueued;
  std::string detail;  // the host ("mx.example[192.0.2.1]:25")
};

// The persistent form of one recipient.
struct RecipientRecord {
  RecipientState state = RecipientState::kQueued;
  uint32_t attempts = 0;
  uint32_t transitions = 0;  // number of history entries written
  uint64_t queued_us = 0;
  uint64_t next_us = 0;  // next attempt (meaningful when queued/deferred)
  std::string email;
  std::string domain;
  std::vector<std::string> values;
  std::string last_reply;
  std::string category;
  // Optional on disk (records written with history rows for every attempt,
  // and older ones, end before it).
  bool has_delivered_attempt = false;
  DeliveredAttempt delivered_attempt;
};
std::string EncodeRecord(const RecipientRecord& r);
bool DecodeRecord(std::string_view data, RecipientRecord* r);

// One attempt or operator/expiry transition. An attempt (lease_us != 0) stands
// for two transitions: from -> in_flight at lease_us, in_flight -> to at at_us.
struct HistoryRecord {
  uint64_t at_us = 0;
  RecipientState from = RecipientState::kQueued;
  RecipientState to = RecipientState::kQueued;
  std::string reply;
  std::string category;
  std::string detail;
  uint64_t lease_us = 0;
  // Failure scope of an attempt that failed ("recipient", "message",
  // "connection", "site"); "" otherwise. Optional on disk (older records end
  // before it).
  std::string scope = {};
};
std::string EncodeHistory(const HistoryRecord& h);
bool DecodeHistory(std::string_view data, HistoryRecord* h);

std::string EncodeCounts(const StateCounts& c);
bool DecodeCounts(std::string_view data, StateCounts* c);

std::string EncodeCampaign(const CampaignInfo& info);
absl::StatusOr<CampaignInfo> DecodeCampaign(std::string_view data);

}  // namespace salvo::queue::keys
