// libFuzzer target: a hostile sender against the inbound listener's command
// handling: sink::ServerSession with hold_final_reply (the reply to a message
// waits until it is stored) and inbound::RecipientPolicy (RCPT only for the
// configured domains), its bytes in arbitrary reads; the store's verdict
// (250 or 451) comes from the input too. Invariants: never crashes; every
// accepted recipient is a plain local@domain at a configured domain (no
// relaying); nothing is answered while a message waits for its verdict, and
// the input held meanwhile stays bounded; reply lines are "ddd" + space or
// dash; DATA content never holds a bare CR or LF (smuggling); nothing is
// answered after the session asked to close.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/inbound/policy.h"
#include "engine/sink/smtp_server.h"

namespace {

using salvo::sink::Verdict;

class Policy : public salvo::sink::SessionPolicy {
 public:
  explicit Policy(bool binary_allowed) : binary_allowed_(binary_allowed) {}
  Verdict OnMail(std::string_view, uint64_t) override {
    rcpts_ = 0;
    return Verdict::kAccept;
  }
  Verdict OnRcpt(std::string_view rcpt) override {
    Verdict v = rules_.Rcpt(rcpt, rcpts_);
    if (v == Verdict::kAccept) {
      ++rcpts_;
      const size_t at = rcpt.rfind('@');
      if (at == std::string_view::npos || at == 0) abort();
      std::string domain(rcpt.substr(at + 1));
      for (char& c : domain) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
      if (domain != "bounce.example" && domain != "fbl.example") abort();  // relayed
      if (rcpt.substr(0, at).find_first_of("@%!:") != std::string_view::npos) abort();
    }
    return v;
  }
  Verdict OnData() override { return Verdict::kAccept; }
  void OnMessage(const salvo::sink::Envelope& env, std::string_view content,
                 uint64_t size) override {
    if (env.recipients.empty() || env.recipients.size() > 3) abort();
    if (content.size() != size) abort();
    for (size_t i = 0; i < content.size(); ++i) {
      if (content[i] == '\n' && (i == 0 || content[i - 1] != '\r')) bare_ = true;
      if (content[i] == '\r' && (i + 1 == content.size() || content[i + 1] != '\n')) bare_ = true;
    }
    if (bare_ && !binary_allowed_) abort();
    waiting = true;
    rcpts_ = 0;
  }
  bool OnStartTls() override { return false; }
  void OnBareLineEnding() override { rcpts_ = 0; }

  bool waiting = false;

 private:
  salvo::inbound::RecipientPolicy rules_{{"bounce.example", "FBL.example"}, 3};
  bool binary_allowed_;
  bool bare_ = false;
  size_t rcpts_ = 0;
};

void CheckReplies(std::string_view out) {
  while (!out.empty()) {
    size_t eol = out.find("\r\n");
    if (eol == std::string_view::npos || eol < 4) abort();
    std::string_view line = out.substr(0, eol);
    if (line[0] < '2' || line[0] > '5' || (line[3] != ' ' && line[3] != '-')) abort();
    out.remove_prefix(eol + 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  salvo::sink::ServerOptions options;
  options.hostname = "inbound.fuzz";
  options.product = "Salvo inbound";
  options.keep_content = true;
  options.hold_final_reply = true;
  options.max_line = 64 + data[0] * 4;
  options.max_message_size = 4096;
  std::string lower(reinterpret_cast<const char*>(data) + 2, size - 2);
  for (char& ch : lower) ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
  Policy policy(lower.find("bdat") != std::string::npos);
  salvo::sink::ServerSession session(options, &policy);
  std::string out;
  session.Greeting(&out);
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t step = 1 + data[0] % 61;
  uint8_t verdicts = data[1];
  auto closed = [](salvo::sink::ServerSession::Result r) {
    return r == salvo::sink::ServerSession::Result::kCloseAfterSend ||
           r == salvo::sink::ServerSession::Result::kDropNow;
  };
  while (!in.empty()) {
    std::string_view chunk = in.substr(0, step);
    in.remove_prefix(chunk.size());
    out.clear();
    const bool was_waiting = policy.waiting;
    auto r = session.Feed(chunk, &out);
    CheckReplies(out);
    if (was_waiting && !out.empty()) abort();  // answered before the message was stored
    if (!closed(r) && policy.waiting) {
      if (!session.awaiting_reply()) abort();
      if ((step & 3) == 0 || in.empty()) {  // the store answers now, or later
        policy.waiting = false;
        out.clear();
        const bool stored = (verdicts & 1) == 0;
        verdicts = static_cast<uint8_t>((verdicts >> 1) | (verdicts << 7));
        r = session.Resume(
            stored ? "250 2.0.0 Ok: queued as 1" : "451 4.3.0 Error: cannot store the message now",
            &out);
        CheckReplies(out);
        if (out.rfind(stored ? "250 " : "451 ", 0) != 0) abort();
      }
    }
    if (closed(r)) {
      out.clear();
      session.Feed("NOOP\r\n", &out);
      if (!out.empty()) abort();  // nothing after close
      break;
    }
    step = 1 + (step * 5 + 7) % 211;
  }
  return 0;
}
