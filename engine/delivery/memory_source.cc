#include "engine/delivery/memory_source.h"

#include <algorithm>

namespace salvo::delivery {

void InMemorySource::Add(Job job) {
  absl::MutexLock lock(&mu_);
  for (JobRecipient& r : job.recipients)
    if (r.tag1 == 0) r.tag1 = next_tag_++;
  if (!job.recipients.empty()) jobs_[job.recipients.front().tag1] = job;
  ready_.push_back(std::move(job));
}

void InMemorySource::AddSimple(const std::string& from, const std::vector<std::string>& recipients,
                               const std::string& body) {
  auto shared = std::make_shared<const std::string>(body);
  for (const std::string& rcpt : recipients) {
    Job job;
    job.mail_from = from;
    size_t at = rcpt.rfind('@');
    job.domain = at == std::string::npos ? "" : rcpt.substr(at + 1);
    std::transform(job.domain.begin(), job.domain.end(), job.domain.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    job.recipients.push_back({rcpt, 0, 0});
    job.body = shared;
    Add(std::move(job));
  }
}

absl::StatusOr<std::vector<Job>> InMemorySource::Fetch(size_t max_jobs) {
  absl::MutexLock lock(&mu_);
  auto now = Now();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->due <= now) {
      ready_.push_back(std::move(it->job));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<Job> out;
  while (!ready_.empty() && out.size() < max_jobs) {
    out.push_back(std::move(ready_.front()));
    ready_.pop_front();
  }
  return out;
}

absl::Status InMemorySource::Complete(absl::Span<JobResult> results) {
  absl::MutexLock lock(&mu_);
  auto now = Now();
  for (JobResult& r : results) {
    Job retry;
    bool have_retry = false;
    for (size_t i = 0; i < r.recipients.size() && i < r.outcomes.size(); ++i) {
      const JobRecipient& rcpt = r.recipients[i];
      const smtp::Outcome& o = r.outcomes[i];
      if (o.held()) {
        // Not attempted: back after the hold, no attempt counted.
        ++held_;
        auto it = jobs_.find(r.recipients.front().tag1);
        if (it == jobs_.end()) continue;
        Job again = it->second;
        again.recipients = {rcpt};
        jobs_[rcpt.tag1] = again;
        waiting_.push_back({now + std::chrono::milliseconds(o.hold_ms), std::move(again)});
        continue;
      }
      final_[rcpt.address] = o;
      log_.emplace_back(rcpt.address, o);
      int n = ++attempts_[rcpt.address];
      if (options_.retry_deferred && o.disposition == smtp::Disposition::kDeferred &&
          n < options_.max_attempts) {
        auto it = jobs_.find(r.recipients.front().tag1);
        if (it == jobs_.end()) continue;
        if (!have_retry) {
          retry = it->second;
          retry.recipients.clear();
          have_retry = true;
        }
        retry.recipients.push_back(rcpt);
      }
    }
    if (have_retry) {
      jobs_[retry.recipients.front().tag1] = retry;
      waiting_.push_back({now + options_.retry_delay, std::move(retry)});
    }
  }
  return absl::OkStatus();
}

bool InMemorySource::Done(size_t in_flight) {
  absl::MutexLock lock(&mu_);
  return !options_.run_forever && in_flight == 0 && ready_.empty() && waiting_.empty();
}

std::map<std::string, smtp::Outcome> InMemorySource::Final() const {
  absl::MutexLock lock(&mu_);
  return final_;
}

std::vector<std::pair<std::string, smtp::Outcome>> InMemorySource::Attempts() const {
  absl::MutexLock lock(&mu_);
  return log_;
}

size_t InMemorySource::Count(smtp::Disposition d) const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [addr, o] : final_)
    if (o.disposition == d) ++n;
  return n;
}

size_t InMemorySource::held() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

size_t InMemorySource::pending() const {
  absl::MutexLock lock(&mu_);
  return ready_.size() + waiting_.size();
}

}  // namespace salvo::delivery
