#pragma once
// The limits one destination site is sent with: data resolved once per site
// when its pool is created, read by the pool and its connections (they never
// read the global config). Today every site gets the [delivery] defaults
// (SitePolicy::FromConfig); per-domain shaping (issue 13) resolves its rules
// into this object in Shard::PolicyFor, and adds its rate limits here.
#include <chrono>
#include <cstddef>
#include <cstdint>

#include <memory>
#include <optional>
#include <string>

#include "engine/config/config.h"
#include "engine/shaping/throttle.h"
#include "engine/smtp/session.h"

namespace salvo::delivery {

struct SitePolicy {
  using Duration = std::chrono::nanoseconds;

  size_t max_connections = 32;             // connections_per_site
  uint64_t messages_per_connection = 100;  // transactions, then QUIT
  Duration connect_timeout = std::chrono::seconds(30);
  Duration idle_timeout = std::chrono::seconds(5);
  // A host whose connect failed is skipped this long; every host down:
  // queued jobs are deferred and the site paused this long.
  Duration host_retry_delay = std::chrono::seconds(60);
  // Site-scope temporary failures (421...): the first backoff, doubled while
  // they repeat with no delivery in between, up to `max_backoff`.
  Duration first_backoff = std::chrono::seconds(1);
  Duration max_backoff = std::chrono::seconds(60);

  // --- From shaping (engine/shaping), resolved per site in Shard::PolicyFor. ---
  size_t max_recipients_per_message = 100;  // larger jobs are split on Enqueue
  shaping::Tls tls = shaping::Tls::kOpportunistic;
  std::string key;  // the shaping key: "default", "domain.NAME", "provider.NAME"
  // A smarthost route's SMTP AUTH (never logged), and which route, for
  // messages ("* (salvo.toml:12)"); empty otherwise.
  std::optional<smtp::Credentials> credentials;
  std::string route;
  // The pool's own limits (rates, connections, adaptive backoff, suspension):
  // a key of its own for "default" and provider members, the shared one of
  // a [domain] table. Never null once the pool exists.
  std::shared_ptr<shaping::KeyState> own;
  // The provider's key, shared by every member on every shard; null if none.
  std::shared_ptr<shaping::KeyState> provider;

  // The [delivery] defaults.
  static SitePolicy FromConfig(const config::Config& config);
};

}  // namespace salvo::delivery
