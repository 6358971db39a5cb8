#include "engine/dns/router.h"

#include <gtest/gtest.h>

namespace salvo::dns {
namespace {

TEST(DnsParseRouteTargetTest, Forms) {
  absl::StatusOr<RouteTarget> t = ParseRouteTarget("127.0.0.1:2525");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, 2525);
  EXPECT_TRUE(t->is_ip_literal);

  t = ParseRouteTarget("[::1]:26");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 26);
  EXPECT_EQ(t->ToString(), "[::1]:26");

  t = ParseRouteTarget(" Smarthost.Example.NET ");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->host, "smarthost.example.net");
  EXPECT_EQ(t->port, 25);
  EXPECT_FALSE(t->is_ip_literal);
  EXPECT_EQ(t->ToString(), "smarthost.example.net:25");
}

TEST(DnsParseRouteTargetTest, ErrorsNameTheText) {
  for (const char* bad : {"127.0.0.1:0", "127.0.0.1:70000", "host:abc", "[::1", "::1:25",
                          "[mx.example]:25", "bad host:25", "", "host:"}) {
    absl::StatusOr<RouteTarget> t = ParseRouteTarget(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok() && *bad != '\0') {
      EXPECT_NE(t.status().message().find("route target"), absl::string_view::npos) << t.status();
    }
  }
}

TEST(DnsRouterTest, MostSpecificPatternWins) {
  Router r;
  EXPECT_TRUE(r.empty());
  ASSERT_TRUE(r.AddRoute("example.com", "127.0.0.2:2525, 127.0.0.3:2526").ok());
  ASSERT_TRUE(r.AddRoute("*.example.com", "127.0.0.4").ok());
  ASSERT_TRUE(r.AddRoute("*.deep.example.com", "127.0.0.5").ok());
  EXPECT_FALSE(r.empty());

  const std::vector<RouteTarget>* t = r.Lookup("example.com");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].ToString(), "127.0.0.2:2525");  // failover order kept
  EXPECT_EQ((*t)[1].ToString(), "127.0.0.3:2526");

  t = r.Lookup("a.example.com");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ((*t)[0].host, "127.0.0.4");
  t = r.Lookup("x.deep.example.com");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ((*t)[0].host, "127.0.0.5");
  EXPECT_EQ(r.Lookup("example.org"), nullptr);
  EXPECT_EQ(r.Lookup("badexample.com"), nullptr);

  ASSERT_TRUE(r.AddRoute("*", "[::1]:2525").ok());
  t = r.Lookup("example.org");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ((*t)[0].ToString(), "[::1]:2525");
  EXPECT_EQ(r.Lookup("example.com")->size(), 2u);  // exact still beats "*"
}

TEST(DnsRouterTest, AddRoutesSpecAndErrors) {
  Router r;
  ASSERT_TRUE(r.AddRoutes("a.example=127.0.0.2:25; *=127.0.0.3:2525\nb.example = 127.0.0.4").ok());
  EXPECT_EQ(r.Lookup("a.example")->at(0).host, "127.0.0.2");
  EXPECT_EQ(r.Lookup("b.example")->at(0).host, "127.0.0.4");
  EXPECT_EQ(r.Lookup("z.example")->at(0).port, 2525);

  absl::Status s = r.AddRoutes("ok.example=127.0.0.1;broken", "salvo.toml:7");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("salvo.toml:7 route 2"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("broken"), absl::string_view::npos) << s;

  s = r.AddRoute("ex ample.com", "127.0.0.1", "cli");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cli: route pattern 'ex ample.com'"), absl::string_view::npos) << s;

  s = r.AddRoute("example.com", "", "cli");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no target host"), absl::string_view::npos) << s;

  s = r.AddRoute("example.com", "127.0.0.1:99999");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("127.0.0.1:99999"), absl::string_view::npos) << s;
}

TEST(DnsNormalizeDomainTest, LowercasesStripsDotAndValidates) {
  EXPECT_EQ(*NormalizeDomain("Example.COM."), "example.com");
  EXPECT_EQ(*NormalizeDomain("_dmarc.x-y.example"), "_dmarc.x-y.example");
  EXPECT_FALSE(NormalizeDomain("").ok());
  EXPECT_FALSE(NormalizeDomain(".").ok());
  EXPECT_FALSE(NormalizeDomain("a..b").ok());
  EXPECT_FALSE(NormalizeDomain(std::string(64, 'a') + ".com").ok());
  EXPECT_FALSE(NormalizeDomain(std::string(254, 'a')).ok());
  absl::StatusOr<std::string> bad = NormalizeDomain("exa\nmple.com");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("character"), absl::string_view::npos);
}

}  // namespace
}  // namespace salvo::dns
