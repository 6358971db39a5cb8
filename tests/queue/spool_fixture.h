#pragma once
// A spool on a temp dir with a FakeClock, plus campaign helpers.
#include <memory>
#include <string>

#include "engine/common/clock.h"
#include "gtest/gtest.h"
#include "queue/spool.h"
#include "tests/queue/test_util.h"

namespace salvo::queue::testing {

inline constexpr char kTemplate[] =
    "From: News <news@example.com>\r\nTo: {{email}}\r\nSubject: Hello {{name}}\r\n\r\nHi "
    "{{name}}!\r\n";

inline smtp::Outcome Delivered() {
  smtp::Outcome o;
  o.disposition = smtp::Disposition::kDelivered;
  o.reply = {250, "2.0.0", "ok queued as X"};
  o.host = "mx.example.com [127.0.0.2]";
  return o;
}
// The shared category failure_scope gives these fine ones (the queue links
// no SMTP code, so the fixture says it itself).
inline smtp::Category ClassOf(const std::string& category) {
  if (category == "invalid_recipient") return smtp::Category::kBadMailbox;
  if (category == "rate_limited") return smtp::Category::kRateLimited;
  if (category == "policy") return smtp::Category::kPolicyRelated;
  return smtp::Category::kOther;
}
inline smtp::Outcome Deferred(std::string category = "rate_limited") {
  smtp::Outcome o;
  o.disposition = smtp::Disposition::kDeferred;
  o.kind = smtp::FailureKind::kReply;
  o.bounce_class = ClassOf(category);
  o.category = std::move(category);
  o.reply = {451, "4.7.1", "try again later"};
  return o;
}
inline smtp::Outcome Bounced(std::string category = "invalid_recipient") {
  smtp::Outcome o;
  o.disposition = smtp::Disposition::kBounced;
  o.kind = smtp::FailureKind::kReply;
  // What engine/smtp/failure_scope decides for a bad mailbox: suppress.
  o.suppress = category == "invalid_recipient";
  o.bounce_class = ClassOf(category);
  o.category = std::move(category);
  o.reply = {550, "5.1.1", "no such user"};
  return o;
}

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    spool_.reset();
    Spool::Options o;
    o.clock = &clock_;
    o.rng_seed = 42;
    absl::StatusOr<std::unique_ptr<Spool>> s = Spool::Open(dir_.File("data"), o);
    ASSERT_TRUE(s.ok()) << s.status();
    spool_ = std::move(*s);
  }

  CampaignSpec Spec(const std::string& csv, const std::string& name = "test") {
    static int n = 0;
    CampaignSpec spec;
    spec.name = name;
    spec.from = "news@example.com";
    spec.template_path = dir_.Write("template.eml", kTemplate);
    spec.recipients_path = dir_.Write("list" + std::to_string(++n) + ".csv", csv);
    return spec;
  }

  CampaignId Load(const std::string& csv, RetryPolicy retry = {}) {
    CampaignSpec spec = Spec(csv);
    spec.retry = retry;
    absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, {});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->id : CampaignId{0};
  }

  std::vector<LeasedRecipient> LeaseAll(absl::Time now, size_t per_domain = 1000) {
    LeaseLimits limits;
    limits.max_per_domain = per_domain;
    limits.max_total = 100000;
    std::vector<LeasedRecipient> out;
    absl::StatusOr<std::vector<DomainBatch>> b = spool_->LeaseDue(now, limits);
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return out;
    for (auto& batch : *b)
      for (auto& r : batch.recipients) out.push_back(std::move(r));
    return out;
  }

  std::vector<DomainBatch> Lease(absl::Time now, const LeaseLimits& limits) {
    absl::StatusOr<std::vector<DomainBatch>> b = spool_->LeaseDue(now, limits);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : std::vector<DomainBatch>();
  }

  RecipientState StateOf(CampaignId c, uint64_t id) {
    absl::StatusOr<RecipientView> v = spool_->GetRecipient(c, RecipientId{id});
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? v->state : RecipientState::kQueued;
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<Spool> spool_;
};

}  // namespace salvo::queue::testing
