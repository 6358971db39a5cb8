// The spool under a failing disk (issue 16, item 1): a RocksDB file system
// that refuses writes on demand (EIO), since a unit test has no real disk to
// break. Outcomes are held in memory, no new work is leased, and everything
// is recorded once writes succeed again. The real full disk and the real EIO
// are in tests/integration/storage_fault_e2e_test.cc.
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

using testing::Deferred;
using testing::Delivered;

// Every write, flush and sync of a file fails while `failing` is set: with
// ENOSPC (what RocksDB recovers from by itself once space returns) or EIO.
class FailingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FailingFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "FailingFileSystem"; }
  std::atomic<bool> failing{false};
  std::atomic<bool> eio{false};  // else ENOSPC
  static rocksdb::IOStatus Error(bool eio) {
    return eio ? rocksdb::IOStatus::IOError("injected EIO")
               : rocksdb::IOStatus::NoSpace("injected ENOSPC");
  }

  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, const FailingFileSystem* fs)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* d) override {
      if (fs_->failing) return Error(fs_->eio);
      return FSWritableFileOwnerWrapper::Append(data, o, d);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* d) override {
      if (fs_->failing) return Error(fs_->eio);
      return FSWritableFileOwnerWrapper::Append(data, o, v, d);
    }
    rocksdb::IOStatus Flush(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      if (fs_->failing) return Error(fs_->eio);
      return FSWritableFileOwnerWrapper::Flush(o, d);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      if (fs_->failing) return Error(fs_->eio);
      return FSWritableFileOwnerWrapper::Sync(o, d);
    }

   private:
    const FailingFileSystem* fs_;
  };

  // A full disk has no free space: RocksDB's SstFileManager waits for some
  // before it tries to recover (trying while writes still fail ends its
  // recovery for good).
  rocksdb::IOStatus GetFreeSpace(const std::string& path, const rocksdb::IOOptions& o,
                                 uint64_t* free, rocksdb::IODebugContext* d) override {
    if (failing && !eio) {
      *free = 0;
      return rocksdb::IOStatus::OK();
    }
    return target()->GetFreeSpace(path, o, free, d);
  }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* d) override {
    if (failing) return Error(eio);
    std::unique_ptr<rocksdb::FSWritableFile> f;
    rocksdb::IOStatus s = target()->NewWritableFile(name, o, &f, d);
    if (s.ok()) r->reset(new File(std::move(f), this));
    return s;
  }
};

class StorageFaultTest : public testing::SpoolTest {
 protected:
  void SetUp() override {}
  void OpenFailing(const std::string& rescue_dir = "") {
    fs_ = std::make_shared<FailingFileSystem>(rocksdb::FileSystem::Default());
    env_ = rocksdb::NewCompositeEnv(fs_);
    Spool::Options o;
    o.rescue_dir = rescue_dir;
    o.clock = &clock_;
    o.rng_seed = 42;
    o.env = env_.get();
    auto s = Spool::Open(dir_.File("data"), o);
    ASSERT_TRUE(s.ok()) << s.status();
    spool_ = std::move(*s);
    spool_->SetOutcomeListener([this](absl::Span<const OutcomeNotice> n) {
      for (const OutcomeNotice& x : n) {
        ++notices_;
        // Held notices keep their outcome (copied when held).
        if (x.outcome != nullptr) replies_ += x.outcome->reply.code == 250 ? 1 : 0;
      }
    });
  }
  void TearDown() override {
    spool_.reset();  // before the file system it writes through
    env_.reset();
  }
  // Past the spool's one-second retry spacing.
  static void WaitRetry() { std::this_thread::sleep_for(std::chrono::milliseconds(1100)); }

  std::shared_ptr<FailingFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  size_t notices_ = 0;
  size_t replies_ = 0;
};

TEST_F(StorageFaultTest, FailedWritesAreHeldLeasingStopsAndAllIsRecordedWhenWritesReturn) {
  OpenFailing();
  CampaignId c = Load(
      "email,name\na@x.example,A\nb@x.example,B\nc@y.example,C\nd@y.example,D\n"
      "e@z.example,E\nf@z.example,F\n");
  std::vector<LeasedRecipient> first = LeaseAll(clock_.Now(), 2);  // two per domain
  ASSERT_EQ(first.size(), 6u);

  fs_->failing = true;
  // Three delivered and one deferred while the disk refuses every write:
  // accepted (held), not an error, and counted in memory.
  std::vector<Completion> done;
  for (size_t i = 0; i < 3; ++i) done.push_back({first[i].campaign, first[i].id, Delivered()});
  done.push_back({first[3].campaign, first[3].id, Deferred()});
  EXPECT_TRUE(spool_->CompleteBatch(done).ok());
  SpoolHealth h = spool_->Health();
  EXPECT_FALSE(h.writable);
  EXPECT_EQ(h.held_outcomes, 4u);
  EXPECT_GE(h.write_errors, 1u);
  EXPECT_NE(h.last_error.find("injected ENOSPC"), std::string::npos) << h.last_error;
  EXPECT_EQ(notices_, 0u);  // reported once recorded, not before
  absl::StatusOr<StateCounts> counts = spool_->Counts(c);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[RecipientState::kDelivered], 3u);
  EXPECT_EQ((*counts)[RecipientState::kInFlight], 2u);

  // No new leases while held, even when the deferred one is due again.
  clock_.Advance(absl::Hours(5));
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  // The attempts still open complete, and are held too.
  done = {{first[4].campaign, first[4].id, Delivered()},
          {first[5].campaign, first[5].id, Delivered()}};
  EXPECT_TRUE(spool_->CompleteBatch(done).ok());
  EXPECT_EQ(spool_->Health().held_outcomes, 6u);
  WaitRetry();
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());  // a retry that fails again
  EXPECT_FALSE(spool_->Health().writable);

  // Space returns: RocksDB resumes (its SstFileManager polls every 5 s), a
  // retry records everything held and delivers the notices, and leasing
  // resumes (the deferred one is due).
  fs_->failing = false;
  std::vector<LeasedRecipient> again;
  for (int i = 0; i < 100 && !spool_->Health().writable; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    again = LeaseAll(clock_.Now());
  }
  h = spool_->Health();
  EXPECT_TRUE(h.writable) << h.last_error;
  EXPECT_EQ(h.held_outcomes, 0u);
  EXPECT_EQ(notices_, 6u);
  EXPECT_EQ(replies_, 5u);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, first[3].id);
  EXPECT_TRUE(spool_->CompleteBatch({{again[0].campaign, again[0].id, Delivered()}}).ok());

  // On disk, after a restart: every outcome, with its history.
  spool_.reset();
  fs_->failing = false;
  OpenFailing();
  counts = spool_->Counts(c);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[RecipientState::kDelivered], 6u);
  EXPECT_EQ(counts->Pending(), 0u);
  auto history = spool_->History(c, first[3].id);
  ASSERT_TRUE(history.ok());
  std::string transitions;
  for (const HistoryEntry& e : *history)
    transitions += std::string(RecipientStateName(e.from)) + ">" +
                   std::string(RecipientStateName(e.to)) + ":" + e.detail + " ";
  // One deferral (held, then written), one delivery; nothing twice.
  EXPECT_EQ(transitions,
            "queued>in_flight:leased in_flight>deferred: deferred>in_flight:leased "
            "in_flight>delivered:mx.example.com [127.0.0.2] ");
}

// EIO: RocksDB 7.8 does not resume from a failed WAL write other than a
// full disk without a reopen, so what is held at close is not recorded; the
// run says so and the recipients are due again, none lost.
TEST_F(StorageFaultTest, EioHeldAtCloseLeavesRecipientsDueAgain) {
  OpenFailing();
  fs_->eio = true;
  CampaignId c = Load("email\na@x.example\nb@y.example\n");
  std::vector<LeasedRecipient> leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 2u);
  fs_->failing = true;
  EXPECT_TRUE(spool_
                  ->CompleteBatch({{leased[0].campaign, leased[0].id, Delivered()},
                                   {leased[1].campaign, leased[1].id, Delivered()}})
                  .ok());
  EXPECT_EQ(spool_->Health().held_outcomes, 2u);
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  spool_.reset();
  fs_->failing = false;
  OpenFailing();
  absl::StatusOr<StateCounts> counts = spool_->Counts(c);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[RecipientState::kQueued], 2u);
  EXPECT_EQ(LeaseAll(clock_.Now()).size(), 2u);
}

// A disk that stays dead through the close (the reopen fails too): the
// final outcomes held (delivered, bounced) go to a rescue file in another
// directory, and RecoverOutcomes (`salvo queue recover --from FILE`) records
// them after the restart, so they are not sent again. A deferral held is
// not rescued: that recipient is due again, as it would be anyway.
TEST_F(StorageFaultTest, DeadDiskAtCloseRescuesFinalOutcomesAndRecoverRecordsThem) {
  std::filesystem::create_directories(dir_.File("rescue"));
  OpenFailing(dir_.File("rescue"));
  fs_->eio = true;
  CampaignId c = Load("email\na@x.example\nb@y.example\nc@z.example\n");
  std::vector<LeasedRecipient> leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 3u);
  fs_->failing = true;  // and it stays failing through the close
  smtp::Outcome bounce = Deferred();
  bounce.disposition = smtp::Disposition::kBounced;
  bounce.reply = {550, "5.1.1", "no such user"};
  bounce.suppress = true;  // a bad mailbox: failure_scope suppresses it
  EXPECT_TRUE(spool_
                  ->CompleteBatch({{leased[0].campaign, leased[0].id, Delivered()},
                                   {leased[1].campaign, leased[1].id, bounce},
                                   {leased[2].campaign, leased[2].id, Deferred()}})
                  .ok());
  EXPECT_EQ(spool_->Health().held_outcomes, 3u);
  EXPECT_FALSE(spool_->AllOutcomesWritten());
  spool_.reset();  // the reopen at close fails: rescued
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir_.File("rescue")))
    files.push_back(e.path().string());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].find("salvo-rescue-"), std::string::npos) << files[0];
  std::vector<RescuedOutcome> rescued;
  {
    std::ifstream in(files[0]);
    std::string line;
    while (std::getline(in, line)) {
      absl::StatusOr<RescuedOutcome> o = RescuedOutcome::FromJson(line);
      ASSERT_TRUE(o.ok()) << o.status() << ": " << line;
      rescued.push_back(*o);
    }
  }
  ASSERT_EQ(rescued.size(), 2u);  // the deferral is not rescued
  EXPECT_EQ(rescued[0].id, leased[0].id);
  EXPECT_EQ(rescued[0].state, RecipientState::kDelivered);
  EXPECT_EQ(rescued[0].email, leased[0].email);
  EXPECT_EQ(rescued[1].state, RecipientState::kBounced);
  EXPECT_FALSE(rescued[1].category.empty());  // the stored category
  EXPECT_TRUE(rescued[1].suppress);
  EXPECT_FALSE(rescued[0].suppress);

  fs_->failing = false;  // a new disk (or the old one back): restart
  OpenFailing();
  // What `salvo run` does at start with queue.rescue_dir: the file applied
  // and renamed, so the next start does not read it again.
  absl::StatusOr<RescueDirReport> applied = spool_->RecoverRescueDir(dir_.File("rescue"));
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->files, 1u);
  EXPECT_EQ(applied->read, 2u);
  EXPECT_EQ(applied->recorded, 2u);
  EXPECT_FALSE(std::filesystem::exists(files[0]));
  EXPECT_TRUE(std::filesystem::exists(files[0] + ".recovered"));
  // The suppression the dead disk lost is back with the recovered bounce.
  EXPECT_TRUE(spool_->IsSuppressed(leased[1].email));
  EXPECT_FALSE(spool_->IsSuppressed(leased[0].email));
  applied = spool_->RecoverRescueDir(dir_.File("rescue"));
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->files, 0u);
  absl::StatusOr<StateCounts> counts = spool_->Counts(c);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[RecipientState::kDelivered], 1u);
  EXPECT_EQ((*counts)[RecipientState::kBounced], 1u);
  EXPECT_EQ((*counts)[RecipientState::kQueued], 1u);
  // Only the deferred one is sent again.
  std::vector<LeasedRecipient> again = LeaseAll(clock_.Now());
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, leased[2].id);
  // Applying the file twice changes nothing; the history says where it came from.
  absl::StatusOr<size_t> n = spool_->RecoverOutcomes(rescued);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
  auto history = spool_->History(c, leased[0].id);
  ASSERT_TRUE(history.ok());
  ASSERT_FALSE(history->empty());
  EXPECT_NE(history->back().detail.find("rescue file"), std::string::npos)
      << history->back().detail;
  // After the restart, the counts are on disk.
  spool_.reset();
  OpenFailing();
  counts = spool_->Counts(c);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[RecipientState::kDelivered], 1u);
  EXPECT_EQ((*counts)[RecipientState::kBounced], 1u);
}

// Without rescue_dir the rescued outcomes are log lines; the same parser
// reads them back from a copy of the log.
// A rescue file that cannot be read stops the start (its recipients would be
// sent again): the error names file:line, and the file stays where it is.
TEST_F(StorageFaultTest, ABrokenRescueFileIsAnErrorNamingFileAndLineAndStaysInPlace) {
  const std::string rescue = dir_.File("rescue");
  std::filesystem::create_directories(rescue);
  const std::string path = rescue + "/salvo-rescue-20261204T150000Z-1.jsonl";
  testsupport::WriteFile(path,
                         "# saved by hand\n{\"campaign\":1,\"recipient\":2,\"state\":\"sent\"}\n");
  OpenFailing();
  absl::StatusOr<RescueDirReport> r = spool_->RecoverRescueDir(rescue);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path + ":2: not a rescued outcome"), std::string::npos)
      << r.status();
  EXPECT_TRUE(std::filesystem::exists(path));
  // Other files of the folder are not rescue files and are left alone.
  testsupport::WriteFile(path, "");
  testsupport::WriteFile(rescue + "/notes.txt", "{not json\n");
  r = spool_->RecoverRescueDir(rescue);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files, 1u);
  EXPECT_EQ(r->read, 0u);
  EXPECT_TRUE(std::filesystem::exists(rescue + "/notes.txt"));
}

TEST(RescuedOutcomeTest, ReadsItsOwnJsonAndTheLogLineAndNamesWhatIsWrong) {
  RescuedOutcome o;
  o.campaign = CampaignId{7};
  o.id = RecipientId{42};
  o.email = "a@x.example";
  o.reply = "250 2.0.0 ok";
  o.at = absl::FromUnixSeconds(1700000000);
  absl::StatusOr<RescuedOutcome> back =
      RescuedOutcome::FromJson("2026-12-04T15:00:00Z E spool rescue: " + o.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->campaign, o.campaign);
  EXPECT_EQ(back->id, o.id);
  EXPECT_EQ(back->state, RecipientState::kDelivered);
  EXPECT_EQ(back->reply, o.reply);
  EXPECT_EQ(back->at, o.at);
  absl::StatusOr<RescuedOutcome> bad =
      RescuedOutcome::FromJson(R"({"campaign":7,"recipient":42,"state":"deferred"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("state"), std::string::npos) << bad.status();
  EXPECT_FALSE(RescuedOutcome::FromJson("{\"recipient\":1,\"state\":\"delivered\"}").ok());
}

// A transient EIO (the device errs, then works again; the file system stays
// mounted): RocksDB 7.8 makes a failed WAL write other than ENOSPC a fatal
// background error that DB::Resume() refuses, so the spool cannot write
// again without a reopen. It keeps holding the outcomes, leases nothing,
// says that a restart is needed (Health, log), and never aborts. At close it
// reopens the database and writes what it held: nothing is sent twice.
TEST_F(StorageFaultTest, TransientEioIsHeldReportedAsNeedingARestartAndWrittenAtClose) {
  OpenFailing();
  fs_->eio = true;
  CampaignId c = Load("email\na@x.example\nb@y.example\n");
  std::vector<LeasedRecipient> leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 2u);
  fs_->failing = true;
  EXPECT_TRUE(spool_->CompleteBatch({{leased[0].campaign, leased[0].id, Delivered()}}).ok());
  EXPECT_FALSE(spool_->Health().needs_restart);  // not known before a retry
  fs_->failing = false;                          // the device works again
  for (int i = 0; i < 3; ++i) {
    WaitRetry();
    EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  }
  SpoolHealth h = spool_->Health();
  EXPECT_FALSE(h.writable);
  EXPECT_TRUE(h.needs_restart) << h.last_error;
  EXPECT_EQ(h.held_outcomes, 1u);
  EXPECT_NE(h.last_error.find("injected EIO"), std::string::npos) << h.last_error;
  // The attempt still open completes and is held too.
  EXPECT_TRUE(spool_->CompleteBatch({{leased[1].campaign, leased[1].id, Delivered()}}).ok());
  EXPECT_EQ(spool_->Health().held_outcomes, 2u);
  spool_.reset();  // the restart: close writes what was held
  OpenFailing();
  absl::StatusOr<StateCounts> counts = spool_->Counts(c);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[RecipientState::kDelivered], 2u);
  EXPECT_EQ(counts->Pending(), 0u);
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  EXPECT_TRUE(spool_->Health().writable);
}

TEST_F(StorageFaultTest, FreeSpaceFloorStopsLeasing) {
  Spool::Options o;
  o.clock = &clock_;
  o.min_free_bytes = ~uint64_t{0} >> 1;  // more than any disk here has
  auto s = Spool::Open(dir_.File("data"), o);
  ASSERT_TRUE(s.ok()) << s.status();
  spool_ = std::move(*s);
  Load("email\na@x.example\n");
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  SpoolHealth h = spool_->Health();
  EXPECT_FALSE(h.writable);
  EXPECT_TRUE(h.below_floor);
  EXPECT_GT(h.free_bytes, 0u);
  // Above the floor again (reopened with a floor of 1 byte): leasing resumes.
  spool_.reset();
  o.min_free_bytes = 1;
  s = Spool::Open(dir_.File("data"), o);
  ASSERT_TRUE(s.ok()) << s.status();
  spool_ = std::move(*s);
  EXPECT_EQ(LeaseAll(clock_.Now()).size(), 1u);
  EXPECT_TRUE(spool_->Health().writable);
}

}  // namespace
}  // namespace salvo::queue
