// Issue 13 acceptance for traffic shaping, against real sinks (in-process,
// their own io_uring shards), one sink per destination so each counts what
// reached it: messages, and the most connections open at once.
//   - Rates and connection limits hold per domain and per provider (two
//     domains of one provider, on two sites, share one budget).
//   - Adaptive backoff: a domain whose server 421s above N/s converges under
//     N while another domain of the same run keeps its speed.
//   - A rule that suspends a domain holds its recipients (not deferred, not
//     bounced) until the engine's clock passes the suspension.
// Every test is bounded in time; rates are measured over a fixed window of
// real time (what a rate is), counts are asserted.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/common/clock.h"
#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/memory_source.h"
#include "engine/delivery/shard.h"
#include "engine/sink/sink.h"
#include "tests/support/files.h"

namespace salvo::delivery {
namespace {

using smtp::Disposition;
using Clock = std::chrono::steady_clock;

const char kBody[] = "From: a@sender.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";

std::unique_ptr<sink::Sink> StartSink(sink::SinkOptions so = {}) {
  auto addr = sink::ParseListenAddress("127.0.0.1:0");
  EXPECT_TRUE(addr.ok());
  so.listen = {*addr};
  so.shards = 1;
  so.seed = 13;
  auto s = std::make_unique<sink::Sink>(so);
  EXPECT_TRUE(s->Start().ok());
  return s;
}

std::string HostPort(const sink::Sink& s) {
  return "127.0.0.1:" + std::to_string(s.Bound()[0].port);
}

std::vector<std::string> Recipients(const std::string& domain, int n, const std::string& p = "u") {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(p + std::to_string(i) + "@" + domain);
  return v;
}

// The config: routes domain -> sink, and a shaping file with `shaping`.
config::Config MakeConfig(const testsupport::TempDir& dir,
                          const std::vector<std::pair<std::string, std::string>>& routes,
                          const std::string& shaping, const std::string& delivery = "",
                          const std::string& route_extra = "") {
  std::string text =
      "shards = 2\npin_threads = false\nshaping_file = \"shaping.toml\"\n[tls]\nmode = "
      "\"off\"\n[queue]\npoll_interval = \"20ms\"\n[delivery]\nin_flight_limit = 2000\n" +
      delivery;
  for (const auto& [domain, hostport] : routes)
    text +=
        "[[route]]\ndomain = \"" + domain + "\"\nhosts = [\"" + hostport + "\"]\n" + route_extra;
  testsupport::WriteFile(dir.path() + "/shaping.toml", shaping);
  testsupport::WriteFile(dir.path() + "/salvo.toml", text);
  auto c = config::LoadConfig(dir.path() + "/salvo.toml");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : config::Config{};
}

template <typename F>
bool WaitUntil(F done, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// One single-recipient job per address, in `campaign` and `egress_pool`.
void AddJobs(InMemorySource& source, const std::vector<std::string>& rcpts, uint64_t campaign,
             int16_t egress_pool = -1) {
  auto body = std::make_shared<const std::string>(kBody);
  for (const std::string& rcpt : rcpts) {
    Job job;
    job.domain = rcpt.substr(rcpt.find('@') + 1);
    job.mail_from = "s@sender.test";
    job.recipients.push_back({rcpt, 0, 0});
    job.body = body;
    job.campaign = campaign;
    job.egress_pool = egress_pool;
    source.Add(std::move(job));
  }
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

TEST(ShapingAcceptance, RatesAndConnectionLimitsHoldPerDomainAndPerProvider) {
  auto a = StartSink(), b = StartSink(), p1 = StartSink(), p2 = StartSink();
  testsupport::TempDir dir;
  const std::string shaping = R"([default]
max_connections = 32

[domain."a.test"]
max_message_rate = "40/s"
max_connections = 2

[domain."b.test"]
max_message_rate = "6000/min"
max_connections = 5

[provider.p]
domains = ["p1.test", "p2.test"]
max_message_rate = "60/s"
max_connections = 3
)";
  auto cfg = MakeConfig(dir,
                        {{"a.test", HostPort(*a)},
                         {"b.test", HostPort(*b)},
                         {"p1.test", HostPort(*p1)},
                         {"p2.test", HostPort(*p2)}},
                        shaping);
  InMemorySource::Options o;
  o.run_forever = true;
  InMemorySource source(o);
  source.AddSimple("s@sender.test", Recipients("a.test", 1400), kBody);
  source.AddSimple("s@sender.test", Recipients("b.test", 3000), kBody);
  source.AddSimple("s@sender.test", Recipients("p1.test", 1000), kBody);
  source.AddSimple("s@sender.test", Recipients("p2.test", 1000), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  // The provider's two sites together: sampled every 5 ms.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> provider_peak{0};
  std::thread sampler([&] {
    while (!stop.load()) {
      uint64_t open = p1->Stats().connections_open + p2->Stats().connections_open;
      if (open > provider_peak.load()) provider_peak.store(open);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  auto messages = [&] {
    return std::vector<uint64_t>{a->Stats().messages, b->Stats().messages, p1->Stats().messages,
                                 p2->Stats().messages};
  };
  // Warm up 3 s, then a 20 s window.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto t0 = Clock::now();
  const auto m0 = messages();
  std::this_thread::sleep_for(std::chrono::seconds(20));
  const auto m1 = messages();
  const double window = Seconds(Clock::now() - t0);
  stop = true;
  sampler.join();
  (*e)->RequestShutdown();
  runner.join();
  const double rate_a = (m1[0] - m0[0]) / window, rate_b = (m1[1] - m0[1]) / window,
               rate_p1 = (m1[2] - m0[2]) / window, rate_p2 = (m1[3] - m0[3]) / window,
               rate_p = rate_p1 + rate_p2;
  std::printf(
      "over %.1f s: a.test %.1f/s (40/s, peak %llu of 2 connections), b.test %.1f/s (100/s, "
      "peak %llu of 5), provider p %.1f/s (60/s; p1 %.1f/s, p2 %.1f/s; peak %llu of 3 "
      "together)\n",
      window, rate_a, static_cast<unsigned long long>(a->Stats().connections_peak), rate_b,
      static_cast<unsigned long long>(b->Stats().connections_peak), rate_p, rate_p1, rate_p2,
      static_cast<unsigned long long>(provider_peak.load()));
  EXPECT_NEAR(rate_a, 40, 4);
  EXPECT_NEAR(rate_b, 100, 10);
  EXPECT_NEAR(rate_p, 60, 6);
  // Both members of the provider sent: the budget is shared, not one site's.
  EXPECT_GT(rate_p1, 10);
  EXPECT_GT(rate_p2, 10);
  EXPECT_LE(a->Stats().connections_peak, 2u);
  EXPECT_LE(b->Stats().connections_peak, 5u);
  EXPECT_LE(p1->Stats().connections_peak, 3u);
  EXPECT_LE(p2->Stats().connections_peak, 3u);
  EXPECT_LE(provider_peak.load(), 3u);
}

// The sink 421s above N messages a second (its own fixed one-second windows);
// Salvo's limit for that domain is 20 times higher. Adaptive backoff brings
// the domain under N, within 20%, in under a minute, everything is delivered
// without a bounce, and another domain of the same run keeps its speed.
TEST(ShapingAcceptance, BackoffConvergesUnderTheServersRateAndOtherDomainsKeepTheirSpeed) {
  constexpr int kN = 40;
  sink::SinkOptions limited;
  limited.max_rate = kN;
  auto slow = StartSink(limited);
  auto fast = StartSink();
  testsupport::TempDir dir;
  const std::string shaping = R"([domain."slow.test"]
max_message_rate = "800/s"
max_connections = 8

[domain."fast.test"]
max_message_rate = "150/s"
max_connections = 4
)";
  auto cfg = MakeConfig(dir, {{"slow.test", HostPort(*slow)}, {"fast.test", HostPort(*fast)}},
                        shaping, "site_retry_delay = \"2s\"\n");
  // The fast domain alone, 8 s: its speed on this machine.
  double alone = 0;
  {
    InMemorySource::Options o;
    o.run_forever = true;
    InMemorySource source(o);
    source.AddSimple("s@sender.test", Recipients("fast.test", 3000, "a"), kBody);
    auto e = Engine::Create(cfg, &source);
    ASSERT_TRUE(e.ok()) << e.status();
    std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const uint64_t m0 = fast->Stats().messages;
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(6));
    alone = (fast->Stats().messages - m0) / Seconds(Clock::now() - t0);
    (*e)->RequestShutdown();
    runner.join();
  }
  // Both: the slow domain has 2,400 recipients (a minute at N/s).
  InMemorySource::Options o;
  o.retry_deferred = true;  // the 421'd transactions come back (the queue's part)
  o.retry_delay = std::chrono::milliseconds(500);
  o.max_attempts = 1000;
  InMemorySource source(o);
  source.AddSimple("s@sender.test", Recipients("slow.test", 2400), kBody);
  source.AddSimple("s@sender.test", Recipients("fast.test", 4000, "b"), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  const auto start = Clock::now();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  uint64_t f0 = fast->Stats().messages;
  auto tf = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(6));
  const double together = (fast->Stats().messages - f0) / Seconds(Clock::now() - tf);
  // Converged: the slow domain's accepted rate over 30..50 s.
  WaitUntil([&] { return Clock::now() - start >= std::chrono::seconds(30); },
            std::chrono::seconds(31));
  const uint64_t s0 = slow->Stats().messages, r0 = slow->Stats().rejected_421;
  const auto ts = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(20));
  const double converged = (slow->Stats().messages - s0) / Seconds(Clock::now() - ts);
  const uint64_t rejected_late = slow->Stats().rejected_421 - r0;
  const bool all = WaitUntil([&] { return source.Count(Disposition::kDelivered) == 6400; },
                             std::chrono::seconds(60));
  (*e)->RequestShutdown();
  runner.join();
  std::printf(
      "backoff: slow.test %.1f/s over 30..50 s (server limit %d/s, Salvo's 800/s; %llu 421s "
      "in that window, %llu in all); fast.test %.1f/s alone, %.1f/s beside it; %zu of 6400 "
      "delivered in %.1f s, %zu bounced\n",
      converged, kN, static_cast<unsigned long long>(rejected_late),
      static_cast<unsigned long long>(slow->Stats().rejected_421), alone, together,
      source.Count(Disposition::kDelivered), Seconds(Clock::now() - start),
      source.Count(Disposition::kBounced));
  EXPECT_GE(converged, 0.8 * kN);
  EXPECT_LE(converged, kN * 1.0 + 1);
  EXPECT_GE(together, 0.9 * alone);
  EXPECT_TRUE(all);
  EXPECT_EQ(source.Count(Disposition::kBounced), 0u);
}

// A [[rule]] suspends a domain (scope "domain") on a given reply: its other
// recipients are held in the queue — not deferred, not bounced, no attempt
// counted — while another domain on the same site keeps going; when the
// engine's clock passes the suspension they are sent.
TEST(ShapingAcceptance, ASuspendingRuleHoldsTheDomainForItsDuration) {
  sink::SinkOptions so;
  so.reject_pattern = "trap@";  // 550 5.1.1 ... User unknown (salvo sink)
  auto s = StartSink(so);
  testsupport::TempDir dir;
  const std::string shaping = R"([[rule]]
name = "pause-on-trap"
match = 'User unknown \(salvo sink\)'
category = "bad-mailbox"
action = "suspend"
duration = "30m"
scope = "domain"
)";
  auto cfg = MakeConfig(dir, {{"held.test", HostPort(*s)}, {"other.test", HostPort(*s)}}, shaping,
                        "connections_per_site = 2\n");
  FakeMonotonicClock clock;
  InMemorySource::Options o;
  o.retry_deferred = true;
  o.retry_delay = std::chrono::seconds(1);
  o.clock = &clock;
  InMemorySource source(o);
  source.AddSimple("s@sender.test", {"trap@held.test"}, kBody);
  source.AddSimple("s@sender.test", Recipients("held.test", 300), kBody);
  source.AddSimple("s@sender.test", Recipients("other.test", 300), kBody);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  auto delivered_to = [&](const std::string& domain) {
    size_t n = 0;
    for (const auto& [addr, out] : source.Final())
      if (out.delivered() && addr.ends_with("@" + domain)) ++n;
    return n;
  };
  auto stop = [&] {
    (*e)->RequestShutdown();
    runner.join();
  };
  // The other domain finishes while the held one waits.
  if (!WaitUntil([&] { return delivered_to("other.test") == 300 && source.held() > 0; },
                 std::chrono::seconds(30))) {
    stop();
    FAIL() << "other.test: " << delivered_to("other.test") << " of 300 delivered, " << source.held()
           << " held";
  }
  const size_t before = delivered_to("held.test");
  const uint64_t sink_before = s->Stats().messages;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the clock stands still
  EXPECT_EQ(delivered_to("held.test"), before);
  EXPECT_EQ(s->Stats().messages, sink_before);
  EXPECT_LT(before, 300u);
  // Held is neither deferred nor bounced: the only failure is the trap's.
  EXPECT_EQ(source.Count(Disposition::kDeferred), 0u);
  EXPECT_EQ(source.Count(Disposition::kBounced), 1u);
  const size_t held = source.held();
  // Past the suspension, everything held is sent.
  clock.Advance(std::chrono::minutes(31));
  const bool all =
      WaitUntil([&] { return delivered_to("held.test") == 300; }, std::chrono::seconds(30));
  stop();
  std::printf(
      "suspension: %zu of 300 held.test recipients delivered before it took hold, %zu "
      "hand-backs while suspended, all 300 after the clock moved: %s\n",
      before, held, all ? "yes" : "no");
  EXPECT_TRUE(all);
  EXPECT_EQ(source.Count(Disposition::kDeferred), 0u);
  EXPECT_EQ(source.Count(Disposition::kBounced), 1u);
}

// Egress: two sources on 127.0.0.2 and 127.0.0.3 in one pool. The sink sees
// both addresses with their own EHLO names, and the domain's limits hold per
// source (two sources at 20/s each: 40/s in all; 2 connections each).
TEST(ShapingAcceptance, EgressSourcesBindTheirAddressesAndHoldTheirOwnLimits) {
  auto s = StartSink();
  testsupport::TempDir dir;
  const std::string shaping = R"([domain."e.test"]
max_message_rate = "20/s"
max_connections = 2
)";
  const std::string egress =
      "[[egress.source]]\nname = \"ip2\"\naddress = \"127.0.0.2\"\nehlo = \"mta2.sender.test\"\n"
      "[[egress.source]]\nname = \"ip3\"\naddress = \"127.0.0.3\"\nehlo = \"mta3.sender.test\"\n"
      "[[egress.pool]]\nname = \"main\"\nsources = [\"ip2\", \"ip3\"]\n";
  auto cfg = MakeConfig(dir, {{"e.test", HostPort(*s)}}, shaping, egress);
  ASSERT_EQ(cfg.EgressPoolIndex("main"), 0);
  InMemorySource::Options o;
  o.run_forever = true;
  InMemorySource source(o);
  AddJobs(source, Recipients("e.test", 1200), 0, 0);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  const std::string ip2 = "127.0.0.2 mta2.sender.test", ip3 = "127.0.0.3 mta3.sender.test";
  auto count = [&](const std::string& client) {
    auto st = s->Stats();
    auto it = st.clients.find(client);
    return it == st.clients.end() ? uint64_t{0} : it->second;
  };
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const uint64_t a0 = count(ip2), b0 = count(ip3);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(10));
  const double window = Seconds(Clock::now() - t0);
  const double rate2 = (count(ip2) - a0) / window, rate3 = (count(ip3) - b0) / window;
  (*e)->RequestShutdown();
  runner.join();
  const sink::SinkStats st = s->Stats();
  std::string clients;
  for (const auto& [c, n] : st.clients) clients += " [" + c + ": " + std::to_string(n) + "]";
  std::printf(
      "egress: %.1f/s from ip2, %.1f/s from ip3 (20/s each), peak %llu connections "
      "(2 per source); clients:%s\n",
      rate2, rate3, static_cast<unsigned long long>(st.connections_peak), clients.c_str());
  // Only the two sources, each with its own EHLO name.
  EXPECT_EQ(st.clients.size(), 2u) << clients;
  EXPECT_NEAR(rate2, 20, 3);
  EXPECT_NEAR(rate3, 20, 3);
  EXPECT_LE(st.connections_peak, 4u);
}

// A rule with scope = "campaign" suspends the campaign everywhere: its other
// recipients are held (every domain, every shard), another campaign to the
// same destination keeps going; past the suspension they are sent.
TEST(ShapingAcceptance, ASuspendingRuleWithCampaignScopeHoldsThatCampaignOnly) {
  sink::SinkOptions so;
  so.reject_pattern = "trap@";
  auto s = StartSink(so);
  testsupport::TempDir dir;
  const std::string shaping = R"([[rule]]
name = "pause-campaign"
match = 'User unknown \(salvo sink\)'
category = "bad-mailbox"
action = "suspend"
duration = "2h"
scope = "campaign"
)";
  auto cfg = MakeConfig(dir, {{"a.test", HostPort(*s)}, {"b.test", HostPort(*s)}}, shaping,
                        "connections_per_site = 2\n");
  FakeMonotonicClock clock;
  InMemorySource::Options o;
  o.retry_deferred = true;
  o.retry_delay = std::chrono::seconds(1);
  o.clock = &clock;
  InMemorySource source(o);
  auto add = [&](uint64_t campaign, const std::vector<std::string>& rcpts) {
    AddJobs(source, rcpts, campaign);
  };
  add(1, {"trap@a.test"});
  add(1, Recipients("a.test", 150, "one"));
  add(1, Recipients("b.test", 150, "one"));
  add(2, Recipients("a.test", 150, "two"));
  add(2, Recipients("b.test", 150, "two"));
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  auto stop = [&] {
    (*e)->RequestShutdown();
    runner.join();
  };
  auto delivered = [&](const std::string& prefix) {
    size_t n = 0;
    for (const auto& [addr, out] : source.Final())
      if (out.delivered() && addr.rfind(prefix, 0) == 0) ++n;
    return n;
  };
  if (!WaitUntil([&] { return delivered("two") == 300 && source.held() > 0; },
                 std::chrono::seconds(30))) {
    stop();
    FAIL() << "campaign 2: " << delivered("two") << " of 300 delivered, " << source.held()
           << " held";
  }
  const size_t before = delivered("one");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the clock stands still
  EXPECT_EQ(delivered("one"), before);
  EXPECT_LT(before, 300u);
  EXPECT_EQ(source.Count(Disposition::kDeferred), 0u);
  clock.Advance(std::chrono::hours(3));
  const bool all = WaitUntil([&] { return delivered("one") == 300; }, std::chrono::seconds(30));
  stop();
  std::printf(
      "campaign suspension: campaign 2 finished (300) while campaign 1 had %zu of 300 "
      "delivered; all 300 after the clock moved: %s\n",
      before, all ? "yes" : "no");
  EXPECT_TRUE(all);
  EXPECT_EQ(source.Count(Disposition::kDeferred), 0u);
  EXPECT_EQ(source.Count(Disposition::kBounced), 1u);
}

// A spread route: one smarthost's connections over every shard (each shard a
// pool of its own), its connection limit still shared between them.
TEST(ShapingAcceptance, ASpreadRouteUsesEveryShardWithinItsSharedLimit) {
  auto s = StartSink();
  testsupport::TempDir dir;
  auto cfg = MakeConfig(dir, {{"*", HostPort(*s)}}, "[default]\nmax_connections = 4\n", "",
                        "spread = true\n");
  InMemorySource::Options o;
  InMemorySource source(o);
  source.AddSimple("s@sender.test", Recipients("relay.test", 3000), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ((*e)->shard_count(), 2);
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  const bool all = WaitUntil([&] { return source.Count(Disposition::kDelivered) == 3000; },
                             std::chrono::seconds(60));
  const uint64_t peak0 = (*e)->shard(0)->peak_sessions(), peak1 = (*e)->shard(1)->peak_sessions();
  (*e)->RequestShutdown();
  runner.join();
  std::printf(
      "spread route: 3000 delivered: %s; sessions at most %llu on shard 0, %llu on shard "
      "1; sink peak %llu connections (limit 4)\n",
      all ? "yes" : "no", static_cast<unsigned long long>(peak0),
      static_cast<unsigned long long>(peak1),
      static_cast<unsigned long long>(s->Stats().connections_peak));
  EXPECT_TRUE(all);
  EXPECT_GT(peak0, 0u);
  EXPECT_GT(peak1, 0u);
  EXPECT_LE(s->Stats().connections_peak, 4u);
}

// Warm-up: a new source takes at most its day's cap per shaping key; the rest
// of the pool's mail goes out through the other source.
TEST(ShapingAcceptance, AWarmingUpSourceTakesItsDailyCapAndThePoolTheRest) {
  auto s = StartSink();
  testsupport::TempDir dir;
  const std::string today = absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone());
  const std::string egress =
      "[[egress.source]]\nname = \"new\"\naddress = \"127.0.0.2\"\nehlo = \"new.sender.test\"\n"
      "warmup_start = \"" +
      today +
      "\"\nwarmup = [\"1:50\", \"30:0\"]\n"
      "[[egress.source]]\nname = \"old\"\naddress = \"127.0.0.3\"\nehlo = \"old.sender.test\"\n"
      "[[egress.pool]]\nname = \"main\"\nsources = [\"new\", \"old\"]\n";
  auto cfg = MakeConfig(dir, {{"w.test", HostPort(*s)}},
                        "[domain.\"w.test\"]\nmax_connections = 4\n", egress);
  InMemorySource source;
  AddJobs(source, Recipients("w.test", 300), 0, 0);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  const bool all = WaitUntil([&] { return source.Count(Disposition::kDelivered) == 300; },
                             std::chrono::seconds(30));
  (*e)->RequestShutdown();
  runner.join();
  const sink::SinkStats st = s->Stats();
  auto from = [&](const std::string& client) {
    auto it = st.clients.find(client);
    return it == st.clients.end() ? uint64_t{0} : it->second;
  };
  std::printf("warm-up: %llu from the new source (cap 50 today), %llu from the old one\n",
              static_cast<unsigned long long>(from("127.0.0.2 new.sender.test")),
              static_cast<unsigned long long>(from("127.0.0.3 old.sender.test")));
  EXPECT_TRUE(all);
  EXPECT_EQ(from("127.0.0.2 new.sender.test"), 50u);
  EXPECT_EQ(from("127.0.0.3 old.sender.test"), 250u);
}

// A destination's max_recipients_per_message splits a larger transaction
// (every part carries the same message).
TEST(ShapingAcceptance, MaxRecipientsPerMessageSplitsTheTransaction) {
  auto s = StartSink();
  testsupport::TempDir dir;
  auto cfg = MakeConfig(dir, {{"m.test", HostPort(*s)}},
                        "[domain.\"m.test\"]\nmax_recipients_per_message = 2\n");
  InMemorySource source;
  Job job;
  job.domain = "m.test";
  job.mail_from = "s@sender.test";
  for (const std::string& rcpt : Recipients("m.test", 5)) job.recipients.push_back({rcpt, 0, 0});
  job.body = std::make_shared<const std::string>(kBody);
  source.Add(std::move(job));
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  const bool all = WaitUntil([&] { return source.Count(Disposition::kDelivered) == 5; },
                             std::chrono::seconds(20));
  (*e)->RequestShutdown();
  runner.join();
  EXPECT_TRUE(all);
  EXPECT_EQ(s->Stats().messages, 3u);  // 2 + 2 + 1
  EXPECT_EQ(s->Stats().recipients_delivered, 5u);
}

}  // namespace
}  // namespace salvo::delivery
