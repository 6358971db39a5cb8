#pragma once
// The per-core event loop: one io_uring ring per thread (liburing).
//
// A Reactor is created on, owned by, and only ever touched from its own thread
// ("the shard thread"), except for Post() and Stop(), which any thread may call.
// All callbacks run on the shard thread, from inside Run().
//
// Loop turn: run posted tasks and expired timers, submit every queued SQE with
// one io_uring_submit_and_wait, then reap completions in a batch and advance
// the CQ once. Preparing an operation only queues an SQE; nothing blocks.
//
// Lifetime contract for sockets: every operation on an fd is tracked. Close(fd)
// cancels all outstanding operations on that fd; each of their callbacks runs
// once more with -ECANCELED (or its real result if it already completed)
// *before* the Close callback runs. After the Close callback, no callback for
// that fd will ever run again, so the owner may free its connection object
// there.
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/common/clock.h"

namespace salvo::reactor {

using SteadyClock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

struct ReactorOptions {
  unsigned ring_entries = 4096;  // SQ size; CQ is 2x (IORING_SETUP_CQSIZE)
  // Provided-buffer ring for multishot receives: idle connections hold no
  // buffer; a buffer is lent only while a completion is being handled.
  unsigned recv_buffer_count = 2048;  // power of two
  unsigned recv_buffer_size = 16384;
  int pin_cpu = -1;  // >= 0: pin the calling thread to this CPU in Create()
  // Time for timers and Now(); nullptr = MonotonicClock::Real(). With a
  // manual (fake) clock the loop waits for I/O or for the clock to move,
  // never for a timer's delay in real time. Must outlive the reactor.
  const MonotonicClock* clock = nullptr;
};

// Identifies a timer for cancellation. 0 is never a valid id.
using TimerId = uint64_t;

class Reactor {
 public:
  // Creates the ring on the calling thread. Fails with a clear, user-facing
  // message (see CheckIoUringAvailable) if io_uring cannot be used.
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(const ReactorOptions& options = {});

  // Probes io_uring once (io_uring_queue_init + a NOP). On failure returns
  // kFailedPrecondition with one line naming the cause and the fix, e.g.
  // "io_uring is unavailable (io_uring_setup: Function not implemented): the
  // container's seccomp profile blocks it; run with deploy/seccomp-salvo.json"
  // or "... kernel.io_uring_disabled=2: set sysctl kernel.io_uring_disabled=0".
  static absl::Status CheckIoUringAvailable();

  virtual ~Reactor() = default;

  // --- Sockets. `res` follows io_uring: >= 0 success, < 0 is -errno. ---

  // Multishot accept on a listening socket: `cb(fd)` once per accepted
  // connection (non-blocking, close-on-exec), `cb(-errno)` on error. Re-armed
  // internally while IORING_CQE_F_MORE is clear and the socket is open.
  virtual void Accept(int listen_fd, absl::AnyInvocable<void(int res)> cb) = 0;

  // Connect a (non-blocking) socket. `cb(0)` on success, `cb(-errno)` on failure.
  virtual void Connect(int fd, const sockaddr* addr, socklen_t len,
                       absl::AnyInvocable<void(int res)> cb) = 0;

  // Send all `len` bytes (short writes are continued internally). The caller
  // keeps `data` alive and unchanged until `cb` runs. `cb(len)` or `cb(-errno)`.
  virtual void Send(int fd, const void* data, size_t len, absl::AnyInvocable<void(int res)> cb) = 0;

  // Send the concatenation of `segments` with sendmsg (one syscall, no copy
  // into one buffer: e.g. SMTP commands, a message body kept elsewhere, the
  // final dot). Same contract as Send: all bytes (short writes continue from
  // the segment the kernel stopped in), ordered with the fd's other sends;
  // the caller keeps the bytes alive and unchanged until `cb` runs (the
  // segment list itself is copied). `cb(total)` or `cb(-errno)`.
  virtual void SendV(int fd, absl::Span<const std::string_view> segments,
                     absl::AnyInvocable<void(int res)> cb) = 0;

  // Multishot receive with provided buffers: `cb(n, bytes)` for each chunk
  // (bytes valid only during the call), `cb(0, {})` at EOF, `cb(-errno, {})`
  // on error; after EOF or an error no further calls are made. -ENOBUFS is
  // handled internally (buffers replenished, receive re-armed).
  virtual void Recv(int fd, absl::AnyInvocable<void(int res, std::string_view bytes)> cb) = 0;

  // One-shot poll (POLLIN/POLLOUT mask) for sockets owned by a library such as
  // c-ares. `cb(revents)` or `cb(-errno)` (including -ECANCELED on Close or
  // CancelPoll).
  virtual void PollAdd(int fd, uint32_t poll_mask, absl::AnyInvocable<void(int res)> cb) = 0;
  virtual void CancelPoll(int fd) = 0;

  // Cancel everything outstanding on `fd`, then close it; see the lifetime
  // contract above. `cb` may be empty.
  virtual void Close(int fd, absl::AnyInvocable<void()> cb = {}) = 0;

  // --- Timers (a timer wheel or heap driven by the ring's wait timeout). ---
  virtual TimerId RunAfter(Duration delay, absl::AnyInvocable<void()> cb) = 0;
  // Returns false if the timer already fired or was cancelled.
  virtual bool CancelTimer(TimerId id) = 0;

  // Monotonic time (ReactorOptions::clock), cached once per loop turn.
  virtual SteadyClock::time_point Now() const = 0;
  // The clock itself, for a fresh reading (e.g. outside Run()).
  virtual const MonotonicClock* clock() const = 0;

  // --- Cross-shard mailbox. Thread-safe: the only way other threads reach
  // this shard. Wakes the ring (eventfd or msg_ring) if it is waiting. ---
  virtual void Post(absl::AnyInvocable<void()> task) = 0;

  // Runs the loop on the calling thread until Stop() is called.
  virtual void Run() = 0;
  // Thread-safe. Run() returns after the current loop turn.
  virtual void Stop() = 0;

  // Number of operations currently submitted and not yet completed.
  virtual size_t InFlight() const = 0;
};

}  // namespace salvo::reactor
