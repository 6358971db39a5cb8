// Message rendering throughput: one copy of a ~20 KB template with 10
// variables per iteration, appended into a reused std::string, on one core.
// Target (issue 7): >= 200,000 copies/s. items_per_second = copies/s.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "engine/message/template.h"
#include "engine/message/unsubscribe.h"
#include "engine/message/verp.h"

namespace salvo::message {
namespace {

const std::vector<std::string> kColumns = {"email",  "first", "last",    "city",  "code", "plan",
                                           "amount", "due",   "manager", "phone", "ref"};

// ~10 KB of body text with the 10 variables spread through it.
std::string Body(bool html) {
  std::string b;
  const char* p_open = html ? "<p>" : "";
  const char* p_close = html ? "</p>\n" : "\n";
  b += std::string(p_open) + "Dear {{first|customer}} {{last}}," + p_close;
  for (int i = 0; i < 60; ++i) {
    b += p_open;
    b += "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua.";
    if (i == 10) b += " Your plan {{plan}} renews on {{due}} for {{amount}}.";
    if (i == 25) b += " Your account manager {{manager}} can be reached at {{phone}}.";
    if (i == 40) b += " Offer code {{code}} is valid in {{city}}.";
    if (i == 55) b += " Reference {{ref}}.";
    b += p_close;
  }
  return b;
}

std::string MultipartTemplate() {
  return "From: {{manager|Acme}} <news@acme.example>\n"
         "Subject: {{first|Hello}}, your {{plan}} renewal\n"
         "MIME-Version: 1.0\n"
         "Content-Type: multipart/alternative; boundary=\"=_salvo_bench\"\n"
         "\n"
         "--=_salvo_bench\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "Content-Transfer-Encoding: quoted-printable\n"
         "\n" +
         Body(false) +
         "--=_salvo_bench\n"
         "Content-Type: text/html; charset=utf-8\n"
         "Content-Transfer-Encoding: base64\n"
         "\n" +
         Body(true) + "--=_salvo_bench--\n";
}

std::string Single8bitTemplate() {
  return "From: Acme <news@acme.example>\n"
         "Subject: {{first|Hello}}, your {{plan}} renewal\n"
         "MIME-Version: 1.0\n"
         "Content-Type: text/html; charset=utf-8\n"
         "Content-Transfer-Encoding: 8bit\n"
         "\n" +
         Body(true) + Body(true);
}

void RenderLoop(benchmark::State& state, const std::string& text, bool unsubscribe,
                bool allow_8bit = true) {
  auto tpl = Template::Parse(text, "bench.eml");
  if (!tpl.ok()) {
    state.SkipWithError(tpl.status().ToString().c_str());
    return;
  }
  auto binding = tpl->Bind(kColumns);
  if (!binding.ok()) {
    state.SkipWithError(binding.status().ToString().c_str());
    return;
  }
  std::vector<std::string_view> row = {"bob.smith@example.com",
                                       "Bob",
                                       "Smith",
                                       "Z\xC3\xBCrich",
                                       "SPRING-2026",
                                       "Premium",
                                       "CHF 129.00",
                                       "1 March 2027",
                                       "Ana P\xC3\xA9rez",
                                       "+41 44 000 00 00",
                                       "R-000123"};
  RenderContext ctx;
  ctx.binding = &*binding;
  ctx.values = row;
  ctx.recipient = row[0];
  ctx.campaign_id = "spring-2026";
  ctx.recipient_id = "123456";
  ctx.sender_domain = "acme.example";
  ctx.date = absl::FromUnixSeconds(1'795'000'000);
  if (unsubscribe) {
    ctx.unsubscribe.https_base = "https://u.acme.example/unsubscribe";
    ctx.unsubscribe.mailto = "unsubscribe@acme.example";
    ctx.unsubscribe.secret = "bench-secret";
  }
  ctx.feedback_id = "spring-2026:acme:bulk";
  ctx.allow_8bit = allow_8bit;
  std::string out;
  size_t bytes = 0;
  for (auto _ : state) {
    out.clear();
    auto r = tpl->Render(ctx, &out);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
    bytes += out.size();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["copy_bytes"] = static_cast<double>(out.size());
}

void BM_RenderMultipartQpBase64(benchmark::State& state) {
  RenderLoop(state, MultipartTemplate(), true);
}
void BM_RenderMultipartNoUnsubscribe(benchmark::State& state) {
  RenderLoop(state, MultipartTemplate(), false);
}
void BM_RenderSingle8bit(benchmark::State& state) { RenderLoop(state, Single8bitTemplate(), true); }
// The same 8bit template for a server without 8BITMIME (or for DKIM-safe
// 7-bit output): the part goes out as quoted-printable from pre-encoded text.
void BM_RenderSingle8bitAsQp(benchmark::State& state) {
  RenderLoop(state, Single8bitTemplate(), true, /*allow_8bit=*/false);
}
void BM_UnsubscribeToken(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        MakeUnsubscribeToken("bench-secret", "spring-2026", "bob.smith@example.com"));
  }
  state.SetItemsProcessed(state.iterations());
}
// One recipient's VERP return path (--everything-on composes one per copy).
void BM_VerpAddress(benchmark::State& state) {
  VerpSettings settings{"bounces.bench.example", "bounces",
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
  uint64_t recipient = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(MakeVerpAddress(settings, 7, recipient++, "bob.smith@example.com"));
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_Parse(benchmark::State& state) {
  std::string text = MultipartTemplate();
  for (auto _ : state) benchmark::DoNotOptimize(Template::Parse(text, "bench.eml").ok());
}

BENCHMARK(BM_RenderMultipartQpBase64);
BENCHMARK(BM_RenderMultipartNoUnsubscribe);
BENCHMARK(BM_RenderSingle8bit);
BENCHMARK(BM_RenderSingle8bitAsQp);
BENCHMARK(BM_UnsubscribeToken);
BENCHMARK(BM_VerpAddress);
BENCHMARK(BM_Parse);

}  // namespace
}  // namespace salvo::message

BENCHMARK_MAIN();
