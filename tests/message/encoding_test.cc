#include "engine/message/encoding.h"

#include <gtest/gtest.h>

#include <string>

namespace salvo::message {
namespace {

size_t MaxLine(const std::string& s) {
  size_t max = 0, start = 0;
  for (size_t p = s.find("\r\n");; p = s.find("\r\n", start)) {
    size_t end = p == std::string::npos ? s.size() : p;
    max = std::max(max, end - start);
    if (p == std::string::npos) break;
    start = p + 2;
  }
  return max;
}

TEST(EncodingTest, Base64Rfc4648Vectors) {
  const char* in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) {
    std::string out;
    AppendBase64(in[i], &out);
    EXPECT_EQ(out, want[i]);
  }
  std::string url;
  AppendBase64Url("\xfb\xff", &url);
  EXPECT_EQ(url, "-_8");
}

TEST(EncodingTest, StreamingBase64MatchesOneShotAndKeepsLinesAt76) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 7));
  std::string flat;
  AppendBase64(data, &flat);
  for (size_t chunk : {1u, 2u, 5u, 57u, 100u}) {
    Base64Encoder enc;
    std::string out;
    for (size_t p = 0; p < data.size(); p += chunk)
      enc.Append(std::string_view(data).substr(p, chunk), &out);
    enc.Finish(&out);
    EXPECT_LE(MaxLine(out), 76u);
    std::string joined;
    for (char c : out)
      if (c != '\r' && c != '\n') joined.push_back(c);
    EXPECT_EQ(joined, flat) << chunk;
  }
}

TEST(EncodingTest, QuotedPrintableEncodesBreaksNulAndLineStarts) {
  QpEncoder qp;
  std::string out;
  qp.Append(std::string("a\r\nb\0c=d \n", 10), /*text_mode=*/false, &out);
  EXPECT_EQ(out, "a=0D=0Ab=00c=3Dd =0A");
  QpEncoder text;
  out.clear();
  text.Append("-- \r\n.end\r\n--BOUNDARY", /*text_mode=*/true, &out);
  EXPECT_EQ(out, "=2D-=20\r\n=2Eend\r\n=2D-BOUNDARY");
}

TEST(EncodingTest, QuotedPrintableLinesNeverExceed76) {
  std::string in;
  for (int i = 0; i < 3000; ++i) in.push_back(static_cast<char>(i % 7 == 0 ? '=' : 'a' + i % 26));
  in += std::string(500, '\xC3');
  QpEncoder qp;
  std::string out;
  qp.Append(in, true, &out);
  EXPECT_LE(MaxLine(out), 76u);
  for (size_t p = out.find("\r\n-"); p != std::string::npos; p = out.find("\r\n-", p + 1))
    ADD_FAILURE() << "a line starts with '-'";
}

TEST(EncodingTest, EncodedWordsFoldAt78AndNeverSplitUtf8) {
  std::string v;
  for (int i = 0; i < 100; ++i) v += "\xE4\xBD\xA0 x\r\n";
  std::string out = "Subject: ";
  size_t col = out.size();
  AppendEncodedWords(v, false, &col, &out);
  EXPECT_LE(MaxLine(out), 78u);
  // Each word is self-contained: every "=E4" is followed by its 2 continuation octets.
  for (size_t p = out.find("=E4"); p != std::string::npos; p = out.find("=E4", p + 1))
    EXPECT_EQ(out.substr(p, 9), "=E4=BD=A0");
  EXPECT_EQ(out.find('\n', 0) == std::string::npos || out[out.find('\n') + 1] == ' ', true);
}

TEST(EncodingTest, PlainHeaderTextRules) {
  EXPECT_TRUE(IsPlainHeaderText("Hello world", 7));
  EXPECT_FALSE(IsPlainHeaderText(" lead", 7));
  EXPECT_FALSE(IsPlainHeaderText("trail ", 7));
  EXPECT_FALSE(IsPlainHeaderText("a=?b", 7));
  EXPECT_FALSE(IsPlainHeaderText("caf\xC3\xA9", 7));
  EXPECT_FALSE(IsPlainHeaderText("a\tb", 7));
  EXPECT_FALSE(IsPlainHeaderText(std::string(950, 'x'), 7));
  std::string out = "Subject: ";
  size_t col = out.size();
  std::string words;
  for (int i = 0; i < 40; ++i) words += "word ";
  words += "end";
  AppendFoldedPlain(words, &col, &out);
  EXPECT_LE(MaxLine(out), 78u);
}

TEST(EncodingTest, Rfc5322Date) {
  std::string out;
  AppendRfc5322Date(0, &out);
  EXPECT_EQ(out, "Thu, 01 Jan 1970 00:00:00 +0000");
  out.clear();
  AppendRfc5322Date(1795831759, &out);
  EXPECT_EQ(out, "Sat, 28 Nov 2026 02:09:19 +0000");
  out.clear();
  AppendRfc5322Date(951782400, &out);  // leap day
  EXPECT_EQ(out, "Tue, 29 Feb 2000 00:00:00 +0000");
}

}  // namespace
}  // namespace salvo::message
