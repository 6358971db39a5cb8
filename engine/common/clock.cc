#include "engine/common/clock.h"

namespace salvo {
namespace {
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};
}  // namespace

Clock* Clock::System() {
  static SystemClock clock;
  return &clock;
}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}
void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}
void FakeClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

namespace {
class SteadyMonotonicClock final : public MonotonicClock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};
}  // namespace

const MonotonicClock* MonotonicClock::Real() {
  static SteadyMonotonicClock clock;
  return &clock;
}

MonotonicClock::TimePoint FakeMonotonicClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

int FakeMonotonicClock::Watch(std::function<void()> moved) const {
  absl::MutexLock lock(&mu_);
  watchers_[next_id_] = std::move(moved);
  return next_id_++;
}

void FakeMonotonicClock::Unwatch(int id) const {
  absl::MutexLock lock(&mu_);
  watchers_.erase(id);
}

void FakeMonotonicClock::Advance(std::chrono::nanoseconds d) {
  std::map<int, std::function<void()>> watchers;
  {
    absl::MutexLock lock(&mu_);
    now_ += d;
    watchers = watchers_;
  }
  for (auto& [id, moved] : watchers) moved();
}

}  // namespace salvo
