#pragma once
// Drives a Session in memory for unit tests: the test plays the server.
#include <memory>
#include <string>
#include <vector>

#include "engine/common/clock.h"
#include "engine/smtp/session.h"

namespace salvo::smtp::testing {

class Harness {
 public:
  explicit Harness(Options o = DefaultOptions()) {
    o.clock = &clock;
    session = std::make_unique<Session>(std::move(o));
  }
  static Options DefaultOptions() {
    Options o;
    o.helo_name = "client.test";
    o.host = "mx.test";
    o.tls = TlsMode::kDisabled;
    return o;
  }
  // Everything the client wrote since the last call.
  std::string Out() {
    std::string r(session->PendingOutput());
    session->ConsumeOutput(r.size());
    return r;
  }
  void Feed(std::string_view bytes) {
    session->Feed(bytes);
    Collect();
  }
  bool Start(Envelope e) {
    bool ok = session->StartTransaction(std::move(e));
    Collect();
    return ok;
  }
  void Collect() {
    for (Event& e : session->TakeEvents()) events.push_back(std::move(e));
  }
  // Greeting + EHLO with the given 250 lines (without the "250-"/"250 " prefix).
  void Greet(const std::vector<std::string>& ehlo_lines = {"mx.test", "PIPELINING", "8BITMIME"}) {
    Feed("220 mx.test ESMTP\r\n");
    last_ehlo = Out();
    std::string r;
    for (size_t i = 0; i < ehlo_lines.size(); ++i) {
      r += (i + 1 < ehlo_lines.size() ? "250-" : "250 ") + ehlo_lines[i] + "\r\n";
    }
    Feed(r);
  }
  int Count(Event::Type t) const {
    int n = 0;
    for (const Event& e : events) n += e.type == t;
    return n;
  }
  const Event* Last(Event::Type t) const {
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->type == t) return &*it;
    }
    return nullptr;
  }
  static Envelope Env(std::vector<std::string> rcpts,
                      std::string_view body = "Subject: t\r\n\r\nhi\r\n", uint64_t id = 1) {
    Envelope e;
    e.id = id;
    e.mail_from = "sender@client.test";
    e.rcpts = std::move(rcpts);
    e.body = body;
    return e;
  }

  FakeClock clock;
  std::unique_ptr<Session> session;
  std::vector<Event> events;
  std::string last_ehlo;
};

}  // namespace salvo::smtp::testing
