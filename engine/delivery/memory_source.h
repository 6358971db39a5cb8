#pragma once
// An in-memory MessageSource for tests and benchmarks: jobs are added up
// front (or while running, from any thread), results are collected. With
// `retry_deferred`, deferred recipients come back after `retry_delay` (a tiny
// stand-in for the queue's retry schedule).
//
// Thread-safe (one mutex): the feeder thread calls Fetch/Complete/Done, tests
// read the results from their own thread.
#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/common/clock.h"
#include "engine/delivery/source.h"

namespace salvo::delivery {

class InMemorySource : public MessageSource {
 public:
  struct Options {
    bool retry_deferred = false;
    std::chrono::milliseconds retry_delay{200};
    int max_attempts = 5;      // then the last deferral stands
    bool run_forever = false;  // Done() never true (like `salvo run`)
    // When retries are due; nullptr = the real steady clock. Pass the
    // engine's FakeMonotonicClock to retry without waiting.
    const MonotonicClock* clock = nullptr;
  };
  InMemorySource() : InMemorySource(Options{}) {}
  explicit InMemorySource(Options options) : options_(options) {}

  // Adds one job; tag1 of every recipient is set to a unique id if 0.
  void Add(Job job);
  // Convenience: one message of `body` to each of `recipients` (one job each).
  void AddSimple(const std::string& from, const std::vector<std::string>& recipients,
                 const std::string& body);

  absl::StatusOr<std::vector<Job>> Fetch(size_t max_jobs) override;
  absl::Status Complete(absl::Span<JobResult> results) override;
  bool Done(size_t in_flight) override;

  // Final (latest) outcome per recipient address, and every attempt in order.
  std::map<std::string, smtp::Outcome> Final() const;
  std::vector<std::pair<std::string, smtp::Outcome>> Attempts() const;
  size_t Count(smtp::Disposition d) const;  // over Final()
  size_t pending() const;
  // Recipients handed back untried by shaping (held), counted per hand-back;
  // they come back after the hold, whatever retry_deferred says.
  size_t held() const;

 private:
  std::chrono::steady_clock::time_point Now() const {
    return (options_.clock != nullptr ? options_.clock : MonotonicClock::Real())->Now();
  }
  struct Waiting {
    std::chrono::steady_clock::time_point due;
    Job job;
  };
  Options options_;
  mutable absl::Mutex mu_;
  std::deque<Job> ready_ ABSL_GUARDED_BY(mu_);
  std::vector<Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, smtp::Outcome> final_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> attempts_ ABSL_GUARDED_BY(mu_);
  size_t held_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<std::string, smtp::Outcome>> log_ ABSL_GUARDED_BY(mu_);
  // Jobs by tag1 of their first recipient, to rebuild a retry.
  std::map<uint64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t next_tag_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace salvo::delivery
