#include "engine/deliverylog/writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/common/log.h"

namespace salvo::deliverylog {
namespace {

constexpr size_t kMaxSpareBuffers = 4;

uint64_t CountLines(const char* data, size_t size) {
  uint64_t n = 0;
  const char* end = data + size;
  for (const char* p = data; (p = static_cast<const char*>(memchr(p, '\n', end - p))); ++p) ++n;
  return n;
}

// The longest prefix of data[0..size) that ends a line and is at most
// `room` bytes; 0 if the first line is longer.
size_t WholeLinesWithin(const char* data, size_t size, size_t room) {
  size_t limit = room < size ? room : size;
  for (size_t i = limit; i > 0; --i)
    if (data[i - 1] == '\n') return i;
  return 0;
}

}  // namespace

Producer::Producer(Writer* writer, size_t buffer_bytes, size_t max_buffered_bytes)
    : writer_(writer), buffer_bytes_(buffer_bytes), max_buffered_bytes_(max_buffered_bytes) {
  current_.bytes.reserve(buffer_bytes_ + 1024);
}

void Producer::Write(const Record& record) {
  AppendJsonLine(record, &current_.bytes);
  ++current_.lines;
  if (current_.bytes.size() >= buffer_bytes_ || flush_wanted_.load(std::memory_order_relaxed))
    HandOver();
}

void Producer::Flush() {
  if (!current_.bytes.empty() && flush_wanted_.load(std::memory_order_relaxed)) HandOver();
}

void Producer::HandOver() {
  flush_wanted_.store(false, std::memory_order_relaxed);
  bool full = current_.bytes.size() >= buffer_bytes_;
  {
    absl::MutexLock lock(&mu_);
    if (ready_bytes_ + current_.bytes.size() > max_buffered_bytes_) {
      // The disk is not keeping up: drop this batch rather than block the shard.
      dropped_.store(dropped_.load(std::memory_order_relaxed) + current_.lines,
                     std::memory_order_relaxed);
      current_.bytes.clear();
      current_.lines = 0;
      return;
    }
    ready_bytes_ += current_.bytes.size();
    current_.owner = this;
    current_.counted = current_.bytes.size();
    ready_.push_back(std::move(current_));
    current_ = Batch{};
    if (!spare_.empty()) {
      current_.bytes = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  if (current_.bytes.capacity() < buffer_bytes_) current_.bytes.reserve(buffer_bytes_ + 1024);
  if (full) writer_->Wake();
}

Writer::Writer(WriterOptions options)
    : options_(std::move(options)), clock_(options_.clock ? options_.clock : Clock::System()) {}

absl::StatusOr<std::unique_ptr<Writer>> Writer::Open(WriterOptions options) {
  if (options.path.empty()) return absl::InvalidArgumentError("delivery log: no path");
  std::unique_ptr<Writer> w(new Writer(std::move(options)));
  if (absl::Status s = w->OpenFile(); !s.ok()) return s;
  w->thread_ = std::thread([p = w.get()] { p->Run(); });
  return w;
}

Writer::~Writer() { Stop(); }

absl::Status Writer::OpenFile() {
  fd_ = ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0)
    return absl::UnavailableError(options_.path +
                                  ": cannot open delivery log: " + std::strerror(errno));
  struct stat st {};
  file_bytes_ = fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  // An existing file's age is not known: count it from now.
  file_started_ = clock_->Now();
  return absl::OkStatus();
}

Producer* Writer::AddProducer() {
  absl::MutexLock lock(&mu_);
  producers_.push_back(std::unique_ptr<Producer>(
      new Producer(this, options_.buffer_bytes, options_.max_buffered_bytes)));
  return producers_.back().get();
}

void Writer::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

std::vector<Producer::Batch> Writer::Collect(bool all) {
  std::vector<Producer*> producers;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& p : producers_) producers.push_back(p.get());
  }
  std::vector<Producer::Batch> batches;
  for (Producer* p : producers) {
    absl::MutexLock lock(&p->mu_);
    for (Producer::Batch& b : p->ready_) batches.push_back(std::move(b));
    p->ready_.clear();
    // The bytes stay counted against the producer until written (see
    // WriteBatches), so a dead disk bounds what each producer holds.
    if (all && !p->current_.bytes.empty()) {
      p->ready_bytes_ += p->current_.bytes.size();
      p->current_.owner = p;
      p->current_.counted = p->current_.bytes.size();
      batches.push_back(std::move(p->current_));
      p->current_ = Producer::Batch{};
    }
  }
  return batches;
}

bool Writer::WriteAll(const char* data, size_t size) {
  if (file_bytes_ == 0) file_started_ = clock_->Now();
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd_, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    done += static_cast<size_t>(n);
    file_bytes_ += static_cast<size_t>(n);
  }
  return true;
}

void Writer::LogError(const std::string& what) {
  absl::MutexLock lock(&mu_);
  ++stats_.write_errors;
  if (clock_->Now() - last_error_log_ > absl::Seconds(10)) {
    last_error_log_ = clock_->Now();
    SALVO_LOG(kError, "{}", what);
  }
}

bool Writer::WriteLines(const std::string& bytes, size_t* off) {
  while (*off < bytes.size()) {
    const char* p = bytes.data() + *off;
    const size_t left = bytes.size() - *off;
    size_t chunk = left;
    if (options_.rotate_bytes > 0 && file_bytes_ + left > options_.rotate_bytes) {
      size_t room = file_bytes_ < options_.rotate_bytes ? options_.rotate_bytes - file_bytes_ : 0;
      chunk = WholeLinesWithin(p, left, room);
      if (chunk == 0) {
        if (file_bytes_ > 0 && clock_->Now() >= rotate_retry_after_ && Rotate()) continue;
        // An empty file (or one that cannot be rotated): one line at least.
        const char* nl = static_cast<const char*>(memchr(p, '\n', left));
        chunk = nl ? static_cast<size_t>(nl - p) + 1 : left;
      }
    }
    const uint64_t before = file_bytes_;
    const bool ok = WriteAll(p, chunk);
    // A partial write still put bytes on disk: never write them twice.
    const size_t written = static_cast<size_t>(file_bytes_ - before);
    {
      absl::MutexLock lock(&mu_);
      stats_.lines += CountLines(p, written);
      stats_.bytes += written;
    }
    *off += written;
    if (!ok) {
      LogError(options_.path + ": cannot write the delivery log: " + std::strerror(errno) +
               " (retrying every second)");
      return false;
    }
  }
  return true;
}

bool Writer::WriteBatches(std::vector<Producer::Batch>* batches) {
  size_t done = 0;
  bool ok = true;
  for (; done < batches->size(); ++done) {
    Producer::Batch& batch = (*batches)[done];
    size_t off = 0;
    ok = WriteLines(batch.bytes, &off);
    if (!ok) {
      batch.lines -= std::min<uint64_t>(batch.lines, CountLines(batch.bytes.data(), off));
      batch.bytes.erase(0, off);
      break;
    }
    if (Producer* p = batch.owner) {
      absl::MutexLock lock(&p->mu_);
      p->ready_bytes_ -= std::min(p->ready_bytes_, batch.counted);
      if (p->spare_.size() < kMaxSpareBuffers) {
        batch.bytes.clear();
        p->spare_.push_back(std::move(batch.bytes));
      }
    }
  }
  batches->erase(batches->begin(), batches->begin() + static_cast<std::ptrdiff_t>(done));
  return ok;
}

void Writer::MaybeRotateByAge() {
  if (options_.rotate_interval <= absl::ZeroDuration() || file_bytes_ == 0) return;
  if (clock_->Now() - file_started_ >= options_.rotate_interval) Rotate();
}

bool Writer::Rotate() {
  fdatasync(fd_);
  const absl::Time now = clock_->Now();
  std::string base =
      options_.path + "." + absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone());
  std::string target = base;
  struct stat st {};
  for (int i = 1; ::stat(target.c_str(), &st) == 0; ++i) target = base + "." + std::to_string(i);
  if (::rename(options_.path.c_str(), target.c_str()) != 0) {
    LogError(options_.path + ": cannot rotate the delivery log to " + target + ": " +
             std::strerror(errno));
    // Keep appending to the current file; try again in a minute (size) or
    // after another interval (age).
    file_started_ = now;
    rotate_retry_after_ = now + absl::Minutes(1);
    return false;
  }
  ::close(fd_);
  fd_ = -1;
  if (absl::Status s = OpenFile(); !s.ok()) {
    LogError(std::string(s.message()));
    return false;
  }
  absl::MutexLock lock(&mu_);
  ++stats_.rotations;
  return true;
}

void Writer::Run() {
  for (;;) {
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken), options_.flush_interval);
      wake_ = false;
      stopping = stopping_;
      // Ask every producer for its partly filled buffer (handed over at its
      // next Write or Flush).
      for (const auto& p : producers_) p->flush_wanted_.store(true, std::memory_order_relaxed);
    }
    if (stopping) break;
    for (Producer::Batch& b : Collect(false)) pending_.push_back(std::move(b));
    if (fd_ < 0) {
      if (absl::Status st = OpenFile(); !st.ok()) {
        LogError(std::string(st.message()));
        continue;
      }
    }
    if (!pending_.empty() && !WriteBatches(&pending_)) {
      // The disk refused: wait a second (or for Stop) before trying again.
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Seconds(1));
    }
    MaybeRotateByAge();
  }
  // Stop: the producers have stopped writing; take everything they hold.
  for (Producer::Batch& b : Collect(true)) pending_.push_back(std::move(b));
  if (fd_ >= 0 && !pending_.empty() && !WriteBatches(&pending_)) {
    uint64_t lost = 0;
    for (const Producer::Batch& b : pending_) lost += b.lines;
    SALVO_LOG(kError, "{}: {} delivery log line(s) could not be written", options_.path, lost);
    absl::MutexLock lock(&mu_);
    stats_.dropped += lost;
  }
  pending_.clear();
  if (fd_ >= 0) {
    fdatasync(fd_);
    ::close(fd_);
    fd_ = -1;
  }
}

void Writer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

WriterStats Writer::Stats() const {
  absl::MutexLock lock(&mu_);
  WriterStats s = stats_;
  for (const auto& p : producers_) s.dropped += p->dropped_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace salvo::deliverylog
