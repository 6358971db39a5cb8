#pragma once
// The ONE place that decides what a failure means (STYLE habit 7, after
// Postfix smtp_trouble.c): every reply, timeout, TLS failure, lost or failed
// connection and DNS failure maps to an Outcome — disposition (delivered /
// deferred / bounced), scope (recipient / message / connection / site), kind
// and category. The session, the engine and the resolver call only these
// functions; nothing else invents an Outcome.
//
// Pure functions, no state: callable from any thread.
#include <string>
#include <string_view>

#include "engine/smtp/outcome.h"

namespace salvo::smtp {

// Which command (or wait) a reply or failure belongs to.
enum class Phase : uint8_t {
  kConnect,
  kGreeting,
  kEhlo,  // EHLO and the HELO fallback
  kStartTls,
  kTlsHandshake,
  kAuth,
  kMail,
  kRcpt,
  kData,     // the reply to DATA (354 expected)
  kDataEnd,  // the reply after the final dot or BDAT ... LAST
  kRset,
  kQuit,
};
std::string_view PhaseName(Phase p);

// A reply to a command in `phase`. 2xx after kDataEnd (or for BDAT LAST) is
// delivered; 421 anywhere is a site-wide deferral; 4xx deferred, 5xx bounced,
// with the scope the phase implies (RCPT: recipient; MAIL/DATA/end: message;
// greeting/EHLO/STARTTLS/AUTH: site). 5xx greetings are deferred (like
// Postfix smtp_skip_5xx_greeting): another MX or a later try may work.
Outcome OutcomeForReply(const Reply& reply, Phase phase, std::string_view host);

// The recipient was accepted and the message was delivered with `reply`.
Outcome OutcomeDelivered(const Reply& reply, std::string_view host);

// A per-phase deadline expired. Deferred, connection scope.
Outcome OutcomeForTimeout(Phase phase, std::string_view host);

// The peer closed or reset the connection during `phase`. Deferred,
// connection scope.
Outcome OutcomeForConnectionLost(Phase phase, std::string_view host);

// The peer sent something that is not SMTP (garbage, over-long lines,
// mismatched multi-line codes). Deferred, connection scope.
Outcome OutcomeForProtocolError(std::string_view detail, std::string_view host);

// TLS failed: handshake error, certificate verification failure, or
// STARTTLS not offered / refused while the destination requires TLS.
// Deferred; site scope when TLS was required (policy: every connection to the
// site will fail the same way), connection scope when it was opportunistic
// (the engine may retry without TLS).
Outcome OutcomeForTlsFailure(std::string_view detail, bool tls_required, std::string_view host);

// AUTH was required by our configuration and failed (no mechanism in common,
// refused, or not allowed without TLS). Deferred, site scope, category "auth".
Outcome OutcomeForAuthFailure(const Reply& reply, std::string_view detail, std::string_view host);

// A TCP connect failed with `err` (an errno value, positive or negative).
// Deferred, site scope, category "connection" (or "timeout" for ETIMEDOUT).
Outcome OutcomeForConnectFailure(int err, std::string_view host);

// Why resolving a destination failed; the resolver (engine/dns) types every
// failure with one of these (dns::FailureOf reads it back from its status).
enum class DnsFailure : uint8_t {
  kNxDomain,      // the domain does not exist: bounced
  kNullMx,        // RFC 7505 "MX 0 .": bounced (X.1.10), category "null_mx"
  kNoAddress,     // no MX host (or the domain itself) has an address: bounced
  kNoAddressYet,  // some address lookups failed temporarily: deferred
  kServFail,      // SERVFAIL/REFUSED/malformed answer: deferred
  kTimeout,       // no answer: deferred
  kInvalidName,   // not a domain name: bounced
};
std::string_view DnsFailureName(DnsFailure f);
// Resolution of `domain` failed. Site scope, category "dns" (or "null_mx");
// bounce class bad-domain when the domain takes no mail, else routing-errors.
Outcome OutcomeForDnsFailure(DnsFailure failure, std::string_view domain,
                             std::string_view detail = {});

// The transaction never completed (the session ended before its reply):
// the same failure, but the recipients are retried (deferred).
Outcome AsRetry(Outcome failure);

// Every host of a site failed and no connection works: `last` (the last
// host's failure) widened to the whole site.
Outcome OutcomeForSiteDown(Outcome last);

// Our side refused to send (message larger than the peer's SIZE, SMTPUTF8
// needed but not offered, shutdown). `permanent` chooses bounced vs deferred.
Outcome OutcomeForLocal(std::string_view category, std::string_view detail, bool permanent,
                        Scope scope, std::string_view host);

// Shaping held the recipient back without an attempt (its destination is
// suspended, or throttled with more queued than it can send soon): deferred
// for `hold_ms` (>= 1), not counted as an attempt. Category "held".
Outcome OutcomeForHold(std::string_view why, int64_t hold_ms);

// Coarse category from the enhanced code and the reply text, e.g.
// "invalid_recipient", "mailbox_full", "rate_limited", "spam_block",
// "policy", "message_too_large", "greylisted", "other".
std::string Categorize(const Reply& reply);

// The shared bounce class (engine/smtp/category.h) of a fine category as
// Categorize and the Outcome* functions produce it ("invalid_recipient" ->
// kBadMailbox, "null_mx" -> kBadDomain, "rate_limited" -> kRateLimited...).
Category BounceClassOf(std::string_view category);

}  // namespace salvo::smtp
