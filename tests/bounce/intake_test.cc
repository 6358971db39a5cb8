// What happens when a report arrives (engine/bounce/intake.h): real RocksDB
// on a temp dir, real parser and the shipped bounce rules; the reports are
// built here in the shapes real MTAs send.
#include "engine/bounce/intake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/shaping/shaping.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::bounce {
namespace {

using queue::CampaignId;
using queue::RecipientId;
using queue::RecipientState;

constexpr char kSecret[] = "verp-test-secret";
constexpr char kList[] =
    "email,name\nann@one.example,Ann\nbob@two.example,Bob\ncy@three.example,Cy\n"
    "dee@four.example,Dee\n";

std::string Dsn(const std::string& rcpt, const std::string& action, const std::string& status,
                const std::string& diagnostic, const std::string& original_headers) {
  return "From: MAILER-DAEMON@mx.one.example\r\n"
         "To: " +
         std::string("bounces@bounce.example.com") +
         "\r\n"
         "Subject: Undelivered Mail Returned to Sender\r\n"
         "Auto-Submitted: auto-replied\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n"
         "\r\n"
         "--BB\r\n"
         "Content-Type: text/plain\r\n"
         "\r\n"
         "I'm sorry to have to inform you that your message could not be delivered.\r\n"
         "--BB\r\n"
         "Content-Type: message/delivery-status\r\n"
         "\r\n"
         "Reporting-MTA: dns; mx.one.example\r\n"
         "\r\n"
         "Final-Recipient: rfc822; " +
         rcpt +
         "\r\n"
         "Action: " +
         action +
         "\r\n"
         "Status: " +
         status +
         "\r\n"
         "Diagnostic-Code: smtp; " +
         diagnostic +
         "\r\n"
         "\r\n"
         "--BB\r\n"
         "Content-Type: text/rfc822-headers\r\n"
         "\r\n" +
         original_headers + "--BB--\r\n";
}

std::string Arf(const std::string& mail_from, const std::string& rcpt,
                const std::string& message_id) {
  return "From: fbl@isp.example\r\n"
         "To: fbl@bounce.example.com\r\n"
         "Subject: FW: Hello\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n"
         "\r\n"
         "--x\r\n"
         "Content-Type: text/plain\r\n"
         "\r\n"
         "This is an email abuse report.\r\n"
         "--x\r\n"
         "Content-Type: message/feedback-report\r\n"
         "\r\n"
         "Feedback-Type: abuse\r\n"
         "User-Agent: SomeGenerator/1.0\r\n"
         "Version: 1\r\n"
         "Original-Mail-From: <" +
         mail_from +
         ">\r\n"
         "Original-Rcpt-To: <" +
         rcpt +
         ">\r\n"
         "Source-IP: 192.0.2.1\r\n"
         "--x\r\n"
         "Content-Type: message/rfc822\r\n"
         "\r\n"
         "Message-ID: <" +
         message_id +
         ">\r\n"
         "From: news@example.com\r\n"
         "To: " +
         rcpt +
         "\r\n"
         "Subject: Hello\r\n"
         "\r\n"
         "Hi.\r\n"
         "--x--\r\n";
}

std::string AutoReply(const std::string& in_reply_to) {
  return "From: cy@three.example\r\nTo: bounces@bounce.example.com\r\nSubject: Out of Office\r\n"
         "Auto-Submitted: auto-replied\r\nIn-Reply-To: <" +
         in_reply_to + ">\r\n\r\nBack Monday.\r\n";
}

class IntakeTest : public queue::testing::SpoolTest {
 protected:
  void SetUp() override {
    SpoolTest::SetUp();
    auto rules = shaping::BuildClassifier({});
    ASSERT_TRUE(rules.ok()) << rules.status();
    classifier_ = std::move(*rules);
    options_.classifier = classifier_.get();
    options_.verp = {"bounce.example.com", "bounces", kSecret};
    spool_->SetOutcomeListener([this](absl::Span<const queue::OutcomeNotice> ns) {
      for (const auto& n : ns) notices_.push_back(n);
    });
    // A campaign whose four copies were all delivered.
    campaign_ = Load(kList);
    for (const auto& r : LeaseAll(clock_.Now()))
      ASSERT_TRUE(spool_->Complete(r.campaign, r.id, queue::testing::Delivered()).ok());
    notices_.clear();
  }

  std::string Verp(uint64_t id) {
    auto v = spool_->GetRecipient(campaign_, RecipientId{id});
    EXPECT_TRUE(v.ok());
    return message::MakeVerpAddress(options_.verp, queue::Value(campaign_), id, v->email);
  }
  std::string MessageId(uint64_t id) {
    return std::to_string(queue::Value(campaign_)) + "." + std::to_string(id) +
           ".0123456789abcdef@example.com";
  }
  IntakeResult Process(const std::string& raw, const std::string& rcpt) {
    auto r = ProcessReport(*spool_, options_, raw, rcpt);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : IntakeResult{};
  }
  queue::ReportCounts Reports() { return spool_->Status(campaign_)->reports; }

  std::unique_ptr<const smtp::Classifier> classifier_;
  IntakeOptions options_;
  CampaignId campaign_{};
  std::vector<queue::OutcomeNotice> notices_;
};

TEST_F(IntakeTest, DsnThroughVerpBouncesADeliveredRecipientAndKeepsBothInHistory) {
  const std::string dsn = Dsn("ann@one.example", "failed", "5.1.1",
                              "550 5.1.1 <ann@one.example>: Recipient address rejected: User "
                              "unknown",
                              "From: news@example.com\r\nTo: ann@one.example\r\n");
  IntakeResult r = Process(dsn, Verp(1));
  EXPECT_EQ(r.outcome, IntakeOutcome::kApplied) << r.why;
  EXPECT_EQ(r.kind, ReportKind::kBounce);
  EXPECT_EQ(r.matched_by, "verp");
  EXPECT_EQ(r.before, RecipientState::kDelivered);
  EXPECT_EQ(r.after, RecipientState::kBounced);
  EXPECT_TRUE(r.hard);
  EXPECT_TRUE(r.suppressed);
  EXPECT_EQ(r.category, "bad-mailbox");
  EXPECT_EQ(StateOf(campaign_, 1), RecipientState::kBounced);
  // Suppressed, with the reason.
  auto s = spool_->GetSuppression("ann@one.example");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reason.rfind("bounce: 550 5.1.1", 0), 0u) << s->reason;
  // The delivery and the later bounce are both in the history.
  auto h = *spool_->History(campaign_, RecipientId{1});
  ASSERT_GE(h.size(), 3u);
  EXPECT_EQ(h[h.size() - 2].to, RecipientState::kDelivered);
  EXPECT_EQ(h.back().from, RecipientState::kDelivered);
  EXPECT_EQ(h.back().to, RecipientState::kBounced);
  EXPECT_EQ(h.back().category, "bad-mailbox");
  EXPECT_NE(h.back().detail.find("bounce message (rfc3464 from mx.one.example)"), std::string::npos)
      << h.back().detail;
  // Counted: the campaign's status and the outcome listener.
  auto st = *spool_->Status(campaign_);
  EXPECT_EQ(st.reports.async_bounces, 1u);
  EXPECT_EQ(st.counts[RecipientState::kBounced], 1u);
  EXPECT_EQ(st.counts[RecipientState::kDelivered], 3u);
  ASSERT_EQ(notices_.size(), 1u);
  EXPECT_EQ(notices_[0].source, queue::OutcomeNotice::Source::kAsyncBounce);
  EXPECT_EQ(notices_[0].to, RecipientState::kBounced);
  EXPECT_EQ(notices_[0].email, "ann@one.example");
  EXPECT_EQ(notices_[0].category, "bad-mailbox");
  // Counts survive a restart.
  Reopen();
  EXPECT_EQ(spool_->Status(campaign_)->reports.async_bounces, 1u);
  EXPECT_EQ((*spool_->Counts(campaign_))[RecipientState::kBounced], 1u);
}

TEST_F(IntakeTest, TheSameReportTwiceIsAppliedOnce) {
  const std::string dsn = Dsn("ann@one.example", "failed", "5.1.1", "550 5.1.1 User unknown",
                              "To: ann@one.example\r\n");
  EXPECT_EQ(Process(dsn, Verp(1)).outcome, IntakeOutcome::kApplied);
  const size_t history = spool_->History(campaign_, RecipientId{1})->size();
  // A crash between recording and acknowledging: the same bytes again.
  Reopen();
  IntakeResult again = Process(dsn, Verp(1));
  EXPECT_EQ(again.outcome, IntakeOutcome::kDuplicate);
  EXPECT_EQ(spool_->Status(campaign_)->reports.async_bounces, 1u);
  EXPECT_EQ(spool_->History(campaign_, RecipientId{1})->size(), history);
  // The caller's own report id keys it too.
  options_.report_id = "inbound/42";
  EXPECT_EQ(
      Process(Arf(Verp(2), "bob@two.example", MessageId(2)), "fbl@bounce.example.com").outcome,
      IntakeOutcome::kApplied);
  EXPECT_EQ(Process(Arf(Verp(2), "bob@two.example", MessageId(2)) + "\r\n", "x").outcome,
            IntakeOutcome::kDuplicate);
  EXPECT_EQ(Reports().complaints, 1u);
}

TEST_F(IntakeTest, ArfComplaintSuppressesAndCounts) {
  // Sent to the feedback address (no token); Original-Mail-From carries it.
  IntakeResult r = Process(Arf(Verp(2), "bob@two.example", MessageId(2)), "fbl@bounce.example.com");
  EXPECT_EQ(r.outcome, IntakeOutcome::kApplied) << r.why;
  EXPECT_EQ(r.kind, ReportKind::kComplaint);
  EXPECT_EQ(r.matched_by, "verp");
  EXPECT_TRUE(r.suppressed);
  EXPECT_EQ(r.reply, "abuse");
  // Delivered it was, delivered it stays; the address is suppressed.
  EXPECT_EQ(StateOf(campaign_, 2), RecipientState::kDelivered);
  auto s = spool_->GetSuppression("bob@two.example");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->reason, "complaint: abuse");
  auto h = *spool_->History(campaign_, RecipientId{2});
  EXPECT_EQ(h.back().category, "complaint");
  auto st = *spool_->Status(campaign_);
  EXPECT_EQ(st.reports.complaints, 1u);
  EXPECT_DOUBLE_EQ(st.complaint_rate, 0.25);
  ASSERT_EQ(notices_.size(), 1u);
  EXPECT_EQ(notices_[0].source, queue::OutcomeNotice::Source::kComplaint);
  EXPECT_EQ(notices_[0].domain, "two.example");
}

TEST_F(IntakeTest, AutoReplyAndDelayWarningChangeNothing) {
  auto before = spool_->Export(campaign_, RecipientId{0}, 100);
  IntakeResult a = Process(AutoReply(MessageId(3)), Verp(3));
  EXPECT_EQ(a.outcome, IntakeOutcome::kApplied) << a.why;
  EXPECT_EQ(a.kind, ReportKind::kAutoReply);
  IntakeResult d = Process(Dsn("cy@three.example", "delayed", "4.4.1",
                               "451 4.4.1 connection timed out", "To: cy@three.example\r\n"),
                           Verp(3));
  EXPECT_EQ(d.kind, ReportKind::kDelayed);
  EXPECT_EQ(d.outcome, IntakeOutcome::kApplied) << d.why;
  for (const IntakeResult* r : {&a, &d}) {
    EXPECT_EQ(r->before, RecipientState::kDelivered);
    EXPECT_EQ(r->after, RecipientState::kDelivered);
    EXPECT_FALSE(r->suppressed);
  }
  EXPECT_FALSE(spool_->IsSuppressed("cy@three.example"));
  auto after = spool_->Export(campaign_, RecipientId{0}, 100);
  ASSERT_EQ(before->rows.size(), after->rows.size());
  for (size_t i = 0; i < after->rows.size(); ++i) {
    EXPECT_EQ(before->rows[i].state, after->rows[i].state);
    EXPECT_EQ(before->rows[i].last_reply, after->rows[i].last_reply);
  }
  EXPECT_EQ(spool_->History(campaign_, RecipientId{3})->size(), 2u);  // leased, delivered
  auto st = *spool_->Status(campaign_);
  EXPECT_EQ(st.reports.auto_replies, 1u);
  EXPECT_EQ(st.reports.delayed, 1u);
  EXPECT_EQ(st.reports.async_bounces, 0u);
  EXPECT_EQ(st.reports.complaints, 0u);
}

TEST_F(IntakeTest, ForgedTokensAreCountedAndChangeNothing) {
  const std::string dsn = Dsn("dee@four.example", "failed", "5.1.1", "550 5.1.1 User unknown", "");
  std::string good = Verp(4);
  // A changed MAC character, another recipient's ID with this MAC, an
  // unknown campaign, a token made with another secret.
  std::string bad_mac = good;
  size_t at = bad_mac.find('@');
  bad_mac[at - 1] = bad_mac[at - 1] == 'a' ? 'b' : 'a';
  std::string moved = good;
  moved.replace(moved.find("-4-"), 3, "-3-");
  std::string unknown = good;
  unknown.replace(unknown.find('+') + 1, 1, "99");
  message::VerpSettings other = options_.verp;
  other.secret = "attacker";
  std::string wrong_key =
      message::MakeVerpAddress(other, queue::Value(campaign_), 4, "dee@four.example");
  int n = 0;
  for (const std::string& rcpt : {bad_mac, moved, unknown, wrong_key}) {
    // Distinct bytes, so each is a new report.
    IntakeResult r = Process(dsn + "X-N: " + std::to_string(++n) + "\r\n", rcpt);
    EXPECT_EQ(r.outcome, IntakeOutcome::kForged) << rcpt << ": " << r.why;
  }
  EXPECT_EQ(spool_->StrayReports().forged, 4u);
  EXPECT_EQ(StateOf(campaign_, 4), RecipientState::kDelivered);
  EXPECT_EQ(StateOf(campaign_, 3), RecipientState::kDelivered);
  EXPECT_FALSE(spool_->IsSuppressed("dee@four.example"));
  EXPECT_EQ(Reports().async_bounces, 0u);
  ASSERT_EQ(notices_.size(), 4u);
  for (const auto& nt : notices_) EXPECT_EQ(nt.source, queue::OutcomeNotice::Source::kForged);
  // The same forged report again is not counted twice.
  EXPECT_EQ(Process(dsn + "X-N: 1\r\n", bad_mac).outcome, IntakeOutcome::kDuplicate);
  EXPECT_EQ(spool_->StrayReports().forged, 4u);
  // The genuine token still works, including after an MTA upper-cased it.
  std::string upper = good;
  for (size_t i = 0; i < upper.find('@'); ++i) upper[i] = static_cast<char>(toupper(upper[i]));
  IntakeResult ok = Process(dsn, upper);
  EXPECT_EQ(ok.outcome, IntakeOutcome::kApplied) << ok.why;
  EXPECT_EQ(StateOf(campaign_, 4), RecipientState::kBounced);
}

TEST_F(IntakeTest, WithoutATokenTheMessageIdFindsTheCopy) {
  // A bounce sent to a plain address; the returned headers carry the
  // Message-ID Salvo composed.
  const std::string dsn = Dsn(
      "cy@three.example", "failed", "5.2.1",
      "550 5.2.1 The email account that you tried to reach is disabled",
      "Message-ID: <" + MessageId(3) + ">\r\nFrom: news@example.com\r\nTo: cy@three.example\r\n");
  IntakeResult r = Process(dsn, "bounces@bounce.example.com");
  EXPECT_EQ(r.outcome, IntakeOutcome::kApplied) << r.why;
  EXPECT_EQ(r.matched_by, "message-id");
  EXPECT_EQ(r.recipient, RecipientId{3});
  EXPECT_EQ(StateOf(campaign_, 3), RecipientState::kBounced);
  // A Message-ID of another sender domain, or naming a copy whose address is
  // not the one the report names, identifies nothing.
  const std::string foreign = Dsn("bob@two.example", "failed", "5.1.1", "550 5.1.1 unknown",
                                  "Message-ID: <" + std::to_string(queue::Value(campaign_)) +
                                      ".2.0123456789abcdef@elsewhere.example>\r\n");
  EXPECT_EQ(Process(foreign, "bounces@bounce.example.com").outcome, IntakeOutcome::kUnmatched);
  const std::string mismatched = Dsn("bob@two.example", "failed", "5.1.1", "550 5.1.1 unknown",
                                     "Message-ID: <" + MessageId(1) + ">\r\n");
  EXPECT_EQ(Process(mismatched, "bounces@bounce.example.com").outcome, IntakeOutcome::kUnmatched);
  EXPECT_EQ(StateOf(campaign_, 1), RecipientState::kDelivered);
  EXPECT_EQ(StateOf(campaign_, 2), RecipientState::kDelivered);
  EXPECT_EQ(spool_->StrayReports().unmatched, 2u);
}

TEST_F(IntakeTest, SoftAsyncBounceOfADeliveredRecipientIsHistoryOnly) {
  const std::string dsn = Dsn("bob@two.example", "failed", "4.2.2", "452 4.2.2 Mailbox full",
                              "To: bob@two.example\r\n");
  IntakeResult r = Process(dsn, Verp(2));
  EXPECT_EQ(r.outcome, IntakeOutcome::kApplied) << r.why;
  EXPECT_FALSE(r.hard);
  EXPECT_EQ(r.after, RecipientState::kDelivered);
  EXPECT_FALSE(r.suppressed);
  EXPECT_FALSE(spool_->IsSuppressed("bob@two.example"));
  auto h = *spool_->History(campaign_, RecipientId{2});
  EXPECT_EQ(h.back().from, RecipientState::kDelivered);
  EXPECT_EQ(h.back().to, RecipientState::kDelivered);
  EXPECT_EQ(h.back().category, "quota-issues");
  EXPECT_EQ(Reports().async_soft_bounces, 1u);
  EXPECT_EQ(Reports().async_bounces, 0u);
}

TEST_F(IntakeTest, OrdinaryMailAndGarbageAreNotReports) {
  EXPECT_EQ(Process("From: a@b.example\r\nSubject: hi\r\n\r\nlunch?\r\n", Verp(1)).outcome,
            IntakeOutcome::kNotAReport);
  EXPECT_EQ(Process(std::string("\0\xff\n\n", 4), "").outcome, IntakeOutcome::kNotAReport);
  EXPECT_EQ(StateOf(campaign_, 1), RecipientState::kDelivered);
  EXPECT_TRUE(notices_.empty());
}

}  // namespace
}  // namespace salvo::bounce
