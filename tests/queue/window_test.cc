// Send windows ([window] in a campaign file): parsing, and when the window
// is open or next opens, in a time zone, across midnight and weekdays.
#include <gtest/gtest.h>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "queue/campaign.h"

namespace salvo::queue {
namespace {

absl::Time At(int y, int mo, int d, int h, int mi, const char* tz) {
  absl::TimeZone zone;
  EXPECT_TRUE(absl::LoadTimeZone(tz, &zone));
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), zone);
}

TEST(SendWindowTest, OpenInsideClosedOutsideNextOpeningInItsTimeZone) {
  // 2026-12-04 is a Friday.
  auto w = ParseSendWindow("09:00-17:00", {"mon", "tue", "wed", "thu", "fri"}, "Europe/Berlin");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->ToString(), "09:00-17:00 mon,tue,wed,thu,fri Europe/Berlin");
  const absl::Time noon = At(2026, 12, 4, 12, 0, "Europe/Berlin");
  EXPECT_EQ(NextWindowOpen(*w, noon), noon);
  // 08:00 Berlin is 07:00 UTC: closed, opens at 09:00 Berlin.
  EXPECT_EQ(NextWindowOpen(*w, At(2026, 12, 4, 7, 0, "UTC")),
            At(2026, 12, 4, 9, 0, "Europe/Berlin"));
  // Friday 17:00 is past the end: next is Monday 09:00.
  EXPECT_EQ(NextWindowOpen(*w, At(2026, 12, 4, 17, 0, "Europe/Berlin")),
            At(2026, 12, 7, 9, 0, "Europe/Berlin"));
  // Saturday noon: Monday.
  EXPECT_EQ(NextWindowOpen(*w, At(2026, 12, 5, 12, 0, "Europe/Berlin")),
            At(2026, 12, 7, 9, 0, "Europe/Berlin"));
}

TEST(SendWindowTest, AWindowAcrossMidnight) {
  auto w = ParseSendWindow("22:00-06:00", {}, "UTC");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(NextWindowOpen(*w, At(2026, 12, 4, 23, 0, "UTC")), At(2026, 12, 4, 23, 0, "UTC"));
  EXPECT_EQ(NextWindowOpen(*w, At(2026, 12, 5, 5, 59, "UTC")), At(2026, 12, 5, 5, 59, "UTC"));
  EXPECT_EQ(NextWindowOpen(*w, At(2026, 12, 5, 6, 0, "UTC")), At(2026, 12, 5, 22, 0, "UTC"));
}

TEST(SendWindowTest, BadWindowsSayWhat) {
  EXPECT_FALSE(ParseSendWindow("9-17", {}, "UTC").ok());
  EXPECT_FALSE(ParseSendWindow("09:00-25:00", {}, "UTC").ok());
  EXPECT_FALSE(ParseSendWindow("09:00-09:00", {}, "UTC").ok());
  EXPECT_FALSE(ParseSendWindow("09:00-17:00", {"someday"}, "UTC").ok());
  auto tz = ParseSendWindow("09:00-17:00", {}, "Mars/Olympus");
  ASSERT_FALSE(tz.ok());
  EXPECT_NE(std::string(tz.status().message()).find("Mars/Olympus"), std::string::npos);
  EXPECT_TRUE(ParseSendWindow("00:00-24:00", {}, "UTC").ok());
}

}  // namespace
}  // namespace salvo::queue
