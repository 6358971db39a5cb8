#pragma once
// The one parser of duration texts in configuration and campaign files:
// a number of seconds ("30", "1.5") or numbers with units, summed
// ("250ms", "30s", "5m", "5min", "1h", "3d", "1h30m"). Case and surrounding
// spaces do not matter. Negative, non-finite and absurd values (over 100
// years, where arithmetic on deadlines would overflow) are errors.
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace salvo {

inline constexpr absl::Duration kMaxParsedDuration = absl::Hours(24 * 365 * 100);

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

}  // namespace salvo
