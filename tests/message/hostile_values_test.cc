// Renders 600 recipients with hostile values through three templates
// (multipart/alternative with QP text + base64 HTML + 8bit part; single-part
// 8bit; single-part base64) and checks every copy with Python's email package
// under policy=email.policy.strict (tests/message/check_messages.py): no
// defects, exactly the expected header fields, every value decoded exactly.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/message/downgrade.h"
#include "engine/message/encoding.h"
#include "engine/message/template.h"
#include "engine/message/unsubscribe.h"
#include "tests/support/process.h"

namespace salvo::message {
namespace {

constexpr std::string_view kMultipart =
    "From: {{name|Acme News}} <news@acme.example>\n"
    "Subject: Hello {{first}}, your code {{code}}\n"
    "X-Campaign-Tag: {{tag}}\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/alternative; boundary=\"BND-0001\"\n"
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--BND-0001\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Hi {{first}},\n"
    "Your code is {{code}}.\n"
    "Tag: {{tag}}\n"
    "--BND-0001\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "<html><body><p>Hi {{first}},</p><p>{{code}}</p></body></html>\n"
    "--BND-0001\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "{{first}}\n"
    "--BND-0001--\n";

constexpr std::string_view kSingle8bit =
    "From: \"Acme {{name}}\" <news@acme.example>\n"
    "Subject: {{first}}\n"
    "Reply-To: Support <support@acme.example>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Dear {{first|friend}},\n"
    "{{code}}\n"
    "-- \n"
    "Acme\n";

constexpr std::string_view kSingleBase64 =
    "From: news@acme.example\n"
    "Subject: Caf\xC3\xA9 {{first}} \xE2\x98\x95\n"
    "X-Long: {{long}}\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "<p>{{first}}</p>{{code}}\n";

// Fragments that have broken real mailers: line breaks, NUL, boundaries,
// encoded-word look-alikes, placeholder syntax, quotes, every script.
const std::vector<std::string>& Fragments() {
  static const std::vector<std::string> f = {
      "\r\n",
      "\n",
      "\r",
      std::string("\0", 1),
      "\r\nBcc: evil@attacker.example\r\n",
      "\nX-Injected: yes",
      "--BND-0001",
      "\r\n--BND-0001--\r\n",
      "--",
      "-",
      ".",
      "\r\n.\r\n",
      "From ",
      "{{first}}",
      "{{",
      "}}",
      "{{name|x}}",
      "\\{{",
      "=?utf-8?q?evil?=",
      "=?",
      "?=",
      "=",
      "=3D",
      "_",
      "?",
      "\"",
      "'",
      "\\",
      "\"quoted\"",
      "<evil@attacker.example>",
      ",",
      ";",
      ":",
      "(comment)",
      " ",
      "  ",
      "\t",
      " lead",
      "trail ",
      "\x01\x1b\x7f",
      "\x0c",
      "Bob",
      "O'Brien",
      "Jean-Luc",
      "Ren\xC3\xA9",
      "M\xC3\xBCller",
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",                          // Cyrillic
      "\xCE\x93\xCE\xB5\xCE\xB9\xCE\xAC",                                          // Greek
      "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",                                  // Arabic
      "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D",                                          // Hebrew
      "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87",  // Devanagari
      "\xE4\xBD\xA0\xE5\xA5\xBD",                                                  // Chinese
      "\xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF",              // Japanese
      "\xEC\x95\x88\xEB\x85\x95",                                                  // Korean
      "\xE0\xB8\xAA\xE0\xB8\xA7\xE0\xB8\xB1\xE0\xB8\xAA\xE0\xB8\x94\xE0\xB8\xB5",  // Thai
      "\xE0\xAE\xB5\xE0\xAE\xA3\xE0\xAE\x95\xE0\xAF\x8D\xE0\xAE\x95\xE0\xAE\xAE\xE0\xAF\x8D",  // Tamil
      "\xD5\x80\xD5\xA1\xD5\xB5",              // Armenian
      "\xE1\x83\x92\xE1\x83\x90\xE1\x83\x9B",  // Georgian
      "\xE1\x88\xB0\xE1\x88\x8B\xE1\x88\x9D",  // Ethiopic
      "\xF0\x9F\x98\x80\xF0\x9F\x8E\x89",      // emoji
      "e\xCC\x81",                             // combining accent
      "\xE2\x80\xA8",
      "\xC2\x85",
      "\xEF\xBB\xBF",
      "\xE2\x80\x8D",      // LS, NEL, BOM, ZWJ
      "\xF0\x90\x8D\x88",  // Gothic (astral)
  };
  return f;
}

std::string HostileValue(std::mt19937& rng) {
  const auto& f = Fragments();
  std::string v;
  int pieces = std::uniform_int_distribution<int>(0, 5)(rng);
  for (int i = 0; i < pieces; ++i) v += f[rng() % f.size()];
  switch (rng() % 12) {
    case 0:
      v += std::string(1500 + rng() % 1500, 'a');  // one long word
      break;
    case 1:
      for (int i = 0; i < 300; ++i) v += "word ";  // long text
      break;
    case 2:
      for (int i = 0; i < 200; ++i) v += "\xC3\xA9\xE4\xBD\xA0";  // long non-ASCII
      break;
    default:
      break;
  }
  return v;
}

std::string B64(std::string_view s) {
  std::string out;
  AppendBase64(s, &out);
  return out;
}

// What a display name becomes: controls cannot be carried in a phrase.
std::string DisplayName(std::string v) {
  for (char& c : v)
    if (static_cast<unsigned char>(c) < 32 || c == 127) c = ' ';
  return v;
}

int RunChecker(const std::string& json_path, std::string* output) {
  testsupport::RunResult r =
      testsupport::RunShell(std::string("/usr/bin/python3 ") + SALVO_SOURCE_DIR +
                            "/tests/message/check_messages.py " + json_path + " 2>&1");
  output->append(r.out);
  return r.code >= 0 && r.code < 128 ? r.code : -1;
}

TEST(HostileValuesTest, StrictPythonParserAcceptsEveryCopyAndValuesRoundTrip) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "/usr/bin/python3 not installed";
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("salvo-message-hostile-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);

  auto multipart = Template::Parse(kMultipart, "multipart.eml");
  auto single8 = Template::Parse(kSingle8bit, "single8.eml");
  auto single64 = Template::Parse(kSingleBase64, "single64.eml");
  ASSERT_TRUE(multipart.ok()) << multipart.status();
  ASSERT_TRUE(single8.ok()) << single8.status();
  ASSERT_TRUE(single64.ok()) << single64.status();
  const std::vector<std::string> columns = {"email", "first", "code", "tag", "name", "long"};
  auto b_multi = multipart->Bind(columns);
  auto b_8 = single8->Bind(columns);
  auto b_64 = single64->Bind(columns);
  ASSERT_TRUE(b_multi.ok() && b_8.ok() && b_64.ok());

  std::mt19937 rng(20261128);
  nlohmann::json expectations = nlohmann::json::array();
  constexpr int kRecipients = 600;
  int eight_bit_copies = 0;
  int downgraded = 0;
  for (int i = 0; i < kRecipients; ++i) {
    std::string email = (i % 7 == 3) ? "o'brien+tag" + std::to_string(i) + "@Example.COM"
                                     : "user" + std::to_string(i) + "@example.com";
    std::string first = HostileValue(rng), code = HostileValue(rng), tag = HostileValue(rng),
                name = HostileValue(rng), long_value = HostileValue(rng);
    if (i % 10 == 0) first.clear();  // defaults
    std::vector<std::string_view> row = {email, first, code, tag, name, long_value};
    int kind = i % 3;
    const Template& t = kind == 0 ? *multipart : kind == 1 ? *single8 : *single64;
    RenderContext ctx;
    ctx.binding = kind == 0 ? &*b_multi : kind == 1 ? &*b_8 : &*b_64;
    ctx.values = row;
    ctx.recipient = email;
    ctx.campaign_id = "c1";
    std::string rid = std::to_string(i);
    ctx.recipient_id = rid;
    ctx.sender_domain = "acme.example";
    ctx.date = absl::FromUnixSeconds(1'795'000'000 + i);
    ctx.unsubscribe.https_base = "https://u.acme.example/unsubscribe";
    ctx.unsubscribe.mailto = "unsubscribe@acme.example";
    ctx.unsubscribe.secret = "correct horse battery staple";
    ctx.feedback_id = "c1:acme:bulk";
    ctx.allow_8bit = (i / 3) % 2 == 0;
    std::string out;
    auto r = t.Render(ctx, &out);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->needs_smtputf8);
    if (r->needs_8bitmime) {
      ++eight_bit_copies;
      EXPECT_TRUE(ctx.allow_8bit) << "8bit content went out to a server without 8BITMIME";
    }
    fs::path file = dir / ("msg" + std::to_string(i) + ".eml");
    std::ofstream(file, std::ios::binary) << out;

    nlohmann::json e;
    e["file"] = file.string();
    e["recipient"] = email;
    e["unsubscribe_token"] = MakeUnsubscribeToken(ctx.unsubscribe.secret, "c1", email);
    nlohmann::json tail = nlohmann::json::array(
        {nlohmann::json::array({"To", email}), nlohmann::json::array({"Date", nullptr}),
         nlohmann::json::array({"Message-ID", nullptr}),
         nlohmann::json::array({"List-Unsubscribe", nullptr}),
         nlohmann::json::array({"List-Unsubscribe-Post", nullptr}),
         nlohmann::json::array({"Feedback-ID", "c1:acme:bulk"})});
    nlohmann::json headers = nlohmann::json::array();
    auto h = [&](const char* n, nlohmann::json v) {
      headers.push_back(nlohmann::json::array({n, v}));
    };
    if (kind == 0) {
      h("From", nullptr);
      h("Subject", "Hello " + first + ", your code " + code);
      h("X-Campaign-Tag", tag);
      h("MIME-Version", "1.0");
      h("Content-Type", nullptr);
      e["display_name"] = DisplayName(name.empty() ? "Acme News" : name);
      e["parts"] = nlohmann::json::array(
          {nlohmann::json::array({"text/plain", B64("Hi " + first + ",\r\nYour code is " + code +
                                                    ".\r\nTag: " + tag)}),
           nlohmann::json::array({"text/html", B64("<html><body><p>Hi " + first + ",</p><p>" +
                                                   code + "</p></body></html>")}),
           nlohmann::json::array({"text/plain", B64(first)})});
    } else if (kind == 1) {
      h("From", nullptr);
      h("Subject", first);
      h("Reply-To", nullptr);
      h("MIME-Version", "1.0");
      h("Content-Type", nullptr);
      h("Content-Transfer-Encoding", nullptr);
      e["display_name"] = DisplayName("Acme " + name);
      e["parts"] = nlohmann::json::array({nlohmann::json::array(
          {"text/plain", B64("Dear " + (first.empty() ? std::string("friend") : first) + ",\r\n" +
                             code + "\r\n-- \r\nAcme\r\n")})});
    } else {
      h("From", nullptr);
      h("Subject", "Caf\xC3\xA9 " + first + " \xE2\x98\x95");
      h("X-Long", long_value);
      h("Content-Type", nullptr);
      h("Content-Transfer-Encoding", "base64");
      h("MIME-Version", "1.0");
      e["parts"] = nlohmann::json::array(
          {nlohmann::json::array({"text/html", B64("<p>" + first + "</p>" + code + "\r\n")})});
    }
    for (auto& x : tail) headers.push_back(x);
    e["headers"] = headers;
    expectations.push_back(e);
    if (r->needs_8bitmime) {
      // The same copy downgraded after rendering (server without 8BITMIME).
      std::string seven;
      auto changed = DowngradeTo7bit(out, &seven);
      ASSERT_TRUE(changed.ok()) << changed.status();
      EXPECT_TRUE(*changed);
      fs::path file7 = dir / ("msg" + std::to_string(i) + "-7bit.eml");
      std::ofstream(file7, std::ios::binary) << seven;
      e["file"] = file7.string();
      e["same_message_id_as_previous"] = true;
      e["seven_bit"] = true;
      expectations.push_back(e);
      ++downgraded;
    } else {
      std::string copy;
      auto changed = DowngradeTo7bit(out, &copy);
      ASSERT_TRUE(changed.ok()) << changed.status();
      EXPECT_FALSE(*changed);
      EXPECT_EQ(copy, out);
    }
  }
  EXPECT_GT(eight_bit_copies, 0);
  EXPECT_GT(downgraded, 0);
  RecordProperty("copies_checked", kRecipients + downgraded);
  std::string json_path = (dir / "expectations.json").string();
  std::ofstream(json_path) << expectations.dump();
  std::string output;
  int rc = RunChecker(json_path, &output);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("ok " + std::to_string(kRecipients + downgraded)), std::string::npos)
      << output;
  if (rc == 0) fs::remove_all(dir);
}

}  // namespace
}  // namespace salvo::message
