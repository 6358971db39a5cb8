// STARTTLS acceptance: the real `salvo sink --tls` binary on a run-time
// loopback port, driven by clients no one here wrote (swaks --tls,
// openssl s_client -starttls smtp) and a raw client probing the RFC 3207
// command-injection defence; counts come from the sink's stats file.

#include "gtest/gtest.h"
#include "tests/sink/test_client.h"

#include "tests/sink/sink_process.h"

namespace salvo::sink {
namespace {

class SinkTlsAcceptanceTest : public SinkProcessTest {};

// swaks --tls: three deliveries through STARTTLS, each counted as a TLS
// session by the sink.
TEST_F(SinkTlsAcceptanceTest, SwaksDeliversThroughStartTls) {
  std::string swaks = Which("swaks");
  ASSERT_FALSE(swaks.empty()) << "swaks missing: run deploy/bootstrap.sh";
  StartSink({"--tls", "--hostname", "tls-sink.example"});
  for (int i = 0; i < 3; ++i) {
    Process client({swaks, "--server", "127.0.0.1", "--port", std::to_string(port_), "--tls",
                    "--from", "sender@example.org", "--to",
                    "r" + std::to_string(i) + "@one.example", "--body", "hello over TLS\n"},
                   dir_, "swaks" + std::to_string(i));
    ASSERT_EQ(client.Wait(milliseconds(30000)), 0) << client.Out() << client.Err();
    std::string t = client.Out();
    EXPECT_NE(t.find("250-STARTTLS"), std::string::npos) << t;
    EXPECT_NE(t.find("220 2.0.0 Ready to start TLS"), std::string::npos) << t;
    EXPECT_NE(t.find("TLS started"), std::string::npos) << t;
    EXPECT_NE(t.find("250 2.0.0 Ok: queued as"), std::string::npos) << t;
  }
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["tls_sessions"], 3);
  EXPECT_EQ(s["messages"], 3);
  EXPECT_EQ(s["recipients_delivered"], 3);
}

// One write "STARTTLS\r\nMAIL FROM:<x>\r\n": only the 220 comes back, the
// injected MAIL is never answered (neither in plaintext nor after TLS).
TEST_F(SinkTlsAcceptanceTest, PipelinedCommandAfterStartTlsIsNotAnswered) {
  StartSink({"--tls"});
  RawClient c;
  ASSERT_TRUE(c.Connect("127.0.0.1", port_));
  ASSERT_EQ(c.ReadReplies(1), std::vector<int>{220});
  ASSERT_TRUE(c.Send("EHLO client.example\r\n"));
  ASSERT_EQ(c.ReadReplies(1), std::vector<int>{250});
  ASSERT_TRUE(c.Send("STARTTLS\r\nMAIL FROM:<x@example.org>\r\n"));
  EXPECT_EQ(c.ReadReplies(1), std::vector<int>{220});
  EXPECT_TRUE(c.ReadReplies(1, milliseconds(500)).empty());
  EXPECT_FALSE(c.peer_closed());
  c.Close();
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["tls_sessions"], 0);
}

// openssl s_client -starttls smtp connects and shows the generated
// certificate for CN=the sink hostname.
TEST_F(SinkTlsAcceptanceTest, OpensslSClientShowsCertificate) {
  std::string openssl = Which("openssl");
  ASSERT_FALSE(openssl.empty()) << "openssl missing";
  StartSink({"--tls", "--hostname", "cert-check.example"});
  Process client({openssl, "s_client", "-starttls", "smtp", "-connect",
                  "127.0.0.1:" + std::to_string(port_), "-brief"},
                 dir_, "s_client");
  // stdin is /dev/null: s_client ends after the handshake (EOF on stdin).
  ASSERT_EQ(client.Wait(milliseconds(30000)), 0) << client.Out() << client.Err();
  std::string all = client.Out() + client.Err();
  EXPECT_NE(all.find("CONNECTION ESTABLISHED"), std::string::npos) << all;
  EXPECT_NE(all.find("cert-check.example"), std::string::npos) << all;
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["tls_sessions"], 1);
}

// A certificate and key from files are served as given; bad files are a
// usage error naming the file.
TEST_F(SinkTlsAcceptanceTest, CertificateFilesAndBadFileErrors) {
  std::string openssl = Which("openssl");
  ASSERT_FALSE(openssl.empty()) << "openssl missing";
  std::string cert = dir_ + "/cert.pem", key = dir_ + "/key.pem";
  Process gen({openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
               cert, "-days", "2", "-subj", "/CN=from-file.example"},
              dir_, "req");
  ASSERT_EQ(gen.Wait(milliseconds(30000)), 0) << gen.Err();

  Process bad(
      {SALVO_BINARY, "sink", "--listen", "127.0.0.1:0", "--tls-cert", key, "--tls-key", key}, dir_,
      "bad");
  EXPECT_EQ(bad.Wait(milliseconds(10000)), 2);
  EXPECT_NE(bad.Err().find("--tls-cert " + key), std::string::npos) << bad.Err();
  Process missing({SALVO_BINARY, "sink", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key",
                   dir_ + "/nope.pem"},
                  dir_, "missing");
  EXPECT_EQ(missing.Wait(milliseconds(10000)), 2);
  EXPECT_NE(missing.Err().find(dir_ + "/nope.pem"), std::string::npos) << missing.Err();

  StartSink({"--tls-cert", cert, "--tls-key", key});
  Process client({openssl, "s_client", "-starttls", "smtp", "-connect",
                  "127.0.0.1:" + std::to_string(port_), "-brief"},
                 dir_, "s_client");
  ASSERT_EQ(client.Wait(milliseconds(30000)), 0) << client.Out() << client.Err();
  std::string all = client.Out() + client.Err();
  EXPECT_NE(all.find("from-file.example"), std::string::npos) << all;
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["tls_sessions"], 1);
}

}  // namespace
}  // namespace salvo::sink
