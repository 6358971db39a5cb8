// The delivery engine against in-process SMTP servers on loopback: pooling,
// reuse, MX failover, all-down deferral, shutdown semantics. LABEL unit: no
// external processes (the peers are threads of this test).

#include "engine/delivery/engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "engine/delivery/memory_source.h"
#include "tests/delivery/sink_peer.h"
#include "tests/support/ports.h"

namespace salvo::delivery {
namespace {

using salvo::testing::SinkPeer;
using smtp::Disposition;

// A loopback port with nothing listening (connect → ECONNREFUSED).
std::string DeadHostPort(const std::string& ip = "127.0.0.1") {
  return testsupport::DeadHostPort(ip);
}

config::Config MakeConfig(const std::string& extra, const std::vector<std::string>& hosts,
                          const std::string& domain = "*") {
  std::string text = "shards = 2\npin_threads = false\n[tls]\nmode = \"off\"\n";
  text += "[queue]\npoll_interval = \"20ms\"\n";
  text += "[[route]]\ndomain = \"" + domain + "\"\nhosts = [";
  for (size_t i = 0; i < hosts.size(); ++i) text += (i ? ", \"" : "\"") + hosts[i] + "\"";
  text += "]\n" + extra;
  auto c = config::ParseConfig(text, "test.toml");
  EXPECT_TRUE(c.ok()) << c.status() << "\n" << text;
  return c.ok() ? *c : config::Config{};
}

std::vector<std::string> Recipients(int n, const std::string& domain = "example.com",
                                    const std::string& prefix = "user") {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i) + "@" + domain);
  return v;
}

const char kBody[] =
    "From: a@sender.test\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n";

absl::Status RunEngine(const config::Config& cfg, MessageSource* source,
                       std::unique_ptr<Engine>* out = nullptr) {
  auto e = Engine::Create(cfg, source);
  if (!e.ok()) return e.status();
  absl::Status st = (*e)->Run();
  if (out) *out = std::move(*e);
  return st;
}

TEST(EngineTest, DeliversAndReusesConnections) {
  SinkPeer server;
  // messages_per_connection above the job count: under load one connection
  // may carry most of the 200, and rotating it would open a fifth.
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 4\nmessages_per_connection = 1000\n",
                        {server.hostport()});
  InMemorySource source;
  source.AddSimple("sender@sender.test", Recipients(200), kBody);
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(RunEngine(cfg, &source, &engine).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 200u);
  ASSERT_EQ(server.message_count(), 200u);
  // Pooled: at most 4 connections (plus none wasted), each carrying many messages.
  EXPECT_LE(server.connections(), 4);
  EXPECT_GE(server.connections(), 1);
  auto msgs = server.messages();
  EXPECT_EQ(msgs[0].mail_from, "sender@sender.test");
  EXPECT_EQ(msgs[0].data, kBody);  // dot-stuffing undone by the server: bytes intact
  EngineStats st = engine->Stats();
  EXPECT_EQ(st.delivered, 200u);
  EXPECT_EQ(st.messages, 200u);
  EXPECT_EQ(st.open_sessions, 0u);
  EXPECT_EQ(st.jobs_in_flight, 0u);
}

// A source whose results are not durable until the test says so (a spool
// holding outcomes its disk refused): with queue.durable_before_next (the
// default) each connection has at most one message accepted: the next one
// goes out but its end of data is held, so a crash then could repeat at most
// one message per connection.
class UndurableSource : public InMemorySource {
 public:
  std::atomic<bool> durable{false};
  std::atomic<int> asked{0};  // Durable() calls: the feeder's ack checks
  bool Durable() override {
    asked++;
    return durable.load();
  }
};

// With DATA (`chunking` false) the next transaction goes ahead up to its
// body and only its final "." waits; with BDAT the whole next transaction
// waits. Either way the server accepts one message per connection.
void CheckDurableBeforeNext(bool chunking) {
  SinkPeer::Options so;
  so.chunking = chunking;
  SinkPeer server(so);
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 2\nmessages_per_connection = 1000\n",
                        {server.hostport()});
  UndurableSource source;
  source.AddSimple("s@sender.test", Recipients(20), kBody);
  auto engine = Engine::Create(cfg, &source);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::Status run_status;
  std::thread runner([&] { run_status = (*engine)->Run(); });
  for (int i = 0; i < 200 && server.message_count() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // With DATA a connection's next transaction goes ahead (its recipient is
  // accepted) while its end of data waits for the record.
  for (int i = 0; i < 200 && !chunking && server.recipients_accepted() <= server.dots_seen(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (chunking)
    EXPECT_EQ(server.recipients_accepted(), server.dots_seen());
  else
    EXPECT_GT(server.recipients_accepted(), server.dots_seen());
  EXPECT_GE(server.message_count(), 1u);
  EXPECT_LE(server.message_count(), 2u);  // one per connection, none further
  EXPECT_LE(server.dots_seen(), 2);       // no end of data of a second message
  source.durable = true;
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status;
  EXPECT_EQ(source.Count(Disposition::kDelivered), 20u);
  EXPECT_EQ(server.message_count(), 20u);
  EXPECT_GT(source.asked.load(), 0);
}

TEST(EngineTest, AConnectionEndsItsNextDataTransactionOnlyOnceItsLastOutcomeIsDurable) {
  CheckDurableBeforeNext(/*chunking=*/false);
}

TEST(EngineTest, AConnectionStartsItsNextBdatTransactionOnlyOnceItsLastOutcomeIsDurable) {
  CheckDurableBeforeNext(/*chunking=*/true);
}

// Composed copies (CRLF only) go out from where they were composed, the
// commands around them in the same sendmsg: a dot-free copy as it is (DATA
// and BDAT), one with lines starting with "." dot-stuffed in a copy with
// DATA. Copies larger than the socket buffers (short writes that stop inside
// the body) arrive byte for byte, as do small ones.
void CheckComposedCopiesArriveByteForByte(bool chunking) {
  SinkPeer::Options so;
  so.chunking = chunking;
  SinkPeer server(so);
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 2\nmessages_per_connection = 1000\n",
                        {server.hostport()});
  std::string big = "From: a@sender.test\r\nSubject: big\r\n\r\n";
  for (int i = 0; big.size() < (3u << 20); ++i)
    big += "line " + std::to_string(i) + " with a dot. in it and some more text to fill it\r\n";
  const std::vector<std::string> bodies = {big, big + ".\r\n..two\r\n.\r\n",
                                           "Subject: small\r\n\r\nhi\r\n",
                                           "Subject: dots\r\n\r\n.\r\n.x\r\n"};
  InMemorySource source;
  for (size_t i = 0; i < bodies.size() * 3; ++i) {
    Job job;
    job.domain = "example.com";
    job.mail_from = "s@sender.test";
    job.recipients.push_back({"user" + std::to_string(i) + "@example.com", 0, 0});
    job.body = std::make_shared<const std::string>(bodies[i % bodies.size()]);
    job.body_crlf = true;
    source.Add(std::move(job));
  }
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), bodies.size() * 3);
  auto msgs = server.messages();
  ASSERT_EQ(msgs.size(), bodies.size() * 3);
  std::map<std::string, std::string> got;  // recipient -> data
  for (const auto& m : msgs) {
    ASSERT_EQ(m.recipients.size(), 1u);
    got[m.recipients[0]] = m.data;
  }
  for (size_t i = 0; i < bodies.size() * 3; ++i) {
    const std::string& data = got["user" + std::to_string(i) + "@example.com"];
    EXPECT_EQ(data.size(), bodies[i % bodies.size()].size()) << i;
    EXPECT_TRUE(data == bodies[i % bodies.size()]) << i;
  }
}

TEST(EngineTest, ComposedCopiesGoOutByteForByteOverData) {
  CheckComposedCopiesArriveByteForByte(/*chunking=*/false);
}

TEST(EngineTest, ComposedCopiesGoOutByteForByteOverBdat) {
  CheckComposedCopiesArriveByteForByte(/*chunking=*/true);
}

TEST(EngineTest, WithoutDurableBeforeNextConnectionsDoNotWaitForTheRecord) {
  SinkPeer server;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 2\nmessages_per_connection = 1000\n",
                        {server.hostport()});
  cfg.queue.durable_before_next = false;  // [queue] durable_before_next = false
  UndurableSource source;                 // never durable: the run ends all the same
  source.AddSimple("s@sender.test", Recipients(20), kBody);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 20u);
  EXPECT_EQ(server.message_count(), 20u);
  // Nothing waits for a record, so the feeder acknowledges none to the
  // shards (no durability check, no post per shard and turn).
  EXPECT_EQ(source.asked.load(), 0);
}

// Records how many jobs each lease may take.
class LeaseSizeSource : public InMemorySource {
 public:
  absl::StatusOr<std::vector<Job>> Fetch(size_t max_jobs) override {
    asked.push_back(max_jobs);
    return InMemorySource::Fetch(max_jobs);
  }
  std::vector<size_t> asked;  // feeder thread only
};

// Completions free a few in-flight slots per feeder turn (with
// durable_before_next the connections move in step with its writes): the
// feeder leases again only once a full batch fits (lease_batch, or a quarter
// of in_flight_limit when smaller), not a lease per turn for what just came
// back.
TEST(EngineTest, LeasesWaitForRoomForAFullBatch) {
  SinkPeer server;
  auto cfg = MakeConfig(
      "[delivery]\nconnections_per_site = 4\nmessages_per_connection = 1000\n"
      "in_flight_limit = 40\n",
      {server.hostport()});
  cfg.queue.lease_batch = 10;
  LeaseSizeSource source;
  source.AddSimple("s@sender.test", Recipients(300), kBody);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 300u);
  ASSERT_GE(source.asked.size(), 30u);
  for (size_t n : source.asked) EXPECT_EQ(n, 10u);
}

TEST(EngineTest, MessagesPerConnectionLimitOpensFreshConnections) {
  SinkPeer server;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 1\nmessages_per_connection = 3\n",
                        {server.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(10), kBody);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 10u);
  EXPECT_EQ(server.message_count(), 10u);
  EXPECT_EQ(server.connections(), 4);  // 3 + 3 + 3 + 1
}

TEST(EngineTest, PerRecipientOutcomesInOneTransaction) {
  SinkPeer server;
  auto cfg = MakeConfig("", {server.hostport()});
  InMemorySource source;
  Job job;
  job.domain = "example.com";
  job.mail_from = "s@sender.test";
  job.recipients = {{"ok1@example.com"}, {"reject-me@example.com"}, {"ok2@example.com"}};
  job.body = std::make_shared<const std::string>(kBody);
  source.Add(job);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  auto f = source.Final();
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f["ok1@example.com"].disposition, Disposition::kDelivered);
  EXPECT_EQ(f["ok2@example.com"].disposition, Disposition::kDelivered);
  EXPECT_EQ(f["reject-me@example.com"].disposition, Disposition::kBounced);
  EXPECT_EQ(f["reject-me@example.com"].reply.code, 550);
  EXPECT_EQ(f["reject-me@example.com"].scope, smtp::Scope::kRecipient);
  ASSERT_EQ(server.message_count(), 1u);
  EXPECT_EQ(server.messages()[0].recipients.size(), 2u);
}

TEST(EngineTest, RefusingHostFailsOverToNextInOrder) {
  SinkPeer second;
  SinkPeer third;
  std::string dead = DeadHostPort();
  auto cfg = MakeConfig("", {dead, second.hostport(), third.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(30), kBody);
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(RunEngine(cfg, &source, &engine).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 30u);
  EXPECT_EQ(second.message_count(), 30u);  // by preference: the second host, not the third
  EXPECT_EQ(third.message_count(), 0u);
  EXPECT_GE(engine->Stats().connect_failures, 1u);
  for (const auto& [addr, o] : source.Final())
    EXPECT_THAT(o.host, ::testing::HasSubstr(std::to_string(second.port()))) << addr;
}

TEST(EngineTest, GreetingRefusalFailsOverToNextHost) {
  SinkPeer::Options busy;
  busy.greeting = "421 4.7.0 too busy";
  SinkPeer first(busy);
  SinkPeer second;
  auto cfg = MakeConfig("", {first.hostport(), second.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(5), kBody);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 5u);
  EXPECT_EQ(second.message_count(), 5u);
  EXPECT_GE(first.connections(), 1);
}

TEST(EngineTest, AllHostsDownDefersEveryRecipient) {
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 3\n",
                        {DeadHostPort("127.0.0.1"), DeadHostPort("127.0.0.2")});
  InMemorySource source;
  auto rcpts = Recipients(50);
  source.AddSimple("s@sender.test", rcpts, kBody);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  auto f = source.Final();
  ASSERT_EQ(f.size(), rcpts.size());  // nobody lost
  for (const std::string& r : rcpts) {
    ASSERT_TRUE(f.count(r)) << r;
    EXPECT_EQ(f[r].disposition, Disposition::kDeferred) << r;
    EXPECT_EQ(f[r].kind, smtp::FailureKind::kConnectFailed) << r;
  }
}

TEST(EngineTest, DeferredRecipientsAreRetriedAndDeliveredWhenHostReturns) {
  // The retry loop of a source: first attempt finds the site down; the
  // server appears; the retry delivers.
  // Time is a FakeMonotonicClock: the retry delays pass when the test
  // advances it, not in real time.
  FakeMonotonicClock clock;
  std::string addr = DeadHostPort("127.0.0.3");
  auto cfg = MakeConfig("[delivery]\nsite_retry_delay = \"15s\"\n", {addr});
  InMemorySource::Options so;
  so.retry_deferred = true;
  so.retry_delay = std::chrono::seconds(20);
  so.max_attempts = 20;
  so.clock = &clock;
  InMemorySource source(so);
  source.AddSimple("s@sender.test", Recipients(10), kBody);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { ASSERT_TRUE((*e)->Run().ok()); });
  // Wait for the first deferrals, then bring the host up on that port.
  for (int i = 0; i < 200 && source.Attempts().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(source.Attempts().empty());
  // The sink comes up on that very address and port.
  SinkPeer::Options o;
  o.address = "127.0.0.3";
  o.port = std::stoi(addr.substr(addr.rfind(':') + 1));
  SinkPeer server(o);
  // Every step moves time past the retry delay and the site's pause (and
  // stays below the SMTP timeouts, which follow the same clock).
  for (int i = 0; i < 200 && source.Count(Disposition::kDelivered) < 10; ++i) {
    clock.Advance(std::chrono::seconds(25));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (*e)->RequestShutdown();
  runner.join();
  server.Stop();
  EXPECT_EQ(source.Count(Disposition::kDelivered), 10u);
  EXPECT_EQ(server.message_count(), 10u);
}

TEST(EngineTest, NoRouteIsDeferredNotLost) {
  SinkPeer server;
  // A DNS server that does not exist: the lookup fails fast (temporary).
  auto cfg = MakeConfig(
      "[dns]\nservers = [\"" + DeadHostPort() + "\"]\ntimeout = \"200ms\"\nattempts = 1\n",
      {server.hostport()}, "only.example");
  InMemorySource source;
  source.AddSimple("s@sender.test", {"a@elsewhere.example", "b@only.example"}, kBody);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  auto f = source.Final();
  EXPECT_EQ(f["b@only.example"].disposition, Disposition::kDelivered);
  EXPECT_EQ(f["a@elsewhere.example"].disposition, Disposition::kDeferred);
  EXPECT_EQ(f["a@elsewhere.example"].kind, smtp::FailureKind::kDns);
}

TEST(EngineTest, DnsTimeoutDefers) {
  // A UDP socket that never answers: the query times out (temporary).
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(bind(udp, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(udp, reinterpret_cast<sockaddr*>(&a), &len);
  std::string dns = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  SinkPeer server;
  auto cfg = MakeConfig("[dns]\nservers = [\"" + dns + "\"]\ntimeout = \"200ms\"\nattempts = 1\n",
                        {server.hostport()}, "only.example");
  InMemorySource source;
  source.AddSimple("s@sender.test", {"a@elsewhere.example"}, kBody);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  auto f = source.Final();
  EXPECT_EQ(f["a@elsewhere.example"].disposition, Disposition::kDeferred);
  EXPECT_EQ(f["a@elsewhere.example"].kind, smtp::FailureKind::kDns);
  close(udp);
}

TEST(EngineTest, GracefulShutdownFinishesOpenTransactionsAndDefersTheRest) {
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(400);
  SinkPeer server(o);
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 2\nshutdown_deadline = \"5s\"\n",
                        {server.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(40), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  for (int i = 0; i < 300 && server.dots_seen() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  (*e)->RequestShutdown();
  runner.join();
  auto f = source.Final();
  EXPECT_EQ(f.size(), 40u);  // every recipient has an outcome: none lost
  size_t delivered = source.Count(Disposition::kDelivered);
  EXPECT_GE(delivered, 2u);  // the two open transactions finished
  EXPECT_LT(delivered, 40u);
  EXPECT_EQ(delivered, server.message_count());
  EXPECT_EQ(delivered + source.Count(Disposition::kDeferred), 40u);
  EXPECT_EQ((*e)->Stats().open_sessions, 0u);
}

TEST(EngineTest, ShutdownDeadlineCutsMidDataAndReportsDeferredNeverDelivered) {
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(5000);  // the final reply never comes in time
  SinkPeer server(o);
  // The deadline passes when the test advances the engine's clock.
  FakeMonotonicClock clock;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 3\nshutdown_deadline = \"1m\"\n",
                        {server.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(20), kBody);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok());
  std::atomic<bool> finished{false};
  std::thread runner([&] {
    EXPECT_TRUE((*e)->Run().ok());
    finished = true;
  });
  for (int i = 0; i < 300 && server.dots_seen() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server.dots_seen(), 3);
  (*e)->RequestShutdown();
  // Minutes: the deadline passes, the 10 min data_end timeout does not.
  for (int i = 0; i < 200 && !finished; ++i) {
    clock.Advance(std::chrono::minutes(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  runner.join();
  EXPECT_EQ(source.Count(Disposition::kDelivered), 0u);
  EXPECT_EQ(source.Count(Disposition::kDeferred), 20u);
  server.Stop();
}

TEST(EngineTest, SessionTimeoutsFollowTheEngineClock) {
  // The final reply would come after 5 s of real time; the 10 min data_end
  // timeout passes first, because the test moves the engine's clock.
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(5000);
  SinkPeer server(o);
  FakeMonotonicClock clock;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 1\n", {server.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(1), kBody);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  for (int i = 0; i < 300 && server.dots_seen() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto t0 = std::chrono::steady_clock::now();
  clock.Advance(std::chrono::minutes(11));
  for (int i = 0; i < 300 && source.Final().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto f = source.Final();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(4500));
  EXPECT_EQ(f.begin()->second.disposition, Disposition::kDeferred);
  EXPECT_EQ(f.begin()->second.kind, smtp::FailureKind::kTimeout);
  runner.join();
  server.Stop();
}

TEST(EngineTest, ForceShutdownDefersOpenTransactions) {
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(5000);
  SinkPeer server(o);
  auto cfg = MakeConfig("[delivery]\nshutdown_deadline = \"30s\"\n", {server.hostport()});
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(5), kBody);
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  for (int i = 0; i < 300 && server.dots_seen() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  (*e)->RequestShutdown();
  (*e)->ForceShutdown();  // the second SIGINT
  runner.join();
  EXPECT_EQ(source.Count(Disposition::kDelivered), 0u);
  EXPECT_EQ(source.Final().size(), 5u);
  server.Stop();
}

TEST(EngineTest, IdleConnectionsAreClosed) {
  SinkPeer server;
  FakeMonotonicClock clock;
  auto cfg = MakeConfig("[delivery]\nidle_timeout = \"1h\"\n", {server.hostport()});
  InMemorySource::Options so;
  so.run_forever = true;
  InMemorySource source(so);
  source.AddSimple("s@sender.test", Recipients(3), kBody);
  EngineOptions eo;
  eo.clock = &clock;
  auto e = Engine::Create(cfg, &source, nullptr, eo);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  for (int i = 0; i < 300 && source.Count(Disposition::kDelivered) < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE((*e)->Stats().peak_sessions, 1u);
  EXPECT_GE((*e)->Stats().open_sessions, 1u);  // idle, the hour has not passed
  // The idle timer fires once the hour has passed. A connection may still be
  // finishing its last transaction (its outcome being recorded) when the
  // clock first moves and arm its timer after that: move on again each turn.
  for (int i = 0; i < 300 && (*e)->Stats().open_sessions > 0; ++i) {
    clock.Advance(std::chrono::hours(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*e)->Stats().open_sessions, 0u);
  (*e)->RequestShutdown();
  runner.join();
}

// A source whose jobs carry no body: the engine asks it to compose.
class ComposingSource : public MessageSource {
 public:
  explicit ComposingSource(int n) {
    for (int i = 0; i < n; ++i)
      inner_.AddSimple("s@sender.test", {"c" + std::to_string(i) + "@example.com"}, "x");
  }
  absl::StatusOr<std::vector<Job>> Fetch(size_t max) override {
    auto jobs = inner_.Fetch(max);
    if (jobs.ok())
      for (Job& j : *jobs) j.body.reset();
    return jobs;
  }
  absl::Status Complete(absl::Span<JobResult> r) override { return inner_.Complete(r); }
  bool Done(size_t in_flight) override { return inner_.Done(in_flight); }
  absl::Status Compose(Job* job, int shard, bool* permanent) override {
    shards_seen_[shard] = true;
    if (job->recipients[0].address == "c3@example.com") {
      *permanent = true;
      return absl::InvalidArgumentError("template: bad value");
    }
    job->body = std::make_shared<const std::string>("Subject: composed for " +
                                                    job->recipients[0].address + "\r\n\r\nhi\r\n");
    return absl::OkStatus();
  }
  InMemorySource inner_;
  bool shards_seen_[8] = {};
};

TEST(EngineTest, ComposesBodiesAndBouncesCompositionErrors) {
  SinkPeer server;
  auto cfg = MakeConfig("", {server.hostport()});
  ComposingSource source(6);
  ASSERT_TRUE(RunEngine(cfg, &source).ok());
  auto f = source.inner_.Final();
  EXPECT_EQ(source.inner_.Count(Disposition::kDelivered), 5u);
  EXPECT_EQ(f["c3@example.com"].disposition, Disposition::kBounced);
  EXPECT_EQ(f["c3@example.com"].category, "composition");
  ASSERT_EQ(server.message_count(), 5u);
  EXPECT_THAT(server.messages()[0].data, ::testing::HasSubstr("Subject: composed for c"));
}

// Bodies rendered on demand, like SpoolSource: records which shards composed
// and how often (Compose runs on shard threads, concurrently), and can take
// its time, like RSA signing does (the engine composes ahead and spreads the
// work only when a copy costs more than ~25 us to compose). `spin`: the
// time is spent busy, as signing spends it, not asleep (a sleep overshoots
// by its timer slack, tens of us).
class RecordingComposeSource : public MessageSource {
 public:
  RecordingComposeSource(const std::vector<std::string>& recipients,
                         std::chrono::microseconds compose_time = {}, bool spin = false)
      : compose_time_(compose_time), spin_(spin) {
    inner_.AddSimple("s@sender.test", recipients, "x");
  }
  absl::StatusOr<std::vector<Job>> Fetch(size_t max) override {
    auto jobs = inner_.Fetch(max);
    if (jobs.ok())
      for (Job& j : *jobs) j.body.reset();
    return jobs;
  }
  absl::Status Complete(absl::Span<JobResult> r) override { return inner_.Complete(r); }
  bool Done(size_t in_flight) override { return inner_.Done(in_flight); }
  absl::Status Compose(Job* job, int shard, bool* permanent) override {
    (void)permanent;
    if (spin_) {
      const auto until = std::chrono::steady_clock::now() + compose_time_;
      while (std::chrono::steady_clock::now() < until) {
      }
    } else if (compose_time_.count() > 0) {
      std::this_thread::sleep_for(compose_time_);
    }
    by_shard_[shard]++;
    composed_++;
    job->body = std::make_shared<const std::string>("Subject: composed for " +
                                                    job->recipients[0].address + "\r\n\r\nhi\r\n");
    return absl::OkStatus();
  }
  // Every recipient has exactly one reported outcome.
  void ExpectEachReportedOnce(size_t n) const {
    auto attempts = inner_.Attempts();
    std::map<std::string, int> times;
    for (const auto& [addr, o] : attempts) times[addr]++;
    EXPECT_EQ(times.size(), n);
    EXPECT_EQ(attempts.size(), n);
    for (const auto& [addr, k] : times) EXPECT_EQ(k, 1) << addr;
  }
  InMemorySource inner_;
  std::chrono::microseconds compose_time_;
  bool spin_ = false;
  std::atomic<int> by_shard_[8] = {};
  std::atomic<int> composed_{0};
};

TEST(EngineTest, OneSiteIsComposedOnEveryShardAndDeliveredOnce) {
  // One destination (like a campaign mostly to Gmail): one owner shard, but
  // the signing is shared by both shards.
  SinkPeer server;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 4\n", {server.hostport()});
  RecordingComposeSource source(Recipients(300), std::chrono::microseconds(200));
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(RunEngine(cfg, &source, &engine).ok());
  EXPECT_GT(source.by_shard_[0].load(), 0);
  EXPECT_GT(source.by_shard_[1].load(), 0);
  EXPECT_EQ(source.composed_.load(), 300);  // composed once each: none thrown away
  EXPECT_EQ(source.inner_.Count(Disposition::kDelivered), 300u);
  source.ExpectEachReportedOnce(300);
  // The far side got each recipient once, with the body composed for it.
  auto msgs = server.messages();
  ASSERT_EQ(msgs.size(), 300u);
  std::set<std::string> seen;
  for (const auto& m : msgs) {
    ASSERT_EQ(m.recipients.size(), 1u);
    EXPECT_TRUE(seen.insert(m.recipients[0]).second) << m.recipients[0];
    EXPECT_THAT(m.data, ::testing::HasSubstr("composed for " + m.recipients[0] + "\r\n"));
  }
  EXPECT_LE(server.connections(), 4);
  EngineStats st = engine->Stats();
  EXPECT_EQ(st.delivered, 300u);
  EXPECT_EQ(st.jobs_in_flight, 0u);
}

TEST(EngineTest, AnEd25519PricedCopyIsComposedOnEveryShard) {
  // 40 us of CPU per copy, what an Ed25519-signed 20 KB copy costs: dear
  // enough to spread over the shards (the threshold once sat at 50 us, and
  // such a campaign was composed by its owner shard alone).
  SinkPeer server;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 4\n", {server.hostport()});
  RecordingComposeSource source(Recipients(400), std::chrono::microseconds(40), /*spin=*/true);
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(RunEngine(cfg, &source, &engine).ok());
  EXPECT_GT(source.by_shard_[0].load(), 0);
  EXPECT_GT(source.by_shard_[1].load(), 0);
  EXPECT_EQ(source.composed_.load(), 400);
  EXPECT_EQ(source.inner_.Count(Disposition::kDelivered), 400u);
  source.ExpectEachReportedOnce(400);
}

// Composing takes 200 us a copy, except that the first copy composed on
// shard 0 stalls until shard 1 has composed 30 more (at most 3 s), and then
// the first copy shard 1 composes stalls until shard 0 has composed 30 more
// (at most 3 s). One of the two stalls is on the shard that does not own the
// site: the owner must go on composing without it.
class StallingComposeSource : public RecordingComposeSource {
 public:
  using RecordingComposeSource::RecordingComposeSource;
  absl::Status Compose(Job* job, int shard, bool* permanent) override {
    int expected = shard;
    if (shard < 2 && stall_on_.compare_exchange_strong(expected, -2)) {
      const int other = 1 - shard;
      const int start = by_shard_[other].load();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
      while (by_shard_[other].load() < start + 30 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      others_went_on_[shard] = by_shard_[other].load() >= start + 30;
      stall_on_.store(shard == 0 ? 1 : -1);
    }
    return RecordingComposeSource::Compose(job, shard, permanent);
  }
  std::atomic<int> stall_on_{0};  // the shard whose next compose stalls; -2 stalling, -1 done
  std::atomic<bool> others_went_on_[2] = {};
};

TEST(EngineTest, AShardStalledInComposingHoldsBackNoCopyTheOthersCouldSign) {
  // One site: one owner shard, copies composed on both. While the shard that
  // does not own the site is stuck in one copy (as a shard busy with its own
  // connections is), the owner signs everything else that waits; before the
  // shared compose queue, half the queued copies waited behind the stalled
  // shard and every connection of the site with them.
  SinkPeer server;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 4\n", {server.hostport()});
  StallingComposeSource source(Recipients(400), std::chrono::microseconds(200));
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(RunEngine(cfg, &source, &engine).ok());
  EXPECT_EQ(source.stall_on_.load(), -1);  // both stalls happened
  EXPECT_TRUE(source.others_went_on_[0].load() || source.others_went_on_[1].load());
  EXPECT_EQ(source.composed_.load(), 400);
  EXPECT_EQ(source.inner_.Count(Disposition::kDelivered), 400u);
  source.ExpectEachReportedOnce(400);
}

TEST(EngineTest, GracefulShutdownDefersComposedAheadCopiesOnce) {
  // Slow final replies: while two transactions wait, copies are composed
  // ahead. Shutdown defers those (and the queue) exactly once each.
  SinkPeer::Options o;
  o.final_delay = std::chrono::milliseconds(400);
  SinkPeer server(o);
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 2\nshutdown_deadline = \"5s\"\n",
                        {server.hostport()});
  // Composing takes a while (as signing does), so the engine composes ahead.
  RecordingComposeSource source(Recipients(40), std::chrono::microseconds(200));
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  for (int i = 0; i < 300 && server.dots_seen() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Copies are composed ahead while the two transactions wait.
  for (int i = 0; i < 300 && source.composed_.load() <= 4; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  (*e)->RequestShutdown();
  runner.join();
  source.ExpectEachReportedOnce(40);
  size_t delivered = source.inner_.Count(Disposition::kDelivered);
  EXPECT_GE(delivered, 2u);  // the open transactions finished
  EXPECT_EQ(delivered, server.message_count());
  EXPECT_EQ(delivered + source.inner_.Count(Disposition::kDeferred), 40u);
  // Some copies were composed and never sent: those were deferred, not lost.
  EXPECT_GT(static_cast<size_t>(source.composed_.load()), delivered);
  EngineStats st = (*e)->Stats();
  EXPECT_EQ(st.open_sessions, 0u);
  EXPECT_EQ(st.jobs_in_flight, 0u);
}

TEST(EngineTest, ForceShutdownWhileComposingReportsEachRecipientOnce) {
  // Composition is slow (like RSA under load), so at the force some jobs are
  // being composed on the other shard; they are reported deferred when they
  // come back, never lost or reported twice.
  SinkPeer server;
  auto cfg = MakeConfig("[delivery]\nconnections_per_site = 4\nshutdown_deadline = \"30s\"\n",
                        {server.hostport()});
  RecordingComposeSource source(Recipients(400), std::chrono::milliseconds(5));
  auto e = Engine::Create(cfg, &source);
  ASSERT_TRUE(e.ok());
  std::thread runner([&] { EXPECT_TRUE((*e)->Run().ok()); });
  for (int i = 0; i < 500 && server.message_count() < 10; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  (*e)->ForceShutdown();
  runner.join();
  source.ExpectEachReportedOnce(400);
  size_t delivered = source.inner_.Count(Disposition::kDelivered);
  EXPECT_GE(delivered, 10u);
  EXPECT_LT(delivered, 400u);
  // A transaction cut after its final dot reached the server, before the 250
  // came back, is deferred: the server may hold more than was delivered.
  EXPECT_LE(delivered, server.message_count());
  EXPECT_EQ(delivered + source.inner_.Count(Disposition::kDeferred), 400u);
  EXPECT_EQ((*e)->Stats().jobs_in_flight, 0u);
}

TEST(EngineTest, SitesAreSpreadOverShardsAndOwnedByOne) {
  // Two domains with different hosts are two sites; each is owned by exactly
  // one shard: all its mail flows through one pool (connection cap holds).
  SinkPeer a, b;
  std::string text =
      "shards = 2\npin_threads = false\n[tls]\nmode = \"off\"\n[delivery]\nconnections_per_site = "
      "2\n[routes]\n\"a.example\" = \"" +
      a.hostport() + "\"\n\"b.example\" = \"" + b.hostport() + "\"\n";
  auto cfg = config::ParseConfig(text, "t.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  InMemorySource source;
  source.AddSimple("s@sender.test", Recipients(50, "a.example"), kBody);
  source.AddSimple("s@sender.test", Recipients(50, "b.example"), kBody);
  ASSERT_TRUE(RunEngine(*cfg, &source).ok());
  EXPECT_EQ(source.Count(Disposition::kDelivered), 100u);
  EXPECT_EQ(a.message_count(), 50u);
  EXPECT_EQ(b.message_count(), 50u);
  EXPECT_LE(a.connections(), 2);
  EXPECT_LE(b.connections(), 2);
}

TEST(EngineTest, AMissingShapingFileStopsTheStart) {
  SinkPeer server;
  auto cfg = MakeConfig("", {server.hostport()});
  cfg.shaping_file = "/nonexistent/salvo-shaping.toml";
  InMemorySource source;
  auto e = Engine::Create(cfg, &source);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(e.status().message()),
              ::testing::HasSubstr("/nonexistent/salvo-shaping.toml"));
}

// Issue 13: a shaping file that does not parse stops the start, naming
// file:line:column (SIGHUP with one: EngineE2E.ShapingFileReloadsOnSighup...).
TEST(EngineTest, ABadShapingFileStopsTheStartNamingFileLineColumn) {
  SinkPeer server;
  auto cfg = MakeConfig("", {server.hostport()});
  const std::string path = "/tmp/salvo-bad-shaping-" + std::to_string(::getpid()) + ".toml";
  {
    std::ofstream f(path);
    f << "[provider.p]\ndomains = [\"p.example\"]\nmax_message_rate = \"lots\"\n";
  }
  cfg.shaping_file = path;
  InMemorySource source;
  auto e = Engine::Create(cfg, &source);
  std::remove(path.c_str());
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), ::testing::HasSubstr(path + ":3:"));
  EXPECT_THAT(std::string(e.status().message()), ::testing::HasSubstr("not a rate"));
}

TEST(EngineTest, BadRouteIsAStartupErrorNamingFileLine) {
  config::Config cfg;
  config::RouteConfig bad;
  bad.domain = "example.com";
  bad.hosts = {"bad host name!"};
  bad.source = "f.toml:7";
  cfg.routes.push_back(bad);
  InMemorySource source;
  auto e = Engine::Create(cfg, &source);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), ::testing::HasSubstr("f.toml:7"));
}

}  // namespace
}  // namespace salvo::delivery
