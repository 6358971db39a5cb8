// ParseReport and Classify on small hand-written messages: the RFC 3464 and
// RFC 5965 shapes, bounds on hostile input, and the classification contract.
#include "engine/bounce/report.h"

#include <string>

#include "engine/shaping/shaping.h"
#include "gtest/gtest.h"

namespace salvo::bounce {
namespace {

// RFC 3464 appendix-style DSN, one failed and one delayed recipient.
constexpr char kDsn[] =
    "From: MAILER-DAEMON@mx.example.net\r\n"
    "To: bounces+abc@sender.example\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Your message could not be delivered.\r\n"
    "--b1\r\n"
    "Content-Type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n"
    "X-Postfix-Sender: rfc822; bounces+abc@sender.example\r\n"
    "\r\n"
    "Final-Recipient: rfc822; gone@example.net\r\n"
    "Original-Recipient: rfc822; Gone@Example.net\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns; in.example.net\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected:\r\n"
    "  User unknown in virtual mailbox table\r\n"
    "\r\n"
    "Final-Recipient: rfc822; slow@example.net\r\n"
    "Action: delayed\r\n"
    "Status: 4.4.1\r\n"
    "Diagnostic-Code: smtp; 421 4.4.1 connection timed out\r\n"
    "--b1\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "Return-Path: <bounces+abc@sender.example>\r\n"
    "Message-ID: <copy-1@sender.example>\r\n"
    "Feedback-ID: c42:salvo\r\n"
    "To: gone@example.net\r\n"
    "--b1--\r\n";

TEST(BounceReportTest, ReadsAnRfc3464Report) {
  absl::StatusOr<Report> r = ParseReport(kDsn);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, ReportKind::kBounce);
  EXPECT_EQ(r->format, "rfc3464");
  EXPECT_EQ(r->reporting_mta, "mx.example.net");
  ASSERT_EQ(r->recipients.size(), 2u);
  const FailedRecipient& a = r->recipients[0];
  EXPECT_EQ(a.final_recipient, "gone@example.net");
  EXPECT_EQ(a.original_recipient, "Gone@Example.net");
  EXPECT_EQ(a.action, "failed");
  EXPECT_EQ(a.status, "5.1.1");
  EXPECT_EQ(a.remote_mta, "in.example.net");
  EXPECT_EQ(a.diagnostic_code,
            "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in "
            "virtual mailbox table");
  EXPECT_EQ(r->recipients[1].action, "delayed");
  EXPECT_EQ(r->original_message_id, "copy-1@sender.example");
  EXPECT_EQ(r->original_return_path, "bounces+abc@sender.example");
  EXPECT_EQ(r->feedback_id, "c42:salvo");

  auto rules = shaping::BuildClassifier({});
  ASSERT_TRUE(rules.ok());
  Classify(&*r, rules->get());
  EXPECT_EQ(a.category, smtp::Category::kBadMailbox);
  EXPECT_TRUE(a.hard);
  EXPECT_FALSE(a.rule.empty());
  EXPECT_FALSE(r->recipients[1].hard);  // delayed: soft whatever the rule says
}

TEST(BounceReportTest, AllDelayedIsADelayNotABounce) {
  std::string dsn = kDsn;
  dsn.replace(dsn.find("Action: failed"), 14, "Action: delayed");
  absl::StatusOr<Report> r = ParseReport(dsn);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, ReportKind::kDelayed);
}

TEST(BounceReportTest, UnmatchedStatusIsHardOtherOr4xxSoft) {
  Report r;
  r.kind = ReportKind::kBounce;
  for (const char* status : {"5.9.9", "4.9.9"}) {
    FailedRecipient fr;
    fr.final_recipient = "a@x.example";
    fr.action = "failed";
    fr.status = status;
    fr.diagnostic_code = "zzz qqq";
    r.recipients.push_back(fr);
  }
  auto rules = smtp::Classifier::Create({});
  ASSERT_TRUE(rules.ok());
  Classify(&r, rules->get());
  EXPECT_EQ(r.recipients[0].category, smtp::Category::kOther);
  EXPECT_TRUE(r.recipients[0].hard);
  EXPECT_EQ(r.recipients[0].reply, "550 5.9.9 zzz qqq");
  EXPECT_EQ(r.recipients[1].category, smtp::Category::kOther);
  EXPECT_FALSE(r.recipients[1].hard);
}

TEST(BounceReportTest, ReadsAnArfReport) {
  constexpr char kArf[] =
      "From: fbl@isp.example\n"
      "Subject: FW: sale\n"
      "MIME-Version: 1.0\n"
      "Content-Type: multipart/report; report-type=feedback-report; boundary=x\n"
      "\n"
      "--x\n"
      "Content-Type: text/plain\n"
      "\n"
      "This is an email abuse report.\n"
      "--x\n"
      "Content-Type: message/feedback-report\n"
      "\n"
      "Feedback-Type: abuse\n"
      "User-Agent: SomeGenerator/1.0\n"
      "Version: 1\n"
      "Original-Mail-From: <bounces+tok@sender.example>\n"
      "Original-Rcpt-To: <user@isp.example>\n"
      "Source-IP: 192.0.2.1\n"
      "--x\n"
      "Content-Type: message/rfc822\n"
      "\n"
      "Message-ID: <copy-9@sender.example>\n"
      "From: shop@sender.example\n"
      "To: user@isp.example\n"
      "Subject: sale\n"
      "\n"
      "Buy.\n"
      "--x--\n";
  absl::StatusOr<Report> r = ParseReport(kArf);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, ReportKind::kComplaint);
  ASSERT_TRUE(r->complaint);
  EXPECT_EQ(r->complaint->feedback_type, "abuse");
  EXPECT_EQ(r->complaint->user_agent, "SomeGenerator/1.0");
  EXPECT_EQ(r->complaint->original_rcpt_to, "user@isp.example");
  EXPECT_EQ(r->complaint->original_mail_from, "bounces+tok@sender.example");
  EXPECT_EQ(r->original_message_id, "copy-9@sender.example");
  EXPECT_EQ(r->original_return_path, "bounces+tok@sender.example");
}

TEST(BounceReportTest, OrdinaryMailIsNotAReport) {
  absl::StatusOr<Report> r =
      ParseReport("From: a@b.example\nTo: c@d.example\nSubject: lunch?\n\nNoon?\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, ReportKind::kNotAReport);
  EXPECT_TRUE(r->recipients.empty());
}

TEST(BounceReportTest, AutoSubmittedOutOfOfficeIsAnAutoReply) {
  absl::StatusOr<Report> r = ParseReport(
      "From: a@b.example\nTo: c@d.example\nSubject: Out of Office\nAuto-Submitted: "
      "auto-replied\nIn-Reply-To: <copy-3@sender.example>\n\nBack Monday.\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, ReportKind::kAutoReply);
  EXPECT_EQ(r->original_message_id, "copy-3@sender.example");
}

TEST(BounceReportTest, HostileInputIsBounded) {
  ParseLimits limits;
  limits.max_message_bytes = 1000;
  EXPECT_FALSE(ParseReport(std::string(1001, 'a'), limits).ok());
  // Deeply nested multiparts: refused before GMime recurses.
  std::string nested = "Content-Type: multipart/mixed; boundary=b\n\n";
  for (int i = 0; i < 5000; ++i) nested += "--b\nContent-Type: multipart/mixed; boundary=b\n\n";
  EXPECT_FALSE(ParseReport(nested).ok());
  // Garbage and empty input never crash (an error or not-a-report).
  for (std::string junk : {std::string(), std::string("\0\xff\n\n\r", 5), std::string(":\n\n")}) {
    absl::StatusOr<Report> r = ParseReport(junk);
    if (r.ok()) {
      EXPECT_EQ(r->kind, ReportKind::kNotAReport);
    }
  }
}

}  // namespace
}  // namespace salvo::bounce
