#pragma once
// The inbound listener of `salvo run`: receives bounces (DSNs), complaints
// (ARF) and unsubscribe mail for the configured domains over SMTP, stores each
// message in the spool (sync) before answering 250, and hands stored messages
// to a processing function on its own thread.
//
// Built on the sink's receiving code: the SMTP state machine
// (sink::ServerSession, with hold_final_reply), its TLS (sink::TlsServerConn)
// and its listening-socket helpers; RecipientPolicy decides RCPT.
//
// Threads: one reactor thread owns the listening sockets and every
// connection; a store thread writes received messages to the spool in
// batches (one sync WriteBatch for every message that arrived meanwhile) and
// posts the verdict back to the reactor, which then gives the 250 (or 451);
// a processing thread reads pending messages from the spool (at Start, so
// those a crash left are processed, and after each store) and calls the
// processing function. Start/Stop/Stats/Bound from any thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/sink/sink.h"
#include "queue/spool.h"

namespace salvo::inbound {

struct InboundOptions {
  std::vector<sink::ListenAddress> listen;
  std::vector<std::string> domains;  // RCPT accepted only at these domains
  std::string hostname = "localhost";
  uint64_t max_message_size = 10u << 20;  // advertised as SIZE; larger: 552
  size_t max_line = 2048;                 // command line limit (500 5.5.2 beyond)
  size_t max_recipients = 100;            // RCPTs per message (452 4.5.3 beyond)
  size_t max_connections = 1000;          // open at once; more are answered 421 and closed
  // Message bytes held at once: each DATA (or first BDAT) reserves
  // max_message_size until the message is stored (or the connection goes);
  // a DATA that would pass this gets 452 4.3.1. At least max_message_size.
  uint64_t max_buffered_bytes = 256ull << 20;
  // A connection that sends nothing this long (not counting the wait for
  // its message to be stored) gets 421 4.4.2 and is closed (RFC 5321
  // 4.5.3.2.7: a server waits at least 5 minutes).
  std::chrono::seconds idle_timeout{300};
  // STARTTLS: tls_cert/tls_key PEM files, or a generated self-signed
  // certificate when both are empty and `tls` is set.
  bool tls = false;
  std::string tls_cert;
  std::string tls_key;
};

// What processing one stored message came to: a short label for the
// salvo_inbound_processed_total{result} metric and the log ("bounce",
// "complaint", "auto_reply", "unsubscribe", "ignored" ...). kUnavailable:
// try again later (the message stays pending); any other error: logged,
// counted as "failed", and the message is dropped (it would fail again).
using ProcessFunction = std::function<absl::StatusOr<std::string>(const queue::InboundMessage&)>;

struct InboundStats {
  uint64_t connections = 0;
  // salvo_inbound_messages_total{result}: accepted (stored, 250), too_big
  // (552), store_failed (451: the spool refused the write).
  std::map<std::string, uint64_t> messages;
  // salvo_inbound_rejected_total{reason}: relay (RCPT 550 5.7.1),
  // bare_line_ending (521), too_many_connections (421), idle_timeout (421),
  // no_storage (452 4.3.1 to DATA: max_buffered_bytes reached).
  std::map<std::string, uint64_t> rejected;
  // salvo_inbound_processed_total{result}: what ProcessFunction returned,
  // "failed", "retry" (kUnavailable, kept).
  std::map<std::string, uint64_t> processed;
  uint64_t pending = 0;              // stored and not yet processed, at the last look
  uint64_t buffered_bytes = 0;       // reserved for messages being received or stored, now
  uint64_t buffered_bytes_peak = 0;  // the most at once
};

class InboundServer {
 public:
  // Binds, starts the threads and processes what is already pending. Errors
  // name the address or the TLS file.
  static absl::StatusOr<std::unique_ptr<InboundServer>> Start(queue::Spool* spool,
                                                              InboundOptions options,
                                                              ProcessFunction process);
  ~InboundServer();  // Stop()s
  // Closes the listener and connections (a message not yet stored gets no
  // 250: the sender retries), then lets the processing thread finish the
  // message in hand. Idempotent.
  void Stop();
  std::vector<sink::ListenAddress> Bound() const;
  InboundStats Stats() const;

  class Impl;

 private:
  explicit InboundServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace salvo::inbound
