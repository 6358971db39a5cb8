#pragma once
// A campaign's message template: an RFC 5322 message (single part or MIME)
// with {{column}} / {{column|default}} placeholders in headers and bodies.
//
// Parsed ONCE per campaign (Template::Parse), bound once to the recipient CSV
// columns (Template::Bind), then rendered per copy (Template::Render) in one
// pass over pre-encoded segments: no re-parsing, output appended into a
// caller-provided std::string so its capacity is reused.
//
// Ownership/threads: a Template and a ColumnBinding are immutable after
// construction and may be shared read-only by every shard thread. Render keeps
// small per-thread scratch buffers (thread_local), so it is safe to call
// concurrently from many threads.
//
// What the engine owns (added per copy, rejected in templates with a file:line
// error): Message-ID, Date, To, List-Unsubscribe, List-Unsubscribe-Post,
// Feedback-ID. Also rejected: Bcc, Return-Path, Received, DKIM-Signature,
// Content-Length. See engine/message/README.md for the template language.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace salvo::message {

// Maps each template variable (in Template::variables() order) to an index in
// the recipient's CSV row, or -1 when the column is absent (default applies).
class ColumnBinding {
 public:
  ColumnBinding() = default;
  const std::vector<int32_t>& column_of_variable() const { return column_of_variable_; }
  size_t column_count() const { return column_count_; }

 private:
  friend class Template;
  std::vector<int32_t> column_of_variable_;
  size_t column_count_ = 0;
};

// List-Unsubscribe settings (RFC 2369 + RFC 8058). Empty https_base → no
// List-Unsubscribe / List-Unsubscribe-Post headers at all.
struct UnsubscribeSettings {
  std::string_view https_base;  // "https://u.example.com/unsubscribe" (must be https://)
  std::string_view mailto;      // optional "unsubscribe@example.com"
  std::string_view secret;      // HMAC-SHA256 key for the token (required with https_base)
};

// Everything that differs per copy. All views must outlive the Render call.
struct RenderContext {
  const ColumnBinding* binding = nullptr;     // from Template::Bind
  absl::Span<const std::string_view> values;  // the recipient's CSV row, column order
  std::string_view recipient;                 // envelope RCPT TO; becomes the To header
  std::string_view campaign_id;               // [A-Za-z0-9._-]; Message-ID + token
  std::string_view recipient_id;              // [A-Za-z0-9._-]; Message-ID
  std::string_view sender_domain;             // right-hand side of the Message-ID
  std::string_view from_address;              // used only if the template has no From header
  absl::Time date = absl::UnixEpoch();        // the Date header
  UnsubscribeSettings unsubscribe;
  std::string_view feedback_id;   // optional Feedback-ID value (printable ASCII)
  bool allow_8bit = true;         // the server offers 8BITMIME
  uint64_t message_id_nonce = 0;  // 0: a fresh random value per copy
  // One copy for several recipients (a template without per-recipient
  // values, sent in one transaction): the To header is the empty group
  // "undisclosed-recipients:;" instead of `recipient` (still checked, and the
  // Message-ID's recipient id is the first recipient's).
  bool undisclosed_recipients = false;
};

// What the SMTP client needs to know about the rendered copy.
struct RenderResult {
  bool needs_8bitmime = false;  // some part went out as 8bit: MAIL FROM ... BODY=8BITMIME
  bool needs_smtputf8 = false;  // the recipient (To) is an internationalised address: SMTPUTF8
};

class Template {
 public:
  // Parses template text (LF or CRLF line ends). Errors name file_name:line,
  // e.g. an unbalanced "{{", a bad placeholder name, a malformed header block,
  // a header line over 998 octets, a placeholder where it cannot be made safe,
  // a header the engine owns, a MIME part with an unsupported
  // Content-Transfer-Encoding, a missing multipart boundary.
  static absl::StatusOr<Template> Parse(std::string_view text, std::string_view file_name);

  // Every placeholder without a default must have a column. The error names
  // the placeholder and its first file:line.
  absl::Status CheckColumns(const std::vector<std::string>& columns) const;

  // Resolves placeholders to column indices once per campaign (CheckColumns +
  // index lookup). The binding is then passed in every RenderContext.
  absl::StatusOr<ColumnBinding> Bind(const std::vector<std::string>& columns) const;

  // Appends one complete copy (CRLF line ends, no dot-stuffing, not signed)
  // to *out. Fails (InvalidArgument, naming what) if the recipient, ids or
  // settings are unusable; recipient values never cause a failure: they are
  // encoded so they cannot add headers or MIME boundaries. On failure *out is
  // restored to its previous size.
  absl::StatusOr<RenderResult> Render(const RenderContext& ctx, std::string* out) const;

  // Distinct placeholder names, in order of first appearance.
  const std::vector<std::string>& variables() const { return variables_; }
  // Some body part holds a placeholder. When not, every copy of the campaign
  // has the same body bytes (headers differ: To, Date, Message-ID, ...).
  bool BodyHasPlaceholders() const;
  // The addr-spec of the template's From header ("" if none).
  const std::string& from_address() const { return from_address_; }
  const std::string& file_name() const { return file_name_; }

  struct Impl;  // defined in template.cc (parsed, pre-encoded form)

  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;
  ~Template();

 private:
  Template();
  std::vector<std::string> variables_;
  std::string from_address_;
  std::string file_name_;
  std::unique_ptr<Impl> impl_;
};

// True if the address needs SMTPUTF8 (any octet >= 0x80).
bool AddressNeedsSmtpUtf8(std::string_view address);

}  // namespace salvo::message
