// Acceptance tests: the real `salvo sink` binary on run-time loopback ports,
// driven by clients no one here wrote (Postfix smtp-source, swaks) and by a
// raw-socket pipelining client; counts come from the sink's stats file.

#include "gtest/gtest.h"
#include "tests/sink/test_client.h"

#include "tests/sink/sink_process.h"

namespace salvo::sink {
namespace {

class SinkAcceptanceTest : public SinkProcessTest {};

TEST_F(SinkAcceptanceTest, SmtpSourceCountsMessagesAndRecipients) {
  std::string smtp_source = Which("smtp-source");
  ASSERT_FALSE(smtp_source.empty()) << "smtp-source missing: run deploy/bootstrap.sh";
  StartSink({"--shards", "2"});
  Process client(
      {smtp_source, "-s", "20", "-m", "1000", "-r", "3", "-l", "4096", "-f", "sender@example.org",
       "-t", "rcpt@one.example", "127.0.0.1:" + std::to_string(port_)},
      dir_, "smtp-source");
  ASSERT_EQ(client.Wait(milliseconds(60000)), 0) << client.Err();
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["messages"], 1000);
  EXPECT_EQ(s["connections"], 1000);
  EXPECT_EQ(s["connections_open"], 0);
  EXPECT_EQ(s["recipients_accepted"], 3000);
  EXPECT_EQ(s["recipients_delivered"], 3000);
  EXPECT_EQ(s["domains"]["one.example"]["delivered"], 3000);
  EXPECT_EQ(s["shards"], 2);
  EXPECT_GE(s["bytes"].get<uint64_t>(), 1000u * 4096u);
}

// swaks --pipeline: 4 transactions of 500 recipients at bounce 0.2 and
// defer 0.2; the shares must be within 4 sigma, and the sink's counts must
// match what swaks saw.
TEST_F(SinkAcceptanceTest, SwaksPipelinedBounceAndDeferShares) {
  std::string swaks = Which("swaks");
  ASSERT_FALSE(swaks.empty()) << "swaks missing: run deploy/bootstrap.sh";
  StartSink({"--bounce-rate", "0.2", "--defer-rate", "0.2", "--seed", "11"});
  constexpr int kRuns = 4, kPerRun = 500, kTotal = kRuns * kPerRun;
  int swaks_550 = 0, swaks_4xx = 0;
  for (int run = 0; run < kRuns; ++run) {
    std::string to;
    for (int i = 0; i < kPerRun; ++i) {
      if (i > 0) to += ",";
      to += "r" + std::to_string(run * kPerRun + i) + "@d" + std::to_string(i % 4) + ".example";
    }
    Process client({swaks, "--server", "127.0.0.1", "--port", std::to_string(port_), "--from",
                    "sender@example.org", "--to", to, "--pipeline", "--header",
                    "To: list@example.org", "--body", "hello\n.leading dot\n"},
                   dir_, "swaks" + std::to_string(run));
    ASSERT_EQ(client.Wait(milliseconds(60000)), 0) << client.Out() << client.Err();
    std::string transcript = client.Out();
    // Pipelined: DATA went out before the reply to MAIL came back.
    size_t data_sent = transcript.find(" -> DATA");
    size_t mail_reply = transcript.find("<-  250 2.1.0");
    ASSERT_NE(data_sent, std::string::npos);
    ASSERT_NE(mail_reply, std::string::npos);
    EXPECT_LT(data_sent, mail_reply) << "swaks did not pipeline";
    std::istringstream lines(transcript);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("<** 550 5.1.1")) ++swaks_550;
      if (line.starts_with("<** 450 4.") || line.starts_with("<** 451 4.")) ++swaks_4xx;
    }
  }
  nlohmann::json s = StopSink();
  int bounced = s["recipients_bounced"], deferred = s["recipients_deferred"];
  EXPECT_EQ(bounced, swaks_550);
  EXPECT_EQ(deferred, swaks_4xx);
  EXPECT_EQ(s["recipients_accepted"].get<int>(), kTotal - bounced - deferred);
  EXPECT_EQ(s["messages"], kRuns);
  double sigma = std::sqrt(kTotal * 0.2 * 0.8);
  EXPECT_LE(std::abs(bounced - kTotal * 0.2), 4 * sigma) << bounced;
  EXPECT_LE(std::abs(deferred - kTotal * 0.2), 4 * sigma) << deferred;
  int per_domain_bounced = 0;
  for (auto& [domain, c] : s["domains"].items()) per_domain_bounced += c["bounced"].get<int>();
  EXPECT_EQ(per_domain_bounced, bounced);
}

// A raw client sends MAIL + RCPTs + DATA + the message in one write; the
// saved file holds the exact bytes after dot-unstuffing.
TEST_F(SinkAcceptanceTest, RawPipelinedWriteAndSavedMessage) {
  std::string save = dir_ + "/saved";
  std::filesystem::create_directories(save);
  StartSink({"--save-dir", save, "--track-duplicates"});
  for (int round = 0; round < 2; ++round) {
    RawClient c;
    ASSERT_TRUE(c.Connect("127.0.0.1", port_));
    ASSERT_EQ(c.ReadReplies(1), (std::vector<int>{220}));
    ASSERT_TRUE(c.Send("EHLO raw.example\r\n"));
    ASSERT_EQ(c.ReadReplies(1), (std::vector<int>{250}));
    ASSERT_TRUE(c.Send(
        "MAIL FROM:<bounces@example.org>\r\nRCPT TO:<a@one.example>\r\nRCPT TO:<b@two.example>\r\n"
        "DATA\r\nSubject: pipelined\r\n\r\n..stuffed\r\n.\r\n"));
    EXPECT_EQ(c.ReadReplies(5), (std::vector<int>{250, 250, 250, 354, 250}));
    ASSERT_TRUE(c.Send("QUIT\r\n"));
    EXPECT_EQ(c.ReadReplies(1), (std::vector<int>{221}));
  }
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["messages"], 2);
  EXPECT_EQ(s["duplicate_recipients"], 2);
  EXPECT_EQ(ReadFile(save + "/2.eml"), "Subject: pipelined\r\n\r\n.stuffed\r\n");
  EXPECT_EQ(ReadFile(save + "/2.env"),
            "MAIL FROM:<bounces@example.org>\nRCPT TO:<a@one.example>\nRCPT TO:<b@two.example>\n");
}

TEST_F(SinkAcceptanceTest, MaxPerConnectionAnswers421ThenCloses) {
  StartSink({"--max-per-connection", "3"});
  RawClient c;
  ASSERT_TRUE(c.Connect("127.0.0.1", port_));
  c.ReadReplies(1);
  ASSERT_TRUE(c.Send("HELO raw.example\r\n"));
  c.ReadReplies(1);
  int delivered = 0;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.Send("MAIL FROM:<s@example.org>\r\n"));
    auto r = c.ReadReplies(1);
    ASSERT_EQ(r.size(), 1u);
    if (r[0] == 421) {
      EXPECT_NE(c.lines().back().find("421 4.7.0"), std::string::npos);
      break;
    }
    ASSERT_TRUE(c.Send("RCPT TO:<r@d.example>\r\nDATA\r\n"));
    ASSERT_EQ(c.ReadReplies(2), (std::vector<int>{250, 354}));
    ASSERT_TRUE(c.Send("hi\r\n.\r\n"));
    ASSERT_EQ(c.ReadReplies(1), (std::vector<int>{250}));
    ++delivered;
  }
  EXPECT_EQ(delivered, 3);
  c.ReadReplies(1, milliseconds(3000));
  EXPECT_TRUE(c.peer_closed());
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["rejected_421"], 1);
  EXPECT_EQ(s["messages"], 3);
}

TEST_F(SinkAcceptanceTest, MaxRateAnswers421) {
  StartSink({"--max-rate", "20"});
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 1000 && rejected == 0; ++i) {
    RawClient c;
    ASSERT_TRUE(c.Connect("127.0.0.1", port_));
    c.ReadReplies(1);
    ASSERT_TRUE(c.Send("HELO raw.example\r\nMAIL FROM:<s@example.org>\r\n"));
    auto r = c.ReadReplies(2);
    ASSERT_EQ(r.size(), 2u);
    if (r[1] == 421) {
      ++rejected;
    } else {
      ++accepted;
    }
  }
  EXPECT_EQ(rejected, 1);
  EXPECT_GE(accepted, 20);
  nlohmann::json s = StopSink();
  EXPECT_EQ(s["rejected_421"], 1);
}

TEST_F(SinkAcceptanceTest, SigusrPrintsStatsLine) {
  StartSink({});
  kill(sink_->pid(), SIGUSR1);
  bool seen = false;
  for (int i = 0; i < 300 && !seen; ++i) {
    seen = sink_->Out().find("salvo sink: connections=0") != std::string::npos;
    if (!seen) std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(seen) << sink_->Out();
  StopSink();
}

// 5,000 concurrent idle connections: the sink's RSS stays under 100 MB.
TEST_F(SinkAcceptanceTest, FiveThousandIdleConnectionsUnder100MB) {
  constexpr int kConns = 5000;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max < 2 * kConns + 200) rl.rlim_max = 2 * kConns + 200;  // needs root
  rl.rlim_cur = rl.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0) << "cannot raise RLIMIT_NOFILE to " << rl.rlim_max;
  StartSink({"--shards", "2"});
  std::vector<RawClient> clients(kConns);
  for (auto& c : clients) ASSERT_TRUE(c.Connect("127.0.0.1", port_));
  for (auto& c : clients) ASSERT_EQ(c.ReadReplies(1), (std::vector<int>{220}));
  // All are open at the sink (the stats file is rewritten every second).
  int64_t open = 0;
  for (int i = 0; i < 100 && open != kConns; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    nlohmann::json s = CurrentStats();
    if (s.contains("connections_open")) open = s["connections_open"];
  }
  EXPECT_EQ(open, kConns);
  std::string status = ReadFile("/proc/" + std::to_string(sink_->pid()) + "/status");
  size_t pos = status.find("VmRSS:");
  ASSERT_NE(pos, std::string::npos);
  long rss_kb = std::stol(status.substr(pos + 6));
  std::printf("sink VmRSS with %d idle connections: %ld kB (%.1f KiB per connection)\n", kConns,
              rss_kb, double(rss_kb) / kConns);
  EXPECT_LT(rss_kb, 100 * 1024);
  clients.clear();
  StopSink();
}

}  // namespace
}  // namespace salvo::sink
