// libFuzzer target: arbitrary bytes as a DNS answer through the wire parser
// the MX resolver trusts (engine/dns/message). Invariants: never crashes or
// reads out of bounds (ASan), decoded names stay within the RFC 1035 limit,
// addresses have their type's length, and NegativeTtl never crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "engine/dns/message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = salvo::dns::ParseMessage(std::span<const uint8_t>(data, size));
  if (!m.ok()) {
    if (m.status().message().empty()) abort();  // errors say what and where
    return 0;
  }
  if (m->question_name.size() > 255) abort();
  for (const auto* section : {&m->answers, &m->authority}) {
    for (const salvo::dns::ResourceRecord& rr : *section) {
      if (rr.name.size() > 255 || rr.target.size() > 255) abort();
      if (rr.type == 1 && rr.address.size() != 4) abort();    // A
      if (rr.type == 28 && rr.address.size() != 16) abort();  // AAAA
    }
  }
  uint32_t ttl = 0;
  (void)salvo::dns::NegativeTtl(*m, &ttl);
  return 0;
}
