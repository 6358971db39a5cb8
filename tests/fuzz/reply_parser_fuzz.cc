// libFuzzer target: arbitrary server bytes, split into arbitrary reads, through
// the reply parser. Invariants: never crashes, memory stays bounded, every
// reply it produces has a code in 200..599.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/smtp/reply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  salvo::smtp::ReplyParserLimits limits;
  limits.max_line_bytes = 512 + data[0] * 16;
  limits.max_lines = 1 + data[0] % 64;
  salvo::smtp::ReplyParser parser(limits);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t step = 1 + data[0] % 37;
  salvo::smtp::Reply r;
  while (!in.empty()) {
    std::string_view chunk = in.substr(0, step);
    in.remove_prefix(chunk.size());
    parser.Feed(chunk);
    while (parser.Next(&r)) {
      if (r.code < 200 || r.code > 599) abort();
      (void)r.ToString();
    }
    if (parser.buffered_bytes() > limits.max_line_bytes + step + 1 && parser.error().ok()) abort();
    step = 1 + (step * 7 + 3) % 257;
  }
  return 0;
}
