// Storage faults under a real `salvo run` sending to `salvo sink` (slowed to
// about 1,000 messages/s: 50 in flight, 50 ms per end of data) (issue 16,
// item 1): the spool on a small tmpfs filled mid-send, and on an ext4 loop
// device shut down mid-send (EXT4_IOC_SHUTDOWN: every I/O then fails with
// EIO). No abort, no outcome lost, and after a full disk is freed the
// campaign finishes without a restart. Needs root (mount); skips otherwise.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace salvo::itest {
namespace {

constexpr int kRecipients = 20000;
constexpr int kInFlightLimit = 50;

struct LoadedCampaign {
  std::string config;
  std::string campaign;  // ID
};

// A campaign of kRecipients over 50 domains, all routed to the sink, with the
// data directory `data_dir`; loaded. min_free_bytes 0: the disk itself fails.
LoadedCampaign Prepare(const TempDir& dir, const std::string& data_dir, const Sink& sink,
                       const std::string& queue_extra = "") {
  // A wide column (not in the message) makes every completion a bigger
  // write, so the spool outgrows the WAL space RocksDB preallocated (1.1 x a
  // write buffer) and the free space while mail flows.
  const std::string pad(3000, 'p');
  std::string csv = "email,name,pad\n";
  for (int i = 0; i < kRecipients; ++i)
    csv += "u" + std::to_string(i) + "@d" + std::to_string(i % 50) + ".example,N," + pad + "\n";
  WriteFile(dir / "list.csv", csv);
  WriteFile(dir / "message.eml", "From: news@example.com\r\nSubject: Hi {{name}}\r\n\r\nHello\r\n");
  LoadedCampaign s;
  s.config = dir / "salvo.toml";
  WriteFile(s.config, "data_dir = \"" + data_dir +
                          "\"\nshards = 2\npin_threads = false\n[routes]\n\"*\" = \"" +
                          sink.hostport() + "\"\n[tls]\nmode = \"off\"\n[delivery]\n" +
                          "in_flight_limit = " + std::to_string(kInFlightLimit) +
                          "\n[queue]\npoll_interval = \"50ms\"\nmin_free_bytes = 0\n" +
                          queue_extra + "[metrics]\nlisten = \"\"\n");
  RunResult load = RunSalvo(
      dir, {"campaign", "load", "--name", "fault", "--template", dir / "message.eml",
            "--recipients", dir / "list.csv", "--from", "news@example.com", "--config", s.config});
  EXPECT_EQ(load.code, 0) << load.err;
  s.campaign = load.out.substr(0, load.out.find('\n'));
  return s;
}

nlohmann::json Status(const TempDir& dir, const LoadedCampaign& s) {
  RunResult r = RunSalvo(dir, {"campaign", "status", s.campaign, "--json", "--config", s.config},
                         std::chrono::seconds(10));
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json{{"error", r.err}} : j;
}

uint64_t Delivered(const nlohmann::json& status) {
  return status.contains("counts") ? status["counts"].value("delivered", uint64_t{0}) : 0;
}
bool Writable(const nlohmann::json& status) {
  return !status.contains("spool") || status["spool"].value("writable", true);
}

// Fills the file system holding `path` until it refuses (ENOSPC).
// A 512 MiB sparse ext4 image mounted on `disk` (a loop device): "" when
// mounted, else why not (no mkfs.ext4, not root, no /dev/loop*): the test
// skips saying so.
std::string MountExt4(const TempDir& dir, const std::string& image, const std::string& disk) {
  std::FILE* f = std::fopen(image.c_str(), "w");
  if (f == nullptr) return "cannot create " + image;
  std::fclose(f);
  std::filesystem::resize_file(image, 512 << 20);  // sparse
  RunResult mkfs = testsupport::Run({"mkfs.ext4", "-q", "-F", image}, dir / "mkfs.out",
                                    dir / "mkfs.err", std::chrono::seconds(60));
  if (mkfs.code != 0) return "mkfs.ext4 unavailable: " + ReadFile(dir / "mkfs.err");
  RunResult mnt = testsupport::Run({"mount", "-o", "loop", image, disk}, dir / "mount.out",
                                   dir / "mount.err", std::chrono::seconds(30));
  if (mnt.code != 0)
    return "cannot mount an ext4 loop device (needs root and /dev/loop*): " +
           ReadFile(dir / "mount.err");
  return "";
}

struct Unmount {
  std::string p;
  ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
};

void FillDisk(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  std::string chunk(1 << 20, 'x');
  while (::write(fd, chunk.data(), chunk.size()) > 0) {
  }
  std::string small(4096, 'x');
  while (::write(fd, small.data(), small.size()) > 0) {
  }
  ::close(fd);
}

TEST(StorageFaultE2E, DiskFullMidSendHoldsOutcomesAndFinishesWhenSpaceReturns) {
  TempDir dir;
  const std::string disk = dir / "disk";
  std::filesystem::create_directories(disk);
  // RocksDB resumes by itself once free space exceeds a write buffer
  // (32 MiB), as freeing the filler below gives it.
  if (::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=256m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << std::strerror(errno);
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{disk};

  Sink sink(dir, "sink", "127.0.0.1", {"--track-duplicates", "--final-delay-ms", "50"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  LoadedCampaign s = Prepare(dir, disk + "/data", sink);
  Process run({SALVO_BINARY, "run", "--config", s.config}, dir / "run.out", dir / "run.err");

  // Fill the disk while mail flows.
  ASSERT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") >= 2000; }, std::chrono::seconds(60)))
      << ReadFile(dir / "run.err");
  FillDisk(disk + "/filler");
  const auto filled = std::chrono::steady_clock::now();

  nlohmann::json st;
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Status(dir, s);
        return !Writable(st);
      },
      std::chrono::seconds(30)))
      << "the spool never reported the full disk; sink " << sink.Count("recipients_delivered")
      << ", status " << st.dump() << "\nlog: " << ReadFile(dir / "run.err");
  // Settle: the transactions open at the fault finish, nothing new starts.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  st = Status(dir, s);
  const uint64_t at_sink = sink.Count("recipients_delivered");
  const uint64_t in_spool = Delivered(st);
  const uint64_t held = st["spool"].value("held_outcomes", uint64_t{0});
  std::printf("disk full: sink %llu, spool delivered %llu (%llu held in memory), %s\n",
              static_cast<unsigned long long>(at_sink), static_cast<unsigned long long>(in_spool),
              static_cast<unsigned long long>(held), st["spool"].dump().c_str());
  EXPECT_TRUE(run.running()) << "salvo run ended: " << ReadFile(dir / "run.err");
  EXPECT_FALSE(Writable(st));
  EXPECT_GT(held, 0u);
  // Every delivery the sink accepted is recorded (in memory, held): the
  // spool knows of each one, beyond what was open in the last instant.
  EXPECT_LE(at_sink, in_spool + kInFlightLimit);
  EXPECT_LT(at_sink, static_cast<uint64_t>(kRecipients));  // sending stopped
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(sink.Count("recipients_delivered"), at_sink) << "leasing did not stop";

  // Space returns: everything is delivered, without a restart.
  std::filesystem::remove(disk + "/filler");
  const auto freed = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point resumed{};
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Status(dir, s);
        if (resumed == std::chrono::steady_clock::time_point{} && Writable(st))
          resumed = std::chrono::steady_clock::now();
        return st.value("done", false);
      },
      std::chrono::seconds(120)))
      << st.dump() << "\nlog: " << ReadFile(dir / "run.err");
  std::printf("disk full: resumed %.1f s after space returned (full for %.1f s)\n",
              std::chrono::duration<double>(resumed - freed).count(),
              std::chrono::duration<double>(freed - filled).count());
  EXPECT_TRUE(run.running());
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(std::chrono::seconds(30)), 0) << ReadFile(dir / "run.err");
  EXPECT_EQ(Delivered(st), static_cast<uint64_t>(kRecipients)) << st.dump();
  // The sink rewrites its stats every second.
  WaitFor([&] { return sink.Count("recipients_delivered") >= kRecipients; },
          std::chrono::seconds(5));
  EXPECT_EQ(sink.Count("recipients_delivered"), static_cast<uint64_t>(kRecipients));
  EXPECT_EQ(sink.Count("duplicate_recipients"), 0u);
  const std::string log = ReadFile(dir / "run.err");
  EXPECT_NE(log.find("spool cannot write"), std::string::npos) << log;
  EXPECT_NE(log.find("spool writable again"), std::string::npos) << log;
}

// `campaign load` onto a disk that fills up during the load: a clear error
// naming the cause, no abort, no half-loaded campaign visible; once space
// returns the same load succeeds (each command opens the spool anew).
TEST(StorageFaultE2E, DiskFullDuringLoadFailsClearlyLeavesNoHalfCampaignAndLoadsLater) {
  TempDir dir;
  const std::string disk = dir / "disk";
  std::filesystem::create_directories(disk);
  if (::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=96m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << std::strerror(errno);
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{disk};
  const std::string pad(400, 'p');
  std::string csv = "email,name,pad\n";
  for (int i = 0; i < 40000; ++i)
    csv += "u" + std::to_string(i) + "@d" + std::to_string(i % 50) + ".example,N," + pad + "\n";
  WriteFile(dir / "list.csv", csv);  // about 17 MB, outside the small disk
  WriteFile(dir / "message.eml", "From: news@example.com\r\nSubject: Hi\r\n\r\nHello\r\n");
  const std::string config = dir / "salvo.toml";
  WriteFile(config, "data_dir = \"" + disk + "/data\"\n[queue]\nmin_free_bytes = 0\n" +
                        "[metrics]\nlisten = \"\"\n");
  const std::vector<std::string> load = {"campaign",         "load",           "--name",
                                         "bigload",          "--template",     dir / "message.eml",
                                         "--recipients",     dir / "list.csv", "--from",
                                         "news@example.com", "--config",       config};
  // A spool with a small campaign first, then a filler leaving a few MiB free.
  WriteFile(dir / "small.csv", "email\na@d.example\n");
  RunResult small = RunSalvo(
      dir, {"campaign", "load", "--name", "small", "--template", dir / "message.eml",
            "--recipients", dir / "small.csv", "--from", "news@example.com", "--config", config});
  ASSERT_EQ(small.code, 0) << small.err;
  {
    int fd = ::open((disk + "/filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    std::string chunk(1 << 20, 'x');
    struct statvfs vfs {};
    for (int i = 0; i < 200; ++i) {
      ASSERT_EQ(::statvfs(disk.c_str(), &vfs), 0);
      if (static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize < (6u << 20)) break;
      ASSERT_EQ(::write(fd, chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    }
    ::close(fd);
  }
  RunResult full = RunSalvo(dir, load, std::chrono::seconds(120));
  EXPECT_EQ(full.code, 1) << full.out << full.err;  // a runtime failure, not an abort
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  RunResult list = RunSalvo(dir, {"campaign", "list", "--config", config});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find("small"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("bigload"), std::string::npos) << "a half-loaded campaign is visible:\n"
                                                         << list.out;
  // Space returns: the same load succeeds, every recipient is there.
  std::filesystem::remove(disk + "/filler");
  RunResult ok = RunSalvo(dir, load, std::chrono::seconds(120));
  ASSERT_EQ(ok.code, 0) << ok.err;
  const std::string id = ok.out.substr(0, ok.out.find('\n'));
  RunResult st = RunSalvo(dir, {"campaign", "status", id, "--json", "--config", config});
  nlohmann::json j = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << st.out << st.err;
  EXPECT_EQ(j["counts"].value("total", uint64_t{0}), 40000u) << j.dump();
}

TEST(StorageFaultE2E, EioMidSendDoesNotAbortAndStopsSending) {
  TempDir dir;
  const std::string image = dir / "disk.img", disk = dir / "disk";
  std::filesystem::create_directories(disk);
  if (std::string why = MountExt4(dir, image, disk); !why.empty()) GTEST_SKIP() << why;
  Unmount unmount{disk};

  Sink sink(dir, "sink", "127.0.0.1", {"--track-duplicates", "--final-delay-ms", "50"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  LoadedCampaign s = Prepare(dir, disk + "/data", sink);
  Process run({SALVO_BINARY, "run", "--config", s.config}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") >= 2000; }, std::chrono::seconds(60)))
      << ReadFile(dir / "run.err");
  // EXT4_IOC_SHUTDOWN with EXT4_GOING_FLAGS_NOLOGFLUSH: from now on every
  // read and write on this file system fails with EIO, as a dying disk does.
  {
    int fd = ::open(disk.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    uint32_t flags = 2;
    ASSERT_EQ(::ioctl(fd, _IOR('X', 125, uint32_t), &flags), 0) << std::strerror(errno);
    ::close(fd);
  }
  // The admin socket lives on the dead disk too, but answers (from memory).
  nlohmann::json st;
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Status(dir, s);
        return !Writable(st);
      },
      std::chrono::seconds(30)))
      << "the spool never reported the failing disk; status " << st.dump()
      << "\nlog: " << ReadFile(dir / "run.err");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  st = Status(dir, s);
  const uint64_t at_sink = sink.Count("recipients_delivered");
  const uint64_t in_spool = Delivered(st);
  std::printf("EIO: sink %llu, spool delivered %llu, %s\n",
              static_cast<unsigned long long>(at_sink), static_cast<unsigned long long>(in_spool),
              st["spool"].dump().c_str());
  EXPECT_TRUE(run.running()) << "salvo run ended: " << ReadFile(dir / "run.err");
  EXPECT_LE(at_sink, in_spool + kInFlightLimit);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(sink.Count("recipients_delivered"), at_sink) << "leasing did not stop";
  // It says that only a restart gets it writing again (the file system is
  // shut down for good: see queue/README.md), in the status and the log.
  EXPECT_TRUE(st["spool"].value("needs_restart", false)) << st.dump();
  EXPECT_NE(ReadFile(dir / "run.err").find("cannot resume writing without a restart"),
            std::string::npos)
      << ReadFile(dir / "run.err");
  // A clean stop, not an abort; it says what it could not record.
  run.Signal(SIGTERM);
  const int code = run.Wait(std::chrono::seconds(30));
  EXPECT_NE(code, 128 + SIGABRT) << ReadFile(dir / "run.err");
  EXPECT_NE(code, -1);
  EXPECT_NE(ReadFile(dir / "run.err").find("could not write"), std::string::npos)
      << ReadFile(dir / "run.err");
}

// The disk stays dead through the stop (the reopen at close fails too): the
// delivered outcomes the spool held go to a rescue file in queue.rescue_dir
// (another directory); after a restart on the disk brought back (unmounted,
// mounted again), the restart records them (queue.rescue_dir) and the
// campaign finishes with no recipient sent twice. sync_writes: what the
// spool wrote before the fault is on the disk (the shutdown drops the page
// cache), so every duplicate would be a held outcome not rescued.
TEST(StorageFaultE2E, DeadDiskAtStopRescuesHeldOutcomesAndRecoverSendsNothingTwice) {
  TempDir dir;
  const std::string image = dir / "disk.img", disk = dir / "disk", rescue = dir / "rescue";
  std::filesystem::create_directories(disk);
  std::filesystem::create_directories(rescue);
  if (std::string why = MountExt4(dir, image, disk); !why.empty()) GTEST_SKIP() << why;
  Unmount unmount{disk};

  Sink sink(dir, "sink", "127.0.0.1", {"--track-duplicates", "--final-delay-ms", "50"});
  ASSERT_GT(sink.port(), 0) << sink.err();
  LoadedCampaign s =
      Prepare(dir, disk + "/data", sink, "sync_writes = true\nrescue_dir = \"" + rescue + "\"\n");
  Process run({SALVO_BINARY, "run", "--config", s.config}, dir / "run.out", dir / "run.err");
  ASSERT_TRUE(
      WaitFor([&] { return sink.Count("recipients_delivered") >= 2000; }, std::chrono::seconds(60)))
      << ReadFile(dir / "run.err");
  {
    int fd = ::open(disk.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    uint32_t flags = 2;  // EXT4_GOING_FLAGS_NOLOGFLUSH
    ASSERT_EQ(::ioctl(fd, _IOR('X', 125, uint32_t), &flags), 0) << std::strerror(errno);
    ::close(fd);
  }
  nlohmann::json st;
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Status(dir, s);
        return !Writable(st);
      },
      std::chrono::seconds(30)))
      << "the spool never reported the failing disk; status " << st.dump();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  run.Signal(SIGTERM);
  const int code = run.Wait(std::chrono::seconds(30));
  EXPECT_NE(code, 128 + SIGABRT) << ReadFile(dir / "run.err");
  EXPECT_NE(code, -1);
  std::string rescue_file;
  for (const auto& e : std::filesystem::directory_iterator(rescue)) rescue_file = e.path();
  ASSERT_FALSE(rescue_file.empty()) << "no rescue file; log: " << ReadFile(dir / "run.err");
  size_t lines = 0;
  for (char c : ReadFile(rescue_file)) lines += c == '\n';
  std::printf("dead disk: sink %llu, %zu outcome(s) rescued\n",
              static_cast<unsigned long long>(sink.Count("recipients_delivered")), lines);
  EXPECT_GE(lines, 1u);

  // The disk back: with nothing open on it, unmount and mount it again.
  ASSERT_EQ(::umount2(disk.c_str(), 0), 0) << std::strerror(errno);
  RunResult mnt = testsupport::Run({"mount", "-o", "loop", image, disk}, dir / "mount2.out",
                                   dir / "mount2.err", std::chrono::seconds(30));
  ASSERT_EQ(mnt.code, 0) << ReadFile(dir / "mount2.err");
  // The restart applies the rescue file before sending (queue.rescue_dir)
  // and renames it; `salvo queue recover` is for files kept elsewhere.
  Process again({SALVO_BINARY, "run", "--config", s.config}, dir / "run2.out", dir / "run2.err");
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Status(dir, s);
        return st.value("done", false);
      },
      std::chrono::seconds(120)))
      << st.dump() << "\nlog: " << ReadFile(dir / "run2.err");
  again.Signal(SIGTERM);
  again.Wait(std::chrono::seconds(30));
  EXPECT_EQ(Delivered(st), static_cast<uint64_t>(kRecipients)) << st.dump();
  EXPECT_FALSE(std::filesystem::exists(rescue_file));
  EXPECT_TRUE(std::filesystem::exists(rescue_file + ".recovered"));
  const std::string log2 = ReadFile(dir / "run2.err");
  EXPECT_NE(log2.find(" outcome(s) from the rescue file " + rescue_file), std::string::npos)
      << log2;
  // The sink writes its stats file every second: let the last second land.
  WaitFor([&] { return sink.Count("recipients_delivered") >= kRecipients; },
          std::chrono::seconds(10));
  EXPECT_EQ(sink.Count("duplicate_recipients"), 0u);
  EXPECT_EQ(sink.Count("recipients_delivered"), static_cast<uint64_t>(kRecipients));
}

}  // namespace
}  // namespace salvo::itest
