#include "engine/delivery/spool_source.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include "absl/time/clock.h"
#include "dkim/alignment.h"
#include "engine/common/log.h"
#include "engine/common/strings.h"
#include "engine/message/campaign_settings.h"
#include "engine/message/template.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

namespace {

// What Compose needs per job: the campaign and the recipient's row.
struct JobContext {
  std::shared_ptr<const CampaignComposer> campaign;
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
  if (options_.registry) counters_ = options_.registry->AddShard();
  if (counters_ || options_.delivery_log)
    spool_->SetOutcomeListener(
        [this](absl::Span<const queue::OutcomeNotice> notices) { Record(notices); });
}

SpoolSource::~SpoolSource() {
  if (counters_ || options_.delivery_log) spool_->SetOutcomeListener(nullptr);
  if (options_.delivery_log) options_.delivery_log->Flush();
}

metrics::CampaignSlot SpoolSource::CampaignLabel(queue::CampaignId id, std::string_view name) {
  if (!options_.registry) return {};
  auto [it, inserted] = campaign_labels_.try_emplace(queue::Value(id));
  if (inserted) {
    if (campaign_labels_.size() > 4096) {  // bounded; resolving again is cheap
      campaign_labels_.clear();
      it = campaign_labels_.try_emplace(queue::Value(id)).first;
    }
    it->second = options_.registry->ResolveCampaign(queue::Value(id), name);
  }
  return it->second;
}

// A report received later (engine/bounce/intake): counted and logged here.
// `rec` is the log line with the common fields filled.
void SpoolSource::RecordReport(const queue::OutcomeNotice& n, deliverylog::Record* rec) {
  using Source = queue::OutcomeNotice::Source;
  metrics::Counter plain = metrics::Counter::kCount;
  switch (n.source) {
    case Source::kForged:
      plain = metrics::Counter::kReportsForged;
      break;
    case Source::kUnmatched:
      plain = metrics::Counter::kReportsUnmatched;
      break;
    case Source::kAsyncSoftBounce:
      plain = metrics::Counter::kReportsSoftBounces;
      break;
    case Source::kDelayed:
      plain = metrics::Counter::kReportsDelayed;
      break;
    case Source::kAutoReply:
      plain = metrics::Counter::kReportsAutoReplies;
      break;
    default:
      break;
  }
  if (plain != metrics::Counter::kCount) {
    if (counters_) counters_->Add(plain);
    return;
  }
  const bool complaint = n.source == Source::kComplaint;
  smtp::Category category = smtp::Category::kOther;
  if (!complaint)
    if (auto c = smtp::ParseCategory(n.category); c && *c != smtp::Category::kNone) category = *c;
  if (counters_) {
    metrics::OutcomeLabels labels{CampaignLabel(n.campaign, n.campaign_name),
                                  options_.registry->domains().Resolve(n.domain)};
    if (complaint)
      counters_->CountRecipient(labels, metrics::RecipientEvent::kComplaint);
    else
      counters_->CountRecipient(labels, metrics::RecipientEvent::kBounced, category,
                                metrics::BouncePhase::kAsync);
  }
  if (deliverylog::Producer* log = options_.delivery_log) {
    rec->type = complaint ? deliverylog::RecordType::kComplaint : deliverylog::RecordType::kBounced;
    rec->async = !complaint;
    if (!complaint) {
      rec->category = category;
      // "550 5.1.1 text": the code and enhanced code, when the reply has them.
      std::string_view reply = n.reason;
      if (reply.size() >= 3 && reply[0] >= '2' && reply[0] <= '5' && std::isdigit(reply[1]) &&
          std::isdigit(reply[2]) && (reply.size() == 3 || reply[3] == ' ')) {
        rec->code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
        std::string_view rest = reply.size() > 4 ? reply.substr(4) : std::string_view();
        size_t sp = rest.find(' ');
        std::string_view enhanced = rest.substr(0, sp);
        if (enhanced.size() >= 5 && enhanced[1] == '.' &&
            (enhanced[0] == '2' || enhanced[0] == '4' || enhanced[0] == '5'))
          rec->enhanced_code = enhanced;
      }
    }
    log->Write(*rec);
  }
}

void SpoolSource::Record(absl::Span<const queue::OutcomeNotice> notices) {
  using queue::RecipientState;
  // The feeder thread and the inbound listener (reports) both call this.
  absl::MutexLock lock(&record_mu_);
  for (const queue::OutcomeNotice& n : notices) {
    if (n.source != queue::OutcomeNotice::Source::kAttempt) {
      deliverylog::Record rec;
      rec.time = n.at;
      rec.campaign = n.campaign_name;
      rec.campaign_id = queue::Value(n.campaign);
      rec.recipient = n.email;
      rec.domain = n.domain;
      rec.attempt = n.attempts;
      rec.reply = n.reason;
      if (n.first_attempt != absl::InfinitePast())
        rec.latency_ms = absl::ToInt64Milliseconds(n.at - n.first_attempt);
      RecordReport(n, &rec);
      continue;
    }
    deliverylog::RecordType type;
    metrics::RecipientEvent event = metrics::RecipientEvent::kDelivered;
    bool final_outcome = true;
    switch (n.to) {
      case RecipientState::kDelivered:
        type = deliverylog::RecordType::kDelivered;
        break;
      case RecipientState::kBounced:
        type = deliverylog::RecordType::kBounced;
        break;
      case RecipientState::kDeferred:
        type = deliverylog::RecordType::kDeferred;
        final_outcome = false;
        break;
      case RecipientState::kExpired:
        type = deliverylog::RecordType::kExpired;
        event = metrics::RecipientEvent::kExpired;
        break;
      case RecipientState::kSuppressed:
        type = deliverylog::RecordType::kSuppressed;
        event = metrics::RecipientEvent::kSuppressed;
        final_outcome = false;
        break;
      default:
        continue;  // cancelled: the operator's doing, not an outcome
    }
    if (counters_) {
      // Attempts were counted by the shard that made them; the spool alone
      // knows of expiries and suppressions, and of the first attempt.
      if (event != metrics::RecipientEvent::kDelivered) {
        metrics::OutcomeLabels labels{CampaignLabel(n.campaign, n.campaign_name),
                                      options_.registry->domains().Resolve(n.domain)};
        counters_->CountRecipient(labels, event);
      }
      if (final_outcome && n.first_attempt != absl::InfinitePast())
        counters_->Observe(metrics::Histogram::kDeliveryLatency,
                           absl::ToDoubleSeconds(n.at - n.first_attempt));
    }
    if (deliverylog::Producer* log = options_.delivery_log) {
      const smtp::Outcome* o = n.outcome;
      deliverylog::Record rec;
      rec.time = n.at;
      rec.type = type;
      rec.campaign = n.campaign_name;
      rec.campaign_id = queue::Value(n.campaign);
      rec.recipient = n.email;
      rec.domain = n.domain;
      rec.attempt = n.attempts;
      rec.reply = n.reason;
      if (n.first_attempt != absl::InfinitePast())
        rec.latency_ms = absl::ToInt64Milliseconds(n.at - n.first_attempt);
      if (o) {
        // Outcome::host is "name[ip]:port" or "ip:port".
        std::string_view host = o->host;
        if (size_t open = host.find('['); open != std::string_view::npos) {
          rec.mx_host = host.substr(0, open);
          size_t close = host.find(']', open);
          if (close != std::string_view::npos) rec.mx_ip = host.substr(open + 1, close - open - 1);
          if (open == 0) rec.mx_host = {};  // "[v6]:port": no name
        } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
          rec.mx_ip = host.substr(0, colon);
        }
        rec.code = o->reply.code;
        rec.enhanced_code = o->reply.enhanced;
        rec.category = o->bounce_class;
        rec.tls_version = o->tls_version ? o->tls_version : "";
        rec.size = o->size;
        if (o->source >= 0 && static_cast<size_t>(o->source) < options_.egress_addresses.size())
          rec.source_ip = options_.egress_addresses[static_cast<size_t>(o->source)];
        if (!o->delivered() && o->bounce_class == smtp::Category::kNone &&
            type != deliverylog::RecordType::kDelivered)
          rec.category = smtp::Category::kOther;
      }
      log->Write(rec);
    }
  }
  if (options_.delivery_log) options_.delivery_log->Flush();
}

std::shared_ptr<const CampaignComposer> SpoolSource::ContextFor(queue::CampaignId id) {
  auto it = campaigns_.find(queue::Value(id));
  if (it != campaigns_.end()) {
    it->second.used = fetch_count_;
    return it->second.context;
  }
  auto info = spool_->GetCampaign(id);
  absl::StatusOr<std::string> text =
      info.ok() ? spool_->GetTemplate(id) : absl::StatusOr<std::string>(info.status());
  std::shared_ptr<const CampaignComposer> c =
      CampaignComposer::Prepare(queue::Value(id), info.ok() ? *info : queue::CampaignInfo{},
                                std::move(text), keys_.get(), options_.verp);
  if (!c->error().ok())
    SALVO_LOG(kError, "campaign {}: cannot compose messages: {}", c->id_text(),
              std::string(c->error().message()));
  else if (!c->unsigned_reason().empty())
    SALVO_LOG(kWarning, "campaign {}: sending unsigned: {}", c->id_text(), c->unsigned_reason());
  campaigns_[queue::Value(id)] = {c, fetch_count_};
  return c;
}

absl::StatusOr<std::vector<Job>> SpoolSource::Fetch(size_t max_jobs) {
  ++fetch_count_;
  if (options_.delivery_log) {  // an idle engine's last lines
    absl::MutexLock lock(&record_mu_);
    options_.delivery_log->Flush();
  }
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
  limits.backlog_in_flight = options_.backlog_in_flight;
  auto batches = spool_->LeaseDue(spool_->Now(), limits);
  if (!batches.ok()) return batches.status();
  std::vector<Job> jobs;
  // Recipients of campaigns outside their send window: back to the queue
  // until it opens, untried (no attempt, not deferred).
  std::vector<queue::Completion> outside;
  // Campaigns that cannot compose any copy (the composer failed to prepare:
  // an unreadable secret file, a template that no longer binds, no DKIM key
  // for its domain): paused with the reason instead of deferring every
  // recipient until it expires; their recipients go back untried.
  absl::flat_hash_map<uint64_t, std::string> to_pause;
  const absl::Time now = spool_->Now();
  const size_t group = std::max<size_t>(1, options_.max_recipients_per_message);
  for (queue::DomainBatch& batch : *batches) {
    // Per campaign, the job of this domain still taking recipients.
    absl::flat_hash_map<uint64_t, size_t> open;
    for (queue::LeasedRecipient& r : batch.recipients) {
      auto campaign = ContextFor(r.campaign);
      if (!campaign->error().ok() && campaign->info().id == r.campaign) {
        to_pause.try_emplace(queue::Value(r.campaign),
                             Cat("cannot compose messages: ", campaign->error().message()));
        queue::Completion c;
        c.campaign = r.campaign;
        c.id = r.id;
        c.outcome = smtp::OutcomeForHold("campaign paused: cannot compose messages", 1000);
        outside.push_back(std::move(c));
        continue;
      }
      if (const queue::SendWindow& w = campaign->info().window; w.set) {
        const absl::Time open = queue::NextWindowOpen(w, now);
        if (open > now) {
          queue::Completion c;
          c.campaign = r.campaign;
          c.id = r.id;
          c.outcome =
              smtp::OutcomeForHold(Cat("campaign ", campaign->info().name,
                                       " is outside its send window (", w.ToString(), ")"),
                                   std::max<int64_t>(1000, absl::ToInt64Milliseconds(open - now)));
          outside.push_back(std::move(c));
          continue;
        }
      }
      if (group > 1 && campaign->identical_copies()) {
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
      if (options_.registry) {
        absl::MutexLock lock(&record_mu_);
        job.labels = {CampaignLabel(r.campaign, campaign->info().name),
                      options_.registry->domains().Resolve(batch.domain)};
      }
      job.mail_from = campaign->ReturnPath(queue::Value(r.id), r.email);
      job.campaign = queue::Value(r.campaign);
      if (const std::string& pool = campaign->info().egress_pool; !pool.empty()) {
        auto it = std::find(options_.egress_pools.begin(), options_.egress_pools.end(), pool);
        if (it != options_.egress_pools.end())
          job.egress_pool = static_cast<int16_t>(it - options_.egress_pools.begin());
        else if (warned_pools_.insert(pool).second)
          SALVO_LOG(kWarning,
                    "campaign '{}' names egress_pool '{}', which the configuration does not "
                    "define: it is sent from the default address",
                    campaign->info().name, pool);
      }
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
  if (!outside.empty()) {
    if (absl::Status st = spool_->CompleteBatch(outside);
        !st.ok() && st.code() != absl::StatusCode::kFailedPrecondition)
      return st;
  }
  for (const auto& [id, why] : to_pause) {
    // Rebuilt after a resume: the operator may have fixed the cause.
    campaigns_.erase(id);
    absl::Status st = spool_->Pause(queue::CampaignId{id}, why);
    if (st.ok())
      SALVO_LOG(kError, "campaign {} paused: {}", id, why);
    else
      SALVO_LOG(kError, "campaign {}: cannot pause ({}): {}", id, std::string(st.message()), why);
  }
  return jobs;
}

absl::Status SpoolSource::Compose(Job* job, int shard, bool* permanent) {
  const auto* jc = static_cast<const JobContext*>(job->context.get());
  CopyRequest copy;
  copy.recipient = job->recipients.front().address;
  copy.undisclosed_recipients = job->recipients.size() > 1;
  copy.values.assign(jc->values.begin(), jc->values.end());
  copy.recipient_id = jc->recipient_id;
  copy.date = absl::Now();
  dkim::Signer* signer = signers_[static_cast<size_t>(shard) % signers_.size()].get();
  absl::StatusOr<ComposedCopy> composed = jc->campaign->Compose(copy, signer, true, permanent);
  if (!composed.ok()) return composed.status();
  job->dkim.seconds = composed->signing_seconds;
  job->dkim.rsa = composed->rsa_signatures;
  job->dkim.ed25519 = composed->ed25519_signatures;
  job->needs_8bitmime = composed->needs_8bitmime;
  job->needs_smtputf8 = composed->needs_smtputf8;
  for (const JobRecipient& r : job->recipients)
    job->needs_smtputf8 |= message::AddressNeedsSmtpUtf8(r.address);
  job->body = std::make_shared<std::string>(std::move(composed->bytes));
  job->body_crlf = true;  // rendered (and signed) with CRLF line ends only
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

bool SpoolSource::Durable() { return spool_->AllOutcomesWritten(); }

bool SpoolSource::Done(size_t in_flight) {
  if (!options_.until_done || in_flight != 0) return false;
  if (done_) return true;
  auto now = std::chrono::steady_clock::now();
  if (now < next_done_check_) return false;
  next_done_check_ = now + options_.done_check_interval;
  auto all = spool_->AllDone(*options_.until_done);
  done_ = all.ok() ? *all : true;  // a vanished campaign is done too
  // Paused by the engine (it cannot compose its messages): nothing more will
  // be sent until an operator resumes it, so `salvo send` stops waiting.
  if (auto info = spool_->GetCampaign(*options_.until_done);
      info.ok() && info->state == queue::CampaignState::kPaused && !info->pause_reason.empty())
    done_ = true;
  return done_;
}

}  // namespace salvo::delivery
