// RFC 8463 Appendix A: the body hash, and both b= values reproduced byte for
// byte from the RFC's own DKIM-Signature header text (Ed25519 and RSA PKCS#1
// v1.5 are deterministic).
#include <string>

#include "dkim/canonicalization.h"
#include "dkim/signer.h"
#include "gtest/gtest.h"
#include "tests/dkim/test_util.h"

namespace salvo::dkim {
namespace {

using testing::DataPath;
using testing::LoadTestKey;
using testing::ReadFileOrDie;

constexpr char kBodyHash[] = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
constexpr char kEd25519B[] =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
constexpr char kRsaB[] =
    "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mP"
    "YQTnGdaSGsgeefOsk2JzdA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";

// The RFC's DKIM-Signature fields, in message order, with b= emptied: the
// field text up to and including "b=" (tag order, spacing, folding kept).
std::vector<std::string> RfcSignatureTemplates(const ParsedMessage& signed_msg) {
  std::vector<std::string> out;
  for (const HeaderField& f : signed_msg.fields) {
    if (f.name != "DKIM-Signature") continue;
    std::string raw(f.raw);
    const std::size_t b = raw.find(" b=");
    EXPECT_NE(b, std::string::npos);
    out.push_back(raw.substr(0, b + 3));
  }
  return out;
}

std::string Unfolded(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') out.push_back(c);
  }
  return out;
}

TEST(DkimRfc8463, BodyHash) {
  Signer signer;
  auto bh = signer.BodyHash(ReadFileOrDie(DataPath("rfc8463/unsigned-message.eml")),
                            Canonicalization::kRelaxed);
  ASSERT_TRUE(bh.ok()) << bh.status();
  EXPECT_EQ(*bh, kBodyHash);
  EXPECT_EQ(
      CanonicalizeBody(Canonicalization::kRelaxed,
                       ParseMessage(ReadFileOrDie(DataPath("rfc8463/unsigned-message.eml")))->body),
      ReadFileOrDie(DataPath("rfc8463/canon-body.relaxed.bin")));
}

TEST(DkimRfc8463, ReproducesBothSignaturesByteForByte) {
  const std::string signed_text = ReadFileOrDie(DataPath("rfc8463/signed-message.eml"));
  auto signed_msg = ParseMessage(signed_text);
  ASSERT_TRUE(signed_msg.ok()) << signed_msg.status();
  const auto templates = RfcSignatureTemplates(*signed_msg);
  ASSERT_EQ(templates.size(), 2u);

  // The message the RFC signed: the one without the two DKIM-Signature fields.
  const std::string unsigned_text = ReadFileOrDie(DataPath("rfc8463/unsigned-message.eml"));
  auto message = ParseMessage(unsigned_text);
  ASSERT_TRUE(message.ok());

  DkimKey ed = LoadTestKey("rfc8463/ed25519.private.pkcs8.pem", "football.example.com", "brisbane");
  DkimKey rsa = LoadTestKey("rfc8463/rsa.private.pem", "football.example.com", "test");
  ASSERT_EQ(ed.type, KeyType::kEd25519);
  ASSERT_EQ(rsa.type, KeyType::kRsa);
  EXPECT_EQ(rsa.bits, 1024);

  Signer signer;
  auto ed_b = signer.SignFieldTemplate(*message, templates[0], ed);
  ASSERT_TRUE(ed_b.ok()) << ed_b.status();
  EXPECT_EQ(*ed_b, kEd25519B);
  auto rsa_b = signer.SignFieldTemplate(*message, templates[1], rsa);
  ASSERT_TRUE(rsa_b.ok()) << rsa_b.status();
  EXPECT_EQ(*rsa_b, kRsaB);

  // And the values in the signed message itself are those.
  const std::string ed_field(signed_msg->fields[0].raw);
  const std::string rsa_field(signed_msg->fields[1].raw);
  EXPECT_EQ(Unfolded(ed_field.substr(ed_field.find(" b=") + 3)), kEd25519B);
  EXPECT_EQ(Unfolded(rsa_field.substr(rsa_field.find(" b=") + 3)), kRsaB);
}

TEST(DkimRfc8463, SalvoFormatOverTheSameMessageIsDeterministic) {
  const std::string text = ReadFileOrDie(DataPath("rfc8463/unsigned-message.eml"));
  DkimKey ed = LoadTestKey("rfc8463/ed25519.private.pkcs8.pem", "football.example.com", "brisbane");
  DkimKey rsa = LoadTestKey("rfc8463/rsa.private.pem", "football.example.com", "test");
  Signer signer;
  SignOptions options;
  options.timestamp = 1528637909;
  options.identity = "@football.example.com";
  const DkimKey* keys[] = {&ed, &rsa};
  auto a = signer.Sign(text, keys, options);
  auto b = signer.Sign(text, keys, options);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);  // both algorithms are deterministic
  EXPECT_NE(a->find("a=ed25519-sha256;"), std::string::npos);
  EXPECT_NE(a->find("a=rsa-sha256;"), std::string::npos);
  EXPECT_NE(a->find(std::string("bh=") + kBodyHash), std::string::npos);
}

}  // namespace
}  // namespace salvo::dkim
