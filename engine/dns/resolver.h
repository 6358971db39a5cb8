#pragma once
// MX resolution for the delivery engine: c-ares with its sockets polled
// through the shard's io_uring reactor, a per-shard TTL cache, and routing
// overrides.
//
// Threading: a Resolver is created on, owned by and used only from its shard
// thread (the thread running its Reactor). Callbacks run on that thread from
// inside Reactor::Run(), never from inside ResolveMx itself. Destroy the
// Resolver before its Reactor; callbacks still pending then are destroyed
// without being called.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/dns/cache.h"
#include "engine/dns/router.h"
#include "engine/dns/site.h"
#include "engine/reactor/reactor.h"

namespace salvo::dns {

struct Message;
struct ResolverTrampolines;
using MxCallback = absl::AnyInvocable<void(absl::StatusOr<Site> result)>;

// The seam the delivery engine depends on.
class MxResolver {
 public:
  virtual ~MxResolver() = default;
  // Resolves where mail for `domain` goes. On success the Site lists MX hosts
  // in try order (preference, random order among equal preference) with their
  // addresses. On failure the status is permanent (kNotFound: NXDOMAIN or no
  // address; kFailedPrecondition: null MX; kInvalidArgument: not a domain
  // name) or temporary (kUnavailable: SERVFAIL, REFUSED, timeout, malformed
  // answer); its message names the domain and the cause. See
  // FailureOf / IsPermanentDnsFailure in site.h.
  virtual void ResolveMx(std::string_view domain, MxCallback callback) = 0;
};

struct ResolverOptions {
  // DNS servers as "ip", "ip:port" or "[ipv6]:port" (port 53 by default).
  // Empty: the system's /etc/resolv.conf. Tests always set them.
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{2000};  // first try; c-ares backs off on later tries
  int tries = 2;                            // per server
  bool edns = true;                         // EDNS0, 1232-byte UDP payload
  bool ipv4 = true;                         // ask A records
  bool ipv6 = true;                         // ask AAAA records
  bool prefer_ipv6 = false;                 // order of addresses within one host
  size_t max_mx_hosts = 10;                 // more MX records than this are ignored
  // Positive answers are cached for min(MX TTL, address TTLs) clamped to
  // [min_ttl, max_ttl]. NXDOMAIN, null MX and "no address" are cached for the
  // SOA negative TTL (RFC 2308) clamped to max_negative_ttl, or for
  // negative_ttl when the answer has no SOA; max_ttl caps both, so max_ttl = 0
  // disables the cache. Temporary failures are not cached.
  std::chrono::seconds min_ttl{0};
  std::chrono::seconds max_ttl{86400};
  std::chrono::seconds negative_ttl{60};
  std::chrono::seconds max_negative_ttl{3600};
  size_t cache_entries = 100'000;
  uint64_t seed = 0;  // equal-preference shuffling; 0 = random
  Router router;      // overrides: a routed domain never touches DNS
};

class Resolver final : public MxResolver {
 public:
  struct Stats {
    uint64_t lookups = 0;          // ResolveMx calls
    uint64_t cache_hits = 0;       // answered from the cache
    uint64_t host_cache_hits = 0;  // MX host addresses reused from another lookup
    uint64_t routed = 0;           // answered by a Router override
    uint64_t queries = 0;          // DNS queries sent (MX, A, AAAA)
    uint64_t temporary_failures = 0;
    uint64_t permanent_failures = 0;
  };

  // Fails with kInvalidArgument naming a bad server address, or kInternal if
  // c-ares cannot be initialised.
  static absl::StatusOr<std::unique_ptr<Resolver>> Create(reactor::Reactor* reactor,
                                                          ResolverOptions options);
  ~Resolver() override;
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  void ResolveMx(std::string_view domain, MxCallback callback) override;

  // Synchronous fast path: the answer if it is cached or routed to IP
  // literals, without any I/O; std::nullopt means "call ResolveMx".
  std::optional<absl::StatusOr<Site>> TryResolveMxNow(std::string_view domain);

  void ClearCache() { cache_.Clear(); }
  const Stats& stats() const { return stats_; }

 private:
  friend struct ResolverTrampolines;
  struct Lookup;
  struct Query;
  struct Watch {
    bool want_read = false;
    bool want_write = false;
    bool armed = false;
    uint64_t generation = 0;
  };

  Resolver(reactor::Reactor* reactor, ResolverOptions options);
  absl::Status Init();

  // c-ares plumbing (static trampolines in resolver.cc call these).
  void OnSocketState(int fd, bool readable, bool writable);
  void OnSocketClose(int fd);
  void ArmPoll(int fd, Watch& watch);
  void OnPollReady(int fd, uint64_t generation, int res);
  void UpdateTimer();
  void SendQuery(Lookup* lookup, int host_index, uint16_t type);
  static void OnAnswer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void HandleAnswer(Query* query, int status, const unsigned char* abuf, int alen);

  // Lookup state machine.
  void StartMx(Lookup* lookup);
  void HandleMx(Lookup* lookup, int status, const unsigned char* abuf, int alen);
  void StartAddresses(Lookup* lookup);
  void HandleAddress(Lookup* lookup, int host_index, uint16_t type, int status,
                     const unsigned char* abuf, int alen);
  void QueryDone(Lookup* lookup);
  void CacheNoAddress(const Message& msg, uint16_t type, const std::string& host);
  void Finish(Lookup* lookup, absl::StatusOr<Site> result, std::chrono::seconds cache_ttl);
  void Deliver(MxCallback callback, std::string_view domain, absl::StatusOr<Site> result);
  absl::StatusOr<Site> Prepare(std::string_view domain, absl::StatusOr<Site> result);
  std::optional<absl::StatusOr<Site>> RoutedSite(std::string_view domain,
                                                 const std::vector<RouteTarget>& targets);
  std::chrono::seconds ClampNegative(std::optional<uint32_t> soa_ttl) const;

  reactor::Reactor* reactor_;
  ResolverOptions options_;
  void* channel_ = nullptr;      // ares_channel
  std::string servers_text_;     // for error messages
  std::shared_ptr<bool> alive_;  // reactor callbacks check this before touching *this
  absl::flat_hash_map<int, Watch> watches_;
  uint64_t poll_generation_ = 0;
  reactor::TimerId timer_ = 0;
  SiteCache cache_;
  // In-flight lookups by cache key; later requests for the same key join.
  absl::flat_hash_map<std::string, std::unique_ptr<Lookup>> lookups_;
  int sync_depth_ = 0;  // > 0 while ResolveMx is on the stack
  std::mt19937_64 rng_;
  Stats stats_;
};

}  // namespace salvo::dns
