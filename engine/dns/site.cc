#include "engine/dns/site.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/hash.h"
#include "engine/common/log.h"

namespace salvo::dns {

IpAddress IpAddress::V4(const uint8_t bytes[4]) {
  IpAddress a;
  a.family_ = AF_INET;
  std::memcpy(a.bytes_.data(), bytes, 4);
  return a;
}

IpAddress IpAddress::V6(const uint8_t bytes[16]) {
  IpAddress a;
  a.family_ = AF_INET6;
  std::memcpy(a.bytes_.data(), bytes, 16);
  return a;
}

bool IpAddress::Parse(std::string_view text, IpAddress* out) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return false;
  const std::string s(text);
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
    *out = V4(buf);
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    *out = V6(buf);
    return true;
  }
  return false;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family_ == 0 || inet_ntop(family_, bytes_.data(), buf, sizeof(buf)) == nullptr) return "";
  return buf;
}

socklen_t IpAddress::ToSockaddr(uint16_t port, sockaddr_storage* out) const {
  std::memset(out, 0, sizeof(*out));
  if (family_ == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, bytes_.data(), 4);
    return sizeof(sockaddr_in);
  }
  SALVO_CHECK(family_ == AF_INET6);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, bytes_.data(), 16);
  return sizeof(sockaddr_in6);
}

void OrderMxHosts(std::vector<MxHost>& hosts, std::mt19937_64& rng) {
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
  auto run = hosts.begin();
  while (run != hosts.end()) {
    auto end = std::find_if(run, hosts.end(),
                            [&](const MxHost& h) { return h.preference != run->preference; });
    std::shuffle(run, end, rng);
    run = end;
  }
}

std::string SiteKey(const std::vector<MxHost>& hosts) {
  std::vector<std::string> parts;
  parts.reserve(hosts.size());
  for (const MxHost& h : hosts) {
    // Bracket IPv6 literals so the port separator stays unambiguous.
    const bool v6_literal = h.name.find(':') != std::string::npos;
    parts.push_back(v6_literal ? absl::StrCat("[", h.name, "]:", h.port)
                               : absl::StrCat(h.name, ":", h.port));
  }
  std::sort(parts.begin(), parts.end());
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  return absl::StrJoin(parts, ",");
}

unsigned ShardForSite(std::string_view site_key, unsigned shard_count) {
  SALVO_CHECK(shard_count > 0);
  return static_cast<unsigned>(Fnv1a64(site_key) % shard_count);
}

namespace {
constexpr char kFailurePayload[] = "type.salvo.dev/dns-failure";
}  // namespace

absl::Status DnsError(smtp::DnsFailure failure, absl::string_view message) {
  absl::StatusCode code = absl::StatusCode::kUnavailable;
  switch (failure) {
    case smtp::DnsFailure::kNxDomain:
    case smtp::DnsFailure::kNoAddress:
      code = absl::StatusCode::kNotFound;
      break;
    case smtp::DnsFailure::kNullMx:
      code = absl::StatusCode::kFailedPrecondition;
      break;
    case smtp::DnsFailure::kInvalidName:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case smtp::DnsFailure::kNoAddressYet:
    case smtp::DnsFailure::kServFail:
    case smtp::DnsFailure::kTimeout:
      break;
  }
  absl::Status s(code, message);
  s.SetPayload(kFailurePayload, absl::Cord(std::string(1, static_cast<char>(failure))));
  return s;
}

smtp::DnsFailure FailureOf(const absl::Status& status) {
  if (auto p = status.GetPayload(kFailurePayload); p && p->size() == 1)
    return static_cast<smtp::DnsFailure>(static_cast<uint8_t>((*p)[0]));
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return smtp::DnsFailure::kNxDomain;
    case absl::StatusCode::kFailedPrecondition:
      return smtp::DnsFailure::kNullMx;
    case absl::StatusCode::kInvalidArgument:
      return smtp::DnsFailure::kInvalidName;
    default:
      return smtp::DnsFailure::kServFail;
  }
}

bool IsPermanentDnsFailure(const absl::Status& status) {
  switch (FailureOf(status)) {
    case smtp::DnsFailure::kNxDomain:
    case smtp::DnsFailure::kNullMx:
    case smtp::DnsFailure::kNoAddress:
    case smtp::DnsFailure::kInvalidName:
      return true;
    default:
      return false;
  }
}

}  // namespace salvo::dns
