#pragma once
// Compose-ahead: copies (rendered + DKIM-signed by MessageSource::Compose)
// are prepared before a connection needs them, by every shard, so a few
// dominant sites do not load their owner shard alone. The owner puts the jobs
// in the engine's ComposeQueue; each shard takes jobs from it (one at a
// time, ~0.5 ms per loop turn) while the queue holds any, so a shard busy
// with its connections (or the owner of every site left at the end of a run)
// signs less and the others sign more: no shard idles while a copy waits to
// be signed. One ComposeFarm per shard; shard thread only.
//
// Per site the owner keeps `composed + composing` at about one job per open
// connection (at least 1, at most 2 x max_connections), so memory is bounded
// by the pools, not by the queue. Only when composing is dear (moving
// average above 25 us: RSA or Ed25519 signing); otherwise every copy is
// composed by the connection that sends it.
//
// delivery.max_composed_bytes caps the bytes of copies composed ahead and
// not yet sent (Engine::AdmitComposed): over it nothing is shipped, a copy
// composed meanwhile goes back uncounted (never composed twice) to the front
// of the ready queue, and connections compose their own copies one at a time
// until sending frees room.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "engine/delivery/source.h"

namespace salvo::delivery {

class Shard;
class SitePool;

// A job on its way to a compose shard and back, by value. `pool` is the
// owner shard's SitePool: an opaque handle elsewhere, dereferenced only on
// the owner's thread (a pool with jobs out for composition is never dropped).
struct ComposeWork {
  SitePool* pool = nullptr;
  int owner = 0;  // the shard whose pool this is
  Job job;
  absl::Status status;     // Compose()'s answer
  bool permanent = false;  // with a failed status: bounce, else defer
  // delivery.max_composed_bytes was reached: the job goes back to the front
  // of its site's ready queue, uncomposed (its connection composes it) or,
  // when the cap was reached while it was composed, with its copy, uncounted.
  bool over_cap = false;
};

// Jobs waiting to be composed, from every owner shard, in arrival order;
// whichever shard turns to it next takes the next one. Thread-safe.
class ComposeQueue {
 public:
  explicit ComposeQueue(int shards) : pulling_(static_cast<size_t>(std::max(1, shards))) {}
  void Push(std::vector<ComposeWork>* work);  // moves every job in, clears *work
  std::optional<ComposeWork> Pop();
  bool Empty() const;
  // Shard `i` has a ComposeFarm::Pull posted or running (set by whoever
  // posts it, cleared by Pull when it finds the queue empty).
  std::atomic<bool>& pulling(int i) { return pulling_[static_cast<size_t>(i)]; }

 private:
  mutable absl::Mutex mu_;
  std::deque<ComposeWork> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::atomic<bool>> pulling_;
};

class ComposeFarm {
 public:
  ComposeFarm(Shard* shard, int shard_count);

  // Owner side: queues jobs of `pool` for composition when it is worth it.
  void TopUp(SitePool* pool);
  // Compose side: takes jobs one at a time from the engine's ComposeQueue
  // for up to ~0.5 ms, composes them and hands them back to their owners;
  // posts itself again while the queue holds more (this shard's own I/O
  // runs in between).
  void Pull();
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
  void ComposeOne(ComposeWork* w);

  Shard* shard_;
  int shard_count_;
  // Jobs to queue at the end of this turn, and how many of this shard's
  // jobs are being composed (queued, or composing here or elsewhere) now.
  std::vector<ComposeWork> out_;
  bool flush_scheduled_ = false;
  size_t composing_ = 0;
  std::chrono::steady_clock::duration avg_{};  // Compose() time here, moving average
};

}  // namespace salvo::delivery
