#pragma once
// Compose-ahead: copies (rendered + DKIM-signed by MessageSource::Compose)
// are prepared before a connection needs them, spread round-robin over every
// shard, so a few dominant sites do not load their owner shard alone. One
// per shard; shard thread only.
//
// Per site the owner keeps `composed + composing` at about one job per open
// connection (at least 1, at most 2 x max_connections), so memory is bounded
// by the pools, not by the queue. Only when composing is dear (moving
// average above 25 us: RSA or Ed25519 signing); otherwise every copy is
// composed by the connection that sends it.
//
// delivery.max_composed_bytes caps the bytes of copies composed ahead and
// not yet sent (Engine::AdmitComposed): over it nothing is shipped, a copy
// composed meanwhile goes back uncounted to the ready queue, and connections
// compose their own copies one at a time until sending frees room.
#include <chrono>
#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "engine/delivery/source.h"

namespace salvo::delivery {

class Shard;
class SitePool;

// A job on its way to a compose shard and back, by value. `pool` is the
// owner shard's SitePool: an opaque handle elsewhere, dereferenced only on
// the owner's thread (a pool with jobs out for composition is never dropped).
struct ComposeWork {
  SitePool* pool = nullptr;
  Job job;
  absl::Status status;     // Compose()'s answer
  bool permanent = false;  // with a failed status: bounce, else defer
  // Not composed ahead: delivery.max_composed_bytes was reached. The job goes
  // back to the front of its site's ready queue (its connection composes it).
  bool over_cap = false;
};

class ComposeFarm {
 public:
  ComposeFarm(Shard* shard, int shard_count);

  // Owner side: ships jobs of `pool` to compose shards when it is worth it.
  void TopUp(SitePool* pool);
  // Compose side: composes `work` for shard `owner` and hands it back.
  void ComposeFor(int owner, std::vector<ComposeWork> work);
  // Owner side: composed jobs are back.
  void AcceptComposed(std::vector<ComposeWork> work);
  // Composes one job here, now (also used by a connection that found
  // nothing composed); keeps the moving average of the cost.
  absl::Status ComposeHere(Job* job, bool* permanent);
  // Reports a job whose composition failed (bounce when permanent).
  void ReportFailure(Job job, const absl::Status& status, bool permanent);

  size_t composing() const { return composing_; }  // this shard's jobs out now

 private:
  void Flush();

  Shard* shard_;
  // Jobs to send to each compose shard at the end of this turn (index =
  // shard), the next shard in the round-robin, and how many of this shard's
  // jobs are being composed (here or elsewhere) right now.
  std::vector<std::vector<ComposeWork>> out_;
  bool flush_scheduled_ = false;
  size_t next_ = 0;
  size_t composing_ = 0;
  std::chrono::steady_clock::duration avg_{};  // Compose() time here, moving average
};

}  // namespace salvo::delivery
