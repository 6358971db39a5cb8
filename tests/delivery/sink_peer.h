#pragma once
// The delivery tests' SMTP peer: the real sink (engine/sink) in process on a
// loopback port, keeping every message, with the knobs the tests need
// (reject some recipients, refuse at greeting, stall before the final reply).
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/sink/sink.h"
#include "gtest/gtest.h"

namespace salvo::testing {

struct SinkPeerOptions {
  std::string address = "127.0.0.1";
  int port = 0;                              // 0: any free port
  std::string greeting;                      // "" = the sink's 220
  std::string reject_substring = "reject";   // RCPTs containing it get 550 5.1.1
  std::chrono::milliseconds final_delay{0};  // before the reply to the final dot
  bool chunking = true;                      // offer CHUNKING (else clients send DATA)
};

class SinkPeer {
 public:
  using Options = SinkPeerOptions;
  using Message = sink::ReceivedMessage;

  explicit SinkPeer(Options options = {}) : address_(options.address) {
    sink::SinkOptions o;
    o.listen = {sink::ListenAddress{options.address, static_cast<uint16_t>(options.port)}};
    o.greeting = options.greeting;
    o.reject_pattern = options.reject_substring;
    o.final_delay_ms = static_cast<int>(options.final_delay.count());
    o.keep_messages = true;
    o.chunking = options.chunking;
    sink_ = std::make_unique<sink::Sink>(std::move(o));
    absl::Status s = sink_->Start();
    EXPECT_TRUE(s.ok()) << s;
    if (s.ok()) port_ = sink_->Bound().front().port;
  }
  ~SinkPeer() { Stop(); }

  void Stop() { sink_->Stop(); }
  std::string hostport() const { return address_ + ":" + std::to_string(port_); }
  int port() const { return port_; }
  std::vector<Message> messages() const { return sink_->Messages(); }
  size_t message_count() const { return sink_->Messages().size(); }
  int connections() const { return static_cast<int>(sink_->Stats().connections); }
  // The most connections open at the sink at once.
  int peak_connections() const { return static_cast<int>(sink_->Stats().connections_peak); }
  // Messages whose final dot arrived (answered or not yet).
  int dots_seen() const { return static_cast<int>(sink_->Stats().messages); }
  // RCPTs accepted (a transaction under way, whether its message ends or not).
  int recipients_accepted() const { return static_cast<int>(sink_->Stats().recipients_accepted); }
  void set_final_delay(std::chrono::milliseconds d) {
    sink_->SetFinalDelay(static_cast<int>(d.count()));
  }

 private:
  std::string address_;
  std::unique_ptr<sink::Sink> sink_;
  int port_ = 0;
};

}  // namespace salvo::testing
