#pragma once
// One line of the delivery log: what happened to one recipient on one
// attempt, as one JSON object on one line (the schema is in README.md,
// "Delivery log"; PowerMTA's accounting file and KumoMTA's log records are
// the models). Operators load these lines into their own analytics.
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "engine/smtp/category.h"

namespace salvo::deliverylog {

// kComplaint: a feedback-loop (ARF) complaint about a delivered copy came back.
enum class RecordType : uint8_t {
  kDelivered,
  kDeferred,
  kBounced,
  kExpired,
  kSuppressed,
  kComplaint
};

std::string_view RecordTypeName(RecordType t);

// The fields of one line. Views: they need to live only until
// Producer::Write returns (the line is formatted there). Empty strings and
// zeros mean "not applicable" (no reply, no TLS, not attempted yet).
struct Record {
  absl::Time time;  // when the outcome happened
  RecordType type = RecordType::kDelivered;
  std::string_view campaign;  // the campaign's name
  uint64_t campaign_id = 0;
  std::string_view recipient;      // RCPT TO address
  std::string_view domain;         // the recipient's domain
  std::string_view mx_host;        // the host the attempt went to
  std::string_view mx_ip;          // its address
  int code = 0;                    // SMTP reply code; 0 = no reply (DNS, connect failure, expiry)
  std::string_view enhanced_code;  // RFC 3463 "5.1.1"
  std::string_view reply;  // the reply as received (lines joined with a space) or the reason
  smtp::Category category = smtp::Category::kNone;  // deferrals and bounces
  bool async = false;            // a bounce reported later by a bounce message (DSN)
  uint32_t attempt = 0;          // 1 = first attempt
  std::string_view tls_version;  // "TLSv1.3"; "" = plaintext
  uint64_t size = 0;             // message bytes sent (0 = none)
  int64_t latency_ms = 0;        // from the recipient's first attempt to this outcome
  std::string_view source_ip;    // the local address the connection came from
};

// Longest `reply` kept in a line; longer replies end in "...".
inline constexpr size_t kMaxReplyBytes = 2048;

// Appends `record` as one JSON line (ending in '\n') to `out`. Strings are
// escaped for JSON; bytes that are not valid UTF-8 become U+FFFD, so every
// line is valid JSON whatever a peer sent.
void AppendJsonLine(const Record& record, std::string* out);

// Appends `text` as a JSON string literal (quotes included).
void AppendJsonString(std::string_view text, std::string* out);

}  // namespace salvo::deliverylog
