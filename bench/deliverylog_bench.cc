// The delivery log: what a shard pays per line (formatting into its own
// buffer, hand-over amortized) and how many lines per second the writer
// thread puts on disk with several shards writing at once. Compare with
// the engine's outcome rate (`salvo bench --dkim none`: ~30,000 recipients/s
// on the 2-core reference machine).
//
//   ./build/bench/deliverylog_bench
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "engine/deliverylog/record.h"
#include "engine/deliverylog/writer.h"

namespace {

using salvo::deliverylog::Producer;
using salvo::deliverylog::Record;
using salvo::deliverylog::RecordType;
using salvo::deliverylog::Writer;
using salvo::deliverylog::WriterOptions;

Record Typical(uint64_t i) {
  Record r;
  r.time = absl::FromUnixMillis(1764750696123 + static_cast<int64_t>(i));
  r.type = i % 100 < 92 ? RecordType::kDelivered
                        : (i % 100 < 97 ? RecordType::kDeferred : RecordType::kBounced);
  r.campaign = "Spring sale 2026";
  r.campaign_id = 42;
  r.recipient = "firstname.lastname1234@gmail.com";
  r.domain = "gmail.com";
  r.mx_host = "gmail-smtp-in.l.google.com";
  r.mx_ip = "142.250.102.27";
  r.code = r.type == RecordType::kDelivered ? 250 : 550;
  r.enhanced_code = r.type == RecordType::kDelivered ? "2.0.0" : "5.1.1";
  r.reply = r.type == RecordType::kDelivered
                ? "250 2.0.0 OK  1764750696 a640c23a62f3a-ab7f4a5c1b2si123456766b.123 - gsmtp"
                : "550 5.1.1 The email account that you tried to reach does not exist.";
  r.category = r.type == RecordType::kDelivered ? salvo::smtp::Category::kNone
                                                : salvo::smtp::Category::kBadMailbox;
  r.attempt = 1;
  r.tls_version = "TLSv1.3";
  r.size = 20480;
  r.latency_ms = 812;
  r.source_ip = "203.0.113.7";
  return r;
}

std::string TempPath() {
  char tmpl[] = "/tmp/salvo-dlog-bench-XXXXXX";
  return std::string(mkdtemp(tmpl)) + "/delivery.jsonl";
}

// Formatting one line (what the shard thread pays, without the hand-over).
void BM_FormatLine(benchmark::State& state) {
  Record r = Typical(0);
  std::string out;
  out.reserve(1 << 20);
  size_t bytes = 0;
  for (auto _ : state) {
    out.clear();
    salvo::deliverylog::AppendJsonLine(r, &out);
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_FormatLine);

// A line whose strings need escaping (quotes, control bytes, UTF-8, a byte
// that is not UTF-8) and whose reply is cut: the formatter's slow paths.
void BM_FormatLineEscaped(benchmark::State& state) {
  Record r = Typical(0);
  const std::string reply =
      "550 5.7.1 \"Bl\xC3\xB6"
      "cked\"\tsee\r\nhttps://x.example/\xFF " +
      std::string(3000, 'a');
  r.reply = reply;
  r.campaign = "Fr\xC3\xBChling \"2026\"";
  std::string out;
  out.reserve(1 << 20);
  for (auto _ : state) {
    out.clear();
    salvo::deliverylog::AppendJsonLine(r, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FormatLineEscaped);

// Producer::Write as a shard calls it, with the writer thread running and
// writing to a file: format + hand-over (one lock per 256 KiB batch).
void BM_ProducerWrite(benchmark::State& state) {
  WriterOptions o;
  o.path = TempPath();
  auto w = Writer::Open(o);
  if (!w.ok()) {
    state.SkipWithError("cannot open the log");
    return;
  }
  Producer* p = (*w)->AddProducer();
  uint64_t i = 0;
  for (auto _ : state) {
    p->Write(Typical(i++));
    if ((i & 63) == 0) p->Flush();
  }
  (*w)->Stop();
  if ((*w)->Stats().lines + (*w)->Stats().dropped != i) state.SkipWithError("lines lost");
  state.counters["dropped"] = static_cast<double>((*w)->Stats().dropped);
  state.SetItemsProcessed(state.iterations());
  std::filesystem::remove_all(std::filesystem::path(o.path).parent_path());
}
BENCHMARK(BM_ProducerWrite);

// End to end: N shard threads write 200,000 lines between them; the time
// runs until Stop has put the last one on disk (fdatasync included), with
// size rotation every 64 MiB. items_per_second = lines on disk per second.
void BM_WriterThroughput(benchmark::State& state) {
  const int producers = static_cast<int>(state.range(0));
  constexpr int kLines = 200000;
  uint64_t dropped = 0;
  for (auto _ : state) {
    WriterOptions o;
    o.path = TempPath();
    o.rotate_bytes = 64ull << 20;
    auto w = Writer::Open(o);
    if (!w.ok()) {
      state.SkipWithError("cannot open the log");
      return;
    }
    std::vector<Producer*> ps;
    for (int t = 0; t < producers; ++t) ps.push_back((*w)->AddProducer());
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t)
      threads.emplace_back([&, t] {
        for (int i = t; i < kLines; i += producers) {
          ps[t]->Write(Typical(static_cast<uint64_t>(i)));
          if ((i & 63) == 0) ps[t]->Flush();
        }
      });
    for (std::thread& t : threads) t.join();
    (*w)->Stop();
    dropped += (*w)->Stats().dropped;
    state.PauseTiming();
    std::filesystem::remove_all(std::filesystem::path(o.path).parent_path());
    state.ResumeTiming();
  }
  state.counters["dropped"] = static_cast<double>(dropped);
  state.SetItemsProcessed(state.iterations() * kLines);
}
BENCHMARK(BM_WriterThroughput)
    ->Arg(1)
    ->Arg(2)
    ->Arg(8)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The whole process's CPU per line (the producer's formatting and
// hand-over, and the writer thread's writes and wake-ups) for one producer
// writing 100,000 lines at the given buffer size (KiB): what the delivery
// log adds to an everything-on run's engine CPU.
void BM_WriterProcessCpu(benchmark::State& state) {
  constexpr int kLines = 100000;
  for (auto _ : state) {
    WriterOptions o;
    o.path = TempPath();
    o.buffer_bytes = static_cast<size_t>(state.range(0)) << 10;
    auto w = Writer::Open(o);
    if (!w.ok()) {
      state.SkipWithError("cannot open the log");
      return;
    }
    Producer* p = (*w)->AddProducer();
    for (int i = 0; i < kLines; ++i) {
      p->Write(Typical(static_cast<uint64_t>(i)));
      if ((i & 63) == 0) p->Flush();
    }
    (*w)->Stop();
    state.PauseTiming();
    std::filesystem::remove_all(std::filesystem::path(o.path).parent_path());
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kLines);
}
BENCHMARK(BM_WriterProcessCpu)
    ->Arg(64)
    ->Arg(256)
    ->Arg(1024)
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
