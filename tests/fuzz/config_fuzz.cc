// libFuzzer target: arbitrary bytes as the `salvo run` TOML configuration
// (engine/config). Invariants: never crashes or throws out of ParseConfig
// (toml++ exceptions stay inside), every error names the source, and an
// accepted configuration has values within the documented bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = salvo::config::ParseConfig(text, "fuzz.toml");
  if (!c.ok()) {
    if (c.status().message().find("fuzz.toml") == std::string_view::npos) abort();
    return 0;
  }
  if (c->EffectiveShards() < 1) abort();
  if (c->delivery.connections_per_site < 1 || c->delivery.messages_per_connection < 1) abort();
  if (c->delivery.in_flight_limit < 1 || c->queue.lease_batch < 1) abort();
  (void)c->AdminSocketPath();
  return 0;
}
