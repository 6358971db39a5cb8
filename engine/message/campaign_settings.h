#pragma once
// Per-campaign message settings read from the campaign's [options] table
// (queue CampaignInfo::options), so the engine and `salvo campaign preview`
// build the same RenderContext:
//
//   [options]
//   unsubscribe_url = "https://u.example.com/unsubscribe"   # List-Unsubscribe https: URL base
//   unsubscribe_mailto = "unsubscribe@example.com"          # optional mailto:
//   unsubscribe_secret_file = "unsubscribe.key"   # HMAC key (or env SALVO_UNSUBSCRIBE_SECRET)
//   feedback_id = "{campaign}:acme:newsletter"     # optional Feedback-ID; {campaign} = id
//
// Loaded once per campaign (reads the secret file), then shared read-only.
// The secret file's path arrives absolute: the campaign file parser resolves
// it against the campaign file's folder (queue::IsPathOption), and a relative
// one (stored by an older release) is read from the working directory.
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/message/template.h"

namespace salvo::message {

struct CampaignMessageSettings {
  std::string unsubscribe_url;
  std::string unsubscribe_mailto;
  std::string unsubscribe_secret;
  std::string feedback_id;  // {campaign} already substituted

  // Views into this object for RenderContext::unsubscribe.
  UnsubscribeSettings Unsubscribe() const {
    return {unsubscribe_url, unsubscribe_mailto, unsubscribe_secret};
  }
};

// Errors name the option: a non-https URL, a URL without a secret, an
// unreadable or empty secret file, a Feedback-ID with spaces or controls.
absl::StatusOr<CampaignMessageSettings> SettingsFromOptions(
    const std::map<std::string, std::string>& options, std::string_view campaign_id);

// The domain of an address ("news@Acme.example" -> "acme.example"), for the
// Message-ID right-hand side; "" if there is none.
std::string DomainOf(std::string_view address);

}  // namespace salvo::message
