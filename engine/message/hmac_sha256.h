#pragma once
// HMAC-SHA256 with a cached key schedule, shared by the unsubscribe and VERP
// tokens (internal to salvo_message).
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <string>
#include <string_view>

namespace salvo::message::internal {

// HMAC-SHA256 with the key schedule (ipad/opad blocks) hashed once per
// secret and cached per thread: a token then costs two context copies and
// four SHA-256 compressions instead of a key setup and an algorithm fetch.
class HmacSha256 {
 public:
  HmacSha256() : md_(EVP_MD_fetch(nullptr, "SHA256", nullptr)) {
    inner_ = EVP_MD_CTX_new();
    outer_ = EVP_MD_CTX_new();
    work_ = EVP_MD_CTX_new();
  }
  ~HmacSha256() {
    EVP_MD_CTX_free(inner_);
    EVP_MD_CTX_free(outer_);
    EVP_MD_CTX_free(work_);
    EVP_MD_free(md_);
  }
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;

  // Returns false on an OpenSSL failure.
  bool Mac(std::string_view key, std::string_view data, unsigned char out[32]) {
    if (md_ == nullptr || inner_ == nullptr || outer_ == nullptr || work_ == nullptr) return false;
    if (!keyed_ || key != key_) {
      if (!SetKey(key)) return false;
    }
    unsigned char ih[32];
    unsigned int len = 0;
    if (EVP_MD_CTX_copy_ex(work_, inner_) != 1 ||
        EVP_DigestUpdate(work_, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(work_, ih, &len) != 1 || EVP_MD_CTX_copy_ex(work_, outer_) != 1 ||
        EVP_DigestUpdate(work_, ih, sizeof ih) != 1 || EVP_DigestFinal_ex(work_, out, &len) != 1)
      return false;
    return true;
  }

 private:
  bool SetKey(std::string_view key) {
    keyed_ = false;
    unsigned char block[64] = {0};
    if (key.size() > sizeof block) {
      unsigned int len = 0;
      if (EVP_Digest(key.data(), key.size(), block, &len, md_, nullptr) != 1) return false;
    } else {
      std::memcpy(block, key.data(), key.size());
    }
    unsigned char ipad[64], opad[64];
    for (int i = 0; i < 64; ++i) {
      ipad[i] = block[i] ^ 0x36;
      opad[i] = block[i] ^ 0x5c;
    }
    if (EVP_DigestInit_ex(inner_, md_, nullptr) != 1 ||
        EVP_DigestUpdate(inner_, ipad, sizeof ipad) != 1 ||
        EVP_DigestInit_ex(outer_, md_, nullptr) != 1 ||
        EVP_DigestUpdate(outer_, opad, sizeof opad) != 1)
      return false;
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(ipad, sizeof ipad);
    OPENSSL_cleanse(opad, sizeof opad);
    key_.assign(key);
    keyed_ = true;
    return true;
  }

  EVP_MD* md_;
  EVP_MD_CTX* inner_;
  EVP_MD_CTX* outer_;
  EVP_MD_CTX* work_;
  std::string key_;
  bool keyed_ = false;
};

}  // namespace salvo::message::internal
