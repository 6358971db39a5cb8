#include "engine/delivery/spool_source.h"

#include <string_view>

#include "absl/time/clock.h"
#include "dkim/alignment.h"
#include "engine/common/log.h"
#include "engine/message/campaign_settings.h"
#include "engine/message/template.h"

namespace salvo::delivery {

// Everything needed to compose copies of one campaign; immutable once built.
struct SpoolSource::CampaignContext {
  queue::CampaignInfo info;
  std::string id_text;
  std::string sender_domain;
  absl::Status error;  // the campaign cannot be composed (template, settings, keys)
  bool error_permanent = false;
  std::optional<message::Template> tmpl;
  message::ColumnBinding binding;
  message::CampaignMessageSettings settings;
  std::vector<const dkim::DkimKey*> keys;  // empty: unsigned
  // Every copy is the same apart from To and Message-ID: no placeholders,
  // no per-recipient unsubscribe link. Such recipients may share a copy.
  bool identical_copies = false;
};

namespace {

// What Compose needs per job: the campaign and the recipient's row.
struct JobContext {
  std::shared_ptr<const SpoolSource::CampaignContext> campaign;
  std::shared_ptr<const std::vector<std::string>> columns;
  std::vector<std::string> values;
  uint64_t recipient_id = 0;
};

}  // namespace

SpoolSource::SpoolSource(queue::Spool* spool, std::shared_ptr<const dkim::KeyStore> keys,
                         SpoolSourceOptions options)
    : spool_(spool), keys_(std::move(keys)), options_(std::move(options)) {
  for (int i = 0; i < std::max(1, options_.shards); ++i)
    signers_.push_back(std::make_unique<dkim::Signer>());
}

SpoolSource::~SpoolSource() = default;

std::shared_ptr<const SpoolSource::CampaignContext> SpoolSource::ContextFor(queue::CampaignId id) {
  auto it = campaigns_.find(queue::Value(id));
  if (it != campaigns_.end()) {
    it->second.used = fetch_count_;
    return it->second.context;
  }
  auto ctx = std::make_shared<CampaignContext>();
  ctx->id_text = std::to_string(queue::Value(id));
  auto info = spool_->GetCampaign(id);
  auto text = info.ok() ? spool_->GetTemplate(id) : absl::StatusOr<std::string>(info.status());
  if (!info.ok() || !text.ok()) {
    ctx->error = info.ok() ? text.status() : info.status();
  } else {
    ctx->info = *info;
    ctx->sender_domain = message::DomainOf(ctx->info.from);
    auto t = message::Template::Parse(*text, ctx->info.template_path);
    if (!t.ok()) {
      ctx->error = t.status();
      ctx->error_permanent = true;
    } else {
      ctx->tmpl.emplace(std::move(*t));
      auto b = ctx->tmpl->Bind(ctx->info.columns);
      auto s = message::SettingsFromOptions(ctx->info.options, ctx->id_text);
      if (!b.ok()) {
        ctx->error = b.status();
        ctx->error_permanent = true;
      } else if (!s.ok()) {
        ctx->error = s.status();
      } else {
        ctx->binding = std::move(*b);
        ctx->settings = std::move(*s);
      }
    }
    if (ctx->error.ok() && keys_ && !keys_->empty()) {
      if (!ctx->info.dkim_domain.empty()) {
        ctx->keys = keys_->KeysFor(ctx->info.dkim_domain);
        if (ctx->keys.empty())
          ctx->error = absl::FailedPreconditionError(
              "campaign " + ctx->id_text + " asks for DKIM domain " + ctx->info.dkim_domain +
              " but the configuration has no [[dkim.keys]] for it");
      } else {
        std::string from =
            ctx->tmpl->from_address().empty() ? ctx->info.from : ctx->tmpl->from_address();
        auto k = dkim::SelectKeysForFrom(*keys_, from);
        if (k.ok())
          ctx->keys = std::move(*k);
        else
          SALVO_LOG(kWarning, "campaign {}: sending unsigned: {}", ctx->id_text,
                    std::string(k.status().message()));
      }
    }
  }
  if (!ctx->error.ok())
    SALVO_LOG(kError, "campaign {}: cannot compose messages: {}", ctx->id_text,
              std::string(ctx->error.message()));
  ctx->identical_copies = ctx->error.ok() && ctx->tmpl->variables().empty() &&
                          ctx->settings.unsubscribe_url.empty() &&
                          ctx->settings.unsubscribe_mailto.empty();
  std::shared_ptr<const CampaignContext> shared = std::move(ctx);
  campaigns_[queue::Value(id)] = {shared, fetch_count_};
  return shared;
}

absl::StatusOr<std::vector<Job>> SpoolSource::Fetch(size_t max_jobs) {
  ++fetch_count_;
  if (campaigns_.size() > kMaxCampaignContexts) {
    for (auto it = campaigns_.begin(); it != campaigns_.end();) {
      auto next = std::next(it);
      if (it->second.used + 16 < fetch_count_) campaigns_.erase(it);
      it = next;
    }
  }
  queue::LeaseLimits limits;
  limits.max_per_domain = options_.max_per_domain;
  limits.max_total = max_jobs;
  auto batches = spool_->LeaseDue(spool_->Now(), limits);
  if (!batches.ok()) return batches.status();
  std::vector<Job> jobs;
  const size_t group = std::max<size_t>(1, options_.max_recipients_per_message);
  for (queue::DomainBatch& batch : *batches) {
    // Per campaign, the job of this domain still taking recipients.
    absl::flat_hash_map<uint64_t, size_t> open;
    for (queue::LeasedRecipient& r : batch.recipients) {
      auto campaign = ContextFor(r.campaign);
      if (group > 1 && campaign->identical_copies) {
        auto it = open.find(queue::Value(r.campaign));
        if (it != open.end() && jobs[it->second].recipients.size() < group) {
          jobs[it->second].recipients.push_back(
              {r.email, queue::Value(r.campaign), queue::Value(r.id)});
          continue;
        }
        open[queue::Value(r.campaign)] = jobs.size();
      }
      Job job;
      job.domain = batch.domain;
      job.mail_from = campaign->info.from;
      job.recipients.push_back({r.email, queue::Value(r.campaign), queue::Value(r.id)});
      auto jc = std::make_shared<JobContext>();
      jc->campaign = campaign;
      jc->columns = r.columns;
      jc->values = std::move(r.values);
      jc->recipient_id = queue::Value(r.id);
      job.context = std::move(jc);
      jobs.push_back(std::move(job));
    }
  }
  return jobs;
}

absl::Status SpoolSource::Compose(Job* job, int shard, bool* permanent) {
  const auto* jc = static_cast<const JobContext*>(job->context.get());
  const CampaignContext& c = *jc->campaign;
  if (!c.error.ok()) {
    *permanent = c.error_permanent;
    return c.error;
  }
  std::vector<std::string_view> values(jc->values.begin(), jc->values.end());
  std::string rid = std::to_string(jc->recipient_id);
  message::RenderContext rc;
  rc.binding = &c.binding;
  rc.values = values;
  rc.recipient = job->recipients.front().address;
  rc.campaign_id = c.id_text;
  rc.recipient_id = rid;
  rc.sender_domain = c.sender_domain;
  rc.from_address = c.info.from;
  rc.date = absl::Now();
  rc.undisclosed_recipients = job->recipients.size() > 1;
  rc.unsubscribe = c.settings.Unsubscribe();
  rc.feedback_id = c.settings.feedback_id;
  // Copies are composed before the session knows whether the server offers
  // 8BITMIME, so 8bit parts always go out re-encoded (quoted-printable):
  // valid on every server (RFC 6152 forbids 8bit data without it), and what
  // RFC 6376 5.3 recommends so that no relay's re-encoding breaks the DKIM
  // body hash. `salvo campaign preview` shows the same bytes.
  rc.allow_8bit = false;
  auto body = std::make_shared<std::string>();
  body->reserve(4096);
  auto rendered = c.tmpl->Render(rc, body.get());
  if (!rendered.ok()) {
    *permanent = true;
    return rendered.status();
  }
  job->needs_8bitmime = rendered->needs_8bitmime;
  job->needs_smtputf8 = rendered->needs_smtputf8;
  for (const JobRecipient& r : job->recipients)
    job->needs_smtputf8 |= message::AddressNeedsSmtpUtf8(r.address);
  if (!c.keys.empty()) {
    dkim::Signer& signer = *signers_[static_cast<size_t>(shard) % signers_.size()];
    auto sig = signer.Sign(*body, c.keys, dkim::SignOptions{});
    if (!sig.ok()) {
      *permanent = false;
      return sig.status();
    }
    sig->append(*body);
    *body = std::move(*sig);
  }
  job->body = std::move(body);
  return absl::OkStatus();
}

absl::Status SpoolSource::Complete(absl::Span<JobResult> results) {
  std::vector<queue::Completion> done;
  done.reserve(results.size());
  for (JobResult& r : results) {
    for (size_t i = 0; i < r.recipients.size(); ++i) {
      queue::Completion c;
      c.campaign = static_cast<queue::CampaignId>(r.recipients[i].tag1);
      c.id = static_cast<queue::RecipientId>(r.recipients[i].tag2);
      c.outcome = i < r.outcomes.size() ? std::move(r.outcomes[i]) : smtp::Outcome{};
      done.push_back(std::move(c));
    }
  }
  absl::Status st = spool_->CompleteBatch(done);
  // A completion for a recipient the spool no longer leases (cancelled, or a
  // restart in between) is not an engine failure.
  if (st.code() == absl::StatusCode::kFailedPrecondition) {
    SALVO_LOG(kWarning, "spool: {}", std::string(st.message()));
    return absl::OkStatus();
  }
  return st;
}

bool SpoolSource::Done(size_t in_flight) {
  if (!options_.until_done || in_flight != 0) return false;
  if (done_) return true;
  auto now = std::chrono::steady_clock::now();
  if (now < next_done_check_) return false;
  next_done_check_ = now + options_.done_check_interval;
  auto all = spool_->AllDone(*options_.until_done);
  done_ = all.ok() ? *all : true;  // a vanished campaign is done too
  return done_;
}

}  // namespace salvo::delivery
