#pragma once
// The sans-I/O SMTP client session (RFC 5321 + PIPELINING, SIZE, 8BITMIME,
// SMTPUTF8, STARTTLS, AUTH PLAIN/LOGIN, CHUNKING).
//
// A Session is one SMTP conversation over one already-connected transport.
// It does no I/O: the owner (the engine's connection, on its shard thread; or
// a test) feeds the bytes it read, writes the bytes the session produced,
// enforces NextDeadline(), and reacts to events. Not thread-safe; lives on
// the thread that owns the socket.
//
//   Session s(opts);                       // after TCP connect; expects the greeting
//   loop:
//     write(s.PendingOutput()); s.ConsumeOutput(n_written);
//       (or without a copy of the body: s.TakeOutput(&buffer), then
//        sendmsg(buffer.Segments()) and keep `buffer` until it completes)
//     s.Feed(bytes_read)  | s.OnConnectionLost() on EOF/error
//                         | s.OnTimeout(now) when NextDeadline() passes
//     for (Event& e : s.TakeEvents()):
//       kReady           -> s.StartTransaction(envelope) or s.Quit()
//                           (envelope.hold_end: its end of data waits for
//                           s.ReleaseEnd(); everything before it goes out)
//       kTransactionDone -> e.outcomes[i] is the result for envelope.rcpts[i]
//       kClosed          -> flush PendingOutput() (best effort) and close;
//                           e.outcome says why (kind kNone = clean QUIT); a
//                           session that closes before its first kReady
//                           reports the failure (greeting, TLS, ...) here
//
// Structure (STYLE habit 6): one State enum; Enter() is the one place that
// sends the command(s) for a new state; HandleReply() is the one place that
// handles replies. Commands awaiting replies sit in a FIFO (the receive
// cursor); with PIPELINING, MAIL, every RCPT and DATA (or BDAT with the body)
// go out in one write and replies are matched in order. The DATA body is sent
// only after 354 and only if at least one RCPT was accepted; if DATA got 354
// with no accepted recipient, a lone "." ends it (RFC 2920 3.1).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "engine/common/clock.h"
#include "engine/smtp/extensions.h"
#include "engine/smtp/failure_scope.h"
#include "engine/smtp/outcome.h"
#include "engine/smtp/reply.h"
#include "engine/smtp/tls.h"

namespace salvo::smtp {

enum class TlsMode : uint8_t {
  kDisabled,       // never STARTTLS
  kOpportunistic,  // STARTTLS when offered, no verification required; plaintext otherwise
  kRequired,       // STARTTLS must be offered and the chain + host name must verify
};

// Per-phase reply deadlines, RFC 5321 4.5.3.2 defaults.
struct Timeouts {
  absl::Duration greeting = absl::Minutes(5);
  absl::Duration ehlo = absl::Minutes(5);
  absl::Duration starttls = absl::Minutes(2);  // STARTTLS reply and the handshake
  absl::Duration auth = absl::Minutes(2);
  absl::Duration mail = absl::Minutes(5);
  absl::Duration rcpt = absl::Minutes(5);
  absl::Duration data_init = absl::Minutes(2);    // reply to DATA
  absl::Duration data_block = absl::Minutes(3);   // no write progress while sending the body
  absl::Duration data_final = absl::Minutes(10);  // reply after the final dot / BDAT LAST
  absl::Duration rset = absl::Minutes(2);
  absl::Duration quit = absl::Minutes(1);
};

struct Credentials {
  std::string username;
  std::string password;
};

struct Options {
  std::string helo_name = "localhost";  // our name in EHLO/HELO
  std::string host;                     // peer host name: SNI and certificate host-name check
  std::string host_label;  // for Outcome::host and logs, e.g. "mx.example[192.0.2.1]"; default host
  TlsMode tls = TlsMode::kOpportunistic;
  // With kRequired: verify the chain and host name (false: TLS is still
  // mandatory, but any certificate is accepted, e.g. a test or benchmark peer).
  bool verify_peer = true;
  TlsClientContext* tls_context = nullptr;  // shard-owned; nullptr disables STARTTLS
  std::optional<Credentials> auth;          // AUTH PLAIN/LOGIN after EHLO (smarthost)
  bool allow_auth_without_tls = false;      // else AUTH needs an active TLS layer
  bool use_pipelining = true;               // when the server offers PIPELINING
  bool use_chunking = true;                 // BDAT when the server offers CHUNKING
  Timeouts timeouts;
  const Clock* clock = nullptr;  // nullptr = Clock::System()
  ReplyParserLimits reply_limits;
};

// One transaction: a message for some recipients.
struct Envelope {
  uint64_t id = 0;        // echoed in the kTransactionDone event
  std::string mail_from;  // reverse-path without <>; empty = null sender
  std::vector<std::string> rcpts;
  // The message (headers + body). Must stay valid until kTransactionDone for
  // this envelope. Bare LF line ends are sent as CRLF; lines starting with
  // "." are dot-stuffed for DATA. It is copied once, into the output buffer,
  // unless it goes out as it is (see body_crlf).
  std::string_view body;
  // Keep-alive for `body`. With it, a body that goes out unchanged is not
  // copied: the output holds a view of it and a reference to the owner
  // (OutputBuffer), so the bytes live until the owner's send completes.
  std::shared_ptr<const void> body_owner;
  // The caller promises CRLF line ends only (a composed copy): with BDAT a
  // body that also ends in CRLF goes out as it is, without a scan for bare
  // LFs; with DATA too when no line starts with "." (one read-only scan
  // decides). Without TLS and with body_owner set, "as it is" is a view.
  bool body_crlf = false;
  bool needs_8bit = false;      // send BODY=8BITMIME when offered
  bool needs_smtputf8 = false;  // bounced if the server lacks SMTPUTF8
  // Hold the end of data until Session::ReleaseEnd(): MAIL, RCPT and the
  // body go out as usual, but the final "." (DATA) or the one chunk
  // ("BDAT n LAST" with the message) waits, so the server
  // cannot accept this message before the caller says so (the engine's
  // [queue] durable_before_next: the previous outcome is recorded first).
  bool hold_end = false;
};

struct Event {
  enum class Type : uint8_t {
    kReady,            // idle: StartTransaction() or Quit()
    kTransactionDone,  // outcomes for one Envelope
    kClosed,           // the session is over; close the socket
  };
  Type type = Type::kReady;
  uint64_t envelope_id = 0;       // kTransactionDone
  std::vector<Outcome> outcomes;  // kTransactionDone: outcomes[i] belongs to rcpts[i]
  Outcome outcome;                // kClosed: kind kNone on a clean QUIT
};

enum class State : uint8_t {
  kGreeting,      // waiting for 220
  kEhlo,          // EHLO sent
  kHelo,          // HELO sent after EHLO was refused
  kStartTls,      // STARTTLS sent
  kTlsHandshake,  // handshake in progress
  kAuth,          // AUTH exchange
  kReady,         // idle, between transactions
  kTransaction,   // MAIL/RCPT/DATA (or BDAT) sent, replies outstanding
  kDataBody,      // body + "." sent (the "." maybe held), waiting for the final reply
  kRset,          // RSET sent
  kQuit,          // QUIT sent
  kClosed,        // over; no more input is processed
};
std::string_view StateName(State s);

// Output waiting to be written, as a few segments in order: the session's
// own bytes (commands, rewritten or encrypted bodies) and views of envelope
// bodies that go out unchanged, each kept alive by a reference to its owner.
// One view at most per transaction; commands before and after it are own
// bytes. Moved whole to the connection by Session::TakeOutput(OutputBuffer*),
// which sends it with one sendmsg and keeps it until the send completes.
class OutputBuffer {
 public:
  // Bytes not yet consumed, over all segments.
  size_t size() const { return own_.size() + views_bytes_ - consumed_; }
  bool empty() const { return size() == 0; }
  // Views of bodies among the pending segments (0: one contiguous buffer).
  size_t views() const { return views_.size(); }
  // Appends the pending segments (non-empty, in order, from the first
  // unconsumed byte) to *out; valid until the next non-const call.
  void Segments(std::vector<std::string_view>* out) const;
  // Drops the first n pending bytes (across segment boundaries); a view
  // consumed whole releases its owner.
  void Consume(size_t n);
  // Empties it, releasing the owners; keeps the own buffer's capacity.
  void Clear();
  // Empties it and frees the own buffer.
  void Release();

  // Writers (the session): own bytes go at the end, after any view.
  std::string* own() { return &own_; }
  void AppendView(std::string_view bytes, std::shared_ptr<const void> owner);
  // Copies the views into the own buffer (drops consumed bytes first): one
  // contiguous buffer again. Returns it.
  std::string_view Flatten();
  // Moves the pending bytes into *into as one buffer (swapped, not copied,
  // when nothing was consumed and there is no view) and empties this.
  void TakeFlat(std::string* into);
  void Swap(OutputBuffer* other);

 private:
  struct View {
    size_t at;  // offset in own_ it stands before
    std::string_view bytes;
    std::shared_ptr<const void> owner;
  };
  // Drops the consumed prefix from own_ and views_ (consumed_ = 0 after).
  void Compact();
  // f(segment) for each non-empty pending segment, in order.
  template <typename F>
  void ForEachSegment(F&& f) const;

  std::string own_;
  std::vector<View> views_;  // by `at`, ascending
  size_t views_bytes_ = 0;   // sum of views_[i].bytes.size()
  size_t consumed_ = 0;      // bytes consumed from the start of the segments
};

namespace internal {
// One transaction in flight; private to Session (outside it because clang
// rejects std::optional of a nested struct with member initialisers).
struct Transaction {
  Envelope env;
  std::vector<Outcome> outcomes;
  std::vector<uint8_t> decided;   // outcome set (failure or delivered)
  std::vector<uint8_t> accepted;  // RCPT got 2xx
  size_t accepted_count = 0;
  size_t next_rcpt = 0;  // send cursor over rcpts
  bool mail_sent = false;
  bool mail_ok = false;
  bool data_sent = false;  // DATA or BDAT sent
  bool body_sent = false;  // body + "." after 354
  bool end_held = false;   // Envelope::hold_end until ReleaseEnd()
  bool end_owed = false;   // the end of data is due but held
  bool need_rset = true;
  size_t chunk_size = 0;  // BDAT size (normalised body), computed once
  int8_t dot_free = -1;   // body_crlf body with no line starting with ".": -1 not scanned yet
};
}  // namespace internal

class Session {
 public:
  explicit Session(Options options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Bytes read from the socket (ciphertext once TLS is up).
  void Feed(std::string_view bytes);
  // Bytes to write to the socket as one buffer; valid until the next
  // non-const call. A body held as a view (Envelope::body_owner) is copied
  // into the buffer here: TakeOutput(OutputBuffer*) sends it without that copy.
  std::string_view PendingOutput() { return out_.Flatten(); }
  bool HasOutput() const { return !out_.empty(); }
  size_t PendingBytes() const { return out_.size(); }
  // Drops the first n bytes of the pending output (across segments).
  void ConsumeOutput(size_t n);
  // Moves all pending output into *into, replacing what it held. Without a
  // copy: the session keeps *into's old buffer (cleared) for its next output,
  // so a caller that always passes the same string alternates two buffers.
  // Same effect as into->assign(PendingOutput()) + ConsumeOutput(all).
  void TakeOutput(std::string* into);
  // Same, keeping the segments: bodies stay views (with their owners) until
  // *into is cleared. The caller writes into->Segments() (e.g. one sendmsg).
  void TakeOutput(OutputBuffer* into);
  // Frees the buffers kept for reuse (call when the connection goes idle).
  void ReleaseBuffers();

  // Starts a transaction; only in State::kReady (after a kReady event).
  // Returns false (and does nothing) otherwise or if rcpts is empty.
  bool StartTransaction(Envelope envelope);
  // Lets the current transaction's held end of data (Envelope::hold_end) go
  // out: now if it is due, else as soon as it is. No-op without a held one.
  void ReleaseEnd();
  // The current transaction holds its end of data (not yet released).
  bool end_held() const { return txn_.has_value() && txn_->end_held; }
  // Ends the session: QUIT when idle; mid-transaction, open recipients are
  // deferred (kLocal, "shutdown") and the session closes.
  void Quit();
  // EOF or a socket error.
  void OnConnectionLost();

  // When the current wait expires (absl::InfiniteFuture() when idle/closed).
  absl::Time NextDeadline() const { return deadline_; }
  // Call when NextDeadline() has passed; no-op if now is before it.
  void OnTimeout(absl::Time now);

  std::vector<Event> TakeEvents();
  // Same, into *out (cleared first); reusing one vector avoids an allocation
  // per call on the hot path.
  void TakeEvents(std::vector<Event>* out);
  bool HasEvents() const { return !events_.empty(); }

  State state() const { return state_; }
  bool closed() const { return state_ == State::kClosed; }
  const Extensions& extensions() const { return ext_; }
  const TlsInfo& tls_info() const { return tls_info_; }
  bool authenticated() const { return authenticated_; }
  uint64_t transactions_started() const { return transactions_; }
  // Messages go out as one BDAT LAST chunk (the server offers CHUNKING and
  // the options allow it): known after the first kReady.
  bool uses_chunking() const { return ext_.chunking && opts_.use_chunking; }

 private:
  enum class Cmd : uint8_t {
    kGreeting,
    kEhlo,
    kHelo,
    kStartTls,
    kAuth,
    kMail,
    kRcpt,
    kData,
    kDot,
    kBdat,
    kRset,
    kQuit,
  };
  struct Pending {
    Cmd cmd;
    uint32_t index;  // recipient index for kRcpt
  };

  void Enter(State next);
  void HandleReply(const Reply& reply);
  void HandleTransactionReply(Cmd cmd, uint32_t index, const Reply& reply);
  void ProcessInput();
  void AfterEhlo();
  void PumpTransaction();
  void FinishTransaction();
  void SendEnd();        // the held end of data: "." or the BDAT LAST chunk
  void SendLastChunk();  // "BDAT n LAST" with the whole message
  // Ends the session: open recipients get `open_outcome`; kClosed carries
  // `session_outcome`.
  void Abort(const Outcome& open_outcome, const Outcome& session_outcome, bool send_quit);
  void AbortWith(const Outcome& outcome, bool send_quit) { Abort(outcome, outcome, send_quit); }
  void Send(Cmd cmd, uint32_t index, std::string_view line);
  std::string* Buf();                    // where plaintext output goes (out_ or TLS staging)
  void Expect(Cmd cmd, uint32_t index);  // a reply is now owed for `cmd`
  void Write(std::string_view bytes);
  void FlushTls();
  void WriteBody(std::string_view body, bool dot_stuff);
  // The current envelope's body needs no normalising for BDAT (see Envelope::body_crlf).
  bool BodyIsCanonical() const;
  // Ditto for DATA: canonical and no line starts with "." (scanned once).
  bool BodyNeedsNoStuffing();
  void ArmDeadline();
  absl::Duration TimeoutFor(Cmd cmd) const;
  Phase PhaseFor(Cmd cmd) const;
  Phase CurrentPhase() const;
  void StartTls();
  void ContinueHandshake();
  void SendAuth();
  void OutputConsumed(size_t n);
  void Emit(Event e) { events_.push_back(std::move(e)); }

  Options opts_;
  const Clock* clock_;
  State state_ = State::kGreeting;
  ReplyParser parser_;
  OutputBuffer out_;     // ciphertext when TLS is active, else plaintext (+ body views)
  std::string scratch_;  // plaintext staging while TLS is active
  std::string plain_in_;
  std::vector<Pending> pending_;
  size_t pending_head_ = 0;
  absl::Time deadline_ = absl::InfiniteFuture();
  absl::Time now_;             // clock read at the start of the current public call
  bool body_writing_ = false;  // data_block deadline applies while output drains
  Extensions ext_;
  bool tried_helo_ = false;
  std::unique_ptr<TlsChannel> tls_;
  TlsInfo tls_info_;
  bool tls_failed_opportunistic_ = false;
  int auth_step_ = 0;
  bool authenticated_ = false;
  std::optional<internal::Transaction> txn_;
  uint64_t transactions_ = 0;
  std::vector<Event> events_;
};

// Helpers shared with tests and the benchmark.
// Appends `body` to *out with bare LF -> CRLF, a final CRLF if missing and,
// when dot_stuff, a "." doubled at the start of every line (no terminator).
void AppendNormalizedBody(std::string_view body, bool dot_stuff, std::string* out);
// Size of `body` after CRLF normalisation (without dot-stuffing).
size_t NormalizedBodySize(std::string_view body);
// No line of `body` starts with "." (not at its start, not after any LF).
bool NoLineStartsWithDot(std::string_view body);

}  // namespace salvo::smtp
