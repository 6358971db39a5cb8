// Shaping on the hot path: classifying a reply with the shipped rules (the
// issue 13 target: under 2 us per reply), and the per-message token and
// connection-slot operations of a shaping key (shared atomics).
//   build/bench/shaping_bench
#include <benchmark/benchmark.h>

#include <fstream>
#include <string>
#include <vector>

#include "engine/shaping/shaping.h"
#include "engine/shaping/throttle.h"
#include "engine/smtp/classifier.h"
#include "engine/smtp/failure_scope.h"
#include "engine/smtp/reply.h"

namespace {

using namespace salvo;

// The reply lines of the test table (real, published replies).
std::vector<smtp::Reply> Replies() {
  std::vector<smtp::Reply> out;
  std::ifstream in(std::string(SALVO_SOURCE_DIR) + "/tests/data/smtp/bounce-replies.tsv");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    line = line.substr(0, line.find('\t'));
    smtp::Reply r;
    r.code = std::stoi(line.substr(0, 3));
    std::string_view text = line.size() > 4 ? std::string_view(line).substr(4) : "";
    r.enhanced = std::string(smtp::SplitEnhancedCode(&text));
    r.text = std::string(text);
    out.push_back(std::move(r));
  }
  return out;
}

// Rules matched against the reply line, as failure_scope does per reply.
void BM_ClassifyReply(benchmark::State& state) {
  auto c = shaping::BuildClassifier({});
  if (!c.ok()) {
    state.SkipWithError("rules did not compile");
    return;
  }
  const std::vector<smtp::Reply> replies = Replies();
  std::vector<std::string> lines;
  for (const smtp::Reply& r : replies) lines.push_back(r.ToString());
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize((*c)->Match(lines[i]));
    if (++i == lines.size()) i = 0;
  }
  state.counters["rules"] = static_cast<double>((*c)->rules().size());
}
BENCHMARK(BM_ClassifyReply);

// The whole decision for one reply: OutcomeForReply with the rules installed.
void BM_OutcomeForReplyWithRules(benchmark::State& state) {
  auto c = shaping::BuildClassifier({});
  if (!c.ok()) {
    state.SkipWithError("rules did not compile");
    return;
  }
  smtp::InstallClassifier(*std::move(c));
  const std::vector<smtp::Reply> replies = Replies();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(smtp::OutcomeForReply(replies[i], smtp::Phase::kRcpt, "mx"));
    if (++i == replies.size()) i = 0;
  }
  smtp::InstallClassifier(nullptr);
}
BENCHMARK(BM_OutcomeForReplyWithRules);

// A message token from a key with a rate that does not bind.
void BM_TakeMessageToken(benchmark::State& state) {
  shaping::Rate r;
  r.per_second = 1e7;
  shaping::KeyState k("provider.p", 0, r, shaping::Rate{});
  int64_t now = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(k.TakeMessage(now));
    now += 1000;
  }
}
BENCHMARK(BM_TakeMessageToken)->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
