#include "engine/message/unsubscribe.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "engine/message/encoding.h"

namespace salvo::message {
namespace {

constexpr std::string_view kContext = "salvo-unsubscribe-v1";

// The recipient with its domain lower-cased (domains are case-insensitive;
// local parts are not, RFC 5321 2.4).
std::string CanonicalRecipient(std::string_view recipient) {
  std::string r(recipient);
  size_t at = r.rfind('@');
  if (at != std::string::npos) {
    for (size_t i = at + 1; i < r.size(); ++i)
      if (r[i] >= 'A' && r[i] <= 'Z') r[i] = static_cast<char>(r[i] - 'A' + 'a');
  }
  return r;
}

}  // namespace

std::string MakeUnsubscribeToken(std::string_view secret, std::string_view campaign_id,
                                 std::string_view recipient) {
  std::string data;
  data.reserve(kContext.size() + campaign_id.size() + recipient.size() + 2);
  data.append(kContext);
  data.push_back('\0');
  data.append(campaign_id);
  data.push_back('\0');
  data.append(CanonicalRecipient(recipient));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  // A zero-length key is legal for HMAC; OpenSSL wants a non-null pointer.
  static const unsigned char kEmpty = 0;
  const void* key = secret.empty() ? static_cast<const void*>(&kEmpty) : secret.data();
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
           &mac_len) == nullptr) {
    return std::string();
  }
  std::string token;
  AppendBase64Url(std::string_view(reinterpret_cast<const char*>(mac), mac_len), &token);
  return token;
}

bool VerifyUnsubscribeToken(std::string_view secret, std::string_view campaign_id,
                            std::string_view recipient, std::string_view token) {
  std::string expected = MakeUnsubscribeToken(secret, campaign_id, recipient);
  if (expected.empty() || token.size() != expected.size()) return false;
  return CRYPTO_memcmp(expected.data(), token.data(), expected.size()) == 0;
}

std::string MakeUnsubscribeUrl(std::string_view https_base, std::string_view secret,
                               std::string_view campaign_id, std::string_view recipient) {
  std::string url(https_base);
  url.push_back(https_base.find('?') == std::string_view::npos ? '?' : '&');
  url.append("c=");
  AppendPercentEncoded(campaign_id, &url);
  url.append("&r=");
  AppendPercentEncoded(recipient, &url);
  url.append("&t=");
  url.append(MakeUnsubscribeToken(secret, campaign_id, recipient));
  return url;
}

}  // namespace salvo::message
