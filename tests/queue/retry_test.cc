#include "queue/retry.h"

#include "engine/common/duration.h"
#include "gtest/gtest.h"

namespace salvo::queue {
namespace {

TEST(RetryTest, DefaultScheduleDoublesFromFiveToTwentyMinutesAndCapsAtFourHours) {
  RetryPolicy p;
  EXPECT_EQ(RetryDelay(p, 1, 0.0), absl::Minutes(5));
  EXPECT_EQ(RetryDelay(p, 1, 1.0), absl::Minutes(20));
  EXPECT_EQ(RetryDelay(p, 2, 0.0), absl::Minutes(10));
  EXPECT_EQ(RetryDelay(p, 2, 1.0), absl::Minutes(40));
  EXPECT_EQ(RetryDelay(p, 3, 0.5), absl::Minutes(50));
  EXPECT_EQ(RetryDelay(p, 6, 0.0), absl::Minutes(160));
  EXPECT_EQ(RetryDelay(p, 7, 0.0), absl::Hours(4));
  EXPECT_EQ(RetryDelay(p, 1000, 1.0), absl::Hours(4));  // no overflow
}

TEST(RetryTest, ExpiryAndTheLastChanceAtMaxAge) {
  RetryPolicy p;
  const absl::Time q = absl::FromUnixSeconds(1'700'000'000);
  EXPECT_EQ(NextAttempt(p, q, q + absl::Minutes(1), 1, 0.0), q + absl::Minutes(6));
  // Close to the limit: moved to exactly queued + max_age.
  EXPECT_EQ(NextAttempt(p, q, q + absl::Hours(71), 20, 0.0), q + absl::Hours(72));
  EXPECT_EQ(NextAttempt(p, q, q + absl::Hours(72), 21, 0.0), absl::InfiniteFuture());
}

TEST(RetryTest, DurationsAndPolicyValidation) {
  EXPECT_EQ(*ParseDuration("5m"), absl::Minutes(5));
  EXPECT_EQ(*ParseDuration("3d"), absl::Hours(72));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("90"), absl::Seconds(90));
  EXPECT_FALSE(ParseDuration("5 weeks").ok());
  EXPECT_FALSE(ParseDuration("m").ok());
  RetryPolicy bad;
  bad.first_retry_max = absl::Minutes(1);
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_TRUE(RetryPolicy().Validate().ok());
}

}  // namespace
}  // namespace salvo::queue
