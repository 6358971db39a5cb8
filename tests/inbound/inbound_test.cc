// The inbound listener (engine/inbound): the held final reply of the shared
// SMTP session, the recipient policy, and InboundServer against a real
// RocksDB spool: a message is on disk before its 250, survives a stop (a
// processing function that cannot run yet leaves it pending) and is processed
// by the next start; relaying and bare line endings are refused.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine/inbound/policy.h"
#include "engine/inbound/server.h"
#include "engine/sink/smtp_server.h"
#include "queue/spool.h"
#include "tests/sink/test_client.h"
#include "tests/support/files.h"

namespace salvo::inbound {
namespace {

using sink::testing::RawClient;

struct RecordingPolicy : sink::SessionPolicy {
  sink::Verdict OnMail(std::string_view, uint64_t) override { return sink::Verdict::kAccept; }
  sink::Verdict OnRcpt(std::string_view rcpt) override { return policy.Rcpt(rcpt, 0); }
  sink::Verdict OnData() override { return sink::Verdict::kAccept; }
  void OnMessage(const sink::Envelope& e, std::string_view data, uint64_t) override {
    messages.push_back(std::string(data));
    froms.push_back(e.mail_from);
  }
  RecipientPolicy policy{{"Bounce.Example"}, 10};
  std::vector<std::string> messages, froms;
};

TEST(InboundSessionTest, TheFinalReplyWaitsForResumeAndPipelinedCommandsWaitToo) {
  sink::ServerOptions o;
  o.keep_content = true;
  o.hold_final_reply = true;
  RecordingPolicy p;
  sink::ServerSession s(o, &p);
  std::string out;
  s.Feed("EHLO mta.example\r\nMAIL FROM:<>\r\nRCPT TO:<b+x@bounce.example>\r\nDATA\r\n", &out);
  EXPECT_NE(out.find("354 "), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(s.Feed("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", &out),
            sink::ServerSession::Result::kContinue);
  EXPECT_EQ(out, "") << "no reply before the message is stored";
  EXPECT_TRUE(s.awaiting_reply());
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0], "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(p.froms[0], "");
  EXPECT_EQ(s.Resume("250 2.0.0 Ok: queued as 7", &out),
            sink::ServerSession::Result::kCloseAfterSend);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as 7\r\n221 2.0.0 Bye\r\n");
  EXPECT_EQ(s.messages_done(), 1u);
}

TEST(InboundSessionTest, OnlyTheConfiguredDomainsAreAcceptedNoRelaying) {
  RecipientPolicy p({"bounce.example", "fbl.example"}, 2);
  EXPECT_EQ(p.Rcpt("b+tok@bounce.example", 0), sink::Verdict::kAccept);
  EXPECT_EQ(p.Rcpt("abuse@FBL.example", 0), sink::Verdict::kAccept);
  EXPECT_EQ(p.Rcpt("user@gmail.com", 0), sink::Verdict::kRelayDenied);
  EXPECT_EQ(p.Rcpt("user@sub.bounce.example", 0), sink::Verdict::kRelayDenied);
  EXPECT_EQ(p.Rcpt("user%gmail.com@bounce.example", 0), sink::Verdict::kRelayDenied);
  EXPECT_EQ(p.Rcpt("@bounce.example:user@gmail.com", 0), sink::Verdict::kRelayDenied);
  EXPECT_EQ(p.Rcpt("a@gmail.com@bounce.example", 0), sink::Verdict::kRelayDenied);
  EXPECT_EQ(p.Rcpt("bounce.example", 0), sink::Verdict::kRelayDenied);
  EXPECT_EQ(p.Rcpt("x@bounce.example", 2), sink::Verdict::kTooManyRecipients);
}

class InboundServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = queue::Spool::Open(dir_.path() + "/spool", {});
    ASSERT_TRUE(s.ok()) << s.status();
    spool_ = std::move(*s);
  }
  std::unique_ptr<InboundServer> StartServer(ProcessFunction f, InboundOptions o = {}) {
    o.listen.push_back({"127.0.0.1", 0});
    o.domains = {"bounce.example"};
    o.hostname = "inbound.test";
    auto s = InboundServer::Start(spool_.get(), o, std::move(f));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  testsupport::TempDir dir_{"salvo-inbound"};
  std::unique_ptr<queue::Spool> spool_;
};

// Sends one message; returns the reply codes after the greeting.
std::vector<int> SendOne(uint16_t port, const std::string& rcpt, const std::string& body) {
  RawClient c;
  if (!c.Connect("127.0.0.1", port)) return {};
  c.ReadReplies(1);
  c.Send("EHLO mta.example\r\n");
  c.ReadReplies(1);
  c.Send("MAIL FROM:<>\r\nRCPT TO:<" + rcpt + ">\r\n");
  std::vector<int> codes = c.ReadReplies(2);
  if (codes.size() == 2 && codes[1] == 250) {
    c.Send("DATA\r\n");
    codes.push_back(c.ReadReplies(1).at(0));
    c.Send(body + ".\r\n");
    std::vector<int> end = c.ReadReplies(1);
    codes.insert(codes.end(), end.begin(), end.end());
  }
  c.Send("QUIT\r\n");
  c.ReadReplies(1);
  return codes;
}

TEST_F(InboundServerTest, AStoredMessageSurvivesAStopAndIsProcessedByTheNextStart) {
  std::atomic<int> calls{0};
  {
    auto server = StartServer([&](const queue::InboundMessage&) -> absl::StatusOr<std::string> {
      ++calls;
      return absl::UnavailableError("not now");
    });
    ASSERT_NE(server, nullptr);
    std::vector<int> codes =
        SendOne(server->Bound()[0].port, "b+tok@bounce.example", "Subject: report\r\n\r\nbody\r\n");
    EXPECT_EQ(codes, (std::vector<int>{250, 250, 354, 250}));
    // The 250 came after the sync write: the message is on disk now.
    auto pending = spool_->PendingInbound(10);
    ASSERT_TRUE(pending.ok());
    ASSERT_EQ(pending->size(), 1u);
    EXPECT_EQ((*pending)[0].recipients, std::vector<std::string>{"b+tok@bounce.example"});
    EXPECT_EQ((*pending)[0].raw, "Subject: report\r\n\r\nbody\r\n");
    EXPECT_EQ(server->Stats().messages["accepted"], 1u);
    // The worker tried it and could not: it stays stored.
    for (int i = 0; i < 500 && calls.load() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_GE(calls.load(), 1);
  }
  std::atomic<int> processed{0};
  auto server = StartServer([&](const queue::InboundMessage& m) -> absl::StatusOr<std::string> {
    EXPECT_EQ(m.raw, "Subject: report\r\n\r\nbody\r\n");
    ++processed;
    return std::string("bounce");
  });
  ASSERT_NE(server, nullptr);
  for (int i = 0; i < 1000 && server->Stats().processed["bounce"] == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(processed.load(), 1);
  EXPECT_EQ(server->Stats().processed["bounce"], 1u);
  auto pending = spool_->PendingInbound(10);
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

TEST_F(InboundServerTest, RelayingAndBareLineEndingsAreRefusedAndNothingIsStored) {
  auto server = StartServer([](const queue::InboundMessage&) -> absl::StatusOr<std::string> {
    return std::string("bounce");
  });
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->Bound()[0].port;
  std::vector<int> codes = SendOne(port, "victim@gmail.com", "x\r\n");
  EXPECT_EQ(codes, (std::vector<int>{250, 550}));

  RawClient c;
  ASSERT_TRUE(c.Connect("127.0.0.1", port));
  c.ReadReplies(1);
  c.Send("EHLO mta.example\r\nMAIL FROM:<>\r\nRCPT TO:<b@bounce.example>\r\nDATA\r\n");
  c.ReadReplies(4);
  // SMTP smuggling: "<LF>.<LF>" must never end the message.
  c.Send("Subject: a\r\n\r\nx\n.\nMAIL FROM:<>\r\n");
  std::vector<int> end = c.ReadReplies(1);
  EXPECT_EQ(end, std::vector<int>{521});
  auto pending = spool_->PendingInbound(10);
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
  for (int i = 0; i < 100 && server->Stats().rejected["bare_line_ending"] == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->Stats().rejected["relay"], 1u);
  EXPECT_EQ(server->Stats().rejected["bare_line_ending"], 1u);
  EXPECT_EQ(server->Stats().messages["accepted"], 0u);
}

TEST_F(InboundServerTest, ManyConcurrentSendersAreAllStored) {
  auto server = StartServer([](const queue::InboundMessage&) -> absl::StatusOr<std::string> {
    return std::string("bounce");
  });
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->Bound()[0].port;
  std::vector<std::thread> senders;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i)
    senders.emplace_back([&, i] {
      std::vector<int> codes = SendOne(port, "b" + std::to_string(i) + "@bounce.example",
                                       "Subject: " + std::to_string(i) + "\r\n\r\nx\r\n");
      if (codes == std::vector<int>{250, 250, 354, 250}) ++ok;
    });
  for (std::thread& t : senders) t.join();
  EXPECT_EQ(ok.load(), 20);
  for (int i = 0; i < 500 && server->Stats().processed["bounce"] < 20; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->Stats().messages["accepted"], 20u);
  EXPECT_EQ(server->Stats().processed["bounce"], 20u);
}

TEST_F(InboundServerTest, IdlePeersAreClosedAndConnectionsBeyondTheLimitGet421) {
  InboundOptions o;
  o.idle_timeout = std::chrono::seconds(1);
  o.max_connections = 2;
  auto server = StartServer(
      [](const queue::InboundMessage&) -> absl::StatusOr<std::string> { return std::string("x"); },
      o);
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->Bound()[0].port;
  RawClient a, b, c;
  ASSERT_TRUE(a.Connect("127.0.0.1", port));
  ASSERT_TRUE(b.Connect("127.0.0.1", port));
  EXPECT_EQ(a.ReadReplies(1), std::vector<int>{220});
  EXPECT_EQ(b.ReadReplies(1), std::vector<int>{220});
  ASSERT_TRUE(c.Connect("127.0.0.1", port));
  EXPECT_EQ(c.ReadReplies(1), std::vector<int>{421});
  // Silent for longer than idle_timeout: 421 4.4.2 and closed.
  EXPECT_EQ(a.ReadReplies(1, std::chrono::seconds(10)), std::vector<int>{421});
  a.ReadReplies(1, std::chrono::seconds(2));
  EXPECT_TRUE(a.peer_closed());
  EXPECT_EQ(server->Stats().rejected["too_many_connections"], 1u);
  EXPECT_GE(server->Stats().rejected["idle_timeout"], 1u);
}

TEST_F(InboundServerTest, DataBeyondMaxBufferedBytesGets452AndTheListenerAcceptsAgainAfter) {
  // Two messages of up to 64 KiB fit in 128 KiB: while two senders are in
  // DATA, a flood of others gets 452 4.3.1 (temporary), nothing is stored
  // for them, the process stays up; once the two finish, mail is taken again.
  InboundOptions o;
  o.max_message_size = 64 * 1024;
  o.max_buffered_bytes = 128 * 1024;
  auto server = StartServer(
      [](const queue::InboundMessage&) -> absl::StatusOr<std::string> { return std::string("x"); },
      o);
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->Bound()[0].port;
  RawClient a, b;
  for (RawClient* c : {&a, &b}) {
    ASSERT_TRUE(c->Connect("127.0.0.1", port));
    c->ReadReplies(1);
    c->Send("EHLO mta.example\r\nMAIL FROM:<>\r\nRCPT TO:<b@bounce.example>\r\nDATA\r\n");
    EXPECT_EQ(c->ReadReplies(4), (std::vector<int>{250, 250, 250, 354}));
    c->Send("Subject: held\r\n\r\n" + std::string(1000, 'x') + "\r\n");  // mid-DATA
  }
  std::vector<std::thread> flood;
  std::atomic<int> refused{0};
  for (int i = 0; i < 10; ++i)
    flood.emplace_back([&] {
      RawClient c;
      if (!c.Connect("127.0.0.1", port)) return;
      c.ReadReplies(1);
      c.Send("EHLO mta.example\r\nMAIL FROM:<>\r\nRCPT TO:<f@bounce.example>\r\nDATA\r\n");
      if (c.ReadReplies(4) == std::vector<int>{250, 250, 250, 452}) ++refused;
      c.Send("QUIT\r\n");
      c.ReadReplies(1);
    });
  for (std::thread& t : flood) t.join();
  EXPECT_EQ(refused.load(), 10);
  EXPECT_EQ(server->Stats().rejected["no_storage"], 10u);
  for (RawClient* c : {&a, &b}) {
    c->Send(".\r\n");
    EXPECT_EQ(c->ReadReplies(1), std::vector<int>{250});
  }
  // The reservations come back with the answers: a new sender is taken.
  EXPECT_EQ(SendOne(port, "c@bounce.example", "Subject: after\r\n\r\nx\r\n"),
            (std::vector<int>{250, 250, 354, 250}));
  InboundStats st = server->Stats();
  EXPECT_EQ(st.messages["accepted"], 3u);
  EXPECT_EQ(st.buffered_bytes_peak, 128u * 1024);
  for (int i = 0; i < 200 && server->Stats().buffered_bytes != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->Stats().buffered_bytes, 0u);
}

}  // namespace
}  // namespace salvo::inbound
