#include "engine/dns/cache.h"

#include "engine/common/strings.h"

#include <algorithm>
#include <vector>

namespace salvo::dns {

std::optional<absl::StatusOr<Site>> SiteCache::Get(std::string_view domain, TimePoint now) {
  auto it = entries_.find(Av(domain));
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    entries_.erase(it);
    return std::nullopt;
  }
  absl::StatusOr<Site> result = it->second.result;
  if (result.ok()) {
    const auto left = std::chrono::ceil<std::chrono::seconds>(it->second.expires - now).count();
    result->ttl_seconds = static_cast<uint32_t>(std::max<int64_t>(left, 0));
  }
  return result;
}

void SiteCache::Put(std::string_view domain, absl::StatusOr<Site> result, std::chrono::seconds ttl,
                    TimePoint now) {
  if (ttl <= std::chrono::seconds(0) || max_entries_ == 0) return;
  if (entries_.size() >= max_entries_ && !entries_.contains(Av(domain))) MakeRoom(now);
  entries_.insert_or_assign(std::string(domain), Entry{std::move(result), now + ttl});
}

void SiteCache::MakeRoom(TimePoint now) {
  absl::erase_if(entries_, [&](const auto& kv) { return kv.second.expires <= now; });
  if (entries_.size() < max_entries_) return;
  // Still full: drop the soonest-to-expire tenth (at least one) in one pass,
  // so a full cache does not pay a sweep on every insert.
  std::vector<TimePoint> expiries;
  expiries.reserve(entries_.size());
  for (const auto& kv : entries_) expiries.push_back(kv.second.expires);
  const size_t drop = std::max<size_t>(1, entries_.size() / 10);
  std::nth_element(expiries.begin(), expiries.begin() + (drop - 1), expiries.end());
  const TimePoint cutoff = expiries[drop - 1];
  size_t dropped = 0;
  absl::erase_if(entries_, [&](const auto& kv) {
    if (dropped < drop && kv.second.expires <= cutoff) {
      ++dropped;
      return true;
    }
    return false;
  });
}

}  // namespace salvo::dns
