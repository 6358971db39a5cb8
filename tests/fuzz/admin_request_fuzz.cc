// libFuzzer target: arbitrary request lines on the admin socket, through the
// same path the AdminServer takes (JSON parse, then HandleAdminRequest on a
// real RocksDB spool in a temp dir). Invariants: never crashes or throws (a
// wrong type, a missing field or a huge number gets ok=false with a code and
// an error), and every response is a JSON object carrying "ok".
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "queue/admin_server.h"
#include "queue/spool.h"

namespace {
salvo::queue::Spool* TheSpool() {
  static salvo::queue::Spool* spool = [] {
    char dir[] = "/tmp/salvo-admin-fuzz-XXXXXX";
    if (mkdtemp(dir) == nullptr) abort();
    static const std::string path = dir;
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    });
    salvo::queue::Spool::Options o;
    o.rng_seed = 1;
    auto s = salvo::queue::Spool::Open(dir, o);
    if (!s.ok()) abort();
    return s->release();  // lives for the whole fuzzing process
  }();
  return spool;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string line(reinterpret_cast<const char*>(data), size);
  nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return 0;
  // File-reading ops would read whatever path the input names: keep the
  // fuzzer on the protocol, not on the file system.
  if (request.is_object() && request.contains("op") && request["op"].is_string()) {
    const std::string op = request["op"].get<std::string>();
    if (op == "load" || op == "suppression_import") return 0;
  }
  salvo::queue::AdminOptions options;
  nlohmann::json response = salvo::queue::HandleAdminRequest(*TheSpool(), request, options);
  if (!response.is_object() || !response.contains("ok") || !response["ok"].is_boolean()) abort();
  if (!response["ok"].get<bool>() &&
      (!response.contains("error") || !response["error"].is_string()))
    abort();
  (void)response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
