// The client over real loopback sockets against a private Postfix smtpd
// (PIPELINING, CHUNKING and STARTTLS on, certificate generated at test time),
// delivering through Postfix's virtual(8) agent into Maildirs under a temp
// dir. The stored message must be byte for byte what was sent, apart from the
// trace headers Postfix prepends (Return-Path, Delivered-To, Received) and
// the line ends (Postfix stores LF; SMTP carries CRLF).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "tests/smtp/driver.h"
#include "tests/support/files.h"
#include "tests/support/postfix.h"

namespace salvo::smtp {
namespace {

using testing::SendAll;
using testing::TempDir;

// Drops the leading trace headers Postfix adds (with their folded lines).
std::string StripTraceHeaders(const std::string& stored) {
  size_t pos = 0;
  bool skipping = false;
  while (pos < stored.size()) {
    size_t eol = stored.find('\n', pos);
    if (eol == std::string::npos) break;
    std::string_view line(stored.data() + pos, eol - pos);
    bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    if (continuation && skipping) {
      pos = eol + 1;
      continue;
    }
    if (line.rfind("Return-Path:", 0) == 0 || line.rfind("Delivered-To:", 0) == 0 ||
        line.rfind("Received:", 0) == 0) {
      skipping = true;
      pos = eol + 1;
      continue;
    }
    break;
  }
  return stored.substr(pos);
}

std::string CrlfToLf(std::string s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out.push_back(s[i]);
  }
  return out;
}

class PostfixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    skip_reason_ = testsupport::PrivatePostfix::Unavailable();
    if (!skip_reason_.empty()) return;
    dir_ = new TempDir();
    const std::string& t = dir_->path();
    ASSERT_TRUE(testing::GenerateTestPki(t).ok());
    postfix_ = new testsupport::PrivatePostfix(t);
    testsupport::PrivatePostfix::Options o;
    o.cert_file = t + "/server.crt";
    o.key_file = t + "/server.key";
    o.domains = "dest.test";
    o.mailboxes = {{"alice@dest.test", "alice"}, {"bob@dest.test", "bob"}};
    std::string error = postfix_->Start(o);
    ASSERT_EQ(error, "");
    port_ = postfix_->port();
  }

  static void TearDownTestSuite() {
    delete postfix_;  // stops it
    postfix_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_NE(postfix_, nullptr);
  }

  // Waits (bounded) for `count` messages in a mailbox; returns their contents.
  static std::vector<std::string> WaitForMail(const std::string& box, size_t count) {
    return postfix_->WaitForMail(box, count);
  }

  static Options Opts() {
    Options o;
    o.helo_name = "client.test";
    o.host = "mx.test";
    o.host_label = "mx.test[127.0.0.1]";
    o.tls = TlsMode::kDisabled;
    return o;
  }

  static std::string skip_reason_;
  static TempDir* dir_;
  static testsupport::PrivatePostfix* postfix_;
  static int port_;
};

std::string PostfixTest::skip_reason_;
TempDir* PostfixTest::dir_ = nullptr;
testsupport::PrivatePostfix* PostfixTest::postfix_ = nullptr;
int PostfixTest::port_ = 0;

std::string Message(std::string_view subject) {
  std::string m = "From: Sender <sender@client.test>\r\nTo: <alice@dest.test>\r\n";
  m += "Subject: ";
  m += subject;
  m += "\r\nDate: Sat, 28 Nov 2026 01:00:00 +0000\r\nMessage-ID: <";
  m += subject;
  m += "@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Transfer-Encoding: 8bit\r\n\r\n"
       "Hello Alice,\r\n.a line that starts with a dot\r\n..and one with two\r\n.\r\n"
       "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac\r\n";
  m += std::string(900, 'L') + "\r\n";
  for (int i = 0; i < 300; ++i) m += "body line " + std::to_string(i) + " of a larger message\r\n";
  m += "bye\r\n";
  return m;
}

TEST_F(PostfixTest, BdatOverVerifiedTlsIsStoredByteForByte) {
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  Options o = Opts();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx->get();
  const std::string msg = Message("bdat-tls");
  Envelope e;
  e.id = 1;
  e.mail_from = "sender@client.test";
  e.rcpts = {"alice@dest.test", "nobody@dest.test", "bob@dest.test"};
  e.body = msg;
  e.needs_8bit = true;
  std::unique_ptr<Session> s;
  auto r = SendAll(o, port_, {e}, absl::Seconds(20), &s);
  ASSERT_FALSE(r.wall_limit_hit);
  const auto* out = r.Find(1);
  ASSERT_NE(out, nullptr) << r.closed.detail;
  EXPECT_EQ((*out)[0].disposition, Disposition::kDelivered);
  EXPECT_EQ((*out)[1].disposition, Disposition::kBounced);
  EXPECT_EQ((*out)[1].scope, Scope::kRecipient);
  EXPECT_EQ((*out)[1].reply.enhanced, "5.1.1");
  EXPECT_EQ((*out)[1].category, "invalid_recipient");
  EXPECT_EQ((*out)[2].disposition, Disposition::kDelivered);
  EXPECT_EQ(r.closed.kind, FailureKind::kNone);
  const Extensions& x = s->extensions();
  EXPECT_TRUE(x.pipelining && x.chunking && x.eight_bit_mime && x.smtputf8 && x.size);
  EXPECT_FALSE(x.starttls);  // not offered again after TLS
  EXPECT_TRUE(s->tls_info().active);
  EXPECT_TRUE(s->tls_info().verified);
  EXPECT_FALSE(s->tls_info().protocol.empty());
  EXPECT_EQ(r.sent.find("BDAT"), std::string::npos);  // only ciphertext after STARTTLS
  for (const char* box : {"alice", "bob"}) {
    auto mails = WaitForMail(box, 1);
    ASSERT_EQ(mails.size(), 1u) << box << "\n" << postfix_->Log();
    EXPECT_EQ(StripTraceHeaders(mails[0]), CrlfToLf(msg)) << box;
  }
  // smtpd logs the command counts at disconnect, e.g. "... starttls=1 ... bdat=1 quit=1".
  std::string log;
  for (int i = 0; i < 50; ++i) {
    log = postfix_->Log();
    if (log.find("bdat=1") != std::string::npos) break;
    usleep(100000);
  }
  EXPECT_NE(log.find("starttls=1 mail=1 rcpt=2/3 bdat=1 quit=1"), std::string::npos) << log;
}

TEST_F(PostfixTest, SecondConnectionResumesTheTlsSession) {
  // A clean QUIT sends close_notify, so the ticket from the first
  // connection stays resumable and the second skips the full handshake.
  // (Postfix issues no new ticket on a resumed connection and its sessions
  // are single-use, so only the second of a series is checked.)
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  Options o = Opts();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx->get();
  for (int i = 1; i <= 2; ++i) {
    Envelope e;
    e.id = static_cast<uint64_t>(i);
    e.mail_from = "sender@client.test";
    e.rcpts = {"alice@dest.test"};
    e.body = Message("resume-" + std::to_string(i));
    std::unique_ptr<Session> s;
    auto r = SendAll(o, port_, {e}, absl::Seconds(20), &s);
    ASSERT_FALSE(r.wall_limit_hit);
    const auto* out = r.Find(static_cast<uint64_t>(i));
    ASSERT_NE(out, nullptr) << r.closed.detail;
    EXPECT_EQ((*out)[0].disposition, Disposition::kDelivered);
    EXPECT_EQ(r.closed.kind, FailureKind::kNone);
    ASSERT_TRUE(s->tls_info().active);
    EXPECT_TRUE(s->tls_info().verified);
    EXPECT_EQ(s->tls_info().resumed, i > 1) << "connection " << i;
  }
  EXPECT_EQ((*ctx)->resumed_count(), 1u);
}

TEST_F(PostfixTest, DataWithDotStuffingAndSeveralTransactionsPerConnection) {
  Options o = Opts();
  o.use_chunking = false;
  std::vector<std::string> msgs = {Message("data-1"), Message("data-2"), Message("data-3")};
  std::vector<Envelope> envs;
  for (size_t i = 0; i < msgs.size(); ++i) {
    Envelope e;
    e.id = 10 + i;
    e.mail_from = "sender@client.test";
    e.rcpts = {i == 1 ? "ghost@dest.test" : "bob@dest.test"};
    e.body = msgs[i];
    e.needs_8bit = true;
    envs.push_back(std::move(e));
  }
  auto r = SendAll(o, port_, envs);
  ASSERT_EQ(r.transactions.size(), 3u) << r.closed.detail;
  EXPECT_EQ((*r.Find(10))[0].disposition, Disposition::kDelivered);
  EXPECT_EQ((*r.Find(11))[0].disposition, Disposition::kBounced);
  EXPECT_EQ((*r.Find(12))[0].disposition, Disposition::kDelivered);
  EXPECT_NE(r.sent.find("\r\n..a line that starts with a dot\r\n...and one with two\r\n..\r\n"),
            std::string::npos);
  EXPECT_NE(r.sent.find("BODY=8BITMIME"), std::string::npos);
  // Transaction 2 had no accepted recipient: the pipelined DATA was refused, RSET follows.
  EXPECT_NE(r.sent.find("RSET\r\n"), std::string::npos);
  // bob may also hold the TLS test's message; find ours by content (bounded wait).
  int matched = 0;
  for (int attempt = 0; attempt < 100 && matched < 2; ++attempt) {
    if (attempt > 0) usleep(100000);
    matched = 0;
    for (const auto& m : WaitForMail("bob", 1)) {
      std::string stripped = StripTraceHeaders(m);
      matched += stripped == CrlfToLf(msgs[0]) || stripped == CrlfToLf(msgs[2]);
    }
  }
  EXPECT_EQ(matched, 2) << postfix_->Log();
}

TEST_F(PostfixTest, MessageOverTheAdvertisedSizeIsRefusedLocally) {
  std::string huge(11 * 1024 * 1024, 'x');
  for (size_t i = 76; i < huge.size(); i += 78) {
    huge[i - 1] = '\r';
    huge[i] = '\n';
  }
  Envelope e;
  e.id = 1;
  e.mail_from = "sender@client.test";
  e.rcpts = {"alice@dest.test"};
  e.body = huge;
  auto r = SendAll(Opts(), port_, {e});
  ASSERT_NE(r.Find(1), nullptr);
  EXPECT_EQ((*r.Find(1))[0].disposition, Disposition::kBounced);
  EXPECT_EQ((*r.Find(1))[0].category, "message_too_large");
  EXPECT_EQ(r.sent.find("MAIL FROM"), std::string::npos);
}

}  // namespace
}  // namespace salvo::smtp
