#include "engine/delivery/site.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

#include "fmt/format.h"

namespace salvo::delivery {

uint64_t StableHash(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

int ShardFor(std::string_view key, int shard_count) {
  if (shard_count <= 1) return 0;
  return static_cast<int>(StableHash(key) % static_cast<uint64_t>(shard_count));
}

absl::StatusOr<std::shared_ptr<const SiteInfo>> MakeSite(const std::vector<std::string>& hosts,
                                                         std::string_view what) {
  auto site = std::make_shared<SiteInfo>();
  for (const std::string& text : hosts) {
    std::string host;
    int port;
    absl::Status s = config::SplitHostPort(text, 25, &host, &port);
    if (!s.ok())
      return absl::InvalidArgumentError(fmt::format("{}: {}", what, std::string(s.message())));
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string port_text = std::to_string(port);
    int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res);
    if (rc != 0) {
      return absl::InvalidArgumentError(
          fmt::format("{}: cannot resolve host '{}': {}", what, host, gai_strerror(rc)));
    }
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      SiteHost h;
      h.name = host;
      std::memcpy(&h.addr, ai->ai_addr, ai->ai_addrlen);
      h.addr_len = ai->ai_addrlen;
      char ip[INET6_ADDRSTRLEN] = "?";
      if (ai->ai_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, ip, sizeof ip);
      else if (ai->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, ip,
                  sizeof ip);
      h.label = (host == ip) ? fmt::format("[{}]:{}", ip, port)
                             : fmt::format("{}[{}]:{}", host, ip, port);
      bool dup = false;
      for (const SiteHost& o : site->hosts) dup |= o.label == h.label;
      if (!dup) site->hosts.push_back(std::move(h));
    }
    freeaddrinfo(res);
  }
  if (site->hosts.empty()) return absl::InvalidArgumentError(fmt::format("{}: no hosts", what));
  for (const SiteHost& h : site->hosts) {
    if (!site->key.empty()) site->key += ",";
    site->key += h.label;
  }
  return std::shared_ptr<const SiteInfo>(std::move(site));
}

}  // namespace salvo::delivery
