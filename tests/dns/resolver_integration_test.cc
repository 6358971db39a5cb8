// The MX resolver against a real unbound on loopback: every case of issue 5's
// DNS acceptance point, through the real io_uring reactor.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>

#include "absl/strings/str_replace.h"
#include "engine/dns/resolver.h"
#include "engine/reactor/reactor.h"
#include "tests/dns/unbound_fixture.h"

namespace salvo::dns {
namespace {

using namespace std::chrono_literals;
using testing::ReadTestData;
using testing::UnboundServer;

std::string Zones(const std::string& ttl_addr, const std::string& ttlmx_host) {
  return absl::StrReplaceAll(ReadTestData("zones.conf"),
                             {{"@TTL_ADDR@", ttl_addr}, {"@TTLMX_HOST@", ttlmx_host}});
}

std::vector<std::string> Names(const Site& site) {
  std::vector<std::string> out;
  for (const MxHost& h : site.hosts) out.push_back(h.name);
  return out;
}

std::vector<std::string> Addresses(const MxHost& host) {
  std::vector<std::string> out;
  for (const IpAddress& a : host.addresses) out.push_back(a.ToString());
  return out;
}

class DnsResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<UnboundServer>> server =
        UnboundServer::Start(Zones("127.0.0.31", "old"), ReadTestData("forward.conf"));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::StatusOr<std::unique_ptr<reactor::Reactor>> r = reactor::Reactor::Create();
    ASSERT_TRUE(r.ok()) << r.status();
    reactor_ = *std::move(r);
  }
  void TearDown() override {
    resolvers_.clear();  // before the reactor
    reactor_.reset();
    if (HasFailure() && server_) std::cerr << "unbound log:\n" << server_->Log();
    server_.reset();
  }

  Resolver& NewResolver(ResolverOptions options = {}) {
    options.servers = {server_->address()};
    if (options.timeout == ResolverOptions{}.timeout) options.timeout = 1000ms;
    absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(reactor_.get(), options);
    EXPECT_TRUE(r.ok()) << r.status();
    resolvers_.push_back(*std::move(r));
    return *resolvers_.back();
  }

  // Resolves `domains` concurrently, running the reactor until all answered
  // (bounded by `limit`).
  std::vector<absl::StatusOr<Site>> ResolveAll(Resolver& resolver,
                                               const std::vector<std::string>& domains,
                                               reactor::Duration limit = 10s) {
    std::vector<std::optional<absl::StatusOr<Site>>> out(domains.size());
    size_t done = 0;
    for (size_t i = 0; i < domains.size(); ++i) {
      resolver.ResolveMx(domains[i], [&, i](absl::StatusOr<Site> result) {
        out[i] = std::move(result);
        if (++done == domains.size()) reactor_->Stop();
      });
    }
    const reactor::TimerId guard = reactor_->RunAfter(limit, [&] { reactor_->Stop(); });
    reactor_->Run();
    reactor_->CancelTimer(guard);
    std::vector<absl::StatusOr<Site>> results;
    for (size_t i = 0; i < domains.size(); ++i) {
      results.push_back(out[i] ? *std::move(out[i])
                               : absl::StatusOr<Site>(absl::DeadlineExceededError(
                                     "test: no answer for " + domains[i] + " in time")));
    }
    return results;
  }
  absl::StatusOr<Site> Resolve(Resolver& resolver, const std::string& domain) {
    return std::move(ResolveAll(resolver, {domain})[0]);
  }

  std::unique_ptr<UnboundServer> server_;
  std::unique_ptr<reactor::Reactor> reactor_;
  std::vector<std::unique_ptr<Resolver>> resolvers_;
};

TEST_F(DnsResolverTest, MxSetOrderedByPreferenceWithAddresses) {
  Resolver& r = NewResolver();
  absl::StatusOr<Site> site = Resolve(r, "Multi.Test.");
  ASSERT_TRUE(site.ok()) << site.status();
  EXPECT_EQ(site->domain, "multi.test");
  EXPECT_FALSE(site->implicit_mx);
  EXPECT_FALSE(site->routed);
  ASSERT_EQ(site->hosts.size(), 5u);
  const std::vector<std::string> names = Names(*site);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.begin() + 3),
            (std::set<std::string>{"mx1.multi.test", "mx2.multi.test", "mx3.multi.test"}));
  EXPECT_EQ(names[3], "mx4.multi.test");
  EXPECT_EQ(names[4], "mx5.multi.test");
  EXPECT_EQ(site->hosts[3].preference, 20);
  // Dual-stack host: IPv4 first by default, then IPv6.
  EXPECT_EQ(Addresses(site->hosts[3]), (std::vector<std::string>{"127.0.0.14", "::1"}));
  EXPECT_EQ(Addresses(site->hosts[4]), (std::vector<std::string>{"127.0.0.15"}));
  EXPECT_EQ(site->hosts[0].port, 25);
  EXPECT_EQ(site->ttl_seconds, 300u);
  EXPECT_EQ(site->key,
            "mx1.multi.test:25,mx2.multi.test:25,mx3.multi.test:25,mx4.multi.test:25,"
            "mx5.multi.test:25");
  EXPECT_LT(ShardForSite(site->key, 2), 2u);
}

TEST_F(DnsResolverTest, EqualPreferenceOrderVariesAcrossLookups) {
  Resolver& r = NewResolver();
  std::set<std::string> firsts;
  std::set<std::vector<std::string>> orders;
  for (int i = 0; i < 60; ++i) {
    absl::StatusOr<Site> site = Resolve(r, "multi.test");
    ASSERT_TRUE(site.ok()) << site.status();
    const std::vector<std::string> names = Names(*site);
    ASSERT_EQ(names.size(), 5u);
    ASSERT_EQ(names[3], "mx4.multi.test");  // preference order never broken
    ASSERT_EQ(names[4], "mx5.multi.test");
    firsts.insert(names[0]);
    orders.insert(std::vector<std::string>(names.begin(), names.begin() + 3));
  }
  EXPECT_EQ(firsts.size(), 3u) << "each preference-10 host should come first sometimes";
  EXPECT_GE(orders.size(), 4u);
  // Later lookups came from the cache but were shuffled all the same.
  EXPECT_EQ(r.stats().cache_hits, 59u);
}

TEST_F(DnsResolverTest, OnlyAnARecordIsAnImplicitMx) {
  Resolver& r = NewResolver();
  absl::StatusOr<Site> site = Resolve(r, "aonly.test");
  ASSERT_TRUE(site.ok()) << site.status();
  EXPECT_TRUE(site->implicit_mx);
  ASSERT_EQ(site->hosts.size(), 1u);
  EXPECT_EQ(site->hosts[0].name, "aonly.test");
  EXPECT_EQ(Addresses(site->hosts[0]), (std::vector<std::string>{"127.0.0.21"}));
}

TEST_F(DnsResolverTest, Ipv6OnlyMxHost) {
  Resolver& r = NewResolver();
  absl::StatusOr<Site> site = Resolve(r, "v6.test");
  ASSERT_TRUE(site.ok()) << site.status();
  ASSERT_EQ(site->hosts.size(), 1u);
  EXPECT_EQ(Addresses(site->hosts[0]), (std::vector<std::string>{"::1"}));
  EXPECT_TRUE(site->hosts[0].addresses[0].is_v6());

  // With IPv6 switched off the host has no usable address: permanent.
  ResolverOptions v4only;
  v4only.ipv6 = false;
  Resolver& r4 = NewResolver(v4only);
  absl::StatusOr<Site> none = Resolve(r4, "v6.test");
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(IsPermanentDnsFailure(none.status())) << none.status();
}

TEST_F(DnsResolverTest, NullMxIsPermanentAtOnce) {
  Resolver& r = NewResolver();
  absl::StatusOr<Site> site = Resolve(r, "nullmx.test");
  ASSERT_FALSE(site.ok());
  EXPECT_EQ(site.status().code(), absl::StatusCode::kFailedPrecondition) << site.status();
  EXPECT_NE(site.status().message().find("nullmx.test"), absl::string_view::npos);
  EXPECT_NE(site.status().message().find("null MX"), absl::string_view::npos);
  EXPECT_EQ(r.stats().queries, 1u);  // no address lookups for "."
  EXPECT_EQ(FailureOf(site.status()), smtp::DnsFailure::kNullMx);
  const smtp::Outcome o = smtp::OutcomeForDnsFailure(FailureOf(site.status()), "nullmx.test",
                                                     std::string(site.status().message()));
  EXPECT_EQ(o.disposition, smtp::Disposition::kBounced);
  EXPECT_EQ(o.category, "null_mx");
  EXPECT_EQ(o.kind, smtp::FailureKind::kDns);
  EXPECT_EQ(o.scope, smtp::Scope::kSite);
}

TEST_F(DnsResolverTest, NxDomainIsPermanentAndNegativelyCachedPerSoa) {
  Resolver& r = NewResolver();
  absl::StatusOr<Site> site = Resolve(r, "missing.nx.test");
  ASSERT_FALSE(site.ok());
  EXPECT_EQ(site.status().code(), absl::StatusCode::kNotFound) << site.status();
  EXPECT_NE(site.status().message().find("missing.nx.test"), absl::string_view::npos);
  EXPECT_NE(site.status().message().find("NXDOMAIN"), absl::string_view::npos);
  EXPECT_EQ(FailureOf(site.status()), smtp::DnsFailure::kNxDomain);
  EXPECT_TRUE(IsPermanentDnsFailure(site.status()));
  // The SOA MINIMUM is 7 s: a second lookup is answered from the cache.
  const uint64_t queries = r.stats().queries;
  absl::StatusOr<Site> again = Resolve(r, "missing.nx.test");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.stats().queries, queries);
  EXPECT_EQ(r.stats().cache_hits, 1u);
}

TEST_F(DnsResolverTest, NoMxAndNoAddressIsPermanent) {
  Resolver& r = NewResolver();
  std::vector<absl::StatusOr<Site>> results = ResolveAll(r, {"empty.test", "noaddr.test"});
  ASSERT_FALSE(results[0].ok());
  EXPECT_EQ(results[0].status().code(), absl::StatusCode::kNotFound) << results[0].status();
  EXPECT_NE(results[0].status().message().find("no MX record and no A/AAAA"),
            absl::string_view::npos)
      << results[0].status();
  ASSERT_FALSE(results[1].ok());
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kNotFound) << results[1].status();
  EXPECT_NE(results[1].status().message().find("ghost.noaddr.test"), absl::string_view::npos)
      << results[1].status();
}

TEST_F(DnsResolverTest, ServfailAndRefusedAreTemporary) {
  Resolver& r = NewResolver();
  std::vector<absl::StatusOr<Site>> results = ResolveAll(r, {"servfail.test", "refused.test"});
  ASSERT_FALSE(results[0].ok());
  EXPECT_EQ(results[0].status().code(), absl::StatusCode::kUnavailable) << results[0].status();
  EXPECT_NE(results[0].status().message().find("SERVFAIL"), absl::string_view::npos)
      << results[0].status();
  EXPECT_NE(results[0].status().message().find("servfail.test"), absl::string_view::npos);
  ASSERT_FALSE(results[1].ok());
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kUnavailable) << results[1].status();
  EXPECT_NE(results[1].status().message().find("REFUSED"), absl::string_view::npos)
      << results[1].status();
  EXPECT_EQ(FailureOf(results[0].status()), smtp::DnsFailure::kServFail);
  const smtp::Outcome o =
      smtp::OutcomeForDnsFailure(FailureOf(results[0].status()), "servfail.test");
  EXPECT_EQ(o.disposition, smtp::Disposition::kDeferred);
  EXPECT_EQ(o.category, "dns");
  // Temporary failures are not cached: the next lookup asks again.
  const uint64_t queries = r.stats().queries;
  EXPECT_FALSE(Resolve(r, "servfail.test").ok());
  EXPECT_EQ(r.stats().queries, queries + 1);
  EXPECT_EQ(r.stats().temporary_failures, 3u);
}

TEST_F(DnsResolverTest, DroppedQueryTimesOutAsTemporary) {
  ResolverOptions options;
  options.timeout = 300ms;
  options.tries = 1;
  Resolver& r = NewResolver(options);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Site> site = Resolve(r, "drop.test");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(site.ok());
  EXPECT_EQ(site.status().code(), absl::StatusCode::kUnavailable) << site.status();
  EXPECT_NE(site.status().message().find("timed out"), absl::string_view::npos) << site.status();
  EXPECT_NE(site.status().message().find("drop.test"), absl::string_view::npos);
  EXPECT_EQ(FailureOf(site.status()), smtp::DnsFailure::kTimeout);
  EXPECT_FALSE(IsPermanentDnsFailure(site.status()));
  // Driven by the reactor timer, not by the 10 s test guard.
  EXPECT_LT(elapsed, 5s);
  // The resolver still works after a timeout.
  EXPECT_TRUE(Resolve(r, "aonly.test").ok());
}

TEST_F(DnsResolverTest, TtlIsHonouredForAddressAndMxRecords) {
  Resolver& caching = NewResolver();
  std::vector<absl::StatusOr<Site>> first = ResolveAll(caching, {"ttl.test", "ttlmx.test"});
  ASSERT_TRUE(first[0].ok()) << first[0].status();
  ASSERT_TRUE(first[1].ok()) << first[1].status();
  EXPECT_EQ(Addresses(first[0]->hosts[0]), (std::vector<std::string>{"127.0.0.31"}));
  EXPECT_EQ(first[0]->ttl_seconds, 2u);  // min(MX 300, A 2)
  EXPECT_EQ(first[1]->hosts[0].name, "old.ttlmx.test");
  EXPECT_EQ(first[1]->ttl_seconds, 2u);  // min(MX 2, A 300)
  const auto cached_at = std::chrono::steady_clock::now();

  // Change both records on the server.
  ASSERT_TRUE(server_->Reload(Zones("127.0.0.32", "new"), ReadTestData("forward.conf")).ok());
  // A resolver without a cache sees the new data at once...
  Resolver& fresh = NewResolver();
  std::vector<absl::StatusOr<Site>> now = ResolveAll(fresh, {"ttl.test", "ttlmx.test"});
  ASSERT_TRUE(now[0].ok() && now[1].ok());
  EXPECT_EQ(Addresses(now[0]->hosts[0]), (std::vector<std::string>{"127.0.0.32"}));
  EXPECT_EQ(now[1]->hosts[0].name, "new.ttlmx.test");

  // ...while the caching one still serves the old answer inside the TTL.
  ASSERT_LT(std::chrono::steady_clock::now() - cached_at, 1500ms)
      << "reload too slow for a 2 s TTL test";
  std::vector<absl::StatusOr<Site>> before = ResolveAll(caching, {"ttl.test", "ttlmx.test"});
  ASSERT_TRUE(before[0].ok() && before[1].ok());
  EXPECT_EQ(Addresses(before[0]->hosts[0]), (std::vector<std::string>{"127.0.0.31"}));
  EXPECT_EQ(before[1]->hosts[0].name, "old.ttlmx.test");

  // After the TTL, the change is seen.
  std::this_thread::sleep_until(cached_at + 2200ms);
  std::vector<absl::StatusOr<Site>> after = ResolveAll(caching, {"ttl.test", "ttlmx.test"});
  ASSERT_TRUE(after[0].ok() && after[1].ok());
  EXPECT_EQ(Addresses(after[0]->hosts[0]), (std::vector<std::string>{"127.0.0.32"}));
  EXPECT_EQ(after[1]->hosts[0].name, "new.ttlmx.test");
}

TEST_F(DnsResolverTest, MaxTtlZeroDisablesPositiveAndNegativeCaching) {
  ResolverOptions options;
  options.max_ttl = std::chrono::seconds(0);
  Resolver& r = NewResolver(options);
  for (int i = 0; i < 2; ++i) {
    std::vector<absl::StatusOr<Site>> results =
        ResolveAll(r, {"aonly.test", "missing.nx.test", "nullmx.test"});
    EXPECT_TRUE(results[0].ok()) << results[0].status();
    EXPECT_EQ(results[1].status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(results[2].status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(r.stats().cache_hits, 0u);
  EXPECT_EQ(r.stats().queries, 2u * (3u + 1u + 1u));  // aonly: MX+A+AAAA; nx: MX; nullmx: MX

  options.min_ttl = std::chrono::seconds(5);
  options.servers = {server_->address()};
  absl::StatusOr<std::unique_ptr<Resolver>> bad = Resolver::Create(reactor_.get(), options);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("min_ttl"), absl::string_view::npos) << bad.status();
}

TEST_F(DnsResolverTest, ConcurrentLookupsForOneDomainShareOneQuery) {
  Resolver& r = NewResolver();
  std::vector<std::string> domains(20, "aonly.test");
  domains.push_back("multi.test");
  std::vector<absl::StatusOr<Site>> results = ResolveAll(r, domains);
  for (const auto& s : results) ASSERT_TRUE(s.ok()) << s.status();
  // aonly: MX + A + AAAA; multi: MX + 5 x (A + AAAA).
  EXPECT_EQ(r.stats().queries, 3u + 11u);
  EXPECT_EQ(r.stats().lookups, 21u);
}

TEST_F(DnsResolverTest, MxHostAddressesAreSharedAcrossDomains) {
  Resolver& r = NewResolver();
  ASSERT_TRUE(Resolve(r, "multi.test").ok());
  EXPECT_EQ(r.stats().queries, 11u);
  absl::StatusOr<Site> shared = Resolve(r, "shared.test");
  ASSERT_TRUE(shared.ok()) << shared.status();
  ASSERT_EQ(shared->hosts.size(), 1u);
  EXPECT_EQ(shared->hosts[0].name, "mx1.multi.test");
  EXPECT_EQ(Addresses(shared->hosts[0]), (std::vector<std::string>{"127.0.0.11"}));
  EXPECT_EQ(r.stats().queries, 12u);         // only the MX query
  EXPECT_EQ(r.stats().host_cache_hits, 2u);  // A and AAAA of mx1
  EXPECT_EQ(shared->key, "mx1.multi.test:25");
}

TEST_F(DnsResolverTest, RoutingOverrideBypassesDns) {
  ResolverOptions options;
  ASSERT_TRUE(options.router.AddRoute("routed.example", "127.0.0.61:2525, [::1]:2526").ok());
  ASSERT_TRUE(options.router.AddRoute("*.smarthost.example", "smtp.relay.test:587").ok());
  Resolver& r = NewResolver(options);

  absl::StatusOr<Site> site = Resolve(r, "routed.example");
  ASSERT_TRUE(site.ok()) << site.status();
  EXPECT_TRUE(site->routed);
  ASSERT_EQ(site->hosts.size(), 2u);
  EXPECT_EQ(site->hosts[0].port, 2525);  // failover order kept
  EXPECT_EQ(Addresses(site->hosts[0]), (std::vector<std::string>{"127.0.0.61"}));
  EXPECT_EQ(site->hosts[1].port, 2526);
  EXPECT_EQ(Addresses(site->hosts[1]), (std::vector<std::string>{"::1"}));
  EXPECT_EQ(site->key, "127.0.0.61:2525,[::1]:2526");
  EXPECT_EQ(r.stats().queries, 0u);  // DNS never asked

  // A host-name target is resolved (A/AAAA only, no MX query) and cached.
  absl::StatusOr<Site> relayed = Resolve(r, "a.smarthost.example");
  ASSERT_TRUE(relayed.ok()) << relayed.status();
  EXPECT_TRUE(relayed->routed);
  EXPECT_EQ(relayed->domain, "a.smarthost.example");
  ASSERT_EQ(relayed->hosts.size(), 1u);
  EXPECT_EQ(relayed->hosts[0].name, "smtp.relay.test");
  EXPECT_EQ(relayed->hosts[0].port, 587);
  EXPECT_EQ(Addresses(relayed->hosts[0]), (std::vector<std::string>{"127.0.0.51"}));
  EXPECT_EQ(r.stats().queries, 2u);
  absl::StatusOr<Site> other = Resolve(r, "b.smarthost.example");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->domain, "b.smarthost.example");
  EXPECT_EQ(other->key, relayed->key);  // same site, same shard
  EXPECT_EQ(r.stats().queries, 2u);

  // Synchronous fast path.
  std::optional<absl::StatusOr<Site>> quick = r.TryResolveMxNow("routed.example");
  ASSERT_TRUE(quick.has_value() && quick->ok());
  EXPECT_FALSE(r.TryResolveMxNow("multi.test").has_value());
}

TEST_F(DnsResolverTest, LargeMxSetArrivesOverTcpAfterTruncation) {
  // 40 MX records with long names do not fit in a 1232-byte UDP answer:
  // unbound truncates, c-ares retries over TCP (connect, POLLOUT, then reads).
  std::string lines = Zones("127.0.0.31", "old");
  lines += "  local-zone: \"big.test.\" static\n";
  const std::string pad(40, 'x');
  for (int i = 0; i < 40; ++i) {
    const std::string host = "mx-" + pad + "-" + std::to_string(i) + ".big.test.";
    lines += "  local-data: \"big.test. 300 IN MX " + std::to_string(i) + " " + host + "\"\n";
    lines += "  local-data: \"" + host + " 300 IN A 127.0.1." + std::to_string(i + 1) + "\"\n";
  }
  ASSERT_TRUE(server_->Reload(lines, ReadTestData("forward.conf")).ok());
  Resolver& r = NewResolver();
  absl::StatusOr<Site> site = Resolve(r, "big.test");
  ASSERT_TRUE(site.ok()) << site.status();
  ASSERT_EQ(site->hosts.size(), 10u);  // max_mx_hosts
  for (size_t i = 0; i < site->hosts.size(); ++i) {
    EXPECT_EQ(site->hosts[i].preference, i);
    EXPECT_EQ(Addresses(site->hosts[i]),
              (std::vector<std::string>{"127.0.1." + std::to_string(i + 1)}));
  }
}

// A DNS "server" in a thread that answers every query with a well-formed
// header and question but a broken answer section.
class HostileDnsServer {
 public:
  HostileDnsServer() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    timeval tv{0, 50'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    thread_ = std::thread([this] { Serve(); });
  }
  ~HostileDnsServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int answered() const { return answered_; }

 private:
  void Serve() {
    for (int i = 0; i < 400 && !stop_; ++i) {  // bounded: 400 x 50 ms
      uint8_t buf[512];
      sockaddr_in from{};
      socklen_t from_len = sizeof(from);
      const ssize_t n =
          ::recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 12) continue;
      // Keep id and question (c-ares checks both); strip EDNS (ARCOUNT=0).
      size_t q = 12;
      while (q < static_cast<size_t>(n) && buf[q] != 0) q += buf[q] + 1;
      q += 5;
      if (q > static_cast<size_t>(n)) continue;
      std::vector<uint8_t> out(buf, buf + q);
      out[2] = 0x81;
      out[3] = 0x80;
      out[6] = 0;
      out[7] = 1;  // ANCOUNT 1
      out[10] = 0;
      out[11] = 0;
      // The answer's owner name is a pointer loop (points at itself).
      const uint16_t self = static_cast<uint16_t>(0xC000 | out.size());
      out.push_back(static_cast<uint8_t>(self >> 8));
      out.push_back(static_cast<uint8_t>(self));
      out.insert(out.end(), {0, 15, 0, 1, 0, 0, 1, 44, 0, 4, 0, 10, 0xC0, 12});
      ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
      ++answered_;
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> answered_{0};
  std::thread thread_;
};

TEST_F(DnsResolverTest, MalformedAnswerIsTemporaryNotACrash) {
  HostileDnsServer hostile;
  ResolverOptions options;
  options.servers = {hostile.address()};
  // Generous: the server answers at once, but on a loaded machine its thread
  // may not run within 500 ms, and a timeout is not what this test is about.
  options.timeout = 3s;
  options.tries = 1;
  absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(reactor_.get(), options);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<Site> site = Resolve(**r, "victim.test");
  ASSERT_FALSE(site.ok());
  EXPECT_EQ(site.status().code(), absl::StatusCode::kUnavailable) << site.status();
  EXPECT_NE(site.status().message().find("malformed DNS answer"), absl::string_view::npos)
      << site.status();
  EXPECT_NE(site.status().message().find("pointer"), absl::string_view::npos) << site.status();
  EXPECT_GE(hostile.answered(), 1);
  r->reset();
}

TEST_F(DnsResolverTest, BadInputAndBadServersGiveClearErrors) {
  Resolver& r = NewResolver();
  absl::StatusOr<Site> bad = Resolve(r, "not a domain");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("not a domain"), absl::string_view::npos);

  ResolverOptions options;
  options.servers = {"dns.example.com"};
  absl::StatusOr<std::unique_ptr<Resolver>> broken = Resolver::Create(reactor_.get(), options);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("dns.example.com"), absl::string_view::npos);
}

TEST_F(DnsResolverTest, DeadServerFailsTemporarilyAndNeverReentersTheCaller) {
  // A loopback port nobody listens on: the query is refused (ICMP port
  // unreachable) or times out; either way a temporary failure, delivered on a
  // later loop turn.
  int probe = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::getsockname(probe, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  ::close(probe);
  const std::string dead = "127.0.0.1:" + std::to_string(ntohs(sin.sin_port));
  ResolverOptions options;
  options.servers = {dead};
  options.timeout = 300ms;
  options.tries = 1;
  absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(reactor_.get(), options);
  ASSERT_TRUE(r.ok()) << r.status();
  bool returned = false;
  bool called_inside = false;
  std::optional<absl::StatusOr<Site>> out;
  (*r)->ResolveMx("multi.test", [&](absl::StatusOr<Site> s) {
    called_inside = !returned;
    out = std::move(s);
    reactor_->Stop();
  });
  returned = true;
  const reactor::TimerId guard = reactor_->RunAfter(5s, [&] { reactor_->Stop(); });
  reactor_->Run();
  reactor_->CancelTimer(guard);
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(called_inside);
  ASSERT_FALSE(out->ok());
  EXPECT_EQ(out->status().code(), absl::StatusCode::kUnavailable) << out->status();
  EXPECT_NE(out->status().message().find(dead), absl::string_view::npos) << out->status();
  r->reset();
}

TEST_F(DnsResolverTest, WorksOnAShardThreadReachedThroughPost) {
  // The engine's pattern: a shard thread owns its reactor and resolver; other
  // threads reach them only through Reactor::Post.
  struct Shard {
    reactor::Reactor* loop = nullptr;
    Resolver* resolver = nullptr;
    std::string error;
  };
  std::promise<Shard> ready;
  std::promise<absl::StatusOr<Site>> answer;
  const std::string server = server_->address();
  std::thread thread([&] {
    absl::StatusOr<std::unique_ptr<reactor::Reactor>> loop = reactor::Reactor::Create();
    if (!loop.ok()) return ready.set_value({nullptr, nullptr, loop.status().ToString()});
    ResolverOptions options;
    options.servers = {server};
    absl::StatusOr<std::unique_ptr<Resolver>> resolver = Resolver::Create(loop->get(), options);
    if (!resolver.ok()) return ready.set_value({nullptr, nullptr, resolver.status().ToString()});
    reactor::Reactor* l = loop->get();
    l->RunAfter(10s, [l] { l->Stop(); });  // bound
    ready.set_value({l, resolver->get(), ""});
    l->Run();
    resolver->reset();  // before the reactor, on the shard thread
  });
  Shard shard = ready.get_future().get();
  if (shard.loop == nullptr) {
    thread.join();
    FAIL() << shard.error;
  }
  std::future<absl::StatusOr<Site>> result = answer.get_future();
  shard.loop->Post([&answer, shard] {
    shard.resolver->ResolveMx("multi.test", [&answer, shard](absl::StatusOr<Site> s) {
      answer.set_value(std::move(s));
      shard.loop->Stop();
    });
  });
  const bool answered = result.wait_for(10s) == std::future_status::ready;
  thread.join();
  ASSERT_TRUE(answered);
  absl::StatusOr<Site> site = result.get();
  ASSERT_TRUE(site.ok()) << site.status();
  EXPECT_EQ(site->hosts.size(), 5u);
}

TEST_F(DnsResolverTest, DestroyingWithLookupsInFlightIsClean) {
  ResolverOptions options;
  options.servers = {server_->address()};
  options.timeout = 300ms;
  options.tries = 1;
  absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(reactor_.get(), options);
  ASSERT_TRUE(r.ok());
  bool called = false;
  (*r)->ResolveMx("drop.test", [&](absl::StatusOr<Site>) { called = true; });
  (*r)->ResolveMx("multi.test", [&](absl::StatusOr<Site>) { called = true; });
  r->reset();
  // Run the loop a little: late completions for the closed sockets must not
  // touch the destroyed resolver.
  reactor_->RunAfter(400ms, [&] { reactor_->Stop(); });
  reactor_->Run();
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace salvo::dns
