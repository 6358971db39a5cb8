// Bounce classification: the shipped rules against a table of real-world
// replies (tests/data/smtp/bounce-replies.tsv), user rules overriding shipped
// ones, and the failure module applying them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "engine/shaping/shaping.h"
#include "engine/smtp/classifier.h"
#include "engine/smtp/failure_scope.h"
#include "engine/smtp/reply.h"

namespace salvo::shaping {
namespace {

struct Row {
  std::string reply, category, source;
  int line = 0;
};

std::vector<Row> ReadTable(const std::string& path) {
  std::ifstream in(path);
  std::vector<Row> rows;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    Row r;
    r.line = n;
    size_t a = line.find('\t'), b = line.find('\t', a + 1);
    if (a == std::string::npos || b == std::string::npos) {
      ADD_FAILURE() << path << ":" << n << ": not REPLY<TAB>CATEGORY<TAB>SOURCE";
      continue;
    }
    r.reply = line.substr(0, a);
    r.category = line.substr(a + 1, b - a - 1);
    r.source = line.substr(b + 1);
    rows.push_back(std::move(r));
  }
  return rows;
}

smtp::Reply ParseLine(const std::string& line) {
  smtp::Reply r;
  r.code = std::stoi(line.substr(0, 3));
  std::string_view text = line.size() > 4 ? std::string_view(line).substr(4) : "";
  r.enhanced = std::string(smtp::SplitEnhancedCode(&text));
  r.text = std::string(text);
  return r;
}

TEST(ClassifyTest, TheShippedRulesParseAndCompile) {
  EXPECT_GE(BuiltinRules().size(), 20u);
  auto c = BuildClassifier({});
  ASSERT_TRUE(c.ok()) << c.status();
}

// The acceptance tables: real replies, many providers, 4xx and 5xx, each
// table at least 90% and both together at least 95% classified as expected;
// the misses are printed. bounce-replies.tsv (382 lines) is what the rules
// were written against; the hold-out table (157 lines from other sources)
// was measured before the rules saw it (63%, see its header) and then used
// to extend them.
class ClassifyTableTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ClassifyTableTest, RealWorldRepliesAreClassifiedAsExpected) {
  const std::string path = std::string(SALVO_SOURCE_DIR) + "/tests/data/smtp/" + GetParam();
  std::vector<Row> rows = ReadTable(path);
  ASSERT_GE(rows.size(), 150u);
  auto c = BuildClassifier({});
  ASSERT_TRUE(c.ok());
  smtp::InstallClassifier(*std::move(c));
  std::set<std::string> distinct;
  int hits = 0, soft = 0, hard = 0;
  std::string misses;
  for (const Row& r : rows) {
    EXPECT_TRUE(distinct.insert(r.reply).second) << path << ":" << r.line << ": duplicate";
    ASSERT_TRUE(smtp::ParseCategory(r.category)) << path << ":" << r.line << ": " << r.category;
    const smtp::Reply reply = ParseLine(r.reply);
    (reply.code >= 500 ? hard : soft)++;
    // The engine's path: the failure module, consulting the installed rules
    // (falling back on its keywords when no rule matches).
    const smtp::Outcome o = smtp::OutcomeForReply(reply, smtp::Phase::kRcpt, "mx");
    const smtp::Rule* rule = o.rule;
    const std::string got(smtp::CategoryName(o.bounce_class));
    if (got == r.category)
      ++hits;
    else
      misses += "\n  line " + std::to_string(r.line) + ": expected " + r.category + ", got " + got +
                " (" + (rule ? rule->name : "no rule") + "): " + r.reply.substr(0, 100);
  }
  EXPECT_GE(soft, 30);
  EXPECT_GE(hard, 50);
  const double rate = static_cast<double>(hits) / static_cast<double>(rows.size());
  std::printf("%s: classified %d of %zu as expected (%.1f%%); misses:%s\n", GetParam(), hits,
              rows.size(), 100 * rate, misses.empty() ? " none" : misses.c_str());
  EXPECT_GE(rate, 0.9) << misses;
  smtp::InstallClassifier(nullptr);
}

INSTANTIATE_TEST_SUITE_P(Tables, ClassifyTableTest,
                         ::testing::Values("bounce-replies.tsv", "bounce-replies-holdout.tsv"));

// Both tables together (539 distinct replies): at least 95%.
TEST(ClassifyTest, BothTablesTogetherAtLeast95Percent) {
  auto c = BuildClassifier({});
  ASSERT_TRUE(c.ok());
  smtp::InstallClassifier(*std::move(c));
  int hits = 0, rows_n = 0;
  for (const char* name : {"bounce-replies.tsv", "bounce-replies-holdout.tsv"}) {
    for (const Row& r : ReadTable(std::string(SALVO_SOURCE_DIR) + "/tests/data/smtp/" + name)) {
      const smtp::Outcome o = smtp::OutcomeForReply(ParseLine(r.reply), smtp::Phase::kRcpt, "mx");
      hits += smtp::CategoryName(o.bounce_class) == r.category;
      ++rows_n;
    }
  }
  smtp::InstallClassifier(nullptr);
  std::printf("both tables: %d of %d (%.1f%%)\n", hits, rows_n, 100.0 * hits / rows_n);
  EXPECT_GE(rows_n, 500);
  EXPECT_GE(static_cast<double>(hits) / rows_n, 0.95);
}

TEST(ClassifyTest, AUserRuleOverridesAShippedOne) {
  auto user = ParseRules(R"([[rule]]
name = "ours"
match = '5\.1\.1'
category = "policy-related"
)",
                         "mine.toml");
  ASSERT_TRUE(user.ok()) << user.status();
  auto c = BuildClassifier(*user);
  ASSERT_TRUE(c.ok());
  const smtp::Rule* r = (*c)->Match("550 5.1.1 user unknown");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->name, "ours");
  EXPECT_EQ(r->category, smtp::Category::kPolicyRelated);
  EXPECT_EQ((*c)->Match("550 no such user here")->name, "bad-mailbox");
}

TEST(ClassifyTest, TheFailureModuleAppliesTheInstalledRules) {
  auto user = ParseRules(R"([[rule]]
name = "hold-them"
match = 'try the other door'
category = "policy-related"
action = "suspend"
duration = "30m"
scope = "domain"

[[rule]]
name = "keep-address"
match = 'gone fishing'
category = "bad-mailbox"
suppress = false
)",
                         "mine.toml");
  ASSERT_TRUE(user.ok()) << user.status();
  auto c = BuildClassifier(*user);
  ASSERT_TRUE(c.ok());
  smtp::InstallClassifier(*std::move(c));
  smtp::Reply r;
  r.code = 550;
  r.enhanced = "5.1.1";
  r.text = "The email account that you tried to reach does not exist.";
  smtp::Outcome o = smtp::OutcomeForReply(r, smtp::Phase::kRcpt, "mx");
  EXPECT_EQ(o.bounce_class, smtp::Category::kBadMailbox);
  EXPECT_TRUE(o.suppress);  // a hard bad-mailbox bounce suppresses the address
  ASSERT_NE(o.rule, nullptr);
  EXPECT_EQ(o.rule->name, "bad-mailbox");

  r.code = 451;
  r.enhanced = "4.7.0";
  r.text = "please try the other door";
  o = smtp::OutcomeForReply(r, smtp::Phase::kRcpt, "mx");
  ASSERT_NE(o.rule, nullptr);
  EXPECT_EQ(o.rule->action, smtp::RuleAction::kSuspend);
  EXPECT_EQ(o.rule->scope, smtp::RuleScope::kDomain);
  EXPECT_EQ(o.rule->duration, absl::Minutes(30));
  EXPECT_FALSE(o.suppress);  // soft

  r.code = 550;
  r.enhanced = "";
  r.text = "gone fishing";
  o = smtp::OutcomeForReply(r, smtp::Phase::kRcpt, "mx");
  EXPECT_EQ(o.bounce_class, smtp::Category::kBadMailbox);
  EXPECT_FALSE(o.suppress);  // the rule says keep the address

  // A hard reply no rule knows is never grounds to suppress the address
  // (the keyword fallback still gives it a category).
  r.code = 550;
  r.enhanced = "";
  r.text = "computer says no";
  o = smtp::OutcomeForReply(r, smtp::Phase::kRcpt, "mx");
  EXPECT_EQ(o.rule, nullptr);
  EXPECT_TRUE(o.hard());
  EXPECT_FALSE(o.suppress);

  // A "slow down" reply is rate-limited with the backoff action.
  r.code = 421;
  r.enhanced = "4.7.0";
  r.text =
      "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or "
      "user complaints";
  o = smtp::OutcomeForReply(r, smtp::Phase::kMail, "mx");
  EXPECT_EQ(o.bounce_class, smtp::Category::kRateLimited);
  EXPECT_EQ(o.rule->action, smtp::RuleAction::kBackoff);
  smtp::InstallClassifier(nullptr);
}

}  // namespace
}  // namespace salvo::shaping
