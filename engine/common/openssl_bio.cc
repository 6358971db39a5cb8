#include "engine/common/openssl_bio.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>

namespace salvo::tlsio {

std::string ErrorQueue() {
  std::string s;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s;
}

std::string LastErrors() {
  std::string e = ErrorQueue();
  return e.empty() ? "unknown OpenSSL error" : e;
}

namespace {

std::string Errors() {
  std::string s = ErrorQueue();
  return s.empty() ? "unknown OpenSSL error" : s;
}

// subjectAltName DNS:<name> (clients match host names against SANs, not CN).
bool AddSubjectAltName(X509* cert, const std::string& name) {
  std::string value = "DNS:" + name;
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, value.c_str());
  if (ext == nullptr) {
    ERR_clear_error();
    return true;  // a host name that is not a valid DNS name: CN only
  }
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

}  // namespace

absl::Status UseSelfSignedCertificate(SSL_CTX* ctx, const std::string& hostname) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return absl::InternalError("cannot generate a P-256 key: " + Errors());
  X509* cert = X509_new();
  if (cert == nullptr) {
    EVP_PKEY_free(key);
    return absl::InternalError("X509_new failed: " + Errors());
  }
  absl::Status status;
  X509_NAME* name = X509_get_subject_name(cert);
  std::string cn = hostname;
  if (cn.size() > 64) cn.resize(64);  // the X.509 upper bound for a CN
  bool ok = X509_set_version(cert, 2) == 1 &&
            ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600) != nullptr &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                       0) == 1 &&
            X509_set_issuer_name(cert, name) == 1 && X509_set_pubkey(cert, key) == 1 &&
            AddSubjectAltName(cert, cn) && X509_sign(cert, key, EVP_sha256()) > 0 &&
            SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
  if (!ok) status = absl::InternalError("cannot build a self-signed certificate: " + Errors());
  X509_free(cert);
  EVP_PKEY_free(key);
  return status;
}

namespace {

// One BIO_METHOD for the process, built on first use (thread-safe static).
const BIO_METHOD* Method(int (*write)(BIO*, const char*, int), int (*read)(BIO*, char*, int),
                         long (*ctrl)(BIO*, int, long, void*)) {
  static BIO_METHOD* method = [&] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "salvo network");
    if (m == nullptr) return m;
    BIO_meth_set_write(m, write);
    BIO_meth_set_read(m, read);
    BIO_meth_set_ctrl(m, ctrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    BIO_meth_set_destroy(m, [](BIO* b) {
      BIO_set_data(b, nullptr);
      return 1;
    });
    return m;
  }();
  return method;
}

}  // namespace

absl::Status NetworkBio::Attach(SSL* ssl) {
  const BIO_METHOD* m = Method(&NetworkBio::Write, &NetworkBio::Read, &NetworkBio::Ctrl);
  if (m == nullptr) return absl::ResourceExhaustedError("BIO_meth_new failed: " + ErrorQueue());
  BIO* bio = BIO_new(m);
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new failed: " + ErrorQueue());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl, bio, bio);  // one reference, owned by ssl for both directions
  return absl::OkStatus();
}

void NetworkBio::Unlend() {
  if (!lent_.empty()) {
    if (stash_pos_ == stash_.size()) {
      stash_.clear();
      stash_pos_ = 0;
    }
    stash_.append(lent_);
    lent_ = {};
  }
}

void NetworkBio::Append(std::string_view ciphertext) {
  if (stash_pos_ == stash_.size()) {
    stash_.clear();
    stash_pos_ = 0;
  } else if (stash_pos_ > 4096 && stash_pos_ * 2 > stash_.size()) {
    stash_.erase(0, stash_pos_);
    stash_pos_ = 0;
  }
  stash_.append(ciphertext);
}

void NetworkBio::Drain(std::string* out) {
  if (out_.empty()) return;
  if (out->empty()) {
    out->swap(out_);
    out_.clear();
  } else {
    out->append(out_);
    out_.clear();
  }
}

int NetworkBio::Write(BIO* bio, const char* data, int len) {
  auto* self = static_cast<NetworkBio*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self == nullptr || len < 0) return -1;
  self->out_.append(data, static_cast<size_t>(len));
  return len;
}

int NetworkBio::Read(BIO* bio, char* data, int len) {
  auto* self = static_cast<NetworkBio*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self == nullptr || len <= 0) return 0;
  size_t want = static_cast<size_t>(len);
  size_t n = 0;
  if (self->stash_pos_ < self->stash_.size()) {
    n = std::min(want, self->stash_.size() - self->stash_pos_);
    std::memcpy(data, self->stash_.data() + self->stash_pos_, n);
    self->stash_pos_ += n;
    if (self->stash_pos_ == self->stash_.size()) {
      self->stash_.clear();
      self->stash_pos_ = 0;
    }
  }
  if (n < want && !self->lent_.empty()) {
    size_t m = std::min(want - n, self->lent_.size());
    std::memcpy(data + n, self->lent_.data(), m);
    self->lent_.remove_prefix(m);
    n += m;
  }
  if (n == 0) {
    BIO_set_retry_read(bio);  // nothing yet: "want read", not end of file
    return -1;
  }
  return static_cast<int>(n);
}

long NetworkBio::Ctrl(BIO* bio, int cmd, long num, void* ptr) {
  (void)num;
  (void)ptr;
  auto* self = static_cast<NetworkBio*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // written records are in out_ already
    case BIO_CTRL_PENDING:
      return self == nullptr ? 0 : static_cast<long>(self->readable());
    case BIO_CTRL_WPENDING:
      return 0;
    case BIO_CTRL_EOF:
      return 0;
    default:
      return 0;
  }
}

}  // namespace salvo::tlsio
