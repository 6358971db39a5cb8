#pragma once
// The delivery log's writer: shard threads format lines into their own
// buffers (a Producer each, no lock per line) and hand full buffers to one
// writer thread, which appends them to the log file in batches and rotates
// the file by size and by age. Disk writes never happen on a shard thread.
//
//   auto log = deliverylog::Writer::Open(options);      // start-up, main thread
//   deliverylog::Producer* p = (*log)->AddProducer();    // one per shard, before it runs
//   p->Write(record);                                    // shard thread, per outcome
//   p->Flush();                                          // shard thread, once per loop turn
//   ... shards stopped ...
//   (*log)->Stop();                                      // drains everything, closes
//
// Lines keep their order per producer; lines of different producers
// interleave by batch (each line carries its time). Rotation never splits a
// line: a file is at most `rotate_bytes` long unless one line alone is longer.
// A rotated file is renamed PATH.YYYYMMDDTHHMMSSZ (UTC; ".N" added if that
// name exists), so names sort by age; Salvo never deletes them.
//
// When the disk fails (ENOSPC, EIO), the writer keeps the lines and retries
// every second; each producer then buffers up to `max_buffered_bytes` and
// drops (and counts) lines beyond that rather than block its shard.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/common/clock.h"
#include "engine/deliverylog/record.h"

namespace salvo::deliverylog {

struct WriterOptions {
  std::string path;                // the log file; appended to if it exists
  uint64_t rotate_bytes = 0;       // rotate before a file grows past this; 0 = never
  absl::Duration rotate_interval;  // rotate a non-empty file this old; 0 = never
  absl::Duration flush_interval =
      absl::Milliseconds(200);  // partly filled buffers reach disk within about this
  // A producer hands its buffer over when it is this full. 256 KiB: a
  // quarter of the hand-overs, wake-ups and writes of 64 KiB, about 0.13 us
  // less CPU per line (BM_WriterProcessCpu).
  size_t buffer_bytes = 256 * 1024;
  size_t max_buffered_bytes = 64 << 20;  // per producer, waiting for the disk; beyond: dropped
  Clock* clock = nullptr;                // rotation time and names; nullptr = Clock::System()
};

struct WriterStats {
  uint64_t lines = 0;         // lines written to disk
  uint64_t bytes = 0;         // bytes written to disk
  uint64_t rotations = 0;     // files rotated
  uint64_t dropped = 0;       // lines dropped because the disk could not keep up
  uint64_t write_errors = 0;  // failed write/rename/open calls (each logged)
};

class Writer;

// One thread's way into the log. Used only by the thread that owns it (a
// shard); created by Writer::AddProducer and owned by the Writer.
class Producer {
 public:
  // Formats `record` into this producer's buffer; hands the buffer to the
  // writer when it is full or when the writer asked for it.
  void Write(const Record& record);
  // Hands a non-empty buffer over if the writer asked for it (every
  // flush_interval). Cheap: call it once per loop turn so an idle shard's
  // last lines reach the disk.
  void Flush();

 private:
  friend class Writer;
  struct Batch {
    std::string bytes;
    uint64_t lines = 0;
    Producer* owner = nullptr;  // gets its buffer and byte credit back once written
    size_t counted = 0;         // bytes counted against the owner's max_buffered_bytes
  };
  Producer(Writer* writer, size_t buffer_bytes, size_t max_buffered_bytes);
  void HandOver();

  Writer* const writer_;
  const size_t buffer_bytes_;
  const size_t max_buffered_bytes_;
  // Owner thread only.
  Batch current_;
  std::atomic<uint64_t> dropped_{0};       // single writer: the owner thread
  std::atomic<bool> flush_wanted_{false};  // set by the writer thread
  // Shared with the writer thread, one lock per batch.
  absl::Mutex mu_;
  std::vector<Batch> ready_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> spare_ ABSL_GUARDED_BY(mu_);  // emptied buffers, reused
  // Bytes handed over and not yet on disk (bounded by max_buffered_bytes).
  size_t ready_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// Owns the log file, the writer thread and the producers. Open and
// AddProducer: any thread, before the producers write; Stop: after every
// producer has stopped writing.
class Writer {
 public:
  // Opens (creating) the file and starts the writer thread. Errors name the
  // path.
  static absl::StatusOr<std::unique_ptr<Writer>> Open(WriterOptions options);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Producer* AddProducer();
  // Writes every line handed over or still in a producer's buffer, syncs and
  // closes the file, joins the thread. Idempotent.
  void Stop();
  WriterStats Stats() const;
  const std::string& path() const { return options_.path; }

 private:
  friend class Producer;
  explicit Writer(WriterOptions options);
  absl::Status OpenFile();
  void Run();
  // Collects every producer's ready batches (and, when `all`, their current
  // buffers too: only once the producers have stopped).
  std::vector<Producer::Batch> Collect(bool all);
  // Appends `batches` to the file, rotating as needed, and gives written
  // batches back to their producers. False on a disk error: the unwritten
  // rest stays in `batches`, starting at the first byte not on disk.
  bool WriteBatches(std::vector<Producer::Batch>* batches);
  // Writes bytes[*off..] in whole lines, rotating between lines; advances
  // *off past what is on disk.
  bool WriteLines(const std::string& bytes, size_t* off);
  bool WriteAll(const char* data, size_t size);
  void LogError(const std::string& what);
  void MaybeRotateByAge();
  bool Rotate();
  void Wake();

  const WriterOptions options_;
  Clock* const clock_;
  // Writer thread only (and Open/Stop, before it starts and after it ends).
  int fd_ = -1;
  uint64_t file_bytes_ = 0;
  absl::Time file_started_;  // when the file got its first line (age rotation)
  absl::Time rotate_retry_after_ = absl::InfinitePast();  // after a failed rename
  absl::Time last_error_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<Producer::Batch> pending_;  // batches a disk error left unwritten

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Producer>> producers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  WriterStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace salvo::deliverylog
