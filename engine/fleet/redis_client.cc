#include "engine/fleet/redis_client.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <cstdio>

#include "engine/common/host_port.h"
#include "fmt/format.h"

namespace salvo::fleet {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

timeval AsTimeval(absl::Duration d) { return absl::ToTimeval(d); }

std::string Sha1Hex(const std::string& text) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md);
  std::string hex;
  for (unsigned char c : md) hex += fmt::format("{:02x}", c);
  return hex;
}

absl::Status Flatten(const redisReply* r, std::vector<int64_t>* out) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out->push_back(r->integer);
      return absl::OkStatus();
    case REDIS_REPLY_ARRAY:
      for (size_t i = 0; i < r->elements; ++i)
        if (absl::Status s = Flatten(r->element[i], out); !s.ok()) return s;
      return absl::OkStatus();
    case REDIS_REPLY_NIL:
      out->push_back(0);
      return absl::OkStatus();
    case REDIS_REPLY_ERROR:
      return absl::UnavailableError(fmt::format("redis: {}", std::string(r->str, r->len)));
    default:
      return absl::UnavailableError(fmt::format("redis: unexpected reply type {}", r->type));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Connect(const std::string& address,
                                                                  absl::Duration timeout) {
  absl::StatusOr<HostPort> hp = ParseHostPort(address, {.default_port = 6379});
  if (!hp.ok())
    return absl::InvalidArgumentError(fmt::format("Redis: {}", std::string(hp.status().message())));
  redisContext* ctx = redisConnectWithTimeout(hp->host.c_str(), hp->port, AsTimeval(timeout));
  if (ctx == nullptr) return absl::UnavailableError("redis: out of memory");
  if (ctx->err != 0) {
    std::string why = ctx->errstr;
    redisFree(ctx);
    return absl::UnavailableError(fmt::format("redis {}: {}", address, why));
  }
  redisSetTimeout(ctx, AsTimeval(timeout));
  return std::unique_ptr<RedisClient>(new RedisClient(ctx));
}

RedisClient::~RedisClient() { redisFree(ctx_); }

absl::Status RedisClient::Ping() {
  ++round_trips_;
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "PING")));
  if (!r) return absl::UnavailableError(fmt::format("redis: {}", ctx_->errstr));
  if (r->type == REDIS_REPLY_ERROR)
    return absl::UnavailableError(fmt::format("redis: {}", std::string(r->str, r->len)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> RedisClient::Eval(const std::string& script,
                                                       const std::vector<std::string>& keys,
                                                       const std::vector<std::string>& args) {
  const std::string sha = Sha1Hex(script);
  const std::string nkeys = std::to_string(keys.size());
  for (int attempt = 0; attempt < 2; ++attempt) {
    // EVALSHA first; on NOSCRIPT (a restarted Redis) EVAL loads it.
    const bool by_sha = attempt == 0;
    std::vector<const char*> argv = {by_sha ? "EVALSHA" : "EVAL",
                                     by_sha ? sha.c_str() : script.c_str(), nkeys.c_str()};
    std::vector<size_t> lens = {by_sha ? 7u : 4u, by_sha ? sha.size() : script.size(),
                                nkeys.size()};
    for (const std::string& k : keys) {
      argv.push_back(k.data());
      lens.push_back(k.size());
    }
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    ++round_trips_;
    Reply r(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data())));
    if (!r) return absl::UnavailableError(fmt::format("redis: {}", ctx_->errstr));
    if (by_sha && r->type == REDIS_REPLY_ERROR &&
        std::string(r->str, r->len).rfind("NOSCRIPT", 0) == 0)
      continue;
    std::vector<int64_t> out;
    if (absl::Status s = Flatten(r.get(), &out); !s.ok()) return s;
    return out;
  }
  return absl::UnavailableError("redis: script could not be loaded");
}

}  // namespace salvo::fleet
