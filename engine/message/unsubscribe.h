#pragma once
// Unforgeable per-recipient unsubscribe tokens for List-Unsubscribe (RFC 8058).
//
// token = base64url(HMAC-SHA256(secret, "salvo-unsubscribe-v1" 0x00 campaign_id 0x00 recipient)),
// 43 characters, no padding. The recipient is compared byte for byte except
// that the domain part is lower-cased first (domains are case-insensitive).
// Pure functions, thread-safe.
#include <string>
#include <string_view>

namespace salvo::message {

std::string MakeUnsubscribeToken(std::string_view secret, std::string_view campaign_id,
                                 std::string_view recipient);

// Constant-time comparison against the expected token; false for any other
// campaign, recipient, secret, or a malformed token.
bool VerifyUnsubscribeToken(std::string_view secret, std::string_view campaign_id,
                            std::string_view recipient, std::string_view token);

// The https URL carried in List-Unsubscribe:
//   BASE?c=CAMPAIGN&r=PERCENT-ENCODED-RECIPIENT&t=TOKEN   ('&' instead of '?' if BASE has a query)
std::string MakeUnsubscribeUrl(std::string_view https_base, std::string_view secret,
                               std::string_view campaign_id, std::string_view recipient);

}  // namespace salvo::message
