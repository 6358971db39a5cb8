// The sink's SMTP server state machine, driven with strings (no sockets).
#include "engine/sink/smtp_server.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::sink {
namespace {

class RecordingPolicy : public SessionPolicy {
 public:
  Verdict OnMail(std::string_view from, uint64_t done) override {
    mails.emplace_back(from);
    return (max_per_conn > 0 && done >= max_per_conn) ? Verdict::kShutdown : Verdict::kAccept;
  }
  Verdict OnRcpt(std::string_view rcpt) override {
    if (rcpt.starts_with("bounce")) return Verdict::kBounce;
    if (rcpt.starts_with("defer")) return Verdict::kDefer451;
    return Verdict::kAccept;
  }
  Verdict OnData() override { return drop ? Verdict::kDrop : Verdict::kAccept; }
  void OnMessage(const Envelope& env, std::string_view data, uint64_t size) override {
    envelopes.push_back(env);
    contents.emplace_back(data);
    sizes.push_back(size);
  }
  std::vector<std::string> mails;
  std::vector<Envelope> envelopes;
  std::vector<std::string> contents;
  std::vector<uint64_t> sizes;
  void OnBareLineEnding() override { ++bare; }
  uint64_t max_per_conn = 0;
  bool drop = false;
  int bare = 0;
};

// Reply codes (first three chars of each final reply line) in `out`.
std::vector<std::string> Codes(const std::string& out) {
  std::vector<std::string> codes;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find("\r\n", pos);
    if (eol == std::string::npos) break;
    if (eol - pos >= 4 && out[pos + 3] == ' ') codes.push_back(out.substr(pos, 3));
    pos = eol + 2;
  }
  return codes;
}

struct Fixture {
  ServerOptions options;
  RecordingPolicy policy;
  ServerSession session{options, &policy};
  Fixture() { options.keep_content = true; }
};

TEST(SmtpServerTest, EhloAdvertisesExtensions) {
  Fixture f;
  std::string out;
  f.session.Greeting(&out);
  EXPECT_TRUE(out.starts_with("220 "));
  out.clear();
  EXPECT_EQ(f.session.Feed("EHLO client.example.org\r\n", &out), ServerSession::Result::kContinue);
  for (const char* ext :
       {"PIPELINING", "SIZE ", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"}) {
    EXPECT_NE(out.find(ext), std::string::npos) << ext;
  }
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250"}));
}

TEST(SmtpServerTest, PipelinedTransactionInOneReadWithDotUnstuffing) {
  Fixture f;
  std::string out;
  std::string in =
      "EHLO c.example\r\nMAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME\r\n"
      "RCPT TO:<x@one.example>\r\nRCPT TO:<bounce@two.example>\r\nRCPT TO:<y@one.example>\r\n"
      "RCPT TO:<defer@one.example>\r\nDATA\r\n"
      "Subject: t\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
  EXPECT_EQ(f.session.Feed(in, &out), ServerSession::Result::kCloseAfterSend);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250", "250", "550", "250", "451", "354",
                                                  "250", "221"}));
  ASSERT_EQ(f.policy.envelopes.size(), 1u);
  EXPECT_EQ(f.policy.envelopes[0].mail_from, "a@example.org");
  EXPECT_EQ(f.policy.envelopes[0].recipients,
            (std::vector<std::string>{"x@one.example", "y@one.example"}));
  EXPECT_EQ(f.policy.contents[0], "Subject: t\r\n\r\n.leading dot\r\n");
}

// Any split of the byte stream gives the same result.
TEST(SmtpServerTest, ByteAtATimeGivesSameResult) {
  std::string in =
      "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@d.example>\r\nDATA\r\n"
      "line1\r\n..\r\n.x\r\n\r\n.\r\nRSET\r\nNOOP\r\n";
  Fixture whole, split;
  std::string out1, out2;
  whole.session.Feed(in, &out1);
  for (char c : in) split.session.Feed(std::string_view(&c, 1), &out2);
  EXPECT_EQ(out1, out2);
  ASSERT_EQ(split.policy.contents.size(), 1u);
  EXPECT_EQ(split.policy.contents[0], "line1\r\n.\r\nx\r\n\r\n");
  EXPECT_EQ(Codes(out2),
            (std::vector<std::string>{"250", "250", "250", "354", "250", "250", "250"}));
}

TEST(SmtpServerTest, SequenceAndSyntaxErrors) {
  Fixture f;
  std::string out;
  f.session.Feed("MAIL FROM:<a@b>\r\n", &out);  // before HELO
  f.session.Feed("HELO c\r\nRCPT TO:<x@y>\r\nDATA\r\nMAIL FROM:a@b\r\nMAIL FROM:<c@d>\r\n", &out);
  f.session.Feed("RCPT TO:<>\r\nRCPT TO x@y\r\nDATA\r\nBOGUS\r\n", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"503", "250", "503", "503", "250", "503", "501",
                                                  "501", "554", "500"}));
}

TEST(SmtpServerTest, OverlongLineIsRejectedAndSessionContinues) {
  Fixture f;
  std::string out;
  f.session.Feed(std::string(10000, 'A'), &out);
  f.session.Feed("\r\nNOOP\r\n", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"500", "250"}));
}

TEST(SmtpServerTest, ShutdownVerdictAnswers421AndCloses) {
  Fixture f;
  f.policy.max_per_conn = 1;
  std::string out;
  auto r = f.session.Feed(
      "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nhi\r\n.\r\nMAIL "
      "FROM:<a@b>\r\nNOOP\r\n",
      &out);
  EXPECT_EQ(r, ServerSession::Result::kCloseAfterSend);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250", "250", "354", "250", "421"}));
  EXPECT_NE(out.find("421 4.7.0"), std::string::npos);
}

TEST(SmtpServerTest, DropVerdictClosesWithoutReply) {
  Fixture f;
  f.policy.drop = true;
  std::string out;
  auto r = f.session.Feed("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n", &out);
  EXPECT_EQ(r, ServerSession::Result::kDropNow);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250", "250"}));
  EXPECT_TRUE(f.policy.envelopes.empty());
}

TEST(SmtpServerTest, BdatChunks) {
  Fixture f;
  std::string out;
  f.session.Feed(
      "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 5\r\nab\r\n.BDAT 3 LAST\r\nxyz", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250", "250", "250", "250"}));
  ASSERT_EQ(f.policy.contents.size(), 1u);
  EXPECT_EQ(f.policy.contents[0], "ab\r\n.xyz");  // BDAT content is raw, never unstuffed
}

// A pipelined BDAT after every RCPT was refused gets exactly one reply (554),
// so the client stays in step and the next transaction on the connection works.
TEST(SmtpServerTest, BdatWithNoValidRecipientIsAnsweredOnce) {
  Fixture f;
  std::string out;
  f.session.Feed(
      "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bounce@y>\r\nBDAT 3 LAST\r\nxyz"
      "RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 2 LAST\r\nok",
      &out);
  EXPECT_EQ(Codes(out),
            (std::vector<std::string>{"250", "250", "550", "554", "250", "250", "250", "250"}));
  ASSERT_EQ(f.policy.contents.size(), 1u);
  EXPECT_EQ(f.policy.contents[0], "ok");
}

TEST(SmtpServerTest, SizeLimits) {
  Fixture f;
  f.options.max_message_size = 10;
  std::string out;
  f.session.Feed(
      "EHLO c\r\nMAIL FROM:<a@b> SIZE=11\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n"
      "0123456789abc\r\n.\r\n",
      &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "552", "250", "250", "354", "552"}));
  EXPECT_TRUE(f.policy.envelopes.empty());
}

// SMTP smuggling (RFC 5321 2.3.8, 4.1.1.4): each of these sequences ends DATA
// for a lenient server while a strict one reads on, so a second message
// hidden in the body would be delivered by one and not the other. Every one
// is refused with 521, the session closes, and nothing is accepted — whether
// the bytes come in one read or one byte at a time.
TEST(SmtpServerTest, SmugglingSequencesInDataAreRejected) {
  const std::string head =
      "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\nSubject: "
      "s\r\n\r\nbody";
  const std::string smuggled =
      "MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n"
      "Subject: smuggled\r\n\r\nsend money\r\n.\r\n";
  for (const std::string seq : {"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r"}) {
    for (bool bytewise : {false, true}) {
      Fixture f;
      std::string out;
      std::string in = head + seq + smuggled + "QUIT\r\n";
      ServerSession::Result r = ServerSession::Result::kContinue;
      if (bytewise) {
        for (char ch : in) {
          r = f.session.Feed(std::string_view(&ch, 1), &out);
          if (r != ServerSession::Result::kContinue) break;
        }
      } else {
        r = f.session.Feed(in, &out);
      }
      SCOPED_TRACE(testing::Message() << "sequence " << testing::PrintToString(seq)
                                      << (bytewise ? " byte by byte" : " in one read"));
      EXPECT_EQ(r, ServerSession::Result::kCloseAfterSend);
      EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250", "250", "354", "521"}));
      EXPECT_TRUE(f.policy.envelopes.empty()) << "a message was accepted";
      EXPECT_EQ(f.policy.bare, 1);
    }
  }
}

TEST(SmtpServerTest, BareLineEndingsInCommandsAreRejected) {
  for (const std::string cmd : {"EHLO c\n", "EHLO c\r\nNOOP\n", "EHLO c\rNOOP\r\n"}) {
    Fixture f;
    std::string out;
    EXPECT_EQ(f.session.Feed(cmd + "QUIT\r\n", &out), ServerSession::Result::kCloseAfterSend)
        << testing::PrintToString(cmd);
    EXPECT_EQ(Codes(out).back(), "521") << out;
    EXPECT_EQ(out.find("221"), std::string::npos) << "QUIT after the 521 was answered";
  }
}

TEST(SmtpServerTest, CrlfSplitAcrossReadsAndBareCrInContentRules) {
  // A CR at the end of one read and its LF at the start of the next is fine.
  Fixture f;
  std::string out;
  f.session.Feed("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nline one\r", &out);
  f.session.Feed("\nline two\r", &out);
  f.session.Feed("\n.\r", &out);
  f.session.Feed("\n", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250", "250", "354", "250"}));
  ASSERT_EQ(f.policy.contents.size(), 1u);
  EXPECT_EQ(f.policy.contents[0], "line one\r\nline two\r\n");
  // A CR not followed by LF inside a line is refused too.
  Fixture g;
  out.clear();
  g.session.Feed("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nab\rcd\r\n.\r\n", &out);
  EXPECT_EQ(Codes(out).back(), "521");
  EXPECT_TRUE(g.policy.envelopes.empty());
}

TEST(SmtpServerTest, DomainOfLowercases) {
  EXPECT_EQ(DomainOf("User@Example.ORG"), "example.org");
  EXPECT_EQ(DomainOf("postmaster"), "");
}

}  // namespace
}  // namespace salvo::sink
