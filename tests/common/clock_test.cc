#include "engine/common/clock.h"

#include <gtest/gtest.h>

namespace salvo {
namespace {

TEST(ClockTest, FakeClockMovesOnlyWhenTold) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
  clock.Advance(absl::Minutes(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1300));
  clock.Set(absl::FromUnixSeconds(7));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(7));
}

TEST(ClockTest, SystemClockIsNearAbslNow) {
  absl::Duration skew = Clock::System()->Now() - absl::Now();
  EXPECT_LT(absl::AbsDuration(skew), absl::Seconds(5));
}

TEST(ClockTest, FakeMonotonicClockMovesOnlyWhenToldAndWakesWatchers) {
  FakeMonotonicClock clock;
  const auto t0 = clock.Now();
  int woken = 0;
  int id = clock.Watch([&] { ++woken; });
  EXPECT_TRUE(clock.manual());
  EXPECT_FALSE(MonotonicClock::Real()->manual());
  clock.Advance(std::chrono::seconds(90));
  EXPECT_EQ(clock.Now() - t0, std::chrono::seconds(90));
  EXPECT_EQ(woken, 1);
  clock.Unwatch(id);
  clock.Advance(std::chrono::seconds(1));
  EXPECT_EQ(woken, 1);
}

}  // namespace
}  // namespace salvo
