#pragma once
// STARTTLS for the SMTP client: OpenSSL never sees a socket. The session
// feeds ciphertext in and drains ciphertext out, through a tlsio::NetworkBio
// (no memory-BIO copies: records are handed over by a string swap).
//
// TlsClientContext: one per shard (not thread-safe), owns the SSL_CTX, the CA
// store and the TLS session-resumption cache keyed by host name. It must
// outlive every Session that uses it.
// TlsChannel: one per connection, owned by its Session.
#include <openssl/ssl.h>

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/common/openssl_bio.h"

namespace salvo::smtp {

struct TlsClientConfig {
  // PEM file of trusted CAs for required-TLS destinations; empty = the
  // system default store (/etc/ssl/certs).
  std::string ca_file;
  // Upper bound on cached sessions (one per host); oldest evicted first.
  size_t session_cache_size = 10000;
};

// What was negotiated, for logs and delivery records.
struct TlsInfo {
  bool active = false;
  std::string protocol;      // "TLSv1.3"
  std::string cipher;        // "TLS_AES_256_GCM_SHA384"
  bool verified = false;     // chain and host name verified
  std::string verify_error;  // why not, when !verified
  bool resumed = false;      // abbreviated handshake from the session cache
};

class TlsClientContext {
 public:
  static absl::StatusOr<std::unique_ptr<TlsClientContext>> Create(const TlsClientConfig& config);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  // Session cache. Find returns a reference the caller frees, or nullptr:
  // a TLS 1.3 ticket is taken out of the cache (single use), an older
  // protocol's session stays (reusable).
  SSL_SESSION* FindSession(const std::string& host);
  void StoreSession(const std::string& host, SSL_SESSION* session);  // takes ownership
  // Hosts with at least one cached session.
  size_t cached_sessions() const { return sessions_.size(); }
  uint64_t resumed_count() const { return resumed_; }
  void CountResumed() { ++resumed_; }

 private:
  explicit TlsClientContext(SSL_CTX* ctx, size_t cache_size) : ctx_(ctx), max_(cache_size) {}
  SSL_CTX* ctx_;
  size_t max_;
  uint64_t resumed_ = 0;
  uint64_t seq_ = 0;
  // A few sessions per host: TLS 1.3 tickets are single-use (OpenSSL's
  // client marks a ticket not resumable once a handshake used it), so
  // concurrent connections to one host each need their own, and every
  // connection brings back one or two fresh ones.
  static constexpr size_t kPerHost = 8;
  struct Entry {
    std::deque<SSL_SESSION*> sessions;  // newest at the back
    uint64_t seq;
  };
  std::unordered_map<std::string, Entry> sessions_;
};

// One TLS client connection.
class TlsChannel {
 public:
  // `verify`: fail the handshake unless the chain and `host` verify.
  static absl::StatusOr<std::unique_ptr<TlsChannel>> Create(TlsClientContext* context,
                                                            const std::string& host, bool verify);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  enum class Step { kInProgress, kDone, kFailed };
  // Advances the handshake with the ciphertext fed so far. On kFailed,
  // error() says why (certificate verification errors are named).
  Step Handshake();
  bool handshake_done() const { return done_; }

  void FeedCiphertext(std::string_view bytes);
  // Appends all plaintext available to *out. Error on a TLS failure; a clean
  // close_notify sets peer_closed().
  absl::Status ReadPlaintext(std::string* out);
  absl::Status WritePlaintext(std::string_view bytes);
  // Moves pending ciphertext into *out (a swap when *out is empty).
  void DrainCiphertext(std::string* out) { net_.Drain(out); }
  bool peer_closed() const { return peer_closed_; }
  // Queues close_notify (drain it like any ciphertext). After a clean end
  // (221 to QUIT): without it OpenSSL marks the session not resumable when
  // the SSL is freed, and the next connection to the host pays a full
  // handshake.
  void Shutdown();

  const std::string& error() const { return error_; }
  TlsInfo Info() const;

 private:
  TlsChannel() = default;
  std::string ErrorString(int ret);
  TlsClientContext* context_ = nullptr;
  std::string host_;
  SSL* ssl_ = nullptr;
  tlsio::NetworkBio net_;  // ssl_'s BIO; outlives ssl_ (freed in ~TlsChannel)
  bool done_ = false;
  bool verify_ = false;
  bool peer_closed_ = false;
  std::string error_;
};

}  // namespace salvo::smtp
