// The fault suite's SMTP half (issue 16, item 6): the client over real
// loopback sockets against tests/fault/hostile_peer.py, a peer that stalls at
// each phase, trickles one byte a second, spews megabytes of garbage, cuts the
// connection at the worst moments and breaks STARTTLS. Each test names the
// fault; every one ends in a deferral (never "delivered" when the peer did
// not say 250 to the dot, never a bounce for the peer's misbehaviour), within
// the phase's timeout and well within the wall limit, with bounded memory.
// The other fault tests (DNS, 421 storms, refused connections, certificate
// failures, full disk, EIO) live next to the code they test and carry the
// `fault` label too: tests/README.md lists the whole suite.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/smtp/driver.h"
#include "tests/support/process.h"

namespace salvo::smtp {
namespace {

using testing::DriveResult;
using testing::SendAll;
using testsupport::PipedProcess;

// One hostile_peer.py per test, serving every connection in `mode`.
class HostilePeer {
 public:
  explicit HostilePeer(const std::string& mode, int megabytes = 8)
      : proc_(std::vector<std::string>{
            "/usr/bin/python3", std::string(SALVO_SOURCE_DIR) + "/tests/fault/hostile_peer.py",
            "--mode", mode, "--megabytes", std::to_string(megabytes)}) {
    auto line = proc_.WaitForLine("PORT ", std::chrono::seconds(20));
    if (line) port_ = std::stoi(line->substr(5));
  }
  int port() const { return port_; }

 private:
  PipedProcess proc_;
  int port_ = 0;
};

const std::string kBody =
    "From: <sender@client.test>\r\nTo: <a@dest.test>\r\nSubject: fault\r\n\r\nbody\r\n";

Options Plain() {
  Options o;
  o.helo_name = "client.test";
  o.host = "hostile.test";
  o.host_label = "hostile.test[127.0.0.1]";
  o.tls = TlsMode::kDisabled;
  return o;
}

// Short per-phase deadlines so that each stall is noticed in about a second.
Options Impatient() {
  Options o = Plain();
  Timeouts& t = o.timeouts;
  t.greeting = t.ehlo = t.starttls = t.auth = t.mail = t.rcpt = absl::Milliseconds(800);
  t.data_init = t.data_block = t.data_final = t.rset = t.quit = absl::Milliseconds(800);
  return o;
}

Envelope Env(uint64_t id, std::string body = kBody) {
  Envelope e;
  e.id = id;
  e.mail_from = "sender@client.test";
  e.rcpts = {"a@dest.test", "b@dest.test"};
  e.body = std::move(body);
  return e;
}

// The transaction ran and both recipients were deferred for the connection
// (the next attempt may go elsewhere), for `kind`, never delivered or bounced.
void ExpectTransactionDeferred(const DriveResult& r, FailureKind kind) {
  ASSERT_FALSE(r.wall_limit_hit);
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr) << "no transaction outcome";
  ASSERT_EQ(o->size(), 2u);
  for (const Outcome& x : *o) {
    EXPECT_EQ(x.disposition, Disposition::kDeferred) << x.detail;
    EXPECT_EQ(x.kind, kind) << x.detail;
    EXPECT_EQ(x.scope, Scope::kConnection) << x.detail;
  }
}

// The session ended before any transaction, deferred, for `kind`.
void ExpectNoTransaction(const DriveResult& r, FailureKind kind) {
  ASSERT_FALSE(r.wall_limit_hit);
  EXPECT_TRUE(r.transactions.empty());
  EXPECT_EQ(r.closed.kind, kind) << r.closed.detail;
  EXPECT_EQ(r.closed.disposition, Disposition::kDeferred) << r.closed.detail;
  EXPECT_EQ(r.sent.find("MAIL FROM"), std::string::npos) << r.sent;
}

std::unique_ptr<TlsClientContext> TlsContext() {
  auto ctx = TlsClientContext::Create({});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  return ctx.ok() ? std::move(*ctx) : nullptr;
}

// ---- Garbage and trickling peers -----------------------------------------

TEST(FaultSuite, PeerSendingMegabytesOfRandomBytesIsAProtocolErrorNotACrash) {
  HostilePeer peer("garbage");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Plain(), peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kProtocol);
}

TEST(FaultSuite, PeerSendingMegabytesWithoutALineEndIsCutAtTheLineLimit) {
  HostilePeer peer("garbage-no-eol");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Plain(), peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kProtocol);
}

TEST(FaultSuite, PeerSendingAnEndlessMultilineGreetingIsCutAtTheLineCountLimit) {
  HostilePeer peer("endless-reply");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Plain(), peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kProtocol);
}

TEST(FaultSuite, MegabytesOfGarbageInsteadOfTheDotReplyDeferNeverDeliver) {
  HostilePeer peer("garbage-after-dot");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Plain(), peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kProtocol);
}

TEST(FaultSuite, GreetingOneByteASecondHitsTheGreetingTimeout) {
  HostilePeer peer("trickle-greeting");
  ASSERT_GT(peer.port(), 0);
  Options o = Plain();
  o.timeouts.greeting = absl::Milliseconds(2500);  // the 24-byte greeting would take 24 s
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTimeout);
  EXPECT_NE(r.closed.detail.find("greeting"), std::string::npos) << r.closed.detail;
}

TEST(FaultSuite, DotReplyOneByteASecondHitsTheDataFinalTimeoutAndDefers) {
  HostilePeer peer("trickle-after-dot");
  ASSERT_GT(peer.port(), 0);
  Options o = Plain();
  o.timeouts.data_final = absl::Milliseconds(2500);
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kTimeout);
  EXPECT_NE((*r.Find(1))[0].detail.find("data_end"), std::string::npos);
}

// ---- A reply that never comes, past each per-phase timeout ----------------

TEST(FaultSuite, StalledGreetingHitsTheGreetingTimeout) {
  HostilePeer peer("stall-greeting");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTimeout);
  EXPECT_NE(r.closed.detail.find("greeting"), std::string::npos) << r.closed.detail;
}

TEST(FaultSuite, StalledEhloReplyHitsTheEhloTimeout) {
  HostilePeer peer("stall-ehlo");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTimeout);
  EXPECT_NE(r.closed.detail.find("ehlo"), std::string::npos) << r.closed.detail;
}

TEST(FaultSuite, StalledStarttlsReplyHitsTheStarttlsTimeout) {
  HostilePeer peer("stall-starttls");
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Impatient();
  o.tls = TlsMode::kOpportunistic;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTimeout);
  EXPECT_NE(r.closed.detail.find("starttls"), std::string::npos) << r.closed.detail;
}

TEST(FaultSuite, StalledMailReplyHitsTheMailTimeout) {
  HostilePeer peer("stall-mail");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kTimeout);
  EXPECT_NE((*r.Find(1))[0].detail.find("mail"), std::string::npos);
}

TEST(FaultSuite, StalledRcptReplyHitsTheRcptTimeout) {
  HostilePeer peer("stall-rcpt");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kTimeout);
  EXPECT_NE((*r.Find(1))[0].detail.find("rcpt"), std::string::npos);
}

TEST(FaultSuite, StalledDataReplyHitsTheDataInitTimeout) {
  HostilePeer peer("stall-data");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kTimeout);
  EXPECT_NE((*r.Find(1))[0].detail.find("during data"), std::string::npos);
}

TEST(FaultSuite, StalledDotReplyHitsTheDataFinalTimeoutAndIsNotDelivered) {
  HostilePeer peer("stall-dot");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kTimeout);
  EXPECT_NE((*r.Find(1))[0].detail.find("data_end"), std::string::npos);
}

TEST(FaultSuite, PeerThatStopsReadingTheBodyHitsTheDataBlockTimeout) {
  HostilePeer peer("stop-reading-body");
  ASSERT_GT(peer.port(), 0);
  // Larger than the loopback socket buffers on both sides together.
  std::string big;
  const std::string line(998, 'b');
  while (big.size() < (size_t{48} << 20)) big += line + "\r\n";
  Options o = Impatient();
  o.timeouts.data_final = absl::Minutes(10);  // only the no-progress deadline can fire
  o.timeouts.data_block = absl::Milliseconds(1500);
  auto r = SendAll(o, peer.port(), {Env(1, kBody + big)}, absl::Seconds(30));
  ExpectTransactionDeferred(r, FailureKind::kTimeout);
}

TEST(FaultSuite, StalledQuitReplyKeepsTheDeliveryAndClosesOnTheQuitTimeout) {
  HostilePeer peer("stall-quit");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Impatient(), peer.port(), {Env(1)});
  ASSERT_FALSE(r.wall_limit_hit);
  const auto* o = r.Find(1);
  ASSERT_NE(o, nullptr);
  for (const Outcome& x : *o) EXPECT_EQ(x.disposition, Disposition::kDelivered);
  EXPECT_EQ(r.closed.kind, FailureKind::kTimeout) << r.closed.detail;
}

// ---- Cut connections ------------------------------------------------------

TEST(FaultSuite, PeerClosingOnConnectIsAConnectionLossDeferred) {
  HostilePeer peer("close-on-connect");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Plain(), peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kConnectionLost);
}

TEST(FaultSuite, ConnectionDroppedAfterTheDotBeforeTheReplyIsDeferredNotDelivered) {
  HostilePeer peer("close-after-dot");
  ASSERT_GT(peer.port(), 0);
  auto r = SendAll(Plain(), peer.port(), {Env(1)});
  ExpectTransactionDeferred(r, FailureKind::kConnectionLost);
  EXPECT_NE((*r.Find(1))[0].detail.find("data_end"), std::string::npos);
}

// ---- STARTTLS failures, required and opportunistic -------------------------

TEST(FaultSuite, RequiredTlsWithoutStarttlsOfferedSendsNothingInTheClear) {
  HostilePeer peer("no-starttls");
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Plain();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTls);
  EXPECT_EQ(r.closed.scope, Scope::kSite);
  EXPECT_NE(r.closed.detail.find("does not offer STARTTLS"), std::string::npos) << r.closed.detail;
}

TEST(FaultSuite, OpportunisticTlsWithoutStarttlsOfferedDeliversInTheClear) {
  HostilePeer peer("no-starttls");
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Plain();
  o.tls = TlsMode::kOpportunistic;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ASSERT_NE(r.Find(1), nullptr);
  for (const Outcome& x : *r.Find(1)) EXPECT_EQ(x.disposition, Disposition::kDelivered);
}

TEST(FaultSuite, RequiredTlsRefusedWith454SendsNothingInTheClear) {
  HostilePeer peer("starttls-454");
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Plain();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTls);
  EXPECT_NE(r.closed.detail.find("454"), std::string::npos) << r.closed.detail;
}

TEST(FaultSuite, OpportunisticTlsRefusedWith454FallsBackToPlaintextAndDelivers) {
  HostilePeer peer("starttls-454");
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Plain();
  o.tls = TlsMode::kOpportunistic;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ASSERT_NE(r.Find(1), nullptr);
  for (const Outcome& x : *r.Find(1)) EXPECT_EQ(x.disposition, Disposition::kDelivered);
}

TEST(FaultSuite, GarbageInsteadOfTheTlsHandshakeFailsRequiredTlsForTheSite) {
  HostilePeer peer("starttls-garbage", 1);
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Plain();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTls);
  EXPECT_EQ(r.closed.scope, Scope::kSite);
}

TEST(FaultSuite, GarbageInsteadOfTheTlsHandshakeInOpportunisticModeDefersTheConnection) {
  HostilePeer peer("starttls-garbage", 1);
  ASSERT_GT(peer.port(), 0);
  auto ctx = TlsContext();
  ASSERT_NE(ctx, nullptr);
  Options o = Plain();
  o.tls = TlsMode::kOpportunistic;
  o.tls_context = ctx.get();
  auto r = SendAll(o, peer.port(), {Env(1)});
  ExpectNoTransaction(r, FailureKind::kTls);
  EXPECT_EQ(r.closed.scope, Scope::kConnection);
}

}  // namespace
}  // namespace salvo::smtp
