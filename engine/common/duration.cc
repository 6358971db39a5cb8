#include "engine/common/duration.h"

#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "engine/common/strings.h"

namespace salvo {

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text) {
  const std::string t = AsciiLower(StripWhitespace(text));
  auto bad = [&] {
    return absl::InvalidArgumentError(
        Cat("'", text, "' is not a duration (e.g. 30, 30s, 250ms, 5m, 1h, 3d)"));
  };
  if (t.empty()) return bad();
  double total_s = 0;
  size_t i = 0;
  while (i < t.size()) {
    size_t j = i;
    while (j < t.size() && ((t[j] >= '0' && t[j] <= '9') || t[j] == '.')) ++j;
    double v;
    if (j == i || !absl::SimpleAtod(t.substr(i, j - i), &v)) return bad();
    size_t k = j;
    while (k < t.size() && t[k] >= 'a' && t[k] <= 'z') ++k;
    const std::string_view unit = std::string_view(t).substr(j, k - j);
    double mult;
    if (unit.empty()) {
      if (i != 0 || k != t.size()) return bad();  // a bare number stands alone
      mult = 1;
    } else if (unit == "ms") {
      mult = 0.001;
    } else if (unit == "s") {
      mult = 1;
    } else if (unit == "m" || unit == "min") {
      mult = 60;
    } else if (unit == "h") {
      mult = 3600;
    } else if (unit == "d") {
      mult = 86400;
    } else {
      return bad();
    }
    total_s += v * mult;
    i = k;
  }
  if (!std::isfinite(total_s) || total_s < 0) return bad();
  if (total_s > absl::ToDoubleSeconds(kMaxParsedDuration))
    return absl::InvalidArgumentError(Cat("'", text, "' is longer than 100 years"));
  return absl::Seconds(total_s);
}

}  // namespace salvo
