// Where STARTTLS costs go, per message, with OpenSSL in memory (no sockets):
//  - BM_TlsMessage: a 20 KB message sealed by the client (SSL_write through
//    tlsio::NetworkBio) and opened by the server (SSL_read), TLS 1.3,
//    AES-256-GCM: what the engine and the sink pay together per message;
//  - BM_AesGcmFloor: the bare cipher over the same bytes, both directions
//    (EVP AES-256-GCM encrypt + decrypt, 16 KB records): the floor;
//  - BM_Handshake/full and /resumed: a whole TLS 1.3 handshake, client and
//    server (P-256 certificate, X25519), amortised over the messages a
//    connection carries (100 by default in `salvo bench`).
//
//   ./build/bench/tls_bench
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "engine/common/openssl_bio.h"

namespace {

using salvo::tlsio::NetworkBio;

SSL_CTX* ServerContext() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    if (!salvo::tlsio::UseSelfSignedCertificate(c, "bench.test").ok()) std::abort();
    SSL_CTX_set_session_id_context(c, reinterpret_cast<const unsigned char*>("b"), 1);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);  // stateless tickets, as the sink
    return c;
  }();
  return ctx;
}

// The latest session ticket the client received (as the engine's cache keeps it).
SSL_SESSION* g_ticket = nullptr;

SSL_CTX* ClientContext() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, [](SSL*, SSL_SESSION* s) {
      SSL_SESSION_free(g_ticket);
      g_ticket = s;
      return 1;  // keeps the reference
    });
    return c;
  }();
  return ctx;
}

struct End {
  NetworkBio net;
  SSL* ssl = nullptr;
  ~End() { SSL_free(ssl); }
};

// Client and server joined in memory.
struct Pair {
  End client, server;
  std::string wire, plain;
  explicit Pair(SSL_SESSION* resume = nullptr) {
    client.ssl = SSL_new(ClientContext());
    server.ssl = SSL_new(ServerContext());
    (void)client.net.Attach(client.ssl);
    (void)server.net.Attach(server.ssl);
    SSL_set_connect_state(client.ssl);
    SSL_set_accept_state(server.ssl);
    if (resume != nullptr) SSL_set_session(client.ssl, resume);
  }
  void Carry(End& from, End& to) {
    wire.clear();
    from.net.Drain(&wire);
    if (wire.empty()) return;
    to.net.Lend(wire);
    char buf[16384];
    int n;
    while ((n = SSL_read(to.ssl, buf, sizeof(buf))) > 0) plain.append(buf, n);
    to.net.Unlend();
  }
  bool Handshake() {
    for (int i = 0; i < 10; ++i) {
      SSL_do_handshake(client.ssl);
      Carry(client, server);
      SSL_do_handshake(server.ssl);
      Carry(server, client);  // also reads the server's session tickets
      if (SSL_is_init_finished(client.ssl) && SSL_is_init_finished(server.ssl)) return true;
    }
    return false;
  }
};

std::string Body() { return std::string(20480, 'x'); }

void BM_TlsMessage(benchmark::State& state) {
  Pair p;
  if (!p.Handshake()) return state.SkipWithError("handshake failed");
  const std::string body = Body();
  for (auto _ : state) {
    p.plain.clear();
    SSL_write(p.client.ssl, body.data(), static_cast<int>(body.size()));
    p.Carry(p.client, p.server);
    if (p.plain.size() != body.size()) return state.SkipWithError("message lost");
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_TlsMessage);

void BM_AesGcmFloor(benchmark::State& state) {
  const std::string body = Body();
  unsigned char key[32] = {1}, iv[12] = {2}, tag[16];
  std::string sealed(body.size(), '\0'), opened(body.size(), '\0');
  EVP_CIPHER_CTX* enc = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* dec = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(enc, EVP_aes_256_gcm(), nullptr, key, nullptr);
  EVP_DecryptInit_ex(dec, EVP_aes_256_gcm(), nullptr, key, nullptr);
  for (auto _ : state) {
    for (size_t off = 0; off < body.size(); off += 16384) {  // one record at a time
      int len = static_cast<int>(std::min<size_t>(16384, body.size() - off));
      int n = 0;
      EVP_EncryptInit_ex(enc, nullptr, nullptr, nullptr, iv);
      EVP_EncryptUpdate(enc, reinterpret_cast<unsigned char*>(sealed.data() + off), &n,
                        reinterpret_cast<const unsigned char*>(body.data() + off), len);
      EVP_EncryptFinal_ex(enc, nullptr, &n);
      EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_GET_TAG, 16, tag);
      EVP_DecryptInit_ex(dec, nullptr, nullptr, nullptr, iv);
      EVP_DecryptUpdate(dec, reinterpret_cast<unsigned char*>(opened.data() + off), &n,
                        reinterpret_cast<const unsigned char*>(sealed.data() + off), len);
      EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_TAG, 16, tag);
      if (EVP_DecryptFinal_ex(dec, nullptr, &n) != 1) return state.SkipWithError("tag mismatch");
    }
  }
  EVP_CIPHER_CTX_free(enc);
  EVP_CIPHER_CTX_free(dec);
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_AesGcmFloor);

void BM_Handshake(benchmark::State& state) {
  const bool resume = state.range(0) == 1;
  SSL_SESSION_free(g_ticket);
  g_ticket = nullptr;
  if (resume) {
    Pair first;
    if (!first.Handshake()) return state.SkipWithError("handshake failed");
    SSL_shutdown(first.client.ssl);
  }
  int64_t resumed = 0;
  for (auto _ : state) {
    // TLS 1.3 tickets are single-use: each connection resumes with the
    // ticket the previous one received, as the engine's cache does.
    SSL_SESSION* ticket = resume ? g_ticket : nullptr;
    g_ticket = nullptr;
    {
      Pair p(ticket);
      if (!p.Handshake()) return state.SkipWithError("handshake failed");
      resumed += SSL_session_reused(p.client.ssl);
      SSL_shutdown(p.client.ssl);
    }
    SSL_SESSION_free(ticket);
  }
  if (resume && resumed != state.iterations()) state.SkipWithError("not resumed");
  state.SetLabel(resume ? "resumed" : "full");
}
BENCHMARK(BM_Handshake)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
