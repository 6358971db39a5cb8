// The delivery log: line format (schema, escaping, hostile bytes), rotation by
// size and by age, nothing lost or duplicated under concurrent producers, a
// failing disk bounded and counted, start-up errors naming the path.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/deliverylog/record.h"
#include "engine/deliverylog/writer.h"
#include "tests/support/files.h"

namespace salvo::deliverylog {
namespace {

namespace fs = std::filesystem;

using testsupport::TempDir;

using testsupport::ReadFile;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// The log and its rotated files, oldest first (rotated names sort by time,
// the live file is the newest).
std::vector<std::string> LogFiles(const TempDir& dir, const std::string& base) {
  std::vector<std::string> rotated;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    std::string name = e.path().filename();
    if (name.rfind(base + ".", 0) == 0) rotated.push_back(e.path());
  }
  std::sort(rotated.begin(), rotated.end(), [](const std::string& a, const std::string& b) {
    // PATH.20261203T081136Z < PATH.20261203T081136Z.1 < PATH.20261203T081136Z.2 ...
    auto key = [](const std::string& s) {
      size_t z = s.rfind('Z');
      int n = z + 1 < s.size() ? std::stoi(s.substr(z + 2)) : 0;
      return std::make_pair(s.substr(0, z + 1), n);
    };
    return key(a) < key(b);
  });
  if (fs::exists(dir / base)) rotated.push_back(dir / base);
  return rotated;
}

Record Sample() {
  Record r;
  r.time = absl::FromUnixMillis(1764750696123);  // 2025-12-03T08:31:36.123Z
  r.type = RecordType::kBounced;
  r.campaign = "Spring sale";
  r.campaign_id = 7;
  r.recipient = "alice@gmail.com";
  r.domain = "gmail.com";
  r.mx_host = "gmail-smtp-in.l.google.com";
  r.mx_ip = "142.250.102.27";
  r.code = 550;
  r.enhanced_code = "5.1.1";
  r.reply = "550 5.1.1 The email account that you tried to reach does not exist.";
  r.category = smtp::Category::kBadMailbox;
  r.attempt = 2;
  r.tls_version = "TLSv1.3";
  r.size = 20480;
  r.latency_ms = 1534;
  r.source_ip = "10.0.0.5";
  return r;
}

TEST(DeliveryLogFormatTest, OneLineWithEveryFieldOfTheSchema) {
  std::string line;
  AppendJsonLine(Sample(), &line);
  EXPECT_EQ(line,
            R"({"time":"2025-12-03T08:31:36.123Z","type":"bounced","campaign":"Spring sale",)"
            R"("campaign_id":7,"recipient":"alice@gmail.com","domain":"gmail.com",)"
            R"("mx_host":"gmail-smtp-in.l.google.com","mx_ip":"142.250.102.27","code":550,)"
            R"("enhanced_code":"5.1.1","reply":"550 5.1.1 The email account that you tried to )"
            R"(reach does not exist.","category":"bad-mailbox","phase":"sync","attempt":2,)"
            R"("tls":"TLSv1.3","size":20480,"latency_ms":1534,"source_ip":"10.0.0.5"})"
            "\n");
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j.size(), 18u);
}

TEST(DeliveryLogFormatTest, TypesPhaseAndEmptyFields) {
  for (RecordType t : {RecordType::kDelivered, RecordType::kDeferred, RecordType::kBounced,
                       RecordType::kExpired, RecordType::kSuppressed}) {
    Record r;
    r.time = absl::FromUnixSeconds(0);
    r.type = t;
    r.async = true;
    std::string line;
    AppendJsonLine(r, &line);
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["type"], std::string(RecordTypeName(t)));
    EXPECT_EQ(j["time"], "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(j["phase"], t == RecordType::kBounced ? "async" : "");
    EXPECT_EQ(j["category"], "");
    EXPECT_EQ(j["code"], 0);
    EXPECT_EQ(j["mx_host"], "");
  }
}

TEST(DeliveryLogFormatTest, TimesAcrossSecondsAndBeforeTheEpoch) {
  const std::pair<int64_t, const char*> kCases[] = {{1764750696999, "2025-12-03T08:31:36.999Z"},
                                                    {1764750697000, "2025-12-03T08:31:37.000Z"},
                                                    {1764750697001, "2025-12-03T08:31:37.001Z"},
                                                    {-1, "1969-12-31T23:59:59.999Z"},
                                                    {951782400000, "2000-02-29T00:00:00.000Z"}};
  for (const auto& [ms, want] : kCases) {
    Record r;
    r.time = absl::FromUnixMillis(ms);
    std::string line;
    AppendJsonLine(r, &line);
    EXPECT_EQ(nlohmann::json::parse(line)["time"], want) << ms;
  }
}

TEST(DeliveryLogFormatTest, HostileBytesStayOneValidJsonLine) {
  Record r = Sample();
  // Quotes, backslashes, CR/LF, NUL, other controls, valid UTF-8 (kept),
  // invalid UTF-8 (a lone continuation byte, a truncated sequence, an
  // overlong encoding, a surrogate): each invalid byte becomes U+FFFD.
  std::string reply = std::string("550 \"no\" \\ line1\r\nline2\t") + '\0' + "\x01 caf\xC3\xA9 " +
                      "\x80 \xE2\x82 \xC0\xAF \xED\xA0\x80 \xF0\x9F\x93\xA7";
  r.reply = reply;
  r.recipient = "b\xFFob@example.com";
  std::string line;
  AppendJsonLine(r, &line);
  ASSERT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
  EXPECT_EQ(line.back(), '\n');
  nlohmann::json j = nlohmann::json::parse(line);  // throws on invalid UTF-8
  std::string got = j["reply"];
  const std::string head = std::string("550 \"no\" \\ line1\r\nline2\t") + '\0' + "\x01 ";
  EXPECT_EQ(got.substr(0, head.size()), head);
  EXPECT_NE(got.find("caf\xC3\xA9"), std::string::npos);
  EXPECT_NE(got.find("\xF0\x9F\x93\xA7"), std::string::npos);  // the envelope emoji, kept
  EXPECT_EQ(j["recipient"], "b\xEF\xBF\xBDob@example.com");
}

// Every single byte value, alone among plain letters: ASCII comes back as
// it was (escaped where JSON needs it), a lone byte of 0x80 or more is not
// UTF-8 and becomes U+FFFD.
TEST(DeliveryLogFormatTest, EveryByteValueRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    Record r = Sample();
    const std::string reply = std::string("a") + static_cast<char>(b) + "z";
    r.reply = reply;
    std::string line;
    AppendJsonLine(r, &line);
    ASSERT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << b;
    nlohmann::json j = nlohmann::json::parse(line);
    const std::string want = b < 0x80 ? reply : std::string("a\xEF\xBF\xBDz");
    EXPECT_EQ(j["reply"], want) << b;
  }
}

TEST(DeliveryLogFormatTest, LongRepliesAreCutAtACharacterBoundary) {
  Record r = Sample();
  std::string reply(kMaxReplyBytes - 1, 'a');
  reply += "\xC3\xA9\xC3\xA9 and more";  // a 2-byte character straddles the limit
  r.reply = reply;
  std::string line;
  AppendJsonLine(r, &line);
  nlohmann::json j = nlohmann::json::parse(line);
  std::string got = j["reply"];
  EXPECT_EQ(got, std::string(kMaxReplyBytes - 1, 'a') + "...");
}

TEST(DeliveryLogWriterTest, OpenErrorNamesThePath) {
  WriterOptions o;
  o.path = "/nonexistent-dir/delivery.jsonl";
  auto w = Writer::Open(o);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("/nonexistent-dir/delivery.jsonl"), std::string::npos);
}

TEST(DeliveryLogWriterTest, AppendsToAnExistingFileAndStopDrainsTheBuffers) {
  TempDir dir;
  std::string path = dir / "d.jsonl";
  { std::ofstream(path) << "{\"earlier\":true}\n"; }
  WriterOptions o;
  o.path = path;
  o.flush_interval = absl::Hours(1);  // only Stop writes
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok()) << w.status();
  Producer* p = (*w)->AddProducer();
  for (int i = 0; i < 3; ++i) p->Write(Sample());
  (*w)->Stop();
  std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "{\"earlier\":true}");
  EXPECT_EQ((*w)->Stats().lines, 3u);
}

TEST(DeliveryLogWriterTest, AnIdleProducersLinesReachTheDiskWithoutStop) {
  TempDir dir;
  WriterOptions o;
  o.path = dir / "d.jsonl";
  o.flush_interval = absl::Milliseconds(20);
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok());
  Producer* p = (*w)->AddProducer();
  p->Write(Sample());
  // The shard's loop calls Flush each turn; the line arrives within a few
  // flush intervals although the buffer is far from full.
  bool seen = false;
  for (int i = 0; i < 500 && !seen; ++i) {
    p->Flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    seen = Lines(ReadFile(o.path)).size() == 1;
  }
  EXPECT_TRUE(seen);
  (*w)->Stop();
}

TEST(DeliveryLogWriterTest, RotatesBySizeWithoutSplittingLines) {
  TempDir dir;
  WriterOptions o;
  o.path = dir / "d.jsonl";
  o.rotate_bytes = 2000;
  o.buffer_bytes = 1500;  // batches bigger than what fits in one file
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok());
  Producer* p = (*w)->AddProducer();
  std::string one;
  AppendJsonLine(Sample(), &one);
  constexpr int kLines = 200;
  for (int i = 0; i < kLines; ++i) {
    Record r = Sample();
    r.attempt = static_cast<uint32_t>(i);
    p->Write(r);
  }
  (*w)->Stop();
  std::vector<std::string> files = LogFiles(dir, "d.jsonl");
  const size_t per_file = 2000 / one.size();
  EXPECT_EQ(files.size(), (kLines + per_file - 1) / per_file);
  EXPECT_EQ((*w)->Stats().rotations, files.size() - 1);
  int next = 0;
  for (const std::string& f : files) {
    std::string text = ReadFile(f);
    EXPECT_LE(text.size(), 2000u) << f;
    EXPECT_EQ(text.back(), '\n') << f;
    for (const std::string& line : Lines(text)) {
      nlohmann::json j = nlohmann::json::parse(line);
      EXPECT_EQ(j["attempt"], next) << f;  // in order, none lost, none twice
      ++next;
    }
  }
  EXPECT_EQ(next, kLines);
}

TEST(DeliveryLogWriterTest, ALineLongerThanRotateBytesGetsAFileOfItsOwn) {
  TempDir dir;
  WriterOptions o;
  o.path = dir / "d.jsonl";
  o.rotate_bytes = 100;  // every line is longer
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok());
  Producer* p = (*w)->AddProducer();
  for (int i = 0; i < 5; ++i) p->Write(Sample());
  (*w)->Stop();
  std::vector<std::string> files = LogFiles(dir, "d.jsonl");
  ASSERT_EQ(files.size(), 5u);
  for (const std::string& f : files) EXPECT_EQ(Lines(ReadFile(f)).size(), 1u) << f;
}

TEST(DeliveryLogWriterTest, RotatesByAgeOnTheClock) {
  TempDir dir;
  FakeClock clock(absl::FromUnixSeconds(1764750000));  // 2025-12-03T08:20:00Z
  WriterOptions o;
  o.path = dir / "d.jsonl";
  o.rotate_interval = absl::Hours(1);
  o.flush_interval = absl::Milliseconds(10);
  o.clock = &clock;
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok());
  Producer* p = (*w)->AddProducer();
  auto write_and_wait = [&](int n) {
    for (int i = 0; i < n; ++i) p->Write(Sample());
    uint64_t want = (*w)->Stats().lines + n;
    for (int i = 0; i < 500 && (*w)->Stats().lines < want; ++i) {
      p->Flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  write_and_wait(3);
  clock.Advance(absl::Minutes(59));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ((*w)->Stats().rotations, 0u);
  clock.Advance(absl::Minutes(1));
  for (int i = 0; i < 500 && (*w)->Stats().rotations == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ((*w)->Stats().rotations, 1u);
  EXPECT_TRUE(fs::exists(dir / "d.jsonl.20251203T092000Z"));
  // An empty file is not rotated however old.
  clock.Advance(absl::Hours(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ((*w)->Stats().rotations, 1u);
  write_and_wait(2);
  (*w)->Stop();
  EXPECT_EQ(Lines(ReadFile(dir / "d.jsonl.20251203T092000Z")).size(), 3u);
  EXPECT_EQ(Lines(ReadFile(dir / "d.jsonl")).size(), 2u);
}

// Many shards writing at once while the file rotates: every line arrives
// exactly once, whole, in order per producer.
TEST(DeliveryLogWriterTest, ConcurrentProducersLoseNothing) {
  TempDir dir;
  WriterOptions o;
  o.path = dir / "d.jsonl";
  o.rotate_bytes = 1 << 20;
  o.buffer_bytes = 16 * 1024;
  o.flush_interval = absl::Milliseconds(5);
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok());
  constexpr int kProducers = 8;
  constexpr int kPerProducer = 10000;
  std::vector<Producer*> producers;
  for (int i = 0; i < kProducers; ++i) producers.push_back((*w)->AddProducer());
  std::vector<std::thread> threads;
  for (int t = 0; t < kProducers; ++t)
    threads.emplace_back([&, t] {
      std::string recipient;
      for (int i = 0; i < kPerProducer; ++i) {
        Record r = Sample();
        recipient = "r" + std::to_string(i) + "@shard" + std::to_string(t) + ".example";
        r.recipient = recipient;
        r.campaign_id = static_cast<uint64_t>(t);
        r.attempt = static_cast<uint32_t>(i);
        producers[t]->Write(r);
        if (i % 64 == 0) producers[t]->Flush();
      }
    });
  for (std::thread& t : threads) t.join();
  (*w)->Stop();
  WriterStats stats = (*w)->Stats();
  EXPECT_EQ(stats.lines, static_cast<uint64_t>(kProducers) * kPerProducer);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_GT(stats.rotations, 2u);
  std::vector<int> next(kProducers, 0);
  uint64_t total = 0;
  for (const std::string& f : LogFiles(dir, "d.jsonl")) {
    std::string text = ReadFile(f);
    EXPECT_LE(text.size(), o.rotate_bytes);
    for (const std::string& line : Lines(text)) {
      nlohmann::json j = nlohmann::json::parse(line);
      int t = j["campaign_id"];
      ASSERT_EQ(j["attempt"], next[t]) << "producer " << t << " in " << f;
      ++next[t];
      ++total;
    }
  }
  EXPECT_EQ(total, static_cast<uint64_t>(kProducers) * kPerProducer);
}

// /dev/full fails every write with ENOSPC: the producer keeps at most
// max_buffered_bytes, drops and counts the rest, and never blocks.
TEST(DeliveryLogWriterTest, AFailingDiskIsBoundedAndCounted) {
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "/dev/full is not writable here";
  WriterOptions o;
  o.path = "/dev/full";
  o.buffer_bytes = 4096;
  o.max_buffered_bytes = 64 * 1024;
  o.flush_interval = absl::Milliseconds(5);
  auto w = Writer::Open(o);
  ASSERT_TRUE(w.ok()) << w.status();
  Producer* p = (*w)->AddProducer();
  constexpr int kLines = 5000;  // ~2 MB of lines
  for (int i = 0; i < kLines; ++i) p->Write(Sample());
  (*w)->Stop();
  WriterStats s = (*w)->Stats();
  EXPECT_GT(s.write_errors, 0u);
  EXPECT_EQ(s.lines, 0u);
  EXPECT_GT(s.dropped, static_cast<uint64_t>(kLines) / 2);
  EXPECT_EQ(s.dropped, static_cast<uint64_t>(kLines));  // at Stop the rest is counted lost too
}

}  // namespace
}  // namespace salvo::deliverylog
