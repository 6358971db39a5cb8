// The [verp] settings `salvo run` composes return paths with and verifies
// report tokens with (engine/cli/wiring.h VerpFromConfig): the secret read
// from secret_file, else SALVO_VERP_SECRET; none is an error naming the key.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "engine/cli/wiring.h"
#include "tests/support/files.h"

namespace salvo::cli {
namespace {

TEST(VerpFromConfigTest, ReadsTheSecretFileElseTheEnvironment) {
  unsetenv("SALVO_VERP_SECRET");
  testsupport::TempDir dir("salvo-verp-config-test");
  testsupport::WriteFile(dir / "verp.key", "file-secret\n");
  auto cfg = config::ParseConfig(
      "[verp]\ndomain = \"bounce.example.com\"\nsecret_file = \"verp.key\"\n", dir / "salvo.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto verp = VerpFromConfig(*cfg);
  ASSERT_TRUE(verp.ok()) << verp.status();
  EXPECT_EQ(verp->domain, "bounce.example.com");
  EXPECT_EQ(verp->prefix, "bounces");
  EXPECT_EQ(verp->secret, "file-secret");

  // A bounce domain without a secret is refused, naming the key.
  auto no_secret =
      config::ParseConfig("[verp]\ndomain = \"bounce.example.com\"\n", dir / "salvo.toml");
  ASSERT_TRUE(no_secret.ok());
  auto refused = VerpFromConfig(*no_secret);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("[verp] secret_file"), std::string::npos)
      << refused.status();
  // The environment supplies it.
  setenv("SALVO_VERP_SECRET", "env-secret", 1);
  auto from_env = VerpFromConfig(*no_secret);
  unsetenv("SALVO_VERP_SECRET");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->secret, "env-secret");
  // An unreadable secret file names it.
  auto missing = config::ParseConfig(
      "[verp]\ndomain = \"b.example.com\"\nsecret_file = \"nope.key\"\n", dir / "salvo.toml");
  ASSERT_TRUE(missing.ok());
  auto unreadable = VerpFromConfig(*missing);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_NE(unreadable.status().message().find("[verp] secret_file: cannot read '" +
                                               (dir / "nope.key") + "'"),
            std::string::npos)
      << unreadable.status();
}

}  // namespace
}  // namespace salvo::cli
