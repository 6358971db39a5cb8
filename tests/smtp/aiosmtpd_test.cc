// The client over real loopback sockets against aiosmtpd (a Python SMTP
// server nobody here wrote), scripted by tests/smtp/aiosmtpd_server.py to
// inject 421s, per-recipient 450/550, slow replies and mid-DATA disconnects,
// and to offer STARTTLS with certificates generated at test time.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/smtp/driver.h"
#include "tests/support/files.h"
#include "tests/support/ports.h"
#include "tests/support/process.h"

namespace salvo::smtp {
namespace {

using testing::DriveResult;
using testing::SendAll;
using testing::TempDir;
using testsupport::PipedProcess;

using testsupport::ReadFile;

struct Server {
  std::unique_ptr<PipedProcess> proc;
  int port = 0;
};

class AiosmtpdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ASSERT_TRUE(testing::GenerateTestPki(dir_->path()).ok());
    std::filesystem::create_directories(dir_->path() + "/out-ca");
    std::filesystem::create_directories(dir_->path() + "/out-self");
    ca_server_ = StartServer("server", "/out-ca");
    self_server_ = StartServer("selfsigned", "/out-self");
  }
  static Server* StartServer(const std::string& cert, const std::string& out) {
    auto* s = new Server();
    s->proc = std::make_unique<PipedProcess>(std::vector<std::string>{
        "/usr/bin/python3", std::string(SALVO_SOURCE_DIR) + "/tests/smtp/aiosmtpd_server.py",
        "--outdir", dir_->path() + out, "--cert", dir_->path() + "/" + cert + ".crt", "--key",
        dir_->path() + "/" + cert + ".key", "--slow", "3"});
    EXPECT_TRUE(s->proc->started());
    auto line = s->proc->WaitForLine("PORT ", std::chrono::seconds(20));
    EXPECT_TRUE(line.has_value()) << "aiosmtpd_server.py did not print its port";
    if (line) s->port = std::stoi(line->substr(5));
    return s;
  }
  static void TearDownTestSuite() {
    delete ca_server_;
    delete self_server_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_GT(ca_server_->port, 0);
    ASSERT_GT(self_server_->port, 0);
  }

  static Options Plain() {
    Options o;
    o.helo_name = "client.test";
    o.host = "mx.test";
    o.host_label = "mx.test[127.0.0.1]";
    o.tls = TlsMode::kDisabled;
    return o;
  }
  static Envelope Env(uint64_t id, std::vector<std::string> rcpts, std::string_view body,
                      std::string from = "sender@client.test") {
    Envelope e;
    e.id = id;
    e.mail_from = std::move(from);
    e.rcpts = std::move(rcpts);
    e.body = body;
    return e;
  }

  static TempDir* dir_;
  static Server* ca_server_;
  static Server* self_server_;
};

TempDir* AiosmtpdTest::dir_ = nullptr;
Server* AiosmtpdTest::ca_server_ = nullptr;
Server* AiosmtpdTest::self_server_ = nullptr;

const std::string kBody =
    "From: <sender@client.test>\r\nTo: <a@dest.test>\r\nSubject: hello\r\n\r\n"
    "line one\r\n.starts with a dot\r\n..two dots\r\nlast line\r\n";

TEST_F(AiosmtpdTest, PerRecipientRepliesAndDeliveryWithPipelining) {
  auto r = SendAll(
      Plain(), ca_server_->port,
      {Env(1, {"ok1@dest.test", "450-full@dest.test", "550-nobody@dest.test", "ok2@dest.test"},
           kBody)});
  ASSERT_FALSE(r.wall_limit_hit);
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  ASSERT_EQ(o->size(), 4u);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDelivered);
  EXPECT_EQ((*o)[1].disposition, Disposition::kDeferred);
  EXPECT_EQ((*o)[1].scope, Scope::kRecipient);
  EXPECT_EQ((*o)[1].category, "mailbox_full");
  EXPECT_EQ((*o)[2].disposition, Disposition::kBounced);
  EXPECT_EQ((*o)[2].scope, Scope::kRecipient);
  EXPECT_EQ((*o)[2].category, "invalid_recipient");
  EXPECT_EQ((*o)[3].disposition, Disposition::kDelivered);
  EXPECT_EQ((*o)[3].host, "mx.test[127.0.0.1]");
  EXPECT_EQ(r.closed.kind, FailureKind::kNone);  // clean QUIT
  // Pipelined: MAIL, all RCPTs and DATA went out in one write (one segment of
  // `sent` between EHLO and the body).
  EXPECT_NE(r.sent.find(" SIZE=118\r\nRCPT TO:<ok1@dest.test>\r\n"
                        "RCPT TO:<450-full@dest.test>\r\nRCPT TO:<550-nobody@dest.test>\r\n"
                        "RCPT TO:<ok2@dest.test>\r\nDATA\r\n"),
            std::string::npos)
      << r.sent;
  // What the server stored is byte for byte what was sent (dot-unstuffed).
  std::string stored;
  for (int i = 0; i < 50 && stored.empty(); ++i) {
    for (const auto& f : std::filesystem::directory_iterator(dir_->path() + "/out-ca")) {
      std::string meta = ReadFile(f.path().string());
      if (f.path().extension() == ".json" && meta.find("ok1@dest.test") != std::string::npos) {
        std::filesystem::path eml = f.path();
        stored = ReadFile(eml.replace_extension(".eml").string());
      }
    }
  }
  EXPECT_EQ(stored, kBody);
}

TEST_F(AiosmtpdTest, Injected421OnMailDefersTheWholeSite) {
  auto r = SendAll(Plain(), ca_server_->port,
                   {Env(1, {"a@dest.test", "b@dest.test"}, kBody, "421-mail@client.test")});
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  for (const Outcome& x : *o) {
    EXPECT_EQ(x.disposition, Disposition::kDeferred);
    EXPECT_EQ(x.scope, Scope::kSite);
    EXPECT_EQ(x.reply.code, 421);
  }
  EXPECT_EQ(r.sent.find("RSET"), std::string::npos);
  EXPECT_EQ(r.closed.reply.code, 421);
}

TEST_F(AiosmtpdTest, Injected421OnRcptDefersEveryOpenRecipient) {
  auto r = SendAll(
      Plain(), ca_server_->port,
      {Env(1, {"a@dest.test", "550-x@dest.test", "421-rcpt@dest.test", "c@dest.test"}, kBody)});
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDeferred);  // accepted, not delivered
  EXPECT_EQ((*o)[0].scope, Scope::kSite);
  EXPECT_EQ((*o)[1].disposition, Disposition::kBounced);  // its own 550 stands
  EXPECT_EQ((*o)[1].scope, Scope::kRecipient);
  EXPECT_EQ((*o)[2].scope, Scope::kSite);
  EXPECT_EQ((*o)[3].disposition, Disposition::kDeferred);
  EXPECT_EQ((*o)[3].scope, Scope::kSite);
}

TEST_F(AiosmtpdTest, Injected421AfterTheDotIsNotDelivered) {
  auto r = SendAll(Plain(), ca_server_->port, {Env(1, {"421-dot@dest.test"}, kBody)});
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDeferred);
  EXPECT_EQ((*o)[0].scope, Scope::kSite);
  EXPECT_EQ((*o)[0].reply.code, 421);
}

TEST_F(AiosmtpdTest, SlowReplyHitsTheConfiguredRcptTimeout) {
  Options opts = Plain();
  opts.timeouts.rcpt = absl::Milliseconds(700);
  absl::Time start = absl::Now();
  auto r = SendAll(opts, ca_server_->port, {Env(1, {"slow-x@dest.test"}, kBody)});
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)[0].kind, FailureKind::kTimeout);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDeferred);
  EXPECT_EQ((*o)[0].scope, Scope::kConnection);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));  // gave up before the 3 s reply
}

TEST_F(AiosmtpdTest, DisconnectMidDataDefersWithConnectionScope) {
  std::string big(200000, 'x');
  for (size_t i = 70; i < big.size(); i += 72) big[i] = '\n';
  auto r = SendAll(Plain(), ca_server_->port, {Env(1, {"drop-data@dest.test"}, big)});
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)[0].kind, FailureKind::kConnectionLost);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDeferred);
  EXPECT_EQ((*o)[0].scope, Scope::kConnection);
}

TEST_F(AiosmtpdTest, ManyTransactionsOnOneConnection) {
  std::vector<Envelope> envs;
  for (uint64_t i = 1; i <= 5; ++i) envs.push_back(Env(i, {"many@dest.test"}, kBody));
  auto r = SendAll(Plain(), ca_server_->port, std::move(envs));
  ASSERT_EQ(r.transactions.size(), 5u);
  for (const auto& [id, o] : r.transactions) EXPECT_EQ(o[0].disposition, Disposition::kDelivered);
  EXPECT_EQ(r.sent.find("RSET"), std::string::npos);
}

TEST_F(AiosmtpdTest, RequiredTlsWithVerifiedCertificateDeliversAndResumes) {
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  Options opts = Plain();
  opts.tls = TlsMode::kRequired;
  opts.tls_context = ctx->get();
  std::unique_ptr<Session> s;
  auto r =
      SendAll(opts, ca_server_->port, {Env(1, {"tls@dest.test"}, kBody)}, absl::Seconds(15), &s);
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDelivered);
  EXPECT_TRUE(s->tls_info().active);
  EXPECT_TRUE(s->tls_info().verified);
  EXPECT_EQ(s->tls_info().protocol, "TLSv1.3");
  EXPECT_FALSE(s->tls_info().cipher.empty());
  EXPECT_FALSE(s->tls_info().resumed);
  EXPECT_EQ(r.sent.find("MAIL FROM"), std::string::npos);  // nothing in the clear after STARTTLS
  // A second connection to the same host resumes the TLS session.
  r = SendAll(opts, ca_server_->port, {Env(2, {"tls@dest.test"}, kBody)}, absl::Seconds(15), &s);
  ASSERT_NE(r.Find(2), nullptr);
  EXPECT_EQ((*r.Find(2))[0].disposition, Disposition::kDelivered);
  EXPECT_TRUE(s->tls_info().resumed);
  EXPECT_GE((*ctx)->resumed_count(), 1u);
}

TEST_F(AiosmtpdTest, RequiredTlsWithInvalidCertificateIsNotDelivered) {
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok());
  Options opts = Plain();
  opts.tls = TlsMode::kRequired;
  opts.tls_context = ctx->get();
  // Self-signed, not issued by our CA.
  auto r = SendAll(opts, self_server_->port, {Env(1, {"never@dest.test"}, kBody)});
  EXPECT_TRUE(r.transactions.empty());  // never got to a transaction
  EXPECT_EQ(r.closed.kind, FailureKind::kTls);
  EXPECT_EQ(r.closed.scope, Scope::kSite);
  EXPECT_EQ(r.closed.disposition, Disposition::kDeferred);
  EXPECT_NE(r.closed.detail.find("certificate"), std::string::npos) << r.closed.detail;
  // Right CA, wrong host name.
  opts.host = "other.test";
  r = SendAll(opts, ca_server_->port, {Env(1, {"never@dest.test"}, kBody)});
  EXPECT_TRUE(r.transactions.empty());
  EXPECT_EQ(r.closed.kind, FailureKind::kTls);
  EXPECT_NE(r.closed.detail.find("hostname mismatch"), std::string::npos) << r.closed.detail;
}

TEST_F(AiosmtpdTest, OpportunisticTlsWithInvalidCertificateFallsBackToUnverifiedDelivery) {
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok());
  Options opts = Plain();
  opts.tls = TlsMode::kOpportunistic;
  opts.tls_context = ctx->get();
  std::unique_ptr<Session> s;
  auto r =
      SendAll(opts, self_server_->port, {Env(1, {"opp@dest.test"}, kBody)}, absl::Seconds(15), &s);
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ((*o)[0].disposition, Disposition::kDelivered);
  EXPECT_TRUE(s->tls_info().active);
  EXPECT_FALSE(s->tls_info().verified);
  EXPECT_FALSE(s->tls_info().verify_error.empty());
}

TEST_F(AiosmtpdTest, AuthPlainOverTls) {
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok());
  Options opts = Plain();
  opts.tls = TlsMode::kRequired;
  opts.tls_context = ctx->get();
  opts.auth = Credentials{"user", "secret"};
  std::unique_ptr<Session> s;
  auto r =
      SendAll(opts, ca_server_->port, {Env(1, {"auth@dest.test"}, kBody)}, absl::Seconds(15), &s);
  ASSERT_NE(r.Find(1), nullptr);
  EXPECT_EQ((*r.Find(1))[0].disposition, Disposition::kDelivered);
  EXPECT_TRUE(s->authenticated());
  opts.auth = Credentials{"user", "wrong"};
  r = SendAll(opts, ca_server_->port, {Env(2, {"auth@dest.test"}, kBody)});
  EXPECT_TRUE(r.transactions.empty());
  EXPECT_EQ(r.closed.category, "auth");
  EXPECT_EQ(r.closed.reply.code, 535);
}

TEST_F(AiosmtpdTest, ConnectRefusedMapsToSiteDeferral) {
  int port = testsupport::FreePort();
  auto r = SendAll(Plain(), port, {Env(1, {"x@dest.test"}, kBody)});
  EXPECT_EQ(r.closed.kind, FailureKind::kConnectFailed);
  EXPECT_EQ(r.closed.scope, Scope::kSite);
}

}  // namespace
}  // namespace salvo::smtp
