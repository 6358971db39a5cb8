// End-to-end tests of the whole `salvo` binary against a private Postfix
// smtpd (tests/support/postfix.h): a real MTA as the smarthost of a
// [[route]], what it accepted checked in its Maildirs and its log.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/support/postfix.h"

namespace salvo::itest {
namespace {

using ::testing::HasSubstr;
using testsupport::PrivatePostfix;

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

nlohmann::json Status(const TempDir& dir, const std::string& config) {
  RunResult r = RunSalvo(dir, {"campaign", "status", "1", "--json", "--config", config});
  if (r.code != 0) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(r.out);
  } catch (...) {
    return nlohmann::json::object();
  }
}

uint64_t CountOf(const nlohmann::json& status, const char* state) {
  if (!status.contains("counts")) return 0;
  return status["counts"].value(state, uint64_t{0});
}

// Issue 13: a route with AUTH to a Postfix smtpd that requires it (Cyrus
// SASL against a sasldb, AUTH offered only after STARTTLS, relaying only for
// authenticated clients) delivers every recipient; wrong credentials are one
// error line naming the route, and its recipients wait in the queue: not
// deferred, not bounced, not tried again recipient by recipient.
TEST(EnginePostfixE2E, SmarthostRouteWithSaslAuthDeliversAndWrongCredentialsHoldTheRoute) {
  const std::string unavailable = PrivatePostfix::Unavailable(/*sasl=*/true);
  if (!unavailable.empty()) GTEST_SKIP() << unavailable;
  TempDir dir;
  RunResult cert = testsupport::RunShell(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=postfix.test -keyout " +
      dir / "relay.key" + " -out " + dir / "relay.crt" + " 2>&1");
  ASSERT_EQ(cert.code, 0) << cert.out;
  constexpr int kRecipients = 12;
  constexpr int kConnections = 8;  // delivery.connections_per_site
  std::string csv = "email,code\n";
  PrivatePostfix::Options o;
  o.cert_file = dir / "relay.crt";
  o.key_file = dir / "relay.key";
  o.domains = "d0.example d1.example";
  for (int i = 0; i < kRecipients; ++i) {
    const std::string rcpt = "user" + std::to_string(i) + "@d" + std::to_string(i % 2) + ".example";
    o.mailboxes.emplace_back(rcpt, rcpt);
    csv += rcpt + ",C" + std::to_string(1000 + i) + "\n";
  }
  o.sasl_user = "salvo-relay";
  o.sasl_password = "correct-horse-7391";
  TempDir postfix_dir("salvo-postfix");
  PrivatePostfix postfix(postfix_dir.path());
  const std::string started = postfix.Start(o);
  ASSERT_EQ(started, "");

  WriteFile(dir / "c.csv", csv);
  WriteFile(dir / "c.eml",
            "From: News <news@sender.example>\nSubject: Code {{code}}\n\nYour code is {{code}}.\n");
  WriteFile(dir / "c.toml",
            "name = \"auth\"\ntemplate = \"c.eml\"\nrecipients = \"c.csv\"\n"
            "from = \"news@sender.example\"\n");
  auto config = [&](const std::string& name, const std::string& password_file) {
    const std::string path = dir / name;
    WriteFile(path, "data_dir = \"data-" + name +
                        "\"\nshards = 2\npin_threads = false\n"
                        "[delivery]\nconnections_per_site = " +
                        std::to_string(kConnections) +
                        "\n[metrics]\nlisten = \"\"\n"
                        "[tls]\nmode = \"opportunistic\"\nverify = false\n"
                        "[[route]]\ndomain = \"*\"\nhosts = [\"" +
                        postfix.hostport() +
                        "\"]\n"
                        "auth_user = \"salvo-relay\"\nauth_password_file = \"" +
                        password_file + "\"\ntls = \"required\"\n");
    return path;
  };
  WriteFile(dir / "good.pass", "correct-horse-7391\n");
  WriteFile(dir / "bad.pass", "not-the-secret-4711\n");

  // Right credentials: every recipient delivered, each message in its
  // Maildir, accepted only after AUTH PLAIN as the route's user.
  RunResult sent = RunSalvo(
      dir, {"send", dir / "c.toml", "--config", config("good.toml", "good.pass"), "--json"});
  ASSERT_EQ(sent.code, 0) << sent.err << sent.out;
  EXPECT_EQ(nlohmann::json::parse(sent.out)["delivered"].get<int>(), kRecipients) << sent.out;
  for (const auto& [rcpt, box] : o.mailboxes) {
    auto mails = postfix.WaitForMail(box, 1);
    ASSERT_EQ(mails.size(), 1u) << rcpt << "\n" << postfix.Log();
    EXPECT_THAT(mails[0], HasSubstr("Delivered-To: " + rcpt + "\n"));
  }
  std::string log = postfix.Log();
  EXPECT_EQ(Occurrences(log, "status=sent (delivered to maildir)"), size_t{kRecipients}) << log;
  // One line per message smtpd queued: each after AUTH.
  EXPECT_EQ(Occurrences(log, "sasl_method=PLAIN, sasl_username=salvo-relay@postfix.test"),
            size_t{kRecipients})
      << log;
  EXPECT_EQ(Occurrences(log, "authentication failed"), 0u) << log;

  // Wrong credentials: Postfix answers 535 5.7.8; the route is held.
  const std::string bad = config("bad.toml", "bad.pass");
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", dir / "c.toml", "--config", bad}).code, 0);
  Process run({SALVO_BINARY, "run", "--config", bad}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(WaitFor(
      [&] { return run.err().find("authentication as 'salvo-relay' failed") != std::string::npos; },
      std::chrono::seconds(20)))
      << run.err();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  nlohmann::json st = Status(dir, bad);
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
  EXPECT_EQ(CountOf(st, "deferred"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "bounced"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "delivered"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "queued"), size_t{kRecipients}) << st.dump();
  const std::string err = run.err();
  EXPECT_EQ(Occurrences(err, "authentication as 'salvo-relay' failed"), 1u) << err;
  EXPECT_THAT(err, HasSubstr("route * (" + bad + ":"));
  EXPECT_THAT(err, HasSubstr("535 5.7.8"));
  EXPECT_THAT(err, HasSubstr("held in the queue (not deferred)"));
  EXPECT_EQ(err.find("not-the-secret-4711"), std::string::npos) << "password logged";
  log = postfix.Log();
  EXPECT_EQ(Occurrences(log, "status=sent (delivered to maildir)"), size_t{kRecipients}) << log;
  // One failed login, not one per recipient nor one per connection: a route
  // with credentials opens a single connection until one got past AUTH, and
  // stops at the first refusal.
  const size_t refused = Occurrences(log, "SASL PLAIN authentication failed");
  EXPECT_EQ(refused, 1u) << log;
  EXPECT_EQ(log.find("not-the-secret-4711"), std::string::npos);
}

}  // namespace
}  // namespace salvo::itest
