#include "engine/inbound/policy.h"

#include <algorithm>

#include "absl/strings/ascii.h"

namespace salvo::inbound {

RecipientPolicy::RecipientPolicy(const std::vector<std::string>& domains, size_t max_recipients)
    : max_recipients_(max_recipients) {
  for (const std::string& d : domains) domains_.insert(absl::AsciiStrToLower(d));
}

bool RecipientPolicy::Receives(std::string_view domain) const {
  std::string lower(domain);
  absl::AsciiStrToLower(&lower);
  return domains_.contains(lower);
}

sink::Verdict RecipientPolicy::Rcpt(std::string_view address, size_t accepted) const {
  const size_t at = address.rfind('@');
  // "@relay:user@host" source routes, "user%other@ours" and "a@b@ours" are
  // relay attempts in disguise: only a plain local@domain is ours.
  if (at == std::string_view::npos || at == 0 || address.front() == '@' ||
      address.substr(0, at).find_first_of("@%!:") != std::string_view::npos ||
      !Receives(address.substr(at + 1)))
    return sink::Verdict::kRelayDenied;
  if (accepted >= max_recipients_) return sink::Verdict::kTooManyRecipients;
  return sink::Verdict::kAccept;
}

}  // namespace salvo::inbound
