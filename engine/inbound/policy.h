#pragma once
// What the inbound listener accepts, as data with no I/O: the domains it
// receives for (bounce, feedback and unsubscribe addresses) and the per-message
// recipient limit. Used by InboundServer's connections (on the listener's
// reactor thread) and by the fuzz target; immutable after construction.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/sink/smtp_server.h"

namespace salvo::inbound {

class RecipientPolicy {
 public:
  // `domains` as configured ([inbound] domains); compared case-insensitively.
  RecipientPolicy(const std::vector<std::string>& domains, size_t max_recipients);

  // RCPT TO of a transaction that already holds `accepted` recipients:
  // kAccept for an address at one of the domains (exact domain, no
  // subdomains), kRelayDenied for anything else (no relaying: a source route,
  // a '%' hack or a second '@' is not ours either), kTooManyRecipients past
  // the limit.
  sink::Verdict Rcpt(std::string_view address, size_t accepted) const;
  bool Receives(std::string_view domain) const;

 private:
  absl::flat_hash_set<std::string> domains_;
  size_t max_recipients_;
};

}  // namespace salvo::inbound
