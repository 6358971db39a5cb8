// The client over real loopback sockets against a private Postfix smtpd
// (PIPELINING, CHUNKING and STARTTLS on, certificate generated at test time),
// delivering through Postfix's virtual(8) agent into Maildirs under a temp
// dir. The stored message must be byte for byte what was sent, apart from the
// trace headers Postfix prepends (Return-Path, Delivered-To, Received) and
// the line ends (Postfix stores LF; SMTP carries CRLF).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/smtp/driver.h"
#include "tests/support/files.h"
#include "tests/support/ports.h"

namespace salvo::smtp {
namespace {

using testing::RunCommand;
using testing::SendAll;
using testing::TempDir;

using testsupport::ReadFile;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Drops the leading trace headers Postfix adds (with their folded lines).
std::string StripTraceHeaders(const std::string& stored) {
  size_t pos = 0;
  bool skipping = false;
  while (pos < stored.size()) {
    size_t eol = stored.find('\n', pos);
    if (eol == std::string::npos) break;
    std::string_view line(stored.data() + pos, eol - pos);
    bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    if (continuation && skipping) {
      pos = eol + 1;
      continue;
    }
    if (line.rfind("Return-Path:", 0) == 0 || line.rfind("Delivered-To:", 0) == 0 ||
        line.rfind("Received:", 0) == 0) {
      skipping = true;
      pos = eol + 1;
      continue;
    }
    break;
  }
  return stored.substr(pos);
}

std::string CrlfToLf(std::string s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out.push_back(s[i]);
  }
  return out;
}

class PostfixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      skip_reason_ = "needs root to run a private Postfix instance";
      return;
    }
    if (access("/usr/sbin/postfix", X_OK) != 0) {
      skip_reason_ = "postfix is not installed (deploy/bootstrap.sh test)";
      return;
    }
    dir_ = new TempDir();
    const std::string& t = dir_->path();
    ASSERT_TRUE(testing::GenerateTestPki(t).ok());
    for (const char* d : {"conf", "queue", "data", "vmail"}) {
      std::filesystem::create_directories(t + "/" + d);
    }
    ASSERT_EQ(RunCommand("chown postfix '" + t + "/data' && chown 65534:65534 '" + t + "/vmail'"),
              0);
    port_ = testsupport::FreePort();
    WriteFile(
        t + "/conf/main.cf",
        "compatibility_level = 3.6\n"
        "queue_directory = " +
            t +
            "/queue\n"
            "data_directory = " +
            t +
            "/data\n"
            "mail_owner = postfix\nsetgid_group = postdrop\n"
            "myhostname = postfix.test\nmydomain = postfix.test\nmyorigin = postfix.test\n"
            "mydestination =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "mynetworks = 127.0.0.0/8\n"
            "maillog_file = " +
            t +
            "/maillog\n"
            "maillog_file_prefixes = " +
            t +
            "\n"
            "smtputf8_enable = yes\n"
            "virtual_mailbox_domains = dest.test\n"
            "virtual_mailbox_base = " +
            t +
            "/vmail\n"
            "virtual_mailbox_maps = inline:{ {alice@dest.test=alice/}, {bob@dest.test=bob/} }\n"
            "virtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\n"
            "virtual_minimum_uid = 100\n"
            "smtpd_tls_cert_file = " +
            t +
            "/server.crt\n"
            "smtpd_tls_key_file = " +
            t +
            "/server.key\n"
            "smtpd_tls_security_level = may\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
            "local_header_rewrite_clients =\nenable_original_recipient = no\n"
            "alias_maps =\nalias_database =\nbiff = no\n"
            "smtpd_banner = $myhostname ESMTP\n");
    WriteFile(t + "/conf/master.cf", "127.0.0.1:" + std::to_string(port_) +
                                         " inet n - n - - smtpd\n"
                                         "cleanup unix n - n - 0 cleanup\n"
                                         "qmgr unix n - n 300 1 qmgr\n"
                                         "tlsmgr unix - - n 1000? 1 tlsmgr\n"
                                         "rewrite unix - - n - - trivial-rewrite\n"
                                         "bounce unix - - n - 0 bounce\n"
                                         "defer unix - - n - 0 bounce\n"
                                         "trace unix - - n - 0 bounce\n"
                                         "verify unix - - n - 1 verify\n"
                                         "flush unix n - n 1000? 0 flush\n"
                                         "proxymap unix - - n - - proxymap\n"
                                         "smtp unix - - n - - smtp\n"
                                         "relay unix - - n - - smtp\n"
                                         "showq unix n - n - - showq\n"
                                         "error unix - - n - - error\n"
                                         "retry unix - - n - - error\n"
                                         "discard unix - - n - - discard\n"
                                         "local unix - n n - - local\n"
                                         "virtual unix - n n - - virtual\n"
                                         "anvil unix - - n - 1 anvil\n"
                                         "scache unix - - n - 1 scache\n"
                                         "postlog unix-dgram n - n - 1 postlogd\n");
    std::string out;
    int rc = RunCommand("/usr/sbin/postfix -c '" + t + "/conf' start", &out);
    started_ = true;
    ASSERT_EQ(rc, 0) << out << ReadFile(t + "/maillog");
    // Bounded wait for smtpd's port.
    bool up = false;
    for (int i = 0; i < 100 && !up; ++i) {
      int fd = testing::ConnectLoopback(port_);
      if (fd >= 0) {
        close(fd);
        up = true;
      } else {
        usleep(100000);
      }
    }
    ASSERT_TRUE(up) << "postfix smtpd did not listen on " << port_ << "\n"
                    << ReadFile(t + "/maillog");
  }

  static void TearDownTestSuite() {
    if (dir_ == nullptr) return;
    const std::string& t = dir_->path();
    if (started_) {
      RunCommand("/usr/sbin/postfix -c '" + t + "/conf' stop");
      // Make sure the master is gone even if `stop` failed.
      std::string pid = ReadFile(t + "/queue/pid/master.pid");
      int p = atoi(pid.c_str());
      for (int i = 0; i < 50 && p > 0 && kill(p, 0) == 0; ++i) usleep(100000);
      if (p > 0 && kill(p, 0) == 0) kill(p, SIGKILL);
    }
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_NE(dir_, nullptr);
  }

  // Waits (bounded) for `count` messages in a mailbox; returns their contents.
  static std::vector<std::string> WaitForMail(const std::string& box, size_t count) {
    std::string dir = dir_->path() + "/vmail/" + box + "/new";
    std::vector<std::string> found;
    for (int i = 0; i < 150; ++i) {
      found.clear();
      std::error_code ec;
      for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
        found.push_back(ReadFile(f.path().string()));
      }
      if (found.size() >= count) break;
      usleep(100000);
    }
    return found;
  }

  static Options Opts() {
    Options o;
    o.helo_name = "client.test";
    o.host = "mx.test";
    o.host_label = "mx.test[127.0.0.1]";
    o.tls = TlsMode::kDisabled;
    return o;
  }

  static std::string skip_reason_;
  static TempDir* dir_;
  static int port_;
  static bool started_;
};

std::string PostfixTest::skip_reason_;
TempDir* PostfixTest::dir_ = nullptr;
int PostfixTest::port_ = 0;
bool PostfixTest::started_ = false;

std::string Message(std::string_view subject) {
  std::string m = "From: Sender <sender@client.test>\r\nTo: <alice@dest.test>\r\n";
  m += "Subject: ";
  m += subject;
  m += "\r\nDate: Sat, 28 Nov 2026 01:00:00 +0000\r\nMessage-ID: <";
  m += subject;
  m += "@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Transfer-Encoding: 8bit\r\n\r\n"
       "Hello Alice,\r\n.a line that starts with a dot\r\n..and one with two\r\n.\r\n"
       "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac\r\n";
  m += std::string(900, 'L') + "\r\n";
  for (int i = 0; i < 300; ++i) m += "body line " + std::to_string(i) + " of a larger message\r\n";
  m += "bye\r\n";
  return m;
}

TEST_F(PostfixTest, BdatOverVerifiedTlsIsStoredByteForByte) {
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  Options o = Opts();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx->get();
  const std::string msg = Message("bdat-tls");
  Envelope e;
  e.id = 1;
  e.mail_from = "sender@client.test";
  e.rcpts = {"alice@dest.test", "nobody@dest.test", "bob@dest.test"};
  e.body = msg;
  e.needs_8bit = true;
  std::unique_ptr<Session> s;
  auto r = SendAll(o, port_, {e}, absl::Seconds(20), &s);
  ASSERT_FALSE(r.wall_limit_hit);
  const auto* out = r.Find(1);
  ASSERT_NE(out, nullptr) << r.closed.detail;
  EXPECT_EQ((*out)[0].disposition, Disposition::kDelivered);
  EXPECT_EQ((*out)[1].disposition, Disposition::kBounced);
  EXPECT_EQ((*out)[1].scope, Scope::kRecipient);
  EXPECT_EQ((*out)[1].reply.enhanced, "5.1.1");
  EXPECT_EQ((*out)[1].category, "invalid_recipient");
  EXPECT_EQ((*out)[2].disposition, Disposition::kDelivered);
  EXPECT_EQ(r.closed.kind, FailureKind::kNone);
  const Extensions& x = s->extensions();
  EXPECT_TRUE(x.pipelining && x.chunking && x.eight_bit_mime && x.smtputf8 && x.size);
  EXPECT_FALSE(x.starttls);  // not offered again after TLS
  EXPECT_TRUE(s->tls_info().active);
  EXPECT_TRUE(s->tls_info().verified);
  EXPECT_FALSE(s->tls_info().protocol.empty());
  EXPECT_EQ(r.sent.find("BDAT"), std::string::npos);  // only ciphertext after STARTTLS
  for (const char* box : {"alice", "bob"}) {
    auto mails = WaitForMail(box, 1);
    ASSERT_EQ(mails.size(), 1u) << box << "\n" << ReadFile(dir_->path() + "/maillog");
    EXPECT_EQ(StripTraceHeaders(mails[0]), CrlfToLf(msg)) << box;
  }
  // smtpd logs the command counts at disconnect, e.g. "... starttls=1 ... bdat=1 quit=1".
  std::string log;
  for (int i = 0; i < 50; ++i) {
    log = ReadFile(dir_->path() + "/maillog");
    if (log.find("bdat=1") != std::string::npos) break;
    usleep(100000);
  }
  EXPECT_NE(log.find("starttls=1 mail=1 rcpt=2/3 bdat=1 quit=1"), std::string::npos) << log;
}

TEST_F(PostfixTest, SecondConnectionResumesTheTlsSession) {
  // A clean QUIT sends close_notify, so the ticket from the first
  // connection stays resumable and the second skips the full handshake.
  // (Postfix issues no new ticket on a resumed connection and its sessions
  // are single-use, so only the second of a series is checked.)
  auto ctx = TlsClientContext::Create({.ca_file = dir_->path() + "/ca.crt"});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  Options o = Opts();
  o.tls = TlsMode::kRequired;
  o.tls_context = ctx->get();
  for (int i = 1; i <= 2; ++i) {
    Envelope e;
    e.id = static_cast<uint64_t>(i);
    e.mail_from = "sender@client.test";
    e.rcpts = {"alice@dest.test"};
    e.body = Message("resume-" + std::to_string(i));
    std::unique_ptr<Session> s;
    auto r = SendAll(o, port_, {e}, absl::Seconds(20), &s);
    ASSERT_FALSE(r.wall_limit_hit);
    const auto* out = r.Find(static_cast<uint64_t>(i));
    ASSERT_NE(out, nullptr) << r.closed.detail;
    EXPECT_EQ((*out)[0].disposition, Disposition::kDelivered);
    EXPECT_EQ(r.closed.kind, FailureKind::kNone);
    ASSERT_TRUE(s->tls_info().active);
    EXPECT_TRUE(s->tls_info().verified);
    EXPECT_EQ(s->tls_info().resumed, i > 1) << "connection " << i;
  }
  EXPECT_EQ((*ctx)->resumed_count(), 1u);
}

TEST_F(PostfixTest, DataWithDotStuffingAndSeveralTransactionsPerConnection) {
  Options o = Opts();
  o.use_chunking = false;
  std::vector<std::string> msgs = {Message("data-1"), Message("data-2"), Message("data-3")};
  std::vector<Envelope> envs;
  for (size_t i = 0; i < msgs.size(); ++i) {
    Envelope e;
    e.id = 10 + i;
    e.mail_from = "sender@client.test";
    e.rcpts = {i == 1 ? "ghost@dest.test" : "bob@dest.test"};
    e.body = msgs[i];
    e.needs_8bit = true;
    envs.push_back(std::move(e));
  }
  auto r = SendAll(o, port_, envs);
  ASSERT_EQ(r.transactions.size(), 3u) << r.closed.detail;
  EXPECT_EQ((*r.Find(10))[0].disposition, Disposition::kDelivered);
  EXPECT_EQ((*r.Find(11))[0].disposition, Disposition::kBounced);
  EXPECT_EQ((*r.Find(12))[0].disposition, Disposition::kDelivered);
  EXPECT_NE(r.sent.find("\r\n..a line that starts with a dot\r\n...and one with two\r\n..\r\n"),
            std::string::npos);
  EXPECT_NE(r.sent.find("BODY=8BITMIME"), std::string::npos);
  // Transaction 2 had no accepted recipient: the pipelined DATA was refused, RSET follows.
  EXPECT_NE(r.sent.find("RSET\r\n"), std::string::npos);
  // bob may also hold the TLS test's message; find ours by content (bounded wait).
  int matched = 0;
  for (int attempt = 0; attempt < 100 && matched < 2; ++attempt) {
    if (attempt > 0) usleep(100000);
    matched = 0;
    for (const auto& m : WaitForMail("bob", 1)) {
      std::string stripped = StripTraceHeaders(m);
      matched += stripped == CrlfToLf(msgs[0]) || stripped == CrlfToLf(msgs[2]);
    }
  }
  EXPECT_EQ(matched, 2) << ReadFile(dir_->path() + "/maillog");
}

TEST_F(PostfixTest, MessageOverTheAdvertisedSizeIsRefusedLocally) {
  std::string huge(11 * 1024 * 1024, 'x');
  for (size_t i = 76; i < huge.size(); i += 78) {
    huge[i - 1] = '\r';
    huge[i] = '\n';
  }
  Envelope e;
  e.id = 1;
  e.mail_from = "sender@client.test";
  e.rcpts = {"alice@dest.test"};
  e.body = huge;
  auto r = SendAll(Opts(), port_, {e});
  ASSERT_NE(r.Find(1), nullptr);
  EXPECT_EQ((*r.Find(1))[0].disposition, Disposition::kBounced);
  EXPECT_EQ((*r.Find(1))[0].category, "message_too_large");
  EXPECT_EQ(r.sent.find("MAIL FROM"), std::string::npos);
}

}  // namespace
}  // namespace salvo::smtp
