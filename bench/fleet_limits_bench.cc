// Fleet-wide limits (engine/fleet) on the send path: the cost of asking
// SharedLimits for a message grant when the shared limit does not bind
// (the local pool answers; Redis is asked once per batch), against a key
// with no limit, and the Redis round trips per 1,000 messages. Starts its
// own redis-server on a loopback port (skips the Redis cases without one).
//
//   ./build/bench/fleet_limits_bench
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "engine/fleet/redis_client.h"
#include "engine/fleet/shared_limits.h"

namespace {

using salvo::fleet::RedisClient;
using salvo::fleet::SharedLimits;
using salvo::fleet::SharedLimitsOptions;

// One redis-server for the whole run, killed at exit.
class Redis {
 public:
  static Redis& Get() {
    static Redis r;
    return r;
  }
  bool ok() const { return ok_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  ~Redis() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

 private:
  Redis() {
    if (std::system("command -v redis-server >/dev/null 2>&1") != 0) return;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    port_ = ntohs(a.sin_port);
    pid_ = ::fork();
    if (pid_ == 0) {
      int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, STDOUT_FILENO);
      ::dup2(null_fd, STDERR_FILENO);
      const std::string port = std::to_string(port_);
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !ok_; ++i) {
      auto c = RedisClient::Connect(address(), absl::Milliseconds(200));
      ok_ = c.ok() && (*c)->Ping().ok();
      if (!ok_) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  int port_ = 0;
  pid_t pid_ = -1;
  bool ok_ = false;
};

// A key with no fleet limit: the floor (a map look-up under the mutex).
void BM_TakeMessagesUnlimited(benchmark::State& state) {
  SharedLimitsOptions o;
  o.redis = "127.0.0.1:1";  // never reached: no limited key
  o.node_id = "bench";
  SharedLimits limits(o);
  for (auto _ : state) benchmark::DoNotOptimize(limits.TakeMessages("other", 1));
}
BENCHMARK(BM_TakeMessagesUnlimited);

// A shared limit that does not bind: 100,000,000 msgs/s fleet-wide, one
// message per call. Counters: Redis round trips per 1,000 messages taken.
void BM_TakeMessagesSharedNotBinding(benchmark::State& state) {
  if (!Redis::Get().ok()) {
    state.SkipWithError("redis-server not available");
    return;
  }
  SharedLimitsOptions o;
  o.redis = Redis::Get().address();
  o.node_id = "bench";
  o.fleet_size = 2;
  SharedLimits limits(o);
  limits.SetLimit("gmail.com", 1e8, 0);
  for (int i = 0; i < 500 && !limits.shared(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto before = limits.Stats();
  int64_t taken = 0;
  for (auto _ : state) {
    int64_t n = limits.TakeMessages("gmail.com", 1);
    while (n == 0) {  // the first grant is on its way
      std::this_thread::yield();
      n = limits.TakeMessages("gmail.com", 1);
    }
    taken += n;
  }
  const auto after = limits.Stats();
  state.counters["redis_round_trips_per_1000"] =
      1000.0 * static_cast<double>(after.redis_round_trips - before.redis_round_trips) /
      static_cast<double>(std::max<int64_t>(1, taken));
  state.counters["shared"] = after.shared ? 1 : 0;
}
BENCHMARK(BM_TakeMessagesSharedNotBinding)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
