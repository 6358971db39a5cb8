#include "engine/dns/message.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/dns/wire_builder.h"

namespace salvo::dns {
namespace {

using testing::ResponseFlags;
using testing::WireBuilder;

std::vector<uint8_t> MxAnswer() {
  WireBuilder w;
  w.Header(0x1234, ResponseFlags(0), 1, 2, 0, 0).Question("Example.COM", 15);
  // Answer 1: owner is a pointer to the question name at offset 12.
  w.U16(0xC00C).U16(15).U16(1).U32(300).U16(2 + 4 + 2);
  w.U16(10).NameWithPointer("mx1", 12);  // mx1.example.com
  // Answer 2: null MX style target, explicit name.
  w.Mx("example.com", 120, 20, "MX2.Example.net");
  return w.bytes;
}

TEST(DnsMessageTest, ParsesMxWithCompressionAndLowercases) {
  const std::vector<uint8_t> wire = MxAnswer();
  absl::StatusOr<Message> m = ParseMessage(wire);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->id, 0x1234);
  EXPECT_TRUE(m->response);
  EXPECT_EQ(m->rcode, 0);
  EXPECT_EQ(m->question_name, "example.com");
  EXPECT_EQ(m->question_type, 15);
  ASSERT_EQ(m->answers.size(), 2u);
  EXPECT_EQ(m->answers[0].name, "example.com");
  EXPECT_EQ(m->answers[0].ttl, 300u);
  EXPECT_EQ(m->answers[0].preference, 10);
  EXPECT_EQ(m->answers[0].target, "mx1.example.com");
  EXPECT_EQ(m->answers[1].ttl, 120u);
  EXPECT_EQ(m->answers[1].preference, 20);
  EXPECT_EQ(m->answers[1].target, "mx2.example.net");
}

TEST(DnsMessageTest, NullMxTargetIsEmpty) {
  WireBuilder w;
  w.Header(1, ResponseFlags(0), 1, 1, 0, 0).Question("nullmx.example", 15);
  w.Mx("nullmx.example", 3600, 0, "");
  absl::StatusOr<Message> m = ParseMessage(w.bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].preference, 0);
  EXPECT_EQ(m->answers[0].target, "");
}

TEST(DnsMessageTest, NxDomainNegativeTtlIsMinOfSoaTtlAndMinimum) {
  WireBuilder w;
  w.Header(1, ResponseFlags(3), 1, 0, 1, 0).Question("nope.example", 15);
  w.Soa("example", 900, 30);
  absl::StatusOr<Message> m = ParseMessage(w.bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->rcode, static_cast<uint8_t>(Rcode::kNxDomain));
  EXPECT_EQ(RcodeName(m->rcode), "NXDOMAIN");
  uint32_t ttl = 0;
  ASSERT_TRUE(NegativeTtl(*m, &ttl));
  EXPECT_EQ(ttl, 30u);

  WireBuilder w2;
  w2.Header(1, ResponseFlags(3), 1, 0, 1, 0).Question("nope.example", 15);
  w2.Soa("example", 10, 3600);
  m = ParseMessage(w2.bytes);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(NegativeTtl(*m, &ttl));
  EXPECT_EQ(ttl, 10u);
}

TEST(DnsMessageTest, NoSoaMeansNoNegativeTtl) {
  WireBuilder w;
  w.Header(1, ResponseFlags(3), 1, 0, 0, 0).Question("nope.example", 15);
  absl::StatusOr<Message> m = ParseMessage(w.bytes);
  ASSERT_TRUE(m.ok());
  uint32_t ttl = 0;
  EXPECT_FALSE(NegativeTtl(*m, &ttl));
}

TEST(DnsMessageTest, AddressRecordsAndTtlTopBit) {
  WireBuilder w;
  w.Header(1, ResponseFlags(0), 1, 2, 0, 0).Question("mx.example", 1);
  w.A("mx.example", 0x80000000u, 127, 0, 0, 7);
  w.RecordHeader("mx.example", 28, 60, 16);
  for (int i = 0; i < 15; ++i) w.U8(0);
  w.U8(1);
  absl::StatusOr<Message> m = ParseMessage(w.bytes);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->answers.size(), 2u);
  EXPECT_EQ(m->answers[0].ttl, 0u);  // RFC 2181 8
  EXPECT_EQ(m->answers[0].address, (std::vector<uint8_t>{127, 0, 0, 7}));
  EXPECT_EQ(m->answers[1].address.size(), 16u);
  EXPECT_EQ(m->answers[1].address[15], 1);
}

TEST(DnsMessageTest, RejectsWrongAddressLength) {
  WireBuilder w;
  w.Header(1, ResponseFlags(0), 1, 1, 0, 0).Question("mx.example", 1);
  w.RecordHeader("mx.example", 1, 60, 5).U8(1).U8(2).U8(3).U8(4).U8(5);
  absl::StatusOr<Message> m = ParseMessage(w.bytes);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("answer 1"), absl::string_view::npos) << m.status();
  EXPECT_NE(m.status().message().find("expected 4"), absl::string_view::npos) << m.status();
}

TEST(DnsMessageTest, RejectsPointerLoopsAndForwardPointers) {
  // A question name that points at itself.
  WireBuilder w;
  w.Header(1, ResponseFlags(0), 1, 0, 0, 0).U16(0xC00C).U16(15).U16(1);
  absl::StatusOr<Message> m = ParseMessage(w.bytes);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("pointer"), absl::string_view::npos) << m.status();

  // A pointer past the end of the message.
  WireBuilder w2;
  w2.Header(1, ResponseFlags(0), 1, 0, 0, 0).U16(0xC0FF).U16(15).U16(1);
  EXPECT_FALSE(ParseMessage(w2.bytes).ok());
}

TEST(DnsMessageTest, RejectsShortHeaderAndBadLabels) {
  std::vector<uint8_t> tiny = {0, 1, 2};
  absl::StatusOr<Message> m = ParseMessage(tiny);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("12-byte header"), absl::string_view::npos);

  WireBuilder w;
  w.Header(1, ResponseFlags(0), 1, 0, 0, 0).U8(3).U8('a').U8(' ').U8('b').U8(0).U16(15).U16(1);
  m = ParseMessage(w.bytes);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("question 1"), absl::string_view::npos) << m.status();
}

TEST(DnsMessageTest, EveryTruncationIsAnErrorNotACrash) {
  const std::vector<uint8_t> wire = MxAnswer();
  ASSERT_TRUE(ParseMessage(wire).ok());
  for (size_t len = 0; len < wire.size(); ++len) {
    std::span<const uint8_t> prefix(wire.data(), len);
    EXPECT_FALSE(ParseMessage(prefix).ok()) << "prefix of " << len << " bytes parsed";
  }
}

TEST(DnsMessageTest, RandomCorruptionNeverCrashes) {
  const std::vector<uint8_t> wire = MxAnswer();
  std::mt19937 rng(42);
  int parsed = 0;
  for (int i = 0; i < 5000; ++i) {
    std::vector<uint8_t> bad = wire;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    if (ParseMessage(bad).ok()) ++parsed;
  }
  // Some corruptions (e.g. in the id or a TTL) are still valid messages.
  EXPECT_GT(parsed, 0);
  EXPECT_LT(parsed, 5000);
}

}  // namespace
}  // namespace salvo::dns
