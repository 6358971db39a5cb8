#pragma once
// Bounce and deferral categories: the one vocabulary every part of Salvo uses
// for "why did this recipient fail" (the spool's records, `campaign status`,
// metrics labels, the delivery log, shaping rules, DSN intake).
//
// The names are PowerMTA's bounce categories, which marketers already know,
// plus our own `rate-limited` for "slow down" replies (421 4.7.28, 4.7.0
// [TSS04], 451 4.7.650 ...), which drive adaptive backoff rather than a
// recipient's fate. The category of a reply is decided in one place
// (engine/smtp/failure_scope and the rules classifier beside it); nothing else
// invents one.
//
// Stable: the names are stored in the spool, printed by the CLI and used as
// Prometheus label values. Add new ones at the end; never renumber.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace salvo::smtp {

enum class Category : uint8_t {
  kNone = 0,          // delivered, or no failure
  kBadMailbox,        // the address does not exist (5.1.1, "user unknown")
  kInactiveMailbox,   // exists but disabled/inactive (5.2.1, "account disabled")
  kQuotaIssues,       // mailbox full, over quota (4.2.2, 5.2.2)
  kBadDomain,         // the domain does not exist or accepts no mail (NXDOMAIN, null MX, 5.1.2)
  kNoAnswerFromHost,  // no connection could be made, or the host never answered (timeouts)
  kBadConnection,     // the connection broke or was refused mid-way; TLS failures
  kRoutingErrors,     // DNS failures other than "no such domain", routing loops, 5.4.x
  kSpamRelated,       // blocked as spam, blocklisted IP or domain, reputation
  kPolicyRelated,     // refused by local policy (DMARC, SPF, sender not allowed, 5.7.x generic)
  kContentRelated,    // the message content was refused (size, attachment, URL)
  kVirusRelated,      // malware detected
  kRelayingIssues,    // relaying denied / not a local domain of the peer
  kProtocolErrors,    // syntax errors, bad sequence, the peer does not speak SMTP
  kInvalidSender,     // our envelope sender was refused (5.1.7, 5.1.8)
  kMessageExpired,    // gave up after the retry period (max age)
  kRateLimited,       // "slow down": too many messages/connections, throttled (drives backoff)
  kOther,             // anything not matched above
};

inline constexpr int kCategoryCount = static_cast<int>(Category::kOther) + 1;

// "bad-mailbox", "rate-limited", ...; "" for kNone. Header-only: the queue
// stores these names and links no SMTP code.
inline constexpr std::array<std::string_view, kCategoryCount> kCategoryNames = {
    "",
    "bad-mailbox",
    "inactive-mailbox",
    "quota-issues",
    "bad-domain",
    "no-answer-from-host",
    "bad-connection",
    "routing-errors",
    "spam-related",
    "policy-related",
    "content-related",
    "virus-related",
    "relaying-issues",
    "protocol-errors",
    "invalid-sender",
    "message-expired",
    "rate-limited",
    "other",
};
inline std::string_view CategoryName(Category c) {
  const auto i = static_cast<size_t>(c);
  return i < kCategoryNames.size() ? kCategoryNames[i] : "other";
}
// Inverse of CategoryName (also accepts '_' for '-'); nullopt when unknown.
std::optional<Category> ParseCategory(std::string_view name);

// Categories whose hard bounce means the address itself is bad: such an
// address goes on the suppression list (bad-mailbox, inactive-mailbox,
// bad-domain). Rules may override per rule.
bool SuppressOnHardBounce(Category c);

}  // namespace salvo::smtp
