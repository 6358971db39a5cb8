#pragma once
// DMARC alignment for DKIM: the d= domain must be the From domain or share its
// organisational domain. Without the Public Suffix List (not shipped by
// Salvo), the organisational domain is approximated: the last two labels, or
// three when the last two form a known multi-label public suffix (co.uk,
// com.au, ...; see alignment.cc). Pure functions, any thread.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "dkim/key_store.h"

namespace salvo::dkim {

// The domain of a From header value or a bare address, lower-cased:
// "Joe <joe@Mail.Example.COM>" -> "mail.example.com". InvalidArgument if no
// address with a domain is found.
absl::StatusOr<std::string> FromDomain(std::string_view from);

// "mail.example.co.uk" -> "example.co.uk"; "a.b.example.com" -> "example.com".
std::string OrganizationalDomain(std::string_view domain);

// The keys to sign a message from `from` with: the keys of the From domain
// itself if any, else those of the nearest parent domain up to and including
// its organisational domain (relaxed alignment). NotFound otherwise:
//   "no DKIM key for From domain example.com (configured: a.com, b.net)".
absl::StatusOr<std::vector<const DkimKey*>> SelectKeysForFrom(const KeyStore& store,
                                                              std::string_view from);

}  // namespace salvo::dkim
