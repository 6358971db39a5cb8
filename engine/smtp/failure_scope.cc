#include "engine/smtp/failure_scope.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/common/strings.h"
#include "engine/smtp/classifier.h"

namespace salvo::smtp {
namespace {

bool TextHasAny(std::string_view lower, std::initializer_list<std::string_view> needles) {
  for (std::string_view n : needles) {
    if (lower.find(n) != std::string_view::npos) return true;
  }
  return false;
}

// Category from the reply text alone (servers without enhanced codes, or a
// generic enhanced code like X.7.1 whose text says more).
std::string_view CategoryFromText(std::string_view lower) {
  if (TextHasAny(lower, {"greylist", "graylist"})) return "greylisted";
  if (TextHasAny(lower,
                 {"spam", "unsolicited", "blocklist", "blacklist", "block list", "black list",
                  "listed at", "listed on", "dnsbl", "rbl", "reputation", "blocked"})) {
    return "spam_block";
  }
  if (TextHasAny(lower, {"rate limit", "rate-limit", "ratelimit", "too many connections",
                         "too many messages", "throttl", "try again later", "exceeded the rate",
                         "sending rate"})) {
    return "rate_limited";
  }
  if (TextHasAny(lower, {"user unknown", "unknown user", "no such user", "does not exist",
                         "mailbox unavailable", "invalid recipient", "recipient address rejected",
                         "no mailbox", "unrouteable address", "address rejected"})) {
    return "invalid_recipient";
  }
  if (TextHasAny(lower, {"mailbox full", "quota", "over the limit", "mailbox is full",
                         "insufficient storage"})) {
    return "mailbox_full";
  }
  if (TextHasAny(lower, {"too large", "too big", "size limit", "exceeds"})) {
    return "message_too_large";
  }
  return {};
}

// The last step of every Outcome made here: the shared bounce class and the
// suppression decision follow from the fine category and the disposition.
// A reply is then matched against the installed rules (the shipped rules
// file and the user's), which decide the class when one matches.
Outcome Classified(Outcome o) {
  o.rule = nullptr;
  o.bounce_class = o.delivered() ? Category::kNone : BounceClassOf(o.category);
  if (!o.delivered() && !o.reply.empty()) {
    if (const Classifier* rules = InstalledClassifier()) {
      if (const Rule* rule = rules->Match(o.reply.ToString())) {
        o.rule = rule;
        o.bounce_class = rule->category;
      }
    }
  }
  // Only a rule suppresses an address when rules are installed: a reply no
  // rule knows keeps its keyword category but never costs a recipient.
  const bool by_rules = InstalledClassifier() != nullptr && !o.reply.empty();
  if (o.rule && o.rule->suppress)
    o.suppress = o.hard() && *o.rule->suppress;
  else
    o.suppress = o.hard() && (!by_rules || o.rule) && SuppressOnHardBounce(o.bounce_class);
  return o;
}

Outcome Make(Disposition d, Scope s, FailureKind k, std::string category, std::string_view host) {
  Outcome o;
  o.disposition = d;
  o.scope = s;
  o.kind = k;
  o.category = std::move(category);
  o.host.assign(host);
  return o;
}

}  // namespace

std::string_view PhaseName(Phase p) {
  switch (p) {
    case Phase::kConnect:
      return "connect";
    case Phase::kGreeting:
      return "greeting";
    case Phase::kEhlo:
      return "ehlo";
    case Phase::kStartTls:
      return "starttls";
    case Phase::kTlsHandshake:
      return "tls_handshake";
    case Phase::kAuth:
      return "auth";
    case Phase::kMail:
      return "mail";
    case Phase::kRcpt:
      return "rcpt";
    case Phase::kData:
      return "data";
    case Phase::kDataEnd:
      return "data_end";
    case Phase::kRset:
      return "rset";
    case Phase::kQuit:
      return "quit";
  }
  return "unknown";
}

std::string Categorize(const Reply& reply) {
  std::string lower = AsciiLower(reply.text);
  std::string_view enh = reply.enhanced;
  // subject.detail without the class
  std::string_view sd = enh.size() > 2 ? enh.substr(2) : std::string_view();
  if (!sd.empty()) {
    if (sd == "1.1" || sd == "1.2" || sd == "1.3" || sd == "1.6" || sd == "1.10" || sd == "1.0" ||
        sd == "1.4") {
      return "invalid_recipient";
    }
    if (sd == "1.7" || sd == "1.8") return "invalid_sender";
    if (sd == "2.2" || sd == "3.1") return "mailbox_full";
    if (sd == "2.1") return "mailbox_disabled";
    if (sd == "2.3" || sd == "3.4") return "message_too_large";
    if (sd == "5.3") return "too_many_recipients";
    if (sd == "4.5" || sd == "3.2") return "rate_limited";
    if (sd == "7.28") return "spam_block";
    if (sd == "7.8" || sd == "7.9" || sd == "7.11" || sd == "7.12" || sd == "7.13" ||
        (sd == "7.0" && reply.code == 535)) {
      return "auth";
    }
    if (sd[0] == '7') {
      std::string_view t = CategoryFromText(lower);
      if (t == "spam_block" || t == "rate_limited" || t == "greylisted") return std::string(t);
      if (sd == "7.0" && enh[0] == '4') return "rate_limited";
      if (sd == "7.10" || sd == "7.4" || sd == "7.5") return "tls";
      return "policy";
    }
    // Subject defaults (RFC 3463 3.x) for the remaining details.
    switch (sd[0]) {
      case '0':
        break;  // X.0.0: only the class is known; fall through to the text
      case '1':
        return "invalid_recipient";
      case '2':
        return "mailbox_unavailable";
      case '3':
        return "system";
      case '4':
        return "routing";
      case '5':
        return "protocol";
      case '6':
        return "content";
    }
  }
  std::string_view t = CategoryFromText(lower);
  if (!t.empty()) return std::string(t);
  if (reply.code == 421) return "rate_limited";
  if (reply.code == 452) return "mailbox_full";  // insufficient storage (or too many rcpts)
  if (reply.code == 552) return "message_too_large";
  if (reply.code == 550 || reply.code == 551 || reply.code == 553) return "invalid_recipient";
  if (reply.code == 554) return "policy";
  if (reply.code >= 500 && reply.code < 510) return "protocol";
  return "other";
}

Outcome OutcomeForReply(const Reply& reply, Phase phase, std::string_view host) {
  Outcome o;
  o.host.assign(host);
  o.reply = reply;
  o.kind = FailureKind::kReply;
  int cls = reply.code / 100;
  if (cls == 2 && phase == Phase::kDataEnd) return OutcomeDelivered(reply, host);
  o.category = Categorize(reply);
  if (reply.code == 421) {
    // "Service not available, closing transmission channel": any command,
    // the whole site is pushing back.
    o.disposition = Disposition::kDeferred;
    o.scope = Scope::kSite;
    return Classified(std::move(o));
  }
  o.disposition = cls == 5 ? Disposition::kBounced : Disposition::kDeferred;
  switch (phase) {
    case Phase::kConnect:
    case Phase::kGreeting:
    case Phase::kEhlo:
    case Phase::kStartTls:
    case Phase::kTlsHandshake:
      // Host-level refusal: another MX or a later attempt may succeed, so a
      // 5xx here does not bounce the mail (Postfix smtp_skip_5xx_greeting).
      o.disposition = Disposition::kDeferred;
      o.scope = Scope::kSite;
      break;
    case Phase::kAuth:
      o.disposition = Disposition::kDeferred;
      o.scope = Scope::kSite;
      o.category = "auth";
      break;
    case Phase::kRcpt:
      o.scope = Scope::kRecipient;
      break;
    case Phase::kMail:
    case Phase::kData:
    case Phase::kDataEnd:
      o.scope = Scope::kMessage;
      break;
    case Phase::kRset:
    case Phase::kQuit:
      o.disposition = Disposition::kDeferred;
      o.scope = Scope::kConnection;
      break;
  }
  if (cls != 4 && cls != 5) {
    // A positive reply where a failure is being reported (e.g. 354 to MAIL):
    // the peer is out of sync.
    o.disposition = Disposition::kDeferred;
    o.scope = Scope::kConnection;
    o.kind = FailureKind::kProtocol;
    o.category = "protocol";
    o.detail = Cat("unexpected reply ", reply.code, " to ", PhaseName(phase));
  }
  return Classified(std::move(o));
}

Outcome OutcomeDelivered(const Reply& reply, std::string_view host) {
  Outcome o = Make(Disposition::kDelivered, Scope::kRecipient, FailureKind::kNone, "", host);
  o.reply = reply;
  return Classified(std::move(o));
}

Outcome OutcomeForTimeout(Phase phase, std::string_view host) {
  Outcome o =
      Make(Disposition::kDeferred, Scope::kConnection, FailureKind::kTimeout, "timeout", host);
  o.detail = Cat("timed out waiting during ", PhaseName(phase));
  return Classified(std::move(o));
}

Outcome OutcomeForConnectionLost(Phase phase, std::string_view host) {
  Outcome o = Make(Disposition::kDeferred, Scope::kConnection, FailureKind::kConnectionLost,
                   "connection", host);
  o.detail = Cat("connection lost during ", PhaseName(phase));
  return Classified(std::move(o));
}

Outcome OutcomeForProtocolError(std::string_view detail, std::string_view host) {
  Outcome o =
      Make(Disposition::kDeferred, Scope::kConnection, FailureKind::kProtocol, "protocol", host);
  o.detail = Cat("protocol error: ", detail);
  return Classified(std::move(o));
}

Outcome OutcomeForTlsFailure(std::string_view detail, bool tls_required, std::string_view host) {
  Outcome o = Make(Disposition::kDeferred, tls_required ? Scope::kSite : Scope::kConnection,
                   FailureKind::kTls, "tls", host);
  o.detail = Cat("TLS failure: ", detail);
  return Classified(std::move(o));
}

Outcome OutcomeForAuthFailure(const Reply& reply, std::string_view detail, std::string_view host) {
  Outcome o = Make(Disposition::kDeferred, Scope::kSite, FailureKind::kReply, "auth", host);
  if (reply.empty()) o.kind = FailureKind::kLocal;
  o.reply = reply;
  o.detail = Cat("authentication failed: ", detail);
  return Classified(std::move(o));
}

Outcome OutcomeForConnectFailure(int err, std::string_view host) {
  if (err < 0) err = -err;
  Outcome o = Make(Disposition::kDeferred, Scope::kSite, FailureKind::kConnectFailed,
                   err == ETIMEDOUT ? "timeout" : "connection", host);
  o.detail = Cat("connect failed: ", std::strerror(err));
  o = Classified(std::move(o));
  o.bounce_class = Category::kNoAnswerFromHost;  // no connection could be made
  return o;
}

std::string_view DnsFailureName(DnsFailure f) {
  switch (f) {
    case DnsFailure::kNxDomain:
      return "nxdomain";
    case DnsFailure::kNullMx:
      return "null_mx";
    case DnsFailure::kNoAddress:
      return "no_address";
    case DnsFailure::kNoAddressYet:
      return "no_address_yet";
    case DnsFailure::kServFail:
      return "servfail";
    case DnsFailure::kTimeout:
      return "timeout";
    case DnsFailure::kInvalidName:
      return "invalid_name";
  }
  return "unknown";
}

Outcome OutcomeForDnsFailure(DnsFailure failure, std::string_view domain, std::string_view detail) {
  Outcome o;
  o.kind = FailureKind::kDns;
  o.scope = Scope::kSite;
  o.category = "dns";
  std::string_view what;
  switch (failure) {
    case DnsFailure::kNxDomain:
      o.disposition = Disposition::kBounced;
      what = "domain does not exist";
      break;
    case DnsFailure::kNullMx:
      o.disposition = Disposition::kBounced;
      o.category = "null_mx";
      what = "domain accepts no mail (null MX)";
      break;
    case DnsFailure::kNoAddress:
      o.disposition = Disposition::kBounced;
      what = "no address for any MX host";
      break;
    case DnsFailure::kNoAddressYet:
      o.disposition = Disposition::kDeferred;
      what = "no address for any MX host yet";
      break;
    case DnsFailure::kServFail:
      o.disposition = Disposition::kDeferred;
      what = "DNS server failure";
      break;
    case DnsFailure::kTimeout:
      o.disposition = Disposition::kDeferred;
      what = "DNS timeout";
      break;
    case DnsFailure::kInvalidName:
      o.disposition = Disposition::kBounced;
      what = "not a valid domain name";
      break;
  }
  o.detail = Cat(domain, ": ", what);
  if (!detail.empty()) Append(&o.detail, " (", detail, ")");
  o = Classified(std::move(o));
  if (failure == DnsFailure::kNxDomain || failure == DnsFailure::kNullMx ||
      failure == DnsFailure::kInvalidName)
    o.bounce_class = Category::kBadDomain;
  else
    o.bounce_class = Category::kRoutingErrors;
  o.suppress = o.hard() && SuppressOnHardBounce(o.bounce_class);
  return o;
}

Outcome AsRetry(Outcome failure) {
  if (failure.kind == FailureKind::kNone)
    return OutcomeForConnectionLost(Phase::kDataEnd, failure.host);
  failure.disposition = Disposition::kDeferred;
  return Classified(std::move(failure));
}

Outcome OutcomeForSiteDown(Outcome last) {
  last.scope = Scope::kSite;
  last.disposition = Disposition::kDeferred;
  return Classified(std::move(last));
}

Outcome OutcomeForLocal(std::string_view category, std::string_view detail, bool permanent,
                        Scope scope, std::string_view host) {
  Outcome o = Make(permanent ? Disposition::kBounced : Disposition::kDeferred, scope,
                   FailureKind::kLocal, std::string(category), host);
  o.detail.assign(detail);
  return Classified(std::move(o));
}

Outcome OutcomeForHold(std::string_view why, int64_t hold_ms) {
  Outcome o = Make(Disposition::kDeferred, Scope::kSite, FailureKind::kLocal, "held", "");
  o.detail.assign(why);
  o = Classified(std::move(o));
  o.bounce_class = Category::kNone;  // not a failure: nothing was tried
  o.hold_ms = std::max<int64_t>(1, hold_ms);
  return o;
}

Category BounceClassOf(std::string_view c) {
  if (c.empty()) return Category::kNone;
  if (c == "invalid_recipient") return Category::kBadMailbox;
  if (c == "mailbox_disabled") return Category::kInactiveMailbox;
  if (c == "mailbox_full") return Category::kQuotaIssues;
  if (c == "null_mx") return Category::kBadDomain;
  if (c == "dns" || c == "routing") return Category::kRoutingErrors;
  if (c == "timeout") return Category::kNoAnswerFromHost;
  if (c == "connection" || c == "tls") return Category::kBadConnection;
  if (c == "spam_block") return Category::kSpamRelated;
  if (c == "rate_limited") return Category::kRateLimited;
  if (c == "policy" || c == "auth" || c == "greylisted") return Category::kPolicyRelated;
  if (c == "message_too_large" || c == "content" || c == "smtputf8")
    return Category::kContentRelated;
  if (c == "protocol" || c == "too_many_recipients") return Category::kProtocolErrors;
  if (c == "invalid_sender") return Category::kInvalidSender;
  return Category::kOther;  // system, mailbox_unavailable, composition, shutdown, other
}

}  // namespace salvo::smtp
