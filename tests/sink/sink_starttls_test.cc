// STARTTLS in the sink: the server state machine's transitions (strings, no
// sockets) and the in-process Sink with an OpenSSL client on loopback (no
// external processes).
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <string>
#include <vector>

#include "engine/sink/sink.h"
#include "engine/sink/smtp_server.h"
#include "engine/sink/tls_server.h"
#include "gtest/gtest.h"
#include "tests/sink/test_client.h"

namespace salvo::sink {
namespace {

using testing::RawClient;

class TlsPolicy : public SessionPolicy {
 public:
  Verdict OnMail(std::string_view from, uint64_t) override {
    mails.emplace_back(from);
    return Verdict::kAccept;
  }
  Verdict OnRcpt(std::string_view) override { return Verdict::kAccept; }
  Verdict OnData() override { return Verdict::kAccept; }
  void OnMessage(const Envelope&, std::string_view, uint64_t) override { ++messages; }
  bool OnStartTls() override {
    ++starttls_calls;
    return tls_ok;
  }
  std::vector<std::string> mails;
  int messages = 0;
  int starttls_calls = 0;
  bool tls_ok = true;
};

std::vector<std::string> Codes(const std::string& out) {
  std::vector<std::string> codes;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find("\r\n", pos);
    if (eol == std::string::npos) break;
    if (eol - pos >= 4 && out[pos + 3] == ' ') codes.push_back(out.substr(pos, 3));
    pos = eol + 2;
  }
  return codes;
}

struct Fixture {
  ServerOptions options;
  TlsPolicy policy;
  ServerSession session{options, &policy};
  explicit Fixture(bool starttls = true) { options.starttls = starttls; }
};

TEST(ServerStartTlsTest, AdvertisedOnlyWhenEnabledAndNotActive) {
  Fixture off(false);
  std::string out;
  off.session.Feed("EHLO c.example\r\nSTARTTLS\r\n", &out);
  EXPECT_EQ(out.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "502"}));
  EXPECT_EQ(off.policy.starttls_calls, 0);

  Fixture on;
  out.clear();
  EXPECT_EQ(on.session.Feed("EHLO c.example\r\n", &out), ServerSession::Result::kContinue);
  EXPECT_NE(out.find("250-STARTTLS\r\n"), std::string::npos);
  out.clear();
  EXPECT_EQ(on.session.Feed("STARTTLS\r\n", &out), ServerSession::Result::kStartTls);
  EXPECT_EQ(out, "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_TRUE(on.session.tls_active());
  // After TLS: EHLO again, no STARTTLS advertised, a second one is 503.
  out.clear();
  EXPECT_EQ(on.session.Feed("EHLO c.example\r\nSTARTTLS\r\n", &out),
            ServerSession::Result::kContinue);
  EXPECT_EQ(out.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "503"}));
  EXPECT_EQ(on.policy.starttls_calls, 1);
}

TEST(ServerStartTlsTest, PipelinedBytesAfterStartTlsAreDiscarded) {
  Fixture f;
  std::string out;
  f.session.Feed("EHLO c.example\r\n", &out);
  out.clear();
  EXPECT_EQ(f.session.Feed("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@y>\r\n", &out),
            ServerSession::Result::kStartTls);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"220"}));
  EXPECT_TRUE(f.policy.mails.empty());
  // The TLS stream: EHLO is required again; MAIL before it is 503.
  out.clear();
  EXPECT_EQ(f.session.Feed("MAIL FROM:<a@example.org>\r\n", &out),
            ServerSession::Result::kContinue);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"503"}));
  out.clear();
  f.session.Feed("EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250", "250"}));
  EXPECT_EQ(f.policy.mails, (std::vector<std::string>{"a@example.org"}));
}

TEST(ServerStartTlsTest, PartialLineBeforeStartTlsIsForgotten) {
  Fixture f;
  std::string out;
  f.session.Feed("EHLO c.example\r\n", &out);
  out.clear();
  EXPECT_EQ(f.session.Feed("STARTTLS\r\nMAIL FR", &out), ServerSession::Result::kStartTls);
  out.clear();
  f.session.Feed("EHLO c.example\r\n", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"250"}));
}

TEST(ServerStartTlsTest, SetupFailureIs454AndStaysPlain) {
  Fixture f;
  f.policy.tls_ok = false;
  std::string out;
  f.session.Feed("EHLO c.example\r\n", &out);
  out.clear();
  EXPECT_EQ(f.session.Feed("STARTTLS\r\nMAIL FROM:<a@example.org>\r\n", &out),
            ServerSession::Result::kContinue);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"454", "250"}));
  EXPECT_TRUE(out.starts_with("454 4.7.0 "));
  EXPECT_FALSE(f.session.tls_active());
}

TEST(ServerStartTlsTest, SyntaxAndOrder) {
  Fixture f;
  std::string out;
  f.session.Feed("STARTTLS\r\nEHLO c.example\r\nSTARTTLS now\r\n", &out);
  EXPECT_EQ(Codes(out), (std::vector<std::string>{"503", "250", "501"}));
  EXPECT_EQ(f.policy.starttls_calls, 0);
  // A transaction in progress is forgotten by STARTTLS.
  out.clear();
  f.session.Feed("MAIL FROM:<a@example.org>\r\n", &out);
  EXPECT_TRUE(f.session.in_transaction());
  EXPECT_EQ(f.session.Feed("STARTTLS\r\n", &out), ServerSession::Result::kStartTls);
  EXPECT_FALSE(f.session.in_transaction());
}

TEST(TlsContextTest, BadFilesNameTheFile) {
  auto missing = MakeServerTlsContext("h.example", "/nonexistent/cert.pem", "/nonexistent/k.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/cert.pem"), std::string::npos);
  std::string junk = std::string(SALVO_SOURCE_DIR) + "/tests/sink/CMakeLists.txt";
  auto bad = MakeServerTlsContext("h.example", junk, junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--tls-cert " + junk), std::string::npos);
  auto half = MakeServerTlsContext("h.example", junk, "");
  EXPECT_FALSE(half.ok());
  auto generated = MakeServerTlsContext("h.example", "", "");
  ASSERT_TRUE(generated.ok()) << generated.status();
}

// A blocking OpenSSL client on the RawClient's socket after "220 2.0.0".
class TlsClient {
 public:
  explicit TlsClient(int fd) {
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ctx_ = SSL_CTX_new(TLS_client_method());
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd);
    ok_ = SSL_connect(ssl_) == 1;
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return ok_; }
  SSL* ssl() const { return ssl_; }
  bool Send(const std::string& s) { return SSL_write(ssl_, s.data(), int(s.size())) > 0; }
  std::vector<std::string> Replies(size_t count) {
    std::vector<std::string> codes;
    for (int round = 0; round < 1000 && codes.size() < count; ++round) {
      size_t eol;
      while (codes.size() < count && (eol = buf_.find("\r\n")) != std::string::npos) {
        std::string line = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        if (line.size() >= 4 && line[3] == ' ') codes.push_back(line.substr(0, 3));
      }
      if (codes.size() == count) break;
      char tmp[4096];
      int n = SSL_read(ssl_, tmp, sizeof(tmp));
      if (n <= 0) break;
      buf_.append(tmp, static_cast<size_t>(n));
    }
    return codes;
  }

 private:
  SSL_CTX* ctx_;
  SSL* ssl_;
  bool ok_ = false;
  std::string buf_;
};

TEST(SinkStartTlsTest, InjectedCommandGetsNoReplyAndTlsSessionCounted) {
  SinkOptions o;
  o.listen.push_back(ListenAddress{"127.0.0.1", 0});
  o.tls = true;
  o.hostname = "tls.sink.example";
  Sink sink(o);
  ASSERT_TRUE(sink.Start().ok());
  uint16_t port = sink.Bound()[0].port;
  {
    RawClient c;
    ASSERT_TRUE(c.Connect("127.0.0.1", port));
    ASSERT_EQ(c.ReadReplies(1), std::vector<int>{220});
    ASSERT_TRUE(c.Send("EHLO c.example\r\n"));
    ASSERT_EQ(c.ReadReplies(1), std::vector<int>{250});
    bool advertised = false;
    for (const std::string& l : c.lines()) advertised |= l == "250-STARTTLS";
    EXPECT_TRUE(advertised);
    // RFC 3207 injection: one write, the MAIL must never be answered.
    ASSERT_TRUE(c.Send("STARTTLS\r\nMAIL FROM:<x@example.org>\r\n"));
    ASSERT_EQ(c.ReadReplies(1), std::vector<int>{220});
    // Nothing else arrives in plaintext.
    EXPECT_TRUE(c.ReadReplies(1, std::chrono::milliseconds(300)).empty());
    TlsClient tls(c.fd());
    ASSERT_TRUE(tls.ok()) << ERR_reason_error_string(ERR_get_error());
    X509* peer = SSL_get1_peer_certificate(tls.ssl());
    ASSERT_NE(peer, nullptr);
    char cn[128] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
    EXPECT_STREQ(cn, "tls.sink.example");
    X509_free(peer);
    // The injected MAIL was not acted on: a fresh MAIL is not "nested".
    ASSERT_TRUE(tls.Send("MAIL FROM:<a@example.org>\r\n"));
    EXPECT_EQ(tls.Replies(1), std::vector<std::string>{"503"});  // EHLO needed again
    ASSERT_TRUE(
        tls.Send("EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@one.example>\r\n"
                 "DATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nSTARTTLS\r\nQUIT\r\n"));
    EXPECT_EQ(tls.Replies(7),
              (std::vector<std::string>{"250", "250", "250", "354", "250", "503", "221"}));
  }
  sink.Stop();
  SinkStats s = sink.Stats();
  EXPECT_EQ(s.tls_sessions, 1u);
  EXPECT_EQ(s.messages, 1u);
  EXPECT_NE(s.ToJson().find("\"tls_sessions\": 1"), std::string::npos);
}

TEST(SinkStartTlsTest, GarbageInsteadOfHandshakeClosesConnection) {
  SinkOptions o;
  o.listen.push_back(ListenAddress{"127.0.0.1", 0});
  o.tls = true;
  Sink sink(o);
  ASSERT_TRUE(sink.Start().ok());
  {
    RawClient c;
    ASSERT_TRUE(c.Connect("127.0.0.1", sink.Bound()[0].port));
    ASSERT_EQ(c.ReadReplies(1), std::vector<int>{220});
    ASSERT_TRUE(c.Send("EHLO c.example\r\nSTARTTLS\r\n"));
    ASSERT_EQ(c.ReadReplies(2), (std::vector<int>{250, 220}));
    ASSERT_TRUE(c.Send("MAIL FROM:<x@example.org>\r\nthis is not TLS at all\r\n"));
    c.ReadReplies(1, std::chrono::seconds(5));
    EXPECT_TRUE(c.peer_closed());
  }
  sink.Stop();
  EXPECT_EQ(sink.Stats().tls_sessions, 0u);
  EXPECT_EQ(sink.Stats().messages, 0u);
}

}  // namespace
}  // namespace salvo::sink
