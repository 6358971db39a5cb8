// Compose-ahead, spread over the shards. Shard thread only.
#include "engine/delivery/compose_farm.h"

#include <algorithm>

#include "engine/delivery/engine.h"
#include "engine/delivery/shard.h"
#include "engine/delivery/site_pool.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

namespace {

using Steady = std::chrono::steady_clock;

// Compose ahead (and spread over the shards) only when composing a copy
// costs more than this on average; see TopUp. Well between rendering alone
// (~3-5 us for 20 KB) and the cheapest signed copy (Ed25519, ~45-55 us):
// at 50 us an Ed25519 campaign sat on the threshold and the farm switched
// on and off, leaving one core to compose its owner's sites alone.
constexpr std::chrono::microseconds kComposeAheadAbove{25};

// How long a shard composes from the queue before its own I/O gets a turn:
// about seven RSA-2048 copies, forty Ed25519 ones. Composing one copy per
// turn cost ~10 us more CPU per message (a post back to the owner, and a
// ring wake-up, per copy); 2 ms instead of 0.5 ms ~10 us less again (fewer
// loop turns and ring entries per copy); 4 ms no further gain (bench/README
// "Signed path profile"). Replies wait at most this long for their turn.
constexpr std::chrono::microseconds kPullSlice{2000};

smtp::Outcome ShutdownOutcome() {
  return smtp::OutcomeForLocal("shutdown", "the engine is shutting down; will retry", false,
                               smtp::Scope::kSite, "");
}

}  // namespace

void ComposeQueue::Push(std::vector<ComposeWork>* work) {
  absl::MutexLock lock(&mu_);
  for (ComposeWork& w : *work) queue_.push_back(std::move(w));
  work->clear();
}

std::optional<ComposeWork> ComposeQueue::Pop() {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return std::nullopt;
  std::optional<ComposeWork> w(std::move(queue_.front()));
  queue_.pop_front();
  return w;
}

bool ComposeQueue::Empty() const {
  absl::MutexLock lock(&mu_);
  return queue_.empty();
}

ComposeFarm::ComposeFarm(Shard* shard, int shard_count)
    : shard_(shard), shard_count_(std::max(1, shard_count)) {}

// Keep about one composed (or composing) job per connection of the site, at
// most two per allowed connection, so a connection that becomes ready finds
// its next message signed and memory stays bounded by the pool, not the
// queue. The jobs go to the engine's ComposeQueue, which every shard (this
// one included) takes from: a few big sites no longer load their owner shard
// alone, and the shard with the least else to do signs the most.
//
// Only when composing is dear: a hand-off to another shard and back costs a
// few microseconds of CPU (two mailbox posts, ring wake-ups, a 20 KB body
// read on another core), about what rendering alone costs (~5 us for 20 KB),
// while an RSA-2048 signed copy costs ~290 us and an Ed25519 one ~50 us. Below the
// threshold every job is composed by the connection that sends it. The cost
// is this shard's moving average over its own Compose calls (the jobs it
// took from the queue included, so it follows the campaign mix).
void ComposeFarm::TopUp(SitePool* pool) {
  if (shard_->draining() || shard_count_ < 2 || avg_ < kComposeAheadAbove) return;
  const size_t cap = 2 * pool->policy().max_connections;
  const size_t target = std::clamp<size_t>(pool->connections, 1, cap);
  // Ship in batches of a quarter of the target, not one job per finished
  // transaction: fewer mailbox posts and ring wake-ups per copy.
  if (pool->composed.size() + pool->composing + std::max<size_t>(1, target / 4) > target) return;
  Engine* engine = shard_->engine();
  bool queued = false;
  while (!pool->ready.empty() && pool->composed.size() + pool->composing < target &&
         engine->ComposedRoom()) {
    Job job = std::move(pool->ready.front());
    pool->ready.pop_front();
    if (job.body) {  // the source gave the body: nothing to compose
      pool->composed.push_back(std::move(job));
      continue;
    }
    out_.push_back(ComposeWork{pool, shard_->index(), std::move(job), {}, false});
    pool->composing++;
    composing_++;
    queued = true;
  }
  if (queued && !flush_scheduled_) {
    flush_scheduled_ = true;
    // At the next loop turn: one push to the queue per turn.
    shard_->reactor()->Post([this] { Flush(); });
  }
}

void ComposeFarm::Flush() {
  flush_scheduled_ = false;
  if (out_.empty()) return;
  Engine* engine = shard_->engine();
  ComposeQueue* queue = engine->compose_queue();
  queue->Push(&out_);
  // Every shard not pulling yet starts (the others first: they work while
  // this one finishes its turn).
  for (int k = 1; k <= shard_count_; ++k) {
    const int i = (shard_->index() + k) % shard_count_;
    if (queue->pulling(i).exchange(true)) continue;
    Shard* s = engine->shard(i);
    s->Post([s] { s->farm()->Pull(); });
  }
}

// Jobs are taken one at a time (another shard may take the next meanwhile)
// for up to kPullSlice, then this shard's own I/O gets its turn; what was
// composed goes back in one post per owner.
void ComposeFarm::Pull() {
  ComposeQueue* queue = shard_->engine()->compose_queue();
  const int self = shard_->index();
  std::vector<std::vector<ComposeWork>> done(static_cast<size_t>(shard_count_));
  const auto until = Steady::now() + kPullSlice;
  bool emptied = false;
  do {
    std::optional<ComposeWork> w = queue->Pop();
    if (!w) {
      emptied = true;
      break;
    }
    ComposeOne(&*w);
    done[static_cast<size_t>(w->owner)].push_back(std::move(*w));
  } while (Steady::now() < until);
  for (size_t owner = 0; owner < done.size(); ++owner) {
    if (done[owner].empty()) continue;
    if (static_cast<int>(owner) == self) {
      shard_->AcceptComposed(std::move(done[owner]));
      continue;
    }
    Shard* s = shard_->engine()->shard(static_cast<int>(owner));
    s->Post([s, w = std::move(done[owner])]() mutable { s->AcceptComposed(std::move(w)); });
  }
  if (!emptied) {
    shard_->reactor()->Post([this] { Pull(); });  // more after this turn's I/O
    return;
  }
  queue->pulling(self).store(false);
  // A push between the Pop and the store saw this shard pulling and did not
  // post: look again at the next turn.
  if (!queue->Empty() && !queue->pulling(self).exchange(true))
    shard_->reactor()->Post([this] { Pull(); });
}

void ComposeFarm::ComposeOne(ComposeWork* w) {
  // Composed even when this shard is draining: only the owner knows whether
  // the copy is still wanted, and the work is bounded by the owner's pools.
  // Over delivery.max_composed_bytes: not composed here; the owner queues
  // it again and its connection composes it. When another shard reached the
  // cap while this copy was being composed, the copy is kept, uncounted like
  // a connection's own copy, and goes to the front of its ready queue:
  // composing it again would sign it twice (and count the signature twice).
  Engine* engine = shard_->engine();
  if (!engine->ComposedRoom()) {
    w->over_cap = true;
    return;
  }
  w->status = ComposeHere(&w->job, &w->permanent);
  if (w->status.ok() && w->job.body && !engine->AdmitComposed(&w->job.body)) w->over_cap = true;
}

void ComposeFarm::AcceptComposed(std::vector<ComposeWork> work) {
  std::vector<SitePool*> touched;
  for (ComposeWork& w : work) {
    SitePool* pool = w.pool;
    pool->composing--;
    composing_--;
    if (shard_->draining()) {
      shard_->Report(std::move(w.job), ShutdownOutcome());
    } else if (w.over_cap) {
      pool->ready.push_front(std::move(w.job));
    } else if (!w.status.ok() || !w.job.body) {
      ReportFailure(std::move(w.job), w.status, w.permanent);
    } else {
      pool->composed.push_back(std::move(w.job));
    }
    if (std::find(touched.begin(), touched.end(), pool) == touched.end()) touched.push_back(pool);
  }
  for (SitePool* pool : touched) pool->Pump();
}

absl::Status ComposeFarm::ComposeHere(Job* job, bool* permanent) {
  // Real time on purpose: this measures what composing costs, not a deadline.
  auto start = Steady::now();
  absl::Status st = shard_->engine()->source()->Compose(job, shard_->index(), permanent);
  // Exponential moving average, weight 1/8 for the newest sample. A sample
  // counts at most twice the threshold: it is wall time, and a preempted or
  // cold-cache render must not switch cheap composition to shipping (about
  // five such outliers in a row would); RSA or Ed25519 signing still lands
  // well above it.
  Steady::duration took = std::min<Steady::duration>(Steady::now() - start, 2 * kComposeAheadAbove);
  avg_ = avg_ == Steady::duration::zero() ? took : avg_ + (took - avg_) / 8;
  if (job->dkim.rsa + job->dkim.ed25519 > 0) {
    metrics::ShardCounters* c = shard_->counters();
    c->Observe(metrics::Histogram::kDkimSigning, job->dkim.seconds);
    for (int i = 0; i < job->dkim.rsa; ++i)
      c->CountDkimSignature(metrics::DkimAlgorithm::kRsaSha256);
    for (int i = 0; i < job->dkim.ed25519; ++i)
      c->CountDkimSignature(metrics::DkimAlgorithm::kEd25519Sha256);
    job->dkim = {};
  }
  return st;
}

void ComposeFarm::ReportFailure(Job job, const absl::Status& status, bool permanent) {
  std::string why = status.ok() ? "no message body" : std::string(status.message());
  shard_->Report(std::move(job),
                 smtp::OutcomeForLocal("composition", why, permanent, smtp::Scope::kMessage, ""));
}

}  // namespace salvo::delivery
