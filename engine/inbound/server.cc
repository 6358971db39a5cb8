#include "engine/inbound/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/common/log.h"
#include "engine/inbound/policy.h"
#include "engine/reactor/reactor.h"
#include "engine/sink/smtp_server.h"
#include "engine/sink/tls_server.h"

namespace salvo::inbound {
namespace {

constexpr auto kStopGrace = std::chrono::seconds(2);
constexpr size_t kStoreBatch = 64;              // messages per sync write at most
constexpr size_t kProcessBatch = 32;            // pending messages read per look
constexpr auto kRetryAfter = absl::Seconds(5);  // after a kUnavailable processing result

}  // namespace

// One SMTP connection, owned by the reactor thread; freed in the reactor's
// Close callback.
struct Conn final : public sink::SessionPolicy {
  Conn(InboundServer::Impl* s, uint64_t serial, int f, const sink::ServerOptions& o)
      : server(s), id(serial), fd(f), session(o, this) {}
  sink::Verdict OnMail(std::string_view, uint64_t) override { return sink::Verdict::kAccept; }
  sink::Verdict OnRcpt(std::string_view rcpt) override;
  sink::Verdict OnData() override;
  void OnMessage(const sink::Envelope& envelope, std::string_view data, uint64_t size) override;
  bool OnStartTls() override;
  void OnBareLineEnding() override;

  InboundServer::Impl* server;
  uint64_t id;
  int fd;
  sink::ServerSession session;
  std::string peer;
  reactor::SteadyClock::time_point last_active;  // the last bytes received
  size_t rcpts = 0;                              // accepted RCPTs in the open transaction
  uint64_t reserved = 0;  // of max_buffered_bytes, for the message being received
  std::string inflight;   // bytes handed to Send, alive until its callback
  std::string pending;    // replies produced meanwhile
  bool sending = false;
  bool closing = false;
  bool close_after_send = false;
  std::unique_ptr<sink::TlsServerConn> tls;
  std::string wire;
  std::string plain;
  bool tls_on = false;
};

class InboundServer::Impl {
 public:
  Impl(queue::Spool* spool, InboundOptions options, ProcessFunction process)
      : spool_(spool),
        options_(std::move(options)),
        policy_(options_.domains, options_.max_recipients),
        process_(std::move(process)) {}
  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();
  InboundStats Stats() const {
    absl::MutexLock lock(&stats_mu_);
    return stats_;
  }
  std::vector<sink::ListenAddress> bound_;

  // ---- On the reactor thread (Conn callbacks) ----
  sink::Verdict Rcpt(Conn* c, std::string_view rcpt) {
    sink::Verdict v = policy_.Rcpt(rcpt, c->rcpts);
    if (v == sink::Verdict::kAccept) {
      ++c->rcpts;
    } else if (v == sink::Verdict::kRelayDenied) {
      Count(&InboundStats::rejected, "relay");
    }
    return v;
  }
  // DATA: reserves max_message_size of max_buffered_bytes for the message,
  // or 452 4.3.1 when that would pass the cap (the sender tries later).
  sink::Verdict Data(Conn* c) {
    const uint64_t need = options_.max_message_size;
    if (c->reserved == 0 && buffered_ + need > options_.max_buffered_bytes) {
      c->rcpts = 0;  // the session ends the transaction
      Count(&InboundStats::rejected, "no_storage");
      return sink::Verdict::kNoStorage;
    }
    Reserve(need - c->reserved);
    c->reserved = need;
    return sink::Verdict::kAccept;
  }
  void Reserve(uint64_t n) {
    buffered_ += n;
    absl::MutexLock lock(&stats_mu_);
    stats_.buffered_bytes = buffered_;
    stats_.buffered_bytes_peak = std::max(stats_.buffered_bytes_peak, buffered_);
  }
  void Unreserve(uint64_t n) {
    buffered_ -= std::min(buffered_, n);
    absl::MutexLock lock(&stats_mu_);
    stats_.buffered_bytes = buffered_;
  }
  void Message(Conn* c, const sink::Envelope& env, std::string_view data) {
    c->rcpts = 0;
    auto m = std::make_unique<queue::InboundMessage>();
    m->mail_from = env.mail_from;
    m->recipients = env.recipients;
    m->client = absl::StrCat(c->peer, " ", c->session.client_name());
    m->received = absl::Now();
    m->raw.assign(data);
    {
      absl::MutexLock lock(&store_mu_);
      // The reservation goes with the message until it is stored.
      store_queue_.push_back({c->id, std::move(m), c->reserved});
      c->reserved = 0;
    }
  }
  bool StartTls(Conn* c) {
    if (tls_ctx_ == nullptr) return false;
    c->tls = sink::TlsServerConn::Create(tls_ctx_.get());
    return c->tls != nullptr;
  }
  void Count(std::map<std::string, uint64_t> InboundStats::*family, const std::string& label) {
    absl::MutexLock lock(&stats_mu_);
    ++(stats_.*family)[label];
  }

 private:
  struct StoreJob {
    uint64_t conn = 0;
    std::unique_ptr<queue::InboundMessage> message;
    uint64_t reserved = 0;  // of max_buffered_bytes, given back at the answer
  };

  void OnAccept(int fd);
  void OnRecv(Conn* c, int res, std::string_view bytes);
  void AfterFeed(Conn* c, sink::ServerSession::Result fed);
  void Flush(Conn* c);
  void CloseConn(Conn* c);
  void BeginStop();
  // Every few seconds: closes connections idle longer than idle_timeout.
  void SweepIdle();
  reactor::Duration SweepInterval() const {
    return std::clamp<reactor::Duration>(options_.idle_timeout / 4, std::chrono::milliseconds(100),
                                         std::chrono::seconds(5));
  }
  void MaybeFinishStop() {
    if (stopping_ && conns_.empty() && listeners_open_ == 0) reactor_->Stop();
  }
  void Answer(uint64_t conn_id, const absl::Status& stored, uint64_t message_id, uint64_t reserved);
  void StoreLoop();
  void ProcessLoop();

  queue::Spool* spool_;
  InboundOptions options_;
  RecipientPolicy policy_;
  ProcessFunction process_;
  sink::ServerOptions server_options_;
  sink::SslCtxPtr tls_ctx_;
  std::vector<int> listen_fds_;
  std::unique_ptr<reactor::Reactor> reactor_;
  std::thread reactor_thread_;
  bool started_ = false;
  bool stopped_ = false;

  // Reactor thread only.
  absl::flat_hash_map<uint64_t, Conn*> conns_;
  uint64_t next_conn_ = 1;
  bool stopping_ = false;
  uint64_t buffered_ = 0;  // reserved of max_buffered_bytes (Data, Answer)
  size_t listeners_open_ = 0;

  // Store thread: jobs queued by connections (reactor thread).
  absl::Mutex store_mu_;
  std::deque<StoreJob> store_queue_ ABSL_GUARDED_BY(store_mu_);
  bool store_stop_ ABSL_GUARDED_BY(store_mu_) = false;
  std::thread store_thread_;

  // Processing thread: woken after each store and at stop.
  absl::Mutex process_mu_;
  bool process_wake_ ABSL_GUARDED_BY(process_mu_) = true;
  bool process_stop_ ABSL_GUARDED_BY(process_mu_) = false;
  std::thread process_thread_;

  mutable absl::Mutex stats_mu_;
  InboundStats stats_ ABSL_GUARDED_BY(stats_mu_);
};

sink::Verdict Conn::OnRcpt(std::string_view rcpt) { return server->Rcpt(this, rcpt); }
sink::Verdict Conn::OnData() { return server->Data(this); }
void Conn::OnMessage(const sink::Envelope& envelope, std::string_view data, uint64_t) {
  server->Message(this, envelope, data);
}
bool Conn::OnStartTls() { return server->StartTls(this); }
void Conn::OnBareLineEnding() {
  rcpts = 0;
  server->Count(&InboundStats::rejected, "bare_line_ending");
}

absl::Status InboundServer::Impl::Start() {
  started_ = true;
  if (auto s = reactor::Reactor::CheckIoUringAvailable(); !s.ok()) return s;
  server_options_.hostname = options_.hostname;
  server_options_.product = "Salvo inbound";
  server_options_.max_message_size = options_.max_message_size;
  server_options_.max_line = options_.max_line;
  server_options_.keep_content = true;
  server_options_.hold_final_reply = true;
  server_options_.starttls = options_.tls;
  if (options_.tls) {
    auto ctx = sink::MakeServerTlsContext(options_.hostname, options_.tls_cert, options_.tls_key);
    if (!ctx.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("[inbound] tls: ", std::string(ctx.status().message())));
    tls_ctx_ = std::move(ctx).value();
  }
  for (const sink::ListenAddress& addr : options_.listen) {
    auto fd = sink::OpenListener(addr, addr.port);
    if (!fd.ok()) {
      for (int f : listen_fds_) ::close(f);
      listen_fds_.clear();
      return absl::UnavailableError(
          absl::StrCat("[inbound] listen: ", std::string(fd.status().message())));
    }
    listen_fds_.push_back(*fd);
    bound_.push_back({addr.host, sink::BoundPort(*fd)});
  }
  auto r = reactor::Reactor::Create();
  if (!r.ok()) {
    for (int f : listen_fds_) ::close(f);
    listen_fds_.clear();
    return r.status();
  }
  reactor_ = std::move(r).value();
  // The reactor is created here but runs on its own thread: Accept only
  // queues work, which Run() submits.
  for (int fd : listen_fds_) reactor_->Accept(fd, [this](int res) { OnAccept(res); });
  reactor_->RunAfter(SweepInterval(), [this] { SweepIdle(); });
  reactor_thread_ = std::thread([this] { reactor_->Run(); });
  store_thread_ = std::thread([this] { StoreLoop(); });
  process_thread_ = std::thread([this] { ProcessLoop(); });
  return absl::OkStatus();
}

void InboundServer::Impl::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  if (reactor_thread_.joinable()) {
    reactor_->Post([this] { BeginStop(); });
    reactor_thread_.join();
  }
  {
    absl::MutexLock lock(&store_mu_);
    store_stop_ = true;
  }
  if (store_thread_.joinable()) store_thread_.join();
  {
    absl::MutexLock lock(&process_mu_);
    process_stop_ = true;
  }
  if (process_thread_.joinable()) process_thread_.join();
  for (auto& [id, c] : conns_) delete c;  // only those a forced stop left behind
  conns_.clear();
  reactor_.reset();
}

void InboundServer::Impl::OnAccept(int fd) {
  if (fd < 0) {
    if (fd != -ECANCELED) SALVO_LOG(kWarning, "inbound accept failed: {}", strerror(-fd));
    return;
  }
  if (stopping_) {
    ::close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  {
    absl::MutexLock lock(&stats_mu_);
    ++stats_.connections;
  }
  auto* c = new Conn(this, next_conn_++, fd, server_options_);
  c->peer = sink::PeerAddress(fd);
  c->last_active = reactor_->Now();
  conns_[c->id] = c;
  if (conns_.size() > options_.max_connections) {
    Count(&InboundStats::rejected, "too_many_connections");
    c->pending = absl::StrCat("421 4.7.0 ", options_.hostname,
                              " Error: too many connections, try again later\r\n");
    c->close_after_send = true;
    Flush(c);
    return;
  }
  c->session.Greeting(&c->pending);
  Flush(c);
  reactor_->Recv(fd, [this, c](int res, std::string_view bytes) { OnRecv(c, res, bytes); });
}

void InboundServer::Impl::OnRecv(Conn* c, int res, std::string_view bytes) {
  if (c->closing) return;
  if (res <= 0) return CloseConn(c);
  c->last_active = reactor_->Now();
  if (c->tls_on) {
    c->plain.clear();
    absl::Status s = c->tls->Receive(bytes, &c->plain);
    if (!s.ok()) {
      c->close_after_send = true;  // a failed handshake still sends its alert
      return Flush(c);
    }
    bytes = c->plain;
  }
  AfterFeed(c, c->session.Feed(bytes, &c->pending));
}

void InboundServer::Impl::AfterFeed(Conn* c, sink::ServerSession::Result fed) {
  switch (fed) {
    case sink::ServerSession::Result::kContinue:
      break;
    case sink::ServerSession::Result::kStartTls:
      c->wire = std::move(c->pending);
      c->pending.clear();
      c->tls_on = true;
      break;
    case sink::ServerSession::Result::kCloseAfterSend:
    case sink::ServerSession::Result::kDropNow:
      c->close_after_send = true;
      break;
  }
  Flush(c);
}

void InboundServer::Impl::Answer(uint64_t conn_id, const absl::Status& stored, uint64_t message_id,
                                 uint64_t reserved) {
  Unreserve(reserved);
  auto it = conns_.find(conn_id);
  if (it == conns_.end() || it->second->closing) return;  // the sender went away: it retries
  Conn* c = it->second;
  std::string reply =
      stored.ok() ? absl::StrCat("250 2.0.0 Ok: queued as ", message_id)
                  : std::string("451 4.3.0 Error: cannot store the message now, try again later");
  AfterFeed(c, c->session.Resume(reply, &c->pending));
}

void InboundServer::Impl::Flush(Conn* c) {
  if (c->closing || c->sending) return;
  if (c->tls_on) {
    if (c->tls->handshake_done() && !c->pending.empty()) {
      if (!c->tls->Send(c->pending).ok()) return CloseConn(c);
      c->pending.clear();
    }
    c->tls->Drain(&c->wire);
  }
  std::string& out = c->tls_on ? c->wire : c->pending;
  if (out.empty()) {
    if (c->close_after_send) CloseConn(c);
    return;
  }
  c->sending = true;
  c->inflight.swap(out);
  reactor_->Send(c->fd, c->inflight.data(), c->inflight.size(), [this, c](int res) {
    c->sending = false;
    if (c->closing) return;
    if (res < 0) return CloseConn(c);
    c->inflight.clear();
    Flush(c);
  });
}

void InboundServer::Impl::CloseConn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  reactor_->Close(c->fd, [this, c] {
    Unreserve(c->reserved);  // a message cut off mid-DATA
    conns_.erase(c->id);
    delete c;
    MaybeFinishStop();
  });
}

void InboundServer::Impl::SweepIdle() {
  if (stopping_) return;
  const auto now = reactor_->Now();
  std::vector<Conn*> idle;
  for (auto& [id, c] : conns_)
    if (!c->closing && !c->session.awaiting_reply() && now - c->last_active > options_.idle_timeout)
      idle.push_back(c);
  for (Conn* c : idle) {
    Count(&InboundStats::rejected, "idle_timeout");
    if (c->tls_on && !c->tls->handshake_done()) {
      CloseConn(c);
      continue;
    }
    if (c->sending) {  // a peer that does not read its replies is not waited for
      CloseConn(c);
      continue;
    }
    c->pending.append("421 4.4.2 Error: timeout exceeded, closing connection\r\n");
    c->close_after_send = true;
    Flush(c);
  }
  reactor_->RunAfter(SweepInterval(), [this] { SweepIdle(); });
}

void InboundServer::Impl::BeginStop() {
  stopping_ = true;
  listeners_open_ = listen_fds_.size();
  for (int fd : listen_fds_) {
    reactor_->Close(fd, [this] {
      --listeners_open_;
      MaybeFinishStop();
    });
  }
  listen_fds_.clear();
  std::vector<Conn*> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (Conn* c : all) CloseConn(c);
  reactor_->RunAfter(kStopGrace, [this] { reactor_->Stop(); });
  MaybeFinishStop();
}

// Group commit: every message that arrived while the previous sync write ran
// goes into the next one.
void InboundServer::Impl::StoreLoop() {
  for (;;) {
    std::vector<StoreJob> jobs;
    {
      absl::MutexLock lock(&store_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_mu_) {
        return store_stop_ || !store_queue_.empty();
      };
      store_mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      while (!store_queue_.empty() && jobs.size() < kStoreBatch) {
        jobs.push_back(std::move(store_queue_.front()));
        store_queue_.pop_front();
      }
      if (jobs.empty() && store_stop_) return;
    }
    if (jobs.empty()) continue;
    std::vector<queue::InboundMessage*> batch;
    for (StoreJob& j : jobs) batch.push_back(j.message.get());
    absl::Status s = spool_->StoreInbound(absl::MakeConstSpan(batch));
    if (!s.ok()) SALVO_LOG(kError, "inbound: cannot store received messages: {}", s.ToString());
    for (StoreJob& j : jobs) {
      Count(&InboundStats::messages, s.ok() ? "accepted" : "store_failed");
      if (s.ok())
        SALVO_LOG(kInfo, "inbound: stored message {} from <{}> to <{}> ({} bytes, client {})",
                  j.message->id, j.message->mail_from,
                  j.message->recipients.empty() ? "" : j.message->recipients[0],
                  j.message->raw.size(), j.message->client);
      const uint64_t conn = j.conn;
      const uint64_t id = j.message->id;
      const uint64_t reserved = j.reserved;
      j.message.reset();  // the bytes are on disk: freed before the answer gives them back
      reactor_->Post([this, conn, s, id, reserved] { Answer(conn, s, id, reserved); });
    }
    if (s.ok()) {
      absl::MutexLock lock(&process_mu_);
      process_wake_ = true;
    }
  }
}

void InboundServer::Impl::ProcessLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&process_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(process_mu_) {
        return process_stop_ || process_wake_;
      };
      process_mu_.AwaitWithTimeout(absl::Condition(&ready), kRetryAfter);
      if (process_stop_) return;
      process_wake_ = false;
    }
    // Everything pending, a batch at a time; a kUnavailable result ends the
    // round (retried after kRetryAfter or the next store).
    bool retry = false;
    for (bool more = true; more;) {
      absl::StatusOr<std::vector<queue::InboundMessage>> pending =
          spool_->PendingInbound(kProcessBatch);
      if (!pending.ok()) {
        SALVO_LOG(kError, "inbound: cannot read stored messages: {}", pending.status().ToString());
        break;
      }
      {
        absl::MutexLock lock(&stats_mu_);
        stats_.pending = pending->size();
      }
      more = pending->size() == kProcessBatch;
      for (const queue::InboundMessage& m : *pending) {
        {
          absl::MutexLock lock(&process_mu_);
          if (process_stop_) return;
        }
        absl::StatusOr<std::string> result = process_(m);
        if (!result.ok() && absl::IsUnavailable(result.status())) {
          SALVO_LOG(kWarning, "inbound: message {} will be processed again later: {}", m.id,
                    result.status().ToString());
          Count(&InboundStats::processed, "retry");
          retry = true;
          more = false;
          break;
        }
        if (absl::Status s = spool_->MarkInboundDone(m.id); !s.ok()) {
          SALVO_LOG(kError, "inbound: cannot remove processed message {}: {}", m.id, s.ToString());
          more = false;
          break;
        }
        if (result.ok()) {
          Count(&InboundStats::processed, *result);
          SALVO_LOG(kInfo, "inbound: message {} processed: {}", m.id, *result);
        } else {
          Count(&InboundStats::processed, "failed");
          SALVO_LOG(kWarning, "inbound: message {} from <{}> could not be processed: {}", m.id,
                    m.mail_from, result.status().ToString());
        }
      }
      if (!more && !retry) {
        absl::MutexLock lock(&stats_mu_);
        stats_.pending = 0;
      }
    }
  }
}

InboundServer::InboundServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InboundServer::~InboundServer() { Stop(); }

absl::StatusOr<std::unique_ptr<InboundServer>> InboundServer::Start(queue::Spool* spool,
                                                                    InboundOptions options,
                                                                    ProcessFunction process) {
  if (options.domains.empty())
    return absl::InvalidArgumentError(
        "[inbound] domains: empty; the listener would refuse every recipient");
  auto impl = std::make_unique<Impl>(spool, std::move(options), std::move(process));
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<InboundServer>(new InboundServer(std::move(impl)));
}

void InboundServer::Stop() { impl_->Stop(); }
std::vector<sink::ListenAddress> InboundServer::Bound() const { return impl_->bound_; }
InboundStats InboundServer::Stats() const { return impl_->Stats(); }

}  // namespace salvo::inbound
