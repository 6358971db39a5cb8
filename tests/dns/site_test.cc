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

TEST(DnsFailureTest, TypedStatusesMapThroughTheFailureModule) {
  const absl::Status nx =
      DnsError(smtp::DnsFailure::kNxDomain, "domain nx.example does not exist (NXDOMAIN)");
  EXPECT_EQ(nx.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FailureOf(nx), smtp::DnsFailure::kNxDomain);
  EXPECT_TRUE(IsPermanentDnsFailure(nx));
  const smtp::Outcome o =
      smtp::OutcomeForDnsFailure(FailureOf(nx), "nx.example", std::string(nx.message()));
  EXPECT_EQ(o.disposition, smtp::Disposition::kBounced);
  EXPECT_EQ(o.scope, smtp::Scope::kSite);
  EXPECT_EQ(o.kind, smtp::FailureKind::kDns);
  EXPECT_EQ(o.category, "dns");
  EXPECT_EQ(o.bounce_class, smtp::Category::kBadDomain);

  const absl::Status null_mx = DnsError(smtp::DnsFailure::kNullMx, "null MX");
  EXPECT_EQ(null_mx.code(), absl::StatusCode::kFailedPrecondition);
  const smtp::Outcome n = smtp::OutcomeForDnsFailure(FailureOf(null_mx), "n.example");
  EXPECT_EQ(n.category, "null_mx");
  EXPECT_EQ(n.bounce_class, smtp::Category::kBadDomain);
  EXPECT_TRUE(n.hard());

  const absl::Status t = DnsError(smtp::DnsFailure::kTimeout, "timed out");
  EXPECT_EQ(t.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FailureOf(t), smtp::DnsFailure::kTimeout);
  EXPECT_FALSE(IsPermanentDnsFailure(t));
  const smtp::Outcome to = smtp::OutcomeForDnsFailure(FailureOf(t), "t.example");
  EXPECT_EQ(to.disposition, smtp::Disposition::kDeferred);
  EXPECT_EQ(to.bounce_class, smtp::Category::kRoutingErrors);
  EXPECT_FALSE(to.suppress);
  // Statuses not made by DnsError: a guess from the code.
  EXPECT_EQ(FailureOf(absl::InternalError("t")), smtp::DnsFailure::kServFail);
  EXPECT_FALSE(IsPermanentDnsFailure(absl::DeadlineExceededError("t")));
}

}  // namespace
}  // namespace salvo::dns
