#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "engine/config/config.h"
#include "tests/support/process.h"

namespace salvo::metrics {
namespace {

using smtp::Category;

// Lines of a scrape that are samples (not # HELP / # TYPE).
std::vector<std::string> Samples(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') out.push_back(line);
  return out;
}

bool Has(const std::string& text, const std::string& line) {
  for (const std::string& s : Samples(text))
    if (s == line) return true;
  return false;
}

// Runs `promtool check metrics` on `text`; returns its exit code and output.
int PromtoolCheck(const std::string& text, std::string* output) {
  testsupport::TempDir dir("salvo-scrape");
  testsupport::WriteFile(dir / "scrape.txt", text);
  testsupport::RunResult r =
      testsupport::RunShell("promtool check metrics < " + (dir / "scrape.txt") + " 2>&1");
  output->append(r.out);
  return r.code >= 0 && r.code < 128 ? r.code : -1;
}

TEST(MetricsTest, ShardsAreSummedAtScrape) {
  Registry registry;
  ShardCounters* a = registry.AddShard();
  ShardCounters* b = registry.AddShard();
  a->Add(Counter::kRecipientsDelivered, 3);
  b->Add(Counter::kRecipientsDelivered);
  b->Add(Counter::kRecipientsBounced, 2);
  EXPECT_EQ(registry.Total(Counter::kRecipientsDelivered), 4u);
  EXPECT_EQ(registry.Total(Counter::kRecipientsBounced), 2u);
  EXPECT_EQ(registry.Total(Counter::kRecipientsDeferred), 0u);
}

TEST(MetricsTest, ScrapeIsPrometheusTextWithHelpAndType) {
  Registry registry;
  registry.AddShard()->Add(Counter::kRecipientsDeferred, 7);
  std::string text = registry.Scrape();
  EXPECT_NE(text.find("# HELP salvo_recipients_deferred_total"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE salvo_recipients_deferred_total counter"), std::string::npos);
  // Counted without labels (the engine's plain path): one unlabelled series.
  EXPECT_TRUE(Has(text, "salvo_recipients_deferred_total 7")) << text;
}

TEST(MetricsTest, OwningThreadWritesWhileScraperReads) {
  Registry registry;
  ShardCounters* shard = registry.AddShard();
  constexpr uint64_t kN = 200000;
  std::thread writer([&] {
    for (uint64_t i = 0; i < kN; ++i) shard->Add(Counter::kBytesSent);
  });
  uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    uint64_t now = registry.Total(Counter::kBytesSent);
    EXPECT_GE(now, last);  // monotonic as seen by the scraper
    last = now;
  }
  writer.join();
  EXPECT_EQ(registry.Total(Counter::kBytesSent), kN);
}

TEST(MetricsTest, RecipientsAreCountedByCampaignDomainCategoryAndPhase) {
  Registry registry;
  ShardCounters* s0 = registry.AddShard();
  ShardCounters* s1 = registry.AddShard();
  CampaignSlot spring = registry.ResolveCampaign(1, "spring");
  OutcomeLabels gmail = registry.Labels(spring, "gmail.com");
  OutcomeLabels tail = registry.Labels(spring, "example.org");  // not listed: "other"
  s0->CountRecipient(gmail, RecipientEvent::kDelivered);
  s1->CountRecipient(gmail, RecipientEvent::kDelivered, Category::kNone, BouncePhase::kSync, 2);
  s0->CountRecipient(gmail, RecipientEvent::kDeferred, Category::kRateLimited);
  s1->CountRecipient(tail, RecipientEvent::kBounced, Category::kBadMailbox);
  s1->CountRecipient(tail, RecipientEvent::kBounced, Category::kBadMailbox, BouncePhase::kAsync);
  s0->CountRecipient(tail, RecipientEvent::kBounced);  // no category: "other"
  s0->CountRecipient(gmail, RecipientEvent::kExpired);
  s0->CountRecipient(gmail, RecipientEvent::kSuppressed, Category::kNone, BouncePhase::kSync, 4);
  s1->CountRecipient(gmail, RecipientEvent::kComplaint);

  std::string text = registry.Scrape();
  EXPECT_TRUE(
      Has(text, R"(salvo_recipients_delivered_total{campaign="spring",domain="gmail.com"} 3)"))
      << text;
  EXPECT_TRUE(Has(
      text,
      R"(salvo_recipients_deferred_total{campaign="spring",domain="gmail.com",category="rate-limited"} 1)"));
  EXPECT_TRUE(Has(
      text,
      R"(salvo_recipients_bounced_total{campaign="spring",domain="other",category="bad-mailbox",phase="sync"} 1)"));
  EXPECT_TRUE(Has(
      text,
      R"(salvo_recipients_bounced_total{campaign="spring",domain="other",category="bad-mailbox",phase="async"} 1)"));
  EXPECT_TRUE(Has(
      text,
      R"(salvo_recipients_bounced_total{campaign="spring",domain="other",category="other",phase="sync"} 1)"));
  EXPECT_TRUE(
      Has(text, R"(salvo_recipients_expired_total{campaign="spring",domain="gmail.com"} 1)"));
  EXPECT_TRUE(
      Has(text, R"(salvo_recipients_suppressed_total{campaign="spring",domain="gmail.com"} 4)"));
  EXPECT_TRUE(Has(text, R"(salvo_complaints_total{campaign="spring",domain="gmail.com"} 1)"));
  // Labelled counting also feeds the plain totals Engine::Stats reads, and
  // leaves no unlabelled remainder in the scrape.
  EXPECT_EQ(registry.Total(Counter::kRecipientsDelivered), 3u);
  EXPECT_EQ(registry.Total(Counter::kRecipientsBounced), 3u);
  EXPECT_EQ(text.find("salvo_recipients_delivered_total 3"), std::string::npos) << text;
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kBounced, "spring", "other"), 2u);
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kBounced, "spring", "other",
                                    Category::kBadMailbox, BouncePhase::kAsync),
            1u);
}

TEST(MetricsTest, PlainAndLabelledCountsAddUp) {
  // While part of the engine still counts with Add() (before the wiring),
  // the family shows the labelled series plus the unlabelled rest.
  Registry registry;
  ShardCounters* s = registry.AddShard();
  s->Add(Counter::kRecipientsDelivered, 5);
  s->CountRecipient(registry.Labels(CampaignSlot{}, "yahoo.com"), RecipientEvent::kDelivered);
  std::string text = registry.Scrape();
  EXPECT_TRUE(Has(text, "salvo_recipients_delivered_total 5")) << text;
  EXPECT_TRUE(
      Has(text, R"(salvo_recipients_delivered_total{campaign="other",domain="yahoo.com"} 1)"));
}

TEST(MetricsTest, DomainLabelsAreTheListedDomainsElseOther) {
  DomainLabels labels({"Gmail.com", "yahoo.com", "gmail.com", "", "other"});
  EXPECT_EQ(labels.size(), 3);  // other, gmail.com, yahoo.com
  EXPECT_EQ(labels.Name(labels.Resolve("gmail.com")), "gmail.com");
  EXPECT_EQ(labels.Name(labels.Resolve("GMAIL.COM.")), "gmail.com");
  EXPECT_EQ(labels.Name(labels.Resolve("mail.gmail.com")), "other");
  EXPECT_EQ(labels.Resolve("example.org").index, 0);
  // The built-in list has the providers the issue names.
  DomainLabels defaults(DefaultLabelledDomains());
  for (const char* d :
       {"gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
        "icloud.com", "aol.com", "gmx.de", "web.de", "mail.ru", "yandex.ru", "qq.com"})
    EXPECT_NE(defaults.Resolve(d).index, 0) << d;
}

// deploy/salvo.example.toml shows the built-in domain list as the default.
TEST(MetricsTest, ExampleConfigShowsTheBuiltInDomainList) {
  auto c = config::LoadConfig(SALVO_SOURCE_DIR "/deploy/salvo.example.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->metrics.domains.has_value());
  EXPECT_EQ(*c->metrics.domains, DefaultLabelledDomains());
}

TEST(MetricsTest, TheNewestCampaignsKeepTheirLabelsOlderOnesDropOut) {
  RegistryOptions options;
  options.max_campaigns = 2;
  Registry registry(options);
  ShardCounters* s = registry.AddShard();
  CampaignSlot a = registry.ResolveCampaign(10, "a");
  CampaignSlot b = registry.ResolveCampaign(11, "b");
  s->CountRecipient(registry.Labels(a, "gmail.com"), RecipientEvent::kDelivered, Category::kNone,
                    BouncePhase::kSync, 7);
  s->CountRecipient(registry.Labels(b, "gmail.com"), RecipientEvent::kDelivered);
  // An older campaign than every labelled one: "other", nobody drops out.
  CampaignSlot old = registry.ResolveCampaign(3, "old");
  EXPECT_EQ(old.index, 0);
  // The same name again (a re-sent campaign): the same slot.
  EXPECT_EQ(registry.ResolveCampaign(12, "b").index, b.index);
  // A newer one: the oldest labelled ("a", newest ID 10) drops out.
  CampaignSlot c = registry.ResolveCampaign(13, "c");
  EXPECT_EQ(c.index, a.index);
  std::string text = registry.Scrape();
  EXPECT_EQ(text.find(R"(campaign="a")"), std::string::npos) << text;
  // c starts from zero although it reuses a's cells.
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kDelivered, "c", "gmail.com"), 0u);
  s->CountRecipient(registry.Labels(c, "gmail.com"), RecipientEvent::kDelivered);
  // a still counts through its stale handle: that goes to "other", not to c.
  s->CountRecipient(registry.Labels(a, "gmail.com"), RecipientEvent::kDelivered);
  text = registry.Scrape();
  EXPECT_TRUE(Has(text, R"(salvo_recipients_delivered_total{campaign="c",domain="gmail.com"} 1)"))
      << text;
  EXPECT_TRUE(Has(text, R"(salvo_recipients_delivered_total{campaign="b",domain="gmail.com"} 1)"));
  EXPECT_TRUE(
      Has(text, R"(salvo_recipients_delivered_total{campaign="other",domain="gmail.com"} 1)"));
  // Nothing counted is lost from the plain total.
  EXPECT_EQ(registry.Total(Counter::kRecipientsDelivered), 10u);
}

TEST(MetricsTest, ConnectionsByDomainLabel) {
  Registry registry;
  ShardCounters* s = registry.AddShard();
  SiteProbe google(s, registry.domains().Resolve("gmail.com"));
  SiteProbe tail(s, registry.domains().Resolve("mx.example.net"));
  google.ConnectionOpened();
  google.ConnectionOpened();
  google.ConnectionClosed();
  tail.ConnectFailed();
  tail.ConnectionOpened();
  tail.ConnectionClosed();
  SiteProbe none;  // no registry: counts nothing, does not crash
  none.ConnectionOpened();
  s->Add(Counter::kSessionsOpened);  // the engine's plain path, unlabelled
  std::string text = registry.Scrape();
  EXPECT_TRUE(Has(text, R"(salvo_smtp_sessions_opened_total{domain="gmail.com"} 2)")) << text;
  EXPECT_TRUE(Has(text, R"(salvo_smtp_sessions_opened_total{domain="other"} 1)"));
  EXPECT_TRUE(Has(text, "salvo_smtp_sessions_opened_total 1"));
  EXPECT_TRUE(Has(text, R"(salvo_smtp_sessions_open{domain="gmail.com"} 1)"));
  EXPECT_TRUE(Has(text, R"(salvo_smtp_sessions_open{domain="other"} 0)"));
  EXPECT_TRUE(Has(text, R"(salvo_smtp_connect_failures_total{domain="other"} 1)"));
  EXPECT_EQ(registry.Total(Counter::kSessionsOpened), 4u);
}

TEST(MetricsTest, HistogramsAreSummedOverShardsWithCumulativeBuckets) {
  Registry registry;
  ShardCounters* a = registry.AddShard();
  ShardCounters* b = registry.AddShard();
  a->Observe(Histogram::kSmtpTransaction, 0.003);  // <= 0.005
  b->Observe(Histogram::kSmtpTransaction, 0.2);    // <= 0.25
  b->Observe(Histogram::kSmtpTransaction, 1000);   // +Inf
  a->Observe(Histogram::kDkimSigning, 0.0003);
  a->CountDkimSignature(DkimAlgorithm::kRsaSha256);
  b->CountDkimSignature(DkimAlgorithm::kEd25519Sha256);
  b->CountDkimSignature(DkimAlgorithm::kEd25519Sha256);
  std::string text = registry.Scrape();
  EXPECT_TRUE(Has(text, R"(salvo_smtp_transaction_seconds_bucket{le="0.005"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(salvo_smtp_transaction_seconds_bucket{le="0.1"} 1)"));
  EXPECT_TRUE(Has(text, R"(salvo_smtp_transaction_seconds_bucket{le="0.25"} 2)"));
  EXPECT_TRUE(Has(text, R"(salvo_smtp_transaction_seconds_bucket{le="300"} 2)"));
  EXPECT_TRUE(Has(text, R"(salvo_smtp_transaction_seconds_bucket{le="+Inf"} 3)"));
  EXPECT_TRUE(Has(text, "salvo_smtp_transaction_seconds_count 3"));
  EXPECT_TRUE(Has(text, "salvo_dkim_signing_seconds_count 1"));
  EXPECT_TRUE(Has(text, R"(salvo_dkim_signatures_total{algorithm="rsa-sha256"} 1)"));
  EXPECT_TRUE(Has(text, R"(salvo_dkim_signatures_total{algorithm="ed25519-sha256"} 2)"));
  for (const char* h : {"salvo_delivery_latency_seconds", "salvo_dns_lookup_seconds"})
    EXPECT_TRUE(Has(text, std::string(h) + "_count 0")) << h;
}

TEST(MetricsTest, QueueGaugesNameTheNewestCampaignsAndSumTheRestAsOther) {
  RegistryOptions options;
  options.max_campaigns = 2;
  Registry registry(options);
  registry.SetQueueSource([] {
    std::vector<CampaignQueueSample> q;
    q.push_back({1, "jan", {{"delivered", 100}, {"queued", 5}}});
    q.push_back({2, "feb", {{"delivered", 50}, {"queued", 7}}});
    q.push_back({3, "mar", {{"paused", 9}, {"delivered", 1}}});
    q.push_back({4, "done", {{"delivered", 3}}});  // nothing pending: no label taken
    return q;
  });
  registry.SetJobsInFlight(42);
  std::string text = registry.Scrape();
  EXPECT_TRUE(Has(text, R"(salvo_queue_recipients{campaign="mar",state="paused"} 9)")) << text;
  EXPECT_TRUE(Has(text, R"(salvo_queue_recipients{campaign="feb",state="queued"} 7)"));
  EXPECT_TRUE(Has(text, R"(salvo_queue_recipients{campaign="other",state="queued"} 5)"));
  EXPECT_TRUE(Has(text, R"(salvo_queue_recipients{campaign="other",state="delivered"} 103)"));
  EXPECT_TRUE(Has(text, "salvo_jobs_in_flight 42"));
  // The engine's resource caps are exported once the engine has set them.
  EXPECT_FALSE(Has(text, "salvo_delivery_connections")) << text;
  registry.SetEngineResources({17, 3, 123456, 5});
  text = registry.Scrape();
  EXPECT_TRUE(Has(text, "salvo_delivery_connections 17")) << text;
  EXPECT_TRUE(Has(text, "salvo_delivery_connection_waits_total 3"));
  EXPECT_TRUE(Has(text, "salvo_delivery_composed_bytes 123456"));
  EXPECT_TRUE(Has(text, "salvo_delivery_compose_waits_total 5"));
  // The labels the scrape gave are the ones the counters use.
  EXPECT_NE(registry.ResolveCampaign(2, "feb").index, 0);
  EXPECT_EQ(registry.ResolveCampaign(1, "jan").index, 0);
}

TEST(MetricsTest, SpoolHealthGauges) {
  Registry registry;
  EXPECT_FALSE(Has(registry.Scrape(), "salvo_spool_writable"));  // no spool: not exported
  SpoolSample sample;
  registry.SetSpoolHealthSource([&sample] { return sample; });
  EXPECT_TRUE(Has(registry.Scrape(), "salvo_spool_writable 1"));
  sample = {false, 2, 50};  // the disk refused two writes; 50 outcomes held
  std::string text = registry.Scrape();
  EXPECT_TRUE(Has(text, "salvo_spool_writable 0")) << text;
  EXPECT_TRUE(Has(text, "salvo_spool_write_errors_total 2"));
  EXPECT_TRUE(Has(text, "salvo_spool_held_outcomes 50"));
}

TEST(MetricsTest, ThrottleGaugesAreBoundedSuspendedFirst) {
  Registry registry;
  registry.SetThrottleSource([] {
    std::vector<ThrottleSample> t;
    for (int i = 0; i < 250; ++i)
      t.push_back({"domain:d" + std::to_string(i) + ".example", 10.0 + i, 5, i == 249 || i == 3});
    t.push_back({"provider:google", 50, 20, false});
    return t;
  });
  std::string text = registry.Scrape();
  EXPECT_TRUE(Has(text, R"(salvo_throttle_suspended{key="domain:d249.example"} 1)")) << text;
  EXPECT_TRUE(Has(text, R"(salvo_throttle_suspended{key="domain:d3.example"} 1)"));
  EXPECT_TRUE(Has(text, R"(salvo_throttle_message_rate_limit{key="domain:d3.example"} 13)"));
  EXPECT_TRUE(Has(text, R"(salvo_throttle_connection_limit{key="domain:d3.example"} 5)"));
  EXPECT_TRUE(Has(text, "salvo_throttle_suspended_keys 2"));
  size_t n = 0;
  for (const std::string& s : Samples(text)) n += s.rfind("salvo_throttle_suspended{", 0) == 0;
  EXPECT_EQ(n, kMaxThrottleKeys);
}

// A scrape with every kind of metric populated passes promtool's checks.
TEST(MetricsTest, ScrapePassesPromtoolCheckMetrics) {
  Registry registry;
  ShardCounters* s = registry.AddShard();
  CampaignSlot c = registry.ResolveCampaign(1, "Spring \"sale\" \\ 2026\n");  // escaped
  for (Category cat : {Category::kBadMailbox, Category::kRateLimited, Category::kSpamRelated}) {
    s->CountRecipient(registry.Labels(c, "gmail.com"), RecipientEvent::kDeferred, cat);
    s->CountRecipient(registry.Labels(c, "example.org"), RecipientEvent::kBounced, cat);
  }
  s->CountRecipient(registry.Labels(c, "gmail.com"), RecipientEvent::kDelivered);
  s->CountRecipient(registry.Labels(c, "gmail.com"), RecipientEvent::kComplaint);
  s->Add(Counter::kRecipientsDelivered);  // an unlabelled rest too
  s->ConnectionOpened(registry.domains().Resolve("gmail.com"));
  s->ConnectFailed(DomainSlot{});
  for (int h = 0; h < kHistogramCount; ++h) s->Observe(static_cast<Histogram>(h), 0.01 * h);
  s->CountDkimSignature(DkimAlgorithm::kRsaSha256);
  registry.SetQueueSource([] {
    return std::vector<CampaignQueueSample>{{1, "q", {{"queued", 3}, {"in_flight", 1}}}};
  });
  registry.SetThrottleSource([] {
    return std::vector<ThrottleSample>{{"provider:google", 50, 20, true}};
  });
  registry.SetSpoolHealthSource([] { return SpoolSample{false, 3, 50}; });
  std::string text = registry.Scrape();
  std::string output;
  int rc = PromtoolCheck(text, &output);
  ASSERT_NE(rc, -1) << "cannot run promtool (Debian package `prometheus`, "
                       "deploy/bootstrap.sh test installs it)";
  EXPECT_EQ(rc, 0) << output << "\n" << text;
}

// Issue 14 acceptance: a campaign over 100,000 distinct domains yields fewer
// than 500 series in a scrape.
TEST(MetricsTest, HundredThousandDomainsGiveFewerThan500Series) {
  Registry registry;  // the default domain list and max_campaigns
  std::vector<ShardCounters*> shards = {registry.AddShard(), registry.AddShard()};
  CampaignSlot campaign = registry.ResolveCampaign(1, "big");
  std::mt19937 rng(7);
  std::vector<std::string> domains;
  for (int i = 0; i < 100000; ++i) domains.push_back("d" + std::to_string(i) + ".example");
  // The big providers among them, as in a real list.
  for (const std::string& d : DefaultLabelledDomains()) domains.push_back(d);
  const Category kSeen[] = {Category::kBadMailbox, Category::kQuotaIssues, Category::kRateLimited,
                            Category::kSpamRelated, Category::kBadDomain};
  std::set<std::string> seen_domains;
  for (size_t i = 0; i < domains.size(); ++i) {
    ShardCounters* s = shards[i % 2];
    OutcomeLabels l = registry.Labels(campaign, domains[i]);
    s->CountRecipient(l, RecipientEvent::kDelivered);
    s->CountRecipient(l, RecipientEvent::kDeferred, kSeen[rng() % 5]);
    s->CountRecipient(l, RecipientEvent::kBounced, kSeen[rng() % 5]);
    s->ConnectionOpened(registry.domains().Resolve(domains[i]));
  }
  std::string text = registry.Scrape();
  size_t series = Samples(text).size();
  EXPECT_LT(series, 500u) << text;
  // Every domain label is a listed domain or "other".
  for (const std::string& line : Samples(text)) {
    size_t p = line.find("domain=\"");
    if (p == std::string::npos) continue;
    std::string d = line.substr(p + 8, line.find('"', p + 8) - p - 8);
    seen_domains.insert(d);
    EXPECT_TRUE(d == "other" || registry.domains().Resolve(d).index != 0) << d;
  }
  EXPECT_EQ(seen_domains.size(), DefaultLabelledDomains().size() + 1);
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kDelivered, "big", "other"), 100000u);
  std::printf("%zu distinct domains: %zu series in the scrape\n", domains.size(), series);
}

// Shard threads count labelled outcomes while a scraper reads: every count
// arrives, per label set exactly.
TEST(MetricsTest, ConcurrentShardsAndScraperLoseNothing) {
  Registry registry;
  constexpr int kShards = 4;
  constexpr uint64_t kPerShard = 100000;
  std::vector<ShardCounters*> shards;
  for (int i = 0; i < kShards; ++i) shards.push_back(registry.AddShard());
  CampaignSlot c = registry.ResolveCampaign(1, "c");
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) registry.Scrape();
  });
  std::vector<std::thread> writers;
  for (int i = 0; i < kShards; ++i)
    writers.emplace_back([&, i] {
      OutcomeLabels gmail = registry.Labels(c, "gmail.com");
      OutcomeLabels other = registry.Labels(c, "x.example");
      for (uint64_t n = 0; n < kPerShard; ++n) {
        shards[i]->CountRecipient(n % 2 ? gmail : other, RecipientEvent::kDelivered);
        if (n % 10 == 0)
          shards[i]->CountRecipient(gmail, RecipientEvent::kDeferred, Category::kRateLimited);
      }
    });
  for (std::thread& t : writers) t.join();
  done.store(true);
  scraper.join();
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kDelivered, "c", "gmail.com"),
            kShards * kPerShard / 2);
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kDelivered, "c", "other"),
            kShards * kPerShard / 2);
  EXPECT_EQ(registry.RecipientCount(RecipientEvent::kDeferred, "c", "gmail.com"),
            kShards * kPerShard / 10);
  EXPECT_EQ(registry.Total(Counter::kRecipientsDelivered), kShards * kPerShard);
}

TEST(MetricsTest, ExposerBindFailureIsAStatusNamingTheAddress) {
  auto registry = std::make_shared<Registry>();
  auto exposer = StartExposer("256.0.0.1:1", registry);
  ASSERT_FALSE(exposer.ok());
  EXPECT_NE(exposer.status().message().find("256.0.0.1:1"), std::string::npos);
}

// The exposer serves the registry over HTTP on a loopback port.
TEST(MetricsTest, ExposerServesTheScrapeOverHttp) {
  auto registry = std::make_shared<Registry>();
  registry->AddShard()->CountRecipient(registry->Labels(CampaignSlot{}, "gmail.com"),
                                       RecipientEvent::kDelivered);
  auto exposer = StartExposer("127.0.0.1:0", registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  std::vector<int> ports = (*exposer)->GetListeningPorts();
  ASSERT_EQ(ports.size(), 1u);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(ports[0]));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_NE(response.find("200 OK"), std::string::npos) << response;
  EXPECT_NE(
      response.find(R"(salvo_recipients_delivered_total{campaign="other",domain="gmail.com"} 1)"),
      std::string::npos)
      << response;
}

}  // namespace
}  // namespace salvo::metrics
