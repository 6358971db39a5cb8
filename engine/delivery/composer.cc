#include "engine/delivery/composer.h"

#include <algorithm>

#include "absl/time/clock.h"

#include "dkim/alignment.h"
#include "engine/common/log.h"

namespace salvo::delivery {

std::shared_ptr<const CampaignComposer> CampaignComposer::Prepare(
    uint64_t campaign_id, queue::CampaignInfo info, absl::StatusOr<std::string> template_text,
    const dkim::KeyStore* keys, const message::VerpSettings& global_verp) {
  std::shared_ptr<CampaignComposer> c(new CampaignComposer());
  c->info_ = std::move(info);
  c->id_text_ = std::to_string(campaign_id);
  c->campaign_id_ = campaign_id;
  // The Message-ID's domain is the campaign's envelope sender domain, for
  // every copy, whatever From the template carries.
  c->sender_domain_ = message::DomainOf(c->info_.from);
  if (!template_text.ok()) {
    c->error_ = template_text.status();
  } else if (auto t = message::Template::Parse(*template_text, c->info_.template_path); !t.ok()) {
    c->error_ = t.status();
    c->error_permanent_ = true;
  } else {
    c->tmpl_.emplace(std::move(*t));
    auto b = c->tmpl_->Bind(c->info_.columns);
    auto s = message::SettingsFromOptions(c->info_.options, c->id_text_);
    if (!b.ok()) {
      c->error_ = b.status();
      c->error_permanent_ = true;
    } else if (!s.ok()) {
      c->error_ = s.status();
    } else if (auto v = message::VerpFromOptions(c->info_.options, global_verp); !v.ok()) {
      c->error_ = v.status();
    } else {
      c->binding_ = std::move(*b);
      c->settings_ = std::move(*s);
      c->verp_ = std::move(*v);
    }
  }
  // keys == nullptr: not known here (a CLI that cannot read them). An empty
  // store is known to have none: a campaign asking for a DKIM domain is then
  // refused too, never sent unsigned without a word (issue 16 item 2).
  if (c->error_.ok() && keys != nullptr && (!keys->empty() || !c->info_.dkim_domain.empty())) {
    if (!c->info_.dkim_domain.empty()) {
      c->keys_ = keys->KeysFor(c->info_.dkim_domain);
      if (c->keys_.empty())
        c->error_ = absl::FailedPreconditionError(
            "campaign " + c->id_text_ + " asks for DKIM domain " + c->info_.dkim_domain +
            " but the configuration has no [[dkim.keys]] for it");
    } else {
      const std::string from =
          c->tmpl_->from_address().empty() ? c->info_.from : c->tmpl_->from_address();
      auto k = dkim::SelectKeysForFrom(*keys, from);
      if (k.ok())
        c->keys_ = std::move(*k);
      else
        c->unsigned_reason_ = std::string(k.status().message());
    }
  }
  // A VERP copy carries one recipient: its envelope sender names it.
  c->body_constant_ = c->error_.ok() && !c->tmpl_->BodyHasPlaceholders();
  c->identical_copies_ = c->error_.ok() && c->tmpl_->variables().empty() &&
                         c->settings_.unsubscribe_url.empty() &&
                         c->settings_.unsubscribe_mailto.empty() && !c->verp_.enabled();
  return c;
}

std::string CampaignComposer::ReturnPath(uint64_t recipient_id, std::string_view address) const {
  if (!verp_.enabled()) return info_.from;
  std::string verp = message::MakeVerpAddress(verp_, campaign_id_, recipient_id, address);
  return verp.empty() ? info_.from : verp;
}

absl::StatusOr<ComposedCopy> CampaignComposer::Compose(const CopyRequest& copy,
                                                       dkim::Signer* signer, bool sign,
                                                       bool* permanent) const {
  if (!error_.ok()) {
    *permanent = error_permanent_;
    return error_;
  }
  const std::string rid = std::to_string(copy.recipient_id);
  message::RenderContext rc;
  rc.binding = &binding_;
  rc.values = copy.values;
  rc.recipient = copy.recipient;
  rc.campaign_id = id_text_;
  rc.recipient_id = rid;
  rc.sender_domain = sender_domain_;
  rc.from_address = info_.from;
  rc.date = copy.date;
  rc.message_id_nonce = copy.message_id_nonce;
  rc.undisclosed_recipients = copy.undisclosed_recipients;
  rc.unsubscribe = settings_.Unsubscribe();
  rc.feedback_id = settings_.feedback_id;
  // Copies are composed before the session knows whether the server offers
  // 8BITMIME, so 8bit parts always go out re-encoded (quoted-printable):
  // valid on every server (RFC 6152 forbids 8bit data without it), and what
  // RFC 6376 5.3 recommends so that no relay's re-encoding breaks the DKIM
  // body hash.
  rc.allow_8bit = false;
  ComposedCopy out;
  std::string body;
  // Room for the rendered copy and its DKIM-Signature fields (about 600
  // bytes per RSA-2048 key): see size_hint_.
  body.reserve(std::max<size_t>(4096, size_hint_.load(std::memory_order_relaxed)));
  const bool signing = sign && !keys_.empty() && signer != nullptr;
  // A signed copy is rendered behind a gap the size of the last copy's
  // DKIM-Signature fields (they rarely change size within a campaign: same
  // keys, same h=, t= of the same width), so the fields are copied into the
  // gap instead of moving the whole rendered copy behind them.
  const size_t gap = signing ? signature_size_hint_.load(std::memory_order_relaxed) : 0;
  body.append(gap, ' ');
  auto rendered = tmpl_->Render(rc, &body);
  if (!rendered.ok()) {
    *permanent = true;
    return rendered.status();
  }
  out.needs_8bitmime = rendered->needs_8bitmime;
  out.needs_smtputf8 = rendered->needs_smtputf8;
  if (signing) {
    dkim::SignOptions options;
    options.timestamp = absl::ToUnixSeconds(copy.date);  // t= matches Date:
    options.remember_body = body_constant_;
    const absl::Time started = absl::Now();
    auto sig = signer->Sign(std::string_view(body).substr(gap), keys_, options);
    out.signing_seconds = absl::ToDoubleSeconds(absl::Now() - started);
    if (!sig.ok()) {
      *permanent = false;
      return sig.status();
    }
    // In front of the message: into the gap when it is the right size, else
    // in place of it (moves the copy once; the next copy's gap fits).
    body.replace(0, gap, *sig);
    if (sig->size() != gap) signature_size_hint_.store(sig->size(), std::memory_order_relaxed);
    out.is_signed = true;
    for (const dkim::DkimKey* k : keys_)
      ++(k->type == dkim::KeyType::kEd25519 ? out.ed25519_signatures : out.rsa_signatures);
  }
  const size_t room = body.size() + 1024 * keys_.size();
  if (room > size_hint_.load(std::memory_order_relaxed))
    size_hint_.store(room, std::memory_order_relaxed);
  out.bytes = std::move(body);
  return out;
}

}  // namespace salvo::delivery
