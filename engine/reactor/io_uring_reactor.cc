// The io_uring implementation of salvo::reactor::Reactor (see reactor.h for
// the contract). One instance per shard thread; only Post() and Stop() are
// called from other threads.
//
// Every operation is an Op object whose address is the SQE's user_data. Ops
// are tracked per fd (an intrusive list in FdState) so that Close(fd) can
// cancel them all and run the Close callback only after the last one has
// reported. Sends on one fd are serialized (one in the kernel at a time):
// io_uring gives no ordering between two sends on a stream socket once one
// of them has to wait, and short writes must be continued before the next
// send starts.
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <fstream>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/common/log.h"
#include "engine/reactor/reactor.h"

namespace salvo::reactor {
namespace {

constexpr uint16_t kBufferGroup = 1;
// Accept errors after which re-arming at once would spin; re-arm after this.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(20);

enum class OpKind : uint8_t { kAccept, kConnect, kSend, kRecv, kPoll, kWake };

struct Op {
  explicit Op(OpKind k) : kind(k) {}
  OpKind kind;
  int fd = -1;
  bool in_kernel = false;    // an SQE for it is queued or submitted
  bool cancel_sent = false;  // an async-cancel SQE targets it
  bool finished = false;     // its final callback has run
  TimerId park_timer = 0;    // accept re-arm after EMFILE and friends
  Op* prev = nullptr;        // FdState::ops list
  Op* next = nullptr;
  absl::AnyInvocable<void(int)> cb;                     // all but kRecv
  absl::AnyInvocable<void(int, std::string_view)> rcb;  // kRecv
  // kSend: one buffer (data), or segments (iov, sent with sendmsg); len and
  // done count bytes over all of them.
  const char* data = nullptr;
  size_t len = 0;
  size_t done = 0;
  absl::InlinedVector<iovec, 4> iov;  // SendV: the segments not yet fully sent
  size_t iov_head = 0;                // the first segment with bytes left
  msghdr msg{};                       // SendV: points into iov while in the kernel
  // kConnect: the address is copied so the caller's may die at once.
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  // kPoll
  uint32_t poll_mask = 0;
};

struct FdState {
  Op* head = nullptr;
  Op* tail = nullptr;
  size_t ops = 0;
  bool closing = false;
  bool send_busy = false;      // one send in the kernel
  std::deque<Op*> send_queue;  // sends waiting for it
  std::vector<absl::AnyInvocable<void()>> close_cbs;
};

bool IsTransientAcceptError(int res) {
  switch (-res) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case ECONNABORTED:
    case EINTR:
    case EAGAIN:
    case EPROTO:
    case EPERM:
      return true;
    default:
      return false;
  }
}

std::string ReadSysctl(const char* path) {
  std::ifstream in(path);
  std::string value;
  if (in) std::getline(in, value);
  return value;
}

absl::Status IoUringError(int err, const char* call) {
  std::string cause = absl::StrCat("io_uring is unavailable (", call, ": ", strerror(err), ")");
  std::string disabled = ReadSysctl("/proc/sys/kernel/io_uring_disabled");
  if (err == ENOSYS) {
    return absl::FailedPreconditionError(absl::StrCat(
        cause,
        ": the kernel lacks io_uring or a seccomp profile (container default) blocks it; run "
        "with deploy/seccomp-salvo.json (allows io_uring_setup, io_uring_enter, "
        "io_uring_register) or on a kernel >= 6.0"));
  }
  if (err == EPERM || err == EACCES) {
    if (disabled == "2") {
      return absl::FailedPreconditionError(absl::StrCat(
          cause, ": kernel.io_uring_disabled=2; set sysctl kernel.io_uring_disabled=0"));
    }
    if (disabled == "1") {
      return absl::FailedPreconditionError(absl::StrCat(
          cause,
          ": kernel.io_uring_disabled=1 restricts io_uring to kernel.io_uring_group; add this "
          "user to that group or set sysctl kernel.io_uring_disabled=0"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        cause, ": a seccomp profile or LSM policy denies it; run with deploy/seccomp-salvo.json"));
  }
  if (err == ENOMEM) {
    return absl::FailedPreconditionError(absl::StrCat(
        cause,
        ": locked-memory limit too low; raise it (ulimit -l unlimited) or use a kernel "
        ">= 5.12"));
  }
  if (err == EINVAL) {
    return absl::FailedPreconditionError(
        absl::StrCat(cause, ": the kernel is too old for the features used; need Linux >= 6.0"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(cause, ": check the kernel (Linux >= 6.0) and seccomp settings"));
}

class IoUringReactor final : public Reactor {
 public:
  explicit IoUringReactor(const ReactorOptions& options)
      : options_(options),
        clock_(options.clock != nullptr ? options.clock : MonotonicClock::Real()) {}
  ~IoUringReactor() override;

  absl::Status Init();

  void Accept(int listen_fd, absl::AnyInvocable<void(int res)> cb) override;
  void Connect(int fd, const sockaddr* addr, socklen_t len,
               absl::AnyInvocable<void(int res)> cb) override;
  void Send(int fd, const void* data, size_t len, absl::AnyInvocable<void(int res)> cb) override;
  void SendV(int fd, absl::Span<const std::string_view> segments,
             absl::AnyInvocable<void(int res)> cb) override;
  void Recv(int fd, absl::AnyInvocable<void(int res, std::string_view bytes)> cb) override;
  void PollAdd(int fd, uint32_t poll_mask, absl::AnyInvocable<void(int res)> cb) override;
  void CancelPoll(int fd) override;
  void Close(int fd, absl::AnyInvocable<void()> cb) override;
  TimerId RunAfter(Duration delay, absl::AnyInvocable<void()> cb) override;
  bool CancelTimer(TimerId id) override;
  SteadyClock::time_point Now() const override { return now_; }
  const MonotonicClock* clock() const override { return clock_; }
  void Post(absl::AnyInvocable<void()> task) override;
  void Run() override;
  void Stop() override;
  size_t InFlight() const override { return in_flight_; }

 private:
  struct TimerEntry {
    SteadyClock::time_point when;
    TimerId id;
    bool operator>(const TimerEntry& o) const { return when != o.when ? when > o.when : id > o.id; }
  };

  io_uring_sqe* GetSqe();
  Op* NewOp(OpKind kind, int fd);
  void Track(Op* op);
  // Removes a finished op from its fd and frees it; closes the fd when it
  // was the last one of a closing fd.
  void Retire(Op* op);
  void Arm(Op* op);
  void StartNextSend(int fd);
  void QueueSend(Op* op);
  void CancelOp(Op* op);
  // Completes an op that is not in the kernel with -ECANCELED on a later
  // loop turn (still before the Close callback).
  void CancelLocally(Op* op);
  void FinishClose(int fd);
  void HandleCqe(uint64_t user_data, int res, uint32_t flags);
  void HandleRecv(Op* op, int res, uint32_t flags);
  void HandleAccept(Op* op, int res, uint32_t flags);
  void HandleSend(Op* op, int res);
  void ReturnBuffer(uint16_t bid);
  void ArmWake();
  void RunTimers();
  void RunPosted();
  void RunDeferred();
  bool Closing(int fd) const {
    auto it = fds_.find(fd);
    return it != fds_.end() && it->second.closing;
  }

  ReactorOptions options_;
  const MonotonicClock* clock_;
  int clock_watch_ = 0;  // a manual clock wakes the ring when it moves
  io_uring ring_{};
  bool ring_ok_ = false;

  // Provided-buffer ring for multishot receives.
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  char* buffers_ = nullptr;
  size_t buffers_bytes_ = 0;
  int buf_mask_ = 0;

  absl::flat_hash_map<int, FdState> fds_;
  size_t in_flight_ = 0;

  // Timers: a min-heap with lazy deletion; live timers are those in the map.
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timer_heap_;
  absl::flat_hash_map<TimerId, absl::AnyInvocable<void()>> timers_;
  TimerId next_timer_id_ = 1;

  // Work for the next loop turn, run on this thread.
  std::vector<absl::AnyInvocable<void()>> deferred_;

  // Cross-thread mailbox.
  absl::Mutex post_mu_;
  std::vector<absl::AnyInvocable<void()>> posted_ ABSL_GUARDED_BY(post_mu_);
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  Op wake_op_{OpKind::kWake};  // reads wake_fd_
  std::atomic<bool> stop_{false};

  SteadyClock::time_point now_{};
};

IoUringReactor::~IoUringReactor() {
  if (clock_watch_ != 0) clock_->Unwatch(clock_watch_);
  if (ring_ok_) io_uring_queue_exit(&ring_);  // the kernel cancels what is left
  for (auto& [fd, st] : fds_) {
    for (Op* op = st.head; op != nullptr;) {
      Op* next = op->next;
      delete op;
      op = next;
    }
  }
  if (buf_ring_ != nullptr) munmap(buf_ring_, buf_ring_bytes_);
  if (buffers_ != nullptr) munmap(buffers_, buffers_bytes_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

absl::Status IoUringReactor::Init() {
  if (options_.pin_cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options_.pin_cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot pin reactor thread to CPU ", options_.pin_cpu, ": ", strerror(rc)));
    }
  }
  unsigned count = options_.recv_buffer_count;
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recv_buffer_count must be a power of two in 1..32768, got ", options_.recv_buffer_count));
  }
  if (options_.recv_buffer_size < 512) {
    return absl::InvalidArgumentError(
        absl::StrCat("recv_buffer_size must be >= 512, got ", options_.recv_buffer_size));
  }

  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
  params.cq_entries = options_.ring_entries * 2;
  int rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
  if (rc == -EINVAL) {
    params = {};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = options_.ring_entries * 2;
    rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
  }
  if (rc < 0) return IoUringError(-rc, "io_uring_queue_init");
  ring_ok_ = true;

  buf_ring_bytes_ = sizeof(io_uring_buf) * count;
  void* mem =
      mmap(nullptr, buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap of the buffer ring failed");
  buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
  // Buffer memory is mapped lazily: pages are only touched once lent.
  buffers_bytes_ = static_cast<size_t>(count) * options_.recv_buffer_size;
  mem = mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap of receive buffers failed");
  buffers_ = static_cast<char*>(mem);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
  reg.ring_entries = count;
  reg.bgid = kBufferGroup;
  rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc < 0) return IoUringError(-rc, "io_uring_register_buf_ring");
  io_uring_buf_ring_init(buf_ring_);
  buf_mask_ = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(buf_ring_, buffers_ + static_cast<size_t>(i) * options_.recv_buffer_size,
                          options_.recv_buffer_size, static_cast<uint16_t>(i), buf_mask_,
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(buf_ring_, static_cast<int>(count));

  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  ArmWake();
  now_ = clock_->Now();
  if (clock_->manual()) {
    clock_watch_ = clock_->Watch([fd = wake_fd_] {
      uint64_t one = 1;
      ssize_t n = ::write(fd, &one, sizeof(one));
      (void)n;
    });
  }
  return absl::OkStatus();
}

io_uring_sqe* IoUringReactor::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // SQ full: submit what is queued (completions stay in the CQ until reaped).
    int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN && rc != -EINTR) {
      SALVO_LOG(kError, "io_uring_submit failed: {}", strerror(-rc));
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

Op* IoUringReactor::NewOp(OpKind kind, int fd) {
  Op* op = new Op(kind);
  op->fd = fd;
  return op;
}

void IoUringReactor::Track(Op* op) {
  FdState& st = fds_[op->fd];
  op->prev = st.tail;
  op->next = nullptr;
  if (st.tail != nullptr) {
    st.tail->next = op;
  } else {
    st.head = op;
  }
  st.tail = op;
  ++st.ops;
}

void IoUringReactor::Retire(Op* op) {
  int fd = op->fd;
  auto it = fds_.find(fd);
  SALVO_CHECK(it != fds_.end());  // every live op is tracked under its fd
  FdState& st = it->second;
  if (op->prev != nullptr) {
    op->prev->next = op->next;
  } else {
    st.head = op->next;
  }
  if (op->next != nullptr) {
    op->next->prev = op->prev;
  } else {
    st.tail = op->prev;
  }
  --st.ops;
  delete op;
  if (st.ops == 0 && st.send_queue.empty()) {
    if (st.closing) {
      FinishClose(fd);
    } else if (!st.send_busy) {
      fds_.erase(it);
    }
  }
}

void IoUringReactor::FinishClose(int fd) {
  auto it = fds_.find(fd);
  std::vector<absl::AnyInvocable<void()>> cbs = std::move(it->second.close_cbs);
  fds_.erase(it);
  ::close(fd);
  for (auto& cb : cbs) {
    if (cb) cb();
  }
}

void IoUringReactor::Arm(Op* op) {
  io_uring_sqe* sqe = GetSqe();
  switch (op->kind) {
    case OpKind::kAccept:
      io_uring_prep_multishot_accept(sqe, op->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      break;
    case OpKind::kConnect:
      io_uring_prep_connect(sqe, op->fd, reinterpret_cast<sockaddr*>(&op->addr), op->addr_len);
      break;
    case OpKind::kSend:
      if (op->iov.empty()) {
        io_uring_prep_send(sqe, op->fd, op->data + op->done, op->len - op->done, MSG_NOSIGNAL);
      } else {
        op->msg = msghdr{};
        op->msg.msg_iov = op->iov.data() + op->iov_head;
        op->msg.msg_iovlen = std::min<size_t>(op->iov.size() - op->iov_head, IOV_MAX);
        io_uring_prep_sendmsg(sqe, op->fd, &op->msg, MSG_NOSIGNAL);
      }
      break;
    case OpKind::kRecv:
      io_uring_prep_recv_multishot(sqe, op->fd, nullptr, 0, 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = kBufferGroup;
      break;
    case OpKind::kPoll:
      io_uring_prep_poll_add(sqe, op->fd, op->poll_mask);
      break;
    case OpKind::kWake:
      SALVO_CHECK(op->kind != OpKind::kWake);  // the wake op is armed by ArmWake
      break;
  }
  io_uring_sqe_set_data(sqe, op);
  if (!op->in_kernel) {
    op->in_kernel = true;
    ++in_flight_;
  }
}

void IoUringReactor::ArmWake() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof(wake_buf_), 0);
  io_uring_sqe_set_data(sqe, &wake_op_);
}

void IoUringReactor::Accept(int listen_fd, absl::AnyInvocable<void(int res)> cb) {
  Op* op = NewOp(OpKind::kAccept, listen_fd);
  op->cb = std::move(cb);
  Track(op);
  if (Closing(listen_fd)) return CancelLocally(op);
  Arm(op);
}

void IoUringReactor::Connect(int fd, const sockaddr* addr, socklen_t len,
                             absl::AnyInvocable<void(int res)> cb) {
  Op* op = NewOp(OpKind::kConnect, fd);
  op->cb = std::move(cb);
  Track(op);
  if (len > sizeof(op->addr)) {
    op->cancel_sent = true;  // completes locally; Close must not report it again
    deferred_.push_back([this, op] {
      op->finished = true;
      op->cb(-EINVAL);
      Retire(op);
    });
    return;
  }
  memcpy(&op->addr, addr, len);
  op->addr_len = len;
  if (Closing(fd)) return CancelLocally(op);
  Arm(op);
}

void IoUringReactor::Send(int fd, const void* data, size_t len,
                          absl::AnyInvocable<void(int res)> cb) {
  Op* op = NewOp(OpKind::kSend, fd);
  op->cb = std::move(cb);
  op->data = static_cast<const char*>(data);
  op->len = len;
  QueueSend(op);
}

void IoUringReactor::SendV(int fd, absl::Span<const std::string_view> segments,
                           absl::AnyInvocable<void(int res)> cb) {
  Op* op = NewOp(OpKind::kSend, fd);
  op->cb = std::move(cb);
  op->iov.reserve(segments.size());
  for (std::string_view s : segments) {
    if (s.empty()) continue;  // never hand the kernel an empty segment's null data()
    op->iov.push_back(iovec{const_cast<char*>(s.data()), s.size()});
    op->len += s.size();
  }
  QueueSend(op);
}

void IoUringReactor::QueueSend(Op* op) {
  const int fd = op->fd;
  Track(op);
  FdState& st = fds_[fd];
  if (st.closing) return CancelLocally(op);
  if (op->len == 0) {
    op->cancel_sent = true;  // completes locally; Close must not report it again
    deferred_.push_back([this, op] {
      op->finished = true;
      op->cb(0);
      Retire(op);
    });
    return;
  }
  if (st.send_busy) {
    st.send_queue.push_back(op);
    return;
  }
  st.send_busy = true;
  Arm(op);
}

void IoUringReactor::StartNextSend(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  FdState& st = it->second;
  st.send_busy = false;
  if (st.closing) return;  // queued sends were cancelled by Close
  if (!st.send_queue.empty()) {
    Op* next = st.send_queue.front();
    st.send_queue.pop_front();
    st.send_busy = true;
    Arm(next);
  }
}

void IoUringReactor::Recv(int fd, absl::AnyInvocable<void(int res, std::string_view bytes)> cb) {
  Op* op = NewOp(OpKind::kRecv, fd);
  op->rcb = std::move(cb);
  Track(op);
  if (Closing(fd)) return CancelLocally(op);
  Arm(op);
}

void IoUringReactor::PollAdd(int fd, uint32_t poll_mask, absl::AnyInvocable<void(int res)> cb) {
  Op* op = NewOp(OpKind::kPoll, fd);
  op->cb = std::move(cb);
  op->poll_mask = poll_mask;
  Track(op);
  if (Closing(fd)) return CancelLocally(op);
  Arm(op);
}

void IoUringReactor::CancelOp(Op* op) {
  if (op->cancel_sent || op->finished) return;
  if (!op->in_kernel) return CancelLocally(op);
  op->cancel_sent = true;
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel(sqe, op, 0);
  io_uring_sqe_set_data64(sqe, 0);  // its own completion is ignored
}

void IoUringReactor::CancelLocally(Op* op) {
  if (op->cancel_sent) return;
  op->cancel_sent = true;
  if (op->park_timer != 0) {
    CancelTimer(op->park_timer);
    op->park_timer = 0;
  }
  deferred_.push_back([this, op] {
    op->finished = true;
    if (op->kind == OpKind::kRecv) {
      op->rcb(-ECANCELED, {});
    } else {
      op->cb(-ECANCELED);
    }
    Retire(op);
  });
}

void IoUringReactor::CancelPoll(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  for (Op* op = it->second.head; op != nullptr; op = op->next) {
    if (op->kind == OpKind::kPoll) CancelOp(op);
  }
}

void IoUringReactor::Close(int fd, absl::AnyInvocable<void()> cb) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) {
    // Nothing outstanding: close now, call back on the next loop turn so the
    // owner is never re-entered from inside its own call.
    ::close(fd);
    if (cb) deferred_.push_back(std::move(cb));
    return;
  }
  FdState& st = it->second;
  st.close_cbs.push_back(std::move(cb));
  if (st.closing) return;
  st.closing = true;
  // Queued sends never reached the kernel.
  std::deque<Op*> queued = std::move(st.send_queue);
  st.send_queue.clear();
  for (Op* op : queued) CancelLocally(op);
  std::vector<Op*> ops;
  for (Op* op = st.head; op != nullptr; op = op->next) ops.push_back(op);
  for (Op* op : ops) CancelOp(op);
  if (st.ops == 0) {
    // Only a send that just completed held it open.
    deferred_.push_back([this, fd] {
      auto it2 = fds_.find(fd);
      if (it2 != fds_.end() && it2->second.closing && it2->second.ops == 0) FinishClose(fd);
    });
  }
}

TimerId IoUringReactor::RunAfter(Duration delay, absl::AnyInvocable<void()> cb) {
  TimerId id = next_timer_id_++;
  // Measured from the real time, not the cached loop time, so a timer set
  // late in a long turn is not shortened.
  timer_heap_.push(TimerEntry{clock_->Now() + delay, id});
  timers_.emplace(id, std::move(cb));
  return id;
}

bool IoUringReactor::CancelTimer(TimerId id) { return timers_.erase(id) > 0; }

// The reactor whose Run() is on this thread's stack.
thread_local const IoUringReactor* running_here = nullptr;

void IoUringReactor::Post(absl::AnyInvocable<void()> task) {
  bool was_empty;
  {
    absl::MutexLock lock(&post_mu_);
    was_empty = posted_.empty();
    posted_.push_back(std::move(task));
  }
  // A post from inside this reactor's own loop (a callback, a timer, a posted
  // task) needs no wake-up: the loop looks at the mailbox before it waits.
  if (was_empty && running_here != this) {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    (void)n;  // EAGAIN means the counter is already non-zero: the ring wakes anyway
  }
}

void IoUringReactor::Stop() {
  stop_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  (void)n;
}

void IoUringReactor::RunTimers() {
  while (!timer_heap_.empty() && timer_heap_.top().when <= now_) {
    TimerId id = timer_heap_.top().id;
    timer_heap_.pop();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    absl::AnyInvocable<void()> cb = std::move(it->second);
    timers_.erase(it);
    cb();
  }
}

void IoUringReactor::RunPosted() {
  std::vector<absl::AnyInvocable<void()>> tasks;
  {
    absl::MutexLock lock(&post_mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void IoUringReactor::RunDeferred() {
  // Tasks may defer more work; that runs on the next turn.
  std::vector<absl::AnyInvocable<void()>> tasks;
  tasks.swap(deferred_);
  for (auto& t : tasks) t();
}

void IoUringReactor::ReturnBuffer(uint16_t bid) {
  io_uring_buf_ring_add(buf_ring_, buffers_ + static_cast<size_t>(bid) * options_.recv_buffer_size,
                        options_.recv_buffer_size, bid, buf_mask_, 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

void IoUringReactor::HandleRecv(Op* op, int res, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    op->in_kernel = false;
    --in_flight_;
  }
  std::string_view bytes;
  bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
  uint16_t bid = 0;
  if (has_buffer) {
    bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    if (res > 0) {
      bytes = std::string_view(buffers_ + static_cast<size_t>(bid) * options_.recv_buffer_size,
                               static_cast<size_t>(res));
    }
  }
  const bool closing = op->cancel_sent || Closing(op->fd);
  if (closing) {
    // Data that raced with Close is dropped; only the final report is made.
    if (has_buffer) ReturnBuffer(bid);
    if (more) return;
    op->finished = true;
    op->rcb(res > 0 ? -ECANCELED : res, {});
    Retire(op);
    return;
  }
  if (res > 0) {
    op->rcb(res, bytes);
    if (has_buffer) ReturnBuffer(bid);
    // The multishot ended (e.g. CQ pressure): re-arm. If the callback closed
    // the fd, Close already queued the final -ECANCELED report.
    if (!more && !op->cancel_sent && !Closing(op->fd)) Arm(op);
    return;
  }
  if (has_buffer) ReturnBuffer(bid);
  if (res == -ENOBUFS) {
    // The buffer ring ran dry within one kernel batch; the buffers handed out
    // in this batch are back by the time the re-armed SQE is submitted.
    if (!more) Arm(op);
    return;
  }
  if (more) return;  // should not happen: errors end the multishot
  op->finished = true;
  op->rcb(res, {});  // 0 = EOF, < 0 = error
  Retire(op);
}

void IoUringReactor::HandleAccept(Op* op, int res, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    op->in_kernel = false;
    --in_flight_;
  }
  const bool closing = op->cancel_sent || Closing(op->fd);
  if (closing) {
    if (res >= 0) ::close(res);  // accepted after Close: nobody wants it
    if (more) return;
    op->finished = true;
    op->cb(res >= 0 ? -ECANCELED : res);
    Retire(op);
    return;
  }
  if (res >= 0 || IsTransientAcceptError(res)) {
    op->cb(res);
    // If the callback closed the socket, Close queued the final report.
    if (more || op->cancel_sent || Closing(op->fd)) return;
    if (res >= 0) {
      Arm(op);
    } else {
      // Out of fds or memory: re-arming now would spin.
      op->park_timer = RunAfter(kAcceptBackoff, [this, op] {
        op->park_timer = 0;
        if (!op->cancel_sent && !Closing(op->fd)) Arm(op);
      });
    }
    return;
  }
  if (more) {
    op->cb(res);
    return;
  }
  op->finished = true;
  op->cb(res);
  Retire(op);
}

void IoUringReactor::HandleSend(Op* op, int res) {
  op->in_kernel = false;
  --in_flight_;
  int fd = op->fd;
  const bool closing = op->cancel_sent || Closing(fd);
  if (res > 0) {
    op->done += static_cast<size_t>(res);
    // Segments: skip those sent whole, trim the one the kernel stopped in.
    for (size_t n = static_cast<size_t>(res); n > 0 && op->iov_head < op->iov.size();) {
      iovec& v = op->iov[op->iov_head];
      if (n < v.iov_len) {
        v.iov_base = static_cast<char*>(v.iov_base) + n;
        v.iov_len -= n;
        break;
      }
      n -= v.iov_len;
      ++op->iov_head;
    }
    if (op->done < op->len && !closing) {
      Arm(op);  // continue a short write before the next queued send
      return;
    }
  } else if (res == 0 && op->done < op->len && !closing) {
    res = -EIO;  // the kernel sent nothing and reported no error
  }
  int result = res < 0 ? res : (op->done == op->len ? static_cast<int>(op->len) : -ECANCELED);
  op->finished = true;
  op->cb(result);
  StartNextSend(fd);
  Retire(op);
}

void IoUringReactor::HandleCqe(uint64_t user_data, int res, uint32_t flags) {
  if (user_data == 0) return;  // an async-cancel's own completion
  Op* op = reinterpret_cast<Op*>(user_data);
  if (op == &wake_op_) {
    ArmWake();
    return;
  }
  switch (op->kind) {
    case OpKind::kRecv:
      HandleRecv(op, res, flags);
      return;
    case OpKind::kAccept:
      HandleAccept(op, res, flags);
      return;
    case OpKind::kSend:
      HandleSend(op, res);
      return;
    case OpKind::kConnect:
    case OpKind::kPoll: {
      op->in_kernel = false;
      --in_flight_;
      op->finished = true;
      op->cb(res);
      Retire(op);
      return;
    }
    case OpKind::kWake:
      return;
  }
}

void IoUringReactor::Run() {
  constexpr unsigned kBatch = 256;
  io_uring_cqe* cqes[kBatch];
  struct Completion {
    uint64_t user_data;
    int res;
    uint32_t flags;
  };
  std::vector<Completion> batch;
  batch.reserve(kBatch);
  const IoUringReactor* outer = running_here;
  running_here = this;
  while (!stop_.load(std::memory_order_acquire)) {
    now_ = clock_->Now();
    RunPosted();
    RunTimers();
    RunDeferred();
    if (stop_.load(std::memory_order_acquire)) break;

    bool have_work = !deferred_.empty();
    if (!have_work) {
      absl::MutexLock lock(&post_mu_);
      have_work = !posted_.empty();
    }
    int rc;
    if (have_work) {
      rc = io_uring_submit(&ring_);
    } else {
      __kernel_timespec ts{};
      __kernel_timespec* tsp = nullptr;
      while (!timer_heap_.empty() && !timers_.contains(timer_heap_.top().id)) timer_heap_.pop();
      if (!timer_heap_.empty() && !clock_->manual()) {
        auto wait = std::max(Duration::zero(), timer_heap_.top().when - clock_->Now());
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        ts.tv_sec = ns / 1'000'000'000;
        ts.tv_nsec = ns % 1'000'000'000;
        tsp = &ts;
      }
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      SALVO_LOG(kError, "io_uring_submit_and_wait failed: {}", strerror(-rc));
    }

    // Reap in batches: copy out, advance the CQ once, then dispatch, so a
    // callback that submits (SQ full) never races the CQ we are reading.
    for (;;) {
      unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kBatch);
      if (n == 0) break;
      batch.clear();
      for (unsigned i = 0; i < n; ++i) {
        batch.push_back(Completion{cqes[i]->user_data, cqes[i]->res, cqes[i]->flags});
      }
      io_uring_cq_advance(&ring_, n);
      now_ = clock_->Now();
      for (const Completion& c : batch) HandleCqe(c.user_data, c.res, c.flags);
      if (n < kBatch) break;
    }
  }
  // Flush SQEs prepared by the last callbacks (e.g. cancels) so the kernel
  // sees them even if Run() is called again later.
  io_uring_submit(&ring_);
  running_here = outer;
  stop_.store(false, std::memory_order_release);  // Run() may be called again
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(const ReactorOptions& options) {
  auto reactor = std::make_unique<IoUringReactor>(options);
  absl::Status st = reactor->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Reactor>(std::move(reactor));
}

absl::Status Reactor::CheckIoUringAvailable() {
  io_uring ring;
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) return IoUringError(-rc, "io_uring_setup");
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_nop(sqe);
  rc = io_uring_submit(&ring);
  if (rc < 0) {
    io_uring_queue_exit(&ring);
    return IoUringError(-rc, "io_uring_enter");
  }
  io_uring_cqe* cqe = nullptr;
  rc = io_uring_wait_cqe(&ring, &cqe);
  if (rc < 0) {
    io_uring_queue_exit(&ring);
    return IoUringError(-rc, "io_uring_enter");
  }
  io_uring_cqe_seen(&ring, cqe);
  // Multishot receive with provided buffers needs Linux 6.0.
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  bool ok = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SOCKET);
  if (probe != nullptr) io_uring_free_probe(probe);
  io_uring_queue_exit(&ring);
  if (!ok) {
    return absl::FailedPreconditionError(
        "io_uring is too old on this kernel (no IORING_OP_SOCKET, multishot receive needs Linux "
        ">= 6.0): run on a newer kernel");
  }
  return absl::OkStatus();
}

}  // namespace salvo::reactor
