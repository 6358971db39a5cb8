#pragma once
// What happens when a report arrives: one received message (a bounce, a
// delay warning, an ARF complaint, an auto-reply, or none of these) is read
// (ParseReport), classified with the same rules as synchronous replies
// (Classify), matched to the copy it is about, and applied to the spool.
//
// Matching, in order:
//   1. a VERP token (engine/message/verp.h) in the envelope recipient the
//      report was delivered to, else in the report's original envelope sender
//      (the returned Return-Path, or the ARF Original-Mail-From). The token
//      must verify (HMAC with the campaign's VERP secret, over campaign,
//      recipient and the stored address): a token that does not verify, or
//      names an unknown campaign or recipient, makes the report *forged*: it
//      is counted (salvo_reports_forged_total) and changes nothing.
//   2. without a token: the original Message-ID (<campaign.recipient.nonce@
//      sender domain>, from the report or its returned headers), when its
//      campaign and recipient exist, its domain is the campaign's sender
//      domain and the address the report names (if any) is that recipient's.
//   3. otherwise the report is *unmatched*: counted, nothing changes.
//
// Effects (queue::Spool::RecordReport, queue/spool_reports.cc):
//   bounce, hard (5.x.x)  the recipient becomes bounced (even if delivered:
//                         both the delivery and the bounce stay in its
//                         history) and the address is suppressed ("bounce");
//   bounce, soft (4.x.x)  a line in the history, no state change, counted as
//                         a soft async bounce (the receiver may still deliver);
//   complaint             the address is suppressed ("complaint"), a history
//                         line, counted as a complaint; the state stays;
//   delayed, auto-reply   nothing changes; counted per campaign.
//
// Idempotent: the spool remembers every report id it applied, so a report
// processed twice (a crash between recording it and acknowledging it) is
// applied once. The id is IntakeOptions::report_id, else the SHA-256 of the
// raw message.
//
// Thread-safety: ProcessReport may be called from any thread, concurrently
// (the Spool serializes its writes). IntakeOptions is read-only during a call.
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/bounce/report.h"
#include "engine/message/verp.h"
#include "engine/smtp/classifier.h"
#include "queue/campaign.h"
#include "queue/spool.h"

namespace salvo::bounce {

struct IntakeOptions {
  // The bounce rules (shaping::BuildClassifier: the shipped rules plus the
  // user's). Null: every failed recipient is "other" (still hard on 5.x.x).
  const smtp::Classifier* classifier = nullptr;
  // The global [verp] settings: their secret verifies the tokens of
  // campaigns without a verp_secret_file of their own.
  message::VerpSettings verp;
  // The idempotence key of this report (e.g. the inbound listener's record
  // key); "" = the SHA-256 of the raw message.
  std::string report_id;
  ParseLimits limits;
};

// What ProcessReport did.
enum class IntakeOutcome : uint8_t {
  kApplied,     // matched one copy and recorded (a state change or just a count)
  kDuplicate,   // this report id was applied before: nothing done again
  kForged,      // a VERP token that does not verify, or an unknown campaign/recipient
  kUnmatched,   // a report, but it identifies no copy of ours
  kNotAReport,  // an ordinary message, or unreadable as a report
};
std::string_view IntakeOutcomeName(IntakeOutcome o);  // "applied", "duplicate", ...

struct IntakeResult {
  IntakeOutcome outcome = IntakeOutcome::kNotAReport;
  ReportKind kind = ReportKind::kNotAReport;
  std::string report_id;
  // How the copy was found: "verp", "message-id", "" when not found.
  std::string matched_by;
  queue::CampaignId campaign{};
  queue::RecipientId recipient{};
  std::string email;  // the recipient's address as stored
  queue::RecipientState before = queue::RecipientState::kQueued;
  queue::RecipientState after = queue::RecipientState::kQueued;
  bool suppressed = false;  // the address was added to the suppression list
  bool hard = false;        // a bounce: permanent
  std::string reply;        // "550 5.1.1 ..." as recorded, or the complaint's feedback type
  std::string category;     // the classifier's category name
  std::string why;          // one line for the log: what was decided and why
};

// Processes one received message addressed to `envelope_rcpt` (the RCPT TO
// it was received for; "" when unknown). Errors only when the spool cannot
// record the outcome (the caller keeps the message and retries); a hostile
// or unreadable message is an IntakeResult (kNotAReport, kForged,
// kUnmatched), never an error.
absl::StatusOr<IntakeResult> ProcessReport(queue::Spool& spool, const IntakeOptions& options,
                                           std::string_view raw, std::string_view envelope_rcpt);

}  // namespace salvo::bounce
