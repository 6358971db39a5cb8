// VERP return paths end to end in process: a campaign in a real spool
// (RocksDB on a temp dir) sent by the engine to the real sink. Each copy
// carries one recipient and its own MAIL FROM, which verifies for that
// recipient; a bounce sent back to that address finds the copy. The same
// campaign without VERP shares copies between recipients (the grouping VERP
// turns off).
#include <map>
#include <memory>
#include <set>
#include <string>

#include "engine/bounce/intake.h"
#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/spool_source.h"
#include "engine/deliverylog/writer.h"
#include "engine/message/verp.h"
#include "gtest/gtest.h"
#include "metrics/metrics.h"
#include "nlohmann/json.hpp"
#include "queue/spool.h"
#include "tests/delivery/sink_peer.h"
#include "tests/support/files.h"

namespace salvo::delivery {
namespace {

using salvo::testing::SinkPeer;

// No placeholders, no unsubscribe link: copies would be identical.
constexpr char kTemplate[] =
    "From: news@example.com\r\nSubject: Sale\r\n\r\nEverything half price.\r\n";
constexpr int kRecipients = 12;

struct Sent {
  std::vector<SinkPeer::Message> messages;
  queue::CampaignId id{};
};

// Loads a campaign of kRecipients at one domain with `options` and sends it
// to a fresh sink with up to 10 recipients per transaction allowed.
Sent SendCampaign(const testsupport::TempDir& dir, queue::Spool* spool, const std::string& name,
                  std::map<std::string, std::string> options,
                  const message::VerpSettings& global_verp) {
  SinkPeer server;
  testsupport::WriteFile(dir / "message.eml", kTemplate);
  std::string csv = "email\n";
  for (int i = 0; i < kRecipients; ++i)
    csv += name + ".User" + std::to_string(i) + "@dest.example\n";  // distinct per campaign
  testsupport::WriteFile(dir / (name + ".csv"), csv);
  queue::CampaignSpec spec;
  spec.name = name;
  spec.template_path = dir / "message.eml";
  spec.recipients_path = dir / (name + ".csv");
  spec.from = "news@example.com";
  spec.options = std::move(options);
  auto report = spool->LoadCampaign(spec, {});
  EXPECT_TRUE(report.ok()) << report.status();
  if (!report.ok()) return {};
  auto cfg = config::ParseConfig(
      "shards = 1\npin_threads = false\n[tls]\nmode = \"off\"\n[queue]\npoll_interval = "
      "\"20ms\"\n[delivery]\nmax_recipients_per_message = 10\n[[route]]\ndomain = \"*\"\nhosts "
      "= [\"" +
          server.hostport() + "\"]\n",
      "test.toml");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  SpoolSourceOptions so;
  so.until_done = report->id;
  so.max_recipients_per_message = 10;
  so.verp = global_verp;
  SpoolSource source(spool, nullptr, so);
  auto engine = Engine::Create(*cfg, &source);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  absl::Status st = (*engine)->Run();
  EXPECT_TRUE(st.ok()) << st;
  auto counts = spool->Counts(report->id);
  EXPECT_EQ((*counts)[queue::RecipientState::kDelivered], static_cast<uint64_t>(kRecipients));
  return {server.messages(), report->id};
}

TEST(VerpEngineTest, EachCopyCarriesOneRecipientAndAReturnPathThatVerifies) {
  testsupport::TempDir dir("salvo-verp-engine-test");
  testsupport::WriteFile(dir / "verp.key", "campaign-verp-secret\n");
  auto spool = queue::Spool::Open(dir / "data", {});
  ASSERT_TRUE(spool.ok()) << spool.status();

  // Per-campaign VERP (no global setting).
  Sent sent = SendCampaign(dir, spool->get(), "verp",
                           {{"verp_domain", "bounce.example.com"},
                            {"verp_prefix", "rt"},
                            {"verp_secret_file", dir / "verp.key"}},
                           {});
  ASSERT_EQ(sent.messages.size(), static_cast<size_t>(kRecipients));
  std::set<std::string> senders;
  for (const SinkPeer::Message& m : sent.messages) {
    ASSERT_EQ(m.recipients.size(), 1u) << m.mail_from;
    EXPECT_TRUE(senders.insert(m.mail_from).second) << "MAIL FROM reused: " << m.mail_from;
    EXPECT_EQ(m.mail_from.rfind("rt+", 0), 0u) << m.mail_from;
    EXPECT_NE(m.mail_from.find("@bounce.example.com"), std::string::npos) << m.mail_from;
    auto token = message::ParseVerpAddress(m.mail_from);
    ASSERT_TRUE(token.has_value()) << m.mail_from;
    EXPECT_EQ(token->campaign, queue::Value(sent.id));
    auto rcpt = (*spool)->GetRecipient(sent.id, queue::RecipientId{token->recipient});
    ASSERT_TRUE(rcpt.ok()) << rcpt.status();
    // The token names the recipient this copy went to, and verifies for it only.
    EXPECT_EQ(rcpt->email, m.recipients[0]);
    EXPECT_TRUE(message::VerifyVerpToken("campaign-verp-secret", *token, m.recipients[0]));
    EXPECT_FALSE(message::VerifyVerpToken("campaign-verp-secret", *token, "other@dest.example"));
    EXPECT_FALSE(message::VerifyVerpToken("another-secret", *token, m.recipients[0]));
  }

  // A bounce sent back to one copy's return path finds that copy.
  const SinkPeer::Message& m = sent.messages[3];
  const std::string dsn =
      "From: MAILER-DAEMON@dest.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
      "boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nUser unknown.\r\n--b\r\n"
      "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.dest.example\r\n\r\n"
      "Final-Recipient: rfc822; " +
      m.recipients[0] +
      "\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
      "\r\n--b--\r\n";
  bounce::IntakeOptions io;
  auto r = bounce::ProcessReport(**spool, io, dsn, m.mail_from);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, bounce::IntakeOutcome::kApplied) << r->why;
  EXPECT_EQ(r->email, m.recipients[0]);
  EXPECT_EQ(r->after, queue::RecipientState::kBounced);
  EXPECT_EQ((*spool)->GetRecipient(sent.id, r->recipient)->state, queue::RecipientState::kBounced);

  // The global [verp] applies to a campaign without options of its own.
  Sent global = SendCampaign(dir, spool->get(), "global", {},
                             message::VerpSettings{"b.example.net", "bounces", "global-secret"});
  ASSERT_EQ(global.messages.size(), static_cast<size_t>(kRecipients));
  for (const SinkPeer::Message& g : global.messages) {
    ASSERT_EQ(g.recipients.size(), 1u);
    auto token = message::ParseVerpAddress(g.mail_from);
    ASSERT_TRUE(token.has_value()) << g.mail_from;
    EXPECT_NE(g.mail_from.find("@b.example.net"), std::string::npos);
    EXPECT_TRUE(message::VerifyVerpToken("global-secret", *token, g.recipients[0]));
  }

  // Without VERP the identical copies share transactions (at most 10 recipients each).
  Sent plain = SendCampaign(dir, spool->get(), "plain", {}, {});
  EXPECT_LT(plain.messages.size(), static_cast<size_t>(kRecipients));
  size_t recipients = 0;
  for (const SinkPeer::Message& p : plain.messages) {
    EXPECT_EQ(p.mail_from, "news@example.com");
    recipients += p.recipients.size();
  }
  EXPECT_EQ(recipients, static_cast<size_t>(kRecipients));
}

// Reports reach the metrics and the delivery log through the spool's outcome
// listener (SpoolSource::Record): an async bounce with phase="async", a
// complaint, a forged report; an auto-reply counted on its own.
TEST(VerpEngineTest, ReportsAreCountedAndLogged) {
  testsupport::TempDir dir("salvo-verp-report-metrics-test");
  auto spool = queue::Spool::Open(dir / "data", {});
  ASSERT_TRUE(spool.ok()) << spool.status();
  const message::VerpSettings verp{"bounce.example.com", "bounces", "k"};
  Sent sent = SendCampaign(dir, spool->get(), "spring", {}, verp);
  ASSERT_EQ(sent.messages.size(), static_cast<size_t>(kRecipients));

  metrics::Registry registry;
  deliverylog::WriterOptions wo;
  wo.path = dir / "delivery.jsonl";
  auto writer = deliverylog::Writer::Open(wo);
  ASSERT_TRUE(writer.ok()) << writer.status();
  SpoolSourceOptions so;
  so.registry = &registry;
  so.delivery_log = (*writer)->AddProducer();
  so.verp = verp;
  {
    SpoolSource source(spool->get(), nullptr, so);  // the listener of `salvo run`
    const std::string rcpt0 = sent.messages[0].recipients[0];
    const std::string rcpt1 = sent.messages[1].recipients[0];
    const std::string dsn =
        "From: MAILER-DAEMON@dest.example\r\nSubject: Undelivered Mail\r\nMIME-Version: "
        "1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
        "boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.dest.example\r\n\r\nFinal-Recipient: rfc822; " +
        rcpt0 +
        "\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User "
        "unknown\r\n\r\n--b--\r\n";
    const std::string arf =
        "From: fbl@isp.example\r\nSubject: complaint\r\nMIME-Version: 1.0\r\nContent-Type: "
        "multipart/report; report-type=feedback-report; boundary=x\r\n\r\n--x\r\n"
        "Content-Type: text/plain\r\n\r\nabuse report\r\n--x\r\nContent-Type: "
        "message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: x/1\r\nVersion: "
        "1\r\nOriginal-Mail-From: <" +
        sent.messages[1].mail_from + ">\r\nOriginal-Rcpt-To: <" + rcpt1 + ">\r\n--x--\r\n";
    const std::string auto_reply =
        "From: " + rcpt1 +
        "\r\nSubject: Out of Office\r\nAuto-Submitted: auto-replied\r\n\r\nAway.\r\n";
    bounce::IntakeOptions io;  // no classifier: categories are "other"
    io.verp = verp;
    std::string forged_rcpt = sent.messages[2].mail_from;
    forged_rcpt[forged_rcpt.find('@') - 1] =
        forged_rcpt[forged_rcpt.find('@') - 1] == 'a' ? 'b' : 'a';
    for (const auto& [raw, to, want] :
         std::vector<std::tuple<std::string, std::string, bounce::IntakeOutcome>>{
             {dsn, sent.messages[0].mail_from, bounce::IntakeOutcome::kApplied},
             {arf, "fbl@bounce.example.com", bounce::IntakeOutcome::kApplied},
             {auto_reply, sent.messages[1].mail_from, bounce::IntakeOutcome::kApplied},
             {dsn + "\r\n", forged_rcpt, bounce::IntakeOutcome::kForged}}) {
      auto r = bounce::ProcessReport(**spool, io, raw, to);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->outcome, want) << r->why;
    }
    // All recipients are at one domain that is not labelled: "other".
    EXPECT_EQ(registry.RecipientCount(metrics::RecipientEvent::kBounced, "spring", "other",
                                      smtp::Category::kOther, metrics::BouncePhase::kAsync),
              1u);
    EXPECT_EQ(registry.RecipientCount(metrics::RecipientEvent::kBounced, "spring", "other",
                                      smtp::Category::kOther, metrics::BouncePhase::kSync),
              0u);
    EXPECT_EQ(registry.RecipientCount(metrics::RecipientEvent::kComplaint, "spring", "other"), 1u);
    const std::string text = registry.Scrape();
    EXPECT_NE(text.find("salvo_reports_forged_total 1"), std::string::npos) << text;
    EXPECT_NE(text.find("salvo_reports_auto_replies_total 1"), std::string::npos) << text;
    EXPECT_NE(text.find("phase=\"async\""), std::string::npos) << text;
  }
  (*writer)->Stop();
  std::vector<nlohmann::json> lines;
  std::string log = testsupport::ReadFile(dir / "delivery.jsonl");
  for (size_t p = 0, e; (e = log.find('\n', p)) != std::string::npos; p = e + 1)
    lines.push_back(nlohmann::json::parse(log.substr(p, e - p)));
  ASSERT_EQ(lines.size(), 2u) << log;  // the bounce and the complaint
  EXPECT_EQ(lines[0]["type"], "bounced");
  EXPECT_EQ(lines[0]["phase"], "async");
  EXPECT_EQ(lines[0]["code"], 550);
  EXPECT_EQ(lines[0]["enhanced_code"], "5.1.1");
  EXPECT_EQ(lines[0]["category"], "other");  // no classifier given: every bounce is other
  EXPECT_EQ(lines[0]["recipient"], sent.messages[0].recipients[0]);
  EXPECT_EQ(lines[1]["type"], "complaint");
  EXPECT_EQ(lines[1]["recipient"], sent.messages[1].recipients[0]);
  EXPECT_EQ(lines[1]["campaign"], "spring");
}

}  // namespace
}  // namespace salvo::delivery
