#pragma once
// The retry schedule (pure): how long a recipient waits after its k-th failed
// attempt, and whether it has outlived the campaign's maximum age.
#include <cstdint>

#include "absl/time/time.h"
#include "queue/campaign.h"

namespace salvo::queue {

// Delay before the next try after `attempts` failed attempts (attempts >= 1).
// `jitter` in [0, 1) picks the point inside [first_retry_min, first_retry_max];
// the window doubles (multiplier) per attempt and is capped at max_delay.
absl::Duration RetryDelay(const RetryPolicy& policy, uint32_t attempts, double jitter);

// When the recipient should next be tried, or absl::InfiniteFuture() when it
// has expired (now - queued_at >= max_age). The last retry is moved to exactly
// queued_at + max_age so a recipient gets one final chance at the limit.
absl::Time NextAttempt(const RetryPolicy& policy, absl::Time queued_at, absl::Time now,
                       uint32_t attempts, double jitter);

}  // namespace salvo::queue
