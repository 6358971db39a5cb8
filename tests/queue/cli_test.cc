// `salvo campaign ...` and `salvo suppression ...` end to end: the real
// binary on a temp data dir, directly and through the admin socket of an
// in-process AdminServer standing in for `salvo run`.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "gtest/gtest.h"
#include "queue/admin_server.h"
#include "queue/spool.h"
#include "tests/queue/test_util.h"

namespace salvo::queue {
namespace {

using testing::RunResult;
using testing::TempDir;

constexpr char kTemplate[] =
    "From: news@example.com\r\nSubject: Hi {{name}}\r\n\r\nHello {{name}}\r\n";

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tpl_ = dir_.Write("message.eml", kTemplate);
    csv_ = dir_.Write("list.csv",
                      "email,name\na@one.example,Ann\nb@two.example,Bob\nnot-an-address,X\n"
                      "a@ONE.example,dup\n");
    data_ = dir_.File("data");
  }
  RunResult Salvo(const std::string& args) {
    return testing::Run(std::string(SALVO_BINARY) + " " + args);
  }
  TempDir dir_;
  std::string tpl_, csv_, data_;
};

TEST_F(CliTest, LoadStatusPauseResumeCancelList) {
  dir_.Write("spring.toml",
             "name = \"spring\"\ntemplate = \"message.eml\"\nrecipients = "
             "\"list.csv\"\nfrom = \"news@example.com\"\n");
  RunResult r = Salvo("campaign load " + dir_.File("spring.toml") + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  EXPECT_NE(r.err.find("2 accepted, 1 duplicates, 0 suppressed, 1 invalid"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(csv_ + ":4: invalid address 'not-an-address'"), std::string::npos) << r.err;

  // The same template, list and sender under another name: a second copy to
  // every recipient, so only on request.
  r = Salvo(
      "campaign load --name flags --template " + tpl_ + " --recipients " + csv_ +
      " --from news@example.com --dkim-domain example.com --allow-duplicate-name --data-dir " +
      data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2\n");

  r = Salvo("campaign status 1 --json --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json st = nlohmann::json::parse(r.out);
  EXPECT_EQ(st["name"], "spring");
  EXPECT_EQ(st["counts"]["queued"], 2);
  EXPECT_EQ(st["top_domains"].size(), 2u);

  r = Salvo("campaign status spring --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("queued 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bounce rate"), std::string::npos) << r.out;

  EXPECT_EQ(Salvo("campaign pause 1 --data-dir " + data_).out, "campaign 1 is paused\n");
  EXPECT_EQ(Salvo("campaign resume 1 --data-dir " + data_).out, "campaign 1 is active\n");
  EXPECT_EQ(Salvo("campaign cancel 2 --data-dir " + data_).out, "campaign 2 is cancelled\n");
  r = Salvo("campaign list --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("spring"), std::string::npos);
  EXPECT_NE(r.out.find("cancelled"), std::string::npos);
  // --json before the command works like after it.
  r = Salvo("--json campaign list --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json list = nlohmann::json::parse(r.out);
  ASSERT_TRUE(list.is_array()) << r.out;
  EXPECT_EQ(list.size(), 2u);

  r = Salvo("campaign status 99 --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "salvo: error: no campaign with ID or name '99'\n");
}

TEST_F(CliTest, BadInputAndUsageErrors) {
  std::string bad = dir_.Write("bad.csv", "email,name\na@one.example,\"Ann\n");
  RunResult r = Salvo("campaign load --name x --template " + tpl_ + " --recipients " + bad +
                      " --from news@example.com --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("salvo: error: " + bad + ":2: unterminated quoted field"), std::string::npos)
      << r.err;
  r = Salvo("campaign load --name x --template " + tpl_ + " --recipients " + csv_ +
            " --from news@example.com --strict --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(csv_ + ":4: invalid address"), std::string::npos) << r.err;
  r = Salvo("campaign load --name x --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = Salvo("campaign list --data-dir " + dir_.File("nowhere"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no salvo data directory"), std::string::npos) << r.err;
}

TEST_F(CliTest, SuppressionCommands) {
  RunResult r = Salvo("suppression add a@one.example b@Two.Example --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "added 2\n");
  std::string unsub = dir_.Write("unsub.txt", "c@three.example\nbad\n");
  r = Salvo("suppression import " + unsub + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 1 new, 0 already listed, 1 invalid\n");
  r = Salvo("suppression remove a@one.example --data-dir " + data_);
  EXPECT_EQ(r.out, "removed 1\n");
  r = Salvo("suppression list --data-dir " + data_);
  EXPECT_NE(r.out.find("b@two.example"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c@three.example"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("a@one.example"), std::string::npos) << r.out;
  // Suppressed addresses are applied at load.
  r = Salvo("campaign load --name s --template " + tpl_ + " --recipients " + csv_ +
            " --from news@example.com --data-dir " + data_);
  EXPECT_NE(r.err.find("1 accepted, 1 duplicates, 1 suppressed, 1 invalid"), std::string::npos)
      << r.err;
}

TEST_F(CliTest, CommandsGoThroughTheRunningEnginesAdminSocket) {
  // This process plays `salvo run`: it holds the spool (RocksDB lock) and
  // serves the admin socket; the CLI must route through it.
  auto spool = Spool::Open(data_, {});
  ASSERT_TRUE(spool.ok()) << spool.status();
  auto server = AdminServer::Start(spool->get(), {});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult r = Salvo("campaign load --name live --template " + tpl_ + " --recipients " + csv_ +
                      " --from news@example.com --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ((*spool)->ListCampaigns().size(), 1u);  // loaded by this process
  r = Salvo("campaign pause live --data-dir " + data_);
  EXPECT_EQ(r.out, "campaign 1 is paused\n") << r.err;
  EXPECT_EQ((*spool)->GetCampaign(CampaignId{1})->state, CampaignState::kPaused);
  r = Salvo("suppression add z@z.example --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE((*spool)->IsSuppressed("z@z.example"));
  // With the server gone but the lock still held: a clear error.
  (*server)->Stop();
  r = Salvo("campaign list --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("in use by another process and no engine answers"), std::string::npos)
      << r.err;
}

// `salvo queue recover --from FILE`: the outcomes a dead disk kept from being
// written, from a copy of the log; applied once, named file:line when broken.
TEST_F(CliTest, QueueRecoverRecordsRescuedOutcomesFromACopyOfTheLog) {
  RunResult r = Salvo("campaign load --name c --template " + tpl_ + " --recipients " + csv_ +
                      " --from news@example.com --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string log =
      dir_.Write("salvo.log",
                 "2026-12-04T15:00:00Z E spool: 1 final outcome(s) it could not write follow\n"
                 "2026-12-04T15:00:00Z E spool rescue: {\"campaign\":1,\"recipient\":1,\"email\":"
                 "\"a@one.example\",\"state\":\"delivered\",\"reply\":\"250 2.0.0 ok\","
                 "\"at\":\"2026-12-04T15:00:00Z\"}\n");
  r = Salvo("queue recover --from " + log + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "recovered 1 of 1 outcome(s) (0 already recorded)\n");
  r = Salvo("campaign export c --format jsonl --state delivered --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"email\":\"a@one.example\""), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("b@two.example"), std::string::npos) << r.out;
  r = Salvo("queue recover --from " + log + " --data-dir " + data_);
  EXPECT_EQ(r.out, "recovered 0 of 1 outcome(s) (1 already recorded)\n") << r.err;
  const std::string bad = dir_.Write("bad.jsonl", "{\"campaign\":1,\"state\":\"delivered\"}\n");
  r = Salvo("queue recover --from " + bad + " --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(bad + ":1: not a rescued outcome"), std::string::npos) << r.err;
}

// Issue 15 item 5: names are unique handles; loading a campaign again is
// refused (by name, or by the same template, list and sender) unless asked for.
TEST_F(CliTest, ASecondLoadIsRefusedUnlessDuplicatesAreAllowed) {
  const std::string file = dir_.Write("spring.toml",
                                      "name = \"spring\"\ntemplate = \"message.eml\"\nrecipients = "
                                      "\"list.csv\"\nfrom = \"news@example.com\"\n");
  RunResult r = Salvo("campaign load " + file + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  r = Salvo("campaign load " + file + " --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "salvo: error: a campaign named 'spring' already exists (ID 1, active): loading it "
            "again would send its recipients a second copy; cancel campaign 1 first, or pass "
            "--allow-duplicate-name\n");
  // Renamed, same content: refused by its checksum.
  const std::string renamed = "campaign load --name autumn --template " + tpl_ + " --recipients " +
                              csv_ + " --from news@example.com --data-dir " + data_;
  r = Salvo(renamed);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the same template, recipient list and sender as campaign 'spring' (ID 1, "
                       "active)"),
            std::string::npos)
      << r.err;
  // Another list under another name is a new campaign.
  std::string other = dir_.Write("other.csv", "email,name\nz@one.example,Zed\n");
  r = Salvo("campaign load --name autumn --template " + tpl_ + " --recipients " + other +
            " --from news@example.com --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2\n");
  // Allowed on request; the name is then ambiguous, and IDs still work.
  r = Salvo("campaign load " + file + " --allow-duplicate-name --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  r = Salvo("campaign status spring --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "salvo: error: campaign name 'spring' is ambiguous: campaigns 1, 3 have it (use the "
            "ID)\n");
  EXPECT_EQ(Salvo("campaign cancel 1 --data-dir " + data_).exit_code, 0);
  r = Salvo("campaign status spring --json --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["id"], 3);  // the one not cancelled
  // Once the other is cancelled too, the name is free again.
  EXPECT_EQ(Salvo("campaign cancel 3 --data-dir " + data_).exit_code, 0);
  r = Salvo("campaign load " + file + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "4\n");
  // The same refusal when a running engine loads it.
  auto spool = Spool::Open(data_, {});
  ASSERT_TRUE(spool.ok()) << spool.status();
  auto server = AdminServer::Start(spool->get(), {});
  ASSERT_TRUE(server.ok()) << server.status();
  r = Salvo("campaign load " + file + " --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("a campaign named 'spring' already exists (ID 4, active)"),
            std::string::npos)
      << r.err;
  r = Salvo("campaign load " + file + " --allow-duplicate-name --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "5\n");
}

// Issue 15 item 6: USER@GMAIL.COM and user@gmail.com are one recipient and
// one suppression entry; --case-sensitive-local-parts opts out.
TEST_F(CliTest, CaseVariantsAreOneRecipientAndOneSuppressionEntry) {
  std::string list = dir_.Write("case.csv",
                                "email,name\nUSER@GMAIL.COM,Upper\nuser@gmail.com,Lower\n"
                                "User@Gmail.Com,Mixed\nann@one.example,Ann\n");
  const std::string load = "campaign load --template " + tpl_ + " --recipients " + list +
                           " --from news@example.com --data-dir " + data_;
  RunResult r = Salvo(load + " --name folded");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("2 accepted, 2 duplicates, 0 suppressed, 0 invalid"), std::string::npos)
      << r.err;
  // Kept as first written (the domain lower-cased): that is what RCPT TO carries.
  r = Salvo("campaign preview folded --recipient USER@gmail.com --no-sign --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Salvo(load + " --name exact --case-sensitive-local-parts --allow-duplicate-name");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("4 accepted, 0 duplicates"), std::string::npos) << r.err;

  r = Salvo("suppression add USER@GMAIL.COM user@gmail.com --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Salvo("suppression list --data-dir " + data_);
  EXPECT_EQ(r.out.find("user@gmail.com"), r.out.rfind("user@gmail.com")) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(r.out.rfind("user@gmail.com\t", 0), 0u) << r.out;
  // Every spelling in the next list is suppressed.
  r = Salvo(load + " --name third --allow-duplicate-name");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("1 accepted, 2 duplicates, 1 suppressed"), std::string::npos) << r.err;
  // Removing one spelling removes the entry.
  r = Salvo("suppression remove User@Gmail.com --data-dir " + data_);
  EXPECT_EQ(r.out, "removed 1\n") << r.err;
  EXPECT_EQ(Salvo("suppression list --data-dir " + data_).out, "");
  // Case-sensitive entries: only that spelling.
  r = Salvo("suppression add User@Gmail.com --case-sensitive-local-parts --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Salvo("suppression list --data-dir " + data_);
  EXPECT_EQ(r.out.rfind("User@gmail.com\t", 0), 0u) << r.out;
}

// Issue 15 item 4: a campaign file's paths are the file's, whatever the
// working directory, and a campaign that cannot send fails at load.
class CampaignFileCliTest : public CliTest {
 protected:
  // A campaign file in its own folder, with a relative secret file.
  void SetUp() override {
    CliTest::SetUp();
    std::filesystem::create_directories(dir_.File("camp"));
    std::filesystem::create_directories(dir_.File("elsewhere"));
  }
  std::string WriteCampaign(const std::string& options) {
    dir_.Write("camp/message.eml", kTemplate);
    dir_.Write("camp/list.csv", "email,name\na@one.example,Ann\nb@two.example,Bob\n");
    return dir_.Write("camp/spring.toml",
                      "name = \"spring\"\ntemplate = \"message.eml\"\nrecipients = "
                      "\"list.csv\"\nfrom = \"news@example.com\"\n[options]\n" +
                          options);
  }
  // `salvo ARGS` run from `cwd`.
  RunResult SalvoIn(const std::string& cwd, const std::string& args) {
    return testing::Run("cd '" + cwd + "' && " + SALVO_BINARY + " " + args);
  }
  size_t Campaigns() {
    RunResult r = Salvo("campaign list --json --data-dir " + data_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out).size();
  }
};

TEST_F(CampaignFileCliTest, TheRelativeSecretPathWorksFromAnyWorkingDirectory) {
  dir_.Write("camp/secret.txt", "s3cret\n");
  const std::string file = WriteCampaign(
      "unsubscribe_url = \"https://u.example/unsub\"\nunsubscribe_secret_file = \"secret.txt\"\n");
  // From a folder with no secret.txt, by absolute path, and from the campaign's
  // own folder by relative path: both loads resolve the secret next to the file.
  RunResult r = SalvoIn(dir_.File("elsewhere"), "campaign load " + file + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  const std::string data2 = dir_.File("data2");
  r = SalvoIn(dir_.File("camp"), "campaign load spring.toml --data-dir " + data2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  // Stored absolute, so the engine (or a preview) composes from anywhere.
  for (const std::string& data : {data_, data2}) {
    r = SalvoIn("/", "campaign preview 1 --recipient a@one.example --data-dir " + data);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("List-Unsubscribe: <https://u.example/unsub"), std::string::npos) << r.out;
  }
}

TEST_F(CampaignFileCliTest, ABadSecretPathIsRefusedAtLoadWithFileAndLine) {
  const std::string file = WriteCampaign(
      "unsubscribe_url = \"https://u.example/unsub\"\nunsubscribe_secret_file = \"missing.txt\"\n");
  RunResult r = SalvoIn(dir_.File("camp"), "campaign load spring.toml --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "salvo: error: spring.toml:7: options.unsubscribe_secret_file: cannot read '" +
                       dir_.File("camp/missing.txt") + "': No such file or directory\n");
  // An empty secret is refused too.
  dir_.Write("camp/missing.txt", "");
  r = Salvo("campaign load " + file + " --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("options.unsubscribe_secret_file: '" + dir_.File("camp/missing.txt") +
                       "' is empty"),
            std::string::npos)
      << r.err;
}

// Issue 16 item 2: an unsubscribe_url that one-click unsubscribe cannot use
// (not https, malformed) is refused at load with file:line, nothing kept.
TEST_F(CampaignFileCliTest, ANonHttpsUnsubscribeUrlIsRefusedAtLoadWithFileAndLine) {
  dir_.Write("camp/secret.txt", "s3cret\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://u.example/unsub",
       "the scheme is http, not https (RFC 8058 one-click unsubscribe needs https)"},
      {"ftp://u.example/unsub", "the scheme is ftp, not https"},
      {"u.example/unsub", "not a URL: it must start with https://"},
      {"https:u.example", "not a URL: it must start with https://"},
      {"https:///unsub", "no host after https://"},
      {"HTTPS://u.example/unsub", "write the scheme in lower case: https://"},
      {"https://u.example/a b", "spaces, control characters"},
  };
  for (const auto& [url, why] : cases) {
    WriteCampaign("unsubscribe_secret_file = \"secret.txt\"\nunsubscribe_url = \"" + url + "\"\n");
    RunResult r = SalvoIn(dir_.File("camp"), "campaign load spring.toml --data-dir " + data_);
    EXPECT_EQ(r.exit_code, 1) << url;
    EXPECT_EQ(r.out, "") << url;
    EXPECT_EQ(
        r.err.rfind(
            "salvo: error: spring.toml:7: options.unsubscribe_url = \"" + url + "\": " + why, 0),
        0u)
        << r.err;
  }
  // A valid one loads as campaign 1: none of the refused ones was kept.
  WriteCampaign(
      "unsubscribe_secret_file = \"secret.txt\"\nunsubscribe_url = \"https://u.example/x\"\n");
  RunResult r = SalvoIn(dir_.File("camp"), "campaign load spring.toml --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
}

// Issue 16 item 2: a symlink loop where a campaign file names a file (the
// template, the list, a secret) is reported as a loop, not as missing.
TEST_F(CampaignFileCliTest, ASymlinkLoopInsideACampaignFileIsReportedAsSuch) {
  WriteCampaign("");
  std::filesystem::create_symlink(dir_.File("camp/loop2"), dir_.File("camp/loop1"));
  std::filesystem::create_symlink(dir_.File("camp/loop1"), dir_.File("camp/loop2"));
  const std::string head = "name = \"spring\"\nfrom = \"news@example.com\"\n";
  for (const std::string& text :
       {head + "template = \"loop1\"\nrecipients = \"list.csv\"\n",
        head + "template = \"message.eml\"\nrecipients = \"loop1\"\n",
        head +
            "template = \"message.eml\"\nrecipients = \"list.csv\"\n[options]\n"
            "unsubscribe_url = \"https://u.example/x\"\nunsubscribe_secret_file = \"loop1\"\n"}) {
    const std::string file = dir_.Write("camp/loop.toml", text);
    RunResult r = Salvo("campaign load " + file + " --data-dir " + data_);
    EXPECT_EQ(r.exit_code, 1) << text;
    EXPECT_NE(r.err.find(dir_.File("camp/loop1")), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Too many levels of symbolic links"), std::string::npos) << r.err;
  }
}

TEST_F(CampaignFileCliTest, ACampaignThatCannotComposeItsFirstCopyIsRefusedAndNothingIsKept) {
  // Passes every syntax check, but no copy can be composed: no HMAC secret.
  const std::string file = WriteCampaign("unsubscribe_url = \"https://u.example/unsub\"\n");
  RunResult r = testing::Run("env -u SALVO_UNSUBSCRIBE_SECRET " + std::string(SALVO_BINARY) +
                             " campaign load " + file + " --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("salvo: error: cannot compose the campaign's first message (" +
                       dir_.File("camp/list.csv") +
                       ":2, a@one.example): option "
                       "unsubscribe_url is set but there is no HMAC secret"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Campaigns(), 0u);
  // The spool holds nothing of it: the next campaign is number 1.
  dir_.Write("camp/secret.txt", "s3cret\n");
  dir_.Write("camp/spring.toml",
             testing::ReadFile(file) + "unsubscribe_secret_file = \"secret.txt\"\n");
  r = Salvo("campaign load " + file + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  // The same check when a running engine loads it (through the admin socket).
  const std::string flags_campaign = "campaign load --name other --template " + tpl_ +
                                     " --recipients " + csv_ + " --from news@example.com";
  auto spool = Spool::Open(data_, {});
  ASSERT_TRUE(spool.ok()) << spool.status();
  AdminOptions admin;
  admin.check_first_copy = [](const CampaignInfo&, std::string_view,
                              const std::vector<std::string>& row) {
    return absl::InvalidArgumentError("refused for " + row[0]);
  };
  auto server = AdminServer::Start(spool->get(), admin);
  ASSERT_TRUE(server.ok()) << server.status();
  r = Salvo(flags_campaign + " --data-dir " + data_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot compose the campaign's first message (" + csv_ +
                       ":2, a@one.example): refused for a@one.example"),
            std::string::npos)
      << r.err;
  EXPECT_EQ((*spool)->ListCampaigns().size(), 1u);
  // The refused load left no gap in the engine's IDs either.
  (*server)->Stop();
  server = AdminServer::Start(spool->get(), {});
  ASSERT_TRUE(server.ok()) << server.status();
  r = Salvo(flags_campaign + " --data-dir " + data_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2\n");
}

}  // namespace
}  // namespace salvo::queue
