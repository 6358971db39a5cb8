// libFuzzer target: a hostile SMTP server. The input is the server's byte
// stream (split into reads by the fuzzer's own bytes); the client runs
// transactions whenever it is ready, under varying options, with timeouts and
// a final connection loss. Invariants: no crash, every transaction reports
// exactly one outcome per recipient, nothing happens after kClosed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "engine/common/clock.h"
#include "engine/common/log.h"
#include "engine/smtp/session.h"

namespace {

salvo::smtp::TlsClientContext* Context() {
  static auto* ctx = [] {
    salvo::SetLogLevel(salvo::LogLevel::kOff);
    auto c = salvo::smtp::TlsClientContext::Create({});
    return c.ok() ? c->release() : nullptr;
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace salvo::smtp;
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const uint8_t split = data[1];
  Options o;
  o.helo_name = "fuzz.client";
  o.host = "mx.fuzz";
  o.use_pipelining = flags & 1;
  o.use_chunking = flags & 2;
  o.tls = (flags & 4) ? TlsMode::kOpportunistic : TlsMode::kDisabled;
  if (flags & 8) o.tls = TlsMode::kRequired;
  o.tls_context = (flags & 12) ? Context() : nullptr;
  if (flags & 16) {
    o.auth = Credentials{"user", "pass"};
    o.allow_auth_without_tls = flags & 32;
  }
  salvo::FakeClock clock;
  o.clock = &clock;
  Session s(o);
  static const std::string kBody = "Subject: x\r\n\r\n.dot\nline\r\n";
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t step = 1 + split % 61;
  int transactions = 0;
  bool closed_seen = false;
  auto drain = [&] {
    for (int guard = 0; guard < 16 && s.HasEvents(); ++guard) {
      for (Event& e : s.TakeEvents()) {
        if (closed_seen) abort();  // nothing after kClosed
        switch (e.type) {
          case Event::Type::kReady:
            if (transactions < 3) {
              Envelope env;
              env.id = ++transactions;
              env.mail_from = "s@fuzz";
              env.rcpts = {"a@fuzz", "b@fuzz"};
              env.body = kBody;
              env.needs_8bit = flags & 64;
              // A kReady can be stale when later input in the same read closed
              // the session; then StartTransaction refuses.
              if (!s.StartTransaction(std::move(env)) && s.state() == State::kReady) abort();
            } else {
              s.Quit();
            }
            break;
          case Event::Type::kTransactionDone:
            if (e.outcomes.size() != 2) abort();
            break;
          case Event::Type::kClosed:
            closed_seen = true;
            break;
        }
      }
    }
  };
  while (!in.empty()) {
    std::string_view chunk = in.substr(0, step);
    in.remove_prefix(chunk.size());
    s.Feed(chunk);
    s.ConsumeOutput(s.PendingOutput().size() / ((split & 1) + 1));
    drain();
    if ((step & 15) == 0) {
      clock.Advance(absl::Minutes(3));
      s.OnTimeout(clock.Now());
      drain();
    }
    step = 1 + (step * 5 + split) % 131;
  }
  s.OnConnectionLost();
  drain();
  if (!s.closed()) abort();
  return 0;
}
