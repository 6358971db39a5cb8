#pragma once
// A small, bounds-checked DNS wire-format reader (RFC 1035 section 4).
//
// c-ares's ares_parse_mx_reply drops TTLs, and the cache needs them, so the
// resolver reads raw answers itself. Sans-I/O: bytes in, records out. Every
// read is bounds-checked and name compression is loop-protected, so a hostile
// or broken server produces an error Status, never a crash.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace salvo::dns {

enum class RecordType : uint16_t {
  kA = 1,
  kCname = 5,
  kSoa = 6,
  kMx = 15,
  kAaaa = 28,
  kOpt = 41,
};

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

// "NOERROR", "SERVFAIL", ... ("RCODE 9" for the rest).
std::string RcodeName(uint8_t rcode);

// One resource record with its RDATA already decoded for the types the MX
// resolver uses. Names are lower-case, without the trailing dot; the root is "".
struct ResourceRecord {
  std::string name;
  uint16_t type = 0;
  uint16_t rclass = 0;
  uint32_t ttl = 0;
  // kMx
  uint16_t preference = 0;
  std::string target;  // kMx exchange, kCname target, kSoa MNAME
  // kA (4 bytes) / kAaaa (16 bytes)
  std::vector<uint8_t> address;
  // kSoa
  uint32_t soa_minimum = 0;
};

struct Message {
  uint16_t id = 0;
  bool response = false;
  bool truncated = false;
  uint8_t rcode = 0;
  std::string question_name;  // first question, lower-case, no trailing dot
  uint16_t question_type = 0;
  std::vector<ResourceRecord> answers;
  std::vector<ResourceRecord> authority;
  // The additional section is not kept: the resolver asks for addresses
  // explicitly so that each one comes with its own TTL.
};

// Parses a complete DNS message. Errors are kInvalidArgument naming the
// offset and what was wrong ("answer 2: name pointer loop at offset 40").
absl::StatusOr<Message> ParseMessage(std::span<const uint8_t> wire);

// Negative-caching TTL from the SOA in the authority section (RFC 2308 section
// 5: min of the SOA record's TTL and its MINIMUM field), if there is one.
bool NegativeTtl(const Message& message, uint32_t* ttl);

}  // namespace salvo::dns
