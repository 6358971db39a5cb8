// `salvo run`'s report intake settings from the configuration
// (engine/cli/wiring.h ReportIntakeFromConfig): the [verp] secret is read,
// the bounce rules are the shipped ones plus the shaping file's.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "engine/cli/wiring.h"
#include "tests/support/files.h"

namespace salvo::cli {
namespace {

TEST(ReportIntakeConfigTest, ReadsTheVerpSecretAndBuildsTheBounceRules) {
  unsetenv("SALVO_VERP_SECRET");
  testsupport::TempDir dir("salvo-intake-config-test");
  testsupport::WriteFile(dir / "verp.key", "file-secret\n");
  testsupport::WriteFile(dir / "shaping.toml",
                         "[[rule]]\nname = \"ours\"\nmatch = \"frobnicated mailbox\"\n"
                         "category = \"bad-mailbox\"\n");
  auto cfg = config::ParseConfig(
      "shaping_file = \"shaping.toml\"\n[verp]\ndomain = "
      "\"bounce.example.com\"\nsecret_file = \"verp.key\"\n",
      dir / "salvo.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto intake = ReportIntakeFromConfig(*cfg);
  ASSERT_TRUE(intake.ok()) << intake.status();
  EXPECT_EQ((*intake)->options.verp.domain, "bounce.example.com");
  EXPECT_EQ((*intake)->options.verp.prefix, "bounces");
  EXPECT_EQ((*intake)->options.verp.secret, "file-secret");
  ASSERT_NE((*intake)->options.classifier, nullptr);
  EXPECT_EQ((*intake)->options.classifier, (*intake)->classifier.get());
  // The user's rule and the shipped ones classify a bounce's diagnostic code.
  bounce::Report r;
  r.kind = bounce::ReportKind::kBounce;
  r.recipients.push_back({});
  r.recipients[0].status = "5.0.0";
  r.recipients[0].diagnostic_code = "smtp; 550 5.0.0 frobnicated mailbox";
  bounce::Classify(&r, (*intake)->options.classifier);
  EXPECT_EQ(r.recipients[0].category, smtp::Category::kBadMailbox);

  // A bounce domain without a secret is refused, naming the key.
  auto no_secret =
      config::ParseConfig("[verp]\ndomain = \"bounce.example.com\"\n", dir / "salvo.toml");
  ASSERT_TRUE(no_secret.ok());
  auto refused = ReportIntakeFromConfig(*no_secret);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("[verp] secret_file"), std::string::npos)
      << refused.status();
  // The environment supplies it.
  setenv("SALVO_VERP_SECRET", "env-secret", 1);
  auto from_env = ReportIntakeFromConfig(*no_secret);
  unsetenv("SALVO_VERP_SECRET");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ((*from_env)->options.verp.secret, "env-secret");
  // An unreadable secret file names it.
  auto missing = config::ParseConfig(
      "[verp]\ndomain = \"b.example.com\"\nsecret_file = \"nope.key\"\n", dir / "salvo.toml");
  ASSERT_TRUE(missing.ok());
  auto unreadable = ReportIntakeFromConfig(*missing);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_NE(unreadable.status().message().find("[verp] secret_file: cannot read '" +
                                               (dir / "nope.key") + "'"),
            std::string::npos)
      << unreadable.status();
}

}  // namespace
}  // namespace salvo::cli
