// libFuzzer target: arbitrary bytes as a received message through
// bounce::ParseReport and Classify with the shipped rules. Invariants: never
// crashes or throws (GMime, RE2, nlohmann_json), the bounds hold (recipients,
// kept original headers), and classification follows the status class.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/bounce/report.h"
#include "engine/shaping/shaping.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const salvo::smtp::Classifier* rules =
      salvo::shaping::BuildClassifier({}).value().release();
  salvo::bounce::ParseLimits limits;
  limits.max_mime_parts = 4 + data[0] % 64;
  limits.max_recipients = 1 + data[0] % 7;
  limits.max_original_headers = 64 + data[0] * 8;
  std::string_view message(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<salvo::bounce::Report> r = salvo::bounce::ParseReport(message, limits);
  if (!r.ok()) return 0;
  // An ARF report adds its one complained-of address to the bounded list.
  if (r->recipients.size() > limits.max_recipients + 1) abort();
  if (r->original_headers.size() > limits.max_original_headers) abort();
  salvo::bounce::Classify(&*r, rules);
  for (const salvo::bounce::FailedRecipient& fr : r->recipients) {
    const bool classified = r->kind == salvo::bounce::ReportKind::kBounce ||
                            r->kind == salvo::bounce::ReportKind::kDelayed;
    if (classified != (fr.category != salvo::smtp::Category::kNone)) abort();
    if (fr.hard && (fr.action == "delayed" || (!fr.status.empty() && fr.status[0] != '5'))) abort();
  }
  (void)salvo::bounce::ReportKindName(r->kind);
  return 0;
}
