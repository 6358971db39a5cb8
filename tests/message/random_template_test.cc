// Mutated templates and random values: Parse either succeeds or fails with a
// file:line error, never crashes; every successful render keeps the
// structural invariants (CRLF only, no NUL, lines <= 998 octets, header block
// ends with an empty line). Runs under ASan+UBSan in CI (LABEL unit).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/message/downgrade.h"
#include "engine/message/template.h"

namespace salvo::message {
namespace {

constexpr std::string_view kBase =
    "From: {{name|Acme}} <news@acme.example>\n"
    "Subject: Hi {{first}} {{x|y}}\n"
    "X-A: {{a}}\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"zz\"\n"
    "\n"
    "pre\n"
    "--zz\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Hello {{first}} -- {{a}}\n"
    ".\n"
    "--zz\n"
    "Content-Type: multipart/alternative; boundary=\"yy\"\n"
    "\n"
    "--yy\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "{{first}}{{a}}\n"
    "--yy\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "<b>{{a}}</b>\n"
    "--yy--\n"
    "--zz--\n"
    "epilogue\n";

std::string RandomBytes(std::mt19937& rng, size_t max) {
  static const char kChars[] = "{}|\\\r\n-:=\"<>?_. \tab\xC3\xA9\x00\x01zy";
  static const std::string kAlphabet(kChars, sizeof kChars - 1);  // keeps the NUL
  std::string s;
  size_t n = rng() % (max + 1);
  for (size_t i = 0; i < n; ++i) s.push_back(kAlphabet[rng() % kAlphabet.size()]);
  if (rng() % 8 == 0) s += std::string(rng() % 1200, 'w');
  return s;
}

void CheckInvariants(const std::string& msg) {
  ASSERT_NE(msg.find("\r\n\r\n"), std::string::npos);
  size_t start = 0;
  for (size_t p = msg.find("\r\n"); p != std::string::npos; p = msg.find("\r\n", start)) {
    std::string_view line(msg.data() + start, p - start);
    ASSERT_LE(line.size(), 998u) << line.substr(0, 120);
    ASSERT_EQ(line.find_first_of(std::string("\r\n\0", 3)), std::string_view::npos);
    start = p + 2;
  }
  ASSERT_EQ(start, msg.size()) << "copy does not end with CRLF";
}

TEST(RandomTemplateTest, MutatedTemplatesNeverCrashAndRendersKeepInvariants) {
  // SALVO_RANDOM_SEED / SALVO_RANDOM_ITERATIONS widen a local run.
  const char* seed_env = std::getenv("SALVO_RANDOM_SEED");
  const char* iter_env = std::getenv("SALVO_RANDOM_ITERATIONS");
  std::mt19937 rng(seed_env ? static_cast<unsigned>(std::atoi(seed_env)) : 7u);
  const int iterations = iter_env ? std::atoi(iter_env) : 3000;
  const std::vector<std::string> columns = {"email", "first", "a", "name"};
  int parsed = 0, rendered = 0;
  for (int iter = 0; iter < iterations; ++iter) {
    std::string t(kBase);
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % (t.size() + 1);
      switch (rng() % 3) {
        case 0:
          t.insert(pos, RandomBytes(rng, 6));
          break;
        case 1:
          t.erase(pos, rng() % 8);
          break;
        default:
          if (pos < t.size()) t[pos] = static_cast<char>(rng() % 256);
          break;
      }
    }
    auto tpl = Template::Parse(t, "fuzz.eml");
    if (!tpl.ok()) {
      EXPECT_EQ(std::string(tpl.status().message()).rfind("fuzz.eml:", 0), 0u) << tpl.status();
      continue;
    }
    ++parsed;
    auto binding = tpl->Bind(columns);
    if (!binding.ok()) continue;
    std::vector<std::string> row = {"bob@example.com", RandomBytes(rng, 30), RandomBytes(rng, 30),
                                    RandomBytes(rng, 30)};
    std::vector<std::string_view> views(row.begin(), row.end());
    RenderContext ctx;
    ctx.binding = &*binding;
    ctx.values = views;
    ctx.recipient = "bob@example.com";
    ctx.campaign_id = "c";
    ctx.recipient_id = "1";
    ctx.sender_domain = "acme.example";
    ctx.from_address = "news@acme.example";
    ctx.allow_8bit = rng() % 2 == 0;
    std::string out;
    auto r = tpl->Render(ctx, &out);
    ASSERT_TRUE(r.ok()) << r.status();
    ++rendered;
    CheckInvariants(out);
    std::string seven;
    auto d = DowngradeTo7bit(out, &seven);
    if (d.ok()) CheckInvariants(seven);
  }
  RecordProperty("parsed", parsed);
  RecordProperty("rendered", rendered);
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rendered, 100);
}

}  // namespace
}  // namespace salvo::message
