#include "engine/message/unsubscribe.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

#include "engine/message/encoding.h"
#include "engine/message/hmac_sha256.h"

namespace salvo::message {
namespace {

constexpr std::string_view kContext = "salvo-unsubscribe-v1";

}  // namespace

std::string MakeUnsubscribeToken(std::string_view secret, std::string_view campaign_id,
                                 std::string_view recipient) {
  thread_local internal::HmacSha256 hmac;
  thread_local std::string data;
  data.clear();
  data.append(kContext);
  data.push_back('\0');
  data.append(campaign_id);
  data.push_back('\0');
  size_t at = recipient.rfind('@');
  data.append(recipient);
  if (at != std::string_view::npos) {
    size_t base = data.size() - recipient.size();
    for (size_t i = base + at + 1; i < data.size(); ++i)
      if (data[i] >= 'A' && data[i] <= 'Z') data[i] = static_cast<char>(data[i] - 'A' + 'a');
  }
  unsigned char mac[32];
  if (!hmac.Mac(secret, data, mac)) return std::string();
  std::string token;
  token.reserve(43);
  AppendBase64Url(std::string_view(reinterpret_cast<const char*>(mac), sizeof mac), &token);
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
