// RFC 6376 section 3.4 canonicalization: the conformance vectors, streaming at
// every chunk boundary, and a randomized comparison with a naive reference.
#include "dkim/canonicalization.h"

#include <nlohmann/json.hpp>

#include <random>
#include <string>

#include "dkim/signer.h"
#include "gtest/gtest.h"
#include "tests/dkim/test_util.h"

namespace salvo::dkim {
namespace {

using testing::DataPath;
using testing::ReadFileOrDie;

std::string FromHex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

Canonicalization CanonOf(const std::string& name) {
  return name == "simple" ? Canonicalization::kSimple : Canonicalization::kRelaxed;
}

std::string CanonicalHeaders(Canonicalization c, const std::string& fields) {
  const std::string message = fields + "\r\n";  // the views point into it
  auto parsed = ParseMessage(message);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  std::string out;
  if (!parsed.ok()) return out;
  for (const HeaderField& f : parsed->fields) CanonicalizeHeader(c, f.raw, &out);
  return out;
}

class StringSink : public BodySink {
 public:
  void Write(std::string_view b) override { out.append(b); }
  std::string out;
};

std::string StreamBody(Canonicalization c, std::string_view body,
                       const std::vector<std::size_t>& cuts) {
  StringSink sink;
  BodyCanonicalizer canon(c, &sink);
  std::size_t prev = 0;
  for (std::size_t cut : cuts) {
    canon.Update(body.substr(prev, cut - prev));
    prev = cut;
  }
  canon.Update(body.substr(prev));
  canon.Finish();
  return sink.out;
}

TEST(DkimCanonicalizationVectors, AllRfc6376VectorsPass) {
  const auto doc =
      nlohmann::json::parse(ReadFileOrDie(DataPath("rfc6376/canonicalization-vectors.json")));
  int checked = 0;
  for (const auto& v : doc.at("vectors")) {
    const std::string id = v.at("id");
    const std::string input = FromHex(v.at("input_hex"));
    const std::string expected = FromHex(v.at("expected_hex"));
    const Canonicalization c = CanonOf(v.at("algorithm"));
    if (v.at("kind") == "header") {
      EXPECT_EQ(CanonicalHeaders(c, input), expected) << id;
    } else {
      EXPECT_EQ(CanonicalizeBody(c, input), expected) << id;
      // Same result for every split point, and byte by byte.
      for (std::size_t cut = 0; cut <= input.size(); ++cut) {
        EXPECT_EQ(StreamBody(c, input, {cut}), expected) << id << " split at " << cut;
      }
      std::vector<std::size_t> every;
      for (std::size_t i = 1; i < input.size(); ++i) every.push_back(i);
      EXPECT_EQ(StreamBody(c, input, every), expected) << id << " byte by byte";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 20);
}

TEST(DkimCanonicalizationVectors, EmptyBodyHashes) {
  const auto doc =
      nlohmann::json::parse(ReadFileOrDie(DataPath("rfc6376/canonicalization-vectors.json")));
  const auto& hashes = doc.at("empty_body_hashes");
  Signer signer;
  for (const char* msg : {"From: a@example.com\r\n\r\n", "From: a@example.com\r\n",
                          "From: a@example.com\r\n\r\n\r\n\r\n"}) {
    auto simple = signer.BodyHash(msg, Canonicalization::kSimple);
    auto relaxed = signer.BodyHash(msg, Canonicalization::kRelaxed);
    ASSERT_TRUE(simple.ok() && relaxed.ok());
    EXPECT_EQ(*simple, hashes.at("sha256(simple empty body = CRLF)").get<std::string>());
    EXPECT_EQ(*relaxed, hashes.at("sha256(relaxed empty body = \"\")").get<std::string>());
  }
}

TEST(DkimCanonicalization, HeaderEdgeCases) {
  std::string out;
  CanonicalizeHeader(Canonicalization::kRelaxed, "SUBJECT \t:\t  Hello\r\n   World \t \r\n", &out);
  EXPECT_EQ(out, "subject:Hello World\r\n");
  out.clear();
  CanonicalizeHeader(Canonicalization::kRelaxed, "X-Empty:\r\n", &out);
  EXPECT_EQ(out, "x-empty:\r\n");
  out.clear();
  CanonicalizeHeader(Canonicalization::kRelaxed, "X-Wsp:  \r\n \r\n", &out);
  EXPECT_EQ(out, "x-wsp:\r\n");
  out.clear();
  // 8-bit bytes pass through untouched.
  CanonicalizeHeader(Canonicalization::kRelaxed, "Subject: caf\xc3\xa9  ok\r\n", &out);
  EXPECT_EQ(out, "subject:caf\xc3\xa9 ok\r\n");
}

TEST(DkimCanonicalization, BodyEdgeCases) {
  const auto R = Canonicalization::kRelaxed;
  const auto S = Canonicalization::kSimple;
  EXPECT_EQ(CanonicalizeBody(R, " \t \r\n\t\r\n"), "");  // only WSP lines -> empty
  EXPECT_EQ(CanonicalizeBody(R, "a\r\n\r\n \r\nb\r\n"), "a\r\n\r\n\r\nb\r\n");
  EXPECT_EQ(CanonicalizeBody(R, "a\rb\r\n"), "a\rb\r\n");  // bare CR is content
  EXPECT_EQ(CanonicalizeBody(R, "a \rb\r\n"), "a \rb\r\n");
  EXPECT_EQ(CanonicalizeBody(R, "a\nb  \n"), "a\nb \n\r\n");  // bare LF is content
  EXPECT_EQ(CanonicalizeBody(R, "x\r"), "x\r\r\n");
  EXPECT_EQ(CanonicalizeBody(S, "x\r"), "x\r\r\n");
  EXPECT_EQ(CanonicalizeBody(S, "\r\n\r\nx\r\n\r\n"), "\r\n\r\nx\r\n");
  EXPECT_EQ(CanonicalizeBody(S, "  \r\n"), "  \r\n");
  EXPECT_EQ(CanonicalizeBody(R, "\xff\xfe  \xc3\xa9\t\r\n"), "\xff\xfe \xc3\xa9\r\n");
}

// Straightforward whole-string versions of RFC 6376 3.4.3 / 3.4.4, for comparison.
std::string NaiveRelaxed(std::string s) {
  std::string collapsed;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ' ' || s[i] == '\t') {
      while (i + 1 < s.size() && (s[i + 1] == ' ' || s[i + 1] == '\t')) ++i;
      collapsed.push_back(' ');
    } else {
      collapsed.push_back(s[i]);
    }
  }
  std::string no_trailing;
  for (std::size_t i = 0; i < collapsed.size(); ++i) {
    const bool before_crlf =
        i + 2 < collapsed.size() + 0 && collapsed[i + 1] == '\r' && collapsed[i + 2] == '\n';
    const bool at_end = i + 1 == collapsed.size();
    if (collapsed[i] == ' ' && (before_crlf || at_end)) continue;
    no_trailing.push_back(collapsed[i]);
  }
  while (no_trailing.size() >= 2 && no_trailing.compare(no_trailing.size() - 2, 2, "\r\n") == 0) {
    no_trailing.resize(no_trailing.size() - 2);
  }
  if (!no_trailing.empty()) no_trailing.append("\r\n");
  return no_trailing;
}

std::string NaiveSimple(std::string s) {
  while (s.size() >= 2 && s.compare(s.size() - 2, 2, "\r\n") == 0) s.resize(s.size() - 2);
  return s + "\r\n";
}

TEST(DkimCanonicalization, RandomBodiesMatchNaiveReferenceInAnyChunking) {
  std::mt19937 rng(20260128);
  const char alphabet[] = {'a', 'b', ' ', '\t', '\r', '\n', '\r', '\n', 'z', '\xe9'};
  for (int round = 0; round < 3000; ++round) {
    std::string body;
    const int len = static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) body.push_back(alphabet[rng() % sizeof(alphabet)]);
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < body.size(); ++i) {
      if (rng() % 3 == 0) cuts.push_back(i);
    }
    EXPECT_EQ(StreamBody(Canonicalization::kRelaxed, body, cuts), NaiveRelaxed(body))
        << "relaxed, round " << round;
    EXPECT_EQ(StreamBody(Canonicalization::kSimple, body, cuts), NaiveSimple(body))
        << "simple, round " << round;
  }
}

// The one-piece form, spelled out: the prefix, then CRLF when asked.
std::string Assembled(const CanonicalBodyPrefix& p) {
  return std::string(p.text) + (p.crlf ? "\r\n" : "");
}

TEST(DkimCanonicalization, BodyAsPrefixEdgeCases) {
  const auto R = Canonicalization::kRelaxed;
  const auto S = Canonicalization::kSimple;
  // Typical composed text: one piece, trailing empty lines dropped.
  auto p = CanonicalBodyAsPrefix(R, "Hi Ann,\r\n\r\nsee you.\r\n\r\n\r\n");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(Assembled(*p), "Hi Ann,\r\n\r\nsee you.\r\n");
  p = CanonicalBodyAsPrefix(R, "no final line end");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(Assembled(*p), "no final line end\r\n");
  // Empty, or only line ends: relaxed is nothing at all, simple one CRLF.
  for (std::string_view empty : {"", "\r\n", "\r\n\r\n"}) {
    ASSERT_TRUE(CanonicalBodyAsPrefix(R, empty).has_value());
    EXPECT_EQ(Assembled(*CanonicalBodyAsPrefix(R, empty)), "");
    EXPECT_EQ(Assembled(*CanonicalBodyAsPrefix(S, empty)), "\r\n");
  }
  // What relaxed must change goes to the stream, wherever it sits (the
  // 16-byte scan and the byte tail alike).
  const std::string filler(40, 'x');
  std::vector<std::string> bodies;
  for (std::string bad : {"a\tb", "a  b", "a \r\nb", "a\rb"}) {
    for (const std::string& body :
         {bad, filler + bad, bad + filler + "\r\n", filler + bad + filler})
      bodies.push_back(body);
  }
  for (std::string bad_end : {"a ", "a\t", "a\r", "a \r\n\r\n"}) {
    bodies.push_back(bad_end);
    bodies.push_back(filler + bad_end);
  }
  for (const std::string& body : bodies) {
    EXPECT_FALSE(CanonicalBodyAsPrefix(R, body).has_value()) << "'" << body << "'";
    // simple never changes content: always one piece.
    ASSERT_TRUE(CanonicalBodyAsPrefix(S, body).has_value());
    EXPECT_EQ(Assembled(*CanonicalBodyAsPrefix(S, body)), CanonicalizeBody(S, body));
  }
}

TEST(DkimCanonicalization, BodyAsPrefixMatchesTheStreamOnRandomBodies) {
  // Text-like bodies (mostly canonical already) and WSP-heavy ones, short and
  // longer than the 16-byte scan: wherever the one-piece form is offered it
  // equals the streaming canonicalizer's output.
  std::mt19937 rng(20261204);
  const std::vector<std::string> text = {"a", "b", "z", " ", "\r\n", "\r\n", "\xe9", "word"};
  const std::vector<std::string> rough = {"a", " ", "  ", "\t", "\r", "\n", "\r\n", "x"};
  int offered = 0;
  for (int round = 0; round < 6000; ++round) {
    const std::vector<std::string>& alphabet = round % 2 == 0 ? text : rough;
    std::string body;
    const int len = static_cast<int>(rng() % (round % 3 == 0 ? 80 : 12));
    for (int i = 0; i < len; ++i) body += alphabet[rng() % alphabet.size()];
    for (Canonicalization c : {Canonicalization::kRelaxed, Canonicalization::kSimple}) {
      auto p = CanonicalBodyAsPrefix(c, body);
      if (!p.has_value()) continue;
      ++offered;
      EXPECT_EQ(Assembled(*p), CanonicalizeBody(c, body)) << "round " << round;
      EXPECT_EQ(p->text.data(), body.data());  // a view of the body, not a copy
    }
  }
  EXPECT_GT(offered, 6000);  // the fast form is taken for most text-like bodies
}

TEST(DkimParseMessage, SplitsFieldsAndBody) {
  auto m = ParseMessage("From: a@b.c\r\nSubject: x\r\n  folded\r\nTo :z@y.x\r\n\r\nbody\r\n");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->fields.size(), 3u);
  EXPECT_EQ(m->fields[1].name, "Subject");
  EXPECT_EQ(m->fields[1].raw, "Subject: x\r\n  folded\r\n");
  EXPECT_EQ(m->fields[2].name, "To");
  EXPECT_EQ(m->body, "body\r\n");
  auto no_body = ParseMessage("From: a@b.c\r\n");
  ASSERT_TRUE(no_body.ok());
  EXPECT_EQ(no_body->body, "");
}

TEST(DkimParseMessage, ErrorsNameTheLine) {
  auto lf = ParseMessage("From: a@b.c\r\nTo: x@y.z\n\r\n");
  ASSERT_FALSE(lf.ok());
  EXPECT_NE(lf.status().message().find("line 2"), std::string_view::npos) << lf.status();
  auto nocolon = ParseMessage("From: a@b.c\r\nGarbage line\r\n\r\n");
  ASSERT_FALSE(nocolon.ok());
  EXPECT_NE(nocolon.status().message().find("line 2"), std::string_view::npos);
  auto cont = ParseMessage(" folded: first\r\n\r\n");
  EXPECT_FALSE(cont.ok());
  auto unterminated = ParseMessage("From: a@b.c");
  EXPECT_FALSE(unterminated.ok());
}

TEST(DkimParseCanonicalization, Values) {
  Canonicalization h, b;
  ASSERT_TRUE(ParseCanonicalization("relaxed/simple", &h, &b));
  EXPECT_EQ(h, Canonicalization::kRelaxed);
  EXPECT_EQ(b, Canonicalization::kSimple);
  ASSERT_TRUE(ParseCanonicalization("relaxed", &h, &b));
  EXPECT_EQ(b, Canonicalization::kSimple);
  EXPECT_FALSE(ParseCanonicalization("loose/relaxed", &h, &b));
}

}  // namespace
}  // namespace salvo::dkim
