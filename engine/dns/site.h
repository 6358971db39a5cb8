#pragma once
// What a destination domain resolves to: a Site, the ordered MX hosts with
// their addresses, plus the stable key that assigns the site to one shard.
// Plain values, freely copied between threads (e.g. in a cross-shard message).
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::dns {

// An IPv4 or IPv6 address (no port).
class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress V4(const uint8_t bytes[4]);
  static IpAddress V6(const uint8_t bytes[16]);
  // Parses "192.0.2.1" or "2001:db8::1" (no brackets); false if it is neither.
  static bool Parse(std::string_view text, IpAddress* out);

  int family() const { return family_; }  // AF_INET or AF_INET6; 0 when unset
  bool is_v6() const { return family_ == AF_INET6; }
  std::string ToString() const;
  // Fills `out` with this address and `port`; returns the sockaddr length.
  socklen_t ToSockaddr(uint16_t port, sockaddr_storage* out) const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) {
    return a.family_ == b.family_ && a.bytes_ == b.bytes_;
  }

 private:
  int family_ = 0;
  std::array<uint8_t, 16> bytes_{};
};

// One mail exchanger of a site, in the order it should be tried.
struct MxHost {
  std::string name;  // lower-case host name, or the IP literal of a route target
  uint16_t preference = 0;
  uint16_t port = 25;
  std::vector<IpAddress> addresses;  // IPv4 first then IPv6 (ResolverOptions decides)
};

// The MX set a destination domain rolls up to.
struct Site {
  std::string domain;         // the domain that was asked for (lower-case)
  std::vector<MxHost> hosts;  // in try order: preference, random among equals
  bool implicit_mx = false;   // no MX records: the domain's own A/AAAA (RFC 5321 5.1)
  bool routed = false;        // a Router override decided the hosts; DNS not asked
  uint32_t ttl_seconds = 0;   // how long this answer may be reused
  // Stable identity of the site: sorted, de-duplicated "host:port" list of its
  // hosts. Domains sharing an MX set share a key, hence a shard.
  std::string key;
};

// Sorts by preference, shuffles each run of equal preference with `rng`
// (RFC 5321 5.1: spread load among equal-preference MX hosts).
void OrderMxHosts(std::vector<MxHost>& hosts, std::mt19937_64& rng);

// Builds Site::key from the hosts (order-independent).
std::string SiteKey(const std::vector<MxHost>& hosts);

// The shard that owns a site: FNV-1a 64 of the key modulo shard_count. Stable
// across processes and builds (unlike absl::Hash), so logs and restarts agree.
unsigned ShardForSite(std::string_view site_key, unsigned shard_count);

// --- Failure types ---
// Every failed ResolveMx status carries its cause as a smtp::DnsFailure (a
// status payload), so the one failure module (engine/smtp/failure_scope)
// maps it, as it maps SMTP replies: smtp::OutcomeForDnsFailure(FailureOf(s),
// domain, s.message()). The status code follows the cause: kNotFound
// (NXDOMAIN, no address), kFailedPrecondition (null MX), kInvalidArgument
// (not a domain name), kUnavailable (SERVFAIL, REFUSED, timeouts, malformed
// answers, addresses not found yet).
absl::Status DnsError(smtp::DnsFailure failure, absl::string_view message);
// The cause of a failed resolution; for a status not made by DnsError, a
// guess from its code (kNotFound: NXDOMAIN, else SERVFAIL).
smtp::DnsFailure FailureOf(const absl::Status& status);
// True when retrying cannot help (the outcome is a bounce).
bool IsPermanentDnsFailure(const absl::Status& status);

}  // namespace salvo::dns
