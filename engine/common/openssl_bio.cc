#include "engine/common/openssl_bio.h"

#include <openssl/err.h>

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
