// The client state machine driven in memory: RFC 2920 ordering, BDAT,
// dot-stuffing, parameters, fallbacks, AUTH, timeouts, many transactions.
#include "engine/smtp/session.h"

#include <gtest/gtest.h>

#include "tests/smtp/session_harness.h"

namespace salvo::smtp {
namespace {

using testing::Harness;

const Outcome& Rcpt(const Harness& h, size_t i) {
  const Event* e = h.Last(Event::Type::kTransactionDone);
  EXPECT_NE(e, nullptr);
  return e->outcomes.at(i);
}

TEST(SessionTest, PipelinedMailRcptsAndDataGoOutInOneWriteInOrder) {
  Harness h;
  h.Greet();
  EXPECT_EQ(h.last_ehlo, "EHLO client.test\r\n");
  ASSERT_EQ(h.Count(Event::Type::kReady), 1);
  ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x", "c@x"}, "B\r\n", 7)));
  EXPECT_EQ(h.Out(),
            "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
            "RCPT TO:<c@x>\r\nDATA\r\n");
  // Replies matched in order, arriving in odd pieces.
  h.Feed("250 ok\r\n250 ok a\r\n55");
  EXPECT_EQ(h.Out(), "");  // no body before 354
  h.Feed("0 5.1.1 no b\r\n450 4.2.2 full\r\n354 go\r\n");
  EXPECT_EQ(h.Out(), "B\r\n.\r\n");
  h.Feed("250 2.0.0 queued as X\r\n");
  const Event* e = h.Last(Event::Type::kTransactionDone);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->envelope_id, 7u);
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  EXPECT_EQ(Rcpt(h, 0).reply.text, "queued as X");
  EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kBounced);
  EXPECT_EQ(Rcpt(h, 1).scope, Scope::kRecipient);
  EXPECT_EQ(Rcpt(h, 2).disposition, Disposition::kDeferred);
  EXPECT_EQ(Rcpt(h, 2).scope, Scope::kRecipient);
  EXPECT_EQ(Rcpt(h, 2).category, "mailbox_full");
  EXPECT_EQ(h.Count(Event::Type::kReady), 2);
}

TEST(SessionTest, PipelinedDataGets354WithNoAcceptedRecipientSendsLoneDot) {
  Harness h;
  h.Greet();
  h.Out();
  ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, "SECRET\r\n")));
  h.Out();
  h.Feed("250 ok\r\n550 no\r\n354 go anyway\r\n");
  EXPECT_EQ(h.Out(), ".\r\n");  // RFC 2920 3.1: no body, just end the data
  h.Feed("554 no valid recipients\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
  EXPECT_EQ(Rcpt(h, 0).reply.code, 550);
  EXPECT_EQ(h.session->state(), State::kReady);
}

TEST(SessionTest, PipelinedMailRejectedIgnoresTheFollowing503s) {
  Harness h;
  h.Greet();
  h.Out();
  ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"})));
  h.Out();
  h.Feed("553 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 need RCPT\r\n");
  EXPECT_EQ(h.Out(), "RSET\r\n");
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(Rcpt(h, i).reply.code, 553);
    EXPECT_EQ(Rcpt(h, i).scope, Scope::kMessage);
    EXPECT_EQ(Rcpt(h, i).disposition, Disposition::kBounced);
    EXPECT_EQ(Rcpt(h, i).category, "invalid_sender");
  }
}

TEST(SessionTest, WithoutPipeliningOneCommandAtATimeAndNoDataWhenAllRejected) {
  Harness h;
  h.Greet({"mx", "8BITMIME"});
  h.Out();
  ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"}, "BODY\r\n")));
  EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\n");
  h.Feed("250 ok\r\n");
  EXPECT_EQ(h.Out(), "RCPT TO:<a@x>\r\n");
  h.Feed("550 no\r\n");
  EXPECT_EQ(h.Out(), "RCPT TO:<b@x>\r\n");
  h.Feed("551 no\r\n");
  EXPECT_EQ(h.Out(), "RSET\r\n");  // no DATA
  EXPECT_EQ(Rcpt(h, 1).reply.code, 551);
  h.Feed("250 ok\r\n");
  EXPECT_EQ(h.session->state(), State::kReady);
}

TEST(SessionTest, ManyTransactionsPerConnectionAndQuit) {
  Harness h;
  h.Greet();
  h.Out();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, "m\r\n", i)));
    EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
    EXPECT_EQ(h.Out(), "m\r\n.\r\n");
    h.Feed("250 ok\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  }
  EXPECT_EQ(h.Count(Event::Type::kTransactionDone), 5);
  EXPECT_FALSE(h.Start(Harness::Env({})));  // no recipients
  h.session->Quit();
  EXPECT_EQ(h.Out(), "QUIT\r\n");
  EXPECT_FALSE(h.Start(Harness::Env({"a@x"})));  // not ready
  h.Feed("221 bye\r\n");
  ASSERT_TRUE(h.session->closed());
  EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.kind, FailureKind::kNone);
}

TEST(SessionTest, TakeOutputHandsOverEveryByteOnceAndReusesTheCallersBuffer) {
  Harness h;
  h.Greet();
  std::string wire;
  h.session->TakeOutput(&wire);
  EXPECT_TRUE(wire.empty());  // Greet took the EHLO; nothing since
  std::string body(20000, 'x');
  body += "\r\n";
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, body, i)));
    h.session->TakeOutput(&wire);
    EXPECT_EQ(wire, "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    EXPECT_TRUE(h.session->PendingOutput().empty());
    h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
    // Half written by the caller, then the rest taken: nothing repeated or lost.
    size_t half = h.session->PendingOutput().size() / 2;
    std::string first(h.session->PendingOutput().substr(0, half));
    h.session->ConsumeOutput(half);
    h.session->TakeOutput(&wire);
    EXPECT_EQ(first + wire, body + ".\r\n");
    h.Feed("250 ok\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
    h.session->ReleaseBuffers();
  }
  h.session->TakeOutput(&wire);
  EXPECT_TRUE(wire.empty());
  EXPECT_EQ(h.Count(Event::Type::kTransactionDone), 3);
}

TEST(SessionTest, DotStuffingAndLineEndNormalisation) {
  std::string out;
  AppendNormalizedBody(".lead\nmid\r\n..two\r\nlast.\n.", true, &out);
  EXPECT_EQ(out, "..lead\r\nmid\r\n...two\r\nlast.\r\n..\r\n");
  out.clear();
  AppendNormalizedBody(".lead\nx", false, &out);
  EXPECT_EQ(out, ".lead\r\nx\r\n");
  EXPECT_EQ(NormalizedBodySize(".lead\nx"), out.size());
  EXPECT_EQ(NormalizedBodySize(""), 2u);
  out.clear();
  AppendNormalizedBody("a\r", true, &out);
  EXPECT_EQ(out, "a\r\n");
}

// A plain byte-by-byte reference for the vectorised normaliser.
std::string ReferenceNormalize(std::string_view body, bool dot_stuff) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (line_start && dot_stuff && c == '.') out.push_back('.');
    line_start = false;
    if (c == '\n') {
      if (i == 0 || body[i - 1] != '\r') out.push_back('\r');
      line_start = true;
    }
    out.push_back(c);
  }
  if (body.empty() || body.back() != '\n')
    out += body.empty() || body.back() != '\r' ? "\r\n" : "\n";
  return out;
}

TEST(SessionTest, NormaliserMatchesAByteByByteReferenceOnRandomBodies) {
  uint64_t x = 88172645463325252ull;  // xorshift: deterministic
  const char alphabet[] = {'a', 'b', '\r', '\n', '.', 'x', ' ', '\n'};
  for (int round = 0; round < 3000; ++round) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t len = round % 10 == 0 ? x % 700 : x % 97;  // long ones cross many vector blocks
    std::string body;
    for (size_t i = 0; i < len; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      body.push_back(alphabet[x % sizeof(alphabet)]);
    }
    for (bool dot : {false, true}) {
      std::string got;
      AppendNormalizedBody(body, dot, &got);
      ASSERT_EQ(got, ReferenceNormalize(body, dot)) << "dot=" << dot << " body=" << body;
    }
    ASSERT_EQ(NormalizedBodySize(body), ReferenceNormalize(body, false).size());
  }
}

TEST(SessionTest, BdatCarriesTheExactNormalisedBodyPipelinedWithMailAndRcpt) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "CHUNKING", "SIZE 1000"});
  h.Out();
  ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, ".x\nyy\n")));
  EXPECT_EQ(h.Out(),
            "MAIL FROM:<sender@client.test> SIZE=8\r\nRCPT TO:<a@x>\r\nBDAT 8 LAST\r\n"
            ".x\r\nyy\r\n");
  h.Feed("250 ok\r\n250 ok\r\n250 2.0.0 Ok: 9 bytes queued\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  EXPECT_EQ(h.Out(), "");
  // A refused BDAT is followed by RSET.
  ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, "z\r\n")));
  h.Out();
  h.Feed("250 ok\r\n250 ok\r\n554 5.7.1 rejected content\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
  EXPECT_EQ(Rcpt(h, 0).scope, Scope::kMessage);
  EXPECT_EQ(h.Out(), "RSET\r\n");
}

TEST(SessionTest, BdatSendsACrlfBodyAsItIsAndNormalisesOneWithoutAFinalCrlf) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "CHUNKING", "SIZE 1000"});
  h.Out();
  // A composed copy (body_crlf): sent byte for byte, its size is its length.
  Envelope e = Harness::Env({"a@x"}, ".x\r\nyy\r\n");
  e.body_crlf = true;
  ASSERT_TRUE(h.Start(std::move(e)));
  EXPECT_EQ(h.Out(),
            "MAIL FROM:<sender@client.test> SIZE=8\r\nRCPT TO:<a@x>\r\nBDAT 8 LAST\r\n"
            ".x\r\nyy\r\n");
  h.Feed("250 ok\r\n250 ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  // Flagged but not ending in CRLF: completed as any other body.
  Envelope open_end = Harness::Env({"a@x"}, "z\r\nend");
  open_end.body_crlf = true;
  ASSERT_TRUE(h.Start(std::move(open_end)));
  EXPECT_EQ(h.Out(),
            "MAIL FROM:<sender@client.test> SIZE=8\r\nRCPT TO:<a@x>\r\nBDAT 8 LAST\r\n"
            "z\r\nend\r\n");
  h.Feed("250 ok\r\n250 ok\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
}

Envelope Held(std::vector<std::string> rcpts, std::string_view body) {
  Envelope e = Harness::Env(std::move(rcpts), body);
  e.hold_end = true;
  return e;
}

TEST(SessionTest, AHeldDataTransactionSendsItsBodyButNotTheDotUntilReleased) {
  Harness h;
  h.Greet();
  h.Out();
  ASSERT_TRUE(h.Start(Held({"a@x"}, "B\r\n")));
  EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
  h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(h.Out(), "B\r\n");  // the body, without the end of data
  EXPECT_TRUE(h.session->end_held());
  EXPECT_EQ(h.Count(Event::Type::kTransactionDone), 0);
  h.session->ReleaseEnd();
  EXPECT_FALSE(h.session->end_held());
  EXPECT_EQ(h.Out(), ".\r\n");
  h.Feed("250 2.0.0 queued\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  EXPECT_EQ(h.session->state(), State::kReady);
  // Released before the body is due: the dot follows the body as usual.
  ASSERT_TRUE(h.Start(Held({"a@x"}, "C\r\n")));
  h.Out();
  h.session->ReleaseEnd();
  EXPECT_EQ(h.Out(), "");
  h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(h.Out(), "C\r\n.\r\n");
  h.Feed("250 ok\r\n");
  EXPECT_EQ(h.Count(Event::Type::kTransactionDone), 2);
  h.session->ReleaseEnd();  // nothing held: no-op
  EXPECT_EQ(h.Out(), "");
}

TEST(SessionTest, AHeldBdatTransactionSendsMailAndRcptAndTheChunkOnRelease) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "CHUNKING", "SIZE 1000"});
  h.Out();
  EXPECT_TRUE(h.session->uses_chunking());
  ASSERT_TRUE(h.Start(Held({"a@x"}, "x\nyy\n")));
  EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test> SIZE=7\r\nRCPT TO:<a@x>\r\n");
  h.Feed("250 ok\r\n250 ok\r\n");
  EXPECT_EQ(h.Out(), "");  // the one chunk ends the message: held
  EXPECT_EQ(h.Count(Event::Type::kTransactionDone), 0);
  h.session->ReleaseEnd();
  EXPECT_EQ(h.Out(), "BDAT 7 LAST\r\nx\r\nyy\r\n");
  h.Feed("250 2.0.0 queued\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  EXPECT_EQ(h.session->state(), State::kReady);

  // Released before the chunk is due: it goes out with MAIL and RCPT.
  ASSERT_TRUE(h.Start(Held({"a@x"}, "z\r\n")));
  EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test> SIZE=3\r\nRCPT TO:<a@x>\r\n");
  h.session->ReleaseEnd();
  EXPECT_EQ(h.Out(), "BDAT 3 LAST\r\nz\r\n");
  // The recipient refused while the chunk was held: the server refuses the
  // chunk too, and RSET follows.
  h.Feed("250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
  EXPECT_EQ(Rcpt(h, 0).reply.code, 550);
  EXPECT_EQ(h.Out(), "RSET\r\n");
}

TEST(SessionTest, QuitWithAHeldEndDefersTheMessage) {
  Harness h;
  h.Greet();
  h.Out();
  ASSERT_TRUE(h.Start(Held({"a@x"}, "B\r\n")));
  h.Out();
  h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(h.Out(), "B\r\n");
  h.session->Quit();
  h.Collect();
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDeferred);
  EXPECT_TRUE(h.session->closed());
}

TEST(SessionTest, DataStillDotStuffsACrlfBody) {
  Harness h;
  h.Greet({"mx", "PIPELINING"});
  h.Out();
  Envelope e = Harness::Env({"a@x"}, ".x\r\n");
  e.body_crlf = true;
  ASSERT_TRUE(h.Start(std::move(e)));
  EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
  h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(h.Out(), "..x\r\n.\r\n");
}

TEST(SessionTest, MailParametersWhenOfferedAndNeeded) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8"});
  h.Out();
  Envelope e = Harness::Env({"ü@x"}, "12345\r\n");
  e.needs_8bit = true;
  e.needs_smtputf8 = true;
  ASSERT_TRUE(h.Start(std::move(e)));
  EXPECT_EQ(h.Out().substr(0, 65),
            "MAIL FROM:<sender@client.test> SIZE=7 BODY=8BITMIME SMTPUTF8\r\nRCP");
}

TEST(SessionTest, LocalRefusalsNeedNoNetwork) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "SIZE 10"});
  h.Out();
  Envelope e = Harness::Env({"a@x"}, "this body is longer than ten bytes\r\n");
  ASSERT_TRUE(h.Start(std::move(e)));
  EXPECT_EQ(h.Out(), "");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
  EXPECT_EQ(Rcpt(h, 0).category, "message_too_large");
  EXPECT_EQ(h.session->state(), State::kReady);
  e = Harness::Env({"a@x"}, "x");
  e.needs_smtputf8 = true;
  ASSERT_TRUE(h.Start(std::move(e)));
  EXPECT_EQ(Rcpt(h, 0).category, "smtputf8");
  EXPECT_EQ(Rcpt(h, 0).kind, FailureKind::kLocal);
  // Command injection through an address is refused per recipient.
  ASSERT_TRUE(h.Start(Harness::Env({"evil@x>\r\nRCPT TO:<other@y", "ok@x"}, "b\r\n")));
  std::string out = h.Out();
  EXPECT_EQ(out, "MAIL FROM:<sender@client.test> SIZE=3\r\nRCPT TO:<ok@x>\r\nDATA\r\n");
  h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
  h.Out();
  h.Feed("250 ok\r\n");
  EXPECT_EQ(Rcpt(h, 0).category, "invalid_recipient");
  EXPECT_EQ(Rcpt(h, 0).kind, FailureKind::kLocal);
  EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kDelivered);
}

TEST(SessionTest, EhloRefusedFallsBackToHelo) {
  Harness h;
  h.Feed("220 old.mx SMTP\r\n");
  EXPECT_EQ(h.Out(), "EHLO client.test\r\n");
  h.Feed("502 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(h.Out(), "HELO client.test\r\n");
  h.Feed("250 old.mx\r\n");
  EXPECT_EQ(h.session->state(), State::kReady);
  EXPECT_FALSE(h.session->extensions().esmtp);
  ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"})));
  EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\n");  // no pipelining, no params
}

TEST(SessionTest, HeloRefusedEndsTheSessionForTheSite) {
  Harness h;
  h.Feed("220 mx\r\n");
  h.Feed("500 no\r\n");
  h.Feed("550 go away\r\n");
  ASSERT_TRUE(h.session->closed());
  EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.scope, Scope::kSite);
}

TEST(SessionTest, PerPhaseDeadlinesFollowTheConfiguredTimeouts) {
  Options o = Harness::DefaultOptions();
  o.timeouts.rcpt = absl::Seconds(7);
  o.timeouts.data_block = absl::Seconds(11);
  o.timeouts.data_final = absl::Seconds(13);
  Harness h(o);
  absl::Time t0 = h.clock.Now();
  EXPECT_EQ(h.session->NextDeadline(), t0 + absl::Minutes(5));  // greeting default
  h.Greet({"mx"});
  h.Out();
  EXPECT_EQ(h.session->NextDeadline(), absl::InfiniteFuture());  // idle
  const std::string body(100, 'b');                              // must outlive the transaction
  ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, body)));
  h.Out();
  EXPECT_EQ(h.session->NextDeadline(), t0 + absl::Minutes(5));  // mail
  h.clock.Advance(absl::Seconds(1));
  h.Feed("250 ok\r\n");
  h.Out();
  EXPECT_EQ(h.session->NextDeadline(), t0 + absl::Seconds(1 + 7));  // rcpt
  h.Feed("250 ok\r\n");
  h.Out();
  EXPECT_EQ(h.session->NextDeadline(), t0 + absl::Seconds(1) + absl::Minutes(2));  // data init
  h.Feed("354 go\r\n");
  // The body is not written yet: data block timeout.
  EXPECT_EQ(h.session->NextDeadline(), t0 + absl::Seconds(1 + 11));
  h.clock.Advance(absl::Seconds(2));
  h.session->ConsumeOutput(h.session->PendingOutput().size());
  EXPECT_EQ(h.session->NextDeadline(), t0 + absl::Seconds(3 + 13));  // final dot
  h.session->OnTimeout(t0 + absl::Seconds(15));                      // early: no-op
  EXPECT_FALSE(h.session->closed());
  h.clock.Advance(absl::Seconds(20));
  h.session->OnTimeout(h.clock.Now());
  h.Collect();
  ASSERT_TRUE(h.session->closed());
  EXPECT_EQ(Rcpt(h, 0).kind, FailureKind::kTimeout);
  EXPECT_EQ(Rcpt(h, 0).scope, Scope::kConnection);
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDeferred);
}

TEST(SessionTest, GreetingTimeout) {
  Harness h;
  h.clock.Advance(absl::Minutes(6));
  h.session->OnTimeout(h.clock.Now());
  h.Collect();
  ASSERT_TRUE(h.session->closed());
  EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.kind, FailureKind::kTimeout);
  EXPECT_EQ(h.session->NextDeadline(), absl::InfiniteFuture());
}

TEST(SessionTest, AuthPlainAndLogin) {
  Options o = Harness::DefaultOptions();
  o.auth = Credentials{"user", "pass"};
  o.allow_auth_without_tls = true;
  {
    Harness h(o);
    h.Greet({"mx", "AUTH PLAIN LOGIN"});
    EXPECT_EQ(h.Out(), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    EXPECT_EQ(h.Count(Event::Type::kReady), 0);
    h.Feed("235 2.7.0 ok\r\n");
    EXPECT_TRUE(h.session->authenticated());
    EXPECT_EQ(h.Count(Event::Type::kReady), 1);
  }
  {
    Harness h(o);
    h.Greet({"mx", "AUTH=LOGIN"});
    EXPECT_EQ(h.Out(), "AUTH LOGIN\r\n");
    h.Feed("334 VXNlcm5hbWU6\r\n");
    EXPECT_EQ(h.Out(), "dXNlcg==\r\n");
    h.Feed("334 UGFzc3dvcmQ6\r\n");
    EXPECT_EQ(h.Out(), "cGFzcw==\r\n");
    h.Feed("535 5.7.8 bad credentials\r\n");
    ASSERT_TRUE(h.session->closed());
    const Outcome& c = h.Last(Event::Type::kClosed)->outcome;
    EXPECT_EQ(c.category, "auth");
    EXPECT_EQ(c.scope, Scope::kSite);
    EXPECT_EQ(c.disposition, Disposition::kDeferred);
  }
  {
    o.allow_auth_without_tls = false;
    Harness h(o);
    h.Greet({"mx", "AUTH PLAIN"});
    EXPECT_EQ(h.Out(), "QUIT\r\n");  // credentials never sent in the clear
    ASSERT_TRUE(h.session->closed());
    EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.category, "auth");
  }
}

TEST(SessionTest, TlsRequiredButNotOfferedIsATlsFailureForTheSite) {
  Options o = Harness::DefaultOptions();
  o.tls = TlsMode::kRequired;
  auto ctx = TlsClientContext::Create({});
  ASSERT_TRUE(ctx.ok());
  o.tls_context = ctx->get();
  Harness h(o);
  h.Greet({"mx", "PIPELINING"});
  EXPECT_EQ(h.Out(), "QUIT\r\n");
  const Outcome& c = h.Last(Event::Type::kClosed)->outcome;
  EXPECT_EQ(c.kind, FailureKind::kTls);
  EXPECT_EQ(c.scope, Scope::kSite);
  EXPECT_EQ(c.disposition, Disposition::kDeferred);
}

TEST(SessionTest, OpportunisticTlsRefusedContinuesInPlaintext) {
  Options o = Harness::DefaultOptions();
  o.tls = TlsMode::kOpportunistic;
  auto ctx = TlsClientContext::Create({});
  ASSERT_TRUE(ctx.ok());
  o.tls_context = ctx->get();
  Harness h(o);
  h.Greet({"mx", "STARTTLS"});
  EXPECT_EQ(h.Out(), "STARTTLS\r\n");
  h.Feed("454 4.7.0 TLS not available\r\n");
  EXPECT_EQ(h.session->state(), State::kReady);
  EXPECT_FALSE(h.session->tls_info().active);
}

TEST(SessionTest, StartTlsAnswerIsFollowedByTlsHandshakeAndInjectedBytesAreDropped) {
  Options o = Harness::DefaultOptions();
  o.tls = TlsMode::kOpportunistic;
  auto ctx = TlsClientContext::Create({});
  ASSERT_TRUE(ctx.ok());
  o.tls_context = ctx->get();
  Harness h(o);
  h.Greet({"mx", "STARTTLS"});
  h.Out();
  // CVE-2011-0411 style: plaintext after the 220 must not be taken as replies.
  h.Feed("220 go ahead\r\n250 injected\r\n");
  EXPECT_EQ(h.session->state(), State::kTlsHandshake);
  std::string hello = h.Out();
  ASSERT_GE(hello.size(), 5u);
  EXPECT_EQ(hello[0], 0x16);  // a TLS handshake record (ClientHello)
  // Garbage instead of a ServerHello: a TLS failure, scope connection.
  h.Feed(std::string("HTTP/1.1 400 Bad Request\r\n\r\n"));
  ASSERT_TRUE(h.session->closed());
  const Outcome& c = h.Last(Event::Type::kClosed)->outcome;
  EXPECT_EQ(c.kind, FailureKind::kTls);
  EXPECT_EQ(c.scope, Scope::kConnection);
}

TEST(SessionTest, UnsolicitedReplyIsAProtocolErrorButUnsolicited421IsASiteDeferral) {
  {
    Harness h;
    h.Greet();
    h.Feed("250 surprise\r\n");
    ASSERT_TRUE(h.session->closed());
    EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.kind, FailureKind::kProtocol);
  }
  {
    Harness h;
    h.Greet();
    h.Feed("421 4.3.2 shutting down\r\n");
    ASSERT_TRUE(h.session->closed());
    EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.scope, Scope::kSite);
  }
}

TEST(SessionTest, QuitMidTransactionDefersOpenRecipients) {
  Harness h;
  h.Greet();
  h.Out();
  ASSERT_TRUE(h.Start(Harness::Env({"a@x"})));
  h.Out();
  h.session->Quit();
  h.Collect();
  ASSERT_TRUE(h.session->closed());
  EXPECT_EQ(Rcpt(h, 0).category, "shutdown");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDeferred);
  EXPECT_EQ(h.Out(), "QUIT\r\n");
}

TEST(SessionTest, ConnectionLostDuringDataDefersWithConnectionScope) {
  Harness h;
  h.Greet();
  h.Out();
  ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"})));
  h.Out();
  h.Feed("250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n");
  h.session->OnConnectionLost();
  h.Collect();
  EXPECT_EQ(Rcpt(h, 0).kind, FailureKind::kConnectionLost);
  EXPECT_EQ(Rcpt(h, 0).scope, Scope::kConnection);
  EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kBounced);  // decided before the loss
}

// ---- Output as segments: bodies sent from where they were composed ----

// The pending output taken as segments (TakeOutput(OutputBuffer*)).
struct Taken {
  OutputBuffer buffer;
  std::vector<std::string> segments;
  std::vector<const char*> starts;  // data() of each segment
  std::string All() const {
    std::string all;
    for (const std::string& s : segments) all += s;
    return all;
  }
};
void Take(Harness& h, Taken* t) {
  h.session->TakeOutput(&t->buffer);
  std::vector<std::string_view> views;
  t->buffer.Segments(&views);
  t->segments.assign(views.begin(), views.end());
  t->starts.clear();
  for (std::string_view v : views) t->starts.push_back(v.data());
}

Envelope Owned(std::vector<std::string> rcpts, std::shared_ptr<const std::string> body) {
  Envelope e = Harness::Env(std::move(rcpts), *body);
  e.body_owner = body;
  e.body_crlf = true;
  return e;
}

TEST(SessionTest, BdatSendsAComposedBodyAsAViewBetweenItsCommandsAndFramesItExactly) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "CHUNKING", "SIZE 100000"});
  h.Out();
  auto body = std::make_shared<const std::string>(".dot first\r\nline\r\n\r\nend\r\n");
  ASSERT_TRUE(h.Start(Owned({"a@x", "b@x"}, body)));
  Taken t;
  Take(h, &t);
  ASSERT_EQ(t.segments.size(), 2u);
  EXPECT_EQ(t.buffer.views(), 1u);
  EXPECT_EQ(t.segments[0],
            "MAIL FROM:<sender@client.test> SIZE=25\r\nRCPT TO:<a@x>\r\n"
            "RCPT TO:<b@x>\r\nBDAT 25 LAST\r\n");
  EXPECT_EQ(t.segments[1], *body);       // BDAT sends dots as they are
  EXPECT_EQ(t.starts[1], body->data());  // not a copy: the composed bytes themselves
  EXPECT_EQ(t.buffer.size(), t.segments[0].size() + body->size());
  // The buffer keeps the body alive (the connection holds it until the send
  // completes), also after the session has finished with the envelope.
  h.Feed("250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n");
  EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kDelivered);
  EXPECT_EQ(body.use_count(), 2);
  t.buffer.Clear();
  EXPECT_EQ(body.use_count(), 1);

  // Not taken between two transactions: commands, body, the next commands
  // and body, in order, one buffer.
  auto second = std::make_shared<const std::string>("two\r\n");
  ASSERT_TRUE(h.Start(Owned({"c@x"}, body)));
  h.Feed("250 ok\r\n250 ok\r\n250 ok\r\n");
  ASSERT_TRUE(h.Start(Owned({"d@x"}, second)));
  Take(h, &t);
  ASSERT_EQ(t.segments.size(), 4u);
  EXPECT_EQ(t.buffer.views(), 2u);
  EXPECT_EQ(t.starts[1], body->data());
  EXPECT_EQ(t.starts[3], second->data());
  EXPECT_EQ(t.All(), "MAIL FROM:<sender@client.test> SIZE=25\r\nRCPT TO:<c@x>\r\nBDAT 25 LAST\r\n" +
                         *body +
                         "MAIL FROM:<sender@client.test> SIZE=5\r\nRCPT TO:<d@x>\r\nBDAT 5 LAST\r\n"
                         "two\r\n");
}

TEST(SessionTest, DataSendsADotFreeBodyAsAViewAndStuffsOrNormalisesOthersInACopy) {
  Harness h;
  h.Greet({"mx", "PIPELINING"});
  h.Out();
  Taken t;
  auto run = [&](Envelope e) {
    EXPECT_TRUE(h.Start(std::move(e)));
    h.Out();
    h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
    Take(h, &t);
    h.Feed("250 ok\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  };
  // No line starts with ".": the body, then the final dot.
  std::string text = "Subject: s\r\n\r\n";
  for (int i = 0; i < 40; ++i) text += "line. with .dots. inside.\r\n";
  auto clean = std::make_shared<const std::string>(text);
  run(Owned({"a@x"}, clean));
  ASSERT_EQ(t.segments.size(), 2u);
  EXPECT_EQ(t.starts[0], clean->data());
  EXPECT_EQ(t.segments[0], *clean);
  EXPECT_EQ(t.segments[1], ".\r\n");
  // A line starting with "." (also past the vector blocks): the stuffed copy.
  auto dotted = std::make_shared<const std::string>(text + ".\r\n.x\r\nend\r\n");
  run(Owned({"a@x"}, dotted));
  EXPECT_EQ(t.buffer.views(), 0u);
  ASSERT_EQ(t.segments.size(), 1u);
  EXPECT_EQ(t.segments[0], text + "..\r\n..x\r\nend\r\n.\r\n");
  // Dot-free but not promised CRLF (a bare LF): normalised in a copy.
  auto bare = std::make_shared<const std::string>("a\nb\r\n");
  Envelope e = Owned({"a@x"}, bare);
  e.body_crlf = false;
  run(std::move(e));
  EXPECT_EQ(t.buffer.views(), 0u);
  EXPECT_EQ(t.All(), "a\r\nb\r\n.\r\n");
  // Without an owner the session cannot keep the bytes alive: a copy.
  Envelope unowned = Owned({"a@x"}, clean);
  unowned.body_owner = nullptr;
  run(std::move(unowned));
  EXPECT_EQ(t.buffer.views(), 0u);
  EXPECT_EQ(t.All(), *clean + ".\r\n");
}

TEST(SessionTest, HeldEndsStayHeldWhenTheBodyIsAView) {
  Harness h;
  h.Greet({"mx", "PIPELINING"});
  h.Out();
  auto body = std::make_shared<const std::string>("B\r\n");
  Envelope e = Owned({"a@x"}, body);
  e.hold_end = true;
  ASSERT_TRUE(h.Start(std::move(e)));
  h.Out();
  h.Feed("250 ok\r\n250 ok\r\n354 go\r\n");
  Taken t;
  Take(h, &t);
  ASSERT_EQ(t.segments.size(), 1u);  // the body, without the end of data
  EXPECT_EQ(t.starts[0], body->data());
  EXPECT_TRUE(h.session->end_held());
  Take(h, &t);
  EXPECT_TRUE(t.segments.empty());
  h.session->ReleaseEnd();
  Take(h, &t);
  EXPECT_EQ(t.All(), ".\r\n");
  h.Feed("250 ok\r\n");
  EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);

  Harness b;
  b.Greet({"mx", "PIPELINING", "CHUNKING"});
  b.Out();
  Envelope held = Owned({"a@x"}, body);
  held.hold_end = true;
  ASSERT_TRUE(b.Start(std::move(held)));
  Take(b, &t);
  EXPECT_EQ(t.All(), "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\n");
  b.Feed("250 ok\r\n250 ok\r\n");
  Take(b, &t);
  EXPECT_TRUE(t.segments.empty());  // the chunk is the end: held
  b.session->ReleaseEnd();
  Take(b, &t);
  ASSERT_EQ(t.segments.size(), 2u);
  EXPECT_EQ(t.segments[0], "BDAT 3 LAST\r\n");
  EXPECT_EQ(t.starts[1], body->data());
}

TEST(SessionTest, OutputIsConsumedAcrossSegmentBoundariesInAnySteps) {
  // own | view | own | view | own, consumed in steps of every size from 1 to
  // past the whole: what is left is always the rest of the same bytes.
  auto first = std::make_shared<const std::string>("0123456789");
  auto second = std::make_shared<const std::string>("abcdefghijklmnopqrs\r\n");
  const std::string expected = "MAIL\r\n" + *first + "BDAT\r\n" + *second + ".\r\n";
  for (size_t step = 1; step <= expected.size() + 1; ++step) {
    OutputBuffer out;
    out.own()->append("MAIL\r\n");
    out.AppendView(*first, first);
    out.own()->append("BDAT\r\n");
    out.AppendView(*second, second);
    out.AppendView(std::string_view(), nullptr);  // an empty view is no segment
    out.own()->append(".\r\n");
    ASSERT_EQ(out.views(), 2u);
    size_t consumed = 0;
    while (!out.empty()) {
      std::vector<std::string_view> segs;
      out.Segments(&segs);
      std::string rest;
      for (std::string_view s : segs) {
        EXPECT_FALSE(s.empty());
        rest.append(s);
      }
      ASSERT_EQ(rest, expected.substr(consumed)) << "step " << step;
      ASSERT_EQ(out.size(), rest.size());
      out.Consume(step);
      consumed = std::min(expected.size(), consumed + step);
      // A body consumed whole is let go of at once.
      if (consumed >= 6 + first->size()) {
        EXPECT_EQ(first.use_count(), 1) << "step " << step;
      }
    }
    EXPECT_EQ(consumed, expected.size());
    EXPECT_EQ(second.use_count(), 1);
  }
  // The session's own ConsumeOutput/PendingOutput see the same bytes.
  Harness h;
  h.Greet({"mx", "PIPELINING", "CHUNKING"});
  h.Out();
  ASSERT_TRUE(h.Start(Owned({"a@x"}, second)));
  const std::string all =
      "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nBDAT 21 LAST\r\n" + *second;
  h.session->ConsumeOutput(all.size() - 5);  // into the body
  EXPECT_EQ(h.session->PendingBytes(), 5u);
  Taken t;
  Take(h, &t);
  ASSERT_EQ(t.segments.size(), 1u);
  EXPECT_EQ(t.segments[0], "qrs\r\n");
  EXPECT_EQ(t.starts[0], second->data() + 16);
  EXPECT_FALSE(h.session->HasOutput());
}

TEST(SessionTest, PendingOutputFlattensAViewIntoOneBuffer) {
  Harness h;
  h.Greet({"mx", "PIPELINING", "CHUNKING"});
  h.Out();
  auto body = std::make_shared<const std::string>("hello\r\n");
  ASSERT_TRUE(h.Start(Owned({"a@x"}, body)));
  EXPECT_EQ(h.session->PendingOutput(),
            "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nBDAT 7 LAST\r\nhello\r\n");
  EXPECT_EQ(body.use_count(), 2);  // only the envelope's now: the output is a copy
  std::string wire;
  h.session->ConsumeOutput(10);
  h.session->TakeOutput(&wire);
  EXPECT_EQ(wire, "<sender@client.test>\r\nRCPT TO:<a@x>\r\nBDAT 7 LAST\r\nhello\r\n");
}

TEST(SessionTest, NoLineStartsWithDotMatchesAByteByByteReference) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  const char alphabet[] = {'a', '\r', '\n', '.', 'x', '\n', 'y', 'z', 'q'};
  for (int round = 0; round < 3000; ++round) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t len = round % 10 == 0 ? x % 700 : x % 97;
    std::string body;
    for (size_t i = 0; i < len; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      body.push_back(alphabet[x % sizeof(alphabet)]);
    }
    bool reference = body.empty() || body[0] != '.';
    for (size_t i = 0; i + 1 < body.size(); ++i)
      if (body[i] == '\n' && body[i + 1] == '.') reference = false;
    ASSERT_EQ(NoLineStartsWithDot(body), reference) << body;
  }
  // One "\n." at every offset of a long clean body (every vector lane and tail).
  std::string clean(200, 'a');
  ASSERT_TRUE(NoLineStartsWithDot(clean));
  for (size_t i = 0; i + 1 < clean.size(); ++i) {
    std::string b = clean;
    b[i] = '\n';
    b[i + 1] = '.';
    ASSERT_FALSE(NoLineStartsWithDot(b)) << i;
  }
}

}  // namespace
}  // namespace salvo::smtp
