#include "queue/retry.h"

#include <algorithm>
#include <cmath>

namespace salvo::queue {

absl::Duration RetryDelay(const RetryPolicy& policy, uint32_t attempts, double jitter) {
  jitter = std::clamp(jitter, 0.0, 1.0);
  absl::Duration base =
      policy.first_retry_min + (policy.first_retry_max - policy.first_retry_min) * jitter;
  // Grow by multiplier^(attempts-1) without overflowing: stop at the cap.
  for (uint32_t k = 1; k < attempts && base < policy.max_delay; ++k)
    base = base * policy.multiplier;
  return std::min(base, policy.max_delay);
}

absl::Time NextAttempt(const RetryPolicy& policy, absl::Time queued_at, absl::Time now,
                       uint32_t attempts, double jitter) {
  const absl::Time deadline = queued_at + policy.max_age;
  if (now >= deadline) return absl::InfiniteFuture();
  return std::min(now + RetryDelay(policy, attempts, jitter), deadline);
}

}  // namespace salvo::queue
