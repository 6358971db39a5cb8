#pragma once
// The single answer every delivery attempt produces, per recipient: what
// happened (disposition), how far the trouble reaches (scope), why (kind,
// category), the server's words (reply) and where it happened (host).
// Produced only by engine/smtp/failure_scope.{h,cc}; consumed by the queue
// (retry schedule), shaping (throttles/backoff) and metrics.
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/smtp/category.h"

namespace salvo::smtp {

struct Rule;

// One complete SMTP reply. Multi-line replies are joined.
struct Reply {
  int code = 0;          // 3-digit reply code, 0 when there was no reply
  std::string enhanced;  // RFC 3463 "class.subject.detail", empty if absent
  std::string text;      // text of all lines, enhanced code stripped, joined with "\n"

  bool empty() const { return code == 0; }
  // "550 5.1.1 text" (lines joined with a space), for logs and records.
  std::string ToString() const;
};

enum class Disposition : uint8_t {
  kDelivered,  // 250 after the final dot (or BDAT LAST) for this recipient
  kDeferred,   // temporary: try again later (4xx, timeouts, connection trouble)
  kBounced,    // permanent: do not try again (5xx, null MX, NXDOMAIN)
};

enum class Scope : uint8_t {
  kRecipient,   // only this recipient (e.g. RCPT 550 5.1.1)
  kMessage,     // this message/transaction (e.g. 552 after the dot)
  kConnection,  // this session is unusable (timeout, lost connection); others may work
  kSite,        // the whole destination site (421, connect refused on all MX, TLS policy)
};

enum class FailureKind : uint8_t {
  kNone,            // delivered
  kReply,           // the server answered with a non-success reply
  kTimeout,         // a per-phase deadline expired
  kConnectionLost,  // peer closed or reset mid-session
  kConnectFailed,   // TCP connect refused/unreachable/timed out
  kTls,             // handshake or certificate verification failed
  kProtocol,        // the peer sent something that is not SMTP
  kDns,             // resolution failed (NXDOMAIN, null MX, SERVFAIL, timeout)
  kLocal,           // our side: message too large for the peer, no SMTPUTF8, shutdown
};

struct Outcome {
  Disposition disposition = Disposition::kDeferred;
  Scope scope = Scope::kRecipient;
  FailureKind kind = FailureKind::kNone;
  // Coarse bounce/deferral category for metrics and suppression, e.g.
  // "invalid_recipient", "mailbox_full", "policy", "spam_block",
  // "rate_limited", "dns", "tls", "connection", "timeout", "other".
  std::string category;
  // The same answer in the shared vocabulary (engine/smtp/category.h): what
  // metrics, the delivery log and shaping read. Set with `category` by
  // failure_scope, never elsewhere.
  Category bounce_class = Category::kNone;
  // A hard bounce that says the address itself is bad: the queue adds it to
  // the suppression list. Decided by failure_scope, never by the storage.
  bool suppress = false;
  // The classification rule (engine/smtp/classifier.h) that decided
  // `bounce_class`, if one did: shaping reads its action (backoff, suspend).
  // Rules live as long as the process.
  const Rule* rule = nullptr;
  // > 0: not attempted. Shaping held the recipient back (its destination is
  // suspended or throttled): the queue puts it back for this long without
  // counting an attempt or a deferral (OutcomeForHold).
  int64_t hold_ms = 0;
  Reply reply;         // the reply that decided this, if any
  std::string host;    // MX host (name and IP) the attempt went to, if any
  std::string detail;  // human-readable explanation when there is no reply
  // Facts of the attempt for the delivery log, set by the engine once a
  // transaction ran: the TLS protocol (a string literal such as "TLSv1.3";
  // null = plaintext), the message size in bytes, and the egress source
  // (index into [[egress.source]]; -1 = the default address).
  const char* tls_version = nullptr;
  uint32_t size = 0;
  int16_t source = -1;

  bool delivered() const { return disposition == Disposition::kDelivered; }
  bool held() const { return hold_ms > 0; }
  // Hard = never retried (bounced); soft = retried later (deferred).
  bool hard() const { return disposition == Disposition::kBounced; }
  // A temporary failure of the whole destination (421, greeting or EHLO
  // refusals, every MX host down): the site pool backs off.
  bool site_temporary() const {
    return disposition == Disposition::kDeferred && scope == Scope::kSite;
  }
};

std::string_view DispositionName(Disposition d);
std::string_view ScopeName(Scope s);
std::string_view FailureKindName(FailureKind k);

}  // namespace salvo::smtp
