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

// Address identity: what is sent and what is compared are kept apart. The
// local part is sent exactly as written (RFC 5321 lets a server tell
// "Ann" from "ann"), but in practice no mailbox provider does, so by default
// de-duplication and the suppression list compare on a key with the local
// part lower-cased too (ASCII letters; UTF-8 local parts are not case-folded).
// `--case-sensitive-local-parts` keeps the local part's case in the key.
// The domain is always compared lower-cased.
struct Address {
  std::string local;   // as written (quoted local parts keep their quotes)
  std::string domain;  // lower-cased ASCII; an internationalised domain in A-label form
  // local@domain as it goes in RCPT TO (local part as written).
  std::string Mailbox() const { return local + "@" + domain; }
  // The identity key: local part ASCII-lower-cased unless
  // `case_sensitive_local`, @, the domain.
  std::string Key(bool case_sensitive_local = false) const;
  // The default identity key (Key(false)): what dedupe, fleet shares and the
  // suppression list compare on.
  std::string Normalized() const { return Key(false); }
};

// The default identity key of a stored mailbox ("Ann@one.example" ->
// "ann@one.example"); the domain part is already lower-case when stored.
std::string MailboxKey(std::string_view mailbox);

// Validates one address. Surrounding ASCII spaces are ignored. The error
// message says what is wrong (without the address itself).
absl::StatusOr<Address> ParseAddress(std::string_view text);

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view text);

}  // namespace salvo::queue
