// `salvo campaign preview`: loads a campaign with hostile values through the
// real binary, previews copies, and checks them independently: Python's
// strict email parser (check_messages.py) for structure and exact values,
// dkimpy for the DKIM signature made with a `salvo dkim keygen` key.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/message/encoding.h"
#include "engine/message/unsubscribe.h"

namespace salvo::message {
namespace {

namespace fs = std::filesystem;

struct CmdResult {
  int rc = -1;
  std::string out;
  std::string err;
};

// Runs a shell command with stdout and stderr captured to files (bounded by
// `timeout`, so a hung child cannot hang the test).
CmdResult Shell(const std::string& cmd, const fs::path& dir) {
  fs::path out = dir / "cmd.out", err = dir / "cmd.err";
  std::string full = "timeout 60 " + cmd + " </dev/null >" + out.string() + " 2>" + err.string();
  int status = std::system(full.c_str());
  CmdResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream o(out, std::ios::binary), e(err, std::ios::binary);
  std::stringstream so, se;
  so << o.rdbuf();
  se << e.rdbuf();
  r.out = so.str();
  r.err = se.str();
  return r;
}

void Write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::string B64(std::string_view s) {
  std::string out;
  AppendBase64(s, &out);
  return out;
}

class PreviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(SALVO_BINARY, X_OK) != 0) GTEST_SKIP() << "salvo binary not built";
    if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "/usr/bin/python3 missing";
    dir_ = fs::temp_directory_path() / ("salvo-preview-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "keys");
    Write(dir_ / "t.eml",
          "From: {{name|Acme}} <news@acme.example>\n"
          "Subject: Hi {{first}}\n"
          "MIME-Version: 1.0\n"
          "Content-Type: multipart/alternative; boundary=\"b1\"\n"
          "\n"
          "--b1\n"
          "Content-Type: text/plain; charset=utf-8\n"
          "Content-Transfer-Encoding: 8bit\n"
          "\n"
          "Hello {{first}}\n"
          "--b1\n"
          "Content-Type: text/html; charset=utf-8\n"
          "Content-Transfer-Encoding: base64\n"
          "\n"
          "<p>{{first}}</p>\n"
          "--b1--\n");
    // RFC 4180: quoted fields carry the line break, quotes and commas.
    Write(dir_ / "r.csv",
          "email,first,name\r\n"
          "bob@example.com,\"B\xC3\xB8"
          "b\r\n--b1\r\nBcc: x@evil.example\",\"Q \"\"quoted\"\", "
          "{{first}}\"\r\n"
          "ann@example.org,\xE4\xBD\xA0\xE5\xA5\xBD"
          " =?utf-8?q?x?=,\r\n");
    Write(dir_ / "secret", "preview-test-secret\n");
    chmod((dir_ / "secret").c_str(), 0600);
    Write(dir_ / "c.toml",
          "name = \"preview\"\n"
          "template = \"t.eml\"\n"
          "recipients = \"r.csv\"\n"
          "from = \"news@acme.example\"\n"
          "[options]\n"
          "unsubscribe_url = \"https://u.acme.example/unsub\"\n"
          "unsubscribe_mailto = \"unsub@acme.example\"\n"
          "unsubscribe_secret_file = \"" +
              (dir_ / "secret").string() +
              "\"\n"
              "feedback_id = \"{campaign}:acme:bulk\"\n");
    CmdResult load =
        Shell(std::string(SALVO_BINARY) + " campaign load " + (dir_ / "c.toml").string() +
                  " --data-dir " + (dir_ / "data").string(),
              dir_);
    if (load.err.find("not yet available") != std::string::npos)
      GTEST_SKIP() << "salvo campaign load is not available in this build";
    ASSERT_EQ(load.rc, 0) << load.out << load.err;
  }
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
  }
  CmdResult Preview(const std::string& extra) {
    return Shell(std::string(SALVO_BINARY) + " campaign preview preview " + extra, dir_);
  }
  fs::path dir_;
};

TEST_F(PreviewTest, PrintsACopyThatParsesStrictlyWithExactValues) {
  CmdResult p =
      Preview("--recipient bob@example.com --no-sign --data-dir " + (dir_ / "data").string());
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_NE(p.err.find("not signed"), std::string::npos) << p.err;
  Write(dir_ / "bob.eml", p.out);
  const std::string first =
      "B\xC3\xB8"
      "b\r\n--b1\r\nBcc: x@evil.example";
  nlohmann::json e;
  e["file"] = (dir_ / "bob.eml").string();
  e["recipient"] = "bob@example.com";
  e["display_name"] = "Q \"quoted\", {{first}}";
  e["headers"] = nlohmann::json::array({{"From", nullptr},
                                        {"Subject", "Hi " + first},
                                        {"MIME-Version", "1.0"},
                                        {"Content-Type", nullptr},
                                        {"To", "bob@example.com"},
                                        {"Date", nullptr},
                                        {"Message-ID", nullptr},
                                        {"List-Unsubscribe", nullptr},
                                        {"List-Unsubscribe-Post", nullptr},
                                        {"Feedback-ID", nullptr}});
  e["parts"] = nlohmann::json::array(
      {{"text/plain", B64("Hello " + first)}, {"text/html", B64("<p>" + first + "</p>")}});
  // The token in the URL verifies for bob (campaign id as printed in Feedback-ID).
  size_t fid = p.out.find("Feedback-ID: ");
  ASSERT_NE(fid, std::string::npos);
  std::string campaign = p.out.substr(fid + 13, p.out.find(':', fid + 13) - fid - 13);
  e["unsubscribe_token"] = MakeUnsubscribeToken("preview-test-secret", campaign, "bob@example.com");
  Write(dir_ / "exp.json", nlohmann::json::array({e}).dump());
  CmdResult check = Shell(std::string("/usr/bin/python3 ") + SALVO_SOURCE_DIR +
                              "/tests/message/check_messages.py " + (dir_ / "exp.json").string(),
                          dir_);
  EXPECT_EQ(check.rc, 0) << check.out << check.err;
}

TEST_F(PreviewTest, SignsWithConfiguredKeyAndDkimpyVerifies) {
  if (std::system("/usr/bin/python3 -c 'import dkim' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-dkim not installed";
  CmdResult kg = Shell(std::string(SALVO_BINARY) +
                           " dkim keygen --domain acme.example --selector s1 "
                           "--type ed25519 --out " +
                           (dir_ / "keys").string(),
                       dir_);
  ASSERT_EQ(kg.rc, 0) << kg.err;
  // "s1._domainkey.acme.example. IN TXT ( "v=DKIM1; k=ed25519; " "p=..." )" -> joined strings.
  std::string record;
  for (size_t q = kg.out.find('"'); q != std::string::npos; q = kg.out.find('"', q + 1)) {
    size_t end = kg.out.find('"', q + 1);
    record += kg.out.substr(q + 1, end - q - 1);
    q = end;
  }
  ASSERT_NE(record.find("p="), std::string::npos) << kg.out;
  Write(dir_ / "salvo.toml", "data_dir = \"" + (dir_ / "data").string() +
                                 "\"\n[dkim]\n[[dkim.keys]]\ndomain = \"acme.example\"\n"
                                 "selector = \"s1\"\nkey_file = \"" +
                                 (dir_ / "keys" / "s1.acme.example.pem").string() +
                                 "\"\ntype = \"ed25519\"\n");
  CmdResult p = Preview("--recipient ann@example.org --config " + (dir_ / "salvo.toml").string());
  ASSERT_EQ(p.rc, 0) << p.err;
  ASSERT_EQ(p.out.rfind("DKIM-Signature:", 0), 0u) << p.out.substr(0, 200);
  Write(dir_ / "ann.eml", p.out);
  Write(dir_ / "record.txt", record);
  CmdResult v = Shell(
      "/usr/bin/python3 -c 'import dkim,sys; rec=open(sys.argv[2],\"rb\").read(); "
      "ok=dkim.verify(open(sys.argv[1],\"rb\").read(), dnsfunc=lambda n, timeout=5: rec); "
      "print(ok); sys.exit(0 if ok else 1)' " +
          (dir_ / "ann.eml").string() + " " + (dir_ / "record.txt").string(),
      dir_);
  EXPECT_EQ(v.rc, 0) << v.out << v.err;
}

TEST_F(PreviewTest, NoEightBitMimeReencodesAndUnknownRecipientFails) {
  // Like the engine, preview re-encodes 8bit parts: every byte is 7-bit.
  CmdResult p =
      Preview("--recipient bob@example.com --no-sign --data-dir " + (dir_ / "data").string());
  ASSERT_EQ(p.rc, 0) << p.err;
  for (unsigned char c : p.out) ASSERT_LT(c, 0x80);
  EXPECT_NE(p.err.find("8BITMIME not needed"), std::string::npos) << p.err;
  CmdResult missing =
      Preview("--recipient nobody@example.com --data-dir " + (dir_ / "data").string());
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.err.find("recipient nobody@example.com is not in campaign"), std::string::npos)
      << missing.err;
  CmdResult usage = Shell(std::string(SALVO_BINARY) + " campaign preview preview", dir_);
  EXPECT_EQ(usage.rc, 2) << usage.err;
}

}  // namespace
}  // namespace salvo::message
