#pragma once
// Loopback ports for tests: one free now (for a server that cannot bind
// port 0 and report it), or one with nothing listening (a dead peer).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace salvo::testsupport {

// Binds `ip`:0, reads the port, closes: the caller's server takes it next.
inline int FreePort(const std::string& ip = "127.0.0.1") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A port free for both UDP and TCP on 127.0.0.1 right now (a DNS server);
// 0 when none was found in 20 tries.
inline int FreeUdpAndTcpPort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    if (udp < 0 || bind(udp, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
        getsockname(udp, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
      if (udp >= 0) close(udp);
      continue;
    }
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool tcp_ok = tcp >= 0 && bind(tcp, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
    if (tcp >= 0) close(tcp);
    close(udp);
    if (tcp_ok) return ntohs(sin.sin_port);
  }
  return 0;
}

// "ip:port" with nothing listening.
inline std::string DeadHostPort(const std::string& ip) {
  return ip + ":" + std::to_string(FreePort(ip));
}

}  // namespace salvo::testsupport
