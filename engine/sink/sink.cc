#include "engine/sink/sink.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <random>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "engine/common/host_port.h"
#include "engine/common/log.h"
#include "engine/reactor/reactor.h"
#include "engine/sink/smtp_server.h"
#include "engine/sink/tls_server.h"

namespace salvo::sink {

using reactor::Reactor;

std::string ListenAddress::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text) {
  const std::string text_copy(text);
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("bad listen address '", text_copy, "': ", why,
                                                   " (expected ADDR:PORT, e.g. "
                                                   "127.0.0.1:2525 or [::1]:2525)"));
  };
  absl::StatusOr<HostPort> hp = ParseHostPort(text, {.allow_port_zero = true});
  if (!hp.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        hp.status().message(), " (expected ADDR:PORT, e.g. 127.0.0.1:2525 or [::1]:2525)"));
  if (hp->port < 0)
    return bad(hp->host.find(':') != std::string::npos ? "IPv6 addresses need [brackets]"
                                                       : "missing ':PORT'");
  ListenAddress addr{hp->host, static_cast<uint16_t>(hp->port)};
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, addr.host.c_str(), &a4) != 1 &&
      inet_pton(AF_INET6, addr.host.c_str(), &a6) != 1)
    return bad(absl::StrCat("'", addr.host, "' is not a numeric IPv4 or IPv6 address"));
  return addr;
}

absl::Status ValidateOptions(const SinkOptions& o) {
  auto rate = [](const char* name, double v) -> absl::Status {
    if (!(v >= 0.0 && v <= 1.0))
      return absl::InvalidArgumentError(absl::StrCat(name, " must be in 0..1, got ", v));
    return absl::OkStatus();
  };
  if (auto s = rate("--bounce-rate", o.bounce_rate); !s.ok()) return s;
  if (auto s = rate("--defer-rate", o.defer_rate); !s.ok()) return s;
  if (auto s = rate("--drop-rate", o.drop_rate); !s.ok()) return s;
  if (o.bounce_rate + o.defer_rate > 1.0 + 1e-9)
    return absl::InvalidArgumentError(absl::StrCat(
        "--bounce-rate + --defer-rate must be <= 1, got ", o.bounce_rate + o.defer_rate));
  if (o.shards < 1 || o.shards > 256)
    return absl::InvalidArgumentError(absl::StrCat("--shards must be in 1..256, got ", o.shards));
  if (o.tls_cert.empty() != o.tls_key.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both or neither");
  if (o.delay_ms < 0 || o.delay_ms > 600000)
    return absl::InvalidArgumentError(
        absl::StrCat("--delay-ms must be in 0..600000, got ", o.delay_ms));
  if (o.final_delay_ms < 0 || o.final_delay_ms > 600000)
    return absl::InvalidArgumentError(
        absl::StrCat("--final-delay-ms must be in 0..600000, got ", o.final_delay_ms));
  if (!o.greeting.empty() && (o.greeting.size() < 4 || o.greeting[0] < '2' || o.greeting[0] > '5' ||
                              o.greeting.find_first_of("\r\n") != std::string::npos))
    return absl::InvalidArgumentError(absl::StrCat(
        "--greeting must be one reply line starting with a 2xx-5xx code, got '", o.greeting, "'"));
  return absl::OkStatus();
}

std::string SinkStats::ToJson() const {
  nlohmann::json j;
  j["listen"] = listen;
  j["shards"] = shards;
  j["uptime_seconds"] = uptime_seconds;
  j["connections"] = connections;
  j["connections_open"] = connections_open;
  j["connections_peak"] = connections_peak;
  j["messages"] = messages;
  j["bytes"] = bytes;
  j["recipients_accepted"] = recipients_accepted;
  j["recipients_bounced"] = recipients_bounced;
  j["recipients_deferred"] = recipients_deferred;
  j["recipients_delivered"] = recipients_delivered;
  j["rejected_421"] = rejected_421;
  j["dropped"] = dropped;
  j["bare_line_endings"] = bare_line_endings;
  j["tls_sessions"] = tls_sessions;
  j["tls_resumed"] = tls_resumed;
  j["duplicate_recipients"] = duplicate_recipients;
  j["duplicate_deliveries"] = duplicate_deliveries;
  nlohmann::json d = nlohmann::json::object();
  for (const auto& [domain, c] : domains) {
    d[domain] = {{"accepted", c.accepted},
                 {"bounced", c.bounced},
                 {"deferred", c.deferred},
                 {"delivered", c.delivered}};
  }
  j["domains"] = std::move(d);
  j["clients"] = clients;
  // Hostile input may carry invalid UTF-8 in domain names: replace it.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string SinkStats::Line() const {
  return absl::StrCat("connections=", connections, " open=", connections_open,
                      " messages=", messages, " bytes=", bytes,
                      " rcpt_accepted=", recipients_accepted, " rcpt_bounced=", recipients_bounced,
                      " rcpt_deferred=", recipients_deferred,
                      " rcpt_delivered=", recipients_delivered, " rejected_421=", rejected_421,
                      " dropped=", dropped, " tls_sessions=", tls_sessions,
                      " tls_resumed=", tls_resumed, " duplicate_recipients=", duplicate_recipients);
}

namespace {

constexpr size_t kMaxDomains = 10000;  // a hostile client cannot grow the map forever
constexpr auto kStopGrace = std::chrono::seconds(2);

// Counters of one shard. The shard thread updates them under `mu`, which is
// otherwise only taken by Stats() once a second: uncontended, and simpler
// than posting a snapshot request to every ring.
struct ShardCounters {
  uint64_t connections = 0;
  uint64_t connections_open = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t recipients_accepted = 0;
  uint64_t recipients_bounced = 0;
  uint64_t recipients_deferred = 0;
  uint64_t recipients_delivered = 0;
  uint64_t rejected_421 = 0;
  uint64_t dropped = 0;
  uint64_t bare_line_endings = 0;
  uint64_t tls_sessions = 0;
  uint64_t tls_resumed = 0;
  absl::flat_hash_map<std::string, DomainCounts> domains;
  // Messages by client: "<address> <EHLO name>" (bounded like domains).
  absl::flat_hash_map<std::string, uint64_t> clients;
};

DomainCounts& DomainSlot(ShardCounters& c, std::string_view address) {
  std::string domain = DomainOf(address);
  if (c.domains.size() >= kMaxDomains && !c.domains.contains(domain)) domain = "(other)";
  return c.domains[domain];
}

}  // namespace

class Shard;

class Sink::Impl {
 public:
  explicit Impl(SinkOptions options) : options_(std::move(options)) {}
  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();
  SinkStats Stats() const;
  absl::Status WriteStatsFile() const;

  const SinkOptions& options() const { return options_; }
  ServerOptions& server_options() { return server_options_; }
  bool TakeRateToken();
  // Connections open over every shard, and the most ever open at once.
  void ConnectionOpened() {
    const uint64_t n = open_all_.fetch_add(1, std::memory_order_relaxed) + 1;
    uint64_t peak = open_peak_.load(std::memory_order_relaxed);
    while (n > peak && !open_peak_.compare_exchange_weak(peak, n, std::memory_order_relaxed)) {
    }
  }
  void ConnectionClosed() { open_all_.fetch_sub(1, std::memory_order_relaxed); }
  std::atomic<uint64_t> open_all_{0};
  std::atomic<uint64_t> open_peak_{0};
  void RecordDelivery(const std::string& address);
  uint64_t NextFileNumber() { return file_number_.fetch_add(1) + 1; }
  // Saved files are numbered after the highest N.eml/N.env already in
  // save_dir, so a second run never overwrites the first.
  void StartNumberingAfter(uint64_t n) { file_number_.store(n); }
  SSL_CTX* tls_ctx() const { return tls_ctx_.get(); }
  int final_delay_ms() const { return final_delay_ms_.load(); }
  void SetFinalDelay(int ms) { final_delay_ms_.store(ms); }
  void Keep(const Envelope& env, std::string_view data) {
    absl::MutexLock lock(&kept_mu_);
    kept_.push_back({env.mail_from, env.recipients, std::string(data)});
  }
  std::vector<ReceivedMessage> Messages() const {
    absl::MutexLock lock(&kept_mu_);
    return kept_;
  }

  std::vector<ListenAddress> bound_;

 private:
  void StatsLoop();

  SinkOptions options_;
  ServerOptions server_options_;
  SslCtxPtr tls_ctx_;  // read-only once the shards run; declared first, freed last
  std::vector<std::unique_ptr<Shard>> shards_;
  bool started_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point start_time_;

  std::atomic<int64_t> rate_window_{-1};
  std::atomic<uint64_t> rate_count_{0};
  std::atomic<uint64_t> file_number_{0};
  std::atomic<int> final_delay_ms_{options_.final_delay_ms};
  mutable absl::Mutex kept_mu_;
  std::vector<ReceivedMessage> kept_ ABSL_GUARDED_BY(kept_mu_);

  struct DupStripe {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, uint32_t> seen ABSL_GUARDED_BY(mu);
  };
  std::array<DupStripe, 16> dup_;
  std::atomic<uint64_t> dup_recipients_{0};
  std::atomic<uint64_t> dup_deliveries_{0};

  std::thread stats_thread_;
  absl::Mutex stats_mu_;
  bool stats_stop_ ABSL_GUARDED_BY(stats_mu_) = false;
};

// One connection, owned by its shard; freed in the reactor's Close callback.
struct Connection final : public SessionPolicy {
  Connection(Shard* s, int f, const ServerOptions& o) : shard(s), fd(f), session(o, this) {}
  Verdict OnMail(std::string_view from, uint64_t messages_done) override;
  Verdict OnRcpt(std::string_view rcpt) override;
  Verdict OnData() override;
  void OnMessage(const Envelope& envelope, std::string_view data, uint64_t size) override;
  bool OnStartTls() override;
  void OnBareLineEnding() override;

  Shard* shard;
  int fd;
  ServerSession session;
  std::string peer;      // the client's address
  std::string inflight;  // bytes handed to Send, alive until its callback
  std::string pending;   // replies produced while a send is in flight
  bool sending = false;
  bool closing = false;
  bool close_after_send = false;
  bool final_reply_pending = false;  // `pending` holds a reply to an end of data
  reactor::TimerId delay_timer = 0;
  // STARTTLS: `tls` is created at the STARTTLS command; once tls_on, every
  // byte received is ciphertext and `wire` holds ciphertext to send
  // (`pending` stays plaintext replies, sealed in Flush).
  std::unique_ptr<TlsServerConn> tls;
  std::string wire;
  std::string plain;  // decrypted bytes of the current read (reused)
  bool tls_on = false;
  bool tls_counted = false;
};

// A shard: one thread, one reactor, its connections and counters.
class Shard {
 public:
  Shard(Sink::Impl* sink, int index) : sink_(sink) {
    uint64_t seed = sink->options().seed;
    if (seed == 0) seed = std::random_device{}();
    rng_.seed(seed + static_cast<uint64_t>(index));
  }
  ~Shard() {
    for (Connection* c : conns_) delete c;  // only those a forced stop left behind
  }

  std::vector<int> listen_fds;

  // Creates the reactor on the shard thread and runs it.
  absl::Status StartThread() {
    absl::Notification ready;
    absl::Status status;
    thread_ = std::thread([this, &ready, &status] {
      reactor::ReactorOptions ro;
      ro.recv_buffer_count = sink_->options().recv_buffer_count;
      ro.recv_buffer_size = sink_->options().recv_buffer_size;
      auto r = Reactor::Create(ro);
      if (!r.ok()) {
        status = r.status();
        for (int fd : listen_fds) ::close(fd);
        listen_fds.clear();
        ready.Notify();
        return;
      }
      reactor_ = std::move(r).value();
      for (int fd : listen_fds) {
        reactor_->Accept(fd, [this](int res) { OnAccept(res); });
      }
      ready.Notify();
      reactor_->Run();
      reactor_.reset();  // the ring goes first; connections left over are freed in ~Shard
    });
    ready.WaitForNotification();
    if (!status.ok()) thread_.join();
    return status;
  }

  void RequestStop() {
    if (!thread_.joinable()) return;
    reactor_->Post([this] { BeginStop(); });
    thread_.join();
  }

  uint64_t Messages() const {
    absl::MutexLock lock(&mu_);
    return c_.messages;
  }
  void Snapshot(SinkStats* s) const {
    absl::MutexLock lock(&mu_);
    s->connections += c_.connections;
    s->connections_open += c_.connections_open;
    s->messages += c_.messages;
    s->bytes += c_.bytes;
    s->recipients_accepted += c_.recipients_accepted;
    s->recipients_bounced += c_.recipients_bounced;
    s->recipients_deferred += c_.recipients_deferred;
    s->recipients_delivered += c_.recipients_delivered;
    s->rejected_421 += c_.rejected_421;
    s->dropped += c_.dropped;
    s->bare_line_endings += c_.bare_line_endings;
    s->tls_sessions += c_.tls_sessions;
    s->tls_resumed += c_.tls_resumed;
    for (const auto& [client, n] : c_.clients) s->clients[client] += n;
    for (const auto& [domain, d] : c_.domains) {
      DomainCounts& t = s->domains[domain];
      t.accepted += d.accepted;
      t.bounced += d.bounced;
      t.deferred += d.deferred;
      t.delivered += d.delivered;
    }
  }

  // --- Policy decisions, on the shard thread. ---
  void OnBareLineEnding() {
    absl::MutexLock lock(&mu_);
    ++c_.bare_line_endings;
  }

  Verdict OnMail(uint64_t messages_done) {
    const SinkOptions& o = sink_->options();
    if ((o.max_per_connection > 0 && messages_done >= o.max_per_connection) ||
        (o.max_rate > 0 && !sink_->TakeRateToken())) {
      absl::MutexLock lock(&mu_);
      ++c_.rejected_421;
      return Verdict::kShutdown;
    }
    return Verdict::kAccept;
  }

  Verdict OnRcpt(std::string_view rcpt) {
    const SinkOptions& o = sink_->options();
    double u = (o.bounce_rate > 0 || o.defer_rate > 0) ? uniform_(rng_) : 1.0;
    const bool rejected =
        !o.reject_pattern.empty() && rcpt.find(o.reject_pattern) != std::string_view::npos;
    absl::MutexLock lock(&mu_);
    DomainCounts& d = DomainSlot(c_, rcpt);
    if (rejected || u < o.bounce_rate) {
      ++c_.recipients_bounced;
      ++d.bounced;
      return Verdict::kBounce;
    }
    if (u < o.bounce_rate + o.defer_rate) {
      ++c_.recipients_deferred;
      ++d.deferred;
      return (rng_() & 1) ? Verdict::kDefer450 : Verdict::kDefer451;
    }
    ++c_.recipients_accepted;
    ++d.accepted;
    return Verdict::kAccept;
  }

  Verdict OnData() {
    double drop = sink_->options().drop_rate;
    if (drop > 0 && uniform_(rng_) < drop) return Verdict::kDrop;
    return Verdict::kAccept;
  }

  bool OnStartTls(Connection* c) {
    SSL_CTX* ctx = sink_->tls_ctx();
    if (ctx == nullptr) return false;
    c->tls = TlsServerConn::Create(ctx);
    return c->tls != nullptr;
  }

  void OnMessage(const Envelope& env, std::string_view data, uint64_t size,
                 const std::string& client) {
    {
      absl::MutexLock lock(&mu_);
      if (c_.clients.size() < kMaxDomains || c_.clients.contains(client)) ++c_.clients[client];
      ++c_.messages;
      c_.bytes += size;
      c_.recipients_delivered += env.recipients.size();
      for (const std::string& r : env.recipients) ++DomainSlot(c_, r).delivered;
    }
    if (sink_->options().track_duplicates) {
      for (const std::string& r : env.recipients) sink_->RecordDelivery(r);
    }
    if (!sink_->options().save_dir.empty()) Save(env, data);
    if (sink_->options().keep_messages) sink_->Keep(env, data);
  }

 private:
  void OnAccept(int fd) {
    if (fd < 0) {
      if (fd != -ECANCELED) SALVO_LOG(kWarning, "sink accept failed: {}", strerror(-fd));
      return;
    }
    if (stopping_) {
      ::close(fd);
      return;
    }
    // Replies are small writes, often two in a row (a pipelined group's
    // replies, then the next one): without NODELAY, Nagle holds the second
    // until the client's delayed ACK (40 ms on Linux).
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto* c = new Connection(this, fd, sink_->server_options());
    c->peer = PeerAddress(fd);
    conns_.insert(c);
    {
      absl::MutexLock lock(&mu_);
      ++c_.connections;
      ++c_.connections_open;
    }
    sink_->ConnectionOpened();
    const std::string& greeting = sink_->options().greeting;
    if (greeting.empty()) {
      c->session.Greeting(&c->pending);
    } else {
      c->pending = greeting + "\r\n";
      if (greeting[0] != '2') c->close_after_send = true;  // a refusal: then close
    }
    Flush(c);
    reactor_->Recv(fd, [this, c](int res, std::string_view bytes) { OnRecv(c, res, bytes); });
  }

  void OnRecv(Connection* c, int res, std::string_view bytes) {
    if (c->closing) return;
    if (res <= 0) return CloseConn(c);
    if (c->tls_on) {
      std::string& plain = c->plain;
      plain.clear();
      if (plain.capacity() > (256 << 10)) std::string().swap(plain);
      absl::Status s = c->tls->Receive(bytes, &plain);
      if (!c->tls_counted && c->tls->handshake_done()) {
        c->tls_counted = true;
        absl::MutexLock lock(&mu_);
        ++c_.tls_sessions;
        if (c->tls->resumed()) ++c_.tls_resumed;
      }
      if (!s.ok()) {
        // A failed handshake still sends its alert; then close.
        c->close_after_send = true;
        return Flush(c);
      }
      bytes = plain;
    }
    const uint64_t done_before = c->session.messages_done();
    const ServerSession::Result fed = c->session.Feed(bytes, &c->pending);
    if (c->session.messages_done() != done_before) c->final_reply_pending = true;
    switch (fed) {
      case ServerSession::Result::kContinue:
        break;
      case ServerSession::Result::kStartTls:
        // The replies so far, 220 2.0.0 last, go out in plaintext; the
        // rest of this read was discarded by the session.
        c->wire = std::move(c->pending);
        c->pending.clear();
        c->tls_on = true;
        break;
      case ServerSession::Result::kCloseAfterSend:
        c->close_after_send = true;
        break;
      case ServerSession::Result::kDropNow: {
        // Replies to commands before the dropped one still go out (they
        // were earned); the dropped command gets none.
        absl::MutexLock lock(&mu_);
        ++c_.dropped;
        c->close_after_send = true;
        break;
      }
    }
    Flush(c);
  }

  // Sends what is pending, after --delay-ms if set; one send in flight.
  void Flush(Connection* c) {
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
    int delay = sink_->options().delay_ms;
    if (c->final_reply_pending) {
      c->final_reply_pending = false;
      delay = std::max(delay, sink_->final_delay_ms());
    }
    if (delay > 0) {
      c->delay_timer = reactor_->RunAfter(std::chrono::milliseconds(delay), [this, c] {
        c->delay_timer = 0;
        SendInflight(c);
      });
    } else {
      SendInflight(c);
    }
  }

  void SendInflight(Connection* c) {
    reactor_->Send(c->fd, c->inflight.data(), c->inflight.size(), [this, c](int res) {
      c->sending = false;
      if (c->closing) return;
      if (res < 0) return CloseConn(c);
      if (c->tls_on) {
        // TLS sends are handshake flights and records of a few KB: give
        // the buffer back so an idle TLS connection stays small.
        std::string().swap(c->inflight);
      } else {
        c->inflight.clear();
      }
      Flush(c);
    });
  }

  void CloseConn(Connection* c) {
    if (c->closing) return;
    c->closing = true;
    if (c->delay_timer != 0) reactor_->CancelTimer(c->delay_timer);
    reactor_->Close(c->fd, [this, c] {
      conns_.erase(c);
      delete c;
      {
        absl::MutexLock lock(&mu_);
        --c_.connections_open;
      }
      sink_->ConnectionClosed();
      MaybeFinishStop();
    });
  }

  void BeginStop() {
    stopping_ = true;
    listeners_open_ = listen_fds.size();
    for (int fd : listen_fds) {
      reactor_->Close(fd, [this] {
        --listeners_open_;
        MaybeFinishStop();
      });
    }
    listen_fds.clear();
    std::vector<Connection*> all(conns_.begin(), conns_.end());
    for (Connection* c : all) CloseConn(c);
    // A peer cannot hold the stop: after the grace period the ring stops
    // anyway and whatever is left is freed with it.
    reactor_->RunAfter(kStopGrace, [this] { reactor_->Stop(); });
    MaybeFinishStop();
  }

  void MaybeFinishStop() {
    if (stopping_ && conns_.empty() && listeners_open_ == 0) reactor_->Stop();
  }

  void Save(const Envelope& env, std::string_view data) {
    std::string env_text = absl::StrCat("MAIL FROM:<", env.mail_from, ">\n");
    for (const std::string& r : env.recipients) absl::StrAppend(&env_text, "RCPT TO:<", r, ">\n");
    // Blocking writes on the ring thread: saving is a test feature, not a
    // throughput path. The .env is written last: its presence marks a
    // complete pair. Files are created, never opened: O_EXCL|O_NOFOLLOW, so
    // a symlink or file planted in the folder (the sink may run as root) is
    // never followed or overwritten; such a number is skipped.
    for (int tries = 0; tries < 100; ++tries) {
      uint64_t n = sink_->NextFileNumber();
      std::string base = absl::StrCat(sink_->options().save_dir, "/", n);
      int err = WriteNewFile(base + ".eml", data);
      if (err == EEXIST) continue;
      if (err == 0) err = WriteNewFile(base + ".env", env_text);
      if (err != 0 && !save_error_logged_) {
        SALVO_LOG(kError, "sink cannot save message to {}: {}", base, strerror(err));
        save_error_logged_ = true;
      }
      return;
    }
  }

  // 0 or an errno value. Mode 0600: saved mail is private.
  static int WriteNewFile(const std::string& path, std::string_view bytes) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : EIO;
        ::close(fd);
        return err;
      }
      done += static_cast<size_t>(n);
    }
    return ::close(fd) == 0 ? 0 : errno;
  }

  Sink::Impl* sink_;
  std::thread thread_;
  std::unique_ptr<Reactor> reactor_;
  absl::flat_hash_set<Connection*> conns_;
  bool stopping_ = false;
  size_t listeners_open_ = 0;
  bool save_error_logged_ = false;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  mutable absl::Mutex mu_;
  ShardCounters c_ ABSL_GUARDED_BY(mu_);
};

Verdict Connection::OnMail(std::string_view, uint64_t messages_done) {
  return shard->OnMail(messages_done);
}
Verdict Connection::OnRcpt(std::string_view rcpt) { return shard->OnRcpt(rcpt); }
Verdict Connection::OnData() { return shard->OnData(); }
void Connection::OnMessage(const Envelope& envelope, std::string_view data, uint64_t size) {
  shard->OnMessage(envelope, data, size, peer + " " + session.client_name());
}
bool Connection::OnStartTls() { return shard->OnStartTls(this); }
void Connection::OnBareLineEnding() { shard->OnBareLineEnding(); }

absl::StatusOr<int> OpenListener(const ListenAddress& addr, uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len;
  int family;
  if (addr.host.find(':') != std::string::npos) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    inet_pton(AF_INET6, addr.host.c_str(), &a6->sin6_addr);
    len = sizeof(sockaddr_in6);
    family = AF_INET6;
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    inet_pton(AF_INET, addr.host.c_str(), &a4->sin_addr);
    len = sizeof(sockaddr_in);
    family = AF_INET;
  }
  std::string where = ListenAddress{addr.host, port}.ToString();
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket for ", where, ": ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 4096) != 0) {
    int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", where, ": ", strerror(err)));
  }
  return fd;
}

namespace {

// The highest N of the files named N.eml or N.env in `dir` (0 if none).
uint64_t HighestSavedNumber(const std::string& dir) {
  uint64_t highest = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    size_t dot = name.rfind('.');
    if (dot == std::string_view::npos || dot == 0) continue;
    std::string_view ext = name.substr(dot);
    if (ext != ".eml" && ext != ".env") continue;
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(name.data(), name.data() + dot, n);
    if (ec == std::errc() && p == name.data() + dot) highest = std::max(highest, n);
  }
  ::closedir(d);
  return highest;
}

}  // namespace

uint16_t BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

std::string PeerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  char buf[INET6_ADDRSTRLEN] = "?";
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

absl::Status Sink::Impl::Start() {
  if (started_) return absl::FailedPreconditionError("sink already started");
  if (auto s = ValidateOptions(options_); !s.ok()) return s;
  if (auto s = Reactor::CheckIoUringAvailable(); !s.ok()) return s;
  started_ = true;
  start_time_ = std::chrono::steady_clock::now();
  server_options_.hostname = options_.hostname;
  server_options_.max_message_size = options_.max_message_size;
  server_options_.chunking = options_.chunking;
  server_options_.keep_content = !options_.save_dir.empty() || options_.keep_messages;
  if (!options_.save_dir.empty()) StartNumberingAfter(HighestSavedNumber(options_.save_dir));
  server_options_.starttls = options_.tls;
  if (options_.tls) {
    auto ctx = MakeServerTlsContext(options_.hostname, options_.tls_cert, options_.tls_key);
    if (!ctx.ok()) {
      stopped_ = true;
      return ctx.status();
    }
    tls_ctx_ = std::move(ctx).value();
  }
  if (options_.listen.empty()) options_.listen.push_back(ListenAddress{"127.0.0.1", 2525});

  // Thousands of connections need thousands of fds.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  for (int i = 0; i < options_.shards; ++i) shards_.push_back(std::make_unique<Shard>(this, i));
  absl::Status status;
  for (const ListenAddress& addr : options_.listen) {
    uint16_t port = addr.port;
    for (auto& shard : shards_) {
      auto fd = OpenListener(addr, port);
      if (!fd.ok()) {
        status = fd.status();
        break;
      }
      shard->listen_fds.push_back(*fd);
      port = BoundPort(*fd);  // port 0: the other shards join the chosen port
    }
    if (!status.ok()) break;
    bound_.push_back(ListenAddress{addr.host, port});
  }
  if (status.ok()) {
    for (auto& shard : shards_) {
      status = shard->StartThread();
      if (!status.ok()) break;
    }
  }
  if (!status.ok()) {
    for (auto& shard : shards_) {
      shard->RequestStop();
      for (int fd : shard->listen_fds) ::close(fd);
      shard->listen_fds.clear();
    }
    shards_.clear();
    stopped_ = true;
    return status;
  }
  if (!options_.stats_file.empty()) {
    if (auto s = WriteStatsFile(); !s.ok()) {
      Stop();
      return s;
    }
    stats_thread_ = std::thread([this] { StatsLoop(); });
  }
  return absl::OkStatus();
}

void Sink::Impl::StatsLoop() {
  // Every second, and at once when messages arrive after a second or more
  // without any (the first message, or a sender started again): a reader
  // timing a start (bench/scale.sh) sees its first message within about
  // 50 ms, not within a second. The look every 50 ms reads one counter per
  // shard; the file (with every domain's counts) is written at most twice
  // a second.
  const auto kLook = std::chrono::milliseconds(50);
  auto last_write = std::chrono::steady_clock::now();
  auto last_change = last_write - std::chrono::seconds(1);  // the start counts as quiet
  uint64_t last_count = 0;
  absl::MutexLock lock(&stats_mu_);
  while (!stats_stop_) {
    stats_mu_.AwaitWithTimeout(absl::Condition(&stats_stop_), absl::FromChrono(kLook));
    if (stats_stop_) break;
    stats_mu_.Unlock();
    const auto now = std::chrono::steady_clock::now();
    uint64_t count = 0;
    for (const auto& shard : shards_) count += shard->Messages();
    bool write = now - last_write >= std::chrono::seconds(1);
    if (count != last_count) {
      if (now - last_change >= std::chrono::seconds(1)) write = true;  // after a quiet second
      last_change = now;
      last_count = count;
    }
    if (write) {
      last_write = now;
      if (auto s = WriteStatsFile(); !s.ok()) SALVO_LOG(kWarning, "{}", std::string(s.message()));
    }
    stats_mu_.Lock();
  }
}

void Sink::Impl::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& shard : shards_) shard->RequestStop();
  if (stats_thread_.joinable()) {
    {
      absl::MutexLock lock(&stats_mu_);
      stats_stop_ = true;
    }
    stats_thread_.join();
  }
  if (!options_.stats_file.empty()) {
    if (auto s = WriteStatsFile(); !s.ok()) SALVO_LOG(kWarning, "{}", std::string(s.message()));
  }
}

bool Sink::Impl::TakeRateToken() {
  int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  int64_t window = rate_window_.load(std::memory_order_relaxed);
  if (window != sec && rate_window_.compare_exchange_strong(window, sec)) {
    rate_count_.store(0, std::memory_order_relaxed);
  }
  return rate_count_.fetch_add(1, std::memory_order_relaxed) < options_.max_rate;
}

void Sink::Impl::RecordDelivery(const std::string& address) {
  std::string key = absl::AsciiStrToLower(address);
  DupStripe& stripe = dup_[absl::Hash<std::string>{}(key) % dup_.size()];
  uint32_t count;
  {
    absl::MutexLock lock(&stripe.mu);
    count = ++stripe.seen[key];
  }
  if (count == 2) dup_recipients_.fetch_add(1, std::memory_order_relaxed);
  if (count >= 2) dup_deliveries_.fetch_add(1, std::memory_order_relaxed);
}

SinkStats Sink::Impl::Stats() const {
  SinkStats s;
  for (const ListenAddress& a : bound_) s.listen.push_back(a.ToString());
  s.shards = options_.shards;
  s.connections_peak = open_peak_.load(std::memory_order_relaxed);
  if (started_) {
    s.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
  }
  for (const auto& shard : shards_) shard->Snapshot(&s);
  s.duplicate_recipients = dup_recipients_.load();
  s.duplicate_deliveries = dup_deliveries_.load();
  return s;
}

absl::Status Sink::Impl::WriteStatsFile() const {
  const std::string& path = options_.stats_file;
  if (path.empty()) return absl::OkStatus();
  std::string json = Stats().ToJson();
  json.push_back('\n');
  // Write then rename, so a reader never sees half a file.
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    return absl::UnavailableError(
        absl::StrCat("cannot write stats file ", tmp, ": ", strerror(errno)));
  bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    return absl::UnavailableError(
        absl::StrCat("cannot write stats file ", path, ": ", strerror(errno)));
  return absl::OkStatus();
}

Sink::Sink(SinkOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Sink::~Sink() { Stop(); }
absl::Status Sink::Start() { return impl_->Start(); }
void Sink::Stop() { impl_->Stop(); }
SinkStats Sink::Stats() const { return impl_->Stats(); }
std::vector<ReceivedMessage> Sink::Messages() const { return impl_->Messages(); }
void Sink::SetFinalDelay(int ms) { impl_->SetFinalDelay(ms); }
std::vector<ListenAddress> Sink::Bound() const { return impl_->bound_; }
absl::Status Sink::WriteStatsFile() const { return impl_->WriteStatsFile(); }

}  // namespace salvo::sink
