// Signer output format: tags, default header list and over-signing, folding,
// dual signing, and that the emitted field is exactly the one that was signed.
#include "dkim/signer.h"

#include <atomic>
#include <random>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/dkim/test_util.h"

namespace salvo::dkim {
namespace {

constexpr char kMessage[] =
    "From: Shop <news@example.com>\r\n"
    "To: alice@example.net\r\n"
    "Subject: Hello\r\n"
    "Date: Sat, 28 Nov 2026 01:00:00 +0000\r\n"
    "Message-ID: <1@example.com>\r\n"
    "X-Campaign: c1\r\n"
    "List-Unsubscribe: <https://example.com/u/1>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "Received: from a by b\r\n"
    "\r\n"
    "Hi there.\r\n";

std::vector<std::string> SplitFields(const std::string& fields) {
  const std::string message = fields + "\r\n";  // the views point into it
  auto parsed = ParseMessage(message);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  std::vector<std::string> out;
  for (const auto& f : parsed->fields) out.emplace_back(f.raw);
  return out;
}

std::string Tag(const std::string& field, const std::string& tag) {
  std::string compact;
  for (char c : field.substr(field.find(':') + 1)) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') compact.push_back(c);
  }
  std::size_t pos = 0;
  while (pos < compact.size()) {
    std::size_t end = compact.find(';', pos);
    if (end == std::string::npos) end = compact.size();
    const std::string part = compact.substr(pos, end - pos);
    if (part.rfind(tag + "=", 0) == 0) return part.substr(tag.size() + 1);
    pos = end + 1;
  }
  return "<none>";
}

class DkimSignerTest : public ::testing::Test {
 protected:
  // RSA-2048 generation is slow: one pair of keys for the whole suite.
  static void SetUpTestSuite() {
    auto rsa = GenerateKey(KeyType::kRsa, 2048, "example.com", "rsa2026");
    auto ed = GenerateKey(KeyType::kEd25519, 0, "example.com", "ed2026");
    ASSERT_TRUE(rsa.ok() && ed.ok());
    rsa_key_ = new DkimKey(std::move(rsa->key));
    ed_key_ = new DkimKey(std::move(ed->key));
  }
  static void TearDownTestSuite() {
    delete rsa_key_;
    delete ed_key_;
  }
  void SetUp() override { options_.timestamp = 1764291600; }
  static inline DkimKey* rsa_key_ = nullptr;
  static inline DkimKey* ed_key_ = nullptr;
  const DkimKey& rsa_ = *rsa_key_;
  const DkimKey& ed_ = *ed_key_;
  SignOptions options_;
  Signer signer_;
};

TEST_F(DkimSignerTest, DualSignatureTagsAndDefaultHeaders) {
  const DkimKey* keys[] = {&rsa_, &ed_};
  auto out = signer_.Sign(kMessage, keys, options_);
  ASSERT_TRUE(out.ok()) << out.status();
  const auto fields = SplitFields(*out);
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(Tag(fields[0], "a"), "rsa-sha256");
  EXPECT_EQ(Tag(fields[1], "a"), "ed25519-sha256");
  for (const auto& f : fields) {
    EXPECT_EQ(f.rfind("DKIM-Signature: v=1; a=", 0), 0u) << f;
    EXPECT_EQ(Tag(f, "c"), "relaxed/relaxed");
    EXPECT_EQ(Tag(f, "d"), "example.com");
    EXPECT_EQ(Tag(f, "t"), "1764291600");
    EXPECT_EQ(Tag(f, "x"), "<none>");
    EXPECT_EQ(Tag(f, "i"), "<none>");
    // Present defaults once per occurrence, over-signed names once more
    // (also when absent); X-Campaign and Received are not signed.
    EXPECT_EQ(Tag(f, "h"),
              "from:from:reply-to:subject:subject:date:date:message-id:message-id:to:to:cc:"
              "mime-version:content-type:content-transfer-encoding:list-unsubscribe:"
              "list-unsubscribe:list-unsubscribe-post:list-unsubscribe-post:feedback-id");
    // Lines <= 78 columns, CRLF-separated, continuation lines start with SP.
    std::size_t start = 0;
    while (start < f.size()) {
      std::size_t end = f.find("\r\n", start);
      if (end == std::string::npos) end = f.size();
      EXPECT_LE(end - start, 78u) << f.substr(start, end - start);
      if (start > 0) {
        EXPECT_EQ(f[start], ' ');
      }
      start = end + 2;
    }
  }
  EXPECT_EQ(Tag(fields[0], "bh"), Tag(fields[1], "bh"));
  EXPECT_EQ(Tag(fields[0], "s"), "rsa2026");
  EXPECT_EQ(Tag(fields[1], "s"), "ed2026");
  EXPECT_EQ(Tag(fields[0], "b").size(), 344u);  // 256-byte RSA-2048 signature
  EXPECT_EQ(Tag(fields[1], "b").size(), 88u);   // 64-byte Ed25519 signature
}

TEST_F(DkimSignerTest, EmittedFieldIsTheSignedField) {
  // Both algorithms are deterministic: re-signing the emitted field with b=
  // emptied (its folding kept) must give the same b=, for every c= choice.
  for (auto hc : {Canonicalization::kSimple, Canonicalization::kRelaxed}) {
    for (auto bc : {Canonicalization::kSimple, Canonicalization::kRelaxed}) {
      options_.header_canon = hc;
      options_.body_canon = bc;
      options_.expire_after_seconds = 86400;
      options_.identity = "news@example.com";
      const DkimKey* keys[] = {&ed_, &rsa_};
      auto out = signer_.Sign(kMessage, keys, options_);
      ASSERT_TRUE(out.ok()) << out.status();
      auto parsed = ParseMessage(kMessage);
      ASSERT_TRUE(parsed.ok());
      const auto fields = SplitFields(*out);
      ASSERT_EQ(fields.size(), 2u);
      for (std::size_t i = 0; i < 2; ++i) {
        const std::string& f = fields[i];
        EXPECT_EQ(Tag(f, "x"), "1764378000");
        EXPECT_EQ(Tag(f, "i"), "news@example.com");
        const std::string templ = f.substr(0, f.find("\r\n b=") + 5);
        auto b = signer_.SignFieldTemplate(*parsed, templ, i == 0 ? ed_ : rsa_);
        ASSERT_TRUE(b.ok()) << b.status();
        EXPECT_EQ(*b, Tag(f, "b")) << f;
      }
    }
  }
}

TEST_F(DkimSignerTest, ExplicitHeaderListAndOverSigning) {
  options_.headers = {"From", "Subject", "To", "From"};
  const DkimKey* keys[] = {&ed_};
  auto out = signer_.Sign(kMessage, keys, options_);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(Tag(*out, "h"), "from:subject:to:from");
  options_.headers = {"Subject", "To"};
  auto no_from = signer_.Sign(kMessage, keys, options_);
  ASSERT_FALSE(no_from.ok());
  EXPECT_NE(no_from.status().message().find("must include From"), std::string_view::npos);
  options_.headers = {"From", "Bad Name"};
  EXPECT_FALSE(signer_.Sign(kMessage, keys, options_).ok());
}

TEST_F(DkimSignerTest, DuplicateHeadersSignedBottomUp) {
  // Two To fields: h= lists "to" three times (two + one over-sign); the
  // template re-sign check proves the instances are taken bottom-up.
  const std::string msg =
      "From: a@example.com\r\nTo: first@x.org\r\nTo: second@x.org\r\nSubject: s\r\n\r\nbody\r\n";
  const DkimKey* keys[] = {&ed_};
  auto out = signer_.Sign(msg, keys, options_);
  ASSERT_TRUE(out.ok());
  const std::string h = Tag(*out, "h");
  EXPECT_NE(h.find("to:to:to"), std::string::npos) << h;
  // Swapping the two To fields changes the signature (order matters).
  const std::string swapped =
      "From: a@example.com\r\nTo: second@x.org\r\nTo: first@x.org\r\nSubject: s\r\n\r\nbody\r\n";
  auto out2 = signer_.Sign(swapped, keys, options_);
  ASSERT_TRUE(out2.ok());
  EXPECT_NE(Tag(*out, "b"), Tag(*out2, "b"));
  EXPECT_EQ(Tag(*out, "bh"), Tag(*out2, "bh"));
}

TEST_F(DkimSignerTest, LongDomainAndFolding) {
  auto key = GenerateKey(KeyType::kEd25519, 0,
                         "a-rather-long-subdomain-name.of-a-very-long-domain-name.example.com",
                         "selector-with-a-long-name-2026-11");
  ASSERT_TRUE(key.ok());
  const DkimKey* keys[] = {&key->key};
  auto out = signer_.Sign(kMessage, keys, options_);
  ASSERT_TRUE(out.ok());
  std::size_t start = 0;
  while (start < out->size()) {
    const std::size_t end = out->find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - start, 78u);
    start = end + 2;
  }
}

TEST_F(DkimSignerTest, BadInput) {
  const DkimKey* keys[] = {&ed_};
  EXPECT_FALSE(signer_.Sign("From: a@b.c\nTo: x\n\nbody\n", keys, options_).ok());
  EXPECT_FALSE(signer_.Sign(kMessage, {}, options_).ok());
  auto no_from = signer_.Sign("To: a@b.c\r\nSubject: x\r\n\r\nbody\r\n", keys, options_);
  ASSERT_FALSE(no_from.ok());
  EXPECT_NE(no_from.status().message().find("no From header"), std::string_view::npos);
  const DkimKey* null_key[] = {nullptr};
  EXPECT_FALSE(signer_.Sign(kMessage, null_key, options_).ok());
}

TEST_F(DkimSignerTest, ShardsShareKeysEachWithItsOwnSigner) {
  // The engine's model: keys shared read-only, one Signer per shard thread.
  // Both algorithms are deterministic, so every thread must produce exactly
  // the single-threaded result.
  const DkimKey* keys[] = {&rsa_, &ed_};
  auto expected = signer_.Sign(kMessage, keys, options_);
  ASSERT_TRUE(expected.ok());
  std::vector<std::thread> shards;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    shards.emplace_back([&] {
      Signer shard_signer;
      for (int i = 0; i < 25; ++i) {
        auto out = shard_signer.Sign(kMessage, keys, options_);
        if (!out.ok() || *out != *expected) ++mismatches;
      }
    });
  }
  for (auto& t : shards) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(DkimSignerTest, RememberedBodyGivesTheSameSignaturesAsHashingIt) {
  // A campaign whose body has no placeholders: the shard's Signer keeps the
  // body and its hash (SignOptions::remember_body) and compares, not hashes,
  // the next identical body. RSA PKCS#1 v1.5 and Ed25519 are deterministic,
  // so every field must equal a fresh Signer's byte for byte; a body of the
  // same length that differs in one byte, or the same body under the other
  // canonicalization, must be hashed, not taken from memory.
  const DkimKey* keys[] = {&rsa_, &ed_};
  const std::string body = "Hi there.\r\nSame words  for everyone. \r\n\r\n";
  std::string other_body = body;
  other_body[3] = 'T';
  auto message = [](int n, const std::string& b) {
    return "From: Shop <news@example.com>\r\nTo: r" + std::to_string(n) +
           "@example.net\r\nSubject: Hello\r\nMessage-ID: <" + std::to_string(n) +
           "@example.com>\r\n\r\n" + b;
  };
  SignOptions remember = options_;
  remember.remember_body = true;
  Signer remembering;
  struct Case {
    int n;
    const std::string* body;
    Canonicalization canon;
    bool reused;
  };
  const Case cases[] = {
      {1, &body, Canonicalization::kRelaxed, false},        // first: hashed, kept
      {2, &body, Canonicalization::kRelaxed, true},         // same body, other headers
      {3, &other_body, Canonicalization::kRelaxed, false},  // same length, one byte differs
      {4, &body, Canonicalization::kSimple, false},         // other canonicalization
      {5, &body, Canonicalization::kSimple, true},
      {6, &body, Canonicalization::kRelaxed, true},
  };
  uint64_t reused = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.n);
    const std::string msg = message(c.n, *c.body);
    remember.body_canon = c.canon;
    SignOptions fresh_options = options_;
    fresh_options.body_canon = c.canon;
    Signer fresh;
    auto expected = fresh.Sign(msg, keys, fresh_options);
    auto got = remembering.Sign(msg, keys, remember);
    ASSERT_TRUE(expected.ok() && got.ok());
    EXPECT_EQ(*got, *expected);
    reused += c.reused ? 1 : 0;
    EXPECT_EQ(remembering.body_hashes_reused(), reused);
    auto bh = fresh.BodyHash(msg, c.canon);
    ASSERT_TRUE(bh.ok());
    EXPECT_EQ(Tag(SplitFields(*got)[0], "bh"), *bh);
  }
  // Without remember_body nothing is kept: a new Signer never reuses.
  Signer plain;
  for (int n = 0; n < 3; ++n) ASSERT_TRUE(plain.Sign(message(n, body), keys, options_).ok());
  EXPECT_EQ(plain.body_hashes_reused(), 0u);
}

TEST_F(DkimSignerTest, RememberedBodiesEmptyLargeAndManyStayCorrect) {
  // Edge cases of the remembered bodies: an empty body (no data() to
  // compare), a body over 1 MiB (hashed every time, never kept), and more
  // distinct bodies than are kept (the oldest is forgotten, then hashed
  // again). Every signature equals a fresh Signer's.
  const DkimKey* keys[] = {&rsa_};
  auto message = [](int n, const std::string& b) {
    return "From: news@example.com\r\nTo: r" + std::to_string(n) + "@example.net\r\n\r\n" + b;
  };
  SignOptions remember = options_;
  remember.remember_body = true;
  Signer remembering;
  uint64_t reused = 0;
  int n = 0;
  auto sign_and_compare = [&](const std::string& body, bool expect_reused) {
    SCOPED_TRACE(n);
    const std::string msg = message(++n, body);
    Signer fresh;
    auto expected = fresh.Sign(msg, keys, options_);
    auto got = remembering.Sign(msg, keys, remember);
    ASSERT_TRUE(expected.ok() && got.ok()) << expected.status() << got.status();
    EXPECT_EQ(*got, *expected);
    reused += expect_reused ? 1 : 0;
    EXPECT_EQ(remembering.body_hashes_reused(), reused);
  };
  sign_and_compare("", false);
  sign_and_compare("", true);
  std::string large;
  while (large.size() <= (1u << 20)) large += "A line of a large newsletter body.\r\n";
  sign_and_compare(large, false);
  sign_and_compare(large, false);  // not kept: hashed again
  std::vector<std::string> bodies;
  for (int i = 0; i < 5; ++i) bodies.push_back("Body number " + std::to_string(i) + ".\r\n");
  for (const std::string& b : bodies) sign_and_compare(b, false);
  // Four are kept (the empty one and bodies[0] were pushed out): the last
  // four come back from memory, the first is hashed again.
  for (int i = 1; i < 5; ++i) sign_and_compare(bodies[i], true);
  sign_and_compare(bodies[0], false);
  // A longer body that starts with a kept one is not that body.
  sign_and_compare(bodies[0] + "P.S.\r\n", false);
}

TEST_F(DkimSignerTest, ArbitraryBytesNeverCrash) {
  // Messages come from templates and recipient data: any bytes must give a
  // signature or a clear error, never a crash (this also runs under ASan).
  std::mt19937 rng(7);
  const char alphabet[] = {'a', ':', ' ', '\t', '\r', '\n', '\r', '\n', 'F', '\0', '\xff'};
  const DkimKey* keys[] = {&ed_};
  int ok = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string msg = round % 2 ? "From: a@example.com\r\n" : "";
    const int len = static_cast<int>(rng() % 200);
    for (int i = 0; i < len; ++i) msg.push_back(alphabet[rng() % sizeof(alphabet)]);
    auto out = signer_.Sign(msg, keys, options_);
    if (out.ok()) {
      ++ok;
      EXPECT_EQ(out->rfind("DKIM-Signature: v=1;", 0), 0u);
    } else {
      EXPECT_FALSE(out.status().message().empty());
    }
  }
  EXPECT_GT(ok, 0);
}

TEST(DkimFoldSignatureField, ShortFieldStaysOnOneLineUntilB) {
  EXPECT_EQ(FoldSignatureField({"v=1", "a=ed25519-sha256", "b="}),
            "DKIM-Signature: v=1; a=ed25519-sha256;\r\n b=");
  EXPECT_EQ(FoldSignatureField({"v=1", "b=abc"}), "DKIM-Signature: v=1;\r\n b=abc");
}

}  // namespace
}  // namespace salvo::dkim
