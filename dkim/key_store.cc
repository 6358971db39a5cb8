#include "dkim/key_store.h"

#include <fmt/format.h>

#include "engine/common/base64.h"
#include "engine/common/openssl_bio.h"
#include "engine/common/strings.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace salvo::dkim {
namespace {

constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;

// Never prompt for a pass phrase (that would block on stdin): encrypted keys
// are refused with a clear message instead.
int NoPassword(char*, int, int, void* called) {
  *static_cast<bool*>(called) = true;
  return -1;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::string KeyLabel(const KeySpec& spec) {
  return Cat("DKIM key ", spec.selector, "._domainkey.", spec.domain);
}

}  // namespace

std::string_view KeyTypeName(KeyType t) {
  switch (t) {
    case KeyType::kAuto:
      return "auto";
    case KeyType::kRsa:
      return "rsa";
    case KeyType::kEd25519:
      return "ed25519";
  }
  return "?";
}

bool ParseKeyType(std::string_view text, KeyType* out) {
  const std::string t = AsciiLower(text);
  if (t == "auto") {
    *out = KeyType::kAuto;
  } else if (t == "rsa") {
    *out = KeyType::kRsa;
  } else if (t == "ed25519") {
    *out = KeyType::kEd25519;
  } else {
    return false;
  }
  return true;
}

std::string_view DkimKey::Algorithm() const {
  return type == KeyType::kEd25519 ? "ed25519-sha256" : "rsa-sha256";
}

absl::StatusOr<DkimKey> ParseKey(std::string_view pem, const KeySpec& spec,
                                 std::string_view origin) {
  const std::string label = KeyLabel(spec);
  if (spec.domain.empty() || spec.selector.empty()) {
    return absl::InvalidArgumentError(Cat(origin, ": a DKIM key needs a domain and a selector"));
  }
  if (pem.find("-----BEGIN ") == std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat(origin, ": ", label,
            ": not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' or "
            "'-----BEGIN RSA PRIVATE KEY-----')"));
  }
  if (pem.find("ENCRYPTED") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat(origin, ": ", label,
            ": the private key is encrypted; Salvo needs an unencrypted key (protect it with file "
            "permissions, chmod 600)"));
  }
  if (pem.find("PUBLIC KEY-----") != std::string_view::npos &&
      pem.find("PRIVATE KEY-----") == std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat(origin, ": ", label, ": this is a public key; DKIM signing needs the private key"));
  }
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return absl::ResourceExhaustedError("BIO_new_mem_buf failed");
  bool asked_password = false;
  ERR_clear_error();
  EvpPkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, &asked_password));
  if (!pkey) {
    if (asked_password) {
      ERR_clear_error();
      return absl::InvalidArgumentError(Cat(
          origin, ": ", label, ": the private key is encrypted; Salvo needs an unencrypted key"));
    }
    return absl::InvalidArgumentError(
        Cat(origin, ": ", label, ": cannot parse the PEM private key (", tlsio::LastErrors(), ")"));
  }
  DkimKey key;
  key.domain = AsciiLower(spec.domain);
  key.selector = spec.selector;
  key.path = std::string(origin);
  const int id = EVP_PKEY_get_base_id(pkey.get());
  if (id == EVP_PKEY_RSA) {
    key.type = KeyType::kRsa;
    key.bits = EVP_PKEY_get_bits(pkey.get());
    if (key.bits < kMinRsaBits) {
      return absl::InvalidArgumentError(Cat(origin, ": ", label, ": RSA key of ", key.bits,
                                            " bits is too short (DKIM needs at least ", kMinRsaBits,
                                            "; use 2048)"));
    }
    if (key.bits > kMaxRsaBits) {
      return absl::InvalidArgumentError(Cat(origin, ": ", label, ": RSA key of ", key.bits,
                                            " bits is longer than receivers accept (at most ",
                                            kMaxRsaBits, ")"));
    }
  } else if (id == EVP_PKEY_ED25519) {
    key.type = KeyType::kEd25519;
    key.bits = 256;
  } else {
    const char* name = OBJ_nid2sn(id);
    return absl::InvalidArgumentError(Cat(origin, ": ", label, ": unsupported key type ",
                                          name ? name : "unknown",
                                          " (DKIM signs with RSA or Ed25519 keys)"));
  }
  if (spec.expected != KeyType::kAuto && spec.expected != key.type) {
    return absl::InvalidArgumentError(Cat(origin, ": ", label, ": configured as type ",
                                          KeyTypeName(spec.expected), " but the file holds an ",
                                          KeyTypeName(key.type), " key"));
  }
  key.pkey = std::move(pkey);
  return key;
}

absl::StatusOr<DkimKey> LoadKey(const KeySpec& spec) {
  const std::string& path = spec.path;
  const std::string label = KeyLabel(spec);
  if (path.empty()) {
    return absl::InvalidArgumentError(Cat(label, ": no key file configured"));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    std::string msg = Cat(label, ": cannot open key file ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return absl::InvalidArgumentError(
        Cat(label, ": cannot stat key file ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(Cat(label, ": key file ", path, " is not a regular file"));
  }
  if (st.st_mode & S_IROTH) {
    return absl::PermissionDeniedError(fmt::format(
        "{}: key file {} is readable by others (mode {:04o}); a DKIM private key must be private: "
        "run 'chmod 600 {}'",
        label, path, st.st_mode & 07777, path));
  }
  if (static_cast<std::size_t>(st.st_size) > kMaxKeyFileBytes) {
    return absl::InvalidArgumentError(
        Cat(label, ": key file ", path, " is ", st.st_size, " bytes; not a PEM private key"));
  }
  std::string pem(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < pem.size()) {
    const ssize_t n = ::read(fd, pem.data() + got, pem.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InvalidArgumentError(
          Cat(label, ": cannot read key file ", path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  pem.resize(got);
  auto key = ParseKey(pem, spec, path);
  OPENSSL_cleanse(pem.data(), pem.size());
  return key;
}

absl::StatusOr<std::shared_ptr<const KeyStore>> KeyStore::Load(const std::vector<KeySpec>& specs) {
  auto store = std::make_shared<KeyStore>();
  for (const KeySpec& spec : specs) {
    if (auto s = store->AddFromFile(spec); !s.ok()) return s;
  }
  return std::shared_ptr<const KeyStore>(std::move(store));
}

absl::Status KeyStore::Add(DkimKey key) {
  if (Find(key.domain, key.selector) != nullptr) {
    return absl::AlreadyExistsError(
        Cat("DKIM key ", key.selector, "._domainkey.", key.domain, " is configured twice"));
  }
  keys_.push_back(std::make_unique<DkimKey>(std::move(key)));
  return absl::OkStatus();
}

absl::Status KeyStore::AddFromFile(const KeySpec& spec) {
  auto key = LoadKey(spec);
  if (!key.ok()) return key.status();
  return Add(*std::move(key));
}

std::vector<const DkimKey*> KeyStore::KeysFor(std::string_view domain) const {
  std::vector<const DkimKey*> out;
  for (const auto& k : keys_) {
    if (EqualsIgnoreCase(k->domain, domain)) out.push_back(k.get());
  }
  return out;
}

const DkimKey* KeyStore::Find(std::string_view domain, std::string_view selector) const {
  for (const auto& k : keys_) {
    if (EqualsIgnoreCase(k->domain, domain) && k->selector == selector) return k.get();
  }
  return nullptr;
}

std::vector<std::string> KeyStore::Domains() const {
  std::vector<std::string> out;
  for (const auto& k : keys_) out.push_back(k->domain);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<std::string> PublicKeyRecord(const DkimKey& key) {
  std::string raw;
  if (key.type == KeyType::kEd25519) {
    unsigned char pub[32];
    std::size_t len = sizeof(pub);
    if (EVP_PKEY_get_raw_public_key(key.pkey.get(), pub, &len) != 1 || len != 32) {
      return absl::InternalError("cannot extract the Ed25519 public key: " + tlsio::LastErrors());
    }
    raw.assign(reinterpret_cast<const char*>(pub), len);
  } else {
    unsigned char* der = nullptr;
    const int len = i2d_PUBKEY(key.pkey.get(), &der);
    if (len <= 0)
      return absl::InternalError("cannot encode the RSA public key: " + tlsio::LastErrors());
    raw.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
  }
  return Cat("v=DKIM1; k=", KeyTypeName(key.type), "; p=", Base64Encode(raw));
}

std::string ZoneFileLine(const DkimKey& key, std::string_view record) {
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < record.size(); i += 250) {
    parts.push_back(Cat("\"", record.substr(i, 250), "\""));
  }
  return Cat(key.selector, "._domainkey.", key.domain, ". IN TXT ( ", Join(parts, " "), " )");
}

absl::StatusOr<GeneratedKey> GenerateKey(KeyType type, int bits, std::string_view domain,
                                         std::string_view selector) {
  if (type == KeyType::kAuto) type = KeyType::kRsa;
  if (type == KeyType::kRsa && (bits < kMinRsaBits || bits > kMaxRsaBits)) {
    return absl::InvalidArgumentError(
        Cat("RSA key size ", bits, " is out of range (", kMinRsaBits, "..", kMaxRsaBits, ")"));
  }
  EVP_PKEY* raw = type == KeyType::kRsa ? EVP_RSA_gen(static_cast<unsigned int>(bits))
                                        : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw == nullptr) return absl::InternalError("key generation failed: " + tlsio::LastErrors());
  EvpPkeyPtr pkey(raw);
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError("cannot write the private key as PEM: " + tlsio::LastErrors());
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  GeneratedKey out;
  out.pem.assign(data, static_cast<std::size_t>(len));
  KeySpec spec{std::string(domain), std::string(selector), "", type};
  auto key = ParseKey(out.pem, spec, "generated key");
  if (!key.ok()) return key.status();
  out.key = *std::move(key);
  return out;
}

}  // namespace salvo::dkim
