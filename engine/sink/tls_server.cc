#include "engine/sink/tls_server.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace salvo::sink {
namespace {

std::string OpenSslErrors() {
  std::string s = tlsio::ErrorQueue();
  return s.empty() ? "unknown OpenSSL error" : s;
}

// Checks the file can be opened, so the error says "No such file" rather
// than an OpenSSL code.
absl::Status CheckReadable(const char* flag, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": ", strerror(errno)));
  std::fclose(f);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SslCtxPtr> MakeServerTlsContext(const std::string& hostname,
                                               const std::string& cert_file,
                                               const std::string& key_file) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed: " + OpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Idle connections give their record buffers back.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  // Resumption by session ticket (stateless): no server-side cache to lock
  // across shards.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  static const unsigned char kSidContext[] = "salvo-sink";
  SSL_CTX_set_session_id_context(ctx.get(), kSidContext, sizeof(kSidContext) - 1);

  if (cert_file.empty() != key_file.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both or neither");
  if (cert_file.empty()) {
    if (auto s = tlsio::UseSelfSignedCertificate(
            ctx.get(), hostname.empty() ? std::string("sink.salvo.invalid") : hostname);
        !s.ok())
      return s;
    return ctx;
  }
  if (auto s = CheckReadable("--tls-cert", cert_file); !s.ok()) return s;
  if (auto s = CheckReadable("--tls-key", key_file); !s.ok()) return s;
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-cert ", cert_file, ": not a PEM certificate (chain): ", OpenSslErrors()));
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key_file, ": not a PEM private key: ", OpenSslErrors()));
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    return absl::InvalidArgumentError(absl::StrCat("--tls-key ", key_file,
                                                   ": does not match the certificate in ",
                                                   cert_file, ": ", OpenSslErrors()));
  return ctx;
}

std::unique_ptr<TlsServerConn> TlsServerConn::Create(SSL_CTX* ctx) {
  ERR_clear_error();
  std::unique_ptr<TlsServerConn> c(new TlsServerConn());
  c->ssl_ = SSL_new(ctx);
  if (c->ssl_ == nullptr) return nullptr;
  if (!c->net_.Attach(c->ssl_).ok()) return nullptr;
  SSL_set_accept_state(c->ssl_);
  return c;
}

TlsServerConn::~TlsServerConn() { SSL_free(ssl_); }

absl::Status TlsServerConn::Receive(std::string_view ciphertext, std::string* plaintext) {
  ERR_clear_error();
  // OpenSSL reads the records where they lie; an incomplete tail is kept.
  net_.Lend(ciphertext);
  absl::Status result = absl::OkStatus();
  char buf[16384];
  for (int i = 0; i < 100000; ++i) {  // bounded: each round consumes input
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (!done_ && SSL_is_init_finished(ssl_)) done_ = true;
    if (n > 0) {
      plaintext->append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      result = absl::CancelledError("peer sent close_notify");
    } else {
      result = absl::UnavailableError(absl::StrCat("TLS error: ", OpenSslErrors()));
    }
    break;
  }
  net_.Unlend();
  return result;
}

absl::Status TlsServerConn::Send(std::string_view plaintext) {
  ERR_clear_error();
  while (!plaintext.empty()) {
    int n = SSL_write(ssl_, plaintext.data(), static_cast<int>(plaintext.size()));
    if (n <= 0) return absl::UnavailableError(absl::StrCat("TLS write: ", OpenSslErrors()));
    plaintext.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace salvo::sink
