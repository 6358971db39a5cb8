#pragma once
// 8BITMIME downgrade of an already rendered message (RFC 6152 section 3):
// every leaf part that carries 8-bit octets in its body and is not already
// quoted-printable/base64 is re-encoded as quoted-printable, its
// Content-Transfer-Encoding header replaced (or added). Headers must already
// be 7-bit (Template::Render guarantees that unless the recipient address
// itself needs SMTPUTF8).
//
// Prefer rendering with RenderContext::allow_8bit = false when the server is
// known in advance: a DKIM signature must cover the bytes actually sent, so a
// downgraded copy must be (re-)signed after this call. Pure function, any
// thread.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace salvo::message {

// Appends the 7-bit version of `message` (CRLF line ends) to *out. Returns
// true if anything was re-encoded (false: *out got an exact copy).
// FailedPrecondition if a header field carries 8-bit octets (needs SMTPUTF8).
absl::StatusOr<bool> DowngradeTo7bit(std::string_view message, std::string* out);

}  // namespace salvo::message
