#pragma once
// FNV-1a, 64 bits: a specified hash, the same on every machine, build and
// version, for what must agree across processes and restarts (a site's
// owner shard, a recipient's fleet node, the load's duplicate check). Not for
// hash tables (abseil's hash is faster and seeded).
#include <cstdint>
#include <string_view>

namespace salvo {

constexpr uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace salvo
