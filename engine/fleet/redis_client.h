#pragma once
// A small blocking Redis client (hiredis) for the fleet's shared limits:
// connect with a timeout, run Lua scripts (EVALSHA, loading the script on
// NOSCRIPT), read integer or array-of-integer replies. Every failure is
// kUnavailable (Redis down, timed out, or answering errors): the caller falls
// back to local limits.
//
// Not thread-safe: one client per thread. Used only by SharedLimits' worker
// thread, never by a delivery (ring) thread.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct redisContext;

namespace salvo::fleet {

class RedisClient {
 public:
  // "host:port" ("[v6]:port"); `timeout` bounds the connect and every command.
  static absl::StatusOr<std::unique_ptr<RedisClient>> Connect(const std::string& address,
                                                              absl::Duration timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Runs `script` (by its SHA1 once loaded) with KEYS and ARGV; returns its
  // integer or array-of-integers reply flattened.
  absl::StatusOr<std::vector<int64_t>> Eval(const std::string& script,
                                            const std::vector<std::string>& keys,
                                            const std::vector<std::string>& args);
  absl::Status Ping();
  // Commands sent (each is one round trip).
  uint64_t round_trips() const { return round_trips_; }

 private:
  explicit RedisClient(redisContext* ctx) : ctx_(ctx) {}
  redisContext* ctx_;
  uint64_t round_trips_ = 0;
};

}  // namespace salvo::fleet
