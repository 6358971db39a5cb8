#include "engine/message/campaign_settings.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace salvo::message {
namespace {

TEST(CampaignSettingsTest, ReadsOptionsSecretFileAndFeedbackId) {
  auto path = std::filesystem::temp_directory_path() / ("salvo-secret-" + std::to_string(getpid()));
  std::ofstream(path) << "s3cret\n";
  auto s = SettingsFromOptions({{"unsubscribe_url", "https://u.example/x"},
                                {"unsubscribe_mailto", "u@example.com"},
                                {"unsubscribe_secret_file", path.string()},
                                {"feedback_id", "{campaign}:acme:news"}},
                               "17");
  std::filesystem::remove(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->unsubscribe_secret, "s3cret");
  EXPECT_EQ(s->feedback_id, "17:acme:news");
  UnsubscribeSettings u = s->Unsubscribe();
  EXPECT_EQ(u.https_base, "https://u.example/x");
  EXPECT_EQ(u.mailto, "u@example.com");
}

TEST(CampaignSettingsTest, ClearErrorsNameTheOption) {
  unsetenv("SALVO_UNSUBSCRIBE_SECRET");
  auto http = SettingsFromOptions({{"unsubscribe_url", "http://u.example/x"}}, "1");
  ASSERT_FALSE(http.ok());
  EXPECT_NE(std::string(http.status().message()).find("unsubscribe_url must be an https://"),
            std::string::npos);
  auto no_secret = SettingsFromOptions({{"unsubscribe_url", "https://u.example/x"}}, "1");
  ASSERT_FALSE(no_secret.ok());
  EXPECT_NE(std::string(no_secret.status().message()).find("no HMAC secret"), std::string::npos);
  auto missing = SettingsFromOptions({{"unsubscribe_url", "https://u.example/x"},
                                      {"unsubscribe_secret_file", "/nonexistent/secret"}},
                                     "1");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("/nonexistent/secret"), std::string::npos);
  auto mailto_only = SettingsFromOptions({{"unsubscribe_mailto", "u@example.com"}}, "1");
  EXPECT_FALSE(mailto_only.ok());
  auto bad_fid = SettingsFromOptions({{"feedback_id", "a b\r\nX: y"}}, "1");
  EXPECT_FALSE(bad_fid.ok());
  setenv("SALVO_UNSUBSCRIBE_SECRET", "from-env", 1);
  auto env = SettingsFromOptions({{"unsubscribe_url", "https://u.example/x"}}, "1");
  unsetenv("SALVO_UNSUBSCRIBE_SECRET");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->unsubscribe_secret, "from-env");
  EXPECT_TRUE(SettingsFromOptions({}, "1").ok());
  EXPECT_EQ(DomainOf("News@Acme.Example"), "acme.example");
  EXPECT_EQ(DomainOf("nodomain"), "");
}

}  // namespace
}  // namespace salvo::message
