// libFuzzer target: arbitrary bytes as a recipient CSV file through the
// streaming RFC 4180 reader the campaign loader uses (queue/csv). Invariants:
// never crashes, every error names FILE:LINE, records stay within the 1 MiB
// bound, line numbers never go backwards, the reader ends.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "queue/csv.h"

namespace {
std::string ScratchPath() {
  // One file per fuzzing process, rewritten for every input (in /dev/shm
  // when there is one: a disk-backed /tmp costs most of each run).
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                                  "/salvo-csv-fuzz-" + std::to_string(getpid()) + ".csv";
  static const struct Cleanup {
    ~Cleanup() { unlink(path.c_str()); }
  } cleanup;
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ScratchPath();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) abort();
  std::fclose(f);
  auto reader = salvo::queue::CsvReader::Open(path);
  if (!reader.ok()) {  // content errors found at open (a broken BOM) also name FILE:LINE
    if (reader.status().message().find(path + ":") != 0) abort();
    return 0;
  }
  std::vector<std::string> fields;
  uint64_t last_line = 0;
  for (size_t records = 0; records <= size + 1; ++records) {
    auto more = (*reader)->Next(&fields);
    if (!more.ok()) {
      if (more.status().message().find(path + ":") != 0) abort();  // FILE:LINE: what
      break;
    }
    if (!*more) break;
    size_t bytes = 0;
    for (const std::string& field : fields) bytes += field.size();
    if (bytes > salvo::queue::CsvReader::kMaxRecordBytes) abort();
    if ((*reader)->line() < last_line) abort();
    last_line = (*reader)->line();
  }
  return 0;
}
