#include "engine/dns/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/log.h"
#include "engine/common/strings.h"
#include "engine/dns/message.h"

namespace salvo::dns {

struct Resolver::Lookup {
  std::string key;     // cache key: the domain, or "route:<targets>" for routed names
  std::string domain;  // the first requester's domain
  std::vector<std::pair<std::string, MxCallback>> waiters;  // (domain, callback)
  bool routed = false;
  bool implicit_mx = false;
  std::vector<MxHost> hosts;
  uint32_t ttl = std::numeric_limits<uint32_t>::max();  // min TTL seen
  std::optional<uint32_t> negative_ttl;                 // from an SOA, if any
  int pending = 0;                     // outstanding address queries (+1 while they are being sent)
  std::vector<std::string> temporary;  // notes on temporary per-host failures
  std::vector<std::string> permanent;  // notes on hosts that have no address
};

struct Resolver::Query {
  Resolver* resolver;
  Lookup* lookup;
  int host_index;  // -1: the MX query for lookup->domain
  uint16_t type;
};

namespace {

// Cache time is read from the clock, not Reactor::Now(): that is cached per
// loop turn and is stale when a lookup starts outside a callback.

constexpr int kClassIn = 1;
constexpr uint16_t kTypeA = static_cast<uint16_t>(RecordType::kA);
constexpr uint16_t kTypeAaaa = static_cast<uint16_t>(RecordType::kAaaa);
constexpr uint16_t kTypeMx = static_cast<uint16_t>(RecordType::kMx);

// Cache key for one host's A or AAAA addresses; cannot collide with a
// domain key (a host name has no spaces).
std::string HostKey(uint16_t type, std::string_view host) {
  return absl::StrCat(type == 1 ? "A " : "AAAA ", Av(host));
}

ares_channel Channel(void* p) { return static_cast<ares_channel>(p); }

absl::string_view TypeName(uint16_t type) {
  switch (type) {
    case kTypeA:
      return "A";
    case kTypeAaaa:
      return "AAAA";
    case kTypeMx:
      return "MX";
    default:
      return "?";
  }
}

// Why a query produced no answer packet at all, in words.
std::string TransportFailure(int status) {
  switch (status) {
    case ARES_ETIMEOUT:
      return "timed out";
    case ARES_ECONNREFUSED:
      return "the DNS server could not be reached (connection refused)";
    default:
      return ares_strerror(status);
  }
}

// Server list "ip", "ip:port", "[v6]:port" -> c-ares CSV "ip:port,[v6]:port".
absl::StatusOr<std::string> ServersCsv(const std::vector<std::string>& servers) {
  std::vector<std::string> out;
  for (const std::string& text : servers) {
    const bool has_port =
        (text.find(':') != std::string::npos && text.find(':') == text.rfind(':')) ||
        text.find("]:") != std::string::npos;
    absl::StatusOr<RouteTarget> t = ParseRouteTarget(text);
    if (!t.ok() || !t->is_ip_literal) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DNS server '", text,
          "' is not an IP address with an optional port (e.g. 127.0.0.1:53, [::1]:53)"));
    }
    if (!has_port) t->port = 53;
    out.push_back(t->ToString());
  }
  return absl::StrJoin(out, ",");
}

// ---- c-ares socket functions: sockets are ours, closes go through the reactor. ----
ares_socket_t SockOpen(int domain, int type, int protocol, void*) {
  // c-ares leaves sockets from custom socket functions as they are: they must
  // be non-blocking or a read would stall the shard thread.
  return ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}
int SockConnect(ares_socket_t fd, const sockaddr* addr, ares_socklen_t len, void*) {
  return ::connect(fd, addr, len);
}
ares_ssize_t SockRecvFrom(ares_socket_t fd, void* buf, size_t len, int flags, sockaddr* from,
                          ares_socklen_t* from_len, void*) {
  return ::recvfrom(fd, buf, len, flags, from, from_len);
}
ares_ssize_t SockSendv(ares_socket_t fd, const iovec* iov, int iovcnt, void*) {
  return ::writev(fd, iov, iovcnt);
}

}  // namespace

// Static trampolines with access to the private members.
struct ResolverTrampolines {
  static void SocketState(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Resolver*>(data)->OnSocketState(fd, readable != 0, writable != 0);
  }
  static int SocketClose(ares_socket_t fd, void* data) {
    static_cast<Resolver*>(data)->OnSocketClose(fd);
    return 0;
  }
};

absl::StatusOr<std::unique_ptr<Resolver>> Resolver::Create(reactor::Reactor* reactor,
                                                           ResolverOptions options) {
  SALVO_CHECK(reactor != nullptr);
  std::unique_ptr<Resolver> r(new Resolver(reactor, std::move(options)));
  if (absl::Status s = r->Init(); !s.ok()) return s;
  return r;
}

Resolver::Resolver(reactor::Reactor* reactor, ResolverOptions options)
    : reactor_(reactor),
      options_(std::move(options)),
      alive_(std::make_shared<bool>(true)),
      cache_(options_.cache_entries),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

absl::Status Resolver::Init() {
  static std::once_flag library_once;
  static int library_status = ARES_SUCCESS;
  std::call_once(library_once, [] { library_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (library_status != ARES_SUCCESS) {
    return absl::InternalError(
        absl::StrCat("c-ares library init failed: ", ares_strerror(library_status)));
  }
  if (options_.tries < 1) return absl::InvalidArgumentError("DNS tries must be at least 1");
  if (options_.timeout.count() < 1) {
    return absl::InvalidArgumentError("DNS timeout must be at least 1 ms");
  }
  if (options_.min_ttl > options_.max_ttl || options_.min_ttl.count() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("DNS min_ttl (", options_.min_ttl.count(),
                                                   " s) must be between 0 and max_ttl (",
                                                   options_.max_ttl.count(), " s)"));
  }
  std::string csv;
  if (!options_.servers.empty()) {
    absl::StatusOr<std::string> parsed = ServersCsv(options_.servers);
    if (!parsed.ok()) return parsed.status();
    csv = *std::move(parsed);
  }

  ares_options opts{};
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  // NOCHECKRESP: hand SERVFAIL/REFUSED answers to us instead of folding them
  // into ARES_ECONNREFUSED. STAYOPEN: keep the UDP socket between lookups.
  opts.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_STAYOPEN;
  if (options_.edns) {
    opts.flags |= ARES_FLAG_EDNS;
    opts.ednspsz = 1232;
    mask |= ARES_OPT_EDNSPSZ;
  }
  opts.timeout = static_cast<int>(options_.timeout.count());
  opts.tries = options_.tries;
  opts.sock_state_cb = &ResolverTrampolines::SocketState;
  opts.sock_state_cb_data = this;
  ares_channel channel = nullptr;
  if (int rc = ares_init_options(&channel, &opts, mask); rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("c-ares channel init failed: ", ares_strerror(rc)));
  }
  channel_ = channel;
  static const ares_socket_functions kSocketFunctions = {
      &SockOpen, &ResolverTrampolines::SocketClose, &SockConnect, &SockRecvFrom, &SockSendv};
  ares_set_socket_functions(channel, &kSocketFunctions, this);
  if (!csv.empty()) {
    if (int rc = ares_set_servers_ports_csv(channel, csv.c_str()); rc != ARES_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrCat("DNS servers '", csv, "' rejected by c-ares: ", ares_strerror(rc)));
    }
    servers_text_ = csv;
  } else {
    ares_addr_port_node* nodes = nullptr;
    if (ares_get_servers_ports(channel, &nodes) == ARES_SUCCESS) {
      std::vector<std::string> names;
      for (ares_addr_port_node* n = nodes; n != nullptr; n = n->next) {
        char buf[INET6_ADDRSTRLEN] = {};
        inet_ntop(n->family, &n->addr, buf, sizeof(buf));
        names.push_back(absl::StrCat(buf, ":", n->udp_port == 0 ? 53 : n->udp_port));
      }
      ares_free_data(nodes);
      servers_text_ = absl::StrJoin(names, ",");
    }
  }
  return absl::OkStatus();
}

Resolver::~Resolver() {
  *alive_ = false;
  if (timer_ != 0) reactor_->CancelTimer(timer_);
  if (channel_ != nullptr) {
    // Pending queries end with ARES_EDESTRUCTION (their Query objects are
    // freed, their lookups' callbacks are not run); sockets close through the
    // reactor, whose late poll completions see alive_ == false.
    ares_destroy(Channel(channel_));
  }
  lookups_.clear();
}

// ---------------------------------------------------------------------------
// c-ares <-> reactor plumbing

void Resolver::OnSocketState(int fd, bool readable, bool writable) {
  if (!readable && !writable) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;
    if (it->second.armed) reactor_->CancelPoll(fd);  // its completion is ignored (generation)
    watches_.erase(it);
    return;
  }
  Watch& w = watches_[fd];
  if (w.armed && (w.want_read != readable || w.want_write != writable)) {
    reactor_->CancelPoll(fd);
    w.armed = false;
  }
  w.want_read = readable;
  w.want_write = writable;
  if (!w.armed) ArmPoll(fd, w);
}

void Resolver::OnSocketClose(int fd) {
  watches_.erase(fd);
  // Close through the reactor: it cancels our poll first, and the fd number
  // is not reused until every completion for it has run.
  reactor_->Close(fd);
}

void Resolver::ArmPoll(int fd, Watch& w) {
  const uint32_t mask = (w.want_read ? POLLIN : 0) | (w.want_write ? POLLOUT : 0);
  w.armed = true;
  // One counter for all fds: a completion of a watch that was erased and
  // re-created for the same fd can never pass for the new one.
  const uint64_t generation = ++poll_generation_;
  w.generation = generation;
  reactor_->PollAdd(fd, mask, [this, alive = alive_, fd, generation](int res) {
    if (!*alive) return;
    OnPollReady(fd, generation, res);
  });
}

void Resolver::OnPollReady(int fd, uint64_t generation, int res) {
  auto it = watches_.find(fd);
  if (it == watches_.end() || it->second.generation != generation) return;  // stale
  Watch& w = it->second;
  w.armed = false;
  if (res == -ECANCELED) {
    if (w.want_read || w.want_write) ArmPoll(fd, w);
    return;
  }
  ares_socket_t read_fd = ARES_SOCKET_BAD;
  ares_socket_t write_fd = ARES_SOCKET_BAD;
  // An error result or POLLERR/POLLHUP: let c-ares find out by reading.
  const bool trouble = res < 0 || (res & (POLLERR | POLLHUP)) != 0;
  if (w.want_read && (trouble || (res & POLLIN))) read_fd = fd;
  if (w.want_write && (trouble || (res & POLLOUT))) write_fd = fd;
  ares_process_fd(Channel(channel_), read_fd, write_fd);
  // The watch may have changed or gone inside ares_process_fd.
  auto again = watches_.find(fd);
  if (again != watches_.end() && !again->second.armed &&
      (again->second.want_read || again->second.want_write)) {
    ArmPoll(fd, again->second);
  }
  UpdateTimer();
}

void Resolver::UpdateTimer() {
  if (timer_ != 0) {
    reactor_->CancelTimer(timer_);
    timer_ = 0;
  }
  timeval tv{};
  if (ares_timeout(Channel(channel_), nullptr, &tv) == nullptr) return;  // nothing pending
  const auto delay = std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  timer_ = reactor_->RunAfter(
      std::max<reactor::Duration>(delay, std::chrono::milliseconds(1)), [this, alive = alive_] {
        if (!*alive) return;
        timer_ = 0;
        ares_process_fd(Channel(channel_), ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        UpdateTimer();
      });
}

void Resolver::SendQuery(Lookup* lookup, int host_index, uint16_t type) {
  const std::string& name = host_index < 0 ? lookup->domain : lookup->hosts[host_index].name;
  ++lookup->pending;
  ++stats_.queries;
  ares_query(Channel(channel_), name.c_str(), kClassIn, type, &Resolver::OnAnswer,
             new Query{this, lookup, host_index, type});
}

void Resolver::OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<Query> query(static_cast<Query*>(arg));
  if (status == ARES_EDESTRUCTION) return;  // the Resolver is being destroyed
  query->resolver->HandleAnswer(query.get(), status, abuf, alen);
}

void Resolver::HandleAnswer(Query* query, int status, const unsigned char* abuf, int alen) {
  if (query->host_index < 0) {
    --query->lookup->pending;
    HandleMx(query->lookup, status, abuf, alen);
  } else {
    HandleAddress(query->lookup, query->host_index, query->type, status, abuf, alen);
  }
}

// ---------------------------------------------------------------------------
// The lookup state machine: MX query, then A/AAAA for each host, then Finish.

void Resolver::ResolveMx(std::string_view domain_in, MxCallback callback) {
  ++stats_.lookups;
  absl::StatusOr<std::string> domain = NormalizeDomain(domain_in);
  if (!domain.ok()) {
    ++stats_.permanent_failures;
    reactor_->Post(
        [cb = std::move(callback), s = DnsError(smtp::DnsFailure::kInvalidName,
                                                domain.status().message())]() mutable { cb(s); });
    return;
  }
  if (std::optional<absl::StatusOr<Site>> now = TryResolveMxNow(*domain)) {
    reactor_->Post([cb = std::move(callback), r = *std::move(now)]() mutable { cb(std::move(r)); });
    return;
  }
  // Not cached: join an in-flight lookup or start one.
  const std::vector<RouteTarget>* route = options_.router.Lookup(*domain);
  std::string key = *domain;
  if (route != nullptr) {
    std::vector<std::string> parts;
    for (const RouteTarget& t : *route) parts.push_back(t.ToString());
    key = absl::StrCat("route:", absl::StrJoin(parts, ","));
  }
  if (auto it = lookups_.find(key); it != lookups_.end()) {
    it->second->waiters.emplace_back(*domain, std::move(callback));
    return;
  }
  auto owned = std::make_unique<Lookup>();
  Lookup* lookup = owned.get();
  lookup->key = key;
  lookup->domain = *domain;
  lookup->waiters.emplace_back(*domain, std::move(callback));
  lookups_.emplace(key, std::move(owned));
  // c-ares may fail a query synchronously (e.g. no usable server): Finish then
  // posts the callbacks instead of running them inside ResolveMx.
  ++sync_depth_;
  if (route != nullptr) {
    lookup->routed = true;
    for (size_t i = 0; i < route->size(); ++i) {
      const RouteTarget& t = (*route)[i];
      MxHost h{t.host, static_cast<uint16_t>(i), t.port, {}};
      IpAddress ip;
      if (t.is_ip_literal && IpAddress::Parse(t.host, &ip)) h.addresses.push_back(ip);
      lookup->hosts.push_back(std::move(h));
    }
    StartAddresses(lookup);
  } else {
    SendQuery(lookup, -1, kTypeMx);
  }
  --sync_depth_;
  UpdateTimer();
}

std::optional<absl::StatusOr<Site>> Resolver::TryResolveMxNow(std::string_view domain_in) {
  absl::StatusOr<std::string> domain = NormalizeDomain(domain_in);
  if (!domain.ok()) return DnsError(smtp::DnsFailure::kInvalidName, domain.status().message());
  if (const std::vector<RouteTarget>* route = options_.router.Lookup(*domain)) {
    if (std::optional<absl::StatusOr<Site>> site = RoutedSite(*domain, *route)) {
      ++stats_.routed;
      return site;
    }
    std::vector<std::string> parts;
    for (const RouteTarget& t : *route) parts.push_back(t.ToString());
    if (auto hit = cache_.Get(absl::StrCat("route:", absl::StrJoin(parts, ",")),
                              reactor_->clock()->Now())) {
      ++stats_.routed;
      return Prepare(*domain, *std::move(hit));
    }
    return std::nullopt;
  }
  if (auto hit = cache_.Get(*domain, reactor_->clock()->Now())) {
    ++stats_.cache_hits;
    return Prepare(*domain, *std::move(hit));
  }
  return std::nullopt;
}

std::optional<absl::StatusOr<Site>> Resolver::RoutedSite(std::string_view domain,
                                                         const std::vector<RouteTarget>& targets) {
  Site site;
  site.domain = std::string(domain);
  site.routed = true;
  site.ttl_seconds = static_cast<uint32_t>(options_.max_ttl.count());
  for (size_t i = 0; i < targets.size(); ++i) {
    IpAddress ip;
    if (!targets[i].is_ip_literal || !IpAddress::Parse(targets[i].host, &ip)) {
      return std::nullopt;  // a host name: needs DNS
    }
    site.hosts.push_back(MxHost{targets[i].host, static_cast<uint16_t>(i), targets[i].port, {ip}});
  }
  site.key = SiteKey(site.hosts);
  return site;
}

void Resolver::HandleMx(Lookup* lookup, int status, const unsigned char* abuf, int alen) {
  const std::string& d = lookup->domain;
  if (abuf == nullptr || alen <= 0) {
    Finish(
        lookup,
        DnsError(status == ARES_ETIMEOUT ? smtp::DnsFailure::kTimeout : smtp::DnsFailure::kServFail,
                 absl::StrCat("MX lookup for ", d, " failed: ", TransportFailure(status),
                              " (DNS servers ", servers_text_, ")")),
        std::chrono::seconds(0));
    return;
  }
  absl::StatusOr<Message> msg = ParseMessage({abuf, static_cast<size_t>(alen)});
  if (!msg.ok()) {
    Finish(lookup,
           DnsError(smtp::DnsFailure::kServFail,
                    absl::StrCat("MX lookup for ", d,
                                 ": malformed DNS answer: ", msg.status().message())),
           std::chrono::seconds(0));
    return;
  }
  std::optional<uint32_t> soa_ttl;
  if (uint32_t t; NegativeTtl(*msg, &t)) soa_ttl = t;
  if (msg->rcode == static_cast<uint8_t>(Rcode::kNxDomain)) {
    Finish(lookup,
           DnsError(smtp::DnsFailure::kNxDomain,
                    absl::StrCat("domain ", d, " does not exist (NXDOMAIN)")),
           ClampNegative(soa_ttl));
    return;
  }
  if (msg->rcode != static_cast<uint8_t>(Rcode::kNoError)) {
    Finish(lookup,
           DnsError(smtp::DnsFailure::kServFail,
                    absl::StrCat("MX lookup for ", d, ": DNS server answered ",
                                 RcodeName(msg->rcode), " (", servers_text_, ")")),
           std::chrono::seconds(0));
    return;
  }
  std::vector<const ResourceRecord*> mx;
  for (const ResourceRecord& rr : msg->answers) {
    if (rr.type == kTypeMx) mx.push_back(&rr);
  }
  if (mx.empty()) {
    // RFC 5321 5.1: no MX records, so the domain itself is the (implicit) MX.
    lookup->implicit_mx = true;
    lookup->negative_ttl = soa_ttl;
    lookup->ttl = static_cast<uint32_t>(ClampNegative(soa_ttl).count());
    lookup->hosts.push_back(MxHost{d, 0, 25, {}});
    StartAddresses(lookup);
    return;
  }
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  std::vector<MxHost> hosts;
  for (const ResourceRecord* rr : mx) {
    ttl = std::min(ttl, rr->ttl);
    if (rr->target.empty()) continue;  // "." : null MX, judged below
    auto same = std::find_if(hosts.begin(), hosts.end(),
                             [&](const MxHost& h) { return h.name == rr->target; });
    if (same != hosts.end()) {
      same->preference = std::min(same->preference, rr->preference);
    } else {
      hosts.push_back(MxHost{rr->target, rr->preference, 25, {}});
    }
  }
  if (hosts.empty()) {
    // RFC 7505: a single "MX 0 ." says the domain accepts no mail at all.
    Finish(lookup,
           DnsError(smtp::DnsFailure::kNullMx,
                    absl::StrCat("domain ", d,
                                 " does not accept mail: it publishes a null MX (RFC 7505)")),
           ClampNegative(ttl));
    return;
  }
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
  if (hosts.size() > options_.max_mx_hosts) hosts.resize(options_.max_mx_hosts);
  lookup->ttl = ttl;
  lookup->hosts = std::move(hosts);
  StartAddresses(lookup);
}

void Resolver::StartAddresses(Lookup* lookup) {
  ++lookup->pending;  // guard: a query may complete synchronously inside ares_query
  const SiteCache::TimePoint now = reactor_->clock()->Now();
  for (size_t i = 0; i < lookup->hosts.size(); ++i) {
    MxHost& host = lookup->hosts[i];
    if (!host.addresses.empty()) continue;  // an IP literal route target
    for (const uint16_t type : {kTypeA, kTypeAaaa}) {
      if (type == kTypeA ? !options_.ipv4 : !options_.ipv6) continue;
      // Many domains share MX hosts (hosted mail): reuse their addresses.
      if (auto hit = cache_.Get(HostKey(type, host.name), now); hit && hit->ok()) {
        ++stats_.host_cache_hits;
        const std::vector<IpAddress>& cached = (*hit)->hosts.at(0).addresses;
        if (cached.empty()) {  // negative entry: the host has no such record
          lookup->permanent.push_back(
              absl::StrCat(host.name, " ", TypeName(type), ": no record (cached)"));
          continue;
        }
        host.addresses.insert(host.addresses.end(), cached.begin(), cached.end());
        lookup->ttl = std::min(lookup->ttl, (*hit)->ttl_seconds);
        continue;
      }
      SendQuery(lookup, static_cast<int>(i), type);
    }
  }
  QueryDone(lookup);
}

void Resolver::HandleAddress(Lookup* lookup, int host_index, uint16_t type, int status,
                             const unsigned char* abuf, int alen) {
  MxHost& host = lookup->hosts[host_index];
  const std::string what = absl::StrCat(host.name, " ", TypeName(type));
  if (abuf == nullptr || alen <= 0) {
    lookup->temporary.push_back(absl::StrCat(what, ": ", TransportFailure(status)));
    return QueryDone(lookup);
  }
  absl::StatusOr<Message> msg = ParseMessage({abuf, static_cast<size_t>(alen)});
  if (!msg.ok()) {
    lookup->temporary.push_back(
        absl::StrCat(what, ": malformed DNS answer: ", msg.status().message()));
    return QueryDone(lookup);
  }
  if (msg->rcode == static_cast<uint8_t>(Rcode::kNxDomain)) {
    lookup->permanent.push_back(absl::StrCat(what, ": NXDOMAIN"));
    CacheNoAddress(*msg, type, host.name);
  } else if (msg->rcode != static_cast<uint8_t>(Rcode::kNoError)) {
    lookup->temporary.push_back(absl::StrCat(what, ": ", RcodeName(msg->rcode)));
  } else {
    const size_t want = type == kTypeA ? 4 : 16;
    size_t found = 0;
    for (const ResourceRecord& rr : msg->answers) {
      if (rr.type != type || rr.address.size() != want) continue;
      const IpAddress ip =
          type == kTypeA ? IpAddress::V4(rr.address.data()) : IpAddress::V6(rr.address.data());
      if (std::find(host.addresses.begin(), host.addresses.end(), ip) == host.addresses.end()) {
        host.addresses.push_back(ip);
      }
      lookup->ttl = std::min(lookup->ttl, rr.ttl);
      ++found;
    }
    if (found > 0) {
      // Remember this host's addresses of this type for other domains.
      uint32_t ttl = std::numeric_limits<uint32_t>::max();
      Site entry;
      entry.hosts.push_back(MxHost{host.name, 0, 25, {}});
      for (const ResourceRecord& rr : msg->answers) {
        if (rr.type != type || rr.address.size() != want) continue;
        entry.hosts[0].addresses.push_back(type == kTypeA ? IpAddress::V4(rr.address.data())
                                                          : IpAddress::V6(rr.address.data()));
        ttl = std::min(ttl, rr.ttl);
      }
      const auto cache_ttl =
          std::clamp(std::chrono::seconds(ttl), options_.min_ttl, options_.max_ttl);
      if (cache_ttl.count() > 0) {
        cache_.Put(HostKey(type, host.name), std::move(entry), cache_ttl, reactor_->clock()->Now());
      }
    }
    if (found == 0) {
      lookup->permanent.push_back(absl::StrCat(what, ": no record"));
      CacheNoAddress(*msg, type, host.name);
      if (uint32_t t;
          NegativeTtl(*msg, &t) && (!lookup->negative_ttl || t < *lookup->negative_ttl)) {
        lookup->negative_ttl = t;
      }
    }
  }
  QueryDone(lookup);
}

void Resolver::CacheNoAddress(const Message& msg, uint16_t type, const std::string& host) {
  std::optional<uint32_t> soa_ttl;
  if (uint32_t t; NegativeTtl(msg, &t)) soa_ttl = t;
  const std::chrono::seconds ttl = ClampNegative(soa_ttl);
  if (ttl.count() <= 0) return;
  Site entry;
  entry.hosts.push_back(MxHost{host, 0, 25, {}});
  cache_.Put(HostKey(type, host), std::move(entry), ttl, reactor_->clock()->Now());
}

void Resolver::QueryDone(Lookup* lookup) {
  if (--lookup->pending > 0) return;
  const std::string& d = lookup->domain;
  std::vector<MxHost> usable;
  for (MxHost& h : lookup->hosts) {
    if (h.addresses.empty()) continue;
    std::stable_partition(h.addresses.begin(), h.addresses.end(),
                          [&](const IpAddress& a) { return a.is_v6() == options_.prefer_ipv6; });
    usable.push_back(std::move(h));
  }
  if (usable.empty()) {
    std::vector<std::string> notes = lookup->temporary;
    notes.insert(notes.end(), lookup->permanent.begin(), lookup->permanent.end());
    const std::string why = absl::StrJoin(notes, "; ");
    if (!lookup->temporary.empty()) {
      Finish(lookup,
             DnsError(smtp::DnsFailure::kNoAddressYet,
                      absl::StrCat("no address found yet for mail to ", d, ": ", why)),
             std::chrono::seconds(0));
    } else if (lookup->implicit_mx) {
      Finish(lookup,
             DnsError(smtp::DnsFailure::kNoAddress,
                      absl::StrCat("domain ", d, " has no MX record and no A/AAAA address")),
             ClampNegative(lookup->negative_ttl));
    } else {
      Finish(lookup,
             DnsError(smtp::DnsFailure::kNoAddress,
                      absl::StrCat(lookup->routed ? "no route target" : "no MX host", " of ", d,
                                   " has an address: ", why)),
             ClampNegative(lookup->negative_ttl));
    }
    return;
  }
  auto ttl = std::chrono::seconds(lookup->ttl);
  ttl = std::clamp(ttl, options_.min_ttl, options_.max_ttl);
  // Some hosts failed temporarily: use what we have, but ask again soon.
  if (!lookup->temporary.empty()) ttl = std::min(ttl, options_.negative_ttl);
  Site site;
  site.domain = d;
  site.hosts = std::move(usable);
  site.implicit_mx = lookup->implicit_mx;
  site.routed = lookup->routed;
  site.ttl_seconds = static_cast<uint32_t>(ttl.count());
  site.key = SiteKey(site.hosts);
  Finish(lookup, std::move(site), ttl);
}

void Resolver::Finish(Lookup* lookup, absl::StatusOr<Site> result, std::chrono::seconds cache_ttl) {
  auto node = lookups_.extract(lookup->key);
  SALVO_CHECK(!node.empty());  // every unfinished lookup is in lookups_
  std::unique_ptr<Lookup> owned = std::move(node.mapped());
  if (!result.ok()) {
    ++(IsPermanentDnsFailure(result.status()) ? stats_.permanent_failures
                                              : stats_.temporary_failures);
    SALVO_LOG(kDebug, "dns: {}", std::string(result.status().message()));
  }
  if (cache_ttl.count() > 0) cache_.Put(owned->key, result, cache_ttl, reactor_->clock()->Now());
  for (auto& [domain, callback] : owned->waiters) {
    if (sync_depth_ > 0) {
      reactor_->Post(
          [cb = std::move(callback), r = Prepare(domain, result)]() mutable { cb(std::move(r)); });
    } else {
      callback(Prepare(domain, result));
    }
  }
}

absl::StatusOr<Site> Resolver::Prepare(std::string_view domain, absl::StatusOr<Site> result) {
  if (result.ok()) {
    result->domain = std::string(domain);
    OrderMxHosts(result->hosts, rng_);
  }
  return result;
}

std::chrono::seconds Resolver::ClampNegative(std::optional<uint32_t> soa_ttl) const {
  // max_ttl caps negative answers too, so max_ttl = 0 turns all caching off.
  const auto cap = std::min(options_.max_negative_ttl, options_.max_ttl);
  if (!soa_ttl) return std::min(options_.negative_ttl, cap);
  return std::min(std::chrono::seconds(*soa_ttl), cap);
}

}  // namespace salvo::dns
