#include "queue/keys.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"

namespace salvo::queue::keys {

namespace {

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutBytes(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view d) : d_(d) {}
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) return false;
      unsigned char c = static_cast<unsigned char>(d_[pos_++]);
      *v |= static_cast<uint64_t>(c & 0x7F) << shift;
      if ((c & 0x80) == 0) return true;
    }
    return false;
  }
  bool Bytes(std::string* s) {
    uint64_t n;
    if (!Varint(&n) || n > d_.size() - pos_) return false;
    s->assign(d_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool Byte(uint8_t* b) {
    if (pos_ >= d_.size()) return false;
    *b = static_cast<uint8_t>(d_[pos_++]);
    return true;
  }
  bool done() const { return pos_ == d_.size(); }

 private:
  std::string_view d_;
  size_t pos_ = 0;
};

constexpr uint8_t kRecordVersion = 1;
// Marks the optional DeliveredAttempt at the end of a record.
constexpr uint8_t kDeliveredAttemptTag = 1;

}  // namespace

std::string EncodeRecord(const RecipientRecord& r) {
  std::string out;
  // Sized for the worst case, so the record is built in one allocation: the
  // fixed part is at most 2 bytes and 5 varints of 10, each string has a
  // varint length of at most 10 (a grow here was a copy per completion).
  size_t est = 2 + 5 * 10 + 4 * 10 + r.email.size() + r.domain.size() + r.last_reply.size() +
               r.category.size();
  for (const auto& v : r.values) est += v.size() + 10;
  if (r.has_delivered_attempt) est += 1 + 2 * 10 + 1 + 10 + r.delivered_attempt.detail.size();
  out.reserve(est);
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(r.state));
  PutVarint(&out, r.attempts);
  PutVarint(&out, r.transitions);
  PutVarint(&out, r.queued_us);
  PutVarint(&out, r.next_us);
  PutBytes(&out, r.email);
  PutBytes(&out, r.domain);
  PutVarint(&out, r.values.size());
  for (const auto& v : r.values) PutBytes(&out, v);
  PutBytes(&out, r.last_reply);
  PutBytes(&out, r.category);
  if (r.has_delivered_attempt) {
    const DeliveredAttempt& a = r.delivered_attempt;
    out.push_back(static_cast<char>(kDeliveredAttemptTag));
    PutVarint(&out, a.at_us);
    PutVarint(&out, a.lease_us);
    out.push_back(static_cast<char>(a.from));
    PutBytes(&out, a.detail);
  }
  return out;
}

bool DecodeRecord(std::string_view data, RecipientRecord* r) {
  Reader in(data);
  uint8_t version, state;
  uint64_t attempts, transitions, n;
  if (!in.Byte(&version) || version != kRecordVersion || !in.Byte(&state) ||
      state >= kNumRecipientStates || !in.Varint(&attempts) || !in.Varint(&transitions) ||
      !in.Varint(&r->queued_us) || !in.Varint(&r->next_us) || !in.Bytes(&r->email) ||
      !in.Bytes(&r->domain) || !in.Varint(&n) || n > data.size()) {
    return false;
  }
  r->state = static_cast<RecipientState>(state);
  r->attempts = static_cast<uint32_t>(attempts);
  r->transitions = static_cast<uint32_t>(transitions);
  r->values.resize(n);
  for (auto& v : r->values)
    if (!in.Bytes(&v)) return false;
  if (!in.Bytes(&r->last_reply) || !in.Bytes(&r->category)) return false;
  r->has_delivered_attempt = false;
  if (in.done()) return true;
  uint8_t tag, from;
  DeliveredAttempt& a = r->delivered_attempt;
  if (!in.Byte(&tag) || tag != kDeliveredAttemptTag || !in.Varint(&a.at_us) ||
      !in.Varint(&a.lease_us) || !in.Byte(&from) || from >= kNumRecipientStates ||
      !in.Bytes(&a.detail) || !in.done())
    return false;
  a.from = static_cast<RecipientState>(from);
  r->has_delivered_attempt = true;
  return true;
}

std::string EncodeHistory(const HistoryRecord& h) {
  std::string out;
  PutVarint(&out, h.at_us);
  out.push_back(static_cast<char>(h.from));
  out.push_back(static_cast<char>(h.to));
  PutBytes(&out, h.reply);
  PutBytes(&out, h.category);
  PutBytes(&out, h.detail);
  PutVarint(&out, h.lease_us);
  if (!h.scope.empty()) PutBytes(&out, h.scope);
  return out;
}

bool DecodeHistory(std::string_view data, HistoryRecord* h) {
  Reader in(data);
  uint8_t from, to;
  if (!in.Varint(&h->at_us) || !in.Byte(&from) || !in.Byte(&to) || from >= kNumRecipientStates ||
      to >= kNumRecipientStates) {
    return false;
  }
  h->from = static_cast<RecipientState>(from);
  h->to = static_cast<RecipientState>(to);
  if (!in.Bytes(&h->reply) || !in.Bytes(&h->category) || !in.Bytes(&h->detail) ||
      !in.Varint(&h->lease_us))
    return false;
  h->scope.clear();
  return in.done() || (in.Bytes(&h->scope) && in.done());
}

std::string EncodeCounts(const StateCounts& c) {
  std::string out;
  for (uint64_t v : c.n) PutU64(&out, v);
  return out;
}

bool DecodeCounts(std::string_view data, StateCounts* c) {
  if (data.size() != 8 * kNumRecipientStates) return false;
  for (size_t i = 0; i < kNumRecipientStates; ++i) c->n[i] = GetU64(data, i * 8);
  return true;
}

std::string EncodeCampaign(const CampaignInfo& info) {
  nlohmann::json j;
  j["id"] = Value(info.id);
  j["name"] = info.name;
  j["from"] = info.from;
  j["dkim_domain"] = info.dkim_domain;
  j["egress_pool"] = info.egress_pool;
  if (info.window.set)
    j["window"] = {{"start_minute", info.window.start_minute},
                   {"end_minute", info.window.end_minute},
                   {"days", info.window.days},
                   {"timezone", info.window.timezone}};
  j["template_path"] = info.template_path;
  j["recipients_path"] = info.recipients_path;
  j["state"] = static_cast<int>(info.state);
  j["created_us"] = TimeToMicros(info.created);
  j["columns"] = info.columns;
  j["options"] = info.options;
  if (!info.pause_reason.empty()) j["pause_reason"] = info.pause_reason;
  if (!info.checksum.empty()) j["checksum"] = info.checksum;
  j["retry"] = {
      {"first_retry_min_s", absl::ToDoubleSeconds(info.retry.first_retry_min)},
      {"first_retry_max_s", absl::ToDoubleSeconds(info.retry.first_retry_max)},
      {"multiplier", info.retry.multiplier},
      {"max_delay_s", absl::ToDoubleSeconds(info.retry.max_delay)},
      {"max_age_s", absl::ToDoubleSeconds(info.retry.max_age)},
  };
  return j.dump();
}

absl::StatusOr<CampaignInfo> DecodeCampaign(std::string_view data) {
  nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("corrupt campaign record");
  try {
    CampaignInfo info;
    info.id = CampaignId{j.at("id").get<uint64_t>()};
    info.name = j.at("name").get<std::string>();
    info.from = j.at("from").get<std::string>();
    info.dkim_domain = j.at("dkim_domain").get<std::string>();
    info.egress_pool = j.value("egress_pool", "");  // absent in older spools
    if (j.contains("window")) {
      const auto& w = j["window"];
      info.window.set = true;
      info.window.start_minute = w.at("start_minute").get<int>();
      info.window.end_minute = w.at("end_minute").get<int>();
      info.window.days = w.at("days").get<uint8_t>();
      info.window.timezone = w.at("timezone").get<std::string>();
    }
    info.template_path = j.at("template_path").get<std::string>();
    info.recipients_path = j.at("recipients_path").get<std::string>();
    info.state = static_cast<CampaignState>(j.at("state").get<int>());
    info.created = MicrosToTime(j.at("created_us").get<uint64_t>());
    info.columns = j.at("columns").get<std::vector<std::string>>();
    info.options = j.at("options").get<std::map<std::string, std::string>>();
    info.pause_reason = j.value("pause_reason", "");  // absent in older spools
    info.checksum = j.value("checksum", "");
    const auto& r = j.at("retry");
    info.retry.first_retry_min = absl::Seconds(r.at("first_retry_min_s").get<double>());
    info.retry.first_retry_max = absl::Seconds(r.at("first_retry_max_s").get<double>());
    info.retry.multiplier = r.at("multiplier").get<double>();
    info.retry.max_delay = absl::Seconds(r.at("max_delay_s").get<double>());
    info.retry.max_age = absl::Seconds(r.at("max_age_s").get<double>());
    return info;
  } catch (const nlohmann::json::exception& e) {
    // Control-plane only: corrupt metadata is reported, never fatal.
    return absl::DataLossError(std::string("corrupt campaign record: ") + e.what());
  }
}

}  // namespace salvo::queue::keys
