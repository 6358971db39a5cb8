// The recipient state machine, retries, expiry, operator actions, suppression,
// dedupe and crash recovery, on a real RocksDB in a temp dir with a FakeClock.
#include "queue/spool.h"

#include <rocksdb/db.h>

#include <algorithm>
#include <map>
#include <set>

#include "gtest/gtest.h"
#include "queue/keys.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

using testing::Bounced;
using testing::Deferred;
using testing::Delivered;
using testing::SpoolTest;

constexpr char kThree[] = "email,name\na@one.example,Ann\nb@two.example,Bob\nc@three.example,Cy\n";

std::vector<RecipientState> Path(const std::vector<HistoryEntry>& h) {
  std::vector<RecipientState> p;
  for (const auto& e : h) {
    if (p.empty()) p.push_back(e.from);
    p.push_back(e.to);
  }
  return p;
}

TEST_F(SpoolTest, QueuedToInFlightToDelivered) {
  CampaignId c = Load(kThree);
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kQueued], 3u);
  EXPECT_FALSE(*spool_->AllDone(c));
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 3u);
  EXPECT_EQ(StateOf(c, 1), RecipientState::kInFlight);
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kInFlight], 3u);
  const LeasedRecipient& r = leased[0];
  EXPECT_EQ(r.campaign, c);
  EXPECT_EQ(r.attempts, 0u);
  ASSERT_NE(r.Variable("name"), nullptr);
  EXPECT_EQ(r.Variable("email")->find('@') != std::string::npos, true);
  // Nothing is handed out twice.
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  for (const auto& l : leased) ASSERT_TRUE(spool_->Complete(l.campaign, l.id, Delivered()).ok());
  StateCounts counts = *spool_->Counts(c);
  EXPECT_EQ(counts[RecipientState::kDelivered], 3u);
  EXPECT_EQ(counts.Pending(), 0u);
  EXPECT_TRUE(*spool_->AllDone(c));
  auto h = *spool_->History(c, RecipientId{1});
  EXPECT_EQ(Path(h),
            (std::vector<RecipientState>{RecipientState::kQueued, RecipientState::kInFlight,
                                         RecipientState::kDelivered}));
  EXPECT_EQ(h.back().reply, "250 2.0.0 ok queued as X");
  EXPECT_EQ(h.back().detail, "mx.example.com [127.0.0.2]");
}

// A first-attempt delivery keeps its attempt in the recipient's record (no
// history row: one write less per message); History() shows the same rows as
// when Options::history_for_first_deliveries writes one, and a retried
// delivery still writes its rows.
TEST_F(SpoolTest, AFirstAttemptDeliveryIsKeptInTheRecordAndShownAsItsHistory) {
  CampaignId c = Load("email\na@one.example\nb@two.example\n");
  const absl::Time leased_at = clock_.Now();
  auto leased = LeaseAll(leased_at);
  ASSERT_EQ(leased.size(), 2u);
  clock_.Advance(absl::Seconds(3));
  const absl::Time delivered_at = clock_.Now();
  ASSERT_TRUE(spool_->Complete(c, RecipientId{1}, Delivered()).ok());
  ASSERT_TRUE(spool_->Complete(c, RecipientId{2}, Deferred()).ok());
  clock_.Advance(absl::Hours(5));
  leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 1u);
  ASSERT_TRUE(spool_->Complete(c, RecipientId{2}, Delivered()).ok());

  auto check_first = [&](const std::vector<HistoryEntry>& h) {
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(Path(h),
              (std::vector<RecipientState>{RecipientState::kQueued, RecipientState::kInFlight,
                                           RecipientState::kDelivered}));
    EXPECT_EQ(h[0].at, leased_at);
    EXPECT_EQ(h[0].detail, "leased");
    EXPECT_EQ(h[1].at, delivered_at);
    EXPECT_EQ(h[1].reply, "250 2.0.0 ok queued as X");
    EXPECT_EQ(h[1].detail, "mx.example.com [127.0.0.2]");
    EXPECT_EQ(h[1].scope, "");
  };
  check_first(*spool_->History(c, RecipientId{1}));
  EXPECT_EQ(Path(*spool_->History(c, RecipientId{2})),
            (std::vector<RecipientState>{RecipientState::kQueued, RecipientState::kInFlight,
                                         RecipientState::kDeferred, RecipientState::kInFlight,
                                         RecipientState::kDelivered}));
  RecipientView v = *spool_->GetRecipient(c, RecipientId{1});
  EXPECT_EQ(v.state, RecipientState::kDelivered);
  EXPECT_EQ(v.last_reply, "250 2.0.0 ok queued as X");
  Reopen();  // read back from disk
  check_first(*spool_->History(c, RecipientId{1}));
  spool_.reset();
  testing::Dump dump = testing::DumpSpool(dir_.File("data"));
  size_t rows_of_1 = 0, rows_of_2 = 0;
  for (const auto& [k, unused] : dump["history"]) {
    if (k.compare(0, 16, keys::Recipient(c, RecipientId{1})) == 0) ++rows_of_1;
    if (k.compare(0, 16, keys::Recipient(c, RecipientId{2})) == 0) ++rows_of_2;
  }
  EXPECT_EQ(rows_of_1, 0u);  // kept in the record
  EXPECT_EQ(rows_of_2, 2u);  // the deferral and the retried delivery
  Reopen();
}

TEST_F(SpoolTest, HistoryForFirstDeliveriesWritesTheRowAndShowsTheSame) {
  spool_.reset();
  Spool::Options o;
  o.clock = &clock_;
  o.rng_seed = 42;
  o.history_for_first_deliveries = true;
  auto s = Spool::Open(dir_.File("data"), o);
  ASSERT_TRUE(s.ok()) << s.status();
  spool_ = std::move(*s);
  CampaignId c = Load("email\na@one.example\n");
  const absl::Time leased_at = clock_.Now();
  ASSERT_EQ(LeaseAll(leased_at).size(), 1u);
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(spool_->Complete(c, RecipientId{1}, Delivered()).ok());
  auto h = *spool_->History(c, RecipientId{1});
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].at, leased_at);
  EXPECT_EQ(h[1].at, leased_at + absl::Seconds(3));
  EXPECT_EQ(h[1].to, RecipientState::kDelivered);
  EXPECT_EQ(h[1].detail, "mx.example.com [127.0.0.2]");
  spool_.reset();
  testing::Dump dump = testing::DumpSpool(dir_.File("data"));
  EXPECT_EQ(dump["history"].size(), 1u);
  Reopen();
}

TEST_F(SpoolTest, RecordsKeepTheirDeliveredAttemptAndOldRecordsStillDecode) {
  keys::RecipientRecord r;
  r.state = RecipientState::kDelivered;
  r.attempts = 1;
  r.email = "a@one.example";
  r.domain = "one.example";
  r.values = {"a@one.example", "Ann"};
  r.last_reply = "250 ok";
  std::string old_form = keys::EncodeRecord(r);  // no attempt: as older spools wrote it
  keys::RecipientRecord back;
  ASSERT_TRUE(keys::DecodeRecord(old_form, &back));
  EXPECT_FALSE(back.has_delivered_attempt);
  r.has_delivered_attempt = true;
  r.delivered_attempt = {1700000000000000, 1699999999000000, RecipientState::kDeferred,
                         "mx[192.0.2.1]:25"};
  ASSERT_TRUE(keys::DecodeRecord(keys::EncodeRecord(r), &back));
  ASSERT_TRUE(back.has_delivered_attempt);
  EXPECT_EQ(back.delivered_attempt.at_us, 1700000000000000u);
  EXPECT_EQ(back.delivered_attempt.lease_us, 1699999999000000u);
  EXPECT_EQ(back.delivered_attempt.from, RecipientState::kDeferred);
  EXPECT_EQ(back.delivered_attempt.detail, "mx[192.0.2.1]:25");
  EXPECT_EQ(back.values, r.values);
  std::string bad = keys::EncodeRecord(r);
  EXPECT_FALSE(keys::DecodeRecord(bad.substr(0, bad.size() - 1), &back));  // truncated
  EXPECT_FALSE(keys::DecodeRecord(old_form + "\x07", &back));              // unknown tail
}

TEST_F(SpoolTest, DeferredWaitsForItsRetryTimeWithBackoff) {
  CampaignId c = Load("email\nx@slow.example\n");
  absl::Time last_window_min = absl::InfinitePast();
  for (uint32_t attempt = 1; attempt <= 5; ++attempt) {
    auto leased = LeaseAll(clock_.Now());
    ASSERT_EQ(leased.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(leased[0].attempts, attempt - 1);
    const absl::Time failed_at = clock_.Now();
    ASSERT_TRUE(spool_->Complete(c, leased[0].id, Deferred()).ok());
    RecipientView v = *spool_->GetRecipient(c, leased[0].id);
    EXPECT_EQ(v.state, RecipientState::kDeferred);
    EXPECT_EQ(v.attempts, attempt);
    EXPECT_EQ(v.last_reply, "451 4.7.1 try again later");
    EXPECT_EQ(v.category, "rate-limited");
    // Window for attempt k: [5m, 20m] * 2^(k-1), capped at 4h.
    const absl::Duration lo = std::min(absl::Minutes(5) * (1 << (attempt - 1)), absl::Hours(4));
    const absl::Duration hi = std::min(absl::Minutes(20) * (1 << (attempt - 1)), absl::Hours(4));
    EXPECT_GE(v.next_attempt, failed_at + lo) << attempt;
    EXPECT_LE(v.next_attempt, failed_at + hi) << attempt;
    EXPECT_GT(v.next_attempt, last_window_min);
    last_window_min = failed_at + lo;
    // Not before its time...
    clock_.Set(v.next_attempt - absl::Seconds(1));
    EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
    // ...and exactly then.
    clock_.Set(v.next_attempt);
  }
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kDeferred], 1u);
}

TEST_F(SpoolTest, DeferralPastMaxAgeExpiresAndCountsAsBounce) {
  RetryPolicy p;
  p.max_age = absl::Hours(1);
  CampaignId c = Load("email\nx@slow.example\n", p);
  const absl::Time start = clock_.Now();
  int attempts = 0;
  for (; attempts < 20; ++attempts) {
    auto leased = LeaseAll(clock_.Now());
    if (leased.empty()) break;
    ASSERT_TRUE(spool_->Complete(c, leased[0].id, Deferred()).ok());
    RecipientView v = *spool_->GetRecipient(c, leased[0].id);
    if (v.state == RecipientState::kExpired) break;
    EXPECT_LE(v.next_attempt, start + absl::Hours(1));  // last chance moved to the limit
    clock_.Set(v.next_attempt);
  }
  EXPECT_LT(attempts, 20);
  EXPECT_EQ(StateOf(c, 1), RecipientState::kExpired);
  EXPECT_GE(clock_.Now(), start + absl::Hours(1));
  CampaignStatus st = *spool_->Status(c);
  EXPECT_EQ(st.counts[RecipientState::kExpired], 1u);
  EXPECT_DOUBLE_EQ(st.bounce_rate, 1.0);
  EXPECT_DOUBLE_EQ(st.deferral_rate, 1.0);
  auto h = *spool_->History(c, RecipientId{1});
  EXPECT_EQ(h.back().to, RecipientState::kExpired);
  EXPECT_EQ(h.back().reply, "451 4.7.1 try again later");
  EXPECT_TRUE(*spool_->AllDone(c));
}

TEST_F(SpoolTest, QueuedTooLongExpiresAtLeaseTime) {
  RetryPolicy p;
  p.max_age = absl::Hours(2);
  CampaignId c = Load(kThree, p);
  clock_.Advance(absl::Hours(3));  // e.g. the engine was down
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kExpired], 3u);
  EXPECT_EQ(spool_->History(c, RecipientId{2})->back().to, RecipientState::kExpired);
}

TEST_F(SpoolTest, HardBounceRecordsCategoryAndSuppressesInvalidRecipients) {
  CampaignId c = Load(kThree);
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 3u);
  std::map<std::string, LeasedRecipient> by_email;
  for (auto& l : leased) by_email[l.email] = l;
  ASSERT_TRUE(spool_->Complete(c, by_email["a@one.example"].id, Bounced("invalid_recipient")).ok());
  ASSERT_TRUE(spool_->Complete(c, by_email["b@two.example"].id, Bounced("policy")).ok());
  ASSERT_TRUE(spool_->Complete(c, by_email["c@three.example"].id, Delivered()).ok());
  RecipientView v = *spool_->GetRecipient(c, by_email["a@one.example"].id);
  EXPECT_EQ(v.state, RecipientState::kBounced);
  EXPECT_EQ(v.category, "bad-mailbox");
  EXPECT_EQ(v.last_reply, "550 5.1.1 no such user");
  EXPECT_TRUE(spool_->IsSuppressed("a@ONE.example"));
  EXPECT_FALSE(spool_->IsSuppressed("b@two.example"));
  auto list = spool_->ListSuppression(10);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].reason, "bounce: 550 5.1.1 no such user");
  CampaignStatus st = *spool_->Status(c);
  EXPECT_NEAR(st.bounce_rate, 2.0 / 3.0, 1e-9);
}

TEST_F(SpoolTest, SuppressionAppliesAtLoadAndAtLeaseTime) {
  ASSERT_TRUE(spool_->AddSuppression("b@TWO.example", "manual").ok());
  CampaignSpec spec = Spec(kThree);
  absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted, 2u);
  EXPECT_EQ(r->suppressed, 1u);
  EXPECT_EQ(StateOf(r->id, 2), RecipientState::kSuppressed);
  // Suppressed after the load, before the first attempt.
  ASSERT_TRUE(spool_->AddSuppression("c@three.example", "unsubscribed").ok());
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].email, "a@one.example");
  EXPECT_EQ(StateOf(r->id, 3), RecipientState::kSuppressed);
  StateCounts counts = *spool_->Counts(r->id);
  EXPECT_EQ(counts[RecipientState::kSuppressed], 2u);
  // remove / list / errors
  EXPECT_TRUE(spool_->RemoveSuppression("c@three.example").ok());
  EXPECT_EQ(spool_->RemoveSuppression("c@three.example").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(spool_->AddSuppression("not-an-address", "x").ok());
  EXPECT_EQ(spool_->ListSuppression(10).size(), 1u);
}

// An empty suppression list (most spools) spares the lease its lookups; an
// entry added afterwards in any way still stops the recipient at its next
// lease: from a hard bounce of another campaign, added by hand, imported,
// and one on the list when the spool opens. Each step starts from a spool
// opened with an empty list.
TEST_F(SpoolTest, EntriesAddedToAnEmptySuppressionListApplyAtTheNextLease) {
  testing::TempDir d;
  CampaignId c = Load("email\na@one.example\nb@two.example\nc@three.example\nd@four.example\n");
  CampaignId bouncer = Load("email\nd@four.example\n");  // loaded while the list is empty
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 5u);
  for (const auto& l : leased)
    ASSERT_TRUE(spool_
                    ->Complete(l.campaign, l.id,
                               l.campaign == c ? Deferred() : Bounced("invalid_recipient"))
                    .ok());
  EXPECT_EQ(StateOf(bouncer, 1), RecipientState::kBounced);
  // Leases the campaign's due recipients, defers them, and returns their
  // addresses, sorted.
  auto lease_and_defer = [&] {
    clock_.Advance(absl::Hours(5));
    std::vector<std::string> emails;
    for (const auto& l : LeaseAll(clock_.Now())) {
      emails.push_back(l.email);
      EXPECT_TRUE(spool_->Complete(l.campaign, l.id, Deferred()).ok());
    }
    std::sort(emails.begin(), emails.end());
    return emails;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(lease_and_defer(), (V{"a@one.example", "b@two.example", "c@three.example"}));
  EXPECT_EQ(StateOf(c, 4), RecipientState::kSuppressed);  // the other campaign's bounce

  ASSERT_TRUE(spool_->RemoveSuppression("d@four.example").ok());
  Reopen();
  ASSERT_TRUE(spool_->AddSuppression("a@one.example", "manual").ok());
  EXPECT_EQ(lease_and_defer(), (V{"b@two.example", "c@three.example"}));
  EXPECT_EQ(StateOf(c, 1), RecipientState::kSuppressed);

  ASSERT_TRUE(spool_->RemoveSuppression("a@one.example").ok());
  Reopen();
  ASSERT_TRUE(spool_->ImportSuppression(d.Write("u.txt", "b@two.example\n"), "import").ok());
  EXPECT_EQ(lease_and_defer(), (V{"c@three.example"}));
  EXPECT_EQ(StateOf(c, 2), RecipientState::kSuppressed);

  ASSERT_TRUE(spool_->RemoveSuppression("b@two.example").ok());
  ASSERT_TRUE(spool_->AddSuppression("c@three.example", "manual").ok());
  Reopen();
  EXPECT_EQ(lease_and_defer(), V{});
  EXPECT_EQ(StateOf(c, 3), RecipientState::kSuppressed);
}

TEST_F(SpoolTest, SuppressionImportSkipsCommentsAndReportsInvalidLines) {
  testing::TempDir d;
  std::string plain =
      d.Write("unsub.txt", "# unsubscribes\none@example.com\n\nnot valid\nTWO@Example.com\n");
  absl::StatusOr<SuppressionImportReport> r = spool_->ImportSuppression(plain, "import");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->added, 2u);
  EXPECT_EQ(r->invalid, 1u);
  ASSERT_EQ(r->first_errors.size(), 1u);
  EXPECT_NE(r->first_errors[0].find(plain + ":4: invalid address"), std::string::npos);
  std::string csv = d.Write("u.csv", "name,email\nx,one@example.com\ny,three@example.com\n");
  r = spool_->ImportSuppression(csv, "import");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->added, 1u);
  EXPECT_EQ(r->already, 1u);
  EXPECT_TRUE(spool_->IsSuppressed("TWO@example.com"));
}

// Issue 15 item 6: case variants are one recipient, kept as first written.
TEST_F(SpoolTest, CaseVariantsAreOneRecipient) {
  CampaignSpec spec =
      Spec("email,name\nA@Example.com,1\nA@example.COM,2\na@example.com,3\n A@EXAMPLE.com ,4\n");
  absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted, 1u);
  EXPECT_EQ(r->duplicates, 3u);
  auto first = spool_->GetRecipient(r->id, RecipientId{1});
  EXPECT_EQ(first->values[1], "1");          // first one kept
  EXPECT_EQ(first->email, "A@example.com");  // sent as written, domain lower-cased
  // Opting out: the local part's case makes two recipients.
  LoadOptions exact;
  exact.case_sensitive_local_parts = true;
  r = spool_->LoadCampaign(spec, exact);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted, 2u);  // A@example.com and a@example.com
  EXPECT_EQ(r->duplicates, 2u);
}

// Issue 15 item 6: one suppression entry for every spelling; an entry added
// case-sensitively stops only its spelling.
TEST_F(SpoolTest, CaseVariantsAreOneSuppressionEntry) {
  ASSERT_TRUE(spool_->AddSuppression("USER@GMAIL.COM", "manual").ok());
  ASSERT_TRUE(spool_->AddSuppression("user@gmail.com", "manual").ok());
  std::vector<SuppressionEntry> list = spool_->ListSuppression(10);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].email, "user@gmail.com");
  EXPECT_TRUE(spool_->IsSuppressed("User@Gmail.com"));
  absl::StatusOr<LoadReport> r =
      spool_->LoadCampaign(Spec("email,name\nUser@gmail.com,1\nother@gmail.com,2\n"), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->suppressed, 1u);
  EXPECT_EQ(r->accepted, 1u);
  // Removing any spelling removes the entry.
  ASSERT_TRUE(spool_->RemoveSuppression("uSeR@gmail.com").ok());
  EXPECT_FALSE(spool_->IsSuppressed("user@gmail.com"));
  EXPECT_TRUE(spool_->ListSuppression(10).empty());
  // Case-sensitive entries stop their own spelling only.
  ASSERT_TRUE(
      spool_->AddSuppression("Ann@x.example", "manual", /*case_sensitive_local=*/true).ok());
  EXPECT_TRUE(spool_->IsSuppressed("Ann@x.example"));
  EXPECT_FALSE(spool_->IsSuppressed("ann@x.example"));
  EXPECT_EQ(spool_->ListSuppression(10)[0].email, "Ann@x.example");
  // Imports fold too: three spellings, one entry.
  std::string f = dir_.Write("unsub.txt", "Bob@y.example\nBOB@y.example\nbob@Y.example\n");
  absl::StatusOr<SuppressionImportReport> imp = spool_->ImportSuppression(f, "import");
  ASSERT_TRUE(imp.ok()) << imp.status();
  EXPECT_EQ(imp->added, 1u);
  EXPECT_EQ(imp->already, 2u);
  EXPECT_TRUE(spool_->IsSuppressed("bOB@y.example"));
}

TEST_F(SpoolTest, PauseStopsLeasingAndResumeRestarts) {
  CampaignId c = Load(kThree);
  auto first = LeaseAll(clock_.Now(), 1);
  ASSERT_EQ(first.size(), 3u);  // one per domain
  ASSERT_TRUE(spool_->Complete(c, first[0].id, Delivered()).ok());
  ASSERT_TRUE(spool_->Complete(c, first[1].id, Deferred()).ok());
  ASSERT_TRUE(spool_->Pause(c).ok());
  EXPECT_EQ(spool_->GetCampaign(c)->state, CampaignState::kPaused);
  // The in-flight one completes while paused: deferred, but not scheduled.
  ASSERT_TRUE(spool_->Complete(c, first[2].id, Deferred()).ok());
  clock_.Advance(absl::Hours(5));
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  EXPECT_TRUE(spool_->Pause(c).ok());  // idempotent
  // Survives a restart.
  Reopen();
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());
  ASSERT_TRUE(spool_->Resume(c).ok());
  EXPECT_EQ(spool_->GetCampaign(c)->state, CampaignState::kActive);
  auto again = LeaseAll(clock_.Now());
  EXPECT_EQ(again.size(), 2u);
}

TEST_F(SpoolTest, CancelStopsEverythingButKeepsDeliveries) {
  CampaignId c = Load("email\na@x.example\nb@x.example\nc@x.example\nd@x.example\n");
  auto leased = LeaseAll(clock_.Now(), 2);
  ASSERT_EQ(leased.size(), 2u);
  ASSERT_TRUE(spool_->Cancel(c).ok());
  EXPECT_EQ(spool_->GetCampaign(c)->state, CampaignState::kCancelled);
  ASSERT_TRUE(spool_->Complete(c, leased[0].id, Delivered()).ok());
  ASSERT_TRUE(spool_->Complete(c, leased[1].id, Deferred()).ok());
  StateCounts counts = *spool_->Counts(c);
  EXPECT_EQ(counts[RecipientState::kDelivered], 1u);
  EXPECT_EQ(counts[RecipientState::kCancelled], 3u);
  EXPECT_TRUE(*spool_->AllDone(c));
  EXPECT_TRUE(LeaseAll(clock_.Now() + absl::Hours(10)).empty());
  EXPECT_EQ(spool_->History(c, RecipientId{4})->back().detail, "cancelled by operator");
  EXPECT_EQ(spool_->Pause(c).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(spool_->Resume(c).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SpoolTest, InFlightRecipientsGoBackToTheQueueAfterACrash) {
  CampaignId c = Load(kThree);
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 3u);
  ASSERT_TRUE(spool_->Complete(c, leased[0].id, Delivered()).ok());
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kInFlight], 2u);
  // "Crash": drop the spool with two recipients in flight.
  Reopen();
  EXPECT_EQ(*spool_->RecoverInFlight(), 0u);
  StateCounts counts = *spool_->Counts(c);
  EXPECT_EQ(counts[RecipientState::kInFlight], 0u);
  EXPECT_EQ(counts[RecipientState::kQueued], 2u);
  EXPECT_EQ(counts[RecipientState::kDelivered], 1u);
  auto again = LeaseAll(clock_.Now());
  ASSERT_EQ(again.size(), 2u);
  std::set<uint64_t> ids;
  for (auto& l : again) ids.insert(Value(l.id));
  EXPECT_FALSE(ids.contains(Value(leased[0].id)));  // the delivered one is not retried
  ASSERT_TRUE(spool_->Complete(c, again[0].id, Delivered()).ok());
  ASSERT_TRUE(spool_->Complete(c, again[1].id, Delivered()).ok());
  EXPECT_TRUE(*spool_->AllDone(c));
}

TEST_F(SpoolTest, CampaignCancelledWithRecipientsInFlightIsFinishedAfterACrash) {
  CampaignId c = Load(kThree);
  auto leased = LeaseAll(clock_.Now(), 1);
  ASSERT_EQ(leased.size(), 3u);
  ASSERT_TRUE(spool_->Cancel(c).ok());
  EXPECT_FALSE(*spool_->AllDone(c));  // three still in flight
  Reopen();                           // they never complete
  EXPECT_EQ(*spool_->RecoverInFlight(), 3u);
  EXPECT_TRUE(*spool_->AllDone(c));
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kCancelled], 3u);
  EXPECT_TRUE(LeaseAll(clock_.Now() + absl::Hours(1)).empty());
}

TEST_F(SpoolTest, ResumedWhileInFlightThenCrashLosesNobody) {
  CampaignId c = Load(kThree);
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 3u);
  ASSERT_TRUE(spool_->Pause(c).ok());
  ASSERT_TRUE(spool_->Resume(c).ok());
  Reopen();  // crash with all three in flight
  EXPECT_EQ(LeaseAll(clock_.Now()).size(), 3u);
}

TEST_F(SpoolTest, CompletingTwiceOrUnleasedIsRejected) {
  CampaignId c = Load(kThree);
  EXPECT_EQ(spool_->Complete(c, RecipientId{1}, Delivered()).code(),
            absl::StatusCode::kFailedPrecondition);
  auto leased = LeaseAll(clock_.Now());
  ASSERT_TRUE(spool_->Complete(c, leased[0].id, Delivered()).ok());
  EXPECT_EQ(spool_->Complete(c, leased[0].id, Delivered()).code(),
            absl::StatusCode::kFailedPrecondition);
  // A batch with one bad entry still applies the others.
  std::vector<Completion> batch = {{c, leased[0].id, Delivered()}, {c, leased[1].id, Delivered()}};
  EXPECT_FALSE(spool_->CompleteBatch(batch).ok());
  EXPECT_EQ(StateOf(c, Value(leased[1].id)), RecipientState::kDelivered);
}

// One batch bouncing the same mailbox in two campaigns writes its
// suppression entry twice: the later completion's reason is the one kept
// (the batch is sorted by key, stably, before it is written).
TEST_F(SpoolTest, ABatchSuppressingOneMailboxTwiceKeepsTheLaterReason) {
  CampaignId c1 = Load("email\nx@gone.example\n");
  CampaignId c2 = Load("email\nx@gone.example\n");
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 2u);
  smtp::Outcome first = Bounced(), second = Bounced();
  first.reply = {550, "5.1.1", "user unknown"};
  second.reply = {550, "5.1.1", "mailbox gone"};  // sorts before the first's reason
  std::vector<Completion> batch = {
      {c1, leased[0].campaign == c1 ? leased[0].id : leased[1].id, first},
      {c2, leased[0].campaign == c2 ? leased[0].id : leased[1].id, second}};
  ASSERT_TRUE(spool_->CompleteBatch(batch).ok());
  for (int round = 0; round < 2; ++round) {  // in memory, then as written
    EXPECT_TRUE(spool_->IsSuppressed("x@gone.example"));
    auto list = spool_->ListSuppression(10);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].reason, "bounce: 550 5.1.1 mailbox gone");
    Reopen();
  }
}

// The deletes of a batch's old schedule keys go before its new ones: a held
// recipient whose new key equals its old one (the clock stepped back by the
// hold) stays scheduled, in memory and on disk, next to a deferral in the
// same batch whose keys sort after it.
TEST_F(SpoolTest, AHeldRecipientWhoseScheduleKeyIsUnchangedStaysScheduled) {
  CampaignId c = Load("email\na@same.example\nb@same.example\n");
  const absl::Time loaded = clock_.Now();
  auto leased = LeaseAll(loaded);
  ASSERT_EQ(leased.size(), 2u);
  clock_.Set(loaded - absl::Seconds(1));
  smtp::Outcome hold;
  hold.hold_ms = 1000;  // due again exactly when it was due: the same key
  std::vector<Completion> batch = {{c, leased[1].id, Deferred()}, {c, leased[0].id, hold}};
  ASSERT_TRUE(spool_->CompleteBatch(batch).ok());
  clock_.Set(loaded);
  for (int round = 0; round < 2; ++round) {  // in memory, then as written
    auto again = LeaseAll(loaded);
    ASSERT_EQ(again.size(), 1u) << round;
    EXPECT_EQ(again[0].id, leased[0].id);
    EXPECT_EQ(StateOf(c, Value(leased[1].id)), RecipientState::kDeferred);
    Reopen();  // the lease is memory-only: the held one is queued again
  }
  RecipientView deferred = *spool_->GetRecipient(c, leased[1].id);
  clock_.Set(deferred.next_attempt);
  EXPECT_EQ(LeaseAll(clock_.Now()).size(), 2u);
}

TEST_F(SpoolTest, NoHeadOfLineBlockingAcrossDomains) {
  std::string csv = "email\n";
  for (int i = 0; i < 500; ++i) csv += "u" + std::to_string(i) + "@big.example\n";
  for (int i = 0; i < 3; ++i) csv += "v" + std::to_string(i) + "@small.example\n";
  for (int i = 0; i < 3; ++i) csv += "w" + std::to_string(i) + "@tiny.example\n";
  CampaignId c = Load(csv);
  LeaseLimits limits;
  limits.max_per_domain = 10;
  limits.max_total = 100;
  auto batches = Lease(clock_.Now(), limits);
  std::map<std::string, size_t> per_domain;
  for (auto& b : batches) per_domain[b.domain] = b.recipients.size();
  EXPECT_EQ(per_domain["big.example"], 10u);
  EXPECT_EQ(per_domain["small.example"], 3u);
  EXPECT_EQ(per_domain["tiny.example"], 3u);
  // The engine throttles big.example to zero: the others still flow.
  limits.domain_quota = [](std::string_view d) { return d == "big.example" ? 0 : 100; };
  EXPECT_TRUE(Lease(clock_.Now(), limits).empty());
  // Round-robin with a small visit budget still reaches every domain over calls.
  limits.domain_quota = nullptr;
  limits.max_domains_visited = 1;
  size_t leased = 0;
  for (int i = 0; i < 200 && leased < 490; ++i) {
    for (auto& b : Lease(clock_.Now(), limits)) leased += b.recipients.size();
  }
  EXPECT_EQ(leased, 490u);
  EXPECT_EQ((*spool_->Counts(c))[RecipientState::kInFlight], 506u);
}

TEST_F(SpoolTest, LeaseLimitsBoundEachCall) {
  std::string csv = "email\n";
  for (int d = 0; d < 50; ++d)
    for (int i = 0; i < 5; ++i)
      csv += "u" + std::to_string(i) + "@d" + std::to_string(d) + ".example\n";
  Load(csv);
  LeaseLimits limits;
  limits.max_per_domain = 2;
  limits.max_total = 30;
  auto batches = Lease(clock_.Now(), limits);
  size_t total = 0;
  for (auto& b : batches) {
    EXPECT_LE(b.recipients.size(), 2u);
    total += b.recipients.size();
  }
  EXPECT_EQ(total, 30u);
  // Everything eventually, each exactly once.
  std::set<std::pair<uint64_t, uint64_t>> seen;
  for (int i = 0; i < 100; ++i)
    for (auto& b : Lease(clock_.Now(), limits))
      for (auto& r : b.recipients)
        EXPECT_TRUE(seen.insert({Value(r.campaign), Value(r.id)}).second);
  EXPECT_EQ(seen.size() + total, 250u);
}

TEST_F(SpoolTest, HalfLoadedCampaignLeftByACrashIsRemovedAtOpen) {
  CampaignId good = Load(kThree);
  spool_.reset();
  testing::Dump before = testing::DumpSpool(dir_.File("data"));
  {
    // Simulate a load killed midway: a 'loading' campaign with some rows.
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_.File("data"), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.File("data"), cfs, &h, &db).ok());
    auto cf = [&](const std::string& n) {
      return h[std::find(names.begin(), names.end(), n) - names.begin()];
    };
    CampaignInfo info;
    info.id = CampaignId{Value(good) + 1};
    info.name = "half";
    info.state = CampaignState::kLoading;
    ASSERT_TRUE(
        db->Put({}, cf("campaigns"), keys::Campaign(info.id), keys::EncodeCampaign(info)).ok());
    ASSERT_TRUE(db->Put({}, cf("templates"), keys::Campaign(info.id), "x").ok());
    for (uint64_t i = 1; i <= 100; ++i) {
      keys::RecipientRecord r;
      r.email = "z" + std::to_string(i) + "@half.example";
      r.domain = "half.example";
      ASSERT_TRUE(db->Put({}, cf("recipients"), keys::Recipient(info.id, RecipientId{i}),
                          keys::EncodeRecord(r))
                      .ok());
      ASSERT_TRUE(
          db->Put({}, cf("schedule"), keys::Schedule(r.domain, 0, info.id, RecipientId{i}), "")
              .ok());
    }
    for (auto* x : h) db->DestroyColumnFamilyHandle(x);
    delete db;
  }
  Reopen();
  EXPECT_EQ(spool_->ListCampaigns().size(), 1u);
  EXPECT_EQ(LeaseAll(clock_.Now()).size(), 3u);  // only the good campaign's
  spool_.reset();
  testing::Dump after = testing::DumpSpool(dir_.File("data"));
  // Nothing of the half campaign remains (the good one has moved on: compare CF by CF).
  for (const char* cfname : {"campaigns", "templates", "recipients"})
    EXPECT_EQ(before[cfname], after[cfname]) << cfname;
}

// A spool written before the identity key kept suppression entries with the
// local part as written: they are folded once at open, so they stop every
// spelling, as entries added now do.
TEST_F(SpoolTest, AnOlderSpoolsSuppressionEntriesAreFoldedAtOpen) {
  spool_.reset();
  {
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_.File("data"), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.File("data"), cfs, &h, &db).ok());
    auto cf = [&](const std::string& n) {
      return h[std::find(names.begin(), names.end(), n) - names.begin()];
    };
    // As an older release left it: no marker, keys as written.
    ASSERT_TRUE(db->Delete({}, cf("default"), "meta/suppression_keys_folded").ok());
    ASSERT_TRUE(db->Put({}, cf("suppression"), "USER@old.example", R"({"reason":"old"})").ok());
    ASSERT_TRUE(db->Put({}, cf("suppression"), "Dup@old.example", R"({"reason":"first"})").ok());
    ASSERT_TRUE(db->Put({}, cf("suppression"), "dup@old.example", R"({"reason":"second"})").ok());
    ASSERT_TRUE(db->Put({}, cf("suppression"), "low@old.example", R"({"reason":"low"})").ok());
    for (auto* x : h) db->DestroyColumnFamilyHandle(x);
    delete db;
  }
  Reopen();
  std::vector<SuppressionEntry> list = spool_->ListSuppression(10);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].email, "dup@old.example");
  EXPECT_EQ(list[0].reason, "second");  // an entry already folded is kept
  EXPECT_EQ(list[1].email, "low@old.example");
  EXPECT_EQ(list[2].email, "user@old.example");
  EXPECT_EQ(list[2].reason, "old");
  EXPECT_TRUE(spool_->IsSuppressed("user@old.example"));
  // Once: a case-sensitive entry added now survives the next open.
  ASSERT_TRUE(spool_->AddSuppression("Ann@x.example", "manual", true).ok());
  Reopen();
  EXPECT_TRUE(spool_->IsSuppressed("Ann@x.example"));
  EXPECT_FALSE(spool_->IsSuppressed("ann@x.example"));
}

TEST_F(SpoolTest, StatusShowsTopDomainsAndFindsByName) {
  CampaignSpec spec = Spec(
      "email\na@big.example\nb@big.example\nc@big.example\nd@mid.example\ne@mid.example\n"
      "f@one.example\n",
      "spring");
  absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*spool_->FindCampaign("spring"), r->id);
  EXPECT_EQ(*spool_->FindCampaign(std::to_string(Value(r->id))), r->id);
  EXPECT_EQ(spool_->FindCampaign("nope").status().code(), absl::StatusCode::kNotFound);
  CampaignStatus st = *spool_->Status(r->id, 2);
  ASSERT_EQ(st.top_domains.size(), 2u);
  EXPECT_EQ(st.top_domains[0].domain, "big.example");
  EXPECT_EQ(st.top_domains[0].counts[RecipientState::kQueued], 3u);
  EXPECT_EQ(st.top_domains[1].domain, "mid.example");
  EXPECT_EQ(st.counts.Total(), 6u);
  EXPECT_EQ(*spool_->GetTemplate(r->id), testing::kTemplate);
  EXPECT_EQ(spool_->GetCampaign(r->id)->columns, std::vector<std::string>{"email"});
}

// The outcome listener (metrics and the delivery log read it): one notice
// per recorded outcome, after the write, with the attempt number and the
// first attempt's time; expiries and suppressions found at lease time too.
TEST_F(SpoolTest, OutcomeNoticesCarryAttemptsAndFirstAttempt) {
  std::vector<OutcomeNotice> seen;
  spool_->SetOutcomeListener([&seen](absl::Span<const OutcomeNotice> notices) {
    for (const OutcomeNotice& n : notices) {
      seen.push_back(n);
      seen.back().outcome = nullptr;  // valid only during the call
      if (n.outcome) seen.back().reason = "outcome:" + std::to_string(n.outcome->reply.code);
    }
  });
  RetryPolicy p;
  p.max_age = absl::Hours(2);
  CampaignId c = Load("email\nx@a.example\ny@a.example\nz@b.example\n", p);
  const absl::Time first = clock_.Now();
  auto leased = LeaseAll(first);
  ASSERT_EQ(leased.size(), 3u);
  std::map<std::string, RecipientId> id;
  for (const LeasedRecipient& r : leased) id[r.email] = r.id;
  ASSERT_TRUE(spool_->Complete(c, id["x@a.example"], Deferred()).ok());
  ASSERT_TRUE(spool_->Complete(c, id["y@a.example"], Bounced()).ok());
  ASSERT_TRUE(spool_->AddSuppression("z@b.example", "manual").ok());
  ASSERT_TRUE(spool_->Complete(c, id["z@b.example"], Deferred()).ok());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].to, RecipientState::kDeferred);
  EXPECT_EQ(seen[0].email, "x@a.example");
  EXPECT_EQ(seen[0].attempts, 1u);
  EXPECT_EQ(seen[0].first_attempt, first);
  EXPECT_EQ(seen[0].campaign_name, "test");
  EXPECT_EQ(seen[0].reason, "outcome:451");
  EXPECT_EQ(seen[1].to, RecipientState::kBounced);
  // The deferred one comes back and is delivered: attempt 2, first attempt
  // from its history.
  clock_.Advance(absl::Hours(1));
  leased = LeaseAll(clock_.Now());
  // z is on the suppression list now: suppressed at lease time, a notice
  // without an outcome.
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].email, "x@a.example");
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[3].to, RecipientState::kSuppressed);
  EXPECT_EQ(seen[3].email, "z@b.example");
  EXPECT_EQ(seen[3].reason, "on the suppression list");
  ASSERT_TRUE(spool_->Complete(c, leased[0].id, Delivered()).ok());
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[4].to, RecipientState::kDelivered);
  EXPECT_EQ(seen[4].attempts, 2u);
  EXPECT_EQ(seen[4].first_attempt, first);
  EXPECT_EQ(seen[4].at, first + absl::Hours(1));
  // Status counts attempts as the metrics do: per domain, 2 deliveries or
  // bounces and 1 deferral at a.example; b.example's one deferral.
  CampaignStatus st = *spool_->Status(c);
  ASSERT_EQ(st.top_domains.size(), 2u);
  const DomainCount& a = st.top_domains[0];
  EXPECT_EQ(a.domain, "a.example");
  EXPECT_EQ(a.attempts, 3u);
  EXPECT_EQ(a.deliveries, 1u);
  EXPECT_EQ(a.deferrals, 1u);
  EXPECT_EQ(a.bounces, 1u);
  EXPECT_DOUBLE_EQ(a.bounce_rate(), 1.0 / 3);
  EXPECT_EQ(st.top_domains[1].deferrals, 1u);
  ASSERT_EQ(st.bounce_reasons.size(), 1u);
  EXPECT_EQ(st.bounce_reasons[0].count, 1u);
  EXPECT_FALSE(st.bounce_reasons[0].sample.empty());
  // Fewer top domains than there are: the rest is summed as "other".
  st = *spool_->Status(c, 1);
  EXPECT_EQ(st.other_domains.domain, "other");
  EXPECT_EQ(st.other_domains.attempts, 1u);
  spool_->SetOutcomeListener(nullptr);
}

// campaign export reads a campaign page by page: every recipient once, in ID
// order, a state filter, and a bounded read per call.
TEST_F(SpoolTest, ExportPagesThroughACampaign) {
  std::string csv = "email\n";
  for (int i = 0; i < 25; ++i) csv += "u" + std::to_string(i) + "@x.example\n";
  CampaignId c = Load(csv);
  auto leased = LeaseAll(clock_.Now());
  ASSERT_EQ(leased.size(), 25u);
  for (const LeasedRecipient& r : leased)
    ASSERT_TRUE(
        spool_->Complete(c, r.id, Value(r.id) % 5 == 0 ? Bounced("policy") : Delivered()).ok());
  std::vector<std::string> seen;
  RecipientId after{0};
  int calls = 0;
  for (bool done = false; !done && calls < 100; ++calls) {
    auto page = spool_->Export(c, after, 4);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->rows.size(), 4u);
    for (const RecipientView& v : page->rows) seen.push_back(v.email);
    after = page->next;
    done = page->done;
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "u0@x.example");
  EXPECT_EQ(seen.back(), "u24@x.example");
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 25u);
  // Only the bounced ones (IDs 5, 10, 15, 20, 25), with their reply; a page
  // of 1 reads at most 50 records, so filtering still pages.
  std::vector<RecipientView> bounced;
  after = RecipientId{0};
  calls = 0;
  for (bool done = false; !done && calls < 100; ++calls) {
    auto page = spool_->Export(c, after, 1, RecipientState::kBounced);
    ASSERT_TRUE(page.ok());
    for (RecipientView& v : page->rows) bounced.push_back(std::move(v));
    after = page->next;
    done = page->done;
  }
  ASSERT_EQ(bounced.size(), 5u);
  EXPECT_EQ(bounced[0].state, RecipientState::kBounced);
  EXPECT_EQ(bounced[0].last_reply, "550 5.1.1 no such user");
  EXPECT_EQ(bounced[0].attempts, 1u);
}

TEST_F(SpoolTest, OpenFailsClearlyWhenAnotherProcessHoldsTheDatabase) {
  Spool::Options o;
  o.clock = &clock_;
  absl::StatusOr<std::unique_ptr<Spool>> second = Spool::Open(dir_.File("data"), o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace salvo::queue
