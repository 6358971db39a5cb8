#pragma once
// DKIM private keys: loaded once from PEM files at start-up (config), checked
// thoroughly there (so a bad key is a start-up error, never a send-time one),
// then shared read-only by every shard. Each shard signs with its own
// dkim::Signer, which keeps its own per-thread OpenSSL contexts.
//
// Thread-safety: a KeyStore is built on one thread, then immutable; share it
// as std::shared_ptr<const KeyStore>. EVP_PKEY objects are only read.
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace salvo::dkim {

enum class KeyType { kAuto, kRsa, kEd25519 };

// "rsa" / "ed25519" / "auto".
std::string_view KeyTypeName(KeyType t);
bool ParseKeyType(std::string_view text, KeyType* out);

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// One loaded signing key for (domain, selector).
struct DkimKey {
  std::string domain;    // d=, lower-case
  std::string selector;  // s=
  KeyType type = KeyType::kRsa;
  int bits = 0;      // RSA modulus size; 256 for Ed25519
  std::string path;  // where it was loaded from (for messages)
  EvpPkeyPtr pkey;
  // "rsa-sha256" / "ed25519-sha256".
  std::string_view Algorithm() const;
};

// What config says about one key.
struct KeySpec {
  std::string domain;
  std::string selector;
  std::string path;                   // PEM file (PKCS#8 or PKCS#1 "RSA PRIVATE KEY")
  KeyType expected = KeyType::kAuto;  // kAuto accepts RSA and Ed25519
};

inline constexpr int kMinRsaBits = 1024;
inline constexpr int kMaxRsaBits = 4096;

// Loads and checks one key file. Errors (all InvalidArgument / NotFound /
// PermissionDenied with the file name in the message):
//   unreadable or missing file; readable by others (mode & 0004: "chmod 600");
//   not a PEM private key; encrypted key; key type not RSA/Ed25519 or not the
//   expected type; RSA shorter than 1024 or longer than 4096 bits.
absl::StatusOr<DkimKey> LoadKey(const KeySpec& spec);
// Same checks on PEM text already in memory (`origin` names it in errors);
// the file-permission check is not applied.
absl::StatusOr<DkimKey> ParseKey(std::string_view pem, const KeySpec& spec,
                                 std::string_view origin);

// The set of keys of a process. Several selectors per domain are allowed
// (e.g. one RSA and one Ed25519 key for dual signing).
class KeyStore {
 public:
  KeyStore() = default;
  KeyStore(KeyStore&&) = default;
  KeyStore& operator=(KeyStore&&) = default;

  // Loads every spec; the first failure is returned (naming its file).
  static absl::StatusOr<std::shared_ptr<const KeyStore>> Load(const std::vector<KeySpec>& specs);

  // Adds a loaded key. AlreadyExists for a duplicate (domain, selector).
  absl::Status Add(DkimKey key);
  absl::Status AddFromFile(const KeySpec& spec);

  // Keys of exactly this domain (case-insensitive), in insertion order.
  std::vector<const DkimKey*> KeysFor(std::string_view domain) const;
  const DkimKey* Find(std::string_view domain, std::string_view selector) const;
  // Sorted, de-duplicated list of configured domains.
  std::vector<std::string> Domains() const;
  bool empty() const { return keys_.empty(); }
  std::size_t size() const { return keys_.size(); }

 private:
  std::vector<std::unique_ptr<DkimKey>> keys_;
};

// The DNS TXT record value to publish for a key: "v=DKIM1; k=rsa; p=<base64
// SubjectPublicKeyInfo>" or "v=DKIM1; k=ed25519; p=<base64 raw 32 bytes>".
absl::StatusOr<std::string> PublicKeyRecord(const DkimKey& key);
// The record as a zone-file line, split into <=255-octet strings:
//   sel._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=..." )
std::string ZoneFileLine(const DkimKey& key, std::string_view record);

// Generates a new key (bits ignored for Ed25519) and returns it with its PEM
// (PKCS#8) text.
struct GeneratedKey {
  DkimKey key;
  std::string pem;
};
absl::StatusOr<GeneratedKey> GenerateKey(KeyType type, int bits, std::string_view domain,
                                         std::string_view selector);

}  // namespace salvo::dkim
