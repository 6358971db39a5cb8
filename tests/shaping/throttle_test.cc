// Shaping keys at run time: GCRA pacing, connection slots, AIMD, suspension.
// Time is passed in (nanoseconds): no clock, no sleeping.
#include "engine/shaping/throttle.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace salvo::shaping {
namespace {

constexpr int64_t kSec = 1'000'000'000;

Rate R(double per_second) {
  Rate r;
  r.per_second = per_second;
  r.text = std::to_string(per_second) + "/s";
  return r;
}

// Messages taken in `seconds` when asking every millisecond.
int TakenOver(KeyState& k, int64_t start, int seconds) {
  int taken = 0;
  for (int64_t t = start; t < start + seconds * kSec; t += kSec / 1000)
    if (k.TakeMessage(t) == 0) ++taken;
  return taken;
}

TEST(GcraTest, HoldsTheRateWithTheStatedBurst) {
  KeyState k("k", 0, R(50), Rate{});
  const int taken = TakenOver(k, 100 * kSec, 20);
  // 50/s for 20 s, plus the burst (a tenth of a second's worth: 5).
  EXPECT_GE(taken, 1000);
  EXPECT_LE(taken, 1000 + 5);
  // After a pause: the burst at once, then a wait of one interval (20 ms).
  for (int i = 0; i < 5; ++i) EXPECT_EQ(k.TakeMessage(200 * kSec), 0) << i;
  const int64_t wait = k.TakeMessage(200 * kSec);
  EXPECT_GT(wait, 0);
  EXPECT_LE(wait, kSec / 50);
}

TEST(GcraTest, SharedAcrossThreadsTheRateHolds) {
  KeyState k("k", 0, R(100), Rate{});
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int64_t t = 0; t < 10 * kSec; t += kSec / 2000)
        if (k.TakeMessage(t) == 0) taken++;
    });
  for (auto& t : threads) t.join();
  EXPECT_GE(taken.load(), 1000);
  EXPECT_LE(taken.load(), 1000 + 10);
}

TEST(KeyStateTest, ConnectionSlotsAreBoundedAndGivenBack) {
  KeyState k("k", 3, Rate{}, Rate{});
  EXPECT_TRUE(k.AcquireConnection(0));
  EXPECT_TRUE(k.AcquireConnection(0));
  EXPECT_TRUE(k.AcquireConnection(0));
  EXPECT_FALSE(k.MayOpen(0));
  EXPECT_FALSE(k.AcquireConnection(0));
  k.ReleaseConnection();
  EXPECT_TRUE(k.MayOpen(0));
  EXPECT_TRUE(k.AcquireConnection(0));
  EXPECT_EQ(k.open(), 3);
}

TEST(KeyStateTest, ConnectionRateIsPaced) {
  KeyState k("k", 0, Rate{}, R(2));
  int opened = 0;
  for (int64_t t = 0; t < 10 * kSec; t += kSec / 100) {
    if (k.AcquireConnection(t)) {
      ++opened;
      k.ReleaseConnection();
    }
  }
  EXPECT_GE(opened, 20);
  EXPECT_LE(opened, 21);
}

TEST(KeyStateTest, SlowDownCutsToUnderTheObservedRateAndDeliveriesRaiseItBack) {
  KeyState k("k", 20, R(1000), Rate{});
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(k.AcquireConnection(0));
  // The destination accepted 50 a second for two seconds.
  for (int s = 0; s < 2; ++s)
    for (int i = 0; i < 50; ++i) k.Delivered(s * kSec + i * (kSec / 50));
  EXPECT_NEAR(k.observed_rate(2 * kSec + 1), 50, 1);
  ASSERT_TRUE(k.SlowDown(2 * kSec + 1));
  EXPECT_NEAR(k.effective_rate(), 45, 0.5);  // 90% of what it accepted
  EXPECT_EQ(k.connections_now(), 15);        // a quarter fewer connections
  EXPECT_FALSE(k.SlowDown(2 * kSec + 2));    // at most once a second
  // Additive increase: one step a second while deliveries succeed.
  double before = k.effective_rate();
  EXPECT_TRUE(k.Delivered(4 * kSec));
  EXPECT_GT(k.effective_rate(), before);
  EXPECT_LT(k.effective_rate(), before * 1.1);
  EXPECT_EQ(k.connections_now(), 16);
  // Never above the configured limits: after a long good run, back to 1000/s.
  for (int s = 5; s < 200; ++s) k.Delivered(s * kSec);
  EXPECT_DOUBLE_EQ(k.effective_rate(), 1000);
  EXPECT_EQ(k.connections_now(), 20);
}

TEST(KeyStateTest, SlowDownWithoutAConfiguredRateStillConverges) {
  KeyState k("k", 0, Rate{}, Rate{});
  EXPECT_TRUE(std::isinf(k.effective_rate()));
  for (int i = 0; i < 30; ++i) k.Delivered(kSec + i * (kSec / 30));
  ASSERT_TRUE(k.SlowDown(2 * kSec + 5));
  EXPECT_NEAR(k.effective_rate(), 27, 0.5);
}

TEST(KeyStateTest, SuspensionHoldsMessagesAndConnectionsUntilItEnds) {
  KeyState k("k", 0, Rate{}, Rate{});
  k.Suspend(10 * kSec);
  EXPECT_TRUE(k.suspended(5 * kSec));
  EXPECT_EQ(k.TakeMessage(5 * kSec), 5 * kSec);
  EXPECT_FALSE(k.AcquireConnection(5 * kSec));
  k.Suspend(7 * kSec);  // an earlier end does not shorten it
  EXPECT_EQ(k.suspended_until(), 10 * kSec);
  EXPECT_EQ(k.TakeMessage(10 * kSec), 0);
  EXPECT_TRUE(k.AcquireConnection(10 * kSec));
}

TEST(ShaperTest, SharedKeysAreOneObjectAndReloadKeepsTheirState) {
  config::Config cfg;
  ShapingConfig c = DefaultsFrom(cfg);
  Provider p;
  p.name = "big";
  p.domains = {"big.example"};
  p.limits.max_connections = 5;
  c.providers.push_back(p);
  Shaper shaper(c);
  auto a = shaper.Shared("provider.big", 5, Rate{}, Rate{});
  auto b = shaper.Shared("provider.big", 5, Rate{}, Rate{});
  EXPECT_EQ(a.get(), b.get());
  ASSERT_TRUE(a->AcquireConnection(0));
  c.providers[0].limits.max_connections = 1;
  const uint64_t gen = shaper.generation();
  shaper.Reload(c);
  EXPECT_GT(shaper.generation(), gen);
  EXPECT_EQ(a->configured_connections(), 1);
  EXPECT_EQ(a->open(), 1);  // the open connection is still counted
  EXPECT_FALSE(a->AcquireConnection(0));
}

}  // namespace
}  // namespace salvo::shaping
