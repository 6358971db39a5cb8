// libFuzzer target: a hostile client talking to the receiving side of SMTP
// (engine/sink/smtp_server: the sink today, the inbound bounce listener
// next), its bytes split into arbitrary reads. Invariants: never crashes;
// memory stays bounded (a partial line never exceeds the line limit); every
// reply line is "ddd" + space or dash; no message is accepted whose content
// holds a bare CR or LF; nothing is read after the session asked to close.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/sink/smtp_server.h"

namespace {

class Policy : public salvo::sink::SessionPolicy {
 public:
  Policy(uint8_t flags, bool binary_allowed) : flags_(flags), binary_allowed_(binary_allowed) {}
  salvo::sink::Verdict OnMail(std::string_view, uint64_t done) override {
    return (flags_ & 1) && done >= 2 ? salvo::sink::Verdict::kShutdown
                                     : salvo::sink::Verdict::kAccept;
  }
  salvo::sink::Verdict OnRcpt(std::string_view rcpt) override {
    if ((flags_ & 2) && rcpt.size() % 3 == 0) return salvo::sink::Verdict::kBounce;
    if ((flags_ & 4) && rcpt.size() % 3 == 1) return salvo::sink::Verdict::kDefer450;
    return salvo::sink::Verdict::kAccept;
  }
  salvo::sink::Verdict OnData() override {
    return (flags_ & 8) ? salvo::sink::Verdict::kDrop : salvo::sink::Verdict::kAccept;
  }
  void OnMessage(const salvo::sink::Envelope& env, std::string_view content,
                 uint64_t size) override {
    if (env.recipients.empty()) abort();
    if (content.size() != size) abort();  // keep_content: whole content under the limit
    for (size_t i = 0; i < content.size(); ++i) {
      if (content[i] == '\n' && (i == 0 || content[i - 1] != '\r')) bare_ = true;
      if (content[i] == '\r' && (i + 1 == content.size() || content[i + 1] != '\n')) bare_ = true;
    }
    // DATA content is CRLF-clean (smuggling defence); only BDAT chunks are
    // binary, so an input that never says BDAT must never deliver a bare CR/LF.
    if (bare_ && !binary_allowed_) abort();
  }
  bool OnStartTls() override { return (flags_ & 16) != 0; }

 private:
  uint8_t flags_;
  bool binary_allowed_;
  bool bare_ = false;
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
  options.keep_content = true;
  options.max_line = 64 + data[0] * 4;
  options.max_message_size = 4096;
  options.starttls = (data[1] & 16) != 0;
  std::string lower(reinterpret_cast<const char*>(data) + 2, size - 2);
  for (char& ch : lower) ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
  Policy policy(data[1], lower.find("bdat") != std::string::npos);
  salvo::sink::ServerSession session(options, &policy);
  std::string out;
  session.Greeting(&out);
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t step = 1 + data[0] % 61;
  while (!in.empty()) {
    std::string_view chunk = in.substr(0, step);
    in.remove_prefix(chunk.size());
    out.clear();
    auto r = session.Feed(chunk, &out);
    CheckReplies(out);
    if (r == salvo::sink::ServerSession::Result::kCloseAfterSend ||
        r == salvo::sink::ServerSession::Result::kDropNow) {
      out.clear();
      session.Feed("NOOP\r\n", &out);
      if (!out.empty()) abort();  // nothing after close
      break;
    }
    step = 1 + (step * 5 + 7) % 211;
  }
  return 0;
}
