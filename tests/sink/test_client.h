#pragma once
// A small blocking SMTP client for the sink tests: raw sockets, bounded waits.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace salvo::sink::testing {

class RawClient {
 public:
  RawClient() = default;
  ~RawClient() { Close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  RawClient(RawClient&& o) noexcept : fd_(o.fd_), buf_(std::move(o.buf_)) { o.fd_ = -1; }

  bool Connect(const std::string& host, uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    return connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  bool Send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads until `count` final reply lines ("NNN " prefix) arrived or the
  // peer closed or `timeout` passed; returns their codes.
  std::vector<int> ReadReplies(size_t count,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::vector<int> codes;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) != std::string::npos) {
        std::string line = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        lines_.push_back(line);
        if (line.size() >= 4 && line[3] == ' ') codes.push_back(std::stoi(line.substr(0, 3)));
        if (codes.size() == count) return codes;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return codes;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return codes;
      char tmp[4096];
      ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) {
        closed_ = true;
        return codes;
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  bool peer_closed() const { return closed_; }
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  int fd_ = -1;
  std::string buf_;
  std::vector<std::string> lines_;
  bool closed_ = false;
};

}  // namespace salvo::sink::testing
