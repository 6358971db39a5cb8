#pragma once
// Server-side TLS for the sink's STARTTLS: one SSL_CTX shared read-only by
// every shard (built once at start-up), and one TlsServerConn per TLS
// connection (OpenSSL never sees a socket; the shard feeds ciphertext in and
// drains ciphertext out through a tlsio::NetworkBio, without memory-BIO
// copies).
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/common/openssl_bio.h"

namespace salvo::sink {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// cert_file/key_file empty: a self-signed P-256 certificate for
// CN=`hostname` is generated in memory. Otherwise both are PEM files (the
// cert file may hold a chain); errors name the file and what is wrong.
absl::StatusOr<SslCtxPtr> MakeServerTlsContext(const std::string& hostname,
                                               const std::string& cert_file,
                                               const std::string& key_file);

// One server TLS session.
class TlsServerConn {
 public:
  // nullptr when OpenSSL cannot allocate the session.
  static std::unique_ptr<TlsServerConn> Create(SSL_CTX* ctx);
  ~TlsServerConn();
  TlsServerConn(const TlsServerConn&) = delete;
  TlsServerConn& operator=(const TlsServerConn&) = delete;

  // Feeds ciphertext from the network and appends all plaintext it yields
  // (and the handshake progress) to *plaintext. An error (bad record,
  // handshake failure, peer close_notify) means: close the connection.
  absl::Status Receive(std::string_view ciphertext, std::string* plaintext);
  // Encrypts plaintext; valid once handshake_done().
  absl::Status Send(std::string_view plaintext);
  // Moves ciphertext waiting for the network (handshake, records) into *out
  // (a swap when *out is empty).
  void Drain(std::string* out) { net_.Drain(out); }
  bool handshake_done() const { return done_; }
  // The handshake resumed a session (from a ticket) instead of a full one.
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }

 private:
  TlsServerConn() = default;
  SSL* ssl_ = nullptr;
  tlsio::NetworkBio net_;  // ssl_'s BIO; outlives ssl_ (freed in the destructor)
  bool done_ = false;
};

}  // namespace salvo::sink
