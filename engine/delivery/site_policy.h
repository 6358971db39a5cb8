#pragma once
// The limits one destination site is sent with: data resolved once per site
// when its pool is created, read by the pool and its connections (they never
// read the global config). Today every site gets the [delivery] defaults
// (SitePolicy::FromConfig); per-domain shaping (issue 13) resolves its rules
// into this object in Shard::PolicyFor, and adds its rate limits here.
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "engine/config/config.h"

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

  // The [delivery] defaults.
  static SitePolicy FromConfig(const config::Config& config);
};

}  // namespace salvo::delivery
