#include "engine/message/template.h"

#include "engine/message/downgrade.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace salvo::message {
namespace {

constexpr std::string_view kSimple =
    "From: {{sender|Acme}} <news@acme.example>\n"
    "Subject: Hi {{first|there}}\n"
    "\n"
    "Hello {{first|there}}, code {{code}}.\n";

struct Fixture {
  std::vector<std::string> columns = {"email", "first", "code", "sender"};
  std::vector<std::string> row = {"bob@example.com", "Bob", "C-1", ""};
  std::vector<std::string_view> views;
  ColumnBinding binding;
  RenderContext ctx;
  explicit Fixture(const Template& t) {
    auto b = t.Bind(columns);
    EXPECT_TRUE(b.ok()) << b.status();
    if (b.ok()) binding = *b;
    ctx.binding = &binding;
    ctx.recipient = "bob@example.com";
    ctx.campaign_id = "c1";
    ctx.recipient_id = "7";
    ctx.sender_domain = "acme.example";
    ctx.date = absl::FromUnixSeconds(1'795'831'759);
    ctx.unsubscribe = {"https://u.acme.example/unsub", "unsub@acme.example", "secret"};
    ctx.feedback_id = "c1:acme";
  }
  std::string Render(const Template& t, RenderResult* result = nullptr) {
    views.assign(row.begin(), row.end());
    ctx.values = views;
    std::string out;
    auto r = t.Render(ctx, &out);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok() && result) *result = *r;
    return out;
  }
};

// Header field names of a rendered message (top-level block).
std::vector<std::string> HeaderNames(const std::string& msg) {
  std::vector<std::string> names;
  size_t end = msg.find("\r\n\r\n");
  size_t p = 0;
  while (p < end) {
    size_t eol = msg.find("\r\n", p);
    if (msg[p] != ' ' && msg[p] != '\t') names.push_back(msg.substr(p, msg.find(':', p) - p));
    p = eol + 2;
  }
  return names;
}

std::string ParseError(std::string_view text) {
  auto t = Template::Parse(text, "t.eml");
  return t.ok() ? "" : std::string(t.status().message());
}

TEST(TemplateParseTest, ErrorsNameFileAndLine) {
  struct Case {
    std::string text;
    std::string want;
  };
  const Case cases[] = {
      {"From: a@b.c\nSubject: {{first\n\nbody\n", "t.eml:2: unbalanced '{{'"},
      {"From: a@b.c\n\nline\nHi {{first name}}\n", "t.eml:4: bad placeholder name 'first name'"},
      {"From: a@b.c\n\nHi {{1abc}}\n", "t.eml:3: bad placeholder name"},
      {"From: a@b.c\nthis is not a header\n\nbody\n", "t.eml:2: malformed header line"},
      {" folded\nFrom: a@b.c\n\nbody\n", "t.eml:1: continuation line before any header field"},
      {"From: a@b.c\nMessage-ID: <x@y>\n\nbody\n", "t.eml:2: 'Message-ID' is added per copy"},
      {"From: a@b.c\nDate: now\n\nbody\n", "t.eml:2: 'Date' is added per copy"},
      {"From: a@b.c\nTo: x@y.z\n\nbody\n", "t.eml:2: 'To' is added per copy"},
      {"From: a@b.c\nBcc: x@y.z\n\nbody\n", "t.eml:2: 'Bcc' must not appear"},
      {"From: a@b.c\nContent-Transfer-Encoding: binary\n\nbody\n",
       "t.eml:2: unsupported Content-Transfer-Encoding 'binary'"},
      {"From: a@b.c\nContent-Type: multipart/mixed\n\nbody\n",
       "t.eml:2: multipart Content-Type without a boundary"},
      {"From: a@b.c\nContent-Type: multipart/mixed; boundary=X\n\n--X\n\nbody\n",
       "t.eml:2: multipart body is not closed by '--X--'"},
      {"From: a@b.c\nContent-Type: multipart/mixed; boundary=X\n\n--X\n"
       "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbody\n--X--\n",
       "t.eml:6: unsupported Content-Transfer-Encoding 'x-uuencode'"},
      {"From: a@b.c\nContent-Type: multipart/mixed; boundary=X\n\n--X\n"
       "Content-Type: text/{{kind}}\n\nbody\n--X--\n",
       "t.eml:5: placeholders are not allowed in MIME part headers"},
      {"From: a@b.c\nCc: {{boss}}\n\nbody\n",
       "t.eml:2: placeholders are not allowed in the "
       "structured header Cc"},
      {"From: {{name}} <{{email}}>\n\nbody\n", "t.eml:1: From with placeholders"},
      {"From: {{name}} <x{{email}}@acme.example>\n\nbody\n",
       "t.eml:1: placeholders and non-ASCII are not allowed in the From address"},
      {"From: a@b.c\nSubject: " + std::string(1000, 'x') + "\n\nbody\n",
       "t.eml:2: header line is 1009 octets"},
      {"From: a@b.c\n\n" + std::string(999, 'x') + "\n", "t.eml:3: line is 999 octets"},
      {"From: a@b.c\r\nSubject: x\rY\n\nbody\n", "t.eml:2: bare CR"},
      {"", "t.eml:1: template has no header fields"},
  };
  for (const Case& c : cases) {
    std::string err = ParseError(c.text);
    EXPECT_NE(err.find(c.want), std::string::npos) << "got: " << err << "\nwant: " << c.want;
  }
}

TEST(TemplateParseTest, VariablesAndFromAddress) {
  auto t = Template::Parse(kSimple, "t.eml");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->variables(), (std::vector<std::string>{"sender", "first", "code"}));
  EXPECT_EQ(t->from_address(), "news@acme.example");
}

TEST(TemplateParseTest, CheckColumnsNamesPlaceholderAndLine) {
  auto t = Template::Parse(kSimple, "t.eml");
  ASSERT_TRUE(t.ok());
  // first and sender have defaults everywhere; code has none.
  EXPECT_TRUE(t->CheckColumns({"email", "code"}).ok());
  absl::Status s = t->CheckColumns({"email", "first"});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("t.eml:4: placeholder {{code}} has no column"), std::string::npos)
      << s;
  EXPECT_FALSE(t->Bind({"email"}).ok());
}

TEST(TemplateRenderTest, FillsValuesDefaultsAndEngineHeaders) {
  auto t = Template::Parse(kSimple, "t.eml");
  ASSERT_TRUE(t.ok());
  Fixture f(*t);
  RenderResult r;
  std::string msg = f.Render(*t, &r);
  EXPECT_FALSE(r.needs_8bitmime);
  EXPECT_FALSE(r.needs_smtputf8);
  EXPECT_NE(msg.find("From: Acme <news@acme.example>\r\n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Subject: Hi Bob\r\n"), std::string::npos);
  EXPECT_NE(msg.find("To: bob@example.com\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Date: Sat, 28 Nov 2026 02:09:19 +0000\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Message-ID: <c1.7."), std::string::npos);
  EXPECT_NE(msg.find("@acme.example>\r\n"), std::string::npos);
  EXPECT_NE(msg.find("List-Unsubscribe: <https://u.acme.example/unsub?c=c1&r=bob%40example.com&t="),
            std::string::npos);
  EXPECT_NE(msg.find("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Feedback-ID: c1:acme\r\n"), std::string::npos);
  EXPECT_NE(msg.find("\r\n\r\nHello Bob, code C-1.\r\n"), std::string::npos);
  EXPECT_EQ(HeaderNames(msg),
            (std::vector<std::string>{"From", "Subject", "MIME-Version", "Content-Type", "To",
                                      "Date", "Message-ID", "List-Unsubscribe",
                                      "List-Unsubscribe-Post", "Feedback-ID"}));
  // Empty value -> default.
  f.row[1] = "";
  msg = f.Render(*t);
  EXPECT_NE(msg.find("Subject: Hi there\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Hello there, code"), std::string::npos);
}

TEST(TemplateRenderTest, HostileValuesCannotAddHeadersOrBoundaries) {
  constexpr std::string_view kMulti =
      "From: {{first}} <a@acme.example>\nSubject: {{first}}\nX-Code: {{code}}\n"
      "Content-Type: multipart/alternative; boundary=B1\n\n"
      "--B1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
      "{{first}}\n{{code}}\n--B1\nContent-Type: text/plain; charset=utf-8\n"
      "Content-Transfer-Encoding: quoted-printable\n\n{{code}}\n--B1--\n";
  auto t = Template::Parse(kMulti, "t.eml");
  ASSERT_TRUE(t.ok()) << t.status();
  Fixture f(*t);
  const std::string hostile[] = {"x\r\nBcc: evil@x.example",
                                 "\nX-Evil: 1",
                                 "x\rX-Evil: 1",
                                 std::string("a\0b", 3),
                                 "--B1",
                                 "--B1--",
                                 "\r\n--B1\r\nContent-Type: text/html\r\n\r\nphish",
                                 "{{code}}",
                                 "=?utf-8?b?ZXZpbA==?="};
  std::set<std::string> seen_ids;
  for (const std::string& h : hostile) {
    f.row[1] = h;
    f.row[2] = h;
    std::string msg = f.Render(*t);
    EXPECT_EQ(HeaderNames(msg),
              (std::vector<std::string>{"From", "Subject", "X-Code", "Content-Type", "MIME-Version",
                                        "To", "Date", "Message-ID", "List-Unsubscribe",
                                        "List-Unsubscribe-Post", "Feedback-ID"}))
        << msg;
    // Exactly the template's delimiter lines, no bare CR/LF/NUL anywhere.
    int delimiters = 0;
    size_t start = 0;
    for (size_t p = msg.find("\r\n"); p != std::string::npos; p = msg.find("\r\n", start)) {
      std::string line = msg.substr(start, p - start);
      EXPECT_EQ(line.find_first_of(std::string("\r\n\0", 3)), std::string::npos);
      EXPECT_LE(line.size(), 998u);
      if (line.rfind("--B1", 0) == 0) ++delimiters;
      start = p + 2;
    }
    EXPECT_EQ(delimiters, 3) << msg;
    EXPECT_EQ(msg.find("\r\nBcc:"), std::string::npos);
    // An 8bit part whose value carries a line break or NUL, or starts a line
    // with '-', is re-encoded as quoted-printable.
    bool must_reencode =
        h.find_first_of(std::string("\r\n\0", 3)) != std::string::npos || h[0] == '-';
    EXPECT_EQ(msg.find("Content-Transfer-Encoding: 8bit") == std::string::npos, must_reencode)
        << msg;
    size_t id = msg.find("Message-ID: ");
    EXPECT_TRUE(seen_ids.insert(msg.substr(id, msg.find("\r\n", id) - id)).second);
  }
}

TEST(TemplateRenderTest, EightBitGoesOutOnlyWhenOffered) {
  constexpr std::string_view kText =
      "From: a@acme.example\nContent-Type: text/plain; charset=utf-8\n"
      "Content-Transfer-Encoding: 8bit\n\nGr\xC3\xBC\xC3\x9F {{first}}\n";
  auto t = Template::Parse(kText, "t.eml");
  ASSERT_TRUE(t.ok()) << t.status();
  Fixture f(*t);
  RenderResult r;
  std::string msg = f.Render(*t, &r);
  EXPECT_TRUE(r.needs_8bitmime);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: 8bit"), std::string::npos);
  f.ctx.allow_8bit = false;
  msg = f.Render(*t, &r);
  EXPECT_FALSE(r.needs_8bitmime);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: quoted-printable"), std::string::npos);
  EXPECT_NE(msg.find("Gr=C3=BC=C3=9F=20Bob"), std::string::npos) << msg;
  for (unsigned char c : msg) EXPECT_LT(c, 0x80);
}

TEST(DowngradeTest, ReencodesEightBitPartsAndRefusesEightBitHeaders) {
  const std::string msg =
      "From: a@b.c\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\npre\r\n--X\r\n"
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
      "Gr\xC3\xBC\xC3\x9F -- \r\n--X\r\nContent-Type: text/plain\r\n\r\nascii\r\n--X--\r\n";
  std::string out;
  auto changed = DowngradeTo7bit(msg, &out);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ(out,
            "From: a@b.c\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\npre\r\n--X\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
            "quoted-printable\r\n\r\nGr=C3=BC=C3=9F --=20\r\n--X\r\nContent-Type: "
            "text/plain\r\n\r\nascii\r\n--X--\r\n");
  std::string bad = "Subject: Gr\xC3\xBC\xC3\x9F\r\n\r\nbody\r\n";
  out = "keep";
  auto err = DowngradeTo7bit(bad, &out);
  EXPECT_FALSE(err.ok());
  EXPECT_EQ(out, "keep");
}

TEST(TemplateRenderTest, PlainTemplateGetsUtf8MimeHeadersAndNonAsciiIsEncoded) {
  constexpr std::string_view kPlain = "From: a@acme.example\nSubject: {{first}}\n\nHi {{first}}\n";
  auto t = Template::Parse(kPlain, "t.eml");
  ASSERT_TRUE(t.ok()) << t.status();
  Fixture f(*t);
  f.row[1] = "J\xC3\xBCrgen";
  RenderResult r;
  std::string msg = f.Render(*t, &r);
  EXPECT_NE(msg.find("Subject: =?utf-8?q?J=C3=BCrgen?=\r\n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Content-Type: text/plain; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos);
  EXPECT_TRUE(r.needs_8bitmime);
  f.row[1] = "Juergen";
  msg = f.Render(*t, &r);
  EXPECT_EQ(msg.find("Content-Transfer-Encoding"), std::string::npos) << msg;  // 7bit default
}

TEST(TemplateRenderTest, InternationalisedRecipientNeedsSmtpUtf8) {
  auto t = Template::Parse(kSimple, "t.eml");
  ASSERT_TRUE(t.ok());
  Fixture f(*t);
  f.ctx.recipient =
      "j\xC3\xBCrgen@b\xC3\xBC"
      "cher.example";
  RenderResult r;
  f.Render(*t, &r);
  EXPECT_TRUE(r.needs_smtputf8);
  EXPECT_TRUE(AddressNeedsSmtpUtf8(f.ctx.recipient));
  EXPECT_FALSE(AddressNeedsSmtpUtf8("a@b.c"));
}

TEST(TemplateRenderTest, LongValuesKeepEveryLineWithinLimits) {
  auto t = Template::Parse(kSimple, "t.eml");
  ASSERT_TRUE(t.ok());
  Fixture f(*t);
  f.row[1] = std::string(5000, 'x');
  f.row[2] = std::string(3000, 'y');
  std::string msg = f.Render(*t);
  size_t start = 0, headers_end = msg.find("\r\n\r\n");
  for (size_t p = msg.find("\r\n"); p != std::string::npos; p = msg.find("\r\n", start)) {
    // URLs in List-Unsubscribe cannot be folded; every other header line can.
    bool url =
        msg.compare(start, 17, "List-Unsubscribe:") == 0 || msg.compare(start, 9, " <mailto:") == 0;
    EXPECT_LE(p - start, p < headers_end && !url ? 78u : 998u) << msg.substr(start, 100);
    start = p + 2;
  }
  EXPECT_NE(msg.find("Content-Transfer-Encoding: quoted-printable"), std::string::npos);
}

TEST(TemplateRenderTest, BadContextIsRejectedAndOutputUntouched) {
  auto t = Template::Parse(kSimple, "t.eml");
  ASSERT_TRUE(t.ok());
  Fixture f(*t);
  f.views.assign(f.row.begin(), f.row.end());
  f.ctx.values = f.views;
  std::string out = "previous";
  f.ctx.recipient = "bob@example.com\r\nBcc: x@y";
  EXPECT_FALSE(t->Render(f.ctx, &out).ok());
  f.ctx.recipient = "no-at-sign";
  EXPECT_FALSE(t->Render(f.ctx, &out).ok());
  f.ctx.recipient = "bob@example.com";
  f.ctx.unsubscribe.https_base = "http://insecure.example/u";
  EXPECT_FALSE(t->Render(f.ctx, &out).ok());
  f.ctx.unsubscribe.https_base = "https://u.example/u";
  f.ctx.campaign_id = "bad id";
  EXPECT_FALSE(t->Render(f.ctx, &out).ok());
  f.ctx.campaign_id = "c1";
  std::vector<std::string_view> short_row = {"x"};
  f.ctx.values = short_row;
  EXPECT_FALSE(t->Render(f.ctx, &out).ok());
  EXPECT_EQ(out, "previous");
}

TEST(TemplateRenderTest, EscapedBracesAreLiteral) {
  auto t = Template::Parse("From: a@acme.example\n\nUse \\{{name}} syntax {{first}}\n", "t.eml");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->variables(), std::vector<std::string>{"first"});
  Fixture f(*t);
  EXPECT_NE(f.Render(*t).find("Use {{name}} syntax Bob"), std::string::npos);
}

TEST(TemplateRenderTest, TemplateWithoutFromUsesContextFrom) {
  auto t = Template::Parse("Subject: x\n\nbody\n", "t.eml");
  ASSERT_TRUE(t.ok());
  Fixture f(*t);
  std::string out;
  std::vector<std::string_view> row(f.row.begin(), f.row.end());
  f.ctx.values = row;
  EXPECT_FALSE(t->Render(f.ctx, &out).ok());
  f.ctx.from_address = "news@acme.example";
  ASSERT_TRUE(t->Render(f.ctx, &out).ok());
  EXPECT_NE(out.find("From: <news@acme.example>\r\n"), std::string::npos);
}

}  // namespace
}  // namespace salvo::message
