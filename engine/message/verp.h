#pragma once
// VERP return paths: each copy's envelope sender names its campaign and
// recipient, so a bounce that comes back later (to that address) says which
// copy it is about even when the report itself is unreadable.
//
//   PREFIX+CAMPAIGN-RECIPIENT-MAC@DOMAIN      e.g.
//   bounces+7-1234-k3v9q2m4x8c1tj5f@bounce.example.com
//
// CAMPAIGN and RECIPIENT are the decimal IDs; MAC is the first 80 bits of
// HMAC-SHA256(secret, "salvo-verp-v1" 0x00 campaign 0x00 recipient 0x00
// lower-case(address)) in lower-case base32 (RFC 4648 alphabet, 16
// characters). Only digits, lower-case letters and '-' appear, so an MTA
// that lower-cases the local part (some do) leaves it verifiable; the token
// is parsed and verified case-insensitively. Binding the stored address
// makes a token of another spool (campaign IDs restart at 1) fail instead of
// hitting an unrelated recipient.
//
// Settings: the campaign file's [options] verp_domain, verp_prefix,
// verp_secret_file (or `verp = "off"`), over the config's [verp] domain,
// prefix, secret_file; the secret may also come from the environment
// variable SALVO_VERP_SECRET. The secret is never logged.
//
// Pure functions and plain values; thread-safe.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace salvo::message {

struct VerpSettings {
  std::string domain;              // the bounce domain; "" = VERP off
  std::string prefix = "bounces";  // local part before '+'
  std::string secret;              // HMAC key (never logged)
  bool enabled() const { return !domain.empty(); }
};

// Checks a bounce domain (LDH labels, at least two, <= 253 octets) and a
// prefix (dot-atom characters, no '+', <= 32 octets). Errors name `what`.
absl::Status ValidateVerpDomain(std::string_view domain, std::string_view what);
absl::Status ValidateVerpPrefix(std::string_view prefix, std::string_view what);

// Reads a secret file (trailing CR/LF dropped); an unreadable or empty file
// is an error naming `what` and the path (never the content).
absl::StatusOr<std::string> ReadVerpSecretFile(const std::string& path, std::string_view what);

// The VERP settings of a campaign: its [options] over `global` (the
// config's [verp]). verp = "off" turns VERP off for this campaign;
// verp_domain turns it on (or changes the domain); verp_prefix and
// verp_secret_file override. The secret: verp_secret_file, else the
// global one, else SALVO_VERP_SECRET; VERP on without any is an error.
absl::StatusOr<VerpSettings> VerpFromOptions(const std::map<std::string, std::string>& options,
                                             const VerpSettings& global);

// The token (CAMPAIGN-RECIPIENT-MAC) and the whole address.
std::string MakeVerpToken(std::string_view secret, uint64_t campaign, uint64_t recipient,
                          std::string_view address);
std::string MakeVerpAddress(const VerpSettings& settings, uint64_t campaign, uint64_t recipient,
                            std::string_view address);

// A token found in an address, not yet verified.
struct VerpToken {
  uint64_t campaign = 0;
  uint64_t recipient = 0;
  std::string mac;  // lower-cased
};
// Finds a token in `address` ("<a+7-12-mac@d>", angle brackets optional):
// the part of the local part after its last '+'. nullopt when there is none
// or it is not shaped like one. Case-insensitive.
std::optional<VerpToken> ParseVerpAddress(std::string_view address);
// Constant-time check of the token's MAC against the recipient's stored
// address; false for any other secret, campaign, recipient or address.
bool VerifyVerpToken(std::string_view secret, const VerpToken& token, std::string_view address);

}  // namespace salvo::message
