#include "engine/common/log.h"

#include <gtest/gtest.h>

namespace salvo {
namespace {

TEST(LogTest, ParsesEveryLevelNameAndRejectsOthers) {
  LogLevel level;
  ASSERT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  ASSERT_TRUE(ParseLogLevel("warn", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  ASSERT_TRUE(ParseLogLevel("off", &level));
  EXPECT_EQ(level, LogLevel::kOff);
  EXPECT_FALSE(ParseLogLevel("loud", &level));
}

TEST(LogTest, LevelFiltersLines) {
  SetLogLevel(LogLevel::kError);
  testing::internal::CaptureStderr();
  SALVO_LOG(kInfo, "hidden {}", 1);
  SALVO_LOG(kError, "shown {}", 2);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("hidden"), std::string::npos);
  EXPECT_NE(err.find("ERROR log_test.cc:"), std::string::npos);
  EXPECT_NE(err.find("shown 2"), std::string::npos);
  SetLogLevel(LogLevel::kInfo);
}

TEST(LogDeathTest, CheckNamesTheInvariant) {
  EXPECT_DEATH(SALVO_CHECK(1 + 1 == 3), "invariant violated: 1 \\+ 1 == 3");
}

}  // namespace
}  // namespace salvo
