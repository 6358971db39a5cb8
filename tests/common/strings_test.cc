// engine/common: the shared string, base64, hash and host:port helpers.
#include <string>
#include <vector>

#include "engine/common/base64.h"
#include "engine/common/duration.h"
#include "engine/common/hash.h"
#include "engine/common/host_port.h"
#include "engine/common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace salvo {
namespace {

using ::testing::HasSubstr;

TEST(StringsTest, CatTakesEveryKindOfPiece) {
  std::string_view sv = "sv";
  absl::string_view av = "av";
  EXPECT_EQ(Cat("a", std::string("b"), sv, av, 'c', 42, -7, uint64_t{18446744073709551615ull}),
            "absvavc42-718446744073709551615");
  std::string s = "x";
  Append(&s, 1.5, ' ', "y");
  EXPECT_EQ(s, "x1.5 y");
}

TEST(StringsTest, CaseStripSplitJoin) {
  EXPECT_EQ(AsciiLower("MiXeD-Ä"), "mixed-Ä");
  EXPECT_EQ(AsciiUpper("ehlo"), "EHLO");
  EXPECT_TRUE(EqualsIgnoreCase("Gmail.COM", "gmail.com"));
  EXPECT_FALSE(EqualsIgnoreCase("gmail.com", "gmail.co"));
  EXPECT_EQ(StripWhitespace(" \t a b \r\n"), "a b");
  EXPECT_EQ(Split("a,,b", ','), (std::vector<std::string_view>{"a", "", "b"}));
  EXPECT_EQ(Join(std::vector<std::string>{"a", "b", "c"}, "; "), "a; b; c");
}

TEST(Base64Test, Rfc4648VectorsAndFoldedInput) {
  // RFC 4648 section 10.
  const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(Base64Encode(plain[i]), coded[i]);
    std::string back;
    ASSERT_TRUE(Base64Decode(coded[i], &back)) << coded[i];
    EXPECT_EQ(back, plain[i]);
  }
  std::string out;
  ASSERT_TRUE(Base64Decode("Zm9v\r\n YmFy", &out));  // folded as in a DKIM tag
  EXPECT_EQ(out, "foobar");
  EXPECT_FALSE(Base64Decode("Zm9v!", &out));
  EXPECT_FALSE(Base64Decode("Zm-_", &out));
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");  // URL alphabet, no padding
}

TEST(HashTest, Fnv1a64IsTheSpecifiedFunction) {
  // Published FNV-1a 64 test values (offset basis for "", "a", "foobar").
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(HostPortTest, Forms) {
  auto hp = ParseHostPort("127.0.0.2:2525", {.default_port = 25});
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.2");
  EXPECT_EQ(hp->port, 2525);
  hp = ParseHostPort("mx.example.com", {.default_port = 25});
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->port, 25);
  hp = ParseHostPort("[::1]:26");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 26);
  hp = ParseHostPort("::1");  // bare IPv6: a host, no port
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, -1);
  EXPECT_THAT(std::string(ParseHostPort(":25").status().message()), HasSubstr("no host"));
  EXPECT_THAT(std::string(ParseHostPort("h:x").status().message()),
              HasSubstr("port must be 1..65535"));
  EXPECT_FALSE(ParseHostPort("h:").ok());
  EXPECT_FALSE(ParseHostPort("h:0").ok());
  EXPECT_TRUE(ParseHostPort("h:0", {.allow_port_zero = true}).ok());
  EXPECT_FALSE(ParseHostPort("h:65536").ok());
  EXPECT_THAT(std::string(ParseHostPort("[::1").status().message()), HasSubstr("missing ']'"));
  EXPECT_FALSE(ParseHostPort("[::1]x").ok());
}

TEST(DurationTest, UnitsSumsAndBounds) {
  EXPECT_EQ(*ParseDuration("30"), absl::Seconds(30));
  EXPECT_EQ(*ParseDuration("1.5"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseDuration(" 5MIN "), absl::Minutes(5));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("3d"), absl::Hours(72));
  for (const char* bad : {"", "m", "5 weeks", "-1s", "1w", "30 s x", "nan", "1e999"})
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  EXPECT_THAT(std::string(ParseDuration("9999999999999999d").status().message()),
              HasSubstr("longer than 100 years"));
}

// Issue 16 item 5: what human output does with control characters from data.
TEST(EscapeControlsTest, ControlsAndInvalidBytesBecomeHexAndUtf8Stays) {
  EXPECT_EQ(EscapeControls("plain a@b.example"), "plain a@b.example");
  EXPECT_EQ(EscapeControls("a\x1b[31mred\r\nX\t\x7f"), "a\\x1b[31mred\\x0d\\x0aX\\x09\\x7f");
  EXPECT_EQ(EscapeControls(std::string("nul\0x", 5)), "nul\\x00x");
  // Valid UTF-8 passes unchanged: Latin, CJK, emoji, U+00A0 right after the C1 range.
  EXPECT_EQ(EscapeControls("Ünïcödé 日本語 😀 \xc2\xa0"), "Ünïcödé 日本語 😀 \xc2\xa0");
  // C1 controls encoded in UTF-8 (CSI U+009B, NEL U+0085) are escaped byte by byte.
  EXPECT_EQ(EscapeControls("x\xc2\x9b"
                           "2Jy\xc2\x85"),
            "x\\xc2\\x9b2Jy\\xc2\\x85");
  // Raw C1 bytes, stray continuation bytes, truncated and overlong sequences,
  // surrogates and code points past U+10FFFF are not UTF-8: each byte escaped.
  EXPECT_EQ(EscapeControls("\x9b"
                           "2J"),
            "\\x9b2J");
  EXPECT_EQ(EscapeControls("\xe6\x97"), "\\xe6\\x97");
  EXPECT_EQ(EscapeControls("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(EscapeControls("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(EscapeControls("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  EXPECT_EQ(EscapeControls(""), "");
}

}  // namespace
}  // namespace salvo
