#pragma once
// The network side of one OpenSSL SSL object, in place of a pair of memory
// BIOs. Both the SMTP client (engine/smtp/tls) and the sink (engine/sink)
// run TLS without OpenSSL touching a socket; the shard does the I/O.
//
// Memory BIOs cost a message-sized copy in each direction, grow their buffer
// by realloc-and-cleanse, and zero it on every reset. Here:
//  - records OpenSSL writes are appended to one string; Drain() hands them
//    over by swapping strings when the caller's is empty (the usual case);
//  - ciphertext read from the network is lent for the length of a call
//    (Lend ... Unlend) and OpenSSL reads it in place; only the tail of an
//    incomplete record is copied (Unlend), so nothing is held between reads
//    but that tail.
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace salvo::tlsio {

// Every error on OpenSSL's queue, "; "-separated, and clears it. Empty when
// the queue was empty.
std::string ErrorQueue();
// ErrorQueue(), or "unknown OpenSSL error" when the queue was empty: for
// messages that must name a cause.
std::string LastErrors();

// A fresh P-256 key and a self-signed certificate for CN=`hostname` (and
// subjectAltName DNS:`hostname` when it is a DNS name), valid from an hour
// ago for ten years, installed on `ctx`. For the sink and tests.
absl::Status UseSelfSignedCertificate(SSL_CTX* ctx, const std::string& hostname);

class NetworkBio {
 public:
  NetworkBio() = default;
  NetworkBio(const NetworkBio&) = delete;
  NetworkBio& operator=(const NetworkBio&) = delete;

  // Creates the BIO and gives it to `ssl` for reading and writing. `ssl`
  // owns the BIO (SSL_free frees it); this object must outlive `ssl`.
  absl::Status Attach(SSL* ssl);

  // Ciphertext from the network, readable by OpenSSL until Unlend(). The
  // bytes must stay valid until then.
  void Lend(std::string_view ciphertext) { lent_ = ciphertext; }
  // Copies what OpenSSL did not read of the lent bytes, for the next call.
  void Unlend();
  // Ciphertext from the network, copied.
  void Append(std::string_view ciphertext);
  // Bytes received and not yet read by OpenSSL.
  size_t readable() const { return stash_.size() - stash_pos_ + lent_.size(); }

  // Moves the records OpenSSL wrote into *out: a swap when *out is empty,
  // else an append.
  void Drain(std::string* out);
  bool has_output() const { return !out_.empty(); }

 private:
  static int Write(BIO* bio, const char* data, int len);
  static int Read(BIO* bio, char* data, int len);
  static long Ctrl(BIO* bio, int cmd, long num, void* ptr);

  std::string out_;
  std::string stash_;
  size_t stash_pos_ = 0;
  std::string_view lent_;
};

}  // namespace salvo::tlsio
