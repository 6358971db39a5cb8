// The bounce corpus (tests/data/bounces/, expected.tsv): every message is
// parsed and classified with the shipped rules; every miss is printed and at
// least 95% must be right (kind, recipients, status and category together);
// the held-out set (heldout.tsv) is scored separately, its misses unprinted.
// A handful of messages are also checked field by field.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/bounce/report.h"
#include "engine/common/strings.h"
#include "engine/shaping/shaping.h"
#include "gtest/gtest.h"

namespace salvo::bounce {
namespace {

const std::string kDir = std::string(SALVO_SOURCE_DIR) + "/tests/data/bounces/";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Report ParseFile(const std::string& name) {
  static const auto* rules = shaping::BuildClassifier({}).value().release();
  absl::StatusOr<Report> r = ParseReport(ReadAll(kDir + name));
  EXPECT_TRUE(r.ok()) << name << ": " << r.status();
  if (!r.ok()) return {};
  Classify(&*r, rules);
  return *std::move(r);
}

bool StatusMatches(std::string_view want, std::string_view got) {
  if (want == "*") return true;
  if (want == "-") return got.empty();
  if (want.size() == 3 && want.substr(1) == ".*") return !got.empty() && got[0] == want[0];
  return want == got;
}

bool CategoryMatches(std::string_view want, const Report& r) {
  if (want == "*") return true;
  const std::string got =
      r.recipients.empty() ? "" : std::string(smtp::CategoryName(r.recipients[0].category));
  if (want == "-") return got.empty();
  for (std::string_view alt : Split(want, '|')) {
    if (alt == got) return true;
  }
  return false;
}

bool RecipientsMatch(std::string_view want, const Report& r) {
  if (want == "-") return r.recipients.empty();
  if (want[0] == '?') return r.recipients.size() == std::stoul(std::string(want.substr(1)));
  std::vector<std::string_view> addrs = Split(want, ' ');
  if (addrs.size() != r.recipients.size()) return false;
  for (size_t i = 0; i < addrs.size(); ++i) {
    if (!EqualsIgnoreCase(addrs[i], r.recipients[i].final_recipient)) return false;
  }
  return true;
}

struct Score {
  int total = 0, right = 0;
  int kind = 0, rcpt = 0, status = 0, category = 0;
};

// Scores every message of `tsv` (expected.tsv's columns); prints each miss
// when `print_misses`.
Score ScoreTable(const std::string& tsv, bool print_misses) {
  Score sc;
  std::ifstream in(kDir + tsv);
  EXPECT_TRUE(in) << kDir << tsv;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string_view> f = Split(line, '\t');
    EXPECT_GE(f.size(), 5u) << line;
    if (f.size() < 5) continue;
    ++sc.total;
    const Report r = ParseFile(std::string(f[0]));
    const std::string got_status = r.recipients.empty() ? "" : r.recipients[0].status;
    const bool kind = ReportKindName(r.kind) == f[1];
    const bool rcpt = RecipientsMatch(f[2], r);
    const bool status = StatusMatches(f[3], got_status);
    const bool category = CategoryMatches(f[4], r);
    sc.kind += kind;
    sc.rcpt += rcpt;
    sc.status += status;
    sc.category += category;
    if (kind && rcpt && status && category) {
      ++sc.right;
      continue;
    }
    if (!print_misses) continue;
    std::string got_rcpts;
    for (const FailedRecipient& fr : r.recipients) got_rcpts += fr.final_recipient + " ";
    std::printf("MISS %s: want %s [%s] %s %s; got %s [%s] %s %s (%s)\n", std::string(f[0]).c_str(),
                std::string(f[1]).c_str(), std::string(f[2]).c_str(), std::string(f[3]).c_str(),
                std::string(f[4]).c_str(), std::string(ReportKindName(r.kind)).c_str(),
                got_rcpts.c_str(), got_status.c_str(),
                r.recipients.empty()
                    ? ""
                    : std::string(smtp::CategoryName(r.recipients[0].category)).c_str(),
                r.recipients.empty() ? "" : r.recipients[0].reply.substr(0, 160).c_str());
  }
  std::printf(
      "%s: %d/%d right (%.1f%%); kind %d, recipients %d, status %d, "
      "category %d\n",
      tsv.c_str(), sc.right, sc.total, sc.total ? 100.0 * sc.right / sc.total : 0.0, sc.kind,
      sc.rcpt, sc.status, sc.category);
  return sc;
}

TEST(BounceCorpusTest, AtLeast95PercentOfTheCorpusIsRight) {
  const Score sc = ScoreTable("expected.tsv", /*print_misses=*/true);
  ASSERT_GE(sc.total, 150);
  // Issue 17 asks for 95% (reached: 264 of 276; tests/bounce/README.md
  // lists the misses), so that nothing slips back.
  EXPECT_GE(sc.right * 100, sc.total * 95) << sc.right << "/" << sc.total;
}

// The held-out set (heldout.tsv: sisimai's expectations mapped, no judged
// rows, recipients by number only) measures how the parser does on messages
// it was not tuned on. Only the score is printed, so that it stays held out.
TEST(BounceCorpusTest, HeldOutSet) {
  const Score sc = ScoreTable("heldout.tsv", /*print_misses=*/false);
  ASSERT_GE(sc.total, 300);
  // Measured: 236 of 309 (76.4%) when it was checked in, 238 (77.0%) since.
  EXPECT_GE(sc.right * 100, sc.total * 77) << sc.right << "/" << sc.total;
}

TEST(BounceCorpusTest, PostfixDsn) {
  Report r = ParseFile("sisimai/lhost-postfix-03.eml");
  EXPECT_EQ(r.kind, ReportKind::kBounce);
  EXPECT_EQ(r.format, "rfc3464");
  EXPECT_EQ(r.reporting_mta, "e1.example.ne.jp");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "kijitora@example.net");
  EXPECT_EQ(r.recipients[0].action, "failed");
  EXPECT_EQ(r.recipients[0].diagnostic_code, "smtp; 550 Unknown user kijitora@example.net");
  EXPECT_EQ(r.recipients[0].category, smtp::Category::kBadMailbox);
  EXPECT_TRUE(r.recipients[0].hard);
  EXPECT_EQ(r.original_message_id, "20140701000000.000000000000@e1.example.ne.jp");
}

TEST(BounceCorpusTest, GmailBounce) {
  Report r = ParseFile("sisimai/lhost-gmail-01.eml");
  EXPECT_EQ(r.kind, ReportKind::kBounce);
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "userunknown@example.jp");
  EXPECT_EQ(r.recipients[0].status, "5.1.1");
  EXPECT_EQ(r.recipients[0].category, smtp::Category::kBadMailbox);
  EXPECT_TRUE(r.recipients[0].hard);
}

TEST(BounceCorpusTest, ExchangeNdr) {
  Report r = ParseFile("sisimai/lhost-exchange2007-01.eml");
  EXPECT_EQ(r.kind, ReportKind::kBounce);
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "mikeneko@example.co.jp");
  EXPECT_EQ(r.recipients[0].status, "5.1.1");
  EXPECT_NE(r.recipients[0].diagnostic_code.find("RESOLVER.ADR.RecipNotFound"), std::string::npos);
  EXPECT_EQ(r.recipients[0].category, smtp::Category::kBadMailbox);
}

TEST(BounceCorpusTest, ArfReport) {
  Report r = ParseFile("sisimai/arf-01.eml");
  EXPECT_EQ(r.kind, ReportKind::kComplaint);
  EXPECT_EQ(r.format, "arf");
  ASSERT_TRUE(r.complaint.has_value());
  EXPECT_EQ(r.complaint->feedback_type, "abuse");
  EXPECT_EQ(r.complaint->user_agent, "SMP-FBL");
  EXPECT_EQ(r.complaint->source_ip, "192.0.2.89");
  EXPECT_EQ(r.original_return_path, "support@example.ed.jp");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "redacted@example.net");
  EXPECT_EQ(r.recipients[0].category, smtp::Category::kNone);  // complaints are not bounces
}

TEST(BounceCorpusTest, AutoReply) {
  Report r = ParseFile("sisimai/rfc3834-01.eml");
  EXPECT_EQ(r.kind, ReportKind::kAutoReply);
  EXPECT_TRUE(r.recipients.empty());
}

TEST(BounceCorpusTest, DelayedDsn) {
  Report r = ParseFile("sisimai/rfc3464-09.eml");
  EXPECT_EQ(r.kind, ReportKind::kDelayed);
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].final_recipient, "kijitora-cat@mx4.gr3.example.jp");
  EXPECT_EQ(r.recipients[0].action, "delayed");
  EXPECT_EQ(r.recipients[0].status, "4.3.0");
  EXPECT_FALSE(r.recipients[0].hard);
  EXPECT_EQ(r.original_return_path, "shironeko@example.org");
}

}  // namespace
}  // namespace salvo::bounce
