#pragma once
// Hand-builds DNS wire messages for parser tests (no compression unless a
// test writes a pointer itself).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace salvo::dns::testing {

class WireBuilder {
 public:
  WireBuilder& U8(uint8_t v) {
    bytes.push_back(v);
    return *this;
  }
  WireBuilder& U16(uint16_t v) {
    bytes.push_back(static_cast<uint8_t>(v >> 8));
    bytes.push_back(static_cast<uint8_t>(v));
    return *this;
  }
  WireBuilder& U32(uint32_t v) {
    U16(static_cast<uint16_t>(v >> 16));
    return U16(static_cast<uint16_t>(v));
  }
  // "a.b.c" -> 1a1b1c0; "" -> the root.
  WireBuilder& Name(std::string_view dotted) {
    size_t start = 0;
    while (start < dotted.size()) {
      size_t dot = dotted.find('.', start);
      if (dot == std::string_view::npos) dot = dotted.size();
      U8(static_cast<uint8_t>(dot - start));
      for (size_t i = start; i < dot; ++i) U8(static_cast<uint8_t>(dotted[i]));
      start = dot + 1;
    }
    return U8(0);
  }
  // Labels then a compression pointer instead of the terminating root.
  WireBuilder& NameWithPointer(std::string_view labels, uint16_t offset) {
    Name(labels);
    bytes.pop_back();
    return U16(static_cast<uint16_t>(0xC000 | offset));
  }
  WireBuilder& Header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
                      uint16_t ar) {
    return U16(id).U16(flags).U16(qd).U16(an).U16(ns).U16(ar);
  }
  WireBuilder& Question(std::string_view name, uint16_t type) {
    return Name(name).U16(type).U16(1);
  }
  // Record header up to and including RDLENGTH.
  WireBuilder& RecordHeader(std::string_view name, uint16_t type, uint32_t ttl, uint16_t rdlength) {
    return Name(name).U16(type).U16(1).U32(ttl).U16(rdlength);
  }
  WireBuilder& Mx(std::string_view name, uint32_t ttl, uint16_t pref, std::string_view target) {
    const uint16_t len = static_cast<uint16_t>(2 + EncodedLength(target));
    return RecordHeader(name, 15, ttl, len).U16(pref).Name(target);
  }
  WireBuilder& A(std::string_view name, uint32_t ttl, uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    return RecordHeader(name, 1, ttl, 4).U8(a).U8(b).U8(c).U8(d);
  }
  WireBuilder& Soa(std::string_view name, uint32_t ttl, uint32_t minimum) {
    const uint16_t len =
        static_cast<uint16_t>(EncodedLength("ns.example") + EncodedLength("h.example") + 20);
    return RecordHeader(name, 6, ttl, len)
        .Name("ns.example")
        .Name("h.example")
        .U32(1)
        .U32(3600)
        .U32(600)
        .U32(86400)
        .U32(minimum);
  }

  static size_t EncodedLength(std::string_view dotted) {
    return dotted.empty() ? 1 : dotted.size() + 2;
  }

  std::vector<uint8_t> bytes;
};

// Response flags: QR=1, RD=1, RA=1, rcode.
inline uint16_t ResponseFlags(uint8_t rcode) { return static_cast<uint16_t>(0x8180 | rcode); }

}  // namespace salvo::dns::testing
