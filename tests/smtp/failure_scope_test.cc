#include "engine/smtp/failure_scope.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <string>

namespace salvo::smtp {
namespace {

Reply R(int code, std::string enhanced, std::string text) {
  Reply r;
  r.code = code;
  r.enhanced = std::move(enhanced);
  r.text = std::move(text);
  return r;
}

TEST(FailureScopeTest, RepliesMapToDispositionScopeAndCategory) {
  struct Case {
    Reply reply;
    Phase phase;
    Disposition d;
    Scope s;
    std::string category;
  };
  const Case cases[] = {
      {R(250, "2.0.0", "queued"), Phase::kDataEnd, Disposition::kDelivered, Scope::kRecipient, ""},
      {R(550, "5.1.1", "user unknown"), Phase::kRcpt, Disposition::kBounced, Scope::kRecipient,
       "invalid_recipient"},
      {R(550, "", "No such user here"), Phase::kRcpt, Disposition::kBounced, Scope::kRecipient,
       "invalid_recipient"},
      {R(552, "5.2.2", "over quota"), Phase::kRcpt, Disposition::kBounced, Scope::kRecipient,
       "mailbox_full"},
      {R(452, "4.2.2", "mailbox full"), Phase::kRcpt, Disposition::kDeferred, Scope::kRecipient,
       "mailbox_full"},
      {R(452, "4.5.3", "too many recipients"), Phase::kRcpt, Disposition::kDeferred,
       Scope::kRecipient, "too_many_recipients"},
      {R(450, "4.7.1", "greylisted, try again"), Phase::kRcpt, Disposition::kDeferred,
       Scope::kRecipient, "greylisted"},
      {R(421, "4.7.0", "Try again later"), Phase::kMail, Disposition::kDeferred, Scope::kSite,
       "rate_limited"},
      {R(421, "", "closing"), Phase::kRcpt, Disposition::kDeferred, Scope::kSite, "rate_limited"},
      {R(451, "4.7.0", "temporarily deferred"), Phase::kMail, Disposition::kDeferred,
       Scope::kMessage, "rate_limited"},
      {R(550, "5.7.1", "Message rejected as spam"), Phase::kDataEnd, Disposition::kBounced,
       Scope::kMessage, "spam_block"},
      {R(550, "5.7.1", "Relaying denied"), Phase::kRcpt, Disposition::kBounced, Scope::kRecipient,
       "policy"},
      {R(554, "5.7.1", "Service unavailable; client host blocked using zen.spamhaus.org"),
       Phase::kRcpt, Disposition::kBounced, Scope::kRecipient, "spam_block"},
      {R(552, "5.3.4", "message too big"), Phase::kDataEnd, Disposition::kBounced, Scope::kMessage,
       "message_too_large"},
      {R(554, "5.7.1", "no SMTP service here"), Phase::kGreeting, Disposition::kDeferred,
       Scope::kSite, "policy"},
      {R(535, "5.7.8", "bad credentials"), Phase::kAuth, Disposition::kDeferred, Scope::kSite,
       "auth"},
      {R(451, "", "local error"), Phase::kData, Disposition::kDeferred, Scope::kMessage, "other"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reply.ToString());
    Outcome o = OutcomeForReply(c.reply, c.phase, "mx.test[127.0.0.1]");
    EXPECT_EQ(o.disposition, c.d);
    EXPECT_EQ(o.scope, c.s);
    EXPECT_EQ(o.category, c.category);
    EXPECT_EQ(o.host, "mx.test[127.0.0.1]");
    EXPECT_EQ(o.reply.code, c.reply.code);
  }
}

TEST(FailureScopeTest, EveryEnhancedCodeInTheRegistryGetsAKnownCategoryAndItsClassDisposition) {
  std::ifstream in(std::string(SALVO_SOURCE_DIR) + "/tests/data/smtp/enhanced-status-codes.tsv");
  ASSERT_TRUE(in.good());
  std::string line;
  std::getline(in, line);  // header
  int n = 0;
  while (std::getline(in, line)) {
    std::string code = line.substr(0, line.find('\t'));  // "X.1.1"
    ASSERT_EQ(code.substr(0, 2), "X.");
    for (char cls : {'4', '5'}) {
      Reply r = R(cls == '4' ? 450 : 550, std::string(1, cls) + code.substr(1), "text");
      Outcome o = OutcomeForReply(r, Phase::kRcpt, "mx");
      EXPECT_FALSE(o.category.empty()) << r.enhanced;
      if (code != "X.0.0") {
        EXPECT_NE(o.category, "other") << r.enhanced;
      }
      EXPECT_EQ(o.disposition, cls == '4' ? Disposition::kDeferred : Disposition::kBounced);
    }
    ++n;
  }
  EXPECT_GT(n, 50);
}

TEST(FailureScopeTest, NonReplyFailures) {
  Outcome o = OutcomeForConnectFailure(-ECONNREFUSED, "mx[127.0.0.1]");
  EXPECT_EQ(o.kind, FailureKind::kConnectFailed);
  EXPECT_EQ(o.scope, Scope::kSite);
  EXPECT_EQ(o.disposition, Disposition::kDeferred);
  EXPECT_NE(o.detail.find("refused"), std::string::npos) << o.detail;
  EXPECT_EQ(OutcomeForConnectFailure(ETIMEDOUT, "mx").category, "timeout");

  o = OutcomeForDnsFailure(DnsFailure::kNxDomain, "nope.example");
  EXPECT_EQ(o.disposition, Disposition::kBounced);
  EXPECT_EQ(o.kind, FailureKind::kDns);
  EXPECT_NE(o.detail.find("nope.example"), std::string::npos);
  EXPECT_EQ(OutcomeForDnsFailure(DnsFailure::kNullMx, "n.example").category, "null_mx");
  EXPECT_EQ(OutcomeForDnsFailure(DnsFailure::kServFail, "s.example").disposition,
            Disposition::kDeferred);

  o = OutcomeForTimeout(Phase::kRcpt, "mx");
  EXPECT_EQ(o.kind, FailureKind::kTimeout);
  EXPECT_EQ(o.scope, Scope::kConnection);
  o = OutcomeForTlsFailure("certificate verify failed", true, "mx");
  EXPECT_EQ(o.kind, FailureKind::kTls);
  EXPECT_EQ(o.scope, Scope::kSite);
  EXPECT_EQ(OutcomeForTlsFailure("x", false, "mx").scope, Scope::kConnection);
  o = OutcomeForReply(R(354, "", "go"), Phase::kMail, "mx");
  EXPECT_EQ(o.kind, FailureKind::kProtocol);
  EXPECT_EQ(DispositionName(Disposition::kBounced), "bounced");
  EXPECT_EQ(ScopeName(Scope::kSite), "site");
  EXPECT_EQ(FailureKindName(FailureKind::kTls), "tls");
}

// The one answer carries what the engine and the queue act on: the shared
// bounce class, hard/soft, suppression, and whether the whole site said
// "not now" (the pool backs off).
TEST(FailureScopeTest, OutcomesCarryBounceClassSuppressionAndSiteScope) {
  Outcome o = OutcomeForReply(R(550, "5.1.1", "no such user"), Phase::kRcpt, "mx");
  EXPECT_EQ(o.bounce_class, Category::kBadMailbox);
  EXPECT_TRUE(o.hard());
  EXPECT_TRUE(o.suppress);
  EXPECT_FALSE(o.site_temporary());
  o = OutcomeForReply(R(421, "4.7.0", "slow down"), Phase::kMail, "mx");
  EXPECT_TRUE(o.site_temporary());
  EXPECT_EQ(o.bounce_class, Category::kRateLimited);
  EXPECT_FALSE(o.suppress);
  o = OutcomeForReply(R(450, "4.2.0", "later"), Phase::kRcpt, "mx");
  EXPECT_EQ(o.scope, Scope::kRecipient);
  EXPECT_FALSE(o.site_temporary());
  EXPECT_FALSE(o.hard());
  o = OutcomeForReply(R(554, "5.7.1", "rejected as spam"), Phase::kDataEnd, "mx");
  EXPECT_EQ(o.bounce_class, Category::kSpamRelated);
  EXPECT_FALSE(o.suppress);
  EXPECT_EQ(OutcomeForConnectFailure(ECONNREFUSED, "mx").bounce_class, Category::kNoAnswerFromHost);
  EXPECT_EQ(OutcomeDelivered(R(250, "", "ok"), "mx").bounce_class, Category::kNone);
  Outcome retry = AsRetry(OutcomeForReply(R(550, "5.1.1", "x"), Phase::kRcpt, "mx"));
  EXPECT_EQ(retry.disposition, Disposition::kDeferred);
  EXPECT_FALSE(retry.suppress);
  Outcome down = OutcomeForSiteDown(OutcomeForConnectFailure(ECONNREFUSED, "mx"));
  EXPECT_TRUE(down.site_temporary());
  Outcome null_mx = OutcomeForDnsFailure(DnsFailure::kNullMx, "n.example");
  EXPECT_EQ(null_mx.bounce_class, Category::kBadDomain);
  EXPECT_TRUE(null_mx.hard());
}

TEST(FailureScopeTest, ReplyToString) {
  EXPECT_EQ(R(550, "5.1.1", "a\nb").ToString(), "550 5.1.1 a b");
  EXPECT_EQ(R(250, "", "").ToString(), "250");
  EXPECT_EQ(Reply{}.ToString(), "");
}

}  // namespace
}  // namespace salvo::smtp
