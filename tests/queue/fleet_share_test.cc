// Campaigns split across a fleet (issue 18): N nodes loading the same list
// with --node 0/N .. N-1/N take every recipient exactly once between them,
// by a hash that does not change between processes or releases.
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "queue/campaign.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

TEST(NodeShareTest, ParsesIOfN) {
  absl::StatusOr<NodeShare> s = ParseNodeShare("2/5");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->index, 2u);
  EXPECT_EQ(s->count, 5u);
  EXPECT_EQ(s->ToString(), "2/5");
  EXPECT_TRUE(ParseNodeShare("0/1")->whole());
  for (const char* bad : {"", "3", "3/3", "-1/3", "1/0", "a/3", "1/x", "1/5000", "1/3/4"})
    EXPECT_FALSE(ParseNodeShare(bad).ok()) << bad;
  EXPECT_NE(std::string(ParseNodeShare("3/3").status().message()).find("i must be less than N"),
            std::string::npos);
}

TEST(NodeShareTest, AutoTakesTheHostNamesTrailingNumber) {
  absl::StatusOr<NodeShare> s = ParseNodeShare("auto/3", "salvo-2");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->index, 2u);
  EXPECT_FALSE(ParseNodeShare("auto/3", "salvo-3").ok());  // out of range
  EXPECT_FALSE(ParseNodeShare("auto/3", "salvo").ok());    // no number
}

TEST(NodeShareTest, HashIsFnv1a64AndStable) {
  // FNV-1a 64 test vectors: any change here would move recipients between
  // nodes of a fleet that is mid-campaign.
  EXPECT_EQ(NodeHash(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(NodeHash("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(NodeHash("foobar"), 0x85944171f73967e8ull);
}

CampaignSpec MakeSpec(const std::string& tmpl, const std::string& list) {
  CampaignSpec spec;
  spec.name = "c";
  spec.template_path = tmpl;
  spec.recipients_path = list;
  spec.from = "news@example.com";
  return spec;
}

class FleetLoadTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(FleetLoadTest, NNodesTakeEveryRecipientExactlyOnce) {
  // 3,000 distinct valid addresses over 13 domains, plus duplicates (one of
  // them differing only in the domain's case) and invalid rows.
  std::string csv = "email,name\n";
  std::set<std::string> want;
  for (int i = 0; i < 3000; ++i) {
    const std::string addr =
        "user" + std::to_string(i) + "@d" + std::to_string(i % 13) + ".example";
    csv += addr + ",n" + std::to_string(i) + "\n";
    want.insert(addr);
  }
  csv += "user7@D7.EXAMPLE,dup\nuser8@d8.example,dup\nnot-an-address,x\n@nobody.example,y\n";
  const std::string tmpl = dir_.Write("t.eml", testing::kTemplate);
  const std::string list = dir_.Write("list.csv", csv);

  for (uint32_t n : {1u, 2u, 3u, 7u}) {
    std::set<std::string> got;
    uint64_t accepted = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const std::string data = dir_.File("n" + std::to_string(n) + "-" + std::to_string(i));
      Spool::Options o;
      o.rng_seed = 1;
      absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(data, o);
      ASSERT_TRUE(spool.ok()) << spool.status();
      const CampaignSpec spec = MakeSpec(tmpl, list);
      LoadOptions lo;
      lo.node = *ParseNodeShare(std::to_string(i) + "/" + std::to_string(n));
      absl::StatusOr<LoadReport> r = (*spool)->LoadCampaign(spec, lo);
      ASSERT_TRUE(r.ok()) << r.status();
      // Every node sees the whole file: the same rows, duplicates, invalid.
      EXPECT_EQ(r->rows, 3004u);
      EXPECT_EQ(r->duplicates, 2u);
      EXPECT_EQ(r->invalid, 2u);
      EXPECT_EQ(r->accepted + r->other_nodes, 3000u) << i << "/" << n;
      accepted += r->accepted;
      // What this node will send: lease everything.
      LeaseLimits limits;
      limits.max_per_domain = 10000;
      limits.max_total = 100000;
      absl::StatusOr<std::vector<DomainBatch>> batches =
          (*spool)->LeaseDue(absl::Now() + absl::Hours(1), limits);
      ASSERT_TRUE(batches.ok()) << batches.status();
      size_t leased = 0;
      for (const DomainBatch& b : *batches)
        for (const LeasedRecipient& rcpt : b.recipients) {
          ++leased;
          EXPECT_TRUE(got.insert(rcpt.email).second) << rcpt.email << " on two nodes";
        }
      EXPECT_EQ(leased, r->accepted);
      // Shares are even enough that no node idles: within 30% of 3000/n.
      if (n > 1) {
        EXPECT_GT(r->accepted, 3000 / n * 7 / 10) << i << "/" << n;
        EXPECT_LT(r->accepted, 3000 / n * 13 / 10) << i << "/" << n;
      }
    }
    EXPECT_EQ(accepted, 3000u) << n << " nodes";
    EXPECT_EQ(got, want) << n << " nodes";
  }
}

TEST_F(FleetLoadTest, AnEmptyShareIsAFinishedCampaignNotAnError) {
  // One recipient, two nodes: one of them gets nothing.
  const std::string tmpl = dir_.Write("t.eml", testing::kTemplate);
  const std::string list = dir_.Write("one.csv", "email,name\nsolo@example.com,S\n");
  int empty = 0;
  for (uint32_t i = 0; i < 2; ++i) {
    absl::StatusOr<std::unique_ptr<Spool>> spool =
        Spool::Open(dir_.File("one-" + std::to_string(i)), {});
    ASSERT_TRUE(spool.ok()) << spool.status();
    LoadOptions lo;
    lo.node = *ParseNodeShare(std::to_string(i) + "/2");
    absl::StatusOr<LoadReport> r = (*spool)->LoadCampaign(MakeSpec(tmpl, list), lo);
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->accepted == 0) {
      ++empty;
      EXPECT_EQ(r->other_nodes, 1u);
      EXPECT_TRUE(*(*spool)->AllDone(r->id));
    }
  }
  EXPECT_EQ(empty, 1);
}

}  // namespace
}  // namespace salvo::queue
