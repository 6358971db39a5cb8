#pragma once
// Reports that come back later: one received message (a bounce, a delay
// warning, a complaint, an auto-reply, or none of these) read into a Report
// that says which recipients failed, how, and which copy they belong to.
//
// Recognised: RFC 3464 multipart/report DSNs, RFC 5965 ARF feedback reports,
// Amazon SES JSON notifications, RFC 3834 auto-replies (and the usual
// X-Autoreply headers and out-of-office subjects), and the plain-text bounces
// of MTAs and providers that send no DSN (qmail, Exim, old Sendmail,
// Exchange, Gmail, Yahoo, ...), which are read by anchoring on the failed
// address and the SMTP reply or RFC 3463 status near it.
//
// MIME is parsed with GMime 3. Hostile input never crashes: the message size,
// the number of MIME parts (hence GMime's recursion), fields and recipients
// are bounded, and no exception leaves this module.
//
// Thread-safety: ParseReport may be called from any thread, concurrently; the
// first call runs g_mime_init() exactly once (absl::call_once), and nothing
// else here has shared state. A Report is a plain value.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/smtp/category.h"
#include "engine/smtp/classifier.h"

namespace salvo::bounce {

enum class ReportKind : uint8_t {
  kNotAReport,  // an ordinary message (or one we cannot read as a report)
  kBounce,      // at least one recipient failed for good or was given up on
  kDelayed,     // a delivery delay warning (action=delayed): not a bounce
  kComplaint,   // an ARF feedback report (abuse, fraud, ...), or a provider's complaint
  kAutoReply,   // vacation, out-of-office, RFC 3834 auto-replied: not a bounce
};
std::string_view ReportKindName(
    ReportKind k);  // "bounce", "delayed", "complaint", "auto-reply", "not-a-report"

// One recipient of the original copy, as the report describes it.
struct FailedRecipient {
  std::string final_recipient;     // the address that failed (lower-cased domain kept as sent)
  std::string original_recipient;  // Original-Recipient, when the report gives one
  std::string action;              // failed, delayed, ... ("failed" when a text bounce says so)
  std::string status;              // RFC 3463 "5.1.1"; inferred from the reply code when absent
  std::string diagnostic_code;     // "smtp; 550 5.1.1 ... User unknown", or the text's reply line
  std::string remote_mta;          // the host that refused it, when known
  // Filled by Classify (not by ParseReport).
  smtp::Category category = smtp::Category::kNone;
  bool hard = false;  // a permanent failure (5.x.x): the address will not work as it is
  std::string rule;   // the classification rule that matched, "" for none
  std::string reply;  // the reply line the rules were matched against
};

// The ARF fields of a complaint (RFC 5965 section 3.1).
struct Complaint {
  std::string feedback_type;  // abuse, fraud, virus, not-spam, auth-failure, other ...
  std::string user_agent;
  std::string version;
  std::string original_rcpt_to;    // Original-Rcpt-To: whose mailbox complained
  std::string original_mail_from;  // Original-Mail-From: our envelope sender (VERP)
  std::string arrival_date;
  std::string source_ip;
  std::string reported_domain;
};

struct Report {
  ReportKind kind = ReportKind::kNotAReport;
  // How it was read: "rfc3464", "arf", "amazonses-json", "text", "rfc3834",
  // "" for not a report.
  std::string format;
  std::string reporting_mta;  // Reporting-MTA, when given
  std::string subject;        // the report's own Subject (decoded)
  std::string from;           // the report's own From
  std::vector<FailedRecipient> recipients;
  std::optional<Complaint> complaint;
  // What identifies the original copy (for a matcher that finds campaign and
  // recipient): its Message-ID, envelope sender (Return-Path, or the ARF
  // Original-Mail-From), and its headers as returned (text/rfc822-headers,
  // the head of a message/rfc822 part, or the quoted copy in a text bounce),
  // bounded to ParseLimits::max_original_headers bytes.
  std::string original_message_id;
  std::string original_return_path;
  std::string original_headers;
  std::string feedback_id;  // Feedback-ID / X-Feedback-ID of the original, if any
};

struct ParseLimits {
  size_t max_message_bytes = 16u << 20;     // larger input: kInvalidArgument
  size_t max_mime_parts = 256;              // more Content-Type headers: kInvalidArgument
  size_t max_recipients = 1000;             // further recipients are dropped
  size_t max_fields = 2000;                 // header fields read per block
  size_t max_original_headers = 64u << 10;  // bytes of original_headers kept
};

// Reads one received message (RFC 5322, LF or CRLF line ends). Errors only for
// input out of bounds or not parseable as a message at all; anything else
// that is not a report is a Report of kind kNotAReport.
absl::StatusOr<Report> ParseReport(std::string_view message, const ParseLimits& limits = {});

// Classifies each recipient with the same rules as synchronous replies: the
// diagnostic code (or status and text) is matched as a reply line
// ("550 5.1.1 text") against `rules` (shaping::BuildClassifier); no match is
// "other". Hard when the status (else the reply code) is 5.x.x and the action
// is not "delayed"; soft otherwise. `rules` may be null: everything is "other".
void Classify(Report* report, const smtp::Classifier* rules);

}  // namespace salvo::bounce
