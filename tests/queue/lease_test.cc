// LeaseDue's domain index and per-domain cursors: every due recipient is
// found (after a restart, a retry scheduled early, a resume, a load racing a
// lease), emptied domains are forgotten and come back, and the work of one
// call does not grow with the number of recipients already completed.
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "queue/spool.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

using testing::Deferred;
using testing::Delivered;
using testing::SpoolTest;

using LeaseTest = SpoolTest;

std::string Csv(const std::string& local, const std::string& domain, int n, int from = 0) {
  std::string csv;
  for (int i = from; i < from + n; ++i) csv += local + std::to_string(i) + "@" + domain + "\n";
  return csv;
}

std::multiset<std::string> Domains(const std::vector<LeasedRecipient>& leased) {
  std::multiset<std::string> d;
  for (const auto& l : leased) d.insert(l.domain);
  return d;
}

TEST_F(LeaseTest, ReopenedSpoolLeasesEveryDomainsDueRecipients) {
  std::string csv = "email\n";
  for (int d = 0; d < 5; ++d) csv += Csv("u", "d" + std::to_string(d) + ".example", 20);
  CampaignId c = Load(csv);
  auto first = LeaseAll(clock_.Now(), 5);
  ASSERT_EQ(first.size(), 25u);
  // Three per domain delivered (tombstones at the front of each domain), two
  // per domain left in flight when the process "dies".
  std::map<std::string, int> done_per_domain;
  std::set<uint64_t> delivered;
  for (const auto& l : first) {
    if (done_per_domain[l.domain]++ >= 3) continue;
    ASSERT_TRUE(spool_->Complete(c, l.id, Delivered()).ok());
    delivered.insert(Value(l.id));
  }
  Reopen();
  auto again = LeaseAll(clock_.Now());
  ASSERT_EQ(again.size(), 100u - delivered.size());
  std::set<uint64_t> ids;
  for (const auto& l : again) {
    EXPECT_FALSE(delivered.contains(Value(l.id))) << l.email;
    EXPECT_TRUE(ids.insert(Value(l.id)).second) << l.email;
  }
  std::multiset<std::string> domains = Domains(again);
  for (int d = 0; d < 5; ++d) EXPECT_EQ(domains.count("d" + std::to_string(d) + ".example"), 17u);
  std::vector<Completion> done;
  for (const auto& l : again) done.push_back({l.campaign, l.id, Delivered()});
  ASSERT_TRUE(spool_->CompleteBatch(done).ok());
  EXPECT_TRUE(*spool_->AllDone(c));
  EXPECT_TRUE(LeaseAll(clock_.Now() + absl::Hours(1)).empty());
}

TEST_F(LeaseTest, RetryScheduledBeforeTheCursorIsLeased) {
  const absl::Time t0 = clock_.Now();
  CampaignId a = Load("email\na@x.example\n");
  clock_.Advance(absl::Hours(3));
  CampaignId b = Load("email\nb@x.example\n");
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 2u);  // x.example's cursor is now at b's entry (due t0 + 3h)
  // The clock steps back (e.g. NTP): a's retry lands before the cursor.
  clock_.Set(t0);
  for (const auto& l : leased)
    ASSERT_TRUE(
        spool_->Complete(l.campaign, l.id, l.campaign == a ? Deferred() : Delivered()).ok());
  RecipientView v = *spool_->GetRecipient(a, RecipientId{1});
  ASSERT_EQ(v.state, RecipientState::kDeferred);
  ASSERT_LT(v.next_attempt, t0 + absl::Hours(3));
  clock_.Set(v.next_attempt);
  auto retry = LeaseAll(clock_.Now());
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].campaign, a);
  EXPECT_EQ(retry[0].attempts, 1u);
  EXPECT_EQ((*spool_->Counts(b))[RecipientState::kDelivered], 1u);
}

TEST_F(LeaseTest, PausedCampaignIsLeasedAfterResumeBehindOtherCampaigns) {
  CampaignId a = Load("email\n" + Csv("a", "x.example", 5) + "a@y.example\n");
  auto early = LeaseAll(clock_.Now(), 1);  // one of a's x.example recipients, and y's
  ASSERT_EQ(early.size(), 2u);
  ASSERT_TRUE(spool_->Pause(a).ok());
  clock_.Advance(absl::Minutes(1));
  CampaignId b = Load("email\n" + Csv("b", "x.example", 5));
  // b's recipients are leased and completed past where a's entries sort.
  auto bs = LeaseAll(clock_.Now());
  ASSERT_EQ(bs.size(), 5u);
  for (const auto& l : bs) {
    EXPECT_EQ(l.campaign, b);
    ASSERT_TRUE(spool_->Complete(l.campaign, l.id, Delivered()).ok());
  }
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  for (const auto& l : early) ASSERT_TRUE(spool_->Complete(l.campaign, l.id, Delivered()).ok());
  ASSERT_TRUE(spool_->Resume(a).ok());
  auto as = LeaseAll(clock_.Now());
  ASSERT_EQ(as.size(), 4u);
  for (const auto& l : as) {
    EXPECT_EQ(l.campaign, a);
    EXPECT_EQ(l.domain, "x.example");
  }
}

// A lease during a load (here from the progress callback) moves x.example's
// cursor past where the load's later rows land: a retry of another campaign
// came due meanwhile. The loaded rows must still be leased once it is active.
TEST_F(LeaseTest, RecipientsLoadedBehindACursorMovedDuringTheLoadAreLeased) {
  CampaignId a = Load("email\nr@x.example\n");
  auto first = LeaseAll(clock_.Now());
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(spool_->Complete(a, first[0].id, Deferred()).ok());
  const absl::Time retry_at = spool_->GetRecipient(a, first[0].id)->next_attempt;
  clock_.Set(retry_at - absl::Seconds(1));
  // The progress callback runs every 65536 rows: fill them with another
  // domain, then the x.example rows (their keys sort before the retry's).
  std::string csv = "email\n" + Csv("f", "filler.example", 65536) + Csv("n", "x.example", 10);
  CampaignSpec spec = Spec(csv, "big");
  LoadOptions opts;
  std::vector<LeasedRecipient> during;
  opts.progress = [&](const LoadProgress&) {
    if (!during.empty()) return;
    clock_.Set(retry_at);
    during = LeaseAll(clock_.Now());  // the retry; the loading campaign is skipped
  };
  absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(during.size(), 1u);
  EXPECT_EQ(during[0].campaign, a);  // stays in flight: x.example keeps its cursor
  LeaseLimits limits;
  limits.max_per_domain = 100;
  limits.max_total = 1000;
  limits.domain_quota = [](std::string_view d) { return d == "x.example" ? 100 : 0; };
  std::vector<DomainBatch> batches = Lease(clock_.Now(), limits);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].domain, "x.example");
  EXPECT_EQ(batches[0].recipients.size(), 10u);
  for (const auto& l : batches[0].recipients) EXPECT_EQ(l.campaign, r->id);
}

TEST_F(LeaseTest, EmptiedDomainIsForgottenAndComesBackWithItsNextEntry) {
  LeaseLimits limits;
  limits.max_total = 1000;
  std::vector<std::string> visited;
  limits.domain_quota = [&](std::string_view d) {
    visited.emplace_back(d);
    return size_t{1000};
  };
  auto lease = [&] {
    visited.clear();
    std::vector<LeasedRecipient> out;
    for (auto& b : Lease(clock_.Now(), limits))
      for (auto& r : b.recipients) out.push_back(std::move(r));
    return out;
  };
  using V = std::vector<std::string>;
  CampaignId c = Load("email\na@one.example\nb@two.example\n");
  auto leased = lease();
  ASSERT_EQ(leased.size(), 2u);
  EXPECT_EQ(visited, (V{"one.example", "two.example"}));
  // In flight: the domains stay.
  EXPECT_TRUE(lease().empty());
  EXPECT_EQ(visited.size(), 2u);
  for (const auto& l : leased) ASSERT_TRUE(spool_->Complete(c, l.id, Delivered()).ok());
  // Visited once more, found empty, forgotten.
  EXPECT_TRUE(lease().empty());
  EXPECT_EQ(visited.size(), 2u);
  EXPECT_TRUE(lease().empty());
  EXPECT_TRUE(visited.empty());
  // A new entry brings its domain back, and only that one.
  CampaignId c2 = Load("email\nc@one.example\n");
  leased = lease();
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].email, "c@one.example");
  EXPECT_EQ(visited, (V{"one.example"}));
  // A deferral keeps its domain while the retry is not due yet.
  ASSERT_TRUE(spool_->Complete(c2, leased[0].id, Deferred()).ok());
  EXPECT_TRUE(lease().empty());
  EXPECT_TRUE(lease().empty());
  EXPECT_EQ(visited, (V{"one.example"}));
  clock_.Set(spool_->GetRecipient(c2, leased[0].id)->next_attempt);
  leased = lease();
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].attempts, 1u);
  // And after a restart the index is rebuilt from the schedule.
  Reopen();
  EXPECT_EQ(lease().size(), 1u);
  EXPECT_EQ(visited, (V{"one.example"}));
}

// A domain whose every entry is leased is not read again (no seek) until a
// schedule Put of that domain: a retry, a hold, a new load. Before, every
// call sought each such domain once more, the per-domain cost that made the
// long tail of small domains dearer per message (issue 19 item 5). Asserts
// on RocksDB's count of memtable seeks, not on time, and that nothing due
// is missed while domains are skipped.
TEST_F(LeaseTest, DomainsWithEverythingInFlightAreSkippedWithoutASeek) {
  constexpr int kDomains = 200;
  std::string csv = "email\n";
  for (int d = 0; d < kDomains; ++d) csv += Csv("u", "d" + std::to_string(d) + ".example", 3);
  CampaignId c = Load(csv);
  LeaseLimits limits;
  limits.max_total = 10000;
  std::vector<std::string> visited;
  limits.domain_quota = [&](std::string_view d) {
    visited.emplace_back(d);
    return size_t{1000};
  };
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  auto lease = [&](uint64_t* seeks) {
    visited.clear();
    rocksdb::get_perf_context()->Reset();
    std::vector<LeasedRecipient> out;
    for (auto& b : Lease(clock_.Now(), limits))
      for (auto& r : b.recipients) out.push_back(std::move(r));
    *seeks = rocksdb::get_perf_context()->seek_on_memtable_count;
    return out;
  };
  uint64_t seeks = 0;
  auto leased = lease(&seeks);
  ASSERT_EQ(leased.size(), 3u * kDomains);
  EXPECT_GE(seeks, static_cast<uint64_t>(kDomains));  // one per domain at least
  // Everything in flight: every domain visited (round-robin unchanged), none sought.
  EXPECT_TRUE(lease(&seeks).empty());
  EXPECT_EQ(visited.size(), static_cast<size_t>(kDomains));
  EXPECT_EQ(seeks, 0u);
  // A deferral of d7 puts a retry: skipped (no seek) until it is due, then leased.
  auto of = [&](const std::string& domain) {
    std::vector<LeasedRecipient> v;
    for (const auto& l : leased)
      if (l.domain == domain) v.push_back(l);
    return v;
  };
  const auto d7 = of("d7.example");
  ASSERT_EQ(d7.size(), 3u);
  ASSERT_TRUE(spool_->Complete(c, d7[0].id, Deferred()).ok());
  EXPECT_TRUE(lease(&seeks).empty());
  EXPECT_EQ(seeks, 0u);
  const absl::Time retry_at = spool_->GetRecipient(c, d7[0].id)->next_attempt;
  ASSERT_GT(retry_at, clock_.Now());
  clock_.Set(retry_at);
  auto retried = lease(&seeks);
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_EQ(retried[0].id, d7[0].id);
  EXPECT_GE(seeks, 1u);
  // A hold (shaping said "not now") is leased again after it, without a seek before.
  const auto d9 = of("d9.example");
  smtp::Outcome hold;
  hold.hold_ms = 60'000;
  ASSERT_TRUE(spool_->Complete(c, d9[1].id, hold).ok());
  EXPECT_TRUE(lease(&seeks).empty());
  EXPECT_EQ(seeks, 0u);
  clock_.Advance(absl::Minutes(1));
  auto again = lease(&seeks);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, d9[1].id);
  // Delivered: the emptied domains are forgotten without a seek either.
  std::vector<Completion> done;
  for (const auto& l : leased)
    if (l.id != d7[0].id && l.id != d9[1].id) done.push_back({l.campaign, l.id, Delivered()});
  done.push_back({c, d7[0].id, Delivered()});
  done.push_back({c, d9[1].id, Delivered()});
  ASSERT_TRUE(spool_->CompleteBatch(done).ok());
  EXPECT_TRUE(lease(&seeks).empty());
  EXPECT_EQ(seeks, 0u);
  EXPECT_TRUE(lease(&seeks).empty());
  EXPECT_TRUE(visited.empty());
  // A new load brings a domain back and it is leased.
  CampaignId c2 = Load("email\nz@d42.example\n");
  auto fresh = lease(&seeks);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].campaign, c2);
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  EXPECT_TRUE(*spool_->AllDone(c));
}

// The bug this guards against: completed recipients leave delete tombstones
// at the front of their domain's key range, and a lease that walked them
// cost O(completed) per call, O(n^2) over a campaign. Asserts on RocksDB's
// own count of the internal keys each LeaseDue call stepped over, not on
// time: the tombstones skipped, and the keys stepped beyond those leased.
TEST_F(LeaseTest, WorkPerLeaseDoesNotGrowWithCompletedRecipients) {
  constexpr int kRecipients = 50000;
  constexpr size_t kBatch = 500;
  std::string csv = "email\n";
  for (int i = 0; i < kRecipients; ++i)
    csv += "u" + std::to_string(i) + "@d" + std::to_string(i % 3) + ".example\n";
  CampaignId c = Load(csv);
  LeaseLimits limits;
  limits.max_per_domain = kBatch;
  limits.max_total = kBatch;
  struct Work {
    uint64_t tombstones;  // delete markers skipped
    int64_t extra_keys;   // internal keys stepped over, beyond one per leased recipient
  };
  std::vector<Work> work;
  size_t completed = 0;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  while (completed < static_cast<size_t>(kRecipients)) {
    rocksdb::get_perf_context()->Reset();
    std::vector<DomainBatch> batches = Lease(clock_.Now(), limits);
    const rocksdb::PerfContext& pc = *rocksdb::get_perf_context();
    std::vector<Completion> done;
    for (const auto& b : batches)
      for (const auto& r : b.recipients) done.push_back({r.campaign, r.id, Delivered()});
    // internal_key_skipped_count counts every Next() of the iterator.
    work.push_back(
        {pc.internal_delete_skipped_count,
         static_cast<int64_t>(pc.internal_key_skipped_count) - static_cast<int64_t>(done.size())});
    ASSERT_FALSE(done.empty()) << "nothing leased after " << completed;
    ASSERT_TRUE(spool_->CompleteBatch(done).ok());
    completed += done.size();
  }
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  EXPECT_EQ(completed, static_cast<size_t>(kRecipients));
  EXPECT_TRUE(*spool_->AllDone(c));
  ASSERT_GE(work.size(), 100u);
  // The last tenth of the run, after ~45,000 completions: a few keys per
  // domain visited (the cursor's own tombstone, the step onto the bound).
  // The old scan skipped every completed recipient of the domain visited.
  uint64_t max_tombstones = 0;
  int64_t max_extra = 0;
  for (size_t i = work.size() - work.size() / 10; i < work.size(); ++i) {
    max_tombstones = std::max(max_tombstones, work[i].tombstones);
    max_extra = std::max(max_extra, work[i].extra_keys);
  }
  EXPECT_LE(max_tombstones, 16u);
  EXPECT_LE(max_extra, 16);
  std::cout << "LeaseDue calls: " << work.size() << "; last tenth, per call: at most "
            << max_tombstones << " tombstones skipped, " << max_extra
            << " keys stepped beyond those leased\n";
}

// Issue 19 item 5: a big domain (a provider holding most of a list) must not
// wait behind a long tail of small domains, each leased whole per visit of
// the round robin. The engine's sizes: max_total up to lease_batch, equal to
// max_per_domain.
constexpr size_t kBatch = 200;
constexpr int kBigRecipients = 3000;
constexpr int kTailDomains = 300;
constexpr int kPerTailDomain = 5;

std::string BigAndTailCsv() {
  std::string csv = "email\n" + Csv("u", "big.example", kBigRecipients);
  for (int d = 0; d < kTailDomains; ++d)
    csv += Csv("u", "t" + std::to_string(d) + ".example", kPerTailDomain);
  return csv;
}

size_t CountOf(const std::vector<DomainBatch>& batches, const std::string& domain) {
  size_t n = 0;
  for (const auto& b : batches)
    if (b.domain == domain) n += b.recipients.size();
  return n;
}

TEST_F(LeaseTest, BigDomainIsLeasedInEveryCallWhileTheTailProgresses) {
  CampaignId c = Load(BigAndTailCsv());
  LeaseLimits limits;
  limits.max_per_domain = kBatch;
  limits.max_total = kBatch;
  std::set<std::string> tail_leased;
  size_t big_leased = 0;
  int calls_until_tail_done = 0;
  // Each call's leases delivered before the next (as an engine keeping up).
  for (int call = 0; call < 100 && big_leased < kBigRecipients; ++call) {
    auto batches = Lease(clock_.Now(), limits);
    const size_t big = CountOf(batches, "big.example");
    // From the first call on, the big domain gets at least the backlog share
    // (half the budget); before, it got one batch per pass over the tail.
    EXPECT_GE(big, kBatch / 2) << "call " << call;
    big_leased += big;
    size_t total = 0;
    std::vector<Completion> done;
    for (const auto& b : batches) {
      EXPECT_LE(b.recipients.size(), kBatch) << b.domain;
      total += b.recipients.size();
      if (b.domain != "big.example") tail_leased.insert(b.domain);
      for (const auto& r : b.recipients) done.push_back({r.campaign, r.id, Delivered()});
    }
    EXPECT_LE(total, kBatch);
    ASSERT_TRUE(spool_->CompleteBatch(done).ok());
    if (tail_leased.size() < static_cast<size_t>(kTailDomains)) calls_until_tail_done = call + 1;
  }
  EXPECT_EQ(big_leased, static_cast<size_t>(kBigRecipients));
  // The tail still gets at least half of each call: all of it (1,500) within
  // 1,500 / 100 calls, plus one pass's share the round robin gives the big
  // domain when it reaches it.
  EXPECT_EQ(tail_leased.size(), static_cast<size_t>(kTailDomains));
  EXPECT_LE(calls_until_tail_done, kTailDomains * kPerTailDomain / int{kBatch / 2} + 2);
  for (int i = 0; i < 10; ++i) {
    auto rest = LeaseAll(clock_.Now());
    if (rest.empty()) break;
    std::vector<Completion> done;
    for (const auto& r : rest) done.push_back({r.campaign, r.id, Delivered()});
    ASSERT_TRUE(spool_->CompleteBatch(done).ok());
  }
  EXPECT_TRUE(*spool_->AllDone(c));
}

TEST_F(LeaseTest, BigDomainAtItsInFlightCapGetsNoBacklogShare) {
  Load(BigAndTailCsv());
  LeaseLimits limits;
  limits.max_per_domain = kBatch;
  limits.max_total = kBatch;
  // Nothing completed: the big domain's in-flight count grows 200 (the first
  // call's round robin starts at it), 300, 400; at 2 batches in flight the
  // backlog share stops and the whole budget goes to the tail.
  std::vector<size_t> big;
  for (int call = 0; call < 6; ++call) {
    auto batches = Lease(clock_.Now(), limits);
    big.push_back(CountOf(batches, "big.example"));
    size_t total = 0;
    for (const auto& b : batches) total += b.recipients.size();
    EXPECT_EQ(total, kBatch) << "call " << call;
  }
  EXPECT_EQ(big, (std::vector<size_t>{kBatch, kBatch / 2, kBatch / 2, 0, 0, 0}));
  EXPECT_EQ(spool_->InFlight(), 6 * kBatch);
}

}  // namespace
}  // namespace salvo::queue
