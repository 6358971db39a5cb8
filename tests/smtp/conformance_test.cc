// Every sequence in tests/data/smtp/tricky-reply-sequences.json (copied from
// the shared conformance set) has a check here; a sequence without one fails.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engine/smtp/failure_scope.h"
#include "engine/smtp/reply.h"
#include "tests/smtp/session_harness.h"

namespace salvo::smtp {
namespace {

using testing::Harness;

struct Sequence {
  std::string id;
  std::vector<std::string> turns;     // server output between client commands ('|')
  std::vector<std::string> segments;  // when given as an array: TCP segments of one turn
  bool eof = false;                   // ends with <EOF>
};

std::vector<Sequence> LoadSequences() {
  std::ifstream in(std::string(SALVO_SOURCE_DIR) + "/tests/data/smtp/tricky-reply-sequences.json");
  EXPECT_TRUE(in.good());
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<Sequence> out;
  for (const auto& item : j) {
    Sequence s;
    s.id = item["id"].get<std::string>();
    if (item["server"].is_array()) {
      for (const auto& seg : item["server"]) s.segments.push_back(seg.get<std::string>());
    } else {
      std::string all = item["server"].get<std::string>();
      const std::string kEof = "<EOF>";
      if (all.size() >= kEof.size() &&
          all.compare(all.size() - kEof.size(), kEof.size(), kEof) == 0) {
        s.eof = true;
        all.resize(all.size() - kEof.size());
      }
      size_t start = 0;
      while (true) {
        size_t bar = all.find('|', start);
        s.turns.push_back(
            all.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Reply> ParseAll(std::string_view bytes, absl::Status* error = nullptr) {
  ReplyParser p;
  p.Feed(bytes);
  std::vector<Reply> out;
  Reply r;
  while (p.Next(&r)) out.push_back(r);
  if (error != nullptr) *error = p.error();
  return out;
}

const Outcome& Rcpt(const Harness& h, size_t i) {
  const Event* e = h.Last(Event::Type::kTransactionDone);
  EXPECT_NE(e, nullptr);
  return e->outcomes.at(i);
}

using Check = std::function<void(const Sequence&)>;

std::map<std::string, Check> Checks() {
  std::map<std::string, Check> m;
  m["ehlo-multiline"] = [](const Sequence& s) {
    Harness h;
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "EHLO client.test\r\n");
    h.Feed(s.turns[1]);
    const Extensions& x = h.session->extensions();
    EXPECT_TRUE(x.pipelining && x.size && x.eight_bit_mime && x.enhanced_status_codes &&
                x.smtputf8);
    EXPECT_EQ(x.max_size, 35882577u);
    EXPECT_EQ(x.server_name, "mx.example");
    EXPECT_EQ(h.session->state(), State::kReady);
    EXPECT_EQ(h.Count(Event::Type::kReady), 1);
  };
  m["ehlo-last-line-no-text"] = [](const Sequence& s) {
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].code, 250);
    EXPECT_EQ(replies[0].text, "mx.example\nPIPELINING\n");
    Harness h;
    h.Feed("220 hi\r\n");
    h.Out();
    h.Feed(s.turns[0]);
    EXPECT_TRUE(h.session->extensions().pipelining);
    EXPECT_EQ(h.session->state(), State::kReady);
  };
  m["ehlo-odd-spacing"] = [](const Sequence& s) {
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    Extensions x = Extensions::Parse(replies[0]);
    EXPECT_TRUE(x.auth);
    EXPECT_TRUE(x.auth_login);
    EXPECT_TRUE(x.auth_plain);
    EXPECT_TRUE(x.size);
    EXPECT_EQ(x.max_size, 10240000u);
    EXPECT_TRUE(x.eight_bit_mime);
  };
  m["continuation-text-with-digits"] = [](const Sequence& s) {
    absl::Status err;
    auto replies = ParseAll(s.turns[0], &err);
    EXPECT_TRUE(err.ok());
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].code, 250);
    EXPECT_EQ(replies[0].text,
              "First line\nSecond line\n234 Text beginning with numbers\nThe last line");
  };
  m["gmail-multiline-550"] = [](const Sequence& s) {
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].code, 550);
    EXPECT_EQ(replies[0].enhanced, "5.1.1");
    EXPECT_EQ(replies[0].text.find("5.1.1"), std::string::npos) << replies[0].text;
    EXPECT_EQ(replies[0].text.substr(0, 33), "The email account that you tried ");
    EXPECT_EQ(std::count(replies[0].text.begin(), replies[0].text.end(), '\n'), 3);
    Outcome o = OutcomeForReply(replies[0], Phase::kRcpt, "mx");
    EXPECT_EQ(o.disposition, Disposition::kBounced);
    EXPECT_EQ(o.scope, Scope::kRecipient);
    EXPECT_EQ(o.category, "invalid_recipient");
    // Through the session: a per-recipient bounce, the other recipient delivered.
    Harness h;
    h.Greet();
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"})));
    h.Out();
    h.Feed("250 ok\r\n" + s.turns[0] + "250 ok\r\n354 go\r\n");
    h.Out();
    h.Feed("250 queued\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
    EXPECT_EQ(Rcpt(h, 0).reply.enhanced, "5.1.1");
    EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kDelivered);
  };
  m["continuation-line-without-code"] = [](const Sequence& s) {
    absl::Status err;
    auto replies = ParseAll(s.turns[0] + "250 next\r\n", &err);
    EXPECT_TRUE(err.ok()) << err;
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_EQ(replies[0].code, 550);
    EXPECT_EQ(replies[0].text, "first\nUnexpected but legal text!\nlast");
    EXPECT_EQ(replies[1].code, 250);  // not desynchronised
  };
  m["bare-lf-replies"] = [](const Sequence& s) {
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].code, 400);
    EXPECT_EQ(replies[0].text, "A\nB\nC");
  };
  m["mismatched-codes-in-multiline"] = [](const Sequence& s) {
    absl::Status err;
    auto replies = ParseAll(s.turns[0], &err);
    EXPECT_TRUE(replies.empty());
    EXPECT_FALSE(err.ok());
    Harness h;
    h.Feed("220 hi\r\n");
    h.Out();
    h.Feed(s.turns[0]);
    EXPECT_TRUE(h.session->closed());
    const Event* c = h.Last(Event::Type::kClosed);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->outcome.kind, FailureKind::kProtocol);
    EXPECT_EQ(c->outcome.disposition, Disposition::kDeferred);
    EXPECT_EQ(c->outcome.scope, Scope::kConnection);
    EXPECT_EQ(h.Count(Event::Type::kReady), 0);
  };
  m["split-across-segments"] = [](const Sequence& s) {
    ReplyParser p;
    Reply r;
    std::vector<Reply> got;
    for (const std::string& seg : s.segments) {
      p.Feed(seg);
      while (p.Next(&r)) got.push_back(r);
    }
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].code, 250);
    EXPECT_EQ(got[0].text, "mx.example\nOK");
    EXPECT_FALSE(p.HasPartial());
  };
  m["two-replies-one-segment"] = [](const Sequence& s) {
    Harness h;
    h.Greet();
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, "body\r\n")));
    // RFC 2920: MAIL, RCPT and DATA in one write.
    EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "body\r\n.\r\n");
    h.Feed("250 ok\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDelivered);
  };
  m["pipelining-partial-rcpt-reject"] = [](const Sequence& s) {
    Harness h;
    h.Greet();
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"bad@x", "good@x"}, "body\r\n")));
    h.Out();
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "body\r\n.\r\n");
    h.Feed("250 2.0.0 queued\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
    EXPECT_EQ(Rcpt(h, 0).scope, Scope::kRecipient);
    EXPECT_EQ(Rcpt(h, 0).category, "invalid_recipient");
    EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kDelivered);
    EXPECT_EQ(h.Out(), "");  // next MAIL needs no RSET
    EXPECT_EQ(h.session->state(), State::kReady);
  };
  m["pipelining-all-rcpt-rejected-then-data"] = [](const Sequence& s) {
    Harness h;
    h.Greet();
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"bad@x"}, "SECRET BODY\r\n")));
    h.Out();
    h.Feed(s.turns[0]);
    std::string after = h.Out();
    EXPECT_EQ(after.find("SECRET"), std::string::npos);
    EXPECT_EQ(after, "RSET\r\n");
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kBounced);
    EXPECT_EQ(Rcpt(h, 0).reply.code, 550);
    h.Feed("250 reset\r\n");
    EXPECT_EQ(h.session->state(), State::kReady);
  };
  m["421-on-mail"] = [](const Sequence& s) {
    Harness h;
    h.Greet({"mx"});  // no pipelining
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"})));
    EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\n");
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "");  // no RSET, no QUIT
    EXPECT_TRUE(h.session->closed());
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(Rcpt(h, i).disposition, Disposition::kDeferred);
      EXPECT_EQ(Rcpt(h, i).scope, Scope::kSite);
      EXPECT_EQ(Rcpt(h, i).category, "rate_limited");
    }
  };
  m["421-on-rcpt"] = [](const Sequence& s) {
    Harness h;
    h.Greet({"mx"});
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"a@x", "b@x"})));
    h.Out();
    h.Feed("250 sender ok\r\n");
    EXPECT_EQ(h.Out(), "RCPT TO:<a@x>\r\n");
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "RCPT TO:<b@x>\r\n");
    EXPECT_TRUE(h.session->closed());
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDeferred);  // accepted, never delivered
    EXPECT_EQ(Rcpt(h, 1).disposition, Disposition::kDeferred);
    EXPECT_EQ(Rcpt(h, 1).scope, Scope::kSite);
    EXPECT_EQ(Rcpt(h, 1).reply.code, 421);
  };
  m["421-after-data-dot"] = [](const Sequence& s) {
    Harness h;
    h.Greet({"mx"});
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"a@x"}, "hello\r\n")));
    h.Feed("250 ok\r\n");
    h.Feed("250 ok\r\n");
    EXPECT_EQ(h.Out(), "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "hello\r\n.\r\n");
    h.Feed(s.turns[1]);
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDeferred);
    EXPECT_EQ(Rcpt(h, 0).scope, Scope::kSite);
    EXPECT_TRUE(h.session->closed());
    EXPECT_EQ(h.Out(), "");
  };
  m["451-then-disconnect"] = [](const Sequence& s) {
    Harness h;
    h.Greet({"mx"});
    h.Out();
    ASSERT_TRUE(h.Start(Harness::Env({"a@x"})));
    h.Out();
    h.Feed(s.turns[0]);
    ASSERT_TRUE(s.eof);
    h.session->OnConnectionLost();
    h.Collect();
    EXPECT_EQ(Rcpt(h, 0).disposition, Disposition::kDeferred);
    EXPECT_EQ(Rcpt(h, 0).scope, Scope::kMessage);
    EXPECT_EQ(Rcpt(h, 0).reply.code, 451);
    const Event* c = h.Last(Event::Type::kClosed);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->outcome.kind, FailureKind::kConnectionLost);
  };
  m["eof-mid-multiline"] = [](const Sequence& s) {
    Harness h;
    h.Feed("220 hi\r\n");
    h.Out();
    h.Feed(s.turns[0]);
    ASSERT_TRUE(s.eof);
    h.session->OnConnectionLost();
    h.Collect();
    EXPECT_FALSE(h.session->extensions().pipelining);  // partial EHLO not applied
    EXPECT_EQ(h.Count(Event::Type::kReady), 0);
    const Event* c = h.Last(Event::Type::kClosed);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->outcome.kind, FailureKind::kConnectionLost);
    EXPECT_EQ(c->outcome.disposition, Disposition::kDeferred);
    EXPECT_EQ(c->outcome.scope, Scope::kConnection);
  };
  m["overlong-reply-line"] = [](const Sequence& s) {
    // 3 KB: tolerated (limit 4 KiB).
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].text.size(), s.turns[0].size() - 6);
    // Past the limit: protocol error with bounded memory, even fed byte-wise.
    ReplyParser p;
    Reply r;
    std::string chunk(1000, 'x');
    p.Feed("250 ");
    for (int i = 0; i < 100; ++i) {
      p.Feed(chunk);
      EXPECT_FALSE(p.Next(&r));
      EXPECT_LE(p.buffered_bytes(), 4096u + chunk.size());
    }
    EXPECT_FALSE(p.error().ok());
    Harness h;
    h.Feed("220 hi\r\n");
    h.Out();
    h.Feed("250 " + std::string(5000, 'x'));
    EXPECT_TRUE(h.session->closed());
    EXPECT_EQ(h.Last(Event::Type::kClosed)->outcome.kind, FailureKind::kProtocol);
  };
  m["greeting-554"] = [](const Sequence& s) {
    Harness h;
    h.Feed(s.turns[0]);
    EXPECT_EQ(h.Out(), "QUIT\r\n");  // no EHLO
    EXPECT_TRUE(h.session->closed());
    const Event* c = h.Last(Event::Type::kClosed);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->outcome.reply.code, 554);
    EXPECT_EQ(c->outcome.reply.enhanced, "5.7.1");
    EXPECT_EQ(c->outcome.scope, Scope::kSite);
    EXPECT_EQ(c->outcome.disposition, Disposition::kDeferred);  // try another MX / later
    EXPECT_EQ(h.Count(Event::Type::kReady), 0);
  };
  m["multiline-greeting"] = [](const Sequence& s) {
    Harness h;
    size_t second = s.turns[0].find("220 ");
    h.Feed(s.turns[0].substr(0, second));
    EXPECT_EQ(h.Out(), "");  // still inside the greeting
    h.Feed(s.turns[0].substr(second));
    EXPECT_EQ(h.Out(), "EHLO client.test\r\n");
  };
  m["enhanced-code-only-on-some-lines"] = [](const Sequence& s) {
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].enhanced, "5.7.1");
    EXPECT_EQ(replies[0].text,
              "[1.2.3.4] Our system has detected\nan unusual rate of unsolicited mail\n"
              "https://support.google.com/mail/?p=UnsolicitedRateLimitError");
    EXPECT_EQ(Categorize(replies[0]), "spam_block");
  };
  m["non-ascii-reply-text"] = [](const Sequence& s) {
    auto replies = ParseAll(s.turns[0]);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].code, 550);
    EXPECT_EQ(replies[0].text, "Utilisateur inconnu \xc3\xa9");
    EXPECT_EQ(Categorize(replies[0]), "invalid_recipient");
    EXPECT_FALSE(replies[0].ToString().empty());
  };
  return m;
}

TEST(ConformanceTest, EverySharedSequenceHasACheckAndPasses) {
  std::vector<Sequence> seqs = LoadSequences();
  ASSERT_GE(seqs.size(), 22u);
  auto checks = Checks();
  std::set<std::string> seen;
  for (const Sequence& s : seqs) {
    SCOPED_TRACE(s.id);
    auto it = checks.find(s.id);
    ASSERT_NE(it, checks.end()) << "no check for sequence " << s.id;
    it->second(s);
    seen.insert(s.id);
  }
  EXPECT_EQ(seen.size(), checks.size()) << "checks for sequences that are not in the data";
}

}  // namespace
}  // namespace salvo::smtp
