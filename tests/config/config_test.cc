#include "engine/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace salvo::config {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Config> Parse(const std::string& text) { return ParseConfig(text, "/etc/s.toml"); }

std::string ErrorOf(const std::string& text) {
  auto c = Parse(text);
  EXPECT_FALSE(c.ok()) << text;
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(ConfigTest, EmptyFileGivesDefaults) {
  auto c = Parse("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->shards, 0);
  EXPECT_GE(c->EffectiveShards(), 1);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->delivery.connections_per_site, 32);
  EXPECT_EQ(c->delivery.messages_per_connection, 100);
  EXPECT_DOUBLE_EQ(c->delivery.timeouts.data_end.count(), 600.0);
  EXPECT_DOUBLE_EQ(c->delivery.shutdown_deadline.count(), 30.0);
  EXPECT_EQ(c->tls.mode, TlsMode::kOpportunistic);
  EXPECT_TRUE(c->routes.empty());
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9465");
  EXPECT_FALSE(c->metrics.listen_set);
  EXPECT_FALSE(c->metrics.domains.has_value());
  EXPECT_EQ(c->metrics.max_campaigns, 10);
  EXPECT_TRUE(c->delivery_log.path.empty());
  EXPECT_EQ(c->delivery_log.rotate_bytes, 1ull << 30);
  EXPECT_DOUBLE_EQ(c->delivery_log.rotate_interval.count(), 3600.0);
  EXPECT_EQ(c->data_dir, "/etc/salvo-data");  // relative paths resolve against the file's folder
  EXPECT_EQ(c->AdminSocketPath(), "/etc/salvo-data/admin.sock");
}

TEST(ConfigTest, FullFile) {
  auto c = Parse(R"(
data_dir = "/var/lib/salvo"
shards = 2
pin_threads = false
log_level = "debug"
[dns]
servers = ["127.0.0.1:5353", "[::1]:53"]
timeout = "1500ms"
attempts = 3
[[route]]
domain = "example.com"
hosts = ["127.0.0.2:2525", "127.0.0.3:2525"]
[routes]
"*" = "127.0.0.1:2525"
"Other.ORG" = ["10.0.0.1"]
[[dkim.keys]]
domain = "example.com"
selector = "s1"
key_file = "keys/s1.pem"
type = "ed25519"
[delivery]
connections_per_site = 4
messages_per_connection = 7
idle_timeout = 2.5
helo_name = "mx.example.com"
[delivery.timeouts]
connect = "2s"
data_end = "1m"
[tls]
mode = "off"
[metrics]
listen = "127.0.0.1:9464"
domains = ["Gmail.com", "example.org"]
max_campaigns = 3
[delivery_log]
path = "log/delivery.jsonl"
rotate_bytes = "64M"
rotate_interval = "15m"
[queue]
lease_batch = 50
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data_dir, "/var/lib/salvo");
  EXPECT_EQ(c->EffectiveShards(), 2);
  EXPECT_FALSE(c->pin_threads);
  EXPECT_EQ(c->dns.servers.size(), 2u);
  EXPECT_DOUBLE_EQ(c->dns.timeout.count(), 1.5);
  ASSERT_EQ(c->routes.size(), 3u);
  EXPECT_EQ(c->routes[0].domain, "example.com");
  EXPECT_EQ(c->routes[0].hosts.size(), 2u);
  EXPECT_EQ(c->routes[0].source, "/etc/s.toml:10");
  EXPECT_EQ(c->routes[1].domain, "*");
  EXPECT_EQ(c->routes[2].domain, "other.org");
  ASSERT_EQ(c->dkim_keys.size(), 1u);
  EXPECT_EQ(c->dkim_keys[0].type, DkimKeyType::kEd25519);
  EXPECT_EQ(c->dkim_keys[0].key_file, "/etc/keys/s1.pem");
  EXPECT_EQ(c->delivery.connections_per_site, 4);
  EXPECT_DOUBLE_EQ(c->delivery.idle_timeout.count(), 2.5);
  EXPECT_DOUBLE_EQ(c->delivery.timeouts.connect.count(), 2.0);
  EXPECT_DOUBLE_EQ(c->delivery.timeouts.data_end.count(), 60.0);
  EXPECT_EQ(c->tls.mode, TlsMode::kOff);
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9464");
  EXPECT_TRUE(c->metrics.listen_set);
  EXPECT_EQ(c->metrics.domains, (std::vector<std::string>{"gmail.com", "example.org"}));
  EXPECT_EQ(c->metrics.max_campaigns, 3);
  EXPECT_EQ(c->delivery_log.path, "/etc/log/delivery.jsonl");
  EXPECT_EQ(c->delivery_log.rotate_bytes, 64ull << 20);
  EXPECT_DOUBLE_EQ(c->delivery_log.rotate_interval.count(), 900.0);
  EXPECT_EQ(c->queue.lease_batch, 50);
}

TEST(ConfigTest, UnknownKeysNameFileLineAndKey) {
  EXPECT_EQ(ErrorOf("shards = 1\nshardz = 2\n"), "/etc/s.toml:2:1: unknown key 'shardz'");
  EXPECT_THAT(ErrorOf("[delivery]\n\nconection_per_site = 3\n"),
              HasSubstr("/etc/s.toml:3:1: unknown key 'conection_per_site' in [delivery]"));
  EXPECT_THAT(ErrorOf("[delivery.timeouts]\nconect = 3\n"),
              HasSubstr(":2:1: unknown key 'conect' in [delivery.timeouts]"));
  EXPECT_THAT(ErrorOf("[bogus]\nx = 1\n"), HasSubstr(":1:"));
  EXPECT_THAT(ErrorOf("[[route]]\ndomain='a'\nhosts=['h']\nport=1\n"),
              HasSubstr(":4:1: unknown key 'port' in [route]"));
  EXPECT_THAT(ErrorOf("[[dkim.keys]]\ndomain='a'\nselector='s'\nkey_file='k'\nalg='x'\n"),
              HasSubstr(":5:1: unknown key 'alg' in [dkim.keys]"));
}

TEST(ConfigTest, WrongTypesNameFileLineAndKey) {
  EXPECT_EQ(ErrorOf("\nshards = \"two\"\n"),
            "/etc/s.toml:2:10: 'shards' must be an integer, not string");
  EXPECT_THAT(ErrorOf("[delivery]\nhelo_name = 5\n"),
              HasSubstr(":2:13: 'delivery.helo_name' must be a string, not integer"));
  EXPECT_THAT(ErrorOf("pin_threads = 1\n"), HasSubstr("'pin_threads' must be true or false"));
  EXPECT_THAT(ErrorOf("dns = 3\n"), HasSubstr("'dns' must be a table"));
  EXPECT_THAT(ErrorOf("[dns]\nservers = [1, 2]\n"), HasSubstr("'dns.servers' must be a list"));
  EXPECT_THAT(ErrorOf("[delivery.timeouts]\nconnect = true\n"),
              HasSubstr(":2:11: 'delivery.timeouts.connect' must be a duration"));
  EXPECT_THAT(ErrorOf("[delivery.timeouts]\nconnect = \"3 fortnights\"\n"),
              HasSubstr("is not a duration"));
  EXPECT_THAT(ErrorOf("route = 1\n"), HasSubstr("'route' must be an array of tables"));
}

// Issue 16 item 2: every duration key is bounded (deadlines computed from it
// must not overflow), refused with file:line naming the cause.
TEST(ConfigTest, AbsurdDurationsAreRefusedWithFileAndLine) {
  EXPECT_EQ(ErrorOf("[delivery]\nshutdown_deadline = \"9999999999999999d\"\n"),
            "/etc/s.toml:2:21: 'delivery.shutdown_deadline' = \"9999999999999999d\" is not a "
            "duration (e.g. 30, \"30s\", \"250ms\", \"5m\", \"1h\"): "
            "'9999999999999999d' is longer than 100 years");
  EXPECT_EQ(ErrorOf("[delivery]\nshutdown_deadline = 1e300\n"),
            "/etc/s.toml:2:21: 'delivery.shutdown_deadline' = 1e+300s is longer than 100 years "
            "(the most Salvo takes)");
  for (const char* key :
       {"[dns]\ntimeout", "[dns]\nmin_ttl", "[dns]\nmax_ttl", "[dns]\nnegative_ttl",
        "[delivery]\nidle_timeout", "[delivery]\nsite_retry_delay", "[delivery.timeouts]\nconnect",
        "[delivery.timeouts]\ndata_end", "[delivery_log]\nrotate_interval",
        "[queue]\npoll_interval"}) {
    EXPECT_THAT(ErrorOf(std::string(key) + " = \"9999999999999999d\"\n"), HasSubstr(":2:")) << key;
    EXPECT_THAT(ErrorOf(std::string(key) + " = 99999999999\n"), HasSubstr("longer than 100 years"))
        << key;
  }
  // 100 years is still taken.
  EXPECT_TRUE(Parse("[delivery]\nshutdown_deadline = \"36500d\"\n").ok());
}

TEST(ConfigTest, BadValues) {
  EXPECT_THAT(ErrorOf("shards = -1\n"), HasSubstr(":1:10: 'shards' = -1 is out of range [0, 256]"));
  EXPECT_THAT(ErrorOf("[delivery]\nconnections_per_site = 0\n"), HasSubstr("out of range"));
  EXPECT_THAT(ErrorOf("log_level = \"loud\"\n"), HasSubstr("expected debug|info"));
  EXPECT_THAT(ErrorOf("[tls]\nmode = \"maybe\"\n"),
              HasSubstr(":2:8: [tls] mode = \"maybe\": expected off|opportunistic|required"));
  EXPECT_THAT(ErrorOf("[[route]]\nhosts = ['a']\n"), HasSubstr(":1:1: [[route]] needs domain"));
  EXPECT_THAT(ErrorOf("[[route]]\ndomain = 'x'\nhosts = []\n"),
              HasSubstr("route for 'x': needs at least one host"));
  EXPECT_THAT(ErrorOf("[routes]\n'x' = 'h:99999'\n"), HasSubstr("port must be 1..65535"));
  EXPECT_THAT(ErrorOf("[routes]\n'x' = 'a'\n'X' = 'b'\n"), HasSubstr("declared twice"));
  EXPECT_THAT(ErrorOf("[[dkim.keys]]\ndomain='a'\nselector='s'\nkey_file='k'\ntype='dsa'\n"),
              HasSubstr("expected \"rsa\" or \"ed25519\""));
  EXPECT_THAT(ErrorOf("[[dkim.keys]]\ndomain='a'\n"),
              HasSubstr("needs domain, selector and key_file"));
  EXPECT_THAT(ErrorOf("[metrics]\nlisten = 'nope'\n"), HasSubstr("expected \"addr:port\""));
  EXPECT_EQ(ErrorOf("[metrics]\ndomains = [\"gmail.com\", \"bad domain\"]\n"),
            "/etc/s.toml:2:11: [metrics] domains: \"bad domain\" is not a domain name (ASCII, "
            "IDNs as xn--)");
  EXPECT_THAT(ErrorOf("[metrics]\nmax_campaigns = 101\n"), HasSubstr("out of range [0, 100]"));
  EXPECT_THAT(ErrorOf("[delivery_log]\nrotate_bytes = \"12X\"\n"),
              HasSubstr("/etc/s.toml:2:16: 'delivery_log.rotate_bytes' = \"12X\" is not a size"));
  EXPECT_THAT(ErrorOf("[delivery_log]\nrotate_bytes = -1\n"), HasSubstr("must be >= 0"));
  EXPECT_THAT(ErrorOf("[delivery_log]\npaht = \"x\"\n"),
              HasSubstr("unknown key 'paht' in [delivery_log]"));
  EXPECT_THAT(ErrorOf("[dns]\nservers = ['1.2.3.4:0']\n"), HasSubstr("[dns] servers"));
}

TEST(ConfigTest, SyntaxErrorsNameFileLine) {
  EXPECT_THAT(ErrorOf("a = \n"), HasSubstr("/etc/s.toml:1:"));
  EXPECT_THAT(ErrorOf("x = 1\n[delivery\n"), HasSubstr("/etc/s.toml:2:"));
}

TEST(ConfigTest, LoadMissingFile) {
  auto c = LoadConfig("/nonexistent/salvo.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("/nonexistent/salvo.toml: cannot read configuration"));
}

TEST(ConfigTest, ExampleFileParsesToDefaults) {
  // deploy/salvo.example.toml documents every key with its default value.
  auto c = LoadConfig(SALVO_SOURCE_DIR "/deploy/salvo.example.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  Config d = *Parse("");
  EXPECT_EQ(c->shards, d.shards);
  EXPECT_EQ(c->log_level, d.log_level);
  EXPECT_EQ(c->delivery.connections_per_site, d.delivery.connections_per_site);
  EXPECT_EQ(c->delivery.messages_per_connection, d.delivery.messages_per_connection);
  EXPECT_EQ(c->delivery.in_flight_limit, d.delivery.in_flight_limit);
  EXPECT_DOUBLE_EQ(c->delivery.timeouts.data_end.count(), d.delivery.timeouts.data_end.count());
  EXPECT_DOUBLE_EQ(c->delivery.timeouts.greeting.count(), d.delivery.timeouts.greeting.count());
  EXPECT_EQ(c->tls.mode, d.tls.mode);
  EXPECT_EQ(c->queue.lease_batch, d.queue.lease_batch);
  EXPECT_EQ(c->metrics.listen, d.metrics.listen);
  EXPECT_EQ(c->metrics.max_campaigns, d.metrics.max_campaigns);
  EXPECT_EQ(c->delivery_log.path, d.delivery_log.path);
  EXPECT_EQ(c->delivery_log.rotate_bytes, d.delivery_log.rotate_bytes);
  EXPECT_DOUBLE_EQ(c->delivery_log.rotate_interval.count(), d.delivery_log.rotate_interval.count());
  // metrics.domains: tests/metrics checks the example's list is the built-in one.
}

// [fleet] redis / node_id / size: fleet-wide limits (engine/fleet).
TEST(ConfigTest, FleetRedisKeys) {
  auto c = Parse("[fleet]\nnode = \"1/3\"\nredis = \"redis:6379\"\nnode_id = \"salvo-1\"\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fleet.redis, "redis:6379");
  EXPECT_EQ(c->fleet.node_id, "salvo-1");
  EXPECT_EQ(c->fleet.FleetSize(), 3);  // N of node
  c = Parse("[fleet]\nredis = \"127.0.0.1:6379\"\nsize = 5\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fleet.FleetSize(), 5);
  EXPECT_EQ(Parse("").value().fleet.FleetSize(), 1);
  auto bad = Parse("[fleet]\nredis = \"redis\"\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), testing::HasSubstr("s.toml:2:"));
  EXPECT_THAT(std::string(bad.status().message()), testing::HasSubstr("[fleet] redis"));
  EXPECT_FALSE(Parse("[fleet]\nsize = -1\n").ok());
  Config env;
  ASSERT_TRUE(ApplyEnvironment(&env, [](const char* name) -> const char* {
                return std::string(name) == "SALVO_FLEET_REDIS" ? "10.0.0.9:6379" : nullptr;
              }).ok());
  EXPECT_EQ(env.fleet.redis, "10.0.0.9:6379");
}

TEST(SplitHostPortTest, Forms) {
  std::string h;
  int p;
  ASSERT_TRUE(SplitHostPort("127.0.0.2:2525", 25, &h, &p).ok());
  EXPECT_EQ(h, "127.0.0.2");
  EXPECT_EQ(p, 2525);
  ASSERT_TRUE(SplitHostPort("mx.example.com", 25, &h, &p).ok());
  EXPECT_EQ(p, 25);
  ASSERT_TRUE(SplitHostPort("[::1]:26", 25, &h, &p).ok());
  EXPECT_EQ(h, "::1");
  EXPECT_EQ(p, 26);
  EXPECT_FALSE(SplitHostPort(":25", 25, &h, &p).ok());
  EXPECT_FALSE(SplitHostPort("h:x", 25, &h, &p).ok());
  EXPECT_FALSE(SplitHostPort("h:", 25, &h, &p).ok());
}

// Egress sources and pools (issue 13 item 5).
TEST(ConfigTest, EgressSourcesAndPools) {
  auto c = Parse(
      "[[egress.source]]\nname = \"ip1\"\naddress = \"192.0.2.10\"\nehlo = \"mta1.example\"\n"
      "[[egress.source]]\nname = \"ip6\"\naddress = \"2001:db8::1\"\n"
      "[[egress.pool]]\nname = \"main\"\nsources = [\"ip1\", \"ip6\"]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->egress_sources.size(), 2u);
  EXPECT_EQ(c->egress_sources[0].ehlo, "mta1.example");
  EXPECT_EQ(c->EgressPoolIndex("main"), 0);
  EXPECT_EQ(c->EgressPoolIndex("other"), -1);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[[egress.source]]\nname = \"a\"\naddress = \"mta.example\"\n", "not an IPv4 or IPv6"},
      {"[[egress.source]]\naddress = \"192.0.2.1\"\n", "needs name"},
      {"[[egress.source]]\nname = \"a\"\naddress = \"192.0.2.1\"\n[[egress.source]]\nname = "
       "\"a\"\naddress = \"192.0.2.2\"\n",
       "defined twice"},
      {"[[egress.pool]]\nname = \"p\"\nsources = [\"nope\"]\n",
       "no [[egress.source]] named 'nope'"},
      {"[[egress.pool]]\nname = \"p\"\nsources = []\n", "has no sources"},
      {"[[egress.source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nbind = 1\n",
       "unknown key 'bind'"},
      {"[egress]\nsource = 1\n", "array of tables"},
      {"[[egress.source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup = [\"1:100\"]\n",
       "warmup needs warmup_start"},
      {"[[egress.source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup_start = "
       "\"2026-12-01\"\nwarmup = [\"4:100\", \"2:50\"]\n",
       "ascending"},
      {"[[egress.source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup_start = \"soon\"\n",
       "is not a date"},
  };
  for (const auto& [text, what] : bad) {
    auto r = Parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(std::string(r.status().message()).find("/etc/s.toml:"), std::string::npos)
        << r.status();
    EXPECT_NE(std::string(r.status().message()).find(what), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace salvo::config

namespace salvo::config {
namespace {

TEST(ConfigTest, QueueStorageKeys) {
  Config d = *ParseConfig("", "/etc/s.toml");
  EXPECT_FALSE(d.queue.sync_writes);
  EXPECT_EQ(d.queue.min_free_bytes, 64ull << 20);
  auto c = ParseConfig("[queue]\nsync_writes = true\nmin_free_bytes = \"1G\"\n", "/etc/s.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->queue.sync_writes);
  EXPECT_EQ(c->queue.min_free_bytes, 1ull << 30);
  c = ParseConfig("[queue]\nmin_free_bytes = 0\n", "/etc/s.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->queue.min_free_bytes, 0u);
  c = ParseConfig("[queue]\nsync_writes = \"yes\"\n", "/etc/s.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              ::testing::HasSubstr("/etc/s.toml:2:15: 'queue.sync_writes' must be true or false"));
  c = ParseConfig("[queue]\nmin_free_bytes = -1\n", "/etc/s.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              ::testing::HasSubstr("/etc/s.toml:2:18: 'queue.min_free_bytes' must be >= 0"));
}

}  // namespace
}  // namespace salvo::config

namespace salvo::config {
namespace {

TEST(ConfigVerpTest, VerpKeysAreReadAndChecked) {
  auto c = ParseConfig(
      "[verp]\ndomain = \"bounce.example.com\"\nprefix = \"rt\"\nsecret_file = \"verp.key\"\n",
      "/etc/salvo/s.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->verp.domain, "bounce.example.com");
  EXPECT_EQ(c->verp.prefix, "rt");
  EXPECT_EQ(c->verp.secret_file, "/etc/salvo/verp.key");  // relative to the file
  auto d = ParseConfig("", "s.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->verp.domain, "");
  EXPECT_EQ(d->verp.prefix, "bounces");
  auto error = [](const std::string& text) {
    auto r = ParseConfig(text, "/etc/s.toml");
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  EXPECT_THAT(error("[verp]\ndomain = \"bad_domain.example\"\n"),
              ::testing::HasSubstr("/etc/s.toml:2:10: [verp] domain: \"bad_domain.example\" is "
                                   "not a domain name"));
  EXPECT_THAT(error("[verp]\ndomain = \"localhost\"\n"), ::testing::HasSubstr("[verp] domain"));
  EXPECT_THAT(
      error("[verp]\ndomain = \"b.example.com\"\nprefix = \"a+b\"\n"),
      ::testing::HasSubstr("/etc/s.toml:3:10: [verp] prefix: \"a+b\" is not a VERP prefix"));
  EXPECT_THAT(error("[verp]\nsecret = \"x\"\n"), ::testing::HasSubstr("unknown key 'secret'"));
}

}  // namespace
}  // namespace salvo::config
