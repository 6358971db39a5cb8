// The fleet keys ([fleet] node, [queue] admin_listen/admin_token_file) and the
// SALVO_* environment overrides a container sets per node.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "engine/config/config.h"

namespace salvo::config {
namespace {

using ::testing::HasSubstr;

std::function<const char*(const char*)> Env(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(FleetConfigTest, KeysParseAndResolve) {
  auto c = ParseConfig(
      "[fleet]\nnode = \"1/3\"\n[queue]\nadmin_listen = \"0.0.0.0:9470\"\n"
      "admin_token_file = \"secrets/token\"\n",
      "/etc/salvo/salvo.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fleet.node, "1/3");
  EXPECT_EQ(c->queue.admin_listen, "0.0.0.0:9470");
  EXPECT_EQ(c->queue.admin_token_file, "/etc/salvo/secrets/token");
  EXPECT_TRUE(ParseConfig("[fleet]\nnode = \"auto/5\"\n", "f.toml").ok());
  auto d = ParseConfig("", "f.toml");
  EXPECT_EQ(d->fleet.node, "");
  EXPECT_EQ(d->queue.admin_listen, "");
}

TEST(FleetConfigTest, BadValuesNameFileLineAndKey) {
  struct Case {
    const char* text;
    const char* want;
  } cases[] = {
      {"[fleet]\nnode = \"3/3\"\n", "f.toml:2:8: [fleet] node: \"3/3\" is not a node share"},
      {"[fleet]\nnode = \"x\"\n", "f.toml:2:8: [fleet] node"},
      {"[fleet]\nnodes = \"1/2\"\n", "unknown key 'nodes' in [fleet]"},
      {"[queue]\nadmin_listen = \"9470\"\n", "f.toml:2:16: [queue] admin_listen"},
      {"[queue]\nadmin_listen = \"h:99999\"\n", "port must be 1..65535"},
  };
  for (const Case& k : cases) {
    auto c = ParseConfig(k.text, "f.toml");
    ASSERT_FALSE(c.ok()) << k.text;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(k.want)) << k.text;
  }
}

TEST(FleetConfigTest, EnvironmentOverridesTheFile) {
  auto c = ParseConfig("data_dir = \"/var/a\"\nshards = 4\n[fleet]\nnode = \"0/2\"\n", "f.toml");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(ApplyEnvironment(&*c, Env({{"SALVO_DATA_DIR", "/spool"},
                                         {"SALVO_SHARDS", "2"},
                                         {"SALVO_LOG_LEVEL", "debug"},
                                         {"SALVO_NODE", "1/2"},
                                         {"SALVO_HELO_NAME", "node1.example"},
                                         {"SALVO_METRICS_LISTEN", "0.0.0.0:9465"},
                                         {"SALVO_ADMIN_LISTEN", "0.0.0.0:9470"},
                                         {"SALVO_ADMIN_TOKEN_FILE", "/run/secrets/t"}}))
                  .ok());
  EXPECT_EQ(c->data_dir, "/spool");
  EXPECT_EQ(c->shards, 2);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->fleet.node, "1/2");
  EXPECT_EQ(c->delivery.helo_name, "node1.example");
  EXPECT_EQ(c->metrics.listen, "0.0.0.0:9465");
  EXPECT_TRUE(c->metrics.listen_set);
  EXPECT_EQ(c->queue.admin_listen, "0.0.0.0:9470");
  EXPECT_EQ(c->queue.admin_token_file, "/run/secrets/t");

  // Unset variables change nothing; "" is a value (metrics off, no node).
  auto e = ParseConfig("shards = 4\n[fleet]\nnode = \"0/2\"\n", "f.toml");
  ASSERT_TRUE(ApplyEnvironment(&*e, Env({{"SALVO_NODE", ""}, {"SALVO_METRICS_LISTEN", ""}})).ok());
  EXPECT_EQ(e->shards, 4);
  EXPECT_EQ(e->fleet.node, "");
  EXPECT_EQ(e->metrics.listen, "");
}

TEST(FleetConfigTest, BadEnvironmentNamesTheVariable) {
  struct Case {
    const char* var;
    const char* value;
    const char* want;
  } cases[] = {
      {"SALVO_SHARDS", "many", "environment SALVO_SHARDS=many: expected an integer 0..256"},
      {"SALVO_SHARDS", "300", "SALVO_SHARDS=300"},
      {"SALVO_NODE", "2/2", "environment SALVO_NODE=2/2: \"2/2\" is not a node share"},
      {"SALVO_LOG_LEVEL", "loud", "SALVO_LOG_LEVEL=loud: expected debug"},
      {"SALVO_METRICS_LISTEN", "9465", "SALVO_METRICS_LISTEN=9465"},
      {"SALVO_ADMIN_LISTEN", "x:0", "SALVO_ADMIN_LISTEN=x:0"},
      {"SALVO_DATA_DIR", "", "SALVO_DATA_DIR=: must not be empty"},
  };
  for (const Case& k : cases) {
    Config c;
    absl::Status s = ApplyEnvironment(&c, Env({{k.var, k.value}}));
    ASSERT_FALSE(s.ok()) << k.var << "=" << k.value;
    EXPECT_THAT(std::string(s.message()), HasSubstr(k.want));
  }
}

}  // namespace
}  // namespace salvo::config
