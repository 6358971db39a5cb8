// Bad keys are refused at load time with a clear message naming the file.
#include "dkim/key_store.h"

#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "engine/common/base64.h"
#include "engine/common/strings.h"
#include "gtest/gtest.h"
#include "tests/dkim/test_util.h"

namespace salvo::dkim {
namespace {

using testing::TempDir;
using testing::WriteFileOrDie;

std::string Pem(EVP_PKEY* pkey, const EVP_CIPHER* cipher = nullptr) {
  BIO* bio = BIO_new(BIO_s_mem());
  char pass[] = "secret";
  PEM_write_bio_PrivateKey(bio, pkey, cipher, reinterpret_cast<unsigned char*>(pass),
                           cipher ? 6 : 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return out;
}

class DkimKeyStoreTest : public ::testing::Test {
 protected:
  absl::StatusOr<DkimKey> LoadText(const std::string& name, const std::string& pem,
                                   KeyType expected = KeyType::kAuto, int mode = 0600) {
    const std::string path = dir_.File(name);
    WriteFileOrDie(path, pem, mode);
    return LoadKey(KeySpec{"Example.COM", "s1", path, expected});
  }
  TempDir dir_;
};

void ExpectError(const absl::StatusOr<DkimKey>& key, const std::string& path,
                 const std::string& what) {
  ASSERT_FALSE(key.ok()) << "expected an error containing '" << what << "'";
  const std::string msg(key.status().message());
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << "error does not name the file: " << msg;
  EXPECT_NE(msg.find("s1._domainkey.Example.COM"), std::string::npos) << msg;
}

TEST_F(DkimKeyStoreTest, LoadsRsaAndEd25519) {
  EvpPkeyPtr rsa(EVP_RSA_gen(2048));
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  auto r = LoadText("rsa.pem", Pem(rsa.get()), KeyType::kRsa);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, KeyType::kRsa);
  EXPECT_EQ(r->bits, 2048);
  EXPECT_EQ(r->domain, "example.com");
  EXPECT_EQ(r->Algorithm(), "rsa-sha256");
  auto e = LoadText("ed.pem", Pem(ed.get()));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, KeyType::kEd25519);
  EXPECT_EQ(e->Algorithm(), "ed25519-sha256");
  // Group-readable is allowed (e.g. root:salvo 0640); only "others" is refused.
  EXPECT_TRUE(LoadText("ed-0640.pem", Pem(ed.get()), KeyType::kAuto, 0640).ok());
}

TEST_F(DkimKeyStoreTest, RefusesWorldReadable) {
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  const std::string path = dir_.File("open.pem");
  auto k = LoadText("open.pem", Pem(ed.get()), KeyType::kAuto, 0644);
  ExpectError(k, path, "readable by others (mode 0644)");
  ExpectError(k, path, "chmod 600 " + path);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(DkimKeyStoreTest, RefusesWrongFormat) {
  ExpectError(LoadText("garbage.pem", "this is not a key\n"), dir_.File("garbage.pem"),
              "not a PEM private key");
  ExpectError(
      LoadText("broken.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
      dir_.File("broken.pem"), "cannot parse the PEM private key");
  EvpPkeyPtr rsa(EVP_RSA_gen(1024));
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, rsa.get());
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string pub(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  ExpectError(LoadText("pub.pem", pub), dir_.File("pub.pem"), "this is a public key");
  ExpectError(LoadText("enc.pem", Pem(rsa.get(), EVP_aes_256_cbc())), dir_.File("enc.pem"),
              "encrypted");
}

TEST_F(DkimKeyStoreTest, RefusesWrongType) {
  EvpPkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  ExpectError(LoadText("ec.pem", Pem(ec.get())), dir_.File("ec.pem"),
              "unsupported key type id-ecPublicKey (DKIM signs with RSA or Ed25519 keys)");
  EvpPkeyPtr rsa(EVP_RSA_gen(1024));
  ExpectError(LoadText("rsa.pem", Pem(rsa.get()), KeyType::kEd25519), dir_.File("rsa.pem"),
              "configured as type ed25519 but the file holds an rsa key");
}

TEST_F(DkimKeyStoreTest, RefusesTooShortRsa) {
  EvpPkeyPtr rsa(EVP_RSA_gen(768));
  ASSERT_NE(rsa, nullptr);
  ExpectError(LoadText("short.pem", Pem(rsa.get())), dir_.File("short.pem"),
              "RSA key of 768 bits is too short (DKIM needs at least 1024");
}

TEST_F(DkimKeyStoreTest, RefusesUnreadable) {
  const std::string missing = dir_.File("missing.pem");
  auto k = LoadKey(KeySpec{"Example.COM", "s1", missing, KeyType::kAuto});
  ExpectError(k, missing, "cannot open key file");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kNotFound);
  // A directory is not a key file.
  ExpectError(LoadKey(KeySpec{"Example.COM", "s1", dir_.path(), KeyType::kAuto}), dir_.path(),
              "not a regular file");
  if (::geteuid() != 0) {  // root reads mode 0000 files; CI runs as root
    EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    auto locked = LoadText("locked.pem", Pem(ed.get()), KeyType::kAuto, 0000);
    ExpectError(locked, dir_.File("locked.pem"), "Permission denied");
  }
}

TEST_F(DkimKeyStoreTest, StoreLookupAndDuplicates) {
  EvpPkeyPtr rsa(EVP_RSA_gen(1024));
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  WriteFileOrDie(dir_.File("a.pem"), Pem(rsa.get()));
  WriteFileOrDie(dir_.File("b.pem"), Pem(ed.get()));
  auto store = KeyStore::Load({{"example.com", "rsa1", dir_.File("a.pem")},
                               {"example.com", "ed1", dir_.File("b.pem")},
                               {"other.org", "x", dir_.File("b.pem")}});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->size(), 3u);
  EXPECT_EQ((*store)->KeysFor("EXAMPLE.com").size(), 2u);
  EXPECT_NE((*store)->Find("other.org", "x"), nullptr);
  EXPECT_EQ((*store)->Domains(), (std::vector<std::string>{"example.com", "other.org"}));
  auto dup = KeyStore::Load(
      {{"example.com", "s", dir_.File("a.pem")}, {"example.com", "s", dir_.File("b.pem")}});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  // The first bad key stops the load, naming its file.
  auto bad = KeyStore::Load(
      {{"example.com", "s", dir_.File("a.pem")}, {"example.com", "t", dir_.File("nope.pem")}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nope.pem"), std::string_view::npos);
}

TEST(DkimPublicKeyRecord, Formats) {
  auto rsa = GenerateKey(KeyType::kRsa, 2048, "example.com", "s2048");
  ASSERT_TRUE(rsa.ok()) << rsa.status();
  auto rec = PublicKeyRecord(rsa->key);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->rfind("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 0), 0u)
      << *rec;
  const std::string line = ZoneFileLine(rsa->key, *rec);
  EXPECT_EQ(line.rfind("s2048._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; p=", 0), 0u);
  // Every quoted string is at most 255 octets.
  std::size_t pos = 0;
  int strings = 0;
  while ((pos = line.find('"', pos)) != std::string::npos) {
    const std::size_t end = line.find('"', pos + 1);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - pos - 1, 255u);
    pos = end + 1;
    ++strings;
  }
  EXPECT_GE(strings, 2);

  auto ed = GenerateKey(KeyType::kEd25519, 0, "example.com", "ed");
  ASSERT_TRUE(ed.ok());
  auto edrec = PublicKeyRecord(ed->key);
  ASSERT_TRUE(edrec.ok());
  ASSERT_EQ(edrec->rfind("v=DKIM1; k=ed25519; p=", 0), 0u);
  std::string raw;
  ASSERT_TRUE(Base64Decode(edrec->substr(22), &raw));
  EXPECT_EQ(raw.size(), 32u);  // the raw public key, not DER

  // The RFC 8463 key gives the RFC's published record.
  DkimKey rfc =
      testing::LoadTestKey("rfc8463/ed25519.private.pkcs8.pem", "football.example.com", "brisbane");
  auto rfcrec = PublicKeyRecord(rfc);
  ASSERT_TRUE(rfcrec.ok());
  EXPECT_EQ(*rfcrec, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  EXPECT_FALSE(GenerateKey(KeyType::kRsa, 512, "example.com", "s").ok());
}

}  // namespace
}  // namespace salvo::dkim
