// Queue benchmarks (report, don't assert). Sizes come from the environment so
// the ctest smoke run stays small:
//   SALVO_QUEUE_BENCH_N=1000000 build/bench/queue_bench      (default 20000)
// Figures: CSV load time (rows/s), lease+complete transitions/s, the same
// through one single-domain campaign slice by slice (the cost per recipient
// must stay flat as completed recipients pile up), restart (Spool::Open) time
// with N queued, RSS after load.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/common/clock.h"
#include "queue/spool.h"

namespace {

using salvo::queue::CampaignSpec;
using salvo::queue::Completion;
using salvo::queue::DomainBatch;
using salvo::queue::LeaseLimits;
using salvo::queue::Spool;

size_t BenchSize() {
  const char* n = std::getenv("SALVO_QUEUE_BENCH_N");
  return n != nullptr ? static_cast<size_t>(std::strtoull(n, nullptr, 10)) : 20000;
}

std::string BenchDir() {
  static std::string dir = [] {
    std::string d = "/tmp/salvo-queue-bench-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Removes the folder at exit. The path is rebuilt here: BenchDir()'s static
// string is constructed after this object, so it is destroyed before it.
struct Cleanup {
  ~Cleanup() {
    std::error_code ec;
    std::filesystem::remove_all("/tmp/salvo-queue-bench-" + std::to_string(::getpid()), ec);
  }
} cleanup;

// N rows over `domains` domains, with two variable columns.
std::string MakeCsv(size_t n, size_t domains = 1000) {
  std::string path =
      BenchDir() + "/list-" + std::to_string(n) + "-" + std::to_string(domains) + ".csv";
  if (std::filesystem::exists(path)) return path;
  std::ofstream out(path);
  out << "email,first_name,coupon\n";
  for (size_t i = 0; i < n; ++i)
    out << "user" << i << "@domain" << (i % domains) << ".example,Name" << i << ",C"
        << (i * 7919 % 100000) << "\n";
  return path;
}

CampaignSpec Spec(size_t n, size_t domains = 1000) {
  std::string tpl = BenchDir() + "/t.eml";
  std::ofstream(tpl) << "From: a@example.com\r\nSubject: Hi {{first_name}}\r\n\r\n{{coupon}}\r\n";
  CampaignSpec spec;
  spec.name = "bench";
  spec.from = "news@example.com";
  spec.template_path = tpl;
  spec.recipients_path = MakeCsv(n, domains);
  return spec;
}

long StatusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0)
      return std::strtol(line.c_str() + std::strlen(field), nullptr, 10);
  return 0;
}
long PeakRssKb() { return StatusKb("VmHWM:"); }

long RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

std::unique_ptr<Spool> Open(const std::string& dir) {
  auto s = Spool::Open(dir, {});
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(s.status().message()).c_str());
    std::abort();
  }
  return std::move(*s);
}

void BM_LoadCsv(benchmark::State& state) {
  const size_t n = BenchSize();
  CampaignSpec spec = Spec(n);
  int run = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::string dir = BenchDir() + "/load-" + std::to_string(run++);
    auto spool = Open(dir);
    state.ResumeTiming();
    auto r = spool->LoadCampaign(spec, {});
    if (!r.ok() || r->accepted != n) state.SkipWithError("load failed");
    state.PauseTiming();
    state.counters["rss_mb"] = static_cast<double>(RssKb()) / 1024;
    spool.reset();
    std::filesystem::remove_all(dir);
    state.ResumeTiming();
  }
  state.counters["rows"] = static_cast<double>(n);
  state.counters["rows_per_s"] =
      benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_LoadCsv)->Unit(benchmark::kMillisecond)->UseRealTime();

// Every leased recipient as delivered with a 250.
void DeliveredCompletions(const std::vector<DomainBatch>& batches, std::vector<Completion>* done) {
  salvo::smtp::Outcome ok;
  ok.disposition = salvo::smtp::Disposition::kDelivered;
  ok.reply = {250, "2.0.0", "ok"};
  done->clear();
  for (const auto& b : batches)
    for (const auto& r : b.recipients) done->push_back({r.campaign, r.id, ok});
}

// Lease in batches of 1000 (100 per domain), complete them all in one batch.
// One lease and one completion are two recipient transitions.
void BM_LeaseComplete(benchmark::State& state) {
  const size_t n = BenchSize();
  std::string dir = BenchDir() + "/lease";
  std::filesystem::remove_all(dir);
  auto spool = Open(dir);
  if (!spool->LoadCampaign(Spec(n), {}).ok()) {
    state.SkipWithError("load failed");
    return;
  }
  LeaseLimits limits;
  limits.max_per_domain = 100;
  limits.max_total = 1000;
  size_t transitions = 0;
  std::vector<Completion> done;
  const absl::Time now = absl::Now() + absl::Hours(1);
  for (auto _ : state) {
    auto batches = spool->LeaseDue(now, limits);
    if (!batches.ok()) {
      state.SkipWithError("lease failed");
      break;
    }
    DeliveredCompletions(*batches, &done);
    if (done.empty()) {
      // Drained: load another campaign outside the timing.
      state.PauseTiming();
      if (!spool->LoadCampaign(Spec(n), {}).ok()) state.SkipWithError("reload failed");
      state.ResumeTiming();
      continue;
    }
    if (!spool->CompleteBatch(done).ok()) state.SkipWithError("complete failed");
    transitions += 2 * done.size();
  }
  state.counters["transitions_per_s"] =
      benchmark::Counter(static_cast<double>(transitions), benchmark::Counter::kIsRate);
  spool.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_LeaseComplete)->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(2.0);

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// "01".."10": the counter suffix of tenth `i` (0-based).
std::string TenthLabel(size_t i) { return (i + 1 < 10 ? "0" : "") + std::to_string(i + 1); }

// CPU per recipient in the last tenth over the first (1 = flat), when both
// tenths completed something.
void SetLastOverFirst(benchmark::State& state, const std::vector<double>& cpu,
                      const std::vector<size_t>& count) {
  if (count.front() == 0 || count.back() == 0) return;
  state.counters["cpu_last_over_first"] = (cpu.back() / static_cast<double>(count.back())) /
                                          (cpu.front() / static_cast<double>(count.front()));
}

// One campaign of N recipients, all to one domain (the gmail share of a real
// list), leased 1000 at a time and completed, to the end. Reported per tenth
// of the campaign: transitions/s (wall) and CPU µs per recipient (this
// thread: lease + complete). Completed recipients leave delete tombstones in
// the schedule; if leasing walked them, the last tenths would be far slower
// than the first (they were: O(n^2) over a campaign).
void BM_LeaseCompleteProgression(benchmark::State& state) {
  const size_t n = BenchSize();
  constexpr size_t kSlices = 10;
  std::string dir = BenchDir() + "/progression";
  LeaseLimits limits;
  limits.max_per_domain = 1000;
  limits.max_total = 1000;
  const absl::Time now = absl::Now() + absl::Hours(1);
  std::vector<double> wall(kSlices, 0), cpu(kSlices, 0), lease_cpu(kSlices, 0);
  std::vector<size_t> count(kSlices, 0);
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::remove_all(dir);
    auto spool = Open(dir);
    if (!spool->LoadCampaign(Spec(n, 1), {}).ok()) {
      state.SkipWithError("load failed");
      break;
    }
    state.ResumeTiming();
    size_t completed = 0;
    std::vector<Completion> done;
    while (completed < n) {
      const size_t slice = std::min(kSlices - 1, completed * kSlices / n);
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = ThreadCpuSeconds();
      auto batches = spool->LeaseDue(now, limits);
      lease_cpu[slice] += ThreadCpuSeconds() - c0;
      if (!batches.ok()) {
        state.SkipWithError("lease failed");
        break;
      }
      DeliveredCompletions(*batches, &done);
      if (done.empty()) {
        state.SkipWithError("nothing leased before the end of the campaign");
        break;
      }
      if (!spool->CompleteBatch(done).ok()) state.SkipWithError("complete failed");
      cpu[slice] += ThreadCpuSeconds() - c0;
      wall[slice] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      count[slice] += done.size();
      completed += done.size();
    }
    state.PauseTiming();
    spool.reset();
    std::filesystem::remove_all(dir);
    state.ResumeTiming();
  }
  for (size_t i = 0; i < kSlices; ++i) {
    if (count[i] == 0) continue;
    const std::string tenth = TenthLabel(i);
    state.counters["tps_tenth_" + tenth] = 2.0 * static_cast<double>(count[i]) / wall[i];
    state.counters["cpu_us_per_rcpt_tenth_" + tenth] = 1e6 * cpu[i] / static_cast<double>(count[i]);
  }
  SetLastOverFirst(state, cpu, count);
  if (count[0] > 0 && count[kSlices - 1] > 0) {
    // The LeaseDue part alone (the rest is CompleteBatch), first and last tenth.
    state.counters["lease_cpu_us_per_rcpt_tenth_01"] =
        1e6 * lease_cpu[0] / static_cast<double>(count[0]);
    state.counters["lease_cpu_us_per_rcpt_tenth_10"] =
        1e6 * lease_cpu[kSlices - 1] / static_cast<double>(count[kSlices - 1]);
  }
  state.counters["recipients"] = static_cast<double>(n);
}
BENCHMARK(BM_LeaseCompleteProgression)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

// The engine's feeder pattern (salvo bench --dkim none): N recipients over
// 100 domains (30% domain0, 20% domain1, 15% domain2, the rest spread),
// leased 200 at a time while fewer than 2,000 are in flight, completed as
// delivered 64 at a time in an order unrelated to the keys (results come
// back from many connections). Reports the process's CPU µs per recipient
// over lease + complete, RocksDB's background flushes and compactions
// included (they run on the engine's CPUs too), and this thread's alone.
void BM_FeederPattern(benchmark::State& state) {
  const size_t n = BenchSize();
  std::string csv = BenchDir() + "/feeder-" + std::to_string(n) + ".csv";
  if (!std::filesystem::exists(csv)) {
    std::ofstream out(csv);
    out << "email,first_name,coupon\n";
    for (size_t i = 0; i < n; ++i) {
      const size_t h = (i * 2654435761u) % 100;
      const size_t d = h < 30 ? 0 : h < 50 ? 1 : h < 65 ? 2 : 3 + (i * 40503u) % 97;
      out << "user" << i << "@domain" << d << ".example,Name" << i << ",C" << (i * 7919 % 100000)
          << "\n";
    }
  }
  std::string dir = BenchDir() + "/feeder";
  LeaseLimits limits;
  limits.max_per_domain = 200;
  limits.max_total = 200;
  constexpr size_t kWindow = 2000, kCompleteEach = 64;
  const absl::Time now = absl::Now() + absl::Hours(1);
  double cpu = 0, thread_cpu = 0;
  size_t total = 0;
  salvo::smtp::Outcome ok;
  ok.disposition = salvo::smtp::Disposition::kDelivered;
  ok.reply = {250, "2.0.0", "ok"};
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::remove_all(dir);
    auto spool = Open(dir);
    CampaignSpec spec = Spec(1);
    spec.recipients_path = csv;
    if (!spool->LoadCampaign(spec, {}).ok()) {
      state.SkipWithError("load failed");
      break;
    }
    state.ResumeTiming();
    std::vector<Completion> window, done;
    uint64_t rng = 88172645463325252ull;
    size_t completed = 0;
    const double c0 = ProcessCpuSeconds(), t0 = ThreadCpuSeconds();
    while (completed < n) {
      if (window.size() < kWindow) {
        auto batches = spool->LeaseDue(now, limits);
        if (!batches.ok()) {
          state.SkipWithError("lease failed");
          break;
        }
        for (const auto& b : *batches)
          for (const auto& r : b.recipients) window.push_back({r.campaign, r.id, ok});
      }
      if (window.empty()) {
        state.SkipWithError("nothing leased before the end of the campaign");
        break;
      }
      done.clear();
      for (size_t k = 0; k < kCompleteEach && !window.empty(); ++k) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        const size_t j = rng % window.size();
        done.push_back(window[j]);
        window[j] = window.back();
        window.pop_back();
      }
      if (!spool->CompleteBatch(done).ok()) state.SkipWithError("complete failed");
      completed += done.size();
    }
    cpu += ProcessCpuSeconds() - c0;
    thread_cpu += ThreadCpuSeconds() - t0;
    total += completed;
    state.PauseTiming();
    spool.reset();
    std::filesystem::remove_all(dir);
    state.ResumeTiming();
  }
  if (total > 0) {
    state.counters["cpu_us_per_rcpt"] = 1e6 * cpu / static_cast<double>(total);
    state.counters["thread_cpu_us_per_rcpt"] = 1e6 * thread_cpu / static_cast<double>(total);
  }
  state.counters["recipients"] = static_cast<double>(n);
}
BENCHMARK(BM_FeederPattern)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

// bench/scale.sh's campaign without the engine (issue 19 item 5): N
// recipients (SALVO_QUEUE_BENCH_N) over D domains (SALVO_QUEUE_BENCH_DOMAINS,
// default 100000; 30% gmail.com, 20% yahoo.com, 15% outlook.com, the rest
// tail<i % (D-3)>.example), loaded, the spool closed and opened again (as
// `salvo run` finds it), then leased 200 at a time while fewer than 20,000
// are in flight and completed as delivered 64 at a time, roughly in lease
// order. Per tenth of the campaign: the process's CPU µs per
// recipient (RocksDB's flushes and compactions included) and this thread's,
// split into lease and complete, and the share of the big domains (the
// tenth's mix): the spool's share of scale.sh's first and last tenth, without
// the shards and the sink.
void BM_ScaleProgression(benchmark::State& state) {
  const size_t n = BenchSize();
  const char* d_env = std::getenv("SALVO_QUEUE_BENCH_DOMAINS");
  const size_t domains = d_env != nullptr ? std::strtoull(d_env, nullptr, 10) : 100000;
  const size_t tail = std::max<size_t>(1, domains > 3 ? domains - 3 : 1);
  std::string csv =
      BenchDir() + "/scale-" + std::to_string(n) + "-" + std::to_string(domains) + ".csv";
  if (!std::filesystem::exists(csv)) {
    std::ofstream out(csv);
    out << "email,first_name\n";
    uint64_t x = 19;
    for (size_t i = 0; i < n; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const size_t h = x % 100;
      out << "user" << i << "@";
      if (h < 30)
        out << "gmail.com";
      else if (h < 50)
        out << "yahoo.com";
      else if (h < 65)
        out << "outlook.com";
      else
        out << "tail" << (i % tail) << ".example";
      out << ",Name" << (i % 1000) << "\n";
    }
  }
  std::string dir = BenchDir() + "/scale";
  LeaseLimits limits;
  limits.max_per_domain = 200;
  limits.max_total = 200;
  limits.backlog_in_flight = 20000 / 4;  // as the engine: a quarter of its window
  // Results come back roughly in lease order (64 connections, each taking
  // the site's next job): each turn completes 64 of the oldest 512 leased.
  constexpr size_t kWindow = 20000, kCompleteEach = 64, kOldest = 512, kSlices = 10;
  const absl::Time now = absl::Now() + absl::Hours(1);
  std::vector<double> cpu(kSlices, 0), thread_cpu(kSlices, 0), lease_cpu(kSlices, 0);
  std::vector<size_t> count(kSlices, 0), big_count(kSlices, 0);
  salvo::smtp::Outcome ok;
  ok.disposition = salvo::smtp::Disposition::kDelivered;
  ok.reply = {250, "2.0.0", "ok"};
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::remove_all(dir);
    // SALVO_QUEUE_BENCH_LOADED=DIR: a copy of the loaded spool, made by the
    // first run that names it and copied from by the next ones (A/B of
    // options that do not change how the load writes, without loading again).
    const char* loaded = std::getenv("SALVO_QUEUE_BENCH_LOADED");
    if (loaded != nullptr && std::filesystem::exists(loaded)) {
      std::filesystem::copy(loaded, dir, std::filesystem::copy_options::recursive);
    } else {
      {
        auto spool = Open(dir);
        CampaignSpec spec = Spec(1);
        spec.recipients_path = csv;
        if (!spool->LoadCampaign(spec, {}).ok()) {
          state.SkipWithError("load failed");
          break;
        }
      }
      if (loaded != nullptr)
        std::filesystem::copy(dir, loaded, std::filesystem::copy_options::recursive);
    }
    auto spool = Open(dir);
    state.ResumeTiming();
    // Leased recipients in lease order (cheap to erase from), and whether
    // each is on one of the three big domains.
    struct InFlight {
      salvo::queue::CampaignId campaign;
      salvo::queue::RecipientId id;
      bool big;
    };
    std::deque<InFlight> window;
    std::vector<Completion> done;
    uint64_t rng = 88172645463325252ull;
    size_t completed = 0, last_slice = kSlices;
    // SALVO_QUEUE_BENCH_TENTHS=K stops after the first K tenths (A/B of the
    // first tenth without sending the rest).
    const char* k_env = std::getenv("SALVO_QUEUE_BENCH_TENTHS");
    const size_t stop_at = k_env != nullptr ? n / kSlices * std::strtoull(k_env, nullptr, 10) : n;
    while (completed < std::min(n, stop_at)) {
      const size_t slice = std::min(kSlices - 1, completed * kSlices / n);
      if (slice != last_slice) {  // for a profiler attached to one tenth
        std::fprintf(stderr, "scale progression: tenth %zu begins\n", slice + 1);
        last_slice = slice;
      }
      const double c0 = ProcessCpuSeconds(), t0 = ThreadCpuSeconds();
      if (window.size() + limits.max_total <= kWindow) {
        auto batches = spool->LeaseDue(now, limits);
        if (!batches.ok()) {
          state.SkipWithError("lease failed");
          break;
        }
        for (const auto& b : *batches) {
          const bool big = !b.domain.ends_with(".example");
          for (const auto& r : b.recipients) window.push_back({r.campaign, r.id, big});
        }
      }
      lease_cpu[slice] += ThreadCpuSeconds() - t0;
      if (window.empty()) {
        state.SkipWithError("nothing leased before the end of the campaign");
        break;
      }
      done.clear();
      for (size_t k = 0; k < kCompleteEach && !window.empty(); ++k) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        const size_t j = rng % std::min(window.size(), kOldest);
        done.push_back({window[j].campaign, window[j].id, ok});
        big_count[slice] += window[j].big ? 1 : 0;
        window.erase(window.begin() + static_cast<ptrdiff_t>(j));
      }
      if (!spool->CompleteBatch(done).ok()) state.SkipWithError("complete failed");
      cpu[slice] += ProcessCpuSeconds() - c0;
      thread_cpu[slice] += ThreadCpuSeconds() - t0;
      count[slice] += done.size();
      completed += done.size();
    }
    state.PauseTiming();
    spool.reset();
    std::filesystem::remove_all(dir);
    state.ResumeTiming();
  }
  for (size_t i = 0; i < kSlices; ++i) {
    if (count[i] == 0) continue;
    const std::string tenth = TenthLabel(i);
    const double c = static_cast<double>(count[i]);
    state.counters["cpu_us_" + tenth] = 1e6 * cpu[i] / c;
    state.counters["thread_us_" + tenth] = 1e6 * thread_cpu[i] / c;
    state.counters["lease_us_" + tenth] = 1e6 * lease_cpu[i] / c;
    // The tenth's mix: % of its recipients on gmail/yahoo/outlook (65% of the list).
    state.counters["big_pct_" + tenth] = 100.0 * static_cast<double>(big_count[i]) / c;
  }
  SetLastOverFirst(state, cpu, count);
  state.counters["recipients"] = static_cast<double>(n);
  state.counters["domains"] = static_cast<double>(domains);
}
BENCHMARK(BM_ScaleProgression)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

// Restart: Spool::Open on a spool holding N queued recipients (plus a few in flight).
// The load runs in a child process so the RSS figure is the reopened spool's only.
void BM_Restart(benchmark::State& state) {
  const size_t n = BenchSize();
  std::string dir = BenchDir() + "/restart";
  std::filesystem::remove_all(dir);
  MakeCsv(n);
  // Load in a separate process (this binary, in loader mode), which then
  // exits without closing the spool: a crash with 500 leased.
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) {
    state.SkipWithError("readlink /proc/self/exe failed");
    return;
  }
  self[len] = '\0';
  const std::string cmd =
      "SALVO_QUEUE_BENCH_LOAD_INTO=" + dir + " SALVO_QUEUE_BENCH_CSV=" + MakeCsv(n) + " " + self;
  if (std::system(cmd.c_str()) != 0) {
    state.SkipWithError("loader process failed");
    return;
  }
  for (auto _ : state) {
    auto spool = Open(dir);
    benchmark::DoNotOptimize(spool.get());
    state.PauseTiming();
    // RSS of a process holding the queue and leasing from it (what the engine
    // pays for N queued): open + one lease round.
    LeaseLimits limits;
    (void)spool->LeaseDue(absl::Now() + absl::Hours(1), limits);
    state.counters["rss_mb_after_open_and_lease"] = static_cast<double>(RssKb()) / 1024;
    spool.reset();
    state.ResumeTiming();
  }
  state.counters["queued"] = static_cast<double>(n);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_Restart)->Unit(benchmark::kMillisecond)->UseRealTime();

// Loader mode for BM_Restart (see there).
int LoadOnly(const char* dir, const char* csv) {
  auto spool = Open(dir);
  CampaignSpec spec = Spec(1);
  spec.recipients_path = csv;
  auto r = spool->LoadCampaign(spec, {});
  if (!r.ok()) {
    std::fprintf(stderr, "load: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  LeaseLimits limits;
  limits.max_total = 500;
  (void)spool->LeaseDue(absl::Now() + absl::Hours(1), limits);  // left in flight
  std::fprintf(stderr, "loader: %llu recipients in %.1f s, peak RSS %ld MB\n",
               static_cast<unsigned long long>(r->accepted), r->seconds, PeakRssKb() / 1024);
  std::fflush(stderr);
  std::error_code ec;  // this process's own template and CSV: _exit skips Cleanup
  std::filesystem::remove_all(BenchDir(), ec);
  _exit(0);  // no clean close: the restart replays the WAL like after a crash
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* dir = std::getenv("SALVO_QUEUE_BENCH_LOAD_INTO"))
    return LoadOnly(dir, std::getenv("SALVO_QUEUE_BENCH_CSV"));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
