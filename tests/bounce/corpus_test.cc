// The bounce corpus (tests/data/bounces/, expected.tsv): every message is
// parsed and classified with the shipped rules; every miss is printed and at
// least 95% must be right (kind, recipients, status and category together).
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

TEST(BounceCorpusTest, AtLeast95PercentOfTheCorpusIsRight) {
  std::ifstream in(kDir + "expected.tsv");
  ASSERT_TRUE(in) << kDir << "expected.tsv";
  std::string line;
  int total = 0, right = 0;
  int kind_right = 0, rcpt_right = 0, status_right = 0, category_right = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string_view> f = Split(line, '\t');
    ASSERT_GE(f.size(), 5u) << line;
    ++total;
    const Report r = ParseFile(std::string(f[0]));
    const std::string got_status = r.recipients.empty() ? "" : r.recipients[0].status;
    const bool kind = ReportKindName(r.kind) == f[1];
    const bool rcpt = RecipientsMatch(f[2], r);
    const bool status = StatusMatches(f[3], got_status);
    const bool category = CategoryMatches(f[4], r);
    kind_right += kind;
    rcpt_right += rcpt;
    status_right += status;
    category_right += category;
    if (kind && rcpt && status && category) {
      ++right;
      continue;
    }
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
      "bounce corpus: %d/%d right (%.1f%%); kind %d, recipients %d, status %d, "
      "category %d\n",
      right, total, 100.0 * right / total, kind_right, rcpt_right, status_right, category_right);
  ASSERT_GE(total, 150);
  // Issue 17 asks for 95% (reached: 264 of 276; tests/bounce/README.md
  // lists the misses), so that nothing slips back.
  EXPECT_GE(right * 100, total * 95) << right << "/" << total;
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
