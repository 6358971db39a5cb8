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

}  // namespace
}  // namespace salvo
