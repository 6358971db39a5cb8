#pragma once
// salvo sink as a library: a fast SMTP receiving server on the io_uring
// reactor, our test and benchmark peer. `salvo sink` (engine/cli) is a thin
// command around it; tests and `salvo bench` may run it in-process.
//
// Threads: Start() runs one shard thread per `shards`, each with its own
// Reactor and its own SO_REUSEPORT listening socket per address; a
// connection lives on the shard that accepted it. A stats thread rewrites
// the stats file every second. Stop() and Stats() may be called from any
// thread.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace salvo::sink {

struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 address
  uint16_t port = 0;
  std::string ToString() const;  // "127.0.0.1:2525", "[::1]:2525"
};

// Parses "ADDR:PORT" or "[IPV6]:PORT" (numeric addresses only, port 0..65535,
// 0 = any free port). The error names the text and what is wrong.
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text);

// Socket helpers shared with the engine's inbound listener (engine/inbound).
// A non-blocking listening socket on addr.host:port with SO_REUSEPORT (port 0:
// any free port); the error names the address.
absl::StatusOr<int> OpenListener(const ListenAddress& addr, uint16_t port);
uint16_t BoundPort(int fd);       // the port a listening socket is bound to
std::string PeerAddress(int fd);  // the numeric address of a connection's peer ("?" if unknown)

struct SinkOptions {
  std::vector<ListenAddress> listen;  // empty: 127.0.0.1:2525
  int shards = 1;
  double bounce_rate = 0;           // share of RCPTs answered 550 5.1.1
  double defer_rate = 0;            // share of RCPTs answered 450 4.2.0 / 451 4.3.0
  double drop_rate = 0;             // share of DATA commands answered by closing the connection
  uint64_t max_per_connection = 0;  // > 0: 421 4.7.0 at MAIL after this many messages
  uint64_t max_rate = 0;            // > 0: msgs/s over the whole sink, above it 421 4.7.0
  int delay_ms = 0;                 // delay before each batch of replies
  int final_delay_ms = 0;           // delay before the reply to a message's end of data
  std::string reject_pattern;       // RCPTs whose address contains it: 550 5.1.1
  std::string greeting;             // replaces the 220 line; not 2xx: sent, then closed
  bool keep_messages = false;       // in process: every message kept for Messages()
  uint64_t seed = 0;                // injection RNG seed (shard i uses seed + i); 0 = random
  std::string save_dir;             // non-empty: write <n>.eml and <n>.env per message
  std::string stats_file;           // non-empty: JSON rewritten every second and at Stop
  bool track_duplicates = false;    // count recipients delivered more than once
  std::string hostname = "sink.salvo.invalid";
  uint64_t max_message_size = 50 * 1024 * 1024;
  bool chunking = true;  // offer CHUNKING (BDAT); false: clients send DATA
  // STARTTLS (RFC 3207). Without tls_cert/tls_key a self-signed P-256
  // certificate for CN=hostname is generated at Start().
  bool tls = false;
  std::string tls_cert;  // PEM certificate (chain) file
  std::string tls_key;   // PEM private key file
  // Provided receive buffers per shard (lent only during a completion).
  unsigned recv_buffer_count = 512;
  unsigned recv_buffer_size = 16384;
};

// Range checks a user can get wrong (rates, shard count...).
absl::Status ValidateOptions(const SinkOptions& options);

struct DomainCounts {
  uint64_t accepted = 0;   // RCPT answered 250
  uint64_t bounced = 0;    // 550
  uint64_t deferred = 0;   // 450/451
  uint64_t delivered = 0;  // accepted recipients of messages completed with 250
};

struct SinkStats {
  std::vector<std::string> listen;  // bound addresses (real ports)
  int shards = 0;
  double uptime_seconds = 0;
  uint64_t connections = 0;  // accepted since start
  uint64_t connections_open = 0;
  uint64_t connections_peak = 0;  // the most open at once
  uint64_t messages = 0;          // completed with 250 after the final dot / BDAT LAST
  uint64_t bytes = 0;             // message bytes after dot-unstuffing
  uint64_t recipients_accepted = 0;
  uint64_t recipients_bounced = 0;
  uint64_t recipients_deferred = 0;
  uint64_t recipients_delivered = 0;
  uint64_t rejected_421 = 0;       // 421 replies (max-per-connection, max-rate)
  uint64_t dropped = 0;            // connections dropped by --drop-rate
  uint64_t bare_line_endings = 0;  // sessions ended with 521 for a bare CR or LF (smuggling)
  uint64_t tls_sessions = 0;       // STARTTLS handshakes completed
  uint64_t tls_resumed = 0;        // of which resumed a session (ticket)
  // With track_duplicates: addresses delivered more than once, and the
  // number of deliveries beyond the first summed over them.
  uint64_t duplicate_recipients = 0;
  uint64_t duplicate_deliveries = 0;
  std::map<std::string, DomainCounts> domains;
  // Messages by client, "<address> <EHLO name>" (egress sources show here).
  std::map<std::string, uint64_t> clients;

  std::string ToJson() const;
  std::string Line() const;  // one human line: "connections=.. messages=.. ..."
};

// A message as received (keep_messages).
struct ReceivedMessage {
  std::string mail_from;
  std::vector<std::string> recipients;
  std::string data;  // after dot-unstuffing
};

class Sink {
 public:
  explicit Sink(SinkOptions options);
  ~Sink();  // Stop()s
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // Binds every address on every shard, starts the shard threads and the
  // stats writer. Errors name the address ("cannot listen on 127.0.0.1:25:
  // Permission denied") or the io_uring cause.
  absl::Status Start();
  // Closes listeners and connections, joins the threads, writes the stats
  // file one last time. Idempotent.
  void Stop();
  SinkStats Stats() const;
  // keep_messages: every message completed so far, in arrival order.
  std::vector<ReceivedMessage> Messages() const;
  // Changes final_delay_ms while running (later end-of-data replies).
  void SetFinalDelay(int ms);
  // Addresses actually bound (port 0 resolved), valid after Start().
  std::vector<ListenAddress> Bound() const;
  absl::Status WriteStatsFile() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace salvo::sink
