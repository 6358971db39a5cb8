// libFuzzer target: arbitrary bytes as a campaign template (engine/message):
// parse it, and when it parses, bind it to a CSV header and render a copy
// with hostile recipient values. Invariants: never crashes; a rendered copy
// has CRLF line ends only, a header block ending in an empty line, and no
// header added by the recipient's values (the values contain CR, LF and
// "Bcc:" lines, which must never reach the header block as a new header).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "engine/message/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = salvo::message::Template::Parse(text, "fuzz.eml");
  if (!t.ok()) {
    if (t.status().message().find("fuzz.eml") == std::string_view::npos) abort();
    return 0;
  }
  // Every variable gets a column, plus one the template does not use.
  std::vector<std::string> columns = {"email"};
  for (const std::string& v : t->variables()) columns.push_back(v);
  auto binding = t->Bind(columns);
  if (!binding.ok()) return 0;  // e.g. a variable named like a reserved column
  const std::string hostile = "x\r\nBcc: victim@evil.example\r\n\r\n--b\n.\r\n\xff\xfe";
  std::vector<std::string_view> values(columns.size(), hostile);
  values[0] = "rcpt@example.org";
  salvo::message::RenderContext ctx;
  ctx.binding = &*binding;
  ctx.values = values;
  ctx.recipient = "rcpt@example.org";
  ctx.campaign_id = "7";
  ctx.recipient_id = "42";
  ctx.sender_domain = "example.com";
  ctx.from_address = "news@example.com";
  ctx.date = absl::FromUnixSeconds(1700000000);
  ctx.message_id_nonce = 1;
  std::string out;
  auto r = t->Render(ctx, &out);
  if (!r.ok()) {
    if (!out.empty()) abort();  // a failed render leaves nothing behind
    return 0;
  }
  // CRLF only.
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r')) abort();
    if (out[i] == '\r' && (i + 1 == out.size() || out[i + 1] != '\n')) abort();
  }
  size_t end = out.find("\r\n\r\n");
  if (end == std::string::npos) abort();
  std::string_view headers(out.data(), end + 2);
  // The recipient values never become a header line of their own.
  for (size_t pos = 0; pos < headers.size();) {
    size_t eol = headers.find("\r\n", pos);
    std::string_view line = headers.substr(pos, eol - pos);
    if (line.starts_with("Bcc: victim@evil.example")) abort();
    pos = eol + 2;
  }
  return 0;
}
