// STARTTLS acceptance: the real `salvo sink --tls` binary on a run-time
// loopback port, driven by clients no one here wrote (swaks --tls,
// openssl s_client -starttls smtp) and a raw client probing the RFC 3207
// command-injection defence; counts come from the sink's stats file.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/sink/test_client.h"

namespace salvo::sink {
namespace {

using std::chrono::milliseconds;
using testing::RawClient;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Which(const std::string& tool) {
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    std::string p = std::string(dir) + tool;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// A child process with stdin from /dev/null and stdout/stderr to files;
// killed (SIGKILL) in the destructor if still running, so failures never
// leave it behind.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& dir, const std::string& name)
      : out_(dir + "/" + name + ".out"), err_(dir + "/" + name + ".err") {
    pid_ = fork();
    if (pid_ == 0) {
      int in = open("/dev/null", O_RDONLY);
      int out = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int err = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(in, 0);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> args;
      std::vector<std::string> copy = argv;
      for (std::string& a : copy) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Waits up to `timeout`; returns the exit code, or -1 (then kills it).
  int Wait(milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    exited_ = true;
    return -1;
  }
  std::string Out() const { return ReadFile(out_); }
  std::string Err() const { return ReadFile(err_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string out_, err_;
};

class SinkTlsAcceptanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("salvo-sink-acc-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    stats_ = dir_ + "/stats.json";
  }
  void TearDown() override {
    sink_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts `salvo sink` on 127.0.0.1:0 and learns its port from stdout.
  void StartSink(std::vector<std::string> extra) {
    std::vector<std::string> argv = {SALVO_BINARY,  "sink",         "--listen",
                                     "127.0.0.1:0", "--stats-file", stats_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    sink_ = std::make_unique<Process>(argv, dir_, "sink");
    const std::string marker = "listening on 127.0.0.1:";
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::string out = sink_->Out();
      size_t pos = out.find(marker);
      if (pos != std::string::npos && out.find('\n', pos) != std::string::npos) {
        port_ = static_cast<uint16_t>(std::stoi(out.substr(pos + marker.size())));
      } else {
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    ASSERT_NE(port_, 0) << "sink did not start: " << sink_->Err();
  }

  // SIGTERM, expect a clean exit, then parse the final stats file.
  nlohmann::json StopSink() {
    kill(sink_->pid(), SIGTERM);
    int rc = sink_->Wait(milliseconds(10000));
    EXPECT_EQ(rc, 0) << sink_->Err();
    EXPECT_NE(sink_->Out().find("salvo sink: exiting: connections="), std::string::npos);
    return nlohmann::json::parse(ReadFile(stats_));
  }

  nlohmann::json CurrentStats() {
    std::string text = ReadFile(stats_);
    if (text.empty()) return nlohmann::json::object();
    return nlohmann::json::parse(text, nullptr, false);
  }

  std::string dir_, stats_;
  std::unique_ptr<Process> sink_;
  uint16_t port_ = 0;
};

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
