#include "engine/message/campaign_settings.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace salvo::message {
namespace {

std::string Option(const std::map<std::string, std::string>& options, const std::string& key) {
  auto it = options.find(key);
  return it == options.end() ? std::string() : it->second;
}

bool IsHeaderToken(std::string_view v) {
  for (unsigned char c : v)
    if (c <= 32 || c >= 127 || c == '<' || c == '>') return false;
  return true;
}

}  // namespace

absl::StatusOr<CampaignMessageSettings> SettingsFromOptions(
    const std::map<std::string, std::string>& options, std::string_view campaign_id) {
  CampaignMessageSettings s;
  s.unsubscribe_url = Option(options, "unsubscribe_url");
  s.unsubscribe_mailto = Option(options, "unsubscribe_mailto");
  std::string secret_file = Option(options, "unsubscribe_secret_file");
  if (!s.unsubscribe_url.empty()) {
    if (s.unsubscribe_url.rfind("https://", 0) != 0 || !IsHeaderToken(s.unsubscribe_url))
      return absl::InvalidArgumentError(
          "option unsubscribe_url must be an https:// URL "
          "without spaces, got '" +
          s.unsubscribe_url + "'");
    if (!secret_file.empty()) {
      std::ifstream in(secret_file, std::ios::binary);
      if (!in)
        return absl::InvalidArgumentError("option unsubscribe_secret_file: cannot read '" +
                                          secret_file + "'");
      std::ostringstream ss;
      ss << in.rdbuf();
      s.unsubscribe_secret = ss.str();
      while (!s.unsubscribe_secret.empty() &&
             (s.unsubscribe_secret.back() == '\n' || s.unsubscribe_secret.back() == '\r'))
        s.unsubscribe_secret.pop_back();
      if (s.unsubscribe_secret.empty())
        return absl::InvalidArgumentError("option unsubscribe_secret_file: '" + secret_file +
                                          "' is empty");
    } else if (const char* env = std::getenv("SALVO_UNSUBSCRIBE_SECRET"); env && *env) {
      s.unsubscribe_secret = env;
    } else {
      return absl::InvalidArgumentError(
          "option unsubscribe_url is set but there is no HMAC secret: set "
          "unsubscribe_secret_file or the SALVO_UNSUBSCRIBE_SECRET environment variable");
    }
  } else if (!s.unsubscribe_mailto.empty()) {
    return absl::InvalidArgumentError(
        "option unsubscribe_mailto needs unsubscribe_url too (RFC 8058 one-click needs https)");
  }
  std::string fid = Option(options, "feedback_id");
  for (size_t p = fid.find("{campaign}"); p != std::string::npos; p = fid.find("{campaign}", p))
    fid.replace(p, 10, std::string(campaign_id));
  if (!fid.empty() && (!IsHeaderToken(fid) || fid.size() > 200))
    return absl::InvalidArgumentError(
        "option feedback_id must be printable ASCII without "
        "spaces (at most 200 octets), got '" +
        fid + "'");
  s.feedback_id = std::move(fid);
  return s;
}

std::string DomainOf(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return std::string();
  std::string d(address.substr(at + 1));
  while (!d.empty() && d.back() == '>') d.pop_back();
  for (char& c : d)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return d;
}

}  // namespace salvo::message
