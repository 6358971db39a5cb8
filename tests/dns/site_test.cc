#include "engine/dns/site.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <set>

namespace salvo::dns {
namespace {

std::vector<MxHost> Hosts() {
  return {{"c.example", 20, 25, {}},
          {"a.example", 10, 25, {}},
          {"b.example", 10, 25, {}},
          {"d.example", 30, 25, {}},
          {"e.example", 10, 25, {}}};
}

std::string Names(const std::vector<MxHost>& hosts) {
  std::string out;
  for (const MxHost& h : hosts) out += h.name.substr(0, 1);
  return out;
}

TEST(DnsOrderMxHostsTest, PreferenceOrderWithEqualPreferenceShuffled) {
  std::mt19937_64 rng(7);
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    std::vector<MxHost> hosts = Hosts();
    OrderMxHosts(hosts, rng);
    const std::string names = Names(hosts);
    // Preference 10 group first (any order), then c (20), then d (30).
    ASSERT_EQ(names.substr(3), "cd") << names;
    ASSERT_EQ(std::set<char>(names.begin(), names.begin() + 3), (std::set<char>{'a', 'b', 'e'}));
    seen.insert(names.substr(0, 3));
  }
  // All 3! = 6 orders of the equal-preference group turn up in 200 draws.
  EXPECT_EQ(seen.size(), 6u);
}

TEST(DnsSiteKeyTest, OrderIndependentAndPortAware) {
  std::vector<MxHost> a = Hosts();
  std::vector<MxHost> b = Hosts();
  std::reverse(b.begin(), b.end());
  EXPECT_EQ(SiteKey(a), SiteKey(b));
  EXPECT_EQ(SiteKey({{"mx.example", 10, 25, {}}, {"mx.example", 20, 25, {}}}), "mx.example:25");
  EXPECT_NE(SiteKey({{"mx.example", 10, 25, {}}}), SiteKey({{"mx.example", 10, 2525, {}}}));
  EXPECT_EQ(SiteKey({{"::1", 0, 2525, {}}, {"127.0.0.1", 1, 25, {}}}), "127.0.0.1:25,[::1]:2525");
}

TEST(DnsShardForSiteTest, StableInRangeAndSpread) {
  // Pinned values: the mapping must not change between builds or runs.
  EXPECT_EQ(ShardForSite("", 7), 14695981039346656037ull % 7);
  const unsigned gmail = ShardForSite("alt1.gmail-smtp-in.l.google.com:25", 4);
  EXPECT_EQ(gmail, ShardForSite("alt1.gmail-smtp-in.l.google.com:25", 4));
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 4000; ++i) {
    const unsigned s = ShardForSite("mx" + std::to_string(i) + ".example:25", 4);
    ASSERT_LT(s, 4u);
    ++counts[s];
  }
  for (int c : counts) EXPECT_GT(c, 800);  // roughly even (1000 expected)
  EXPECT_EQ(ShardForSite("anything", 1), 0u);
}

TEST(DnsIpAddressTest, ParseFormatAndSockaddr) {
  IpAddress a;
  ASSERT_TRUE(IpAddress::Parse("127.0.0.9", &a));
  EXPECT_FALSE(a.is_v6());
  EXPECT_EQ(a.ToString(), "127.0.0.9");
  sockaddr_storage ss;
  ASSERT_EQ(a.ToSockaddr(2525, &ss), sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
  EXPECT_EQ(ntohs(sin->sin_port), 2525);

  IpAddress b;
  ASSERT_TRUE(IpAddress::Parse("::1", &b));
  EXPECT_TRUE(b.is_v6());
  EXPECT_EQ(b.ToString(), "::1");
  EXPECT_EQ(b.ToSockaddr(25, &ss), sizeof(sockaddr_in6));
  EXPECT_FALSE(a == b);

  IpAddress c;
  EXPECT_FALSE(IpAddress::Parse("mx.example", &c));
  EXPECT_FALSE(IpAddress::Parse("", &c));
  EXPECT_FALSE(IpAddress::Parse("[::1]", &c));
}

TEST(DnsFailureOutcomeTest, PermanentBouncesTemporaryDefers) {
  const smtp::Outcome nx =
      DnsFailureOutcome(absl::NotFoundError("domain nx.example does not exist (NXDOMAIN)"));
  EXPECT_EQ(nx.disposition, smtp::Disposition::kBounced);
  EXPECT_EQ(nx.scope, smtp::Scope::kSite);
  EXPECT_EQ(nx.kind, smtp::FailureKind::kDns);
  EXPECT_EQ(nx.category, "dns");
  EXPECT_EQ(nx.detail, "domain nx.example does not exist (NXDOMAIN)");

  EXPECT_EQ(DnsFailureOutcome(absl::FailedPreconditionError("null MX")).disposition,
            smtp::Disposition::kBounced);
  EXPECT_EQ(DnsFailureOutcome(absl::InvalidArgumentError("bad name")).disposition,
            smtp::Disposition::kBounced);
  const smtp::Outcome sf = DnsFailureOutcome(absl::UnavailableError("SERVFAIL"));
  EXPECT_EQ(sf.disposition, smtp::Disposition::kDeferred);
  EXPECT_EQ(sf.kind, smtp::FailureKind::kDns);
  EXPECT_FALSE(IsPermanentDnsFailure(absl::DeadlineExceededError("t")));
  EXPECT_FALSE(IsPermanentDnsFailure(absl::InternalError("t")));
}

}  // namespace
}  // namespace salvo::dns
