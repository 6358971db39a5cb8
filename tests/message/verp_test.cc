#include "engine/message/verp.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cctype>
#include <string>

#include "tests/support/files.h"

namespace salvo::message {
namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

TEST(VerpTest, RoundTripsCampaignAndRecipientAndVerifies) {
  VerpSettings s{"bounce.example.com", "bounces", "s3cret"};
  for (uint64_t c : {1ull, 7ull, 123456789ull}) {
    for (uint64_t r : {1ull, 42ull, 18446744073709551615ull}) {
      const std::string rcpt = "Ann.Lee" + std::to_string(r) + "@Example.org";
      std::string addr = MakeVerpAddress(s, c, r, rcpt);
      ASSERT_FALSE(addr.empty());
      EXPECT_EQ(addr.rfind("bounces+", 0), 0u) << addr;
      EXPECT_NE(addr.find("@bounce.example.com"), std::string::npos) << addr;
      const std::string local = addr.substr(0, addr.find('@'));
      // Short, and nothing an MTA could change by folding case.
      EXPECT_LE(local.size(), 64u) << addr;
      for (char ch : local.substr(8))
        EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-') << addr;
      auto t = ParseVerpAddress("<" + addr + ">");
      ASSERT_TRUE(t.has_value()) << addr;
      EXPECT_EQ(t->campaign, c);
      EXPECT_EQ(t->recipient, r);
      EXPECT_TRUE(VerifyVerpToken(s.secret, *t, rcpt));
      // The stored address is compared case-insensitively.
      EXPECT_TRUE(VerifyVerpToken(s.secret, *t, Upper(rcpt)));
    }
  }
}

// Tokens of mail already sent must keep verifying: the token is HMAC-SHA256
// (RFC 2104) over "salvo-verp-v1\0<campaign>\0<recipient>\0<address, lower
// case>", its first 80 bits in lower-case base32 (values from Python's hmac).
// Two secrets in turn on one thread: the cached key schedule follows the key.
TEST(VerpTest, TokensAreTheDocumentedHmacWhateverSecretCameBefore) {
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(MakeVerpToken("secret-one", 7, 42, "Ana@Example.com"), "7-42-jiiy4tmfspmine5w");
    EXPECT_EQ(MakeVerpToken("secret-two", 8, 43, "bo@example.org"), "8-43-767yo2mbdmump2gk");
  }
}

TEST(VerpTest, SurvivesAnMtaThatUpperOrLowerCasesTheLocalPart) {
  VerpSettings s{"b.example.com", "Bounce", "k"};
  const std::string addr = MakeVerpAddress(s, 3, 9, "x@y.example");
  for (const std::string& variant : {addr, Upper(addr)}) {
    auto t = ParseVerpAddress(variant);
    ASSERT_TRUE(t.has_value()) << variant;
    EXPECT_EQ(t->campaign, 3u);
    EXPECT_EQ(t->recipient, 9u);
    EXPECT_TRUE(VerifyVerpToken("k", *t, "x@y.example")) << variant;
  }
}

TEST(VerpTest, ForgedOrMangledTokensFail) {
  const std::string secret = "s3cret";
  VerpSettings s{"bounce.example.com", "bounces", secret};
  const std::string rcpt = "bob@example.org";
  const std::string addr = MakeVerpAddress(s, 5, 10, rcpt);
  auto t = ParseVerpAddress(addr);
  ASSERT_TRUE(t.has_value());
  // Another secret, campaign, recipient or stored address.
  EXPECT_FALSE(VerifyVerpToken("other", *t, rcpt));
  EXPECT_FALSE(VerifyVerpToken("", *t, rcpt));
  EXPECT_FALSE(VerifyVerpToken(secret, *t, "eve@example.org"));
  VerpToken moved = *t;
  moved.campaign = 6;
  EXPECT_FALSE(VerifyVerpToken(secret, moved, rcpt));
  moved = *t;
  moved.recipient = 11;
  EXPECT_FALSE(VerifyVerpToken(secret, moved, rcpt));
  // Every single-character change of the MAC fails.
  for (size_t i = 0; i < t->mac.size(); ++i) {
    VerpToken m = *t;
    m.mac[i] = m.mac[i] == 'a' ? 'b' : 'a';
    EXPECT_FALSE(VerifyVerpToken(secret, m, rcpt)) << i;
  }
  // Shapes that are not a token at all.
  for (const char* bad :
       {"bounces@bounce.example.com", "bounces+@b.example", "bounces+5-10@b.example",
        "bounces+5-10-abc@b.example", "bounces+0-10-aaaaaaaaaaaaaaaa@b.example",
        "bounces+05-10-aaaaaaaaaaaaaaaa@b.example", "bounces+x-10-aaaaaaaaaaaaaaaa@b.example",
        "bounces+5-10-aaaaaaaaaaaaaaa1@b.example", "bounces+5-10-aaaaaaaaaaaaaaaaa@b.example",
        "bounces+99999999999999999999999-1-aaaaaaaaaaaaaaaa@b.example", "", "<>", "+"})
    EXPECT_FALSE(ParseVerpAddress(bad).has_value()) << bad;
}

TEST(VerpTest, SettingsFromCampaignOptionsOverTheGlobalOnes) {
  testsupport::TempDir dir("salvo-verp-test");
  const std::string key = dir / "verp.key";
  testsupport::WriteFile(key, "campaign-secret\n");
  VerpSettings global{"bounce.example.com", "bounces", "global-secret"};
  // Global on: a campaign without options uses it.
  auto s = VerpFromOptions({}, global);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->enabled());
  EXPECT_EQ(s->secret, "global-secret");
  // Per-campaign domain, prefix and secret.
  s = VerpFromOptions(
      {{"verp_domain", "b.shop.example"}, {"verp_prefix", "rt"}, {"verp_secret_file", key}},
      VerpSettings{});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->domain, "b.shop.example");
  EXPECT_EQ(s->prefix, "rt");
  EXPECT_EQ(s->secret, "campaign-secret");
  // verp = "off" turns a global setting off.
  s = VerpFromOptions({{"verp", "off"}}, global);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->enabled());
  // Nothing configured: off.
  s = VerpFromOptions({}, VerpSettings{});
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->enabled());
}

TEST(VerpTest, BadSettingsAreRefusedNamingTheOption) {
  unsetenv("SALVO_VERP_SECRET");
  struct Case {
    std::map<std::string, std::string> options;
    const char* needle;
  } cases[] = {
      {{{"verp_domain", "bad_domain.example"}, {"verp_secret_file", "/nonexistent"}},
       "option verp_domain"},
      {{{"verp_domain", "localhost"}}, "option verp_domain"},
      {{{"verp_domain", "b.example.com"}, {"verp_prefix", "a+b"}}, "option verp_prefix"},
      {{{"verp_domain", "b.example.com"}, {"verp_secret_file", "/nonexistent/verp.key"}},
       "option verp_secret_file: cannot read '/nonexistent/verp.key'"},
      {{{"verp_domain", "b.example.com"}}, "no HMAC secret"},
      {{{"verp", "on"}}, "needs a bounce domain"},
      {{{"verp", "maybe"}}, "option verp must be"},
  };
  for (const Case& c : cases) {
    auto s = VerpFromOptions(c.options, VerpSettings{});
    ASSERT_FALSE(s.ok()) << c.needle;
    EXPECT_NE(std::string(s.status().message()).find(c.needle), std::string::npos) << s.status();
  }
  // The environment supplies the secret.
  setenv("SALVO_VERP_SECRET", "from-env", 1);
  auto s = VerpFromOptions({{"verp_domain", "b.example.com"}}, VerpSettings{});
  unsetenv("SALVO_VERP_SECRET");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->secret, "from-env");
}

}  // namespace
}  // namespace salvo::message
