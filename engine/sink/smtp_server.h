#pragma once
// The receiving side of SMTP as a sans-I/O state machine: bytes in, reply
// bytes out, decisions asked of a SessionPolicy. No sockets, no clock, so
// tests drive it with strings. Used by salvo sink (one per connection, on
// the connection's shard thread).
//
// Also the engine's inbound listener (engine/inbound): there the policy
// turns away relaying and the final reply is held until the message is on
// disk (ServerOptions::hold_final_reply, ServerSession::Resume).
//
// Pipelining (RFC 2920): Feed() consumes every complete command in its input
// and appends the replies in order; a partial line is kept until the rest
// arrives. DATA content is dot-unstuffed (RFC 5321 4.5.2) and streamed, so a
// message split across reads at any byte is handled. BDAT (RFC 3030) chunks
// are taken raw.
//
// Line endings are strict (RFC 5321 2.3.8, 4.1.1.4): CR and LF appear only
// together as CRLF, in commands and in DATA content. A bare LF or bare CR ends
// the session with 521 5.5.2 and nothing of the open transaction is accepted,
// as Postfix's smtpd_forbid_bare_newline does: otherwise "<LF>.<LF>",
// "<LF>.<CR><LF>" or "<CR>.<CR><LF>" could end DATA here while a strict MTA
// further on reads the rest as a second, smuggled message.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace salvo::sink {

// What the policy decides for a command.
enum class Verdict {
  kAccept,             // normal positive reply
  kBounce,             // RCPT: 550 5.1.1
  kDefer450,           // RCPT: 450 4.2.0
  kDefer451,           // RCPT: 451 4.3.0
  kShutdown,           // 421 4.7.0, then close the connection
  kDrop,               // close the connection without a reply
  kRelayDenied,        // RCPT: 550 5.7.1 (not a domain this server receives for)
  kTooManyRecipients,  // RCPT: 452 4.5.3
  kNoStorage,          // DATA/BDAT: 452 4.3.1, the transaction stays open (RSET or retry)
};

struct Envelope {
  std::string mail_from;
  std::vector<std::string> recipients;  // accepted ones only
};

class SessionPolicy {
 public:
  virtual ~SessionPolicy() = default;
  // MAIL FROM was well formed; messages_done counts completed messages on
  // this connection. kAccept, kShutdown or kDrop.
  virtual Verdict OnMail(std::string_view from, uint64_t messages_done) = 0;
  // RCPT TO was well formed. kAccept, kBounce, kDefer450/451, kShutdown, kDrop.
  virtual Verdict OnRcpt(std::string_view rcpt) = 0;
  // DATA (or the first BDAT) with at least one accepted recipient. kAccept,
  // kDrop or kNoStorage.
  virtual Verdict OnData() = 0;
  // The message is complete and within limits; the 250 reply follows
  // (with hold_final_reply: the reply waits for ServerSession::Resume).
  // `data` is the exact content after dot-unstuffing (empty unless
  // keep_content was set in ServerOptions).
  virtual void OnMessage(const Envelope& envelope, std::string_view data, uint64_t size) = 0;
  // STARTTLS was well formed and allowed (ServerOptions::starttls, not yet
  // in TLS): prepare a TLS session. false = TLS setup failed, the client
  // gets 454 4.7.0 and the session stays in plaintext.
  virtual bool OnStartTls() { return false; }
  // A bare CR or LF was received; the session answers 521 and closes.
  virtual void OnBareLineEnding() {}
};

struct ServerOptions {
  std::string hostname = "sink.salvo.invalid";
  uint64_t max_message_size = 50 * 1024 * 1024;  // advertised as SIZE
  bool chunking = true;                          // advertise CHUNKING
  bool keep_content = false;                     // pass message bytes to OnMessage
  size_t max_line = 4096;                        // command line limit
  bool starttls = false;                         // advertise and accept STARTTLS (RFC 3207)
  std::string product = "Salvo sink";            // in the 220 greeting and HELP
  // The reply to a complete message is not given by the session: after
  // OnMessage it waits (input that follows is kept, not acted upon) until the
  // owner calls Resume() with the reply, e.g. once the message is durably
  // stored. Bounded: more than 16 x max_line bytes pipelined meanwhile ends
  // the session (kDropNow).
  bool hold_final_reply = false;
};

class ServerSession {
 public:
  enum class Result {
    kContinue,        // keep reading
    kCloseAfterSend,  // send `out`, then close (QUIT, 421)
    kDropNow,         // close at once, send nothing more
    kStartTls,        // send `out` in plaintext (it ends with 220 2.0.0), then
                      // run TLS: every later byte in and out is TLS records
  };

  ServerSession(const ServerOptions& options, SessionPolicy* policy)
      : options_(options), policy_(policy) {}

  // The 220 greeting.
  void Greeting(std::string* out) const;
  // Consumes `in` (any split of the client's byte stream), appending replies
  // to `out`. After a non-kContinue result, further input is ignored.
  // kStartTls: the rest of `in` after the STARTTLS line is discarded (RFC
  // 3207 section 5: plaintext pipelined after STARTTLS must not be acted
  // upon), the session forgets the EHLO and later Feed() calls take the
  // decrypted stream; the result is kContinue again from the next Feed().
  Result Feed(std::string_view in, std::string* out);

  // hold_final_reply: after OnMessage, awaiting_reply() is true until the
  // owner calls Resume with the reply line ("250 2.0.0 Ok: queued as X",
  // "451 4.3.0 ...", no CRLF). A 2xx reply counts the message as done. The
  // input received meanwhile is then fed; the result is Feed()'s.
  Result Resume(std::string_view reply, std::string* out);
  bool awaiting_reply() const { return mode_ == Mode::kHeld; }

  uint64_t messages_done() const { return messages_done_; }
  bool in_transaction() const { return has_mail_; }
  // The name the client gave in EHLO/HELO ("" before it did).
  const std::string& client_name() const { return client_name_; }
  bool tls_active() const { return tls_active_; }

 private:
  enum class Mode { kCommand, kData, kBdat, kHeld, kDone };
  // Dot-unstuffing state at the current position in DATA content.
  enum class DotState { kLineStart, kInLine, kDot, kDotCr };

  void HandleLine(std::string_view line, std::string* out);
  void HandleMail(std::string_view args, std::string* out);
  void HandleRcpt(std::string_view args, std::string* out);
  void HandleData(std::string* out);
  void HandleBdat(std::string_view args, std::string* out);
  void HandleStartTls(std::string_view args, std::string* out);
  // Returns the number of bytes of `in` consumed; sets mode_ back to
  // kCommand when the terminating "." line is seen.
  size_t ConsumeData(std::string_view in, std::string* out);
  void AppendContent(std::string_view bytes);
  void FinishMessage(std::string* out);
  void ResetTransaction();
  void Apply(Verdict v, std::string* out);
  // 521 for a bare CR or LF, then close; `what` is "<CR>" or "<LF>".
  void RejectBareLineEnding(std::string_view what, std::string* out);

  const ServerOptions& options_;
  SessionPolicy* policy_;
  Mode mode_ = Mode::kCommand;
  Result result_ = Result::kContinue;
  bool greeted_ = false;
  bool tls_active_ = false;
  bool has_mail_ = false;
  std::string client_name_;
  bool overlong_line_ = false;
  std::string line_buf_;  // a partial command line carried between reads
  Envelope envelope_;
  std::string content_;
  uint64_t content_size_ = 0;
  DotState dot_ = DotState::kLineStart;
  bool pending_cr_ = false;  // DATA: the last byte read was a CR (its LF may come next read)
  uint64_t bdat_remaining_ = 0;
  bool bdat_last_ = false;
  bool bdat_started_ = false;
  // The BDAT command was already answered (no valid recipients): its chunk is
  // consumed without a second reply.
  bool bdat_answered_ = false;
  uint64_t messages_done_ = 0;
  std::string held_input_;  // hold_final_reply: input received while kHeld
};

// Lower-cased domain of an address ("" when there is none).
std::string DomainOf(std::string_view address);

}  // namespace salvo::sink
