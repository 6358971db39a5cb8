#pragma once
// Per-shard cache of MX resolution results, positive and negative, each kept
// for its own TTL. Owned by one Resolver, used only on its shard thread (no
// locks). Time is passed in, so tests drive it without sleeping.
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/dns/site.h"

namespace salvo::dns {

class SiteCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit SiteCache(size_t max_entries = 100'000) : max_entries_(max_entries) {}

  // The cached answer for `domain` if it has not expired at `now`. For a
  // positive answer, Site::ttl_seconds is the time it has left.
  std::optional<absl::StatusOr<Site>> Get(std::string_view domain, TimePoint now);

  // Stores `result` for `ttl` (a zero TTL stores nothing). When full, expired
  // entries are swept first, then the entries closest to expiry are dropped.
  void Put(std::string_view domain, absl::StatusOr<Site> result, std::chrono::seconds ttl,
           TimePoint now);

  void Erase(std::string_view domain) {
    entries_.erase(absl::string_view(domain.data(), domain.size()));
  }
  void Clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    absl::StatusOr<Site> result;
    TimePoint expires;
  };
  void MakeRoom(TimePoint now);

  size_t max_entries_;
  absl::flat_hash_map<std::string, Entry> entries_;
};

}  // namespace salvo::dns
