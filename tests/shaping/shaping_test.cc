// The shaping file: rates, resolution of a destination, and every kind of
// bad file rejected with file:line:column.
#include "engine/shaping/shaping.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace salvo::shaping {
namespace {

using ::testing::HasSubstr;

ShapingConfig Base() {
  config::Config cfg;
  return DefaultsFrom(cfg);
}

TEST(RateTest, ParsesUnitsAndRejectsNonsense) {
  EXPECT_DOUBLE_EQ(ParseRate("10/s")->per_second, 10);
  EXPECT_DOUBLE_EQ(ParseRate("3000/min")->per_second, 50);
  EXPECT_DOUBLE_EQ(ParseRate("7200/h")->per_second, 2);
  EXPECT_DOUBLE_EQ(ParseRate(" 1.5 / s ")->per_second, 1.5);
  EXPECT_TRUE(ParseRate("0")->unlimited());
  for (const char* bad :
       {"", "10", "ten/s", "10/fortnight", "-1/s", "10/", "/s", "nan/s", "1e99/s"})
    EXPECT_FALSE(ParseRate(bad).ok()) << bad;
}

TEST(ShapingFileTest, TheIssueExampleParsesAndResolves) {
  const char* text = R"([default]
max_connections = 32
max_messages_per_connection = 100
max_recipients_per_message = 100
max_message_rate = "0"
max_connection_rate = "0"
tls = "opportunistic"

[provider.google]
mx_suffixes = [".google.com", ".googlemail.com"]
domains = ["gmail.com", "googlemail.com"]
max_connections = 20
max_message_rate = "3000/min"

[domain."example.org"]
max_message_rate = "10/s"
)";
  auto c = ParseShaping(text, "s.toml", Base());
  ASSERT_TRUE(c.ok()) << c.status();
  // By name: its own pool, the provider's shared limits.
  Resolved g = Resolve(*c, "GMail.com", {});
  EXPECT_EQ(g.key, "provider.google");
  EXPECT_TRUE(g.by_name);
  EXPECT_EQ(g.provider_max_connections, 20);
  EXPECT_DOUBLE_EQ(g.provider_message_rate.per_second, 50);
  EXPECT_TRUE(g.message_rate.unlimited());  // the provider's shared rate governs
  EXPECT_EQ(g.max_connections, 20);
  // By MX host: a Workspace domain.
  Resolved w = Resolve(*c, "acme.example", {"aspmx.l.google.com"});
  EXPECT_EQ(w.key, "provider.google");
  EXPECT_FALSE(w.by_name);
  // A suffix matches whole labels only.
  EXPECT_EQ(Resolve(*c, "x.example", {"notgoogle.com"}).key, "default");
  // A domain table.
  Resolved d = Resolve(*c, "example.org", {"mx.example.org"});
  EXPECT_EQ(d.key, "domain.example.org");
  EXPECT_DOUBLE_EQ(d.message_rate.per_second, 10);
  EXPECT_EQ(d.max_connections, 32);
  // The default.
  Resolved o = Resolve(*c, "other.example", {"mx.other.example"});
  EXPECT_EQ(o.key, "default");
  EXPECT_EQ(o.max_connections, 32);
  EXPECT_TRUE(o.message_rate.unlimited());
  EXPECT_EQ(o.tls, Tls::kOpportunistic);
}

TEST(ShapingFileTest, WhereDomainAndProviderBothApplyTheStricterWins) {
  const char* text = R"([provider.big]
domains = ["big.example"]
max_connections = 10
max_messages_per_connection = 50
max_message_rate = "100/s"
tls = "opportunistic"

[domain."big.example"]
max_connections = 40
max_messages_per_connection = 20
max_message_rate = "5/s"
tls = "required"
)";
  auto c = ParseShaping(text, "s.toml", Base());
  ASSERT_TRUE(c.ok()) << c.status();
  Resolved r = Resolve(*c, "big.example", {});
  EXPECT_EQ(r.key, "domain.big.example");
  EXPECT_EQ(r.provider, "big");
  EXPECT_EQ(r.max_connections, 10);              // min(10, 40)
  EXPECT_EQ(r.max_messages_per_connection, 20);  // min(50, 20)
  EXPECT_DOUBLE_EQ(r.message_rate.per_second, 5);
  EXPECT_DOUBLE_EQ(r.provider_message_rate.per_second, 100);  // still shared
  EXPECT_EQ(r.tls, Tls::kRequired);
}

TEST(ShapingFileTest, DefaultsComeFromTheDeliverySection) {
  config::Config cfg;
  cfg.delivery.connections_per_site = 7;
  cfg.delivery.messages_per_connection = 9;
  cfg.tls.mode = config::TlsMode::kRequired;
  Resolved r = Resolve(DefaultsFrom(cfg), "x.example", {});
  EXPECT_EQ(r.max_connections, 7);
  EXPECT_EQ(r.max_messages_per_connection, 9);
  EXPECT_EQ(r.tls, Tls::kRequired);
}

TEST(ShapingFileTest, TheShippedFileParses) {
  auto c = LoadShapingFile(std::string(SALVO_SOURCE_DIR) + "/deploy/shaping.toml", Base());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Resolve(*c, "gmail.com", {}).key, "provider.google");
  EXPECT_EQ(Resolve(*c, "hotmail.com", {}).key, "provider.microsoft");
  EXPECT_EQ(Resolve(*c, "corp.example", {"corp-example.mail.protection.outlook.com"}).key,
            "provider.microsoft");
  EXPECT_EQ(Resolve(*c, "aol.com", {}).key, "provider.yahoo");
}

struct BadCase {
  const char* text;
  const char* where;  // "s.toml:LINE:COL"
  const char* what;
};

TEST(ShapingFileTest, BadFilesNameFileLineAndColumn) {
  const std::vector<BadCase> cases = {
      {"[default\nmax_connections = 1\n", "s.toml:1:", "expected"},
      {"[default]\nmax_connections = 0\n", "s.toml:2:", "out of range"},
      {"[default]\nmax_connections = \"ten\"\n", "s.toml:2:", "must be an integer"},
      {"[default]\nmax_connections = 1000001\n", "s.toml:2:", "out of range"},
      {"[default]\nmax_messages_per_connection = -1\n", "s.toml:2:", "out of range"},
      {"[default]\nmax_recipients_per_message = 0\n", "s.toml:2:", "out of range"},
      {"[default]\nmax_message_rate = \"fast\"\n", "s.toml:2:", "not a rate"},
      {"[default]\nmax_message_rate = \"10/week\"\n", "s.toml:2:", "unknown unit"},
      {"[default]\nmax_connection_rate = \"-5/s\"\n", "s.toml:2:", "not a number"},
      {"[default]\nmax_message_rate = 1.5\n", "s.toml:2:", "must be a rate"},
      {"[default]\ntls = \"yes\"\n", "s.toml:2:", "expected \"off\""},
      {"[default]\nmx_suffixes = [\".x.com\"]\n", "s.toml:2:", "unknown key 'mx_suffixes'"},
      {"[defaults]\nmax_connections = 1\n", "s.toml:1:", "unknown key 'defaults'"},
      {"default = 3\n", "s.toml:1:", "must be a table"},
      {"[provider.p]\nmax_connections = 3\n", "s.toml:1:", "has no members"},
      {"[provider.p]\ndomains = \"a.example\"\nmax_conections = 3\n",
       "s.toml:3:", "unknown key 'max_conections'"},
      {"[provider.p]\ndomains = [\"not a domain\"]\n", "s.toml:2:", "not a domain name"},
      {"[provider.p]\nmx_suffixes = [\"\"]\n", "s.toml:2:", "not a host name suffix"},
      {"[provider.p]\ndomains = [1]\n", "s.toml:2:", "list of strings"},
      {"[provider.a]\ndomains = [\"x.example\"]\n[provider.b]\ndomains = [\"X.example\"]\n",
       "s.toml:4:", "already a member of provider.a"},
      {"[domain.\"bad domain\"]\nmax_connections = 1\n", "s.toml:1:", "not a domain name"},
      {"[domain.\"a.example\"]\nrate = \"1/s\"\n", "s.toml:2:", "unknown key 'rate'"},
      {"[[rule]]\ncategory = \"bad-mailbox\"\n", "s.toml:1:", "needs 'match'"},
      {"[[rule]]\nmatch = \"x\"\n", "s.toml:1:", "needs 'category'"},
      {"[[rule]]\nmatch = \"(unclosed\"\ncategory = \"other\"\n",
       "s.toml:2:", "not a valid RE2 pattern"},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"hard\"\n", "s.toml:3:", "is not a category"},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\naction = \"explode\"\n",
       "s.toml:4:", "expected \"none\""},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\naction = \"suspend\"\n",
       "s.toml:1:", "needs 'duration'"},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\naction = \"suspend\"\nduration = \"soon\"\n",
       "s.toml:5:", "not a positive duration"},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\nduration = \"1m\"\n",
       "s.toml:4:", "only for action = \"suspend\""},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\nscope = \"planet\"\n",
       "s.toml:4:", "expected \"destination\""},
      {"[[rule]]\nmatch = \"\"\ncategory = \"other\"\n", "s.toml:2:", "is empty"},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\nsuppress = \"yes\"\n",
       "s.toml:4:", "true or false"},
      {"[[rule]]\nmatch = \"x\"\ncategory = \"other\"\ncolour = 1\n",
       "s.toml:4:", "unknown key 'colour'"},
      {"rule = 5\n", "s.toml:1:", "array of tables"},
  };
  ASSERT_GE(cases.size(), 25u);
  for (const BadCase& c : cases) {
    auto r = ParseShaping(c.text, "s.toml", Base());
    ASSERT_FALSE(r.ok()) << c.text;
    const std::string msg(r.status().message());
    EXPECT_THAT(msg, HasSubstr(c.where)) << c.text;
    EXPECT_THAT(msg, HasSubstr(c.what)) << c.text;
  }
}

TEST(ShapingFileTest, AnUnreadableFileIsNamed) {
  auto r = LoadShapingFile("/nonexistent/shaping.toml", Base());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/nonexistent/shaping.toml"));
}

}  // namespace
}  // namespace salvo::shaping
