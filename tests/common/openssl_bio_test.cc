// NetworkBio under a real OpenSSL client and server talking TLS 1.3 to each
// other in memory: handshake, records split at every boundary, output handed
// over by swap, and a corrupted record refused.
#include "engine/common/openssl_bio.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace salvo::tlsio {
namespace {

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

// A server context with a throwaway self-signed P-256 certificate.
std::unique_ptr<SSL_CTX, SslFree> ServerContext() {
  std::unique_ptr<SSL_CTX, SslFree> ctx(SSL_CTX_new(TLS_server_method()));
  EXPECT_TRUE(UseSelfSignedCertificate(ctx.get(), "bio.test").ok());
  return ctx;
}

struct End {
  NetworkBio net;
  std::unique_ptr<SSL, SslFree> ssl;  // freed before net (reverse order)
};

class NetworkBioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ctx_ = ServerContext();
    client_ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_min_proto_version(client_ctx_.get(), TLS1_3_VERSION);
    client_ = std::make_unique<End>();
    server_ = std::make_unique<End>();
    client_->ssl.reset(SSL_new(client_ctx_.get()));
    server_->ssl.reset(SSL_new(server_ctx_.get()));
    ASSERT_TRUE(client_->net.Attach(client_->ssl.get()).ok());
    ASSERT_TRUE(server_->net.Attach(server_->ssl.get()).ok());
    SSL_set_connect_state(client_->ssl.get());
    SSL_set_accept_state(server_->ssl.get());
  }

  // Moves what `from` wrote to `to`, lent `piece` bytes at a time.
  static void Carry(End& from, End& to, size_t piece, std::string* plain_out) {
    std::string wire;
    from.net.Drain(&wire);
    for (size_t i = 0; i < wire.size(); i += piece) {
      to.net.Lend(std::string_view(wire).substr(i, piece));
      char buf[4096];
      int n;
      while ((n = SSL_read(to.ssl.get(), buf, sizeof(buf))) > 0) plain_out->append(buf, n);
      to.net.Unlend();
    }
  }

  void Handshake(size_t piece) {
    std::string ignored;
    for (int round = 0; round < 10; ++round) {
      SSL_do_handshake(client_->ssl.get());
      Carry(*client_, *server_, piece, &ignored);
      SSL_do_handshake(server_->ssl.get());
      Carry(*server_, *client_, piece, &ignored);
      if (SSL_is_init_finished(client_->ssl.get()) && SSL_is_init_finished(server_->ssl.get()))
        return;
    }
    FAIL() << "handshake did not finish";
  }

  std::unique_ptr<SSL_CTX, SslFree> server_ctx_, client_ctx_;
  std::unique_ptr<End> client_, server_;
};

TEST_F(NetworkBioTest, HandshakeAndLargeMessageSplitAtEveryRecordBoundary) {
  for (size_t piece : {1u, 5u, 7u, 4096u, 1u << 20}) {
    SetUp();
    Handshake(piece);
    ASSERT_TRUE(SSL_is_init_finished(client_->ssl.get())) << piece;
    std::string message;
    for (int i = 0; message.size() < 70000; ++i) message += "line " + std::to_string(i) + "\r\n";
    ASSERT_EQ(SSL_write(client_->ssl.get(), message.data(), static_cast<int>(message.size())),
              static_cast<int>(message.size()));
    std::string got;
    Carry(*client_, *server_, piece, &got);
    EXPECT_EQ(got, message) << "piece " << piece;
    EXPECT_EQ(server_->net.readable(), 0u);
  }
}

TEST_F(NetworkBioTest, PartialRecordsAndUnreadRecordsSurviveTheLentBuffer) {
  Handshake(1 << 20);
  ASSERT_EQ(SSL_write(client_->ssl.get(), "hello", 5), 5);
  ASSERT_EQ(SSL_write(client_->ssl.get(), "world", 5), 5);
  std::string wire;
  client_->net.Drain(&wire);
  ASSERT_GT(wire.size(), 20u);
  const size_t record = wire.size() / 2;  // two records of the same size
  // A partial record: OpenSSL wants more and keeps what it has.
  std::string head = wire.substr(0, 8);
  server_->net.Lend(head);
  char buf[64];
  int n = SSL_read(server_->ssl.get(), buf, sizeof(buf));
  EXPECT_EQ(SSL_get_error(server_->ssl.get(), n), SSL_ERROR_WANT_READ);
  server_->net.Unlend();
  head.assign(8, '\0');  // the lent bytes are gone
  // The rest of record one and all of record two, lent at once; one read
  // takes record one only, so record two must be copied by Unlend.
  std::string rest = wire.substr(8);
  server_->net.Lend(rest);
  n = SSL_read(server_->ssl.get(), buf, sizeof(buf));
  ASSERT_EQ(n, 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  server_->net.Unlend();
  EXPECT_EQ(server_->net.readable(), record);
  rest.assign(rest.size(), '\0');
  n = SSL_read(server_->ssl.get(), buf, sizeof(buf));
  ASSERT_EQ(n, 5);
  EXPECT_EQ(std::string(buf, 5), "world");
  EXPECT_EQ(server_->net.readable(), 0u);
}

TEST_F(NetworkBioTest, DrainSwapsIntoAnEmptyStringAndAppendsToAFullOne) {
  Handshake(1 << 20);
  ASSERT_EQ(SSL_write(client_->ssl.get(), "a", 1), 1);
  EXPECT_TRUE(client_->net.has_output());
  std::string out = "prefix";
  client_->net.Drain(&out);
  EXPECT_GT(out.size(), 6u);
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_FALSE(client_->net.has_output());
  std::string empty;
  client_->net.Drain(&empty);  // nothing pending: untouched
  EXPECT_TRUE(empty.empty());
}

TEST_F(NetworkBioTest, CorruptedRecordIsAnErrorNotACrash) {
  Handshake(1 << 20);
  ASSERT_EQ(SSL_write(client_->ssl.get(), "secret", 6), 6);
  std::string wire;
  client_->net.Drain(&wire);
  wire[wire.size() - 3] ^= 0x5a;  // flip bits in the tag
  server_->net.Lend(wire);
  char buf[64];
  int n = SSL_read(server_->ssl.get(), buf, sizeof(buf));
  server_->net.Unlend();
  EXPECT_LE(n, 0);
  EXPECT_EQ(SSL_get_error(server_->ssl.get(), n), SSL_ERROR_SSL);
  EXPECT_FALSE(ErrorQueue().empty());
  EXPECT_TRUE(ErrorQueue().empty());  // the queue was drained
}

}  // namespace
}  // namespace salvo::tlsio
