#pragma once
// A small in-process SMTP server for the delivery unit tests: one accept
// thread plus one thread per connection, blocking sockets on loopback. It
// speaks just enough ESMTP (EHLO with PIPELINING, MAIL/RCPT/DATA/RSET/NOOP/
// QUIT) and records what it received. Behaviour knobs let tests make it
// reject recipients, stall before the final reply, or refuse at greeting.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace salvo::testing {

struct TestSmtpServerOptions {
  std::string address = "127.0.0.1";
  std::string greeting = "220 test ESMTP";
  // RCPTs whose address contains this get "550 5.1.1 no such user".
  std::string reject_substring = "reject";
  // Delay before answering the final dot.
  std::chrono::milliseconds final_delay{0};
};

class TestSmtpServer {
 public:
  struct Message {
    std::string from;
    std::vector<std::string> rcpts;
    std::string data;
  };
  using Options = TestSmtpServerOptions;

  explicit TestSmtpServer(Options options = {}) : options_(std::move(options)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, options_.address.c_str(), &a.sin_addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 1024);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~TestSmtpServer() { Stop(); }

  void Stop() {
    if (stopped_.exchange(true)) return;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (int c : conns_) shutdown(c, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
  }

  std::string hostport() const { return options_.address + ":" + std::to_string(port_); }
  int port() const { return port_; }
  std::vector<Message> messages() const {
    std::lock_guard<std::mutex> l(mu_);
    return messages_;
  }
  size_t message_count() const {
    std::lock_guard<std::mutex> l(mu_);
    return messages_.size();
  }
  int connections() const { return connections_.load(); }
  // Transactions whose final dot arrived (answered or not).
  int dots_seen() const { return dots_.load(); }
  void set_final_delay(std::chrono::milliseconds d) { final_delay_ms_.store(d.count()); }

 private:
  void AcceptLoop() {
    final_delay_ms_.store(options_.final_delay.count());
    while (!stopped_.load()) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stopped_.load()) return;
        continue;
      }
      connections_++;
      std::lock_guard<std::mutex> l(mu_);
      conns_.push_back(c);
      threads_.emplace_back([this, c] { Serve(c); });
    }
  }

  static bool SendAll(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  void Serve(int fd) {
    std::string in, reply;
    Message cur;
    bool in_data = false;
    SendAll(fd, options_.greeting + "\r\n");
    if (options_.greeting.rfind("220", 0) != 0) {
      close(fd);
      return;
    }
    char buf[16384];
    while (true) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      size_t pos;
      reply.clear();
      bool quit = false;
      while ((pos = in.find("\r\n")) != std::string::npos) {
        std::string line = in.substr(0, pos);
        in.erase(0, pos + 2);
        if (in_data) {
          if (line == ".") {
            in_data = false;
            dots_++;
            if (!reply.empty()) {
              SendAll(fd, reply);
              reply.clear();
            }
            auto d = final_delay_ms_.load();
            if (d > 0) {
              // Stall, but notice if the client goes away.
              pollfd p{fd, POLLIN, 0};
              int r = poll(&p, 1, static_cast<int>(d));
              if (r != 0) {
                char tmp[64];
                if (recv(fd, tmp, sizeof tmp, MSG_PEEK | MSG_DONTWAIT) <= 0) goto out;
              }
            }
            {
              std::lock_guard<std::mutex> l(mu_);
              messages_.push_back(cur);
            }
            reply += "250 2.0.0 queued\r\n";
            cur = Message{};
          } else {
            if (!line.empty() && line[0] == '.') line.erase(0, 1);
            cur.data += line + "\r\n";
          }
          continue;
        }
        std::string up = line.substr(0, 4);
        for (char& ch : up) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
        if (up == "EHLO")
          reply += "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
        else if (up == "HELO")
          reply += "250 test\r\n";
        else if (up == "MAIL") {
          cur = Message{};
          size_t lt = line.find('<'), gt = line.find('>');
          cur.from = line.substr(lt + 1, gt - lt - 1);
          reply += "250 2.1.0 ok\r\n";
        } else if (up == "RCPT") {
          size_t lt = line.find('<'), gt = line.find('>');
          std::string rcpt = line.substr(lt + 1, gt - lt - 1);
          if (!options_.reject_substring.empty() &&
              rcpt.find(options_.reject_substring) != std::string::npos) {
            reply += "550 5.1.1 no such user\r\n";
          } else {
            cur.rcpts.push_back(rcpt);
            reply += "250 2.1.5 ok\r\n";
          }
        } else if (up == "DATA") {
          if (cur.rcpts.empty())
            reply += "554 5.5.1 no valid recipients\r\n";
          else {
            reply += "354 go ahead\r\n";
            in_data = true;
          }
        } else if (up == "RSET") {
          cur = Message{};
          reply += "250 ok\r\n";
        } else if (up == "NOOP")
          reply += "250 ok\r\n";
        else if (up == "QUIT") {
          reply += "221 bye\r\n";
          quit = true;
          break;
        } else
          reply += "500 5.5.2 what\r\n";
      }
      if (!reply.empty() && !SendAll(fd, reply)) break;
      if (quit) break;
    }
  out:
    std::lock_guard<std::mutex> l(mu_);
    for (int& c : conns_)
      if (c == fd) c = -1;
    close(fd);
  }

  Options options_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopped_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> dots_{0};
  std::atomic<long> final_delay_ms_{0};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
  std::vector<Message> messages_;
};

}  // namespace salvo::testing
