#pragma once
// One campaign's copies, composed the one way Salvo composes them: the
// template bound to the campaign's columns, its per-copy settings
// (unsubscribe, Feedback-ID) and its DKIM keys, resolved once; then, per
// copy, render (engine/message) and sign (dkim/). The engine's SpoolSource
// and `salvo campaign preview` both compose through this class, so a preview
// is the exact bytes the engine sends (given the same Date and Message-ID
// nonce).
//
// Immutable once prepared: Compose is const and runs on any shard; the caller
// passes the dkim::Signer it owns (one per thread).
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dkim/key_store.h"
#include "dkim/signer.h"
#include "engine/message/campaign_settings.h"
#include "engine/message/template.h"
#include "engine/message/verp.h"
#include "queue/campaign.h"

namespace salvo::delivery {

struct ComposedCopy {
  std::string bytes;  // DKIM-Signature fields (if signed) + the rendered message
  bool needs_8bitmime = false;
  bool needs_smtputf8 = false;
  bool is_signed = false;
  // DKIM: signatures made, by key type, and the time signing took.
  uint8_t rsa_signatures = 0;
  uint8_t ed25519_signatures = 0;
  double signing_seconds = 0;
};

// One copy's variable parts.
struct CopyRequest {
  std::string_view recipient;            // the To address (first of the job)
  bool undisclosed_recipients = false;   // one copy for several recipients
  std::vector<std::string_view> values;  // the recipient's row, in column order
  uint64_t recipient_id = 0;
  absl::Time date;                // Date: and DKIM t=
  uint64_t message_id_nonce = 0;  // 0: random (the engine); preview reproduces one
};

class CampaignComposer {
 public:
  // `template_text` as stored with the campaign; `keys` may be null (unsigned).
  // `global_verp`: the config's [verp] (the campaign's options override it).
  // Never fails: a campaign that cannot be composed keeps the reason in
  // error() (permanent for a template that does not parse or bind).
  static std::shared_ptr<const CampaignComposer> Prepare(
      uint64_t campaign_id, queue::CampaignInfo info, absl::StatusOr<std::string> template_text,
      const dkim::KeyStore* keys, const message::VerpSettings& global_verp = {});

  const absl::Status& error() const { return error_; }
  bool error_permanent() const { return error_permanent_; }
  const queue::CampaignInfo& info() const { return info_; }
  const std::string& id_text() const { return id_text_; }
  // Every copy is the same apart from To and Message-ID: no placeholders, no
  // per-recipient unsubscribe link. Such recipients may share a copy.
  bool identical_copies() const { return identical_copies_; }
  // The campaign's VERP settings (off: domain empty).
  const message::VerpSettings& verp() const { return verp_; }
  // The envelope sender of one recipient's copy: its VERP address when VERP
  // is on, else the campaign's sender.
  std::string ReturnPath(uint64_t recipient_id, std::string_view address) const;
  // Keys exist but none may sign this campaign's From: why (else empty).
  const std::string& unsigned_reason() const { return unsigned_reason_; }
  bool signs() const { return !keys_.empty(); }

  // `signer` may be null when !signs() or `sign` is false. *permanent tells
  // whether a failure will repeat for this copy.
  absl::StatusOr<ComposedCopy> Compose(const CopyRequest& copy, dkim::Signer* signer, bool sign,
                                       bool* permanent) const;

 private:
  CampaignComposer() = default;

  queue::CampaignInfo info_;
  std::string id_text_;
  uint64_t campaign_id_ = 0;
  std::string sender_domain_;
  absl::Status error_;
  bool error_permanent_ = false;
  std::optional<message::Template> tmpl_;
  message::ColumnBinding binding_;
  message::CampaignMessageSettings settings_;
  message::VerpSettings verp_;
  std::vector<const dkim::DkimKey*> keys_;  // empty: unsigned
  std::string unsigned_reason_;
  bool identical_copies_ = false;
  // The largest copy composed so far (relaxed; any shard): the next copy's
  // buffer is reserved at that size up front, so rendering a 20 KB message
  // does not grow it four times and the DKIM-Signature fields go in front
  // without another allocation. Only a hint.
  mutable std::atomic<size_t> size_hint_{0};
  // The size of the last copy's DKIM-Signature fields (relaxed; any shard):
  // a signed copy is rendered behind a gap of this size. Only a hint.
  mutable std::atomic<size_t> signature_size_hint_{0};
  // No placeholder in any body part: every copy has the same body, whose
  // hash each shard's Signer keeps (SignOptions::remember_body).
  bool body_constant_ = false;
};

}  // namespace salvo::delivery
