#include "engine/bounce/intake.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/common/strings.h"
#include "engine/message/campaign_settings.h"

namespace salvo::bounce {
namespace {

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

// The copy a Message-ID names: <campaign.recipient.nonce@sender-domain>.
struct MessageIdRef {
  uint64_t campaign = 0;
  uint64_t recipient = 0;
  std::string domain;
};
std::optional<MessageIdRef> ParseMessageId(std::string_view id) {
  while (!id.empty() && (id.front() == '<' || id.front() == ' ')) id.remove_prefix(1);
  while (!id.empty() && (id.back() == '>' || id.back() == ' ')) id.remove_suffix(1);
  size_t at = id.rfind('@');
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view local = id.substr(0, at);
  size_t d1 = local.find('.');
  if (d1 == std::string_view::npos) return std::nullopt;
  size_t d2 = local.find('.', d1 + 1);
  if (d2 == std::string_view::npos || local.find('.', d2 + 1) != std::string_view::npos)
    return std::nullopt;
  std::string_view nonce = local.substr(d2 + 1);
  if (nonce.size() != 16) return std::nullopt;
  for (char c : nonce)
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  MessageIdRef ref;
  if (!absl::SimpleAtoi(Av(local.substr(0, d1)), &ref.campaign) ||
      !absl::SimpleAtoi(Av(local.substr(d1 + 1, d2 - d1 - 1)), &ref.recipient) ||
      ref.campaign == 0 || ref.recipient == 0)
    return std::nullopt;
  ref.domain = AsciiLower(id.substr(at + 1));
  return ref;
}

// The Message-ID field of returned headers ("" when there is none).
std::string MessageIdInHeaders(std::string_view headers) {
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t eol = headers.find('\n', pos);
    if (eol == std::string_view::npos) eol = headers.size();
    std::string_view line = headers.substr(pos, eol - pos);
    if ((line.size() >= 11 && EqualsIgnoreCase(line.substr(0, 11), "message-id:"))) {
      std::string_view v = StripWhitespace(line.substr(11));
      if (v.empty() && eol < headers.size()) {  // folded onto the next line
        size_t next = headers.find('\n', eol + 1);
        v = StripWhitespace(headers.substr(
            eol + 1, (next == std::string_view::npos ? headers.size() : next) - eol - 1));
      }
      return std::string(v);
    }
    pos = eol + 1;
  }
  return "";
}

// The secret that verifies a campaign's tokens: its verp_secret_file, else
// the global [verp] one, else SALVO_VERP_SECRET. Read even when the campaign
// has VERP off now: its copies may still be bouncing.
absl::StatusOr<std::string> CampaignSecret(const queue::CampaignInfo& info,
                                           const message::VerpSettings& global) {
  if (auto it = info.options.find("verp_secret_file");
      it != info.options.end() && !it->second.empty())
    return message::ReadVerpSecretFile(it->second, "option verp_secret_file");
  if (!global.secret.empty()) return global.secret;
  if (const char* env = std::getenv("SALVO_VERP_SECRET"); env && *env) return std::string(env);
  return absl::FailedPreconditionError("no VERP secret configured");
}

std::string StripSmtpType(std::string_view diagnostic) {
  // "smtp; 550 5.1.1 ..." -> "550 5.1.1 ..."
  if (size_t semi = diagnostic.find(';');
      semi != std::string_view::npos && semi < 12 &&
      EqualsIgnoreCase(StripWhitespace(diagnostic.substr(0, semi)), "smtp"))
    diagnostic = StripWhitespace(diagnostic.substr(semi + 1));
  return std::string(diagnostic);
}

absl::StatusOr<IntakeResult> Stray(queue::Spool& spool, IntakeResult res,
                                   queue::Spool::StrayReport kind, std::string why) {
  auto fresh = spool.RecordStrayReport(res.report_id, kind);
  if (!fresh.ok()) return fresh.status();
  res.outcome = !*fresh ? IntakeOutcome::kDuplicate
                        : (kind == queue::Spool::StrayReport::kForged ? IntakeOutcome::kForged
                                                                      : IntakeOutcome::kUnmatched);
  res.why = std::move(why);
  return res;
}

}  // namespace

std::string_view IntakeOutcomeName(IntakeOutcome o) {
  switch (o) {
    case IntakeOutcome::kApplied:
      return "applied";
    case IntakeOutcome::kDuplicate:
      return "duplicate";
    case IntakeOutcome::kForged:
      return "forged";
    case IntakeOutcome::kUnmatched:
      return "unmatched";
    case IntakeOutcome::kNotAReport:
      return "not-a-report";
  }
  return "unknown";
}

absl::StatusOr<IntakeResult> ProcessReport(queue::Spool& spool, const IntakeOptions& options,
                                           std::string_view raw, std::string_view envelope_rcpt) {
  IntakeResult res;
  res.report_id = options.report_id.empty() ? "sha256:" + Sha256Hex(raw) : options.report_id;
  absl::StatusOr<Report> parsed = ParseReport(raw, options.limits);
  if (!parsed.ok()) {
    res.why = Cat("unreadable: ", parsed.status().message());
    return res;
  }
  Report& report = *parsed;
  Classify(&report, options.classifier);
  res.kind = report.kind;
  if (report.kind == ReportKind::kNotAReport) {
    res.why = "not a bounce, delay warning, complaint or auto-reply";
    return res;
  }

  // 1. A VERP token: where the report was sent, else the original envelope sender.
  std::optional<message::VerpToken> token;
  for (std::string_view where :
       {envelope_rcpt, std::string_view(report.original_return_path),
        report.complaint ? std::string_view(report.complaint->original_mail_from)
                         : std::string_view()}) {
    if (where.empty()) continue;
    token = message::ParseVerpAddress(where);
    if (token) break;
  }
  queue::CampaignInfo campaign;
  queue::RecipientView recipient;
  if (token) {
    auto info = spool.GetCampaign(queue::CampaignId{token->campaign});
    if (!info.ok())
      return Stray(
          spool, std::move(res), queue::Spool::StrayReport::kForged,
          Cat("VERP token names campaign ", token->campaign, ", which this spool does not have"));
    auto rcpt = spool.GetRecipient(queue::CampaignId{token->campaign},
                                   queue::RecipientId{token->recipient});
    if (!rcpt.ok())
      return Stray(spool, std::move(res), queue::Spool::StrayReport::kForged,
                   Cat("VERP token names recipient ", token->recipient, " of campaign ",
                       token->campaign, ", which does not exist"));
    auto secret = CampaignSecret(*info, options.verp);
    if (!secret.ok())
      return Stray(spool, std::move(res), queue::Spool::StrayReport::kForged,
                   Cat("cannot verify the VERP token of campaign ", token->campaign, ": ",
                       secret.status().message()));
    if (!message::VerifyVerpToken(*secret, *token, rcpt->email))
      return Stray(spool, std::move(res), queue::Spool::StrayReport::kForged,
                   Cat("VERP token for campaign ", token->campaign, " recipient ", token->recipient,
                       " does not verify"));
    campaign = std::move(*info);
    recipient = std::move(*rcpt);
    res.matched_by = "verp";
  } else {
    // 2. The original Message-ID, when it names one copy of ours.
    std::string mid = report.original_message_id;
    if (mid.empty()) mid = MessageIdInHeaders(report.original_headers);
    std::optional<MessageIdRef> ref = ParseMessageId(mid);
    if (ref) {
      auto info = spool.GetCampaign(queue::CampaignId{ref->campaign});
      auto rcpt = info.ok() ? spool.GetRecipient(queue::CampaignId{ref->campaign},
                                                 queue::RecipientId{ref->recipient})
                            : absl::StatusOr<queue::RecipientView>(info.status());
      bool named_other = false;
      if (rcpt.ok() && !report.recipients.empty()) {
        named_other = true;
        for (const FailedRecipient& fr : report.recipients)
          if (EqualsIgnoreCase(fr.final_recipient, rcpt->email) ||
              EqualsIgnoreCase(fr.original_recipient, rcpt->email))
            named_other = false;
      }
      if (info.ok() && rcpt.ok() && !named_other && ref->domain == message::DomainOf(info->from)) {
        campaign = std::move(*info);
        recipient = std::move(*rcpt);
        res.matched_by = "message-id";
      }
    }
    if (res.matched_by.empty())
      return Stray(spool, std::move(res), queue::Spool::StrayReport::kUnmatched,
                   "no VERP token and no Message-ID of one of our copies");
  }
  res.campaign = campaign.id;
  res.recipient = recipient.id;
  res.email = recipient.email;

  // The recipient line of the report about this copy: the one naming the
  // stored address, else the first.
  const FailedRecipient* fr = report.recipients.empty() ? nullptr : &report.recipients.front();
  for (const FailedRecipient& r : report.recipients)
    if (EqualsIgnoreCase(r.final_recipient, recipient.email) ||
        EqualsIgnoreCase(r.original_recipient, recipient.email)) {
      fr = &r;
      break;
    }

  queue::Spool::Report apply;
  apply.report_id = res.report_id;
  apply.campaign = campaign.id;
  apply.id = recipient.id;
  std::string source = Cat(report.format.empty() ? "report" : report.format);
  if (!report.reporting_mta.empty())
    Append(&source, " from ", report.reporting_mta);
  else if (fr && !fr->remote_mta.empty())
    Append(&source, " from ", fr->remote_mta);
  switch (report.kind) {
    case ReportKind::kBounce: {
      // A recognised bounce naming no recipient still says the copy failed.
      res.hard = fr == nullptr || fr->hard;
      apply.effect = res.hard ? queue::Spool::ReportEffect::kHardBounce
                              : queue::Spool::ReportEffect::kSoftBounce;
      if (fr) {
        apply.reply = !fr->reply.empty() ? fr->reply : StripSmtpType(fr->diagnostic_code);
        if (apply.reply.empty()) apply.reply = fr->status;
        apply.category = std::string(smtp::CategoryName(
            fr->category == smtp::Category::kNone ? smtp::Category::kOther : fr->category));
      } else {
        apply.category = "other";
      }
      apply.detail = Cat("bounce message (", source, ")");
      break;
    }
    case ReportKind::kComplaint:
      apply.effect = queue::Spool::ReportEffect::kComplaint;
      apply.reply = report.complaint && !report.complaint->feedback_type.empty()
                        ? report.complaint->feedback_type
                        : "abuse";
      apply.category = "complaint";
      apply.detail = Cat("complaint (", source, ")");
      break;
    case ReportKind::kDelayed:
      apply.effect = queue::Spool::ReportEffect::kDelayed;
      if (fr) apply.reply = !fr->reply.empty() ? fr->reply : StripSmtpType(fr->diagnostic_code);
      apply.detail = Cat("delay warning (", source, ")");
      break;
    case ReportKind::kAutoReply:
    default:
      apply.effect = queue::Spool::ReportEffect::kAutoReply;
      apply.detail = Cat("auto-reply (", source, ")");
      break;
  }
  res.reply = apply.reply;
  res.category = apply.category;
  auto applied = spool.RecordReport(apply);
  if (applied.status().code() == absl::StatusCode::kNotFound)  // gone meanwhile
    return Stray(spool, std::move(res), queue::Spool::StrayReport::kUnmatched,
                 std::string(applied.status().message()));
  if (!applied.ok()) return applied.status();
  res.before = applied->before;
  res.after = applied->after;
  res.suppressed = applied->suppressed;
  res.outcome = applied->duplicate ? IntakeOutcome::kDuplicate : IntakeOutcome::kApplied;
  res.why = Cat(ReportKindName(report.kind), " for campaign ", queue::Value(campaign.id),
                " recipient ", queue::Value(recipient.id), " (matched by ", res.matched_by,
                "): ", queue::RecipientStateName(res.before), " -> ",
                queue::RecipientStateName(res.after), res.suppressed ? ", suppressed" : "",
                applied->duplicate ? " (seen before: nothing done again)" : "");
  return res;
}

}  // namespace salvo::bounce
