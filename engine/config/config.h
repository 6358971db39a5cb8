#pragma once
// The `salvo run` configuration: one TOML file, every key optional with a
// default (see deploy/salvo.example.toml, which documents each key). Parsing
// is strict: an unknown key, a wrong type or an out-of-range value is an
// error naming "file:line:column" and the key.
//
// A Config is a plain value: built once at start-up on the main thread, then
// copied or read (never mutated) by the shards.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace salvo::config {

using Seconds = std::chrono::duration<double>;

struct DnsConfig {
  // "ip" or "ip:port" ("[v6]:port"); empty = the system resolver configuration.
  std::vector<std::string> servers;
  Seconds timeout{5.0};  // per query attempt
  int attempts = 2;
  bool cache = true;
  Seconds min_ttl{0.0};      // answers are cached at least this long
  Seconds max_ttl{86400.0};  // and at most this long
  Seconds negative_ttl{300.0};
};

// A routing override: mail for `domain` ("*" = every domain not matched by
// another route; "example.com" matches that domain only) goes to `hosts`, in
// order, instead of the domain's MX set. Each host is "host:port" or "host"
// (port 25).
struct RouteConfig {
  std::string domain;
  std::vector<std::string> hosts;
  std::string source;  // "file:line" where it was declared, for messages
  // A smarthost that wants SMTP AUTH (PLAIN/LOGIN, only over TLS): the user,
  // and the password from a file (first line) or an environment variable.
  // Never logged.
  std::string auth_user;
  std::string auth_password_file;
  std::string auth_password_env;
  std::string tls;  // "" = [tls] mode; off | opportunistic | required
  // A busy smarthost: its connections are spread over every shard (one site
  // pool per shard) with its limits shared, instead of one shard doing all
  // of its work.
  bool spread = false;
};

// Egress (PowerMTA's virtual MTAs, KumoMTA's egress sources): a source sends
// from its own local address with its own EHLO name; a pool is the sources a
// campaign sends through (`egress_pool` in the campaign file), used in turn.
struct EgressSourceConfig {
  std::string name;
  std::string address;  // local IPv4/IPv6 address to bind
  std::string ehlo;     // EHLO name; "" = delivery.helo_name
  std::string source;   // "file:line"
  // Warm-up of a new address: from `warmup_start` (a UTC date, day 1), at
  // most LIMIT messages a day per shaping key (provider, domain table or
  // site) from each entry's DAY on, until the next entry; LIMIT 0 = no cap
  // (end the schedule with one). What a capped source cannot take goes to
  // the pool's other sources; when all are capped, it waits for the next day.
  std::string warmup_start;                      // "YYYY-MM-DD"
  std::vector<std::pair<int, uint64_t>> warmup;  // (from day, limit), ascending days
};
struct EgressPoolConfig {
  std::string name;
  std::vector<std::string> sources;  // names of [[egress.source]]s
  std::string source;                // "file:line"
};

enum class DkimKeyType { kRsa, kEd25519 };

struct DkimKeyConfig {
  std::string domain;
  std::string selector;
  std::string key_file;  // PEM private key
  DkimKeyType type = DkimKeyType::kRsa;
  std::string source;  // "file:line"
};

// Per-phase SMTP client deadlines (RFC 5321 4.5.3.2 gives the classic ones).
struct TimeoutConfig {
  Seconds connect{30.0};
  Seconds greeting{300.0};
  Seconds ehlo{300.0};
  Seconds starttls{120.0};
  Seconds mail{300.0};
  Seconds rcpt{300.0};
  Seconds data{120.0};        // DATA -> 354
  Seconds data_block{180.0};  // each block of message bytes sent
  Seconds data_end{600.0};    // final dot -> reply
  Seconds quit{10.0};
};

struct DeliveryConfig {
  TimeoutConfig timeouts;
  int connections_per_site = 32;         // open connections per destination site
  int messages_per_connection = 100;     // then QUIT and reconnect
  int max_recipients_per_message = 100;  // RCPTs per transaction
  Seconds idle_timeout{5.0};             // close a connection idle this long
  int in_flight_limit = 10000;           // messages leased and not completed, per process
  // Outbound connections open (or opening) at once over every shard and
  // site; at the cap pools wait for a slot (nothing is deferred).
  int max_connections = 10000;
  // Bytes of copies composed ahead and not yet sent; over it no copy is
  // composed ahead (connections compose their own, one at a time).
  uint64_t max_composed_bytes = 256ull << 20;
  Seconds shutdown_deadline{30.0};  // SIGTERM: finish transactions within this
  std::string helo_name;            // empty = the machine's host name
  Seconds site_retry_delay{60.0};   // all MX hosts down: site paused this long
};

enum class TlsMode { kOff, kOpportunistic, kRequired };

struct TlsConfig {
  TlsMode mode = TlsMode::kOpportunistic;
  bool verify = true;   // required mode: verify the chain and host name (false: any certificate)
  std::string ca_file;  // empty = system store
};

struct MetricsConfig {
  // Prometheus endpoint "addr:port"; "" = none. `salvo run` serves it;
  // `salvo send` only with --metrics-listen or when the file sets it.
  std::string listen = "127.0.0.1:9465";
  bool listen_set = false;  // the file set `listen`
  // `domain` label values; unset = the built-in list of the big mailbox
  // providers (metrics::DefaultLabelledDomains), [] = every domain "other".
  std::optional<std::vector<std::string>> domains;
  int max_campaigns = 10;  // campaigns with their own `campaign` label
};

// The delivery log (engine/deliverylog): one JSON line per recipient outcome.
struct DeliveryLogConfig {
  std::string path;                    // "" = no delivery log
  uint64_t rotate_bytes = 1ull << 30;  // rotate before a file grows past this; 0 = never
  Seconds rotate_interval{3600.0};     // rotate a file this old; 0 = never
};

// VERP return paths for every campaign (engine/message/verp.h); a campaign's
// [options] verp_domain / verp_prefix / verp_secret_file / verp override them.
struct VerpConfig {
  std::string domain;              // the bounce domain; "" = VERP off unless a campaign sets it
  std::string prefix = "bounces";  // local part before '+'
  std::string secret_file;         // HMAC key; "" = SALVO_VERP_SECRET (never logged)
};

struct QueueConfig {
  int lease_batch = 200;       // recipients per lease from the spool
  Seconds poll_interval{0.2};  // how often to look for due work when idle
  std::string admin_socket;    // empty = "<data_dir>/admin.sock"
  // fsync the spool's WAL with every completion batch: outcomes survive a
  // power loss, at a throughput cost. Off: a process crash (kill -9) still
  // loses nothing (the WAL is in the page cache); a power loss can lose the
  // last moments of outcomes (those recipients are sent again).
  bool sync_writes = false;
  // A delivery on the first attempt also writes its own history row. Off:
  // the attempt is kept in the recipient's record (shown the same way by
  // `salvo recipient show`), one spool write less per message.
  bool history_for_first_deliveries = false;
  // A connection starts its next transaction only once the outcome of its
  // last one (delivered or bounced) is recorded in the spool: a crash then
  // sends again at most one message per open connection. Off: connections
  // go on at once; a crash can send again every outcome on its way to the
  // spool (up to delivery.in_flight_limit).
  bool durable_before_next = true;
  // A failing disk that refuses even the reopen at close: the final outcomes
  // the spool still holds go to a file here (salvo-rescue-*.jsonl) for
  // `salvo queue recover --from FILE`; "" = one log line each.
  std::string rescue_dir;
  // Free-space floor on the data directory's file system: below it no new
  // work is leased (attempts in flight complete) until space returns. 0 = off.
  uint64_t min_free_bytes = 64ull << 20;
  // Fleet (deploy/): the admin protocol also on TCP "host:port" ("" = off),
  // for `salvo fleet status` and `salvo health` from elsewhere; a file whose
  // first line is the token every TCP request must carry (needed unless the
  // address is loopback).
  std::string admin_listen;
  std::string admin_token_file;
};

// This process as one node of a fleet (deploy/compose.yaml, deploy/k8s).
struct FleetConfig {
  // "i/N" (node i of N, 0-based) or "auto/N" (i = the trailing number of the
  // host name, as a StatefulSet pod "salvo-2"); "" = a single node. `salvo
  // campaign load` and `salvo send` then keep only this node's share.
  std::string node;
  // Fleet-wide limits: the message-rate and connection limits of the shaping
  // file's provider and domain tables are held by the whole fleet through
  // this Redis "host:port" ("" = each node alone). Redis unreachable: each
  // node keeps to limit / size until it answers again.
  std::string redis;
  // This node's name in Redis (unique in the fleet); "" = host name and pid.
  std::string node_id;
  // Nodes in the fleet, for that fallback share; 0 = N of `node`, else 1.
  int size = 0;
  // N of "i/N" (or "auto/N"), 1 when not a fleet node.
  int FleetSize() const;
};

// The inbound SMTP listener of `salvo run` (engine/inbound): bounces,
// complaints and unsubscribe mail for `domains`.
struct InboundConfig {
  std::string listen;                // "addr:port"; "" = no listener
  std::vector<std::string> domains;  // RCPT accepted only here (lower-cased)
  std::string hostname;              // greeting/EHLO name; "" = delivery.helo_name or host name
  uint64_t max_message_size = 10ull << 20;
  int max_line = 2048;
  int max_recipients = 100;
  int max_connections = 1000;
  // Message bytes the listener may hold at once: each DATA reserves
  // max_message_size until the message is stored; beyond, DATA gets 452.
  uint64_t max_buffered_bytes = 256ull << 20;
  Seconds idle_timeout{300.0};  // a silent connection gets 421 and is closed
  bool tls = false;             // offer STARTTLS
  std::string tls_cert;         // PEM certificate (chain); with tls_key; none: self-signed
  std::string tls_key;
};

// The one-click unsubscribe HTTP endpoint of `salvo run` (RFC 8058).
struct UnsubscribeConfig {
  std::string listen;  // "addr:port"; "" = none (default)
};

struct Config {
  std::string source_file;  // the file this came from ("" = defaults)
  std::string data_dir = "./salvo-data";
  int shards = 0;  // 0 = one per CPU
  bool pin_threads = true;
  std::string log_level = "info";
  std::string shaping_file;  // traffic shaping file (engine/shaping); "" = none
  DnsConfig dns;
  std::vector<RouteConfig> routes;
  std::vector<EgressSourceConfig> egress_sources;
  std::vector<EgressPoolConfig> egress_pools;
  // The pool's index in egress_pools, or -1.
  int EgressPoolIndex(std::string_view name) const {
    for (size_t i = 0; i < egress_pools.size(); ++i)
      if (egress_pools[i].name == name) return static_cast<int>(i);
    return -1;
  }
  std::vector<DkimKeyConfig> dkim_keys;
  DeliveryConfig delivery;
  TlsConfig tls;
  MetricsConfig metrics;
  DeliveryLogConfig delivery_log;
  VerpConfig verp;
  QueueConfig queue;
  FleetConfig fleet;
  InboundConfig inbound;
  UnsubscribeConfig unsubscribe;

  // shards resolved against the CPU count (never 0).
  int EffectiveShards() const;
  std::string AdminSocketPath() const;
};

// Parses TOML text; `source_name` is used in error messages.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);
// Reads and parses a file. Errors: "FILE: cannot read: <reason>" or
// "FILE:LINE:COL: <what>".
absl::StatusOr<Config> LoadConfig(const std::string& path);

// The per-node settings a container sets from its environment, applied over
// the file (and under command-line flags). Each entry: variable, key.
struct EnvOverride {
  const char* variable;
  const char* key;
};
inline constexpr EnvOverride kEnvOverrides[] = {
    {"SALVO_DATA_DIR", "data_dir"},
    {"SALVO_SHARDS", "shards"},
    {"SALVO_LOG_LEVEL", "log_level"},
    {"SALVO_NODE", "fleet.node"},
    {"SALVO_FLEET_REDIS", "fleet.redis"},
    {"SALVO_HELO_NAME", "delivery.helo_name"},
    {"SALVO_METRICS_LISTEN", "metrics.listen"},
    {"SALVO_ADMIN_LISTEN", "queue.admin_listen"},
    {"SALVO_ADMIN_TOKEN_FILE", "queue.admin_token_file"},
};
// Applies every SALVO_* variable of kEnvOverrides that `get_env` returns
// (non-null; "" counts as set) with the same checks as the file. Errors name
// the variable: "environment SALVO_SHARDS=x: ...".
absl::Status ApplyEnvironment(Config* cfg,
                              const std::function<const char*(const char*)>& get_env = nullptr);

std::string_view TlsModeName(TlsMode mode);
std::string_view DkimKeyTypeName(DkimKeyType type);

// "host:port" / "host" / "[v6]:port" -> host, port. Port defaults to
// `default_port`. Returns InvalidArgument for a bad port.
absl::Status SplitHostPort(std::string_view text, int default_port, std::string* host, int* port);

}  // namespace salvo::config
