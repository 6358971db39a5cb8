#include "engine/dns/cache.h"

#include <gtest/gtest.h>

namespace salvo::dns {
namespace {

using std::chrono::seconds;
using TimePoint = SiteCache::TimePoint;

Site MakeSite(std::string host) {
  Site s;
  s.domain = "example.com";
  s.hosts.push_back(MxHost{std::move(host), 10, 25, {}});
  s.key = SiteKey(s.hosts);
  return s;
}

TEST(DnsSiteCacheTest, PositiveEntryLivesForItsTtl) {
  SiteCache cache;
  const TimePoint t0{};
  cache.Put("example.com", MakeSite("mx1.example.com"), seconds(2), t0);
  auto hit = cache.Get("example.com", t0 + std::chrono::milliseconds(500));
  ASSERT_TRUE(hit.has_value());
  ASSERT_TRUE(hit->ok());
  EXPECT_EQ((*hit)->hosts[0].name, "mx1.example.com");
  EXPECT_EQ((*hit)->ttl_seconds, 2u);  // 1.5 s left, rounded up
  EXPECT_FALSE(cache.Get("example.com", t0 + seconds(2)).has_value());
  EXPECT_EQ(cache.size(), 0u);  // expired entries are dropped on read
  EXPECT_FALSE(cache.Get("other.com", t0).has_value());
}

TEST(DnsSiteCacheTest, NegativeEntriesAndReplacement) {
  SiteCache cache;
  const TimePoint t0{};
  cache.Put("nx.example", absl::NotFoundError("domain nx.example does not exist (NXDOMAIN)"),
            seconds(5), t0);
  auto hit = cache.Get("nx.example", t0 + seconds(4));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->status().code(), absl::StatusCode::kNotFound);
  cache.Put("nx.example", MakeSite("mx.nx.example"), seconds(5), t0 + seconds(4));
  hit = cache.Get("nx.example", t0 + seconds(8));
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(hit->ok());
}

TEST(DnsSiteCacheTest, ZeroTtlIsNotStored) {
  SiteCache cache;
  cache.Put("example.com", MakeSite("mx"), seconds(0), TimePoint{});
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DnsSiteCacheTest, FullCacheEvictsExpiredThenSoonestToExpire) {
  SiteCache cache(10);
  const TimePoint t0{};
  for (int i = 0; i < 10; ++i) {
    cache.Put("d" + std::to_string(i) + ".example", MakeSite("mx"), seconds(10 + i), t0);
  }
  EXPECT_EQ(cache.size(), 10u);
  // Nothing expired yet: the soonest to expire (d0) makes room.
  cache.Put("new.example", MakeSite("mx"), seconds(100), t0);
  EXPECT_EQ(cache.size(), 10u);
  EXPECT_FALSE(cache.Get("d0.example", t0).has_value());
  EXPECT_TRUE(cache.Get("d9.example", t0).has_value());
  EXPECT_TRUE(cache.Get("new.example", t0).has_value());
  // Later, expired entries go first.
  cache.Put("later.example", MakeSite("mx"), seconds(100), t0 + seconds(15));
  EXPECT_TRUE(cache.Get("later.example", t0 + seconds(15)).has_value());
  EXPECT_LE(cache.size(), 10u);
  EXPECT_FALSE(cache.Get("d1.example", t0 + seconds(15)).has_value());
}

}  // namespace
}  // namespace salvo::dns
