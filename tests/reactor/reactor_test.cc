// Reactor tests over real loopback sockets (no external processes).
#include "engine/reactor/reactor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::reactor {
namespace {

using std::chrono::milliseconds;

// A listening socket on 127.0.0.1 with a kernel-chosen port.
int Listen(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(listen(fd, 4096), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

int NewSocket() { return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

std::unique_ptr<Reactor> MakeReactor(ReactorOptions options = {}) {
  auto r = Reactor::Create(options);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

// Bounds every test's Run(): a stuck loop fails instead of hanging.
void RunWithDeadline(Reactor& r, std::chrono::seconds limit = std::chrono::seconds(20)) {
  bool timed_out = false;
  TimerId guard = r.RunAfter(limit, [&] {
    timed_out = true;
    r.Stop();
  });
  r.Run();
  r.CancelTimer(guard);
  EXPECT_FALSE(timed_out) << "reactor loop did not finish in time";
}

void RaiseFdLimit(rlim_t want) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

TEST(ReactorTest, CheckIoUringAvailable) { EXPECT_TRUE(Reactor::CheckIoUringAvailable().ok()); }

// Runs CheckIoUringAvailable() in a child whose seccomp filter makes
// io_uring_setup fail with `err` (as a container's default profile does) and
// returns the message it produced.
std::string CheckUnderSeccomp(int err) {
  int pipefd[2];
  EXPECT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & 0xffff)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
      _exit(3);
    }
    absl::Status s = Reactor::CheckIoUringAvailable();
    std::string msg = s.ok() ? "OK" : std::string(s.message());
    if (write(pipefd[1], msg.data(), msg.size()) < 0) _exit(4);
    _exit(s.ok() ? 0 : 1);
  }
  close(pipefd[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  return out;
}

TEST(ReactorTest, StartupCheckNamesCauseAndFixWhenSeccompBlocksIoUring) {
  std::string enosys = CheckUnderSeccomp(ENOSYS);
  EXPECT_NE(enosys.find("io_uring is unavailable (io_uring_setup: Function not implemented)"),
            std::string::npos)
      << enosys;
  EXPECT_NE(enosys.find("seccomp"), std::string::npos) << enosys;
  EXPECT_EQ(enosys.find('\n'), std::string::npos);  // one line
  std::string eperm = CheckUnderSeccomp(EPERM);
  EXPECT_NE(eperm.find("Operation not permitted"), std::string::npos) << eperm;
  EXPECT_TRUE(eperm.find("io_uring_disabled") != std::string::npos ||
              eperm.find("seccomp") != std::string::npos)
      << eperm;
}

TEST(ReactorTest, CreateRejectsBadBufferCount) {
  ReactorOptions options;
  options.recv_buffer_count = 1000;  // not a power of two
  auto r = Reactor::Create(options);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("recv_buffer_count"), std::string::npos);
}

TEST(ReactorTest, AcceptConnectSendRecvEchoAndEof) {
  auto r = MakeReactor();
  uint16_t port;
  int lfd = Listen(&port);
  std::string server_got, client_got;
  int server_eof = -1, client_eof = -1;
  bool server_closed = false, client_closed = false, listener_closed = false;
  int cfd = NewSocket();
  sockaddr_in addr = Loopback(port);
  static const std::string kPing = "EHLO example.org\r\n";

  r->Accept(lfd, [&](int fd) {
    if (fd < 0) return;
    r->Recv(fd, [&, fd](int res, std::string_view bytes) {
      if (res > 0) {
        server_got.append(bytes);
        r->Send(fd, kPing.data(), kPing.size(), [](int) {});
        return;
      }
      server_eof = res;
      r->Close(fd, [&] { server_closed = true; });
    });
  });
  r->Connect(cfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr), [&](int res) {
    ASSERT_EQ(res, 0);
    r->Recv(cfd, [&](int res, std::string_view bytes) {
      if (res > 0) {
        client_got.append(bytes);
        if (client_got.size() == kPing.size()) shutdown(cfd, SHUT_WR);  // server sees EOF
        return;
      }
      client_eof = res;
      r->Close(cfd, [&] {
        client_closed = true;
        r->Close(lfd, [&] {
          listener_closed = true;
          r->Stop();
        });
      });
    });
    r->Send(cfd, kPing.data(), kPing.size(), [&](int res) { EXPECT_EQ(res, int(kPing.size())); });
  });
  RunWithDeadline(*r);
  EXPECT_EQ(server_got, kPing);
  EXPECT_EQ(client_got, kPing);
  EXPECT_EQ(server_eof, 0);
  EXPECT_EQ(client_eof, 0);
  EXPECT_TRUE(server_closed);
  EXPECT_TRUE(client_closed);
  EXPECT_TRUE(listener_closed);
  EXPECT_EQ(r->InFlight(), 0u);
}

TEST(ReactorTest, ConnectRefusedReportsErrno) {
  auto r = MakeReactor();
  uint16_t port;
  int lfd = Listen(&port);
  close(lfd);  // nobody listens on `port` any more
  int fd = NewSocket();
  sockaddr_in addr = Loopback(port);
  int result = 1;
  r->Connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr), [&](int res) {
    result = res;
    r->Close(fd, [&] { r->Stop(); });
  });
  RunWithDeadline(*r);
  EXPECT_EQ(result, -ECONNREFUSED);
}

// Close(fd) reports every outstanding operation (-ECANCELED) before the Close
// callback, and nothing after it.
TEST(ReactorTest, CloseCancelsOutstandingOpsBeforeCloseCallback) {
  auto r = MakeReactor();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  std::vector<std::string> events;
  r->Recv(sv[0],
          [&](int res, std::string_view) { events.push_back("recv " + std::to_string(res)); });
  r->PollAdd(sv[0], POLLPRI, [&](int res) { events.push_back("poll " + std::to_string(res)); });
  // Queue sends big enough that the second one cannot have started.
  std::string big(8 << 20, 'x');
  r->Send(sv[0], big.data(), big.size(), [&](int res) {
    events.push_back(res < 0 ? "send1 " + std::to_string(res) : "send1 ok");
  });
  r->Send(sv[0], big.data(), big.size(),
          [&](int res) { events.push_back("send2 " + std::to_string(res)); });
  r->RunAfter(milliseconds(20), [&] {
    r->Close(sv[0], [&] {
      events.push_back("closed");
      r->RunAfter(milliseconds(20), [&] { r->Stop(); });
    });
  });
  RunWithDeadline(*r);
  close(sv[1]);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events.back(), "closed");
  std::vector<std::string> before(events.begin(), events.end() - 1);
  std::sort(before.begin(), before.end());
  EXPECT_EQ(before[0], "poll " + std::to_string(-ECANCELED));
  EXPECT_EQ(before[1], "recv " + std::to_string(-ECANCELED));
  EXPECT_EQ(before[2], "send1 " + std::to_string(-ECANCELED));
  EXPECT_EQ(before[3], "send2 " + std::to_string(-ECANCELED));
  EXPECT_EQ(r->InFlight(), 0u);
}

TEST(ReactorTest, CloseWithNothingOutstandingCallsBackOnNextTurn) {
  auto r = MakeReactor();
  int fd = NewSocket();
  bool closed = false;
  r->Close(fd, [&] {
    closed = true;
    r->Stop();
  });
  EXPECT_FALSE(closed);  // never re-enters the caller
  RunWithDeadline(*r);
  EXPECT_TRUE(closed);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);  // really closed
}

TEST(ReactorTest, CancelPollReportsCanceled) {
  auto r = MakeReactor();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  int result = 1;
  r->PollAdd(sv[0], POLLIN, [&](int res) {
    result = res;
    r->Stop();
  });
  r->RunAfter(milliseconds(5), [&] { r->CancelPoll(sv[0]); });
  RunWithDeadline(*r);
  EXPECT_EQ(result, -ECANCELED);
  // A poll that fires reports revents.
  int revents = 0;
  r->PollAdd(sv[0], POLLIN, [&](int res) {
    revents = res;
    r->Stop();
  });
  ASSERT_EQ(write(sv[1], "x", 1), 1);
  RunWithDeadline(*r);
  EXPECT_TRUE(revents & POLLIN);
  close(sv[0]);
  close(sv[1]);
}

TEST(ReactorTest, LargeSendIsContinuedAcrossShortWrites) {
  ReactorOptions options;
  options.recv_buffer_count = 8;  // few small buffers: exercises -ENOBUFS
  options.recv_buffer_size = 1024;
  auto r = MakeReactor(options);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  std::string payload(4 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + (i >> 12));
  std::string got;
  int sent = 0;
  r->Send(sv[0], payload.data(), payload.size(), [&](int res) {
    sent = res;
    shutdown(sv[0], SHUT_WR);
  });
  r->Recv(sv[1], [&](int res, std::string_view bytes) {
    if (res > 0) {
      got.append(bytes);
      return;
    }
    r->Stop();
  });
  RunWithDeadline(*r);
  EXPECT_EQ(sent, int(payload.size()));
  EXPECT_TRUE(got == payload) << "received " << got.size() << " bytes";
  close(sv[0]);
  close(sv[1]);
}

TEST(ReactorTest, SendVSendsItsSegmentsInOrderAcrossShortWrites) {
  auto r = MakeReactor();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  int small = 4096;  // short writes that stop inside a segment and at its end
  ASSERT_EQ(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  // Commands, a large body, an empty segment, a one-byte one, the final dot:
  // twice, with a plain Send between them (sends keep their call order).
  std::string commands = "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n";
  std::string body(3 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 13 + (i >> 11));
  std::string one = "x";
  std::string dot = "\r\n.\r\n";
  const std::vector<std::string_view> segments = {commands, body, std::string_view(), one, dot};
  std::string between = "RSET\r\n";
  std::string expected;
  for (std::string_view s : segments) expected.append(s);
  const size_t total = expected.size();
  expected += between;
  for (std::string_view s : segments) expected.append(s);
  std::vector<int> results;
  r->SendV(sv[0], segments, [&](int res) { results.push_back(res); });
  r->Send(sv[0], between.data(), between.size(), [&](int res) { results.push_back(res); });
  r->SendV(sv[0], segments, [&](int res) {
    results.push_back(res);
    shutdown(sv[0], SHUT_WR);
  });
  std::string got;
  r->Recv(sv[1], [&](int res, std::string_view bytes) {
    if (res > 0) return got.append(bytes), void();
    r->Stop();
  });
  RunWithDeadline(*r);
  EXPECT_EQ(results, (std::vector<int>{int(total), int(between.size()), int(total)}));
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
  close(sv[0]);
  close(sv[1]);
}

TEST(ReactorTest, SendVOfNothingCompletesWithZero) {
  auto r = MakeReactor();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  int result = -1;
  const std::vector<std::string_view> none = {std::string_view(), std::string_view()};
  r->SendV(sv[0], none, [&](int res) {
    result = res;
    r->Stop();
  });
  RunWithDeadline(*r);
  EXPECT_EQ(result, 0);
  close(sv[0]);
  close(sv[1]);
}

TEST(ReactorTest, SendsOnOneFdKeepTheirOrder) {
  auto r = MakeReactor();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  std::vector<std::string> parts;
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    parts.push_back(std::string(1000 + i * 97, static_cast<char>('a' + i % 26)));
    expected += parts.back();
  }
  int done = 0;
  for (auto& p : parts) {
    r->Send(sv[0], p.data(), p.size(), [&](int res) {
      EXPECT_GT(res, 0);
      if (++done == int(parts.size())) shutdown(sv[0], SHUT_WR);
    });
  }
  std::string got;
  r->Recv(sv[1], [&](int res, std::string_view bytes) {
    if (res > 0) return got.append(bytes), void();
    r->Stop();
  });
  RunWithDeadline(*r);
  EXPECT_TRUE(got == expected);
  close(sv[0]);
  close(sv[1]);
}

TEST(ReactorTest, TimersFireInOrderAndCancel) {
  auto r = MakeReactor();
  std::vector<int> fired;
  // Each RunAfter counts from the moment it is called, so the gaps are wide
  // enough that a loaded (or sanitized) test process cannot reorder them.
  r->RunAfter(milliseconds(300), [&] { fired.push_back(3); });
  r->RunAfter(milliseconds(100), [&] { fired.push_back(1); });
  TimerId cancelled = r->RunAfter(milliseconds(150), [&] { fired.push_back(99); });
  r->RunAfter(milliseconds(200), [&] { fired.push_back(2); });
  r->RunAfter(milliseconds(400), [&] { r->Stop(); });
  EXPECT_TRUE(r->CancelTimer(cancelled));
  EXPECT_FALSE(r->CancelTimer(cancelled));
  auto start = std::chrono::steady_clock::now();
  RunWithDeadline(*r);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(400));
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  TimerId id = r->RunAfter(milliseconds(1), [&] { r->Stop(); });
  RunWithDeadline(*r);
  EXPECT_FALSE(r->CancelTimer(id));  // already fired
}

// With a manual clock, timers fire when the clock moves, in order, and the
// loop never waits for a delay in real time: an hour passes at once.
TEST(ReactorTest, TimersFollowAFakeMonotonicClock) {
  FakeMonotonicClock clock;
  ReactorOptions o;
  o.clock = &clock;
  auto made = Reactor::Create(o);
  ASSERT_TRUE(made.ok()) << made.status();
  Reactor& r = **made;
  std::atomic<int> fired{0};
  std::vector<int> order;
  r.RunAfter(std::chrono::hours(2), [&] {
    order.push_back(2);
    r.Stop();
  });
  r.RunAfter(std::chrono::hours(1), [&] {
    order.push_back(1);
    fired = 1;
  });
  EXPECT_EQ(r.Now(), clock.Now());
  const auto start = std::chrono::steady_clock::now();
  std::thread mover([&] {
    clock.Advance(std::chrono::minutes(59));  // not yet
    std::this_thread::sleep_for(milliseconds(20));
    clock.Advance(std::chrono::minutes(1));  // the first timer
    for (int i = 0; i < 10000 && fired.load() == 0; ++i)
      std::this_thread::sleep_for(milliseconds(1));
    clock.Advance(std::chrono::hours(1));  // the second
  });
  r.Run();  // not RunWithDeadline: its guard timer would follow the fake clock
  mover.join();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(ReactorTest, PostFromOtherThreadsRunsOnLoopThread) {
  auto r = MakeReactor();
  constexpr int kThreads = 4, kPerThread = 2000;
  int count = 0;  // only touched on the loop thread
  std::thread::id loop_thread = std::this_thread::get_id();
  std::atomic<bool> wrong_thread{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        r->Post([&] {
          if (std::this_thread::get_id() != loop_thread) wrong_thread = true;
          if (++count == kThreads * kPerThread) r->Stop();
        });
      }
    });
  }
  RunWithDeadline(*r);
  for (auto& t : threads) t.join();
  EXPECT_EQ(count, kThreads * kPerThread);
  EXPECT_FALSE(wrong_thread);
}

// write(2) calls this thread has made (the eventfd wake-up is one); -1
// when /proc does not say.
int64_t WriteSyscallsOfThisThread() {
  std::ifstream in("/proc/thread-self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value)
    if (key == "syscw:") return value;
  return -1;
}

// A shard posts to itself (its results flush, compose hand-offs): such a
// post runs on the next loop turn and costs no eventfd write.
TEST(ReactorTest, PostsFromTheLoopThreadRunWithoutAWakeUp) {
  auto r = MakeReactor();
  constexpr int kChain = 1000;
  int ran = 0;
  int64_t writes_before = -1, writes_after = -1;
  std::function<void()> next = [&] {
    if (ran == 0) writes_before = WriteSyscallsOfThisThread();
    if (++ran == kChain) {
      writes_after = WriteSyscallsOfThisThread();
      r->Stop();
      return;
    }
    r->Post([&] { next(); });
  };
  // From a timer with nothing else pending: the loop must not sleep on it.
  r->RunAfter(milliseconds(0), [&] { r->Post([&] { next(); }); });
  RunWithDeadline(*r);
  EXPECT_EQ(ran, kChain);
  ASSERT_GE(writes_before, 0) << "/proc/thread-self/io has no syscw";
  EXPECT_LT(writes_after - writes_before, 10);
}

TEST(ReactorTest, StopFromOtherThreadWakesIdleLoop) {
  auto r = MakeReactor();
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(20));
    r->Stop();
  });
  RunWithDeadline(*r);
  stopper.join();
}

// 1,000 connections accepted, each echoing one message back.
TEST(ReactorTest, ThousandConnectionsEcho) {
  constexpr int kConns = 1000;
  RaiseFdLimit(4 * kConns + 100);
  auto r = MakeReactor();
  uint16_t port;
  int lfd = Listen(&port);
  sockaddr_in addr = Loopback(port);
  int accepted = 0, echoed = 0, server_closed = 0;
  static const std::string kMsg = "MAIL FROM:<bounce@example.org>\r\n";
  r->Accept(lfd, [&](int fd) {
    if (fd < 0) return;
    ++accepted;
    r->Recv(fd, [&, fd](int res, std::string_view bytes) {
      if (res > 0) {
        auto copy = std::make_shared<std::string>(bytes);
        r->Send(fd, copy->data(), copy->size(), [copy](int) {});
        return;
      }
      r->Close(fd, [&] { ++server_closed; });
    });
  });
  struct Client {
    int fd;
    std::string got;
  };
  std::vector<Client> clients(kConns);
  int finished = 0;
  for (auto& c : clients) {
    c.fd = NewSocket();
    ASSERT_GE(c.fd, 0);
    r->Connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr), [&](int res) {
      ASSERT_EQ(res, 0);
      r->Recv(c.fd, [&](int res, std::string_view bytes) {
        if (res <= 0) return;
        c.got.append(bytes);
        if (c.got.size() == kMsg.size()) {
          ++echoed;
          r->Close(c.fd, [&] {
            if (++finished == kConns) {
              r->RunAfter(milliseconds(50), [&] { r->Close(lfd, [&] { r->Stop(); }); });
            }
          });
        }
      });
      r->Send(c.fd, kMsg.data(), kMsg.size(), [](int) {});
    });
  }
  RunWithDeadline(*r, std::chrono::seconds(30));
  EXPECT_EQ(accepted, kConns);
  EXPECT_EQ(echoed, kConns);
  EXPECT_EQ(server_closed, kConns);
  for (auto& c : clients) EXPECT_EQ(c.got, kMsg);
  EXPECT_EQ(r->InFlight(), 0u);
}

}  // namespace
}  // namespace salvo::reactor
