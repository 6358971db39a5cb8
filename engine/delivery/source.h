#pragma once
// What the delivery engine sends and where results go: a Job is one SMTP
// transaction (one message copy, one or more recipients of one destination
// domain); a MessageSource hands out Jobs and takes back per-recipient
// Outcomes. The engine never assumes the queue: tests use InMemorySource,
// `salvo run`/`salvo send` use SpoolSource (engine/delivery/spool_source.h).
//
// Threads: Fetch/Complete/Done are called only from the engine's feeder
// thread (the one that called Engine::Run), so a source may block there
// (RocksDB). Compose is called on shard threads, concurrently: it must be
// thread-safe, and `shard` (0..N-1) lets it keep per-shard state (a DKIM
// Signer per shard) without locks.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/smtp/outcome.h"
#include "metrics/metrics.h"

namespace salvo::delivery {

struct JobRecipient {
  std::string address;  // RCPT TO
  // Opaque to the engine: the source's handle for this recipient.
  uint64_t tag1 = 0;
  uint64_t tag2 = 0;
};

struct Job {
  std::string domain;     // destination domain (lower case)
  std::string mail_from;  // envelope sender ("" = null reverse-path)
  std::vector<JobRecipient> recipients;
  // The message (CRLF, not dot-stuffed). Null: Compose() fills it on the
  // shard that sends it (rendering and signing cost CPU; do it there).
  std::shared_ptr<const std::string> body;
  // The campaign (the source's ID; 0 = none): rules with scope = "campaign"
  // suspend by it.
  uint64_t campaign = 0;
  // The [[egress.pool]] (index in the config) to send from; -1 = the default
  // source (no bound address, delivery.helo_name).
  int16_t egress_pool = -1;
  bool needs_8bitmime = false;
  bool needs_smtputf8 = false;
  // The body has CRLF line ends only (a composed copy: Template::Render's
  // promise), so the session sends it without scanning it for bare LFs.
  bool body_crlf = false;
  // The `campaign` and `domain` labels of its recipients' counts, resolved by
  // the source once per campaign and domain (default: "other", "other").
  metrics::OutcomeLabels labels;
  // Filled by Compose: DKIM signatures made for this copy and the time they
  // took, counted by the shard that composed it.
  struct DkimCost {
    double seconds = 0;
    uint8_t rsa = 0;
    uint8_t ed25519 = 0;
  } dkim;
  // Opaque to the engine: lets Compose find what it needs (e.g. a campaign).
  std::shared_ptr<const void> context;
};

// The result of one Job: one Outcome per recipient, same order.
struct JobResult {
  std::vector<JobRecipient> recipients;
  std::vector<smtp::Outcome> outcomes;
};

class MessageSource {
 public:
  virtual ~MessageSource() = default;

  // Up to `max_jobs` jobs that are due now. An empty result means nothing is
  // due right now (the engine asks again after the poll interval).
  // Feeder thread.
  virtual absl::StatusOr<std::vector<Job>> Fetch(size_t max_jobs) = 0;

  // Results of finished jobs (batched). Feeder thread.
  virtual absl::Status Complete(absl::Span<JobResult> results) = 0;

  // True when every result Complete took so far is recorded where a crash
  // of this process cannot lose it (the spool's write went through, none is
  // held in memory for a disk that refused it). The engine lets a connection
  // start its next transaction only then ([queue] durable_before_next).
  // Feeder thread.
  virtual bool Durable() { return true; }

  // True when the source will never have more work (`salvo send`: the
  // campaign is finished). `in_flight` = jobs handed out and not completed.
  // Feeder thread. Sources that run forever return false.
  virtual bool Done(size_t in_flight) = 0;

  // Fills job->body (and the needs_* flags) for a job whose body is null.
  // Any shard thread, concurrently; `shard` is the caller's shard index.
  // An error bounces the job's recipients with the error as the reason when
  // `permanent`, else defers them.
  virtual absl::Status Compose(Job* job, int shard, bool* permanent) {
    (void)job;
    (void)shard;
    *permanent = true;
    return absl::InternalError("this message source does not compose messages");
  }
};

}  // namespace salvo::delivery
