#pragma once
// The campaign spool: every campaign, its template and every recipient's state,
// kept in RocksDB so nothing is lost when the process dies.
//
// Who owns it: one Spool per process (RocksDB allows one writer process). It is
// thread-safe: the engine's shards call LeaseDue/Complete from any thread, the
// admin server thread calls the operator functions. One internal mutex
// serializes state changes; RocksDB reads for status/list run outside it.
//
// Recipient state machine (every transition is written in one WriteBatch with
// a history entry carrying the SMTP reply that caused it; a first-attempt
// delivery's entry lives in the recipient's record unless
// Options::history_for_first_deliveries):
//
//   queued ──lease──> in_flight ──Complete──> delivered
//   deferred <──────┘   │    ├──(4xx, not expired)──> deferred (attempts++, next attempt)
//                       │    ├──(5xx)──> bounced (category, reply)
//                       │    └──(4xx, older than max age)──> expired (counts as a bounce)
//   queued/deferred ──(suppressed since load)──> suppressed   (at lease time)
//   queued/deferred ──(older than max age)──> expired          (at lease time)
//   queued/deferred/in_flight ──cancel──> cancelled            (in_flight: at Complete,
//                                                               unless delivered)
//   in_flight ──(process dies)──> queued/deferred again: a lease is memory-only
//               (the recipient keeps its stored state and schedule entry until
//               Complete), so after a crash it is simply due again
//
// Storage faults: a write RocksDB refuses (ENOSPC, EIO) never ends the process
// and never drops an outcome. The batch is held in memory and retried (RocksDB
// resumed from its background error first) at most once a second from LeaseDue
// and CompleteBatch; meanwhile LeaseDue hands out nothing, attempts already in
// flight complete (and are held too), and Health() says so. RocksDB's own info
// log goes to salvo's log (stderr), not to a file on the failing disk.
//
// Sync policy: completion batches (and the rare expiries found at lease time) are written with WAL
// and sync=Options::sync_writes (default false: survives a process crash or SIGKILL, since the WAL
// is in the OS page cache; set it for power-loss safety at a throughput cost). A campaign load's
// final flip and operator actions (pause/resume/cancel/suppression) are always written with
// sync=true.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/common/clock.h"
#include "engine/smtp/outcome.h"
#include "queue/campaign.h"

namespace rocksdb {
class Env;
}

namespace salvo::queue {

// One recipient handed to the engine. The spool keeps its own copy until
// Complete(); the engine may move this one around freely.
struct LeasedRecipient {
  CampaignId campaign{};
  RecipientId id{};
  std::string email;   // as loaded (local part case kept)
  std::string domain;  // lower-cased destination domain (U-labels kept as UTF-8)
  // Column names of the campaign's CSV (shared by all its recipients) and this
  // recipient's values, in the same order. columns->at(i) is the name of values[i].
  std::shared_ptr<const std::vector<std::string>> columns;
  std::vector<std::string> values;
  uint32_t attempts = 0;  // delivery attempts already made (0 on the first try)
  absl::Time queued_at;   // when the recipient entered the queue (max age counts from here)

  // Value of the CSV column `name`, or nullptr.
  const std::string* Variable(std::string_view name) const;
};

// Due recipients of one destination domain.
struct DomainBatch {
  std::string domain;
  std::vector<LeasedRecipient> recipients;
};

struct LeaseLimits {
  size_t max_per_domain = 100;  // at most this many per domain in one call
  size_t max_total = 1000;      // at most this many in one call
  // Bounds the work of one call: at most this many destination domains are
  // visited; the next call continues round-robin where this one stopped.
  size_t max_domains_visited = 4096;
  // The backlog share (a domain with more than one batch due is served first
  // with up to half of each call; queue/README.md, "Lease order") goes to a
  // domain only while it has fewer than this many in flight, so a throttled
  // or slow one does not fill the caller's window. 0 = 2 x max_per_domain.
  // The engine passes a quarter of delivery.in_flight_limit.
  size_t backlog_in_flight = 0;
  // Optional: how many more the engine wants for this domain right now (e.g.
  // 0 while the domain is throttled). Called with the spool mutex held: keep it
  // cheap and never call back into the spool.
  std::function<size_t(std::string_view domain)> domain_quota;
};

// One completed delivery attempt.
struct Completion {
  CampaignId campaign{};
  RecipientId id{};
  smtp::Outcome outcome;
};

// One recorded transition of a recipient.
struct HistoryEntry {
  absl::Time at;
  RecipientState from = RecipientState::kQueued;
  RecipientState to = RecipientState::kQueued;
  std::string reply;       // "550 5.1.1 text" or empty
  std::string category;    // bounce/deferral category or empty
  std::string detail;      // host, or why (e.g. "cancelled by operator")
  std::string scope = {};  // a failed attempt's failure scope ("recipient" ... "site")
};

// What a recipient looks like now (for tests, `status`, debugging).
struct RecipientView {
  CampaignId campaign{};
  RecipientId id{};
  std::string email;
  RecipientState state = RecipientState::kQueued;
  uint32_t attempts = 0;
  absl::Time queued_at;
  absl::Time next_attempt;
  std::string last_reply;
  std::string category;
  std::vector<std::string> values;
};

struct DomainCount {
  std::string domain;
  StateCounts counts;  // recipients by state now
  // Attempt outcomes, as the metrics count them (salvo_recipients_*_total):
  // every attempt is one delivery, deferral or bounce; bounce rate =
  // bounces / attempts, deferral rate = deferrals / attempts (the recording
  // rules' definitions).
  uint64_t attempts = 0;
  uint64_t deliveries = 0;
  uint64_t deferrals = 0;
  uint64_t bounces = 0;
  double bounce_rate() const { return attempts ? static_cast<double>(bounces) / attempts : 0; }
  double deferral_rate() const { return attempts ? static_cast<double>(deferrals) / attempts : 0; }
};

// Why recipients were not delivered: one category (engine/smtp/category.h)
// with how many recipients' last failure it was and one sample reply.
struct FailureReason {
  std::string category;
  uint64_t count = 0;
  std::string sample;  // the last reply of one such recipient
};

// Reports received later (a bounce message, a complaint, ...) that were
// matched to one of a campaign's copies and applied (Spool::RecordReport).
struct ReportCounts {
  uint64_t async_bounces = 0;       // hard bounce messages: the recipient became bounced
  uint64_t async_soft_bounces = 0;  // soft (4.x.x) bounce messages: history only
  uint64_t complaints = 0;          // ARF feedback reports: the address suppressed
  uint64_t delayed = 0;             // delay warnings: nothing changed
  uint64_t auto_replies = 0;        // vacation / out-of-office: nothing changed
};

// Reports that named no copy of ours (Spool::RecordStrayReport), spool-wide.
struct StrayReportCounts {
  uint64_t forged = 0;     // a VERP token that does not verify, an unknown campaign/recipient
  uint64_t unmatched = 0;  // a report that identifies no copy (no token, no usable Message-ID)
};

struct CampaignStatus {
  CampaignInfo info;
  StateCounts counts;
  std::vector<DomainCount> top_domains;  // by recipient count, descending
  // Every domain not in top_domains, summed ("other"); empty domain = none.
  DomainCount other_domains;
  // The categories of the last failure of bounced recipients, and of
  // deferred and expired ones, most frequent first (at most 5 each).
  std::vector<FailureReason> bounce_reasons;
  std::vector<FailureReason> deferral_reasons;
  // Why recipients are not delivered: the failure category of the last
  // attempt (as engine/smtp/failure_scope names it, e.g. "null_mx",
  // "invalid_recipient") of bounced, expired and deferred recipients, with
  // counts, most frequent first.
  std::vector<std::pair<std::string, uint64_t>> categories;
  // bounced+expired over finished (delivered+bounced+expired); deferral rate:
  // recipients deferred at least once over all attempted. 0 when nothing ran.
  double bounce_rate = 0;
  double deferral_rate = 0;
  // Reports received later about this campaign's copies (Spool::RecordReport).
  ReportCounts reports;
  // complaints over delivered (delivered now + bounced later); 0 when none.
  double complaint_rate = 0;
};

struct SuppressionEntry {
  std::string email;   // the key: domain lower-cased, local part too unless added case-sensitive
  std::string reason;  // "manual", "import:FILE", "bounce: 550 5.1.1 ..."
  absl::Time added;
};

// What became of one recipient: an attempt's outcome (delivered, deferred,
// bounced, expired at the end of its retry period, cancelled), or an expiry
// or a suppression found when leasing it. For metrics and the delivery log
// (Spool::SetOutcomeListener). Attempts that shaping held back (never tried)
// are not reported.
struct OutcomeNotice {
  absl::Time at;
  CampaignId campaign{};
  RecipientId id{};
  std::string campaign_name;
  std::string email;
  std::string domain;
  RecipientState to = RecipientState::kQueued;
  uint32_t attempts = 0;     // attempts made, this one included
  absl::Time first_attempt;  // InfinitePast: never attempted
  absl::Time queued_at;      // when it entered the queue
  // The attempt's outcome (valid only during the listener call); null for an
  // expiry or suppression found while leasing.
  const smtp::Outcome* outcome = nullptr;
  std::string reason;  // the reply ("550 5.1.1 ...") or why
  // What the notice is about: an attempt, or an expiry/suppression at lease
  // time (kAttempt), or a report received later (Spool::RecordReport,
  // RecordStrayReport). For reports `outcome` is null, `to` is the state
  // after the report (a complaint leaves it as it was), `category` names the
  // bounce category or the complaint's feedback type; a stray report has no
  // campaign (0) and no recipient.
  enum class Source : uint8_t {
    kAttempt,
    kAsyncBounce,      // hard bounce message: the recipient became bounced
    kAsyncSoftBounce,  // soft bounce message: no state change
    kComplaint,
    kDelayed,
    kAutoReply,
    kForged,
    kUnmatched,
  };
  Source source = Source::kAttempt;
  std::string category;
};
// Called with the notices of one LeaseDue or CompleteBatch after its write
// succeeded (for outcomes held through a storage fault: after the write that
// finally recorded them), on the calling thread, outside the spool's lock;
// must not block.
using OutcomeListener = std::function<void(absl::Span<const OutcomeNotice>)>;

// One message the inbound listener (engine/inbound) received for a bounce,
// feedback or unsubscribe address, as stored before its 250 was given.
struct InboundMessage {
  uint64_t id = 0;                      // set by StoreInbound; arrival order
  std::string mail_from;                // the envelope sender ("" = null sender)
  std::vector<std::string> recipients;  // accepted RCPT addresses
  std::string client;                   // "<peer address> <EHLO name>"
  absl::Time received;
  std::string raw;  // the message as received (after dot-unstuffing)
};

// A final outcome the spool held (its disk refused the write) and could not
// write when it closed: one JSON line of a rescue file, or of the log after
// "spool rescue: ". Spool::RecoverOutcomes applies it.
struct RescuedOutcome {
  CampaignId campaign{};
  RecipientId id{};
  std::string email;
  RecipientState state = RecipientState::kDelivered;  // delivered or bounced
  std::string reply;                                  // "250 2.0.0 ok"
  std::string category;                               // bounces: the category
  absl::Time at = absl::InfinitePast();
  // A bounce that put the address on the suppression list (failure_scope
  // said so): recovering it does so again.
  bool suppress = false;

  std::string ToJson() const;
  // One line (a leading "... spool rescue: " is skipped); the error names
  // what is wrong.
  static absl::StatusOr<RescuedOutcome> FromJson(std::string_view line);
};

// The outcomes in a rescue file (Options::rescue_dir) or a copy of the log:
// its JSON lines, or its lines with "spool rescue: "; other lines are skipped
// and counted in `*skipped`. A line that looks like one and is not one is an
// error naming path:line.
absl::StatusOr<std::vector<RescuedOutcome>> ReadRescueFile(const std::string& path,
                                                           size_t* skipped);

// What RecoverRescueDir did.
struct RescueDirReport {
  size_t files = 0;     // rescue files applied (each renamed to <name>.recovered)
  size_t read = 0;      // outcomes in them
  size_t recorded = 0;  // of those, recorded now (the rest were recorded already)
};

// Whether the spool can record outcomes and hand out work (Spool::Health).
// `campaign status`, the salvo_spool_* metrics and the log say the same.
struct SpoolHealth {
  // New leases are handed out: no outcome is held and free space is above
  // the floor. False while the disk is full or failing.
  bool writable = true;
  // Outcomes of attempts (delivered, bounced, deferred) that RocksDB refused
  // to write, held in memory and retried; lost only if the process dies first.
  size_t held_outcomes = 0;
  uint64_t write_errors = 0;  // spool writes RocksDB refused since Open
  std::string last_error;     // the last refusal ("No space left on device" ...)
  absl::Time unwritable_since = absl::InfinitePast();  // InfinitePast: writable
  bool below_floor = false;                            // free space under Options::min_free_bytes
  uint64_t free_bytes = 0;  // at the last check (0 when min_free_bytes is 0)
  uint64_t min_free_bytes = 0;
  // RocksDB refused to resume after a write error other than a full disk (EIO:
  // a failing disk; it makes that a fatal error): nothing more is written
  // until the spool is reopened, i.e. salvo is restarted. Held outcomes are
  // written when the spool closes if the disk then accepts writes.
  bool needs_restart = false;
};

class Spool {
 public:
  struct Options {
    bool sync_writes = false;  // see the sync policy above
    // A delivery on the first attempt also writes its own history row. Off
    // (the default), the attempt (time, lease time, host; the reply and
    // category are the record's) is kept in the recipient's record, written
    // anyway, and History() shows it as that row: one RocksDB put less per
    // message. Every other transition always writes its row.
    bool history_for_first_deliveries = false;
    // Free-space floor on the data directory's file system (statvfs): below
    // it LeaseDue hands out nothing (open attempts still complete) until
    // space returns, so a filling disk stops new work before RocksDB fails.
    // 0 = no floor.
    uint64_t min_free_bytes = 0;
    // Tests: the RocksDB environment (a fault-injecting file system);
    // nullptr = the default one.
    rocksdb::Env* env = nullptr;
    Clock* clock = nullptr;  // nullptr: Clock::System()
    uint64_t rng_seed = 0;   // retry jitter; 0 = seeded from the clock
    bool create_if_missing = true;
    // A failing disk that refuses even the reopen at close: the final
    // outcomes (delivered, bounced) still held are written here, one JSON
    // line each, to a file `salvo-rescue-<time>-<pid>.jsonl` for
    // RecoverOutcomes (`salvo queue recover --from FILE`). "" = one log line
    // each ("spool rescue: {...}"), the JSON the same.
    std::string rescue_dir;
    // Start-up time: RocksDB keeps a write-ahead log until every column
    // family with data in it is flushed, and replays what it keeps at the
    // next open. Past this many bytes of log the families holding the oldest
    // one are flushed, so a start replays at most about this much.
    // (RocksDB counts a log once it is no longer the one written to, that
    // is after a memtable of write_buffer_bytes fills.)
    uint64_t max_wal_bytes = 256ull << 20;
    size_t write_buffer_bytes = 32 << 20;  // per column family memtable
    // A load of at least this many recipients ends with every column family
    // flushed to tables: the next start replays none of it (without this a
    // 10,000,000-recipient load left ~1.5 GB of log to replay).
    size_t flush_after_load_rows = 100000;
  };

  // Opens (creating) the spool in `data_dir`. Cleans up any half-loaded
  // campaign left by a crash. Fails with kUnavailable when another process
  // holds the database (e.g. a running `salvo run`).
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& data_dir, Options options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  const std::string& data_dir() const;
  absl::Time Now() const;

  // ---- Engine side ----
  // Crash recovery needs no work: leases are memory-only, so recipients in
  // flight when a process died are still queued/deferred on disk and due
  // again after Open(). Open() also cancels those that belonged to a
  // campaign cancelled meanwhile; this returns that count. Kept so the engine
  // has one explicit start-up call.
  absl::StatusOr<size_t> RecoverInFlight();
  // Records final outcomes the spool held and could not write before it
  // closed (the rescue lines, RescuedOutcome): each recipient still queued or
  // deferred (not in flight) becomes delivered or bounced, with a history row
  // saying so, and is not sent again. One already final is left as it is.
  // Returns how many were applied.
  absl::StatusOr<size_t> RecoverOutcomes(absl::Span<const RescuedOutcome> outcomes);
  // At start: applies every rescue file (`salvo-rescue-*.jsonl`) in `dir`
  // with RecoverOutcomes, oldest first, and renames each to
  // `<name>.recovered` once its outcomes are written, so a start after a dead
  // disk sends none of them again without the operator's `salvo queue
  // recover`. A file it cannot read, or outcomes it cannot write, is an error
  // naming the file (the caller does not start sending).
  absl::StatusOr<RescueDirReport> RecoverRescueDir(const std::string& dir);
  // Hands out due recipients (next attempt <= now) of active campaigns,
  // grouped by destination domain, round-robin over domains across calls, so
  // one slow domain never blocks the others. Memory is bounded by the limits.
  absl::StatusOr<std::vector<DomainBatch>> LeaseDue(absl::Time now, const LeaseLimits& limits);
  // Records the outcome of an attempt for a leased recipient and applies the
  // retry schedule/expiry. CompleteBatch writes many in one WriteBatch (the
  // fast path). Completing a recipient that is not leased is kFailedPrecondition
  // (and the other completions of the batch still apply).
  absl::Status Complete(CampaignId campaign, RecipientId id, const smtp::Outcome& outcome);
  absl::Status CompleteBatch(absl::Span<const Completion> completions);
  // Receives every outcome LeaseDue and CompleteBatch record from now on
  // (nullptr: none). Set before the engine starts.
  void SetOutcomeListener(OutcomeListener listener);
  size_t InFlight() const;
  // Storage health: see SpoolHealth. Cheap (memory only); any thread.
  SpoolHealth Health() const;
  // True when no outcome is held in memory: everything CompleteBatch took
  // reached RocksDB's WAL (a process crash cannot lose it). Cheap; any thread.
  bool AllOutcomesWritten() const;

  // ---- Campaigns ----
  absl::StatusOr<CampaignInfo> GetCampaign(CampaignId id) const;
  // Accepts a decimal ID or an exact campaign name. Names are unique among
  // campaigns that are not cancelled (the loader refuses a second one unless
  // told otherwise): the one that is not cancelled, else the newest
  // cancelled one; two live campaigns of one name (--allow-duplicate-name,
  // or an older spool) make the name ambiguous, and the error lists their IDs.
  absl::StatusOr<CampaignId> FindCampaign(std::string_view id_or_name) const;
  absl::StatusOr<std::string> GetTemplate(CampaignId id) const;
  std::vector<CampaignInfo> ListCampaigns() const;
  absl::StatusOr<StateCounts> Counts(CampaignId id) const;
  // True when no recipient of the campaign is queued, deferred or in flight.
  absl::StatusOr<bool> AllDone(CampaignId id) const;
  // Counts plus the top destination domains (scans the campaign's recipients).
  absl::StatusOr<CampaignStatus> Status(CampaignId id, size_t top_domains = 10) const;
  // `reason` (shown by status) says why when the engine pauses a campaign it
  // cannot send (a composition failure that affects every copy); an
  // operator's pause has none. Resume clears it.
  absl::Status Pause(CampaignId id, std::string_view reason = "");
  absl::Status Resume(CampaignId id);
  // Queued and deferred recipients become cancelled now; in-flight ones when
  // their attempt completes (a delivery that already happened stays delivered).
  absl::Status Cancel(CampaignId id);

  // Streams the recipient list into a new campaign; see queue/loader.h.
  absl::StatusOr<LoadReport> LoadCampaign(const CampaignSpec& spec, const LoadOptions& options);

  // ---- Recipients (inspection) ----
  absl::StatusOr<RecipientView> GetRecipient(CampaignId campaign, RecipientId id) const;
  absl::StatusOr<std::vector<HistoryEntry>> History(CampaignId campaign, RecipientId id) const;
  // One page of a campaign's recipients in ID order, after `after` (0 = from
  // the start), at most `limit` rows, only those in `state` when set. Reads
  // at most 50 x limit records per call: `next` is where the next call starts,
  // `done` when the campaign has no more. Memory: the page.
  struct ExportPage {
    std::vector<RecipientView> rows;  // values left empty
    RecipientId next{};
    bool done = false;
  };
  absl::StatusOr<ExportPage> Export(CampaignId campaign, RecipientId after, size_t limit,
                                    std::optional<RecipientState> state = std::nullopt) const;
  // Every recipient with this address (compared case-insensitively), in
  // every campaign or only `campaign`. Scans each campaign's recipients.
  absl::StatusOr<std::vector<RecipientView>> FindRecipient(
      std::string_view email, std::optional<CampaignId> campaign = std::nullopt) const;

  // ---- Suppression list (keyed by identity key, see queue/address.h) ----
  // Listed by its identity key (queue/address.h): the local part lower-cased,
  // so every spelling is stopped, unless `case_sensitive_local` (then only
  // this spelling).
  absl::Status AddSuppression(std::string_view email, std::string_view reason,
                              bool case_sensitive_local = false);
  // Removes the entries that stop `email`: by default its key and its exact
  // spelling; with `case_sensitive_local` only the exact spelling. kNotFound
  // when none is listed.
  absl::Status RemoveSuppression(std::string_view email, bool case_sensitive_local = false);
  // Listed under its key or under its exact spelling.
  bool IsSuppressed(std::string_view email) const;
  // The address's suppression entry; kNotFound when it is not on the list.
  absl::StatusOr<SuppressionEntry> GetSuppression(std::string_view email) const;
  // Entries in address order, starting after `after` (paging).
  std::vector<SuppressionEntry> ListSuppression(size_t limit, std::string_view after = "") const;
  // Imports a file of addresses: one per line, or a CSV with an `email`
  // column. Blank lines and '#' comments are skipped. Returns added/invalid counts.
  absl::StatusOr<SuppressionImportReport> ImportSuppression(const std::string& path,
                                                            std::string_view reason,
                                                            bool case_sensitive_local = false);

  // ---- Reports received later (queue/spool_reports.cc) ----
  // Applies one report already matched to a copy (engine/bounce/intake.h
  // decides what it is and which copy): see ReportEffect. Idempotent by
  // `report_id`: a second call with the same id changes nothing and returns
  // duplicate = true. One synced WriteBatch: the recipient, its history line,
  // the suppression entry, the campaign's counts and the report id. Notifies
  // the outcome listener (Source kAsyncBounce ...). kNotFound for an unknown
  // campaign or recipient; kUnavailable while the recipient is in flight (a
  // new attempt is running: retry later).
  enum class ReportEffect : uint8_t {
    // The recipient becomes bounced (from delivered, queued or deferred; a
    // recipient already bounced, expired, suppressed or cancelled keeps its
    // state and gets a history line), the address is suppressed ("bounce: ...").
    kHardBounce,
    kSoftBounce,  // a history line, no state change
    kComplaint,   // the address is suppressed ("complaint: TYPE"), a history line
    kDelayed,     // counted only
    kAutoReply,   // counted only
  };
  struct Report {
    std::string report_id;  // the idempotence key (non-empty)
    CampaignId campaign{};
    RecipientId id{};
    ReportEffect effect = ReportEffect::kDelayed;
    std::string reply;     // "550 5.1.1 ..." (bounces), the feedback type (complaints)
    std::string category;  // "bad-mailbox" ..., "complaint"
    std::string detail;    // where it came from, for the history ("bounce message (rfc3464) ...")
  };
  struct ReportApplied {
    bool duplicate = false;
    std::string email;  // the recipient's address as stored
    RecipientState before = RecipientState::kQueued;
    RecipientState after = RecipientState::kQueued;
    bool suppressed = false;  // added to the suppression list by this report
  };
  absl::StatusOr<ReportApplied> RecordReport(const Report& report);
  // Counts a report that names no copy (forged or unmatched), spool-wide,
  // idempotent by `report_id` (false: seen before). Notifies the listener
  // (Source kForged / kUnmatched, campaign 0).
  enum class StrayReport : uint8_t { kForged, kUnmatched };
  absl::StatusOr<bool> RecordStrayReport(std::string_view report_id, StrayReport kind);
  StrayReportCounts StrayReports() const;
  absl::StatusOr<ReportCounts> Reports(CampaignId id) const;

  // ---- Inbound messages (queue/spool_inbound.cc) ----
  // Reports and unsubscribe mail received by the inbound listener, kept until
  // processed, so a crash after the listener's 250 loses nothing. Stored in
  // the default column family under "inbound/" + u64 id.
  // Writes every message in one WriteBatch with sync=true and sets each id;
  // the listener answers 250 only after this returns OK.
  absl::Status StoreInbound(absl::Span<InboundMessage* const> messages);
  // The oldest unprocessed messages, at most `limit`, in arrival order.
  absl::StatusOr<std::vector<InboundMessage>> PendingInbound(size_t limit) const;
  // The message was processed: it is removed (sync = queue.sync_writes: after a
  // power loss it may be processed again). kNotFound when it is not there.
  absl::Status MarkInboundDone(uint64_t id);

  class Impl;

 private:
  explicit Spool(std::unique_ptr<Impl> impl);
  absl::StatusOr<std::vector<DomainBatch>> LeaseDueInner(absl::Time now, const LeaseLimits& limits);
  absl::Status CompleteBatchInner(absl::Span<const Completion> completions);
  // Hands the notices the last call collected to the listener (outside the lock).
  void DeliverNotices();
  std::unique_ptr<Impl> impl_;
};

}  // namespace salvo::queue
