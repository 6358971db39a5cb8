#pragma once
// Campaign-level value types shared by the spool, the loader, the admin
// server and the CLI. Plain data; no I/O.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace salvo::queue {

// Strong IDs: a campaign is numbered from 1 in load order; a recipient is
// numbered from 1 in list order within its campaign.
enum class CampaignId : uint64_t {};
enum class RecipientId : uint64_t {};
inline uint64_t Value(CampaignId id) { return static_cast<uint64_t>(id); }
inline uint64_t Value(RecipientId id) { return static_cast<uint64_t>(id); }

enum class RecipientState : uint8_t {
  kQueued = 0,
  kInFlight = 1,
  kDelivered = 2,
  kDeferred = 3,
  kBounced = 4,
  kExpired = 5,
  kSuppressed = 6,
  kCancelled = 7,
};
inline constexpr size_t kNumRecipientStates = 8;
std::string_view RecipientStateName(RecipientState s);
// True for delivered, bounced, expired, suppressed, cancelled.
bool IsFinal(RecipientState s);

enum class CampaignState : uint8_t {
  kLoading = 0,  // being loaded: invisible to the engine; removed at open if left over
  kActive = 1,
  kPaused = 2,
  kCancelled = 3,
};
std::string_view CampaignStateName(CampaignState s);

// Recipients per state (index = RecipientState).
struct StateCounts {
  std::array<uint64_t, kNumRecipientStates> n{};
  uint64_t& operator[](RecipientState s) { return n[static_cast<size_t>(s)]; }
  uint64_t operator[](RecipientState s) const { return n[static_cast<size_t>(s)]; }
  uint64_t Total() const;
  uint64_t Pending() const;  // queued + deferred + in flight
};

// Retry schedule: attempt k (k = 1 after the first failure) waits a uniform
// random delay in [first_retry_min, first_retry_max] * multiplier^(k-1),
// capped at max_delay; a recipient older than max_age is expired instead of
// retried (the last retry is moved to exactly max_age).
// Defaults in the spirit of the big MTAs.
struct RetryPolicy {
  absl::Duration first_retry_min = absl::Minutes(5);
  absl::Duration first_retry_max = absl::Minutes(20);
  double multiplier = 2.0;
  absl::Duration max_delay = absl::Hours(4);
  absl::Duration max_age = absl::Hours(72);

  absl::Status Validate() const;
};

// When a campaign may send: hours of the day on some days of the week, in a
// time zone ([window] in the campaign file). Outside it, its recipients wait
// in the queue without an attempt (not deferred).
struct SendWindow {
  bool set = false;
  int start_minute = 0;          // minutes after local midnight, inclusive
  int end_minute = 24 * 60;      // exclusive; <= start: the window wraps midnight
  uint8_t days = 0x7f;           // bit d = weekday d may send (0 = Monday ... 6 = Sunday)
  std::string timezone = "UTC";  // IANA name
  // "09:00-17:00 mon,tue,wed,thu,fri Europe/Berlin"
  std::string ToString() const;
};
// Parses `hours` ("HH:MM-HH:MM"), `days` (mon..sun) and `timezone`.
absl::StatusOr<SendWindow> ParseSendWindow(std::string_view hours,
                                           const std::vector<std::string>& days,
                                           std::string_view timezone);
// `now` if the window is open at `now`, else when it next opens.
absl::Time NextWindowOpen(const SendWindow& window, absl::Time now);

// What identifies and configures a campaign (from a TOML file or flags).
struct CampaignSpec {
  std::string name;
  std::string template_path;    // RFC 5322 message with {{placeholders}}
  std::string recipients_path;  // RFC 4180 CSV with an `email` column
  std::string from;             // envelope sender / From address
  std::string dkim_domain;      // optional
  std::string egress_pool;      // optional: an [[egress.pool]] of the engine's config
  SendWindow window;            // optional [window]
  RetryPolicy retry;
  std::map<std::string, std::string> options;  // free-form [options] of the campaign file
};

// An [options] key that names a file (it ends in "_file", e.g.
// unsubscribe_secret_file): resolved against the campaign file's folder like
// `template` and `recipients`, and checked readable at load.
bool IsPathOption(std::string_view key);
// Every path option of `options` names a readable, non-empty file; the error
// names the option and the path ("options.unsubscribe_secret_file: cannot
// read '/x/secret.txt': No such file or directory").
absl::Status CheckPathOptions(const std::map<std::string, std::string>& options);

// Stored campaign metadata.
struct CampaignInfo {
  CampaignId id{};
  std::string name;
  std::string from;
  std::string dkim_domain;
  std::string egress_pool;
  SendWindow window;
  std::string template_path;
  std::string recipients_path;
  CampaignState state = CampaignState::kLoading;
  absl::Time created;
  RetryPolicy retry;
  std::vector<std::string> columns;  // CSV header, in file order
  std::map<std::string, std::string> options;
  // Content checksum (hex) of the template, the recipient list file and the
  // sender, computed when the load refused duplicates; empty otherwise.
  std::string checksum;
  // Why the campaign is paused when the engine paused it (e.g. a composition
  // failure that affects every copy); empty for an operator's pause.
  std::string pause_reason;
};

// Template check done at load time, supplied by the caller so queue/ stays
// independent of engine/message: gets the template text and the CSV columns;
// an error should name the placeholder and template file:line.
using TemplateValidator =
    std::function<absl::Status(std::string_view template_text, std::string_view template_path,
                               const std::vector<std::string>& columns)>;

// Composes the campaign's first copy at load time (supplied by the caller, like
// TemplateValidator): `info` as it will be stored, the template text and the
// first valid recipient's row (values in info.columns order). A campaign whose
// first copy cannot be composed is refused before anything is written, with
// this error (the loader adds which recipient it was).
using FirstCopyCheck =
    std::function<absl::Status(const CampaignInfo& info, std::string_view template_text,
                               const std::vector<std::string>& first_row)>;

struct LoadProgress {
  uint64_t bytes_read = 0;
  uint64_t bytes_total = 0;  // 0 if unknown
  uint64_t rows = 0;
};

// A node's share of a campaign in a fleet ("--node i/N", fleet.node): node
// `index` of `count` keeps the recipients whose normalized address hashes to
// it, so N nodes loading the same file with 0/N .. N-1/N take every recipient
// exactly once between them. The hash is FNV-1a 64 of the normalized address
// (the identity key duplicates are detected on, queue/address.h) modulo
// count: stable across processes, machines and releases, so a node may be
// reloaded later. Every node must load with the same
// --case-sensitive-local-parts choice; releases before the identity key
// lower-cased local parts hashed an address with upper-case letters in its
// local part as written, so such a recipient may change node against a share
// loaded by such a release.
struct NodeShare {
  uint32_t index = 0;
  uint32_t count = 1;  // 1 = the whole list
  bool whole() const { return count <= 1; }
  bool Takes(std::string_view normalized_address) const;
  std::string ToString() const;  // "i/N"
};
uint64_t NodeHash(std::string_view normalized_address);
// Parses "i/N" (0 <= i < N, 1 <= N <= 4096). `auto/N` takes i from the
// trailing number of `host_name` (a StatefulSet pod "salvo-2" is node 2).
absl::StatusOr<NodeShare> ParseNodeShare(std::string_view text, std::string_view host_name = "");

struct LoadOptions {
  bool strict = false;                  // an invalid address is fatal instead of skipped
  TemplateValidator validate_template;  // optional
  FirstCopyCheck check_first_copy;      // optional
  std::function<void(const LoadProgress&)> progress;  // optional, called every ~64k rows
  const std::atomic<bool>* interrupted = nullptr;     // optional: abort (and roll back) when set
  size_t max_reported_errors = 10;                    // invalid addresses listed in the report
  NodeShare node;  // load only this node's share (default: every recipient)
  // Refuse a campaign whose name, or content checksum (template, recipient
  // list and sender), matches a campaign that is not cancelled: loading the
  // same campaign twice would send every recipient two copies. Off for
  // programmatic loads (tests, `salvo send`, benchmarks); `salvo campaign
  // load` and the admin socket set it unless --allow-duplicate-name.
  bool refuse_duplicates = false;
  // Duplicates and the fleet share compare local parts as written
  // ("Ann@x" and "ann@x" are two recipients) instead of lower-cased.
  bool case_sensitive_local_parts = false;
};

struct LoadReport {
  CampaignId id{};
  uint64_t rows = 0;
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
  uint64_t suppressed = 0;
  uint64_t invalid = 0;
  uint64_t other_nodes = 0;  // valid, distinct addresses left to the other nodes (NodeShare)
  std::vector<std::string> first_errors;  // "file:line: invalid address 'x': why"
  double seconds = 0;
};

struct SuppressionImportReport {
  uint64_t added = 0;
  uint64_t already = 0;
  uint64_t invalid = 0;
  std::vector<std::string> first_errors;
};

// Parses a campaign file (TOML). Relative paths (template, recipients and
// every path option, see IsPathOption) are resolved against the file's folder,
// and path options are checked readable here. Errors name file:line.
//   name = "Spring sale"            template = "message.eml"
//   recipients = "list.csv"         from = "news@example.com"
//   dkim_domain = "example.com"     # optional
//   [retry]  first_retry_min = "5m"  first_retry_max = "20m"  multiplier = 2.0
//            max_delay = "4h"  max_age = "3d"
//   [options] any = "string values"
absl::StatusOr<CampaignSpec> ParseCampaignFile(const std::string& path);

}  // namespace salvo::queue
