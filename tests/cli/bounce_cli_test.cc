// `salvo bounce parse` against the built binary: one line per failed
// recipient, JSON, and an unreadable file named in the error (exit 1) while
// the other files are still read.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/cli/cli_runner.h"

namespace salvo::testing {
namespace {

const std::string kBounces = std::string(SALVO_SOURCE_DIR) + "/tests/data/bounces/sisimai/";

TEST(BounceCliTest, ParsePrintsKindRecipientStatusCategoryAndHardness) {
  CommandResult r = RunSalvo({"bounce", "parse", kBounces + "lhost-gmail-01.eml",
                              kBounces + "rfc3834-01.eml", kBounces + "rfc3464-09.eml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(
      r.out.find("lhost-gmail-01.eml\tbounce\tuserunknown@example.jp\t5.1.1\tbad-mailbox\thard\t"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("rfc3834-01.eml\tauto-reply\t-\t-\t-\t-\t-\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rfc3464-09.eml\tdelayed\tkijitora-cat@mx4.gr3.example.jp\t4.3.0\t"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\tsoft\t"), std::string::npos) << r.out;
}

TEST(BounceCliTest, JsonHasEveryField) {
  CommandResult r = RunSalvo({"bounce", "parse", "--json", kBounces + "arf-01.eml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["kind"], "complaint");
  EXPECT_EQ(j[0]["complaint"]["feedback_type"], "abuse");
  EXPECT_EQ(j[0]["original_return_path"], "support@example.ed.jp");
}

TEST(BounceCliTest, AnUnreadableFileIsNamedAndExitsOne) {
  CommandResult r =
      RunSalvo({"bounce", "parse", "/nonexistent/bounce.eml", kBounces + "rfc3834-01.eml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/bounce.eml: cannot read"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("auto-reply"), std::string::npos) << r.out;  // the others are still read
}

}  // namespace
}  // namespace salvo::testing
