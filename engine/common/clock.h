#pragma once
// Time sources, two real seams:
// - Clock: wall-clock time (absl::Time). The queue's retry schedule and
//   expiry are tested with a FakeClock.
// - MonotonicClock: steady time for every timer and deadline of the engine
//   (reactor timers, the site pool's backoff and host-down marks, the DNS
//   cache of the router, the feeder's poll and shutdown deadline). Engine
//   tests drive it with a FakeMonotonicClock and advance time instead of
//   sleeping for a retry or a timeout.
#include <chrono>
#include <functional>
#include <map>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace salvo {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // The process-wide real clock.
  static Clock* System();
};

// A clock tests move by hand. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override;
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_;
};

class MonotonicClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~MonotonicClock() = default;
  virtual TimePoint Now() const = 0;
  // True for a clock moved by hand: an event loop must not sleep for a
  // timer's delay in real time, only until the clock moves (see Watch).
  virtual bool manual() const { return false; }
  // Registers `moved` (called on the advancing thread after every move);
  // returns an id for Unwatch. Real clocks never call it.
  virtual int Watch(std::function<void()> moved) const {
    (void)moved;
    return 0;
  }
  virtual void Unwatch(int id) const { (void)id; }
  // std::chrono::steady_clock.
  static const MonotonicClock* Real();
};

// A monotonic clock tests move by hand. Thread-safe. Starts at an arbitrary
// point well after steady_clock's epoch.
class FakeMonotonicClock final : public MonotonicClock {
 public:
  FakeMonotonicClock() : now_(TimePoint(std::chrono::hours(24 * 365))) {}
  TimePoint Now() const override;
  bool manual() const override { return true; }
  int Watch(std::function<void()> moved) const override;
  void Unwatch(int id) const override;
  // Moves time forward by `d` and wakes every watcher.
  void Advance(std::chrono::nanoseconds d);

 private:
  mutable absl::Mutex mu_;
  TimePoint now_;
  mutable std::map<int, std::function<void()>> watchers_;
  mutable int next_id_ = 1;
};

// A wall clock that moves with a monotonic one (from the wall time at
// construction): for deadlines kept as absl::Time (the SMTP session's), so
// they follow a FakeMonotonicClock like every other engine timer.
class WallFromMonotonic final : public Clock {
 public:
  explicit WallFromMonotonic(const MonotonicClock* clock)
      : clock_(clock), wall0_(absl::Now()), mono0_(clock->Now()) {}
  absl::Time Now() const override { return wall0_ + absl::FromChrono(clock_->Now() - mono0_); }

 private:
  const MonotonicClock* clock_;
  absl::Time wall0_;
  MonotonicClock::TimePoint mono0_;
};

}  // namespace salvo
