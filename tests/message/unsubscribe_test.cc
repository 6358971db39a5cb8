#include "engine/message/unsubscribe.h"

#include <gtest/gtest.h>

#include <string>

namespace salvo::message {
namespace {

TEST(UnsubscribeTokenTest, VerifiesForItsRecipientAndFailsForAnyOther) {
  const std::string secret = "s3cret";
  for (int i = 0; i < 200; ++i) {
    std::string r = "user" + std::to_string(i) + "@example.com";
    std::string t = MakeUnsubscribeToken(secret, "c1", r);
    ASSERT_EQ(t.size(), 43u);
    for (char c : t) EXPECT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
    EXPECT_TRUE(VerifyUnsubscribeToken(secret, "c1", r, t));
    // Any other recipient, campaign or secret fails.
    for (int j = 0; j < 200; j += 7) {
      if (j == i) continue;
      EXPECT_FALSE(
          VerifyUnsubscribeToken(secret, "c1", "user" + std::to_string(j) + "@example.com", t));
    }
    EXPECT_FALSE(VerifyUnsubscribeToken(secret, "c2", r, t));
    EXPECT_FALSE(VerifyUnsubscribeToken("other", "c1", r, t));
    EXPECT_FALSE(VerifyUnsubscribeToken(secret, "c1", r + "x", t));
    EXPECT_FALSE(VerifyUnsubscribeToken(secret, "c1", "x" + r, t));
  }
}

TEST(UnsubscribeTokenTest, RejectsTamperedAndMalformedTokens) {
  std::string t = MakeUnsubscribeToken("k", "c1", "bob@example.com");
  std::string tampered = t;
  tampered[5] = tampered[5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(VerifyUnsubscribeToken("k", "c1", "bob@example.com", tampered));
  EXPECT_FALSE(VerifyUnsubscribeToken("k", "c1", "bob@example.com", t.substr(0, 42)));
  EXPECT_FALSE(VerifyUnsubscribeToken("k", "c1", "bob@example.com", ""));
  EXPECT_FALSE(VerifyUnsubscribeToken("k", "c1", "bob@example.com", t + "A"));
  // The separator keeps (campaign, recipient) pairs from colliding.
  EXPECT_NE(MakeUnsubscribeToken("k", "c1", "a@b.c"), MakeUnsubscribeToken("k", "c1a", "@b.c"));
}

TEST(UnsubscribeTokenTest, DomainIsCaseInsensitiveLocalPartIsNot) {
  std::string t = MakeUnsubscribeToken("k", "c1", "Bob@Example.COM");
  EXPECT_TRUE(VerifyUnsubscribeToken("k", "c1", "Bob@example.com", t));
  EXPECT_FALSE(VerifyUnsubscribeToken("k", "c1", "bob@example.com", t));
}

TEST(UnsubscribeTokenTest, KeyChangesAreHonouredByThePerThreadCache) {
  std::string a = MakeUnsubscribeToken("key-a", "c1", "bob@example.com");
  std::string b = MakeUnsubscribeToken("key-b", "c1", "bob@example.com");
  EXPECT_NE(a, b);
  EXPECT_EQ(a, MakeUnsubscribeToken("key-a", "c1", "bob@example.com"));
  // Keys longer than the SHA-256 block are hashed first (RFC 2104).
  std::string long_key(200, 'k');
  std::string l = MakeUnsubscribeToken(long_key, "c1", "bob@example.com");
  EXPECT_TRUE(VerifyUnsubscribeToken(long_key, "c1", "bob@example.com", l));
}

TEST(UnsubscribeTokenTest, MatchesAnIndependentHmacSha256) {
  // HMAC-SHA256(key="key", "salvo-unsubscribe-v1\0c\0a@b") computed with
  // python3: base64.urlsafe_b64encode(hmac.new(b"key", msg, "sha256").digest()).rstrip(b"=")
  EXPECT_EQ(MakeUnsubscribeToken("key", "c", "a@b"), "ccFch1be-mbPqnAhwKSos6pNDv1aA4gLKo7gaFZxOxA");
}

TEST(UnsubscribeUrlTest, CarriesCampaignRecipientAndToken) {
  std::string url = MakeUnsubscribeUrl("https://u.example/x", "k", "c1", "a+b@example.com");
  EXPECT_EQ(url, "https://u.example/x?c=c1&r=a%2Bb%40example.com&t=" +
                     MakeUnsubscribeToken("k", "c1", "a+b@example.com"));
  EXPECT_EQ(MakeUnsubscribeUrl("https://u.example/x?list=7", "k", "c1", "a@b.c").substr(0, 33),
            "https://u.example/x?list=7&c=c1&r");
}

}  // namespace
}  // namespace salvo::message
