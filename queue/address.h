#pragma once
// Recipient address syntax (RFC 5321 Mailbox, with RFC 6531 UTF-8 and IDN
// U-label domains allowed). Pure functions; no DNS.
//
// Internationalised domains are converted to their A-label (xn--) form here,
// at load, with libidn2 (IDNA2008 + UTS #46 mapping): that is the form DNS is
// asked for and RCPT TO carries, so a server without SMTPUTF8 still accepts
// the mail when only the domain is non-ASCII.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace salvo::queue {

struct Address {
  std::string local;   // as written (quoted local parts keep their quotes)
  std::string domain;  // lower-cased ASCII; an internationalised domain in A-label form
  // local@domain as it goes in RCPT TO (local part as written).
  std::string Mailbox() const { return local + "@" + domain; }
  // local@domain: the form used for dedupe and the suppression list.
  std::string Normalized() const { return local + "@" + domain; }
};

// Validates one address. Surrounding ASCII spaces are ignored. The error
// message says what is wrong (without the address itself).
absl::StatusOr<Address> ParseAddress(std::string_view text);

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view text);

}  // namespace salvo::queue
