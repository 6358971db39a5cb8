// End-to-end tests of the whole `salvo` binary: `salvo send` / `salvo run`
// against real `salvo sink` processes on 127.0.0.x ports chosen at run time,
// with the RocksDB spool in a temp dir. What the sinks received is checked
// independently (stats file, saved messages parsed by Python's strict email
// parser and DKIM-verified by dkimpy).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <set>

#include "tests/integration/harness.h"

namespace salvo::itest {
namespace {

using ::testing::HasSubstr;

// A campaign of `n` recipients spread over `domains` (d0.example, d1.example...).
struct Campaign {
  std::string file;  // campaign TOML
  std::string csv;
  int n = 0;
};

Campaign WriteCampaign(const TempDir& dir, int n, int domains, const std::string& retry = "",
                       const std::string& name = "e2e") {
  Campaign c;
  c.n = n;
  c.csv = dir / (name + ".csv");
  std::string csv = "email,name,code\n";
  const char* names[] = {"Ann", "Zoë Ünal", "李雷", "O'Brien, Pat", "Ωmega"};
  for (int i = 0; i < n; ++i) {
    std::string nm = std::string(names[i % 5]) + " " + std::to_string(i);
    if (nm.find(',') != std::string::npos) nm = "\"" + nm + "\"";
    csv += "user" + std::to_string(i) + "@d" + std::to_string(i % domains) + ".example," + nm +
           ",C" + std::to_string(1000 + i) + "\n";
  }
  WriteFile(c.csv, csv);
  WriteFile(dir / (name + ".eml"),
            "From: News <news@sender.example>\nSubject: Hello {{name}}\n\nHi {{name}},\n"
            "your code is {{code}}.\n.a line starting with a dot\n");
  c.file = dir / (name + ".toml");
  WriteFile(c.file, "name = \"" + name + "\"\ntemplate = \"" + name + ".eml\"\nrecipients = \"" +
                        name + ".csv\"\nfrom = \"news@sender.example\"\n" + retry);
  return c;
}

// An RSA-2048 key made by openssl at `key` (mode 600) and its DKIM TXT
// record (v=DKIM1; k=rsa; p=...) at `txt`.
bool MakeRsaKey(const std::string& key, const std::string& txt) {
  return std::system(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + key +
                      " 2>/dev/null && chmod 600 " + key)
                         .c_str()) == 0 &&
         std::system(("printf 'v=DKIM1; k=rsa; p=%s' \"$(openssl pkey -in " + key +
                      " -pubout -outform DER 2>/dev/null | base64 -w0)\" > " + txt)
                         .c_str()) == 0;
}

// tests/integration/check_saved.py over the copies the sink saved in
// dir/saved (strict parse, To, rendered values, DKIM verified by dkimpy with
// the TXT record `txt`, selector s1 of sender.example): passes, `n` checked.
void ExpectSavedCopiesCheck(const TempDir& dir, const Campaign& c, const std::string& txt,
                            const std::string& flags, int n) {
  const std::string out = dir / "check.out";
  const std::string cmd = std::string("/usr/bin/python3 ") + SALVO_SOURCE_DIR +
                          "/tests/integration/check_saved.py " + dir / "saved" + " " + c.csv + " " +
                          txt + " s1 sender.example" + flags + " > " + out + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << ReadFile(out);
  EXPECT_THAT(ReadFile(out), HasSubstr("ok " + std::to_string(n)));
}

std::string Config(const TempDir& dir, const std::string& routes, const std::string& extra = "") {
  std::string path = dir / "salvo.toml";
  WriteFile(path,
            "data_dir = \"data\"\nshards = 2\npin_threads = false\nlog_level = \"warning\"\n"
            "[tls]\nmode = \"off\"\n[dns]\nservers = [\"" +
                DeadHostPort("127.0.0.1") + "\"]\ntimeout = \"200ms\"\nattempts = 1\n" + extra +
                routes);
  return path;
}

nlohmann::json Status(const TempDir& dir, const std::string& config, const std::string& id = "1") {
  RunResult r = RunSalvo(dir, {"campaign", "status", id, "--json", "--config", config});
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

// [delivery] max_recipients_per_message: recipients of identical copies (a
// template with no per-recipient values, same campaign and domain) share one
// transaction, the copy addressed to "undisclosed-recipients:;"; a template
// with placeholders still gets one transaction per recipient.
TEST(EngineE2E, RecipientsOfIdenticalCopiesShareATransaction) {
  TempDir dir;
  std::filesystem::create_directories(dir / "saved");
  Sink sink(dir, "sink", "127.0.0.2", {"--save-dir", dir / "saved"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n",
                           "[delivery]\nmax_recipients_per_message = 100\n");
  std::string csv = "email\n";
  for (int i = 0; i < 250; ++i) csv += "u" + std::to_string(i) + "@same.example\n";
  WriteFile(dir / "same.csv", csv);
  WriteFile(dir / "same.eml", "From: news@sender.example\nSubject: Same for all\n\nHello.\n");
  WriteFile(dir / "same.toml",
            "name = \"same\"\ntemplate = \"same.eml\"\nrecipients = \"same.csv\"\n"
            "from = \"news@sender.example\"\n");
  RunResult r = RunSalvo(dir, {"send", dir / "same.toml", "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["delivered"].get<int>(), 250);
  ASSERT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") >= 250; }, std::chrono::seconds(10)));
  EXPECT_EQ(sink.Count("messages"), 3u);  // 100 + 100 + 50
  std::multiset<int> per_copy;
  for (int n = 1; n <= 3; ++n) {
    std::string env = ReadFile(dir / ("saved/" + std::to_string(n) + ".env"));
    int rcpts = 0;
    for (size_t p = env.find("RCPT TO:"); p != std::string::npos; p = env.find("RCPT TO:", p + 1))
      ++rcpts;
    per_copy.insert(rcpts);
    std::string eml = ReadFile(dir / ("saved/" + std::to_string(n) + ".eml"));
    EXPECT_THAT(eml, HasSubstr("To: undisclosed-recipients:;\r\n"));
    EXPECT_THAT(eml, ::testing::Not(HasSubstr("@same.example")));
  }
  EXPECT_EQ(per_copy, (std::multiset<int>{50, 100, 100}));

  // Placeholders make every copy personal: one transaction each.
  Campaign c = WriteCampaign(dir, 20, 1, "", "personal");
  r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  ASSERT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") >= 270; }, std::chrono::seconds(10)));
  EXPECT_EQ(sink.Count("messages"), 23u);
}

TEST(EngineE2E, SendCampaignSignedRenderedAndVerifiedIndependently) {
  TempDir dir;
  std::filesystem::create_directories(dir / "saved");
  Sink a(dir, "sink-a", "127.0.0.2", {"--save-dir", dir / "saved"});
  Sink b(dir, "sink-b", "127.0.0.3");
  ASSERT_GT(a.port(), 0) << a.err();
  ASSERT_GT(b.port(), 0) << b.err();
  // DKIM key made by openssl (dkim.pem), the TXT record from its public half.
  const std::string txt = dir / "dkim.txt";
  ASSERT_TRUE(MakeRsaKey(dir / "dkim.pem", txt));
  std::string cfg = Config(
      dir,
      "[routes]\n\"d0.example\" = \"" + a.hostport() + "\"\n\"*\" = \"" + b.hostport() + "\"\n",
      "[[dkim.keys]]\ndomain = \"sender.example\"\nselector = \"s1\"\nkey_file = \"dkim.pem\"\n"
      "type = \"rsa\"\n");
  Campaign c = WriteCampaign(dir, 90, 3);
  RunResult r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_TRUE(summary["finished"].get<bool>());
  EXPECT_EQ(summary["delivered"].get<int>(), 90);
  EXPECT_EQ(summary["bounced"].get<int>(), 0);
  EXPECT_EQ(summary["deferred"].get<int>(), 0);
  a.Stop();
  b.Stop();
  // Domain d0 went to sink a, the rest to sink b.
  EXPECT_EQ(a.Count("recipients_delivered"), 30u);
  EXPECT_EQ(b.Count("recipients_delivered"), 60u);
  EXPECT_EQ(a.Stats()["domains"]["d0.example"]["delivered"].get<int>(), 30);
  // Independent checks of the 30 saved messages: strict parse, To, rendered
  // values, DKIM verified by dkimpy.
  ExpectSavedCopiesCheck(dir, c, txt, "", 30);
}

// Issue 19 item 3: a template whose body has no placeholder (the Subject
// still has one) is hashed once per shard and its hash reused for every later
// copy (SignOptions::remember_body), each copy rendered behind a gap for its
// DKIM-Signature fields. Every copy two shards signed so verifies with dkimpy
// at the sink, and every body is the same bytes.
TEST(EngineE2E, SignedCopiesOfAPlaceholderFreeBodyVerifyAtTheSink) {
  TempDir dir;
  std::filesystem::create_directories(dir / "saved");
  Sink sink(dir, "sink", "127.0.0.2", {"--save-dir", dir / "saved"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  // DKIM key made by openssl (dkim.pem), the TXT record from its public half.
  const std::string txt = dir / "dkim.txt";
  ASSERT_TRUE(MakeRsaKey(dir / "dkim.pem", txt));
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n",
                           "[[dkim.keys]]\ndomain = \"sender.example\"\nselector = \"s1\"\n"
                           "key_file = \"dkim.pem\"\ntype = \"rsa\"\n");
  Campaign c = WriteCampaign(dir, 120, 4, "", "same");
  // The campaign's template, replaced: personal Subject, the same 20 KB body
  // for everyone (trailing spaces and a line starting with a dot included).
  std::string eml = "From: News <news@sender.example>\nSubject: Hello {{name}}\n\n";
  for (int i = 0; eml.size() < 20000; ++i)
    eml += "The same news for everyone, line " + std::to_string(i) + ".  \n";
  eml += ".a line starting with a dot\n";
  WriteFile(dir / "same.eml", eml);
  RunResult r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["delivered"].get<int>(), 120);
  sink.Stop();
  EXPECT_EQ(sink.Count("recipients_delivered"), 120u);
  ExpectSavedCopiesCheck(dir, c, txt, " --same-body", 120);
}

// `salvo campaign preview` composes through the engine's composer: given the
// Date and the Message-ID nonce of a copy the sink received, it prints that
// copy byte for byte, DKIM signature included, also when the template's From
// (which picks the DKIM key) differs from the campaign's envelope sender
// (which names the Message-ID's domain).
TEST(EngineE2E, PreviewIsTheSentCopyByteForByte) {
  TempDir dir;
  std::filesystem::create_directories(dir / "saved");
  Sink sink(dir, "exact", "127.0.0.10", {"--save-dir", dir / "saved"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string key = dir / "dkim.pem";
  ASSERT_EQ(std::system(("openssl genpkey -algorithm ed25519 -out " + key + " 2>/dev/null && " +
                         "chmod 600 " + key)
                            .c_str()),
            0);
  std::string cfg =
      Config(dir, "[[route]]\ndomain = \"*\"\nhosts = [\"" + sink.hostport() + "\"]\n",
             "[[dkim.keys]]\ndomain = \"brand.example\"\nselector = \"s1\"\n"
             "key_file = \"dkim.pem\"\ntype = \"ed25519\"\n");
  WriteFile(dir / "exact.csv", "email,name\nann@one.example,Ann\nbob@two.example,Bob\n");
  WriteFile(dir / "exact.eml",
            "From: Brand <news@brand.example>\nSubject: Hello {{name}}\n\nDear {{name}},\nhi.\n");
  WriteFile(dir / "exact.toml",
            "name = \"exact\"\ntemplate = \"exact.eml\"\nrecipients = \"exact.csv\"\n"
            "from = \"bounces@returns.example\"\n");
  RunResult r = RunSalvo(dir, {"send", dir / "exact.toml", "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  sink.Stop();
  int compared = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "saved")) {
    if (entry.path().extension() != ".eml") continue;
    const std::string sent = ReadFile(entry.path());
    const std::string env = ReadFile(std::filesystem::path(entry.path()).replace_extension(".env"));
    const size_t rcpt = env.find("RCPT TO:<");
    ASSERT_NE(rcpt, std::string::npos) << env;
    const std::string to = env.substr(rcpt + 9, env.find('>', rcpt) - rcpt - 9);
    // Date: and the Message-ID's nonce, read back from the copy.
    const size_t d = sent.find("\r\nDate: ");
    ASSERT_NE(d, std::string::npos) << sent;
    const std::string date = sent.substr(d + 8, sent.find("\r\n", d + 2) - d - 8);
    const std::time_t when = [&] {
      std::tm tm{};
      EXPECT_NE(strptime(date.c_str(), "%a, %d %b %Y %H:%M:%S %z", &tm), nullptr) << date;
      return timegm(&tm) - tm.tm_gmtoff;
    }();
    const size_t m = sent.find("\r\nMessage-ID: <");
    ASSERT_NE(m, std::string::npos) << sent;
    const std::string id = sent.substr(m + 15, sent.find('>', m) - m - 15);
    EXPECT_THAT(id, testing::EndsWith("@returns.example")) << "the envelope sender's domain";
    const size_t at = id.find('@');
    const std::string nonce = id.substr(id.rfind('.', at) + 1, at - id.rfind('.', at) - 1);
    RunResult p = RunSalvo(dir, {"campaign", "preview", "exact", "--recipient", to, "--config", cfg,
                                 "--date", std::to_string(when), "--message-id-nonce", nonce});
    ASSERT_EQ(p.code, 0) << p.err;
    EXPECT_THAT(sent, HasSubstr("DKIM-Signature: v=1; a=ed25519-sha256"));
    EXPECT_EQ(p.out, sent) << "preview differs from the copy " << to << " received";
    ++compared;
  }
  EXPECT_EQ(compared, 2);
  // Everything was delivered: list and status say "done", not "active".
  RunResult list = RunSalvo(dir, {"campaign", "list", "--config", cfg});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, testing::ContainsRegex("exact +done")) << list.out;
  RunResult st = RunSalvo(dir, {"campaign", "status", "exact", "--config", cfg, "--json"});
  ASSERT_EQ(st.code, 0) << st.err;
  EXPECT_EQ(nlohmann::json::parse(st.out)["state"], "done") << st.out;
}

TEST(EngineE2E, RefusingMxHostFailsOverToTheNextByPreference) {
  TempDir dir;
  Sink second(dir, "second", "127.0.0.5");
  Sink third(dir, "third", "127.0.0.6");
  std::string cfg =
      Config(dir, "[[route]]\ndomain = \"*\"\nhosts = [\"" + DeadHostPort("127.0.0.4") + "\", \"" +
                      second.hostport() + "\", \"" + third.hostport() + "\"]\n");
  Campaign c = WriteCampaign(dir, 40, 2);
  RunResult r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["delivered"].get<int>(), 40);
  second.Stop();
  third.Stop();
  EXPECT_EQ(second.Count("recipients_delivered"), 40u);
  EXPECT_EQ(third.Count("recipients_delivered"), 0u);
}

// An internationalised domain in the CSV reaches RCPT TO (and DNS) in its
// A-label form, so a server without SMTPUTF8 takes it.
TEST(EngineE2E, IdnRecipientDeliveredWithALabelRcptTo) {
  TempDir dir;
  std::filesystem::create_directories(dir / "saved");
  Sink sink(dir, "idn", "127.0.0.9", {"--save-dir", dir / "saved"});
  std::string cfg =
      Config(dir, "[[route]]\ndomain = \"*\"\nhosts = [\"" + sink.hostport() + "\"]\n");
  WriteFile(dir / "idn.csv",
            "email\nuser@b\xc3\xbc"
            "cher.example\n");
  WriteFile(dir / "idn.eml", "From: news@sender.example\nSubject: IDN\n\nhello\n");
  WriteFile(dir / "idn.toml",
            "name = \"idn\"\ntemplate = \"idn.eml\"\nrecipients = \"idn.csv\"\n"
            "from = \"news@sender.example\"\n");
  RunResult r = RunSalvo(dir, {"send", dir / "idn.toml", "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  sink.Stop();
  EXPECT_EQ(ReadFile(dir / "saved/1.env"),
            "MAIL FROM:<news@sender.example>\nRCPT TO:<user@xn--bcher-kva.example>\n");
  EXPECT_EQ(sink.Stats()["domains"].contains("xn--bcher-kva.example"), true) << sink.Stats().dump();
}

TEST(EngineE2E, AllMxHostsDownDefersEveryRecipientNoneLost) {
  TempDir dir;
  std::string cfg =
      Config(dir, "[[route]]\ndomain = \"*\"\nhosts = [\"" + DeadHostPort("127.0.0.7") + "\", \"" +
                      DeadHostPort("127.0.0.8") + "\"]\n");
  Campaign c = WriteCampaign(dir, 50, 5);
  RunResult load = RunSalvo(dir, {"campaign", "load", c.file, "--config", cfg});
  ASSERT_EQ(load.code, 0) << load.err;
  Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run.out", dir / "run.err");
  WaitFor([&] { return std::filesystem::exists(dir / "data/admin.sock"); },
          std::chrono::seconds(10));
  // Every recipient gets its first attempt (deferred), visible through the
  // running engine's admin socket.
  bool all_deferred = WaitFor([&] { return CountOf(Status(dir, cfg), "deferred") == 50; },
                              std::chrono::seconds(20));
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
  EXPECT_TRUE(all_deferred) << Status(dir, cfg).dump();
  auto st = Status(dir, cfg);  // engine stopped: read the spool directly
  EXPECT_EQ(CountOf(st, "deferred"), 50u) << st.dump();
  EXPECT_EQ(CountOf(st, "delivered") + CountOf(st, "bounced") + CountOf(st, "queued") +
                CountOf(st, "in_flight"),
            0u)
      << st.dump();
}

// Issue 16 item 3: the data directory is 0700 and nothing in it is readable
// by another user; the admin socket is 0600 from the start, and another user
// (nobody, via setpriv) gets a clear word about the socket, not a RocksDB error.
TEST(EngineE2E, DataDirAndAdminSocketArePrivateToTheEngineUser) {
  if (::geteuid() != 0 || testsupport::Which("setpriv").empty())
    GTEST_SKIP() << "needs root and setpriv to act as nobody";
  TempDir dir;
  // The temp dir itself is open to all: only salvo's own modes keep others out.
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  std::string cfg =
      Config(dir, "[[route]]\ndomain = \"*\"\nhosts = [\"" + DeadHostPort("127.0.0.7") + "\"]\n");
  Campaign c = WriteCampaign(dir, 5, 1);
  RunResult load = RunSalvo(dir, {"campaign", "load", c.file, "--config", cfg});
  ASSERT_EQ(load.code, 0) << load.err;
  struct stat st;
  ASSERT_EQ(::stat((dir / "data").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "data")) {
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 077, 0u) << e.path() << " mode " << std::oct << (st.st_mode & 0777);
    ++files;
  }
  EXPECT_GT(files, 3);
  const std::string as_nobody =
      "cd " + dir.path() + " && setpriv --reuid=nobody --regid=nogroup --clear-groups ";
  RunResult ls = testsupport::RunShell(as_nobody + "ls data");
  EXPECT_NE(ls.code, 0) << ls.out;
  RunResult cat = testsupport::RunShell(as_nobody + "cat data/CURRENT");
  EXPECT_NE(cat.code, 0) << cat.out;

  Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir / "data/admin.sock"); },
                      std::chrono::seconds(10)));
  ASSERT_EQ(::stat((dir / "data/admin.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << std::oct << (st.st_mode & 0777);
  RunResult status =
      testsupport::RunShell(as_nobody + SALVO_BINARY + " campaign status 1 --config " + cfg);
  EXPECT_NE(status.code, 0);
  EXPECT_THAT(status.err, HasSubstr("admin.sock: permission denied"));
  EXPECT_THAT(status.err, HasSubstr("run salvo as that user"));
  EXPECT_THAT(status.err, ::testing::Not(HasSubstr("IO error"))) << status.err;
  // The engine's own user still gets through.
  EXPECT_TRUE(Status(dir, cfg).contains("counts"));
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
}

TEST(EngineE2E, SigtermMidRunNeverReportsCutTransactionsDeliveredAndRetriesLater) {
  TempDir dir;
  // Slow replies so that SIGTERM lands with transactions open.
  Sink sink(dir, "slow", "127.0.0.9", {"--delay-ms", "30", "--track-duplicates"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n",
                           "[delivery]\nshutdown_deadline = \"200ms\"\nconnections_per_site = 8\n");
  const int n = 600;
  Campaign c = WriteCampaign(dir, n, 4,
                             "[retry]\nfirst_retry_min = \"1s\"\nfirst_retry_max = \"2s\"\n"
                             "max_delay = \"2s\"\n");
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", c.file, "--config", cfg}).code, 0);
  {
    Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run1.out", dir / "run1.err");
    ASSERT_TRUE(WaitFor([&] { return sink.Count("messages") >= 40; }, std::chrono::seconds(30)))
        << run.err() << sink.err();
    run.Signal(SIGTERM);
    EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
  }
  sink.Stop();  // its stats file is final once it has exited
  auto st = Status(dir, cfg);
  uint64_t delivered = CountOf(st, "delivered");
  uint64_t received = sink.Count("recipients_delivered");
  // What the sink completed (250 after the dot) bounds what Salvo reports.
  EXPECT_LE(delivered, received) << st.dump();
  // The difference is transactions cut between the dot and our reading of
  // the 250: reported deferred (at-least-once), at most one per connection.
  EXPECT_LE(received - delivered, 8u);
  EXPECT_LT(delivered, static_cast<uint64_t>(n));
  EXPECT_EQ(CountOf(st, "in_flight"), 0u) << st.dump();
  EXPECT_EQ(delivered + CountOf(st, "deferred") + CountOf(st, "queued"), static_cast<uint64_t>(n))
      << st.dump();
  // Restart against a fresh sink: the deferred and queued recipients are
  // retried and delivered.
  Sink sink2(dir, "fast", "127.0.0.10");
  ASSERT_GT(sink2.port(), 0) << sink2.err();
  cfg = Config(dir, "[routes]\n\"*\" = \"" + sink2.hostport() + "\"\n");
  {
    Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run2.out", dir / "run2.err");
    WaitFor([&] { return std::filesystem::exists(dir / "data/admin.sock"); },
            std::chrono::seconds(10));
    bool done = WaitFor([&] { return CountOf(Status(dir, cfg), "delivered") == uint64_t(n); },
                        std::chrono::seconds(60));
    run.Signal(SIGTERM);
    EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
    EXPECT_TRUE(done) << Status(dir, cfg).dump();
  }
  sink2.Stop();
  st = Status(dir, cfg);
  EXPECT_EQ(CountOf(st, "delivered"), static_cast<uint64_t>(n)) << st.dump();
  EXPECT_EQ(sink2.Count("recipients_delivered"), n - delivered);
}

TEST(EngineE2E, StartupErrorsAreOneClearLine) {
  TempDir dir;
  WriteFile(dir / "bad.toml", "shards = 2\n[delivery]\nconections_per_site = 3\n");
  RunResult r = RunSalvo(dir, {"run", "--config", dir / "bad.toml"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("bad.toml:3:1: unknown key 'conections_per_site' in [delivery]"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  RunResult u = RunSalvo(dir, {"send", "--name", "x"});
  EXPECT_EQ(u.code, 2) << u.err;
}

// What a container's default seccomp profile does: io_uring_setup fails with
// ENOSYS. `salvo run` must say so in one line with the fix and exit 1.
TEST(EngineE2E, IoUringBlockedBySeccompIsOneClearLineAndExit1) {
  TempDir dir;
  std::string err_file = dir / "err.txt";
  pid_t pid = fork();
  if (pid == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    int e = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(e, 2);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      _exit(99);
    std::string data = dir / "data";
    execl(SALVO_BINARY, SALVO_BINARY, "run", "--data-dir", data.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::string err = ReadFile(err_file);
  EXPECT_THAT(err, HasSubstr("io_uring"));
  EXPECT_THAT(err, HasSubstr("seccomp"));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// Issue 13: `salvo run` with a shaping file. A throttled domain shows in
// `campaign status`; SIGHUP with a bad file is refused with file:line:column
// and the old limits stay; SIGHUP with a good file applies the new limits to
// the open site pool (the rate rises).
TEST(EngineE2E, ShapingFileReloadsOnSighupAndABadOneKeepsTheOld) {
  TempDir dir;
  Sink sink(dir, "shaped", "127.0.0.11");
  ASSERT_GT(sink.port(), 0) << sink.err();
  WriteFile(dir / "shaping.toml", "[domain.\"d0.example\"]\nmax_message_rate = \"5/s\"\n");
  const std::string cfg = dir / "salvo.toml";
  WriteFile(cfg,
            "data_dir = \"data\"\nshards = 2\npin_threads = false\nlog_level = \"info\"\n"
            "shaping_file = \"shaping.toml\"\n[tls]\nmode = \"off\"\n[routes]\n\"*\" = \"" +
                sink.hostport() + "\"\n");
  Campaign c = WriteCampaign(dir, 2000, 1);
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", c.file, "--config", cfg}).code, 0);
  Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(WaitFor([&] { return sink.Count("messages") >= 10; }, std::chrono::seconds(20)))
      << run.err();
  auto rate_over = [&](std::chrono::seconds window) {
    const uint64_t m0 = sink.Count("messages");
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(window);
    return (sink.Count("messages") - m0) /
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::this_thread::sleep_for(std::chrono::seconds(3));  // past the start (and the first hand-back)
  const double before = rate_over(std::chrono::seconds(5));
  // The running engine answers `campaign status` with its shaping view (the
  // throttled and suspended destinations; none here: 5/s is the configuration).
  nlohmann::json st = Status(dir, cfg);
  ASSERT_TRUE(st.contains("shaping")) << st.dump();
  EXPECT_TRUE(st["shaping"].empty()) << st.dump();
  // A bad file: refused, named, the old limit stays.
  WriteFile(dir / "shaping.toml", "[domain.\"d0.example\"]\nmax_message_rate = \"fast\"\n");
  run.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return run.err().find("not reloaded") != std::string::npos; },
                      std::chrono::seconds(10)))
      << run.err();
  EXPECT_THAT(run.err(), HasSubstr("shaping.toml:2:"));
  EXPECT_THAT(run.err(), HasSubstr("the old one stays in force"));
  const double still = rate_over(std::chrono::seconds(3));
  // A good file with a higher limit: the open pool takes it.
  WriteFile(dir / "shaping.toml", "[domain.\"d0.example\"]\nmax_message_rate = \"50/s\"\n");
  run.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return run.err().find("shaping: reloaded") != std::string::npos; },
                      std::chrono::seconds(10)))
      << run.err();
  // Recipients the throttled pool handed back come back within seconds.
  double after = 0;
  for (int i = 0; i < 5 && after <= 15; ++i) after = rate_over(std::chrono::seconds(3));
  std::printf("reload: %.1f/s at 5/s, %.1f/s after a bad file, %.1f/s after 50/s\n", before, still,
              after);
  // The limit is an upper bound: a loaded machine may send below it (the
  // lower bounds only say sending went on), never above it.
  EXPECT_LE(before, 6.5);
  EXPECT_GE(before, 2);
  EXPECT_LE(still, 6.5);  // the bad file changed nothing
  EXPECT_GE(still, 2);
  EXPECT_GT(after, 15);  // three times the old limit: the new one is in force
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
}

// Issue 13 item 6: a campaign outside its send window waits in the queue (not
// deferred, no attempt) while one inside its window is sent.
TEST(EngineE2E, ACampaignOutsideItsSendWindowWaitsWithoutBeingDeferred) {
  TempDir dir;
  Sink sink(dir, "window", "127.0.0.12");
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n");
  // Closed: the hour two hours from now (UTC); open: the whole day.
  const int hour = static_cast<int>((std::time(nullptr) / 3600 + 2) % 24);
  char hours[32];
  std::snprintf(hours, sizeof hours, "%02d:00-%02d:00", hour, hour + 1);
  Campaign closed = WriteCampaign(
      dir, 20, 2, std::string("[window]\nhours = \"") + hours + "\"\ntimezone = \"UTC\"\n",
      "closed");
  Campaign open = WriteCampaign(
      dir, 30, 2, "[window]\nhours = \"00:00-24:00\"\ntimezone = \"Etc/UTC\"\n", "open");
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", closed.file, "--config", cfg}).code, 0);
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", open.file, "--config", cfg}).code, 0);
  Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(WaitFor([&] { return CountOf(Status(dir, cfg, "open"), "delivered") == 30; },
                      std::chrono::seconds(30)))
      << run.err();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  nlohmann::json st = Status(dir, cfg, "closed");
  RunResult text = RunSalvo(dir, {"campaign", "status", "closed", "--config", cfg});
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
  EXPECT_EQ(sink.Count("recipients_delivered"), 30u);
  EXPECT_EQ(CountOf(st, "queued"), 20u) << st.dump();
  EXPECT_EQ(CountOf(st, "deferred"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "delivered"), 0u) << st.dump();
  EXPECT_FALSE(st.value("window_open", true)) << st.dump();
  EXPECT_THAT(text.out, HasSubstr("send window: " + std::string(hours) + " "));
  EXPECT_THAT(text.out, HasSubstr("closed: recipients wait, not deferred; opens"));
}

// Issue 13 item 7: a [[route]] to a smarthost that requires AUTH (aiosmtpd
// with auth_required, STARTTLS) delivers with the right credentials; with
// wrong ones the route is held (nothing deferred, nothing bounced), the
// reason is one error line, and the password is never logged.
TEST(EngineE2E, SmarthostRouteWithAuthDeliversAndWrongCredentialsHoldTheRoute) {
  TempDir dir;
  RunResult cert = testsupport::RunShell(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=relay.test -keyout " +
      dir / "relay.key" + " -out " + dir / "relay.crt" + " 2>&1");
  ASSERT_EQ(cert.code, 0) << cert.out;
  std::filesystem::create_directories(dir / "relay");
  testsupport::PipedProcess relay({"/usr/bin/python3",
                                   std::string(SALVO_SOURCE_DIR) + "/tests/smtp/aiosmtpd_server.py",
                                   "--outdir", dir / "relay", "--cert", dir / "relay.crt", "--key",
                                   dir / "relay.key", "--auth-required"});
  auto line = relay.WaitForLine("PORT ", std::chrono::seconds(20));
  ASSERT_TRUE(line.has_value()) << "aiosmtpd_server.py did not start";
  const std::string hostport = "127.0.0.1:" + line->substr(5);
  auto config = [&](const std::string& name, const std::string& password_file) {
    const std::string path = dir / name;
    WriteFile(path, "data_dir = \"data-" + name +
                        "\"\nshards = 2\npin_threads = false\n"
                        "[tls]\nmode = \"opportunistic\"\nverify = false\n"
                        "[[route]]\ndomain = \"*\"\nhosts = [\"" +
                        hostport +
                        "\"]\n"
                        "auth_user = \"user\"\nauth_password_file = \"" +
                        password_file + "\"\ntls = \"required\"\n");
    return path;
  };
  WriteFile(dir / "good.pass", "secret\n");
  WriteFile(dir / "bad.pass", "not-the-secret-4711\n");
  Campaign c = WriteCampaign(dir, 6, 2);
  RunResult sent =
      RunSalvo(dir, {"send", c.file, "--config", config("good.toml", "good.pass"), "--json"});
  ASSERT_EQ(sent.code, 0) << sent.err << sent.out;
  EXPECT_EQ(nlohmann::json::parse(sent.out)["delivered"].get<int>(), 6) << sent.out;
  int emls = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "relay"))
    emls += e.path().extension() == ".eml";
  EXPECT_EQ(emls, 6);

  const std::string bad = config("bad.toml", "bad.pass");
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", c.file, "--config", bad}).code, 0);
  Process run({SALVO_BINARY, "run", "--config", bad}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(WaitFor(
      [&] { return run.err().find("authentication as 'user' failed") != std::string::npos; },
      std::chrono::seconds(20)))
      << run.err();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  nlohmann::json st = Status(dir, bad);
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(20)), 0) << run.err();
  EXPECT_EQ(CountOf(st, "deferred"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "bounced"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "delivered"), 0u) << st.dump();
  EXPECT_EQ(CountOf(st, "queued"), 6u) << st.dump();
  EXPECT_THAT(run.err(), HasSubstr("held in the queue (not deferred)"));
  EXPECT_EQ(run.err().find("not-the-secret-4711"), std::string::npos) << "password logged";
}

// Issue 13: a hard bounce the rules call bad-mailbox (the sink's real 550
// 5.1.1) puts the address on the suppression list; a later campaign skips it.
TEST(EngineE2E, AHardBounceSuppressesTheAddressForLaterCampaigns) {
  TempDir dir;
  Sink sink(dir, "bounce", "127.0.0.13", {"--reject-pattern", "user3@"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n");
  Campaign first = WriteCampaign(dir, 8, 1, "", "first");
  RunResult sent = RunSalvo(dir, {"send", first.file, "--config", cfg, "--json"});
  ASSERT_EQ(sent.code, 0) << sent.err << sent.out;
  EXPECT_EQ(nlohmann::json::parse(sent.out)["bounced"].get<int>(), 1) << sent.out;
  nlohmann::json st = Status(dir, cfg, "first");
  EXPECT_EQ(st["categories"].value("bad-mailbox", 0), 1) << st.dump();
  RunResult list = RunSalvo(dir, {"suppression", "list", "--config", cfg});
  EXPECT_THAT(list.out, HasSubstr("user3@d0.example")) << list.out << list.err;
  Campaign second = WriteCampaign(dir, 8, 1, "", "second");
  // The same list and template again (a later mailing): allowed explicitly.
  RunResult again =
      RunSalvo(dir, {"send", second.file, "--config", cfg, "--json", "--allow-duplicate-name"});
  ASSERT_EQ(again.code, 0) << again.err << again.out;
  nlohmann::json st2 = Status(dir, cfg, "second");
  EXPECT_EQ(CountOf(st2, "suppressed"), 1u) << st2.dump();
  EXPECT_EQ(CountOf(st2, "delivered"), 7u) << st2.dump();
  // The sink writes its stats every second: never sent to again.
  EXPECT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") == 14; }, std::chrono::seconds(5)));
  EXPECT_EQ(sink.Count("recipients_bounced"), 1u);
}

// Running the same `salvo send` twice (a shell history slip) would mail the
// whole list twice: refused, as `campaign load` refuses it, unless asked for.
TEST(EngineE2E, SendingTheSameCampaignAgainIsRefusedUnlessAllowed) {
  TempDir dir;
  Sink sink(dir, "again", "127.0.0.14");
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n");
  Campaign c = WriteCampaign(dir, 5, 1, "", "weekly");
  RunResult r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--quiet"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("a campaign named 'weekly' already exists")) << r.err;
  // The first send finished: said so, beside the campaign's state.
  EXPECT_THAT(r.err, HasSubstr("every recipient has its final outcome")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--allow-duplicate-name")) << r.err;
  r = RunSalvo(dir, {"send", c.file, "--config", cfg, "--quiet", "--allow-duplicate-name"});
  ASSERT_EQ(r.code, 0) << r.err;
  // 5 + 5: the refused send sent nothing.
  EXPECT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") == 10; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(sink.Count("recipients_delivered"), 10u);
}

// While `salvo run` holds the spool, preview, list, status, export and
// recipient show go through its admin socket; preview finds the recipient
// whatever the case of the address given.
TEST(EngineE2E, PreviewAndTheOtherViewsWorkWhileTheEngineHoldsTheSpool) {
  TempDir dir;
  Sink sink(dir, "held", "127.0.0.15", {"--delay-ms", "200"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n",
                           "[delivery]\nconnections_per_site = 1\n[metrics]\nlisten = \"\"\n");
  Campaign c = WriteCampaign(dir, 200, 1);
  ASSERT_EQ(RunSalvo(dir, {"campaign", "load", c.file, "--config", cfg}).code, 0);
  Process run({SALVO_BINARY, "run", "--config", cfg}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(WaitFor([&] { return sink.Count("messages") >= 1; }, std::chrono::seconds(20)))
      << run.err();
  RunResult p = RunSalvo(dir, {"campaign", "preview", "e2e", "--recipient", "USER7@D0.EXAMPLE",
                               "--config", cfg, "--no-sign"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_THAT(p.out, HasSubstr("To: user7@d0.example")) << p.out;
  EXPECT_THAT(p.out, HasSubstr("C1007"));  // user7's value (quoted-printable body)
  RunResult missing = RunSalvo(dir, {"campaign", "preview", "e2e", "--recipient",
                                     "nobody@d0.example", "--config", cfg, "--no-sign"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("recipient nobody@d0.example is not in campaign 1 (e2e)"));
  RunResult list = RunSalvo(dir, {"campaign", "list", "--config", cfg});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("e2e"));
  RunResult exported = RunSalvo(dir, {"campaign", "export", "e2e", "--config", cfg});
  EXPECT_EQ(exported.code, 0) << exported.err;
  EXPECT_EQ(std::count(exported.out.begin(), exported.out.end(), '\n'), 201) << "header + 200";
  RunResult shown = RunSalvo(dir, {"recipient", "show", "user7@d0.example", "--config", cfg});
  EXPECT_EQ(shown.code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("campaign 1 'e2e'"));
}

// Progress while sending: with stderr not a terminal, one line per
// --progress-interval with rates and the queue depth; --quiet prints none.
TEST(EngineE2E, ProgressLinesWhileSendingAndNoneWithQuiet) {
  TempDir dir;
  Sink sink(dir, "progress", "127.0.0.14", {"--delay-ms", "40"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  std::string cfg = Config(dir, "[routes]\n\"*\" = \"" + sink.hostport() + "\"\n",
                           "[delivery]\nconnections_per_site = 2\n");
  Campaign c = WriteCampaign(dir, 120, 1, "", "slow");
  RunResult sent = RunSalvo(dir, {"send", c.file, "--config", cfg, "--progress-interval", "0.5"});
  ASSERT_EQ(sent.code, 0) << sent.err << sent.out;
  size_t lines = 0;
  for (size_t pos = 0; (pos = sent.err.find(" progress: ", pos)) != std::string::npos; ++pos)
    ++lines;
  EXPECT_GE(lines, 2u) << sent.err;
  EXPECT_THAT(sent.err, HasSubstr("delivered/s"));
  EXPECT_THAT(sent.err, HasSubstr("waiting; sessions"));
  Campaign q = WriteCampaign(dir, 120, 1, "", "quiet");
  RunResult quiet =
      RunSalvo(dir, {"send", q.file, "--config", cfg, "--progress-interval", "0.5", "--quiet",
                     "--allow-duplicate-name"});  // the same list and template as 'slow'
  ASSERT_EQ(quiet.code, 0) << quiet.err << quiet.out;
  EXPECT_EQ(quiet.err.find(" progress: "), std::string::npos) << quiet.err;
}

}  // namespace
}  // namespace salvo::itest
