// CampaignComposer's signed copies (issue 19 item 3): a copy is rendered
// behind a gap for its DKIM-Signature fields, and a campaign whose body has
// no placeholder lets the shard's Signer hash that body once. Every signed
// copy must be exactly the fields a fresh Signer makes for the unsigned copy,
// followed by that copy.
#include "engine/delivery/composer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "dkim/key_store.h"
#include "dkim/signer.h"

namespace salvo::delivery {
namespace {

class ComposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto k = dkim::GenerateKey(dkim::KeyType::kRsa, 2048, "sender.example", "s1");
    ASSERT_TRUE(k.ok()) << k.status();
    ASSERT_TRUE(store_.Add(std::move(k->key)).ok());
    keys_ = store_.KeysFor("sender.example");
    ASSERT_EQ(keys_.size(), 1u);
  }

  std::shared_ptr<const CampaignComposer> Prepare(const std::string& tmpl) {
    queue::CampaignInfo info;
    info.name = "spring";
    info.from = "news@sender.example";
    info.template_path = "spring.eml";
    info.columns = {"email", "name"};
    auto c = CampaignComposer::Prepare(7, info, tmpl, &store_);
    EXPECT_TRUE(c->error().ok()) << c->error();
    EXPECT_TRUE(c->signs());
    return c;
  }

  // Composes copy `n` signed with `signer`, and checks it against the same
  // copy unsigned, signed by a fresh Signer. Returns the unsigned copy.
  std::string ComposeAndCheck(const CampaignComposer& c, dkim::Signer* signer, int n,
                              absl::Time date) {
    const std::string rcpt = "u" + std::to_string(n) + "@dest.example";
    const std::string name = "Name " + std::to_string(n);
    CopyRequest req;
    req.recipient = rcpt;
    req.values = {rcpt, name};
    req.recipient_id = static_cast<uint64_t>(n);
    req.date = date;
    req.message_id_nonce = 1000 + static_cast<uint64_t>(n);
    bool permanent = false;
    auto plain = c.Compose(req, nullptr, false, &permanent);
    auto signed_copy = c.Compose(req, signer, true, &permanent);
    EXPECT_TRUE(plain.ok() && signed_copy.ok());
    if (!plain.ok() || !signed_copy.ok()) return "";
    EXPECT_FALSE(plain->is_signed);
    EXPECT_TRUE(signed_copy->is_signed);
    dkim::Signer fresh;
    dkim::SignOptions options;
    options.timestamp = absl::ToUnixSeconds(date);
    auto fields = fresh.Sign(plain->bytes, keys_, options);
    EXPECT_TRUE(fields.ok()) << fields.status();
    if (fields.ok()) {
      EXPECT_EQ(signed_copy->bytes, *fields + plain->bytes) << "copy " << n;
    }
    return plain->bytes;
  }

  static std::string BodyOf(const std::string& copy) {
    size_t at = copy.find("\r\n\r\n");
    return at == std::string::npos ? "" : copy.substr(at + 4);
  }

  dkim::KeyStore store_;
  std::vector<const dkim::DkimKey*> keys_;
};

TEST_F(ComposerTest, APlaceholderFreeBodyIsHashedOncePerSignerAndSignsLikeAFreshSigner) {
  // The Subject is personal, the body is not: every copy's body is the same
  // bytes, so the Signer hashes it once and compares it afterwards. Dates
  // on both sides of t=1000000000 make the fields one octet longer or
  // shorter than the last copy's, so the gap is sometimes too small, too
  // large or just right.
  std::string body_text;
  for (int i = 0; i < 200; ++i)
    body_text += "The same words for everyone, line " + std::to_string(i) + ".  \n";
  auto c = Prepare("From: News <news@sender.example>\nSubject: Hello {{name}}\n\n" + body_text);
  dkim::Signer signer;
  const absl::Time dates[] = {absl::FromUnixSeconds(999999990), absl::FromUnixSeconds(1767225600)};
  std::string first_body;
  const int kCopies = 12;
  for (int n = 1; n <= kCopies; ++n) {
    SCOPED_TRACE(n);
    std::string copy = ComposeAndCheck(*c, &signer, n, dates[(n / 2) % 2]);
    EXPECT_NE(copy.find("Subject: Hello Name " + std::to_string(n) + "\r\n"), std::string::npos);
    if (n == 1) first_body = BodyOf(copy);
    EXPECT_EQ(BodyOf(copy), first_body);
  }
  EXPECT_GT(first_body.size(), 8000u);
  EXPECT_EQ(signer.body_hashes_reused(), static_cast<uint64_t>(kCopies - 1));
}

TEST_F(ComposerTest, ABodyWithPlaceholdersIsHashedForEveryCopy) {
  // The body differs per copy: nothing is remembered, every body is hashed
  // (and each signature still equals a fresh Signer's).
  auto c = Prepare("From: news@sender.example\nSubject: Hello\n\nDear {{name}},\nNews.\n");
  dkim::Signer signer;
  for (int n = 1; n <= 4; ++n) {
    SCOPED_TRACE(n);
    std::string copy = ComposeAndCheck(*c, &signer, n, absl::FromUnixSeconds(1767225600 + n));
    EXPECT_NE(BodyOf(copy).find("Dear Name " + std::to_string(n)), std::string::npos);
  }
  EXPECT_EQ(signer.body_hashes_reused(), 0u);
}

}  // namespace
}  // namespace salvo::delivery
