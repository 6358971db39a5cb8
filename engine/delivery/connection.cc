// One SMTP connection: connect with failover, the drive loop between the
// session and the reactor's socket, idle and close. Shard thread only.
#include "engine/delivery/connection.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "engine/common/log.h"
#include "engine/delivery/compose_farm.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/shard.h"
#include "engine/delivery/site_pool.h"
#include "engine/smtp/failure_scope.h"

namespace salvo::delivery {

namespace {

// The TLS protocol name as a string literal (Outcome::tls_version outlives
// the session).
const char* StaticTlsName(const smtp::TlsInfo& tls) {
  if (!tls.active) return nullptr;
  for (const char* name : {"TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1"})
    if (tls.protocol == name) return name;
  return "TLS";
}

}  // namespace

Connection::Connection(Shard* shard, SitePool* pool)
    : shard_(shard),
      pool_(pool),
      domain_label_(shard->engine()->registry()->domains().Resolve(pool->info()->domain)) {}

void Connection::ConnectTo(size_t host_index) {
  info_ = pool_->info();
  if (host_index >= info_->hosts.size()) host_index = 0;
  const SiteHost& host = info_->hosts[host_index];
  host_ = host_index;
  state_ = State::kConnecting;
  session_.reset();
  ever_ready_ = false;
  close_outcome_ = smtp::Outcome{};
  armed_deadline_ = absl::InfiniteFuture();
  fd_ = socket(host.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    // Out of descriptors or similar: a local problem, not the host's fault.
    FailBeforeConnect(errno);
    return;
  }
  // SMTP writes whole command groups (RFC 2920) and whole message bodies; Nagle
  // would hold back the small tail of each (the final dot) until the peer's
  // delayed ACK, tens of milliseconds per transaction.
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (info_->source >= 0) {
    // The egress source's address (any port). Another family than the
    // host's, or an address this machine does not have: this connection
    // fails (deferred), it never goes out from another address.
    const auto& src = shard_->engine()->egress_sources()[static_cast<size_t>(info_->source)];
    int err = src.addr.ss_family != host.addr.ss_family ? EAFNOSUPPORT : 0;
    if (!err && bind(fd_, reinterpret_cast<const sockaddr*>(&src.addr), src.addr_len) != 0)
      err = errno;
    if (err) {
      ::close(fd_);
      fd_ = -1;
      SALVO_LOG(kWarning, "egress source {}: cannot send to {} from it: {}", src.name, host.label,
                std::strerror(err));
      FailBeforeConnect(err);
      return;
    }
  }
  reactor::Reactor* r = shard_->reactor();
  connect_timer_ = r->RunAfter(pool_->policy().connect_timeout, [this] {
    connect_timer_ = 0;
    // Cancels the connect; its callback then runs with -ECANCELED.
    HostFailed(smtp::OutcomeForConnectFailure(ETIMEDOUT, label()), true);
  });
  r->Connect(fd_, reinterpret_cast<const sockaddr*>(&host.addr), host.addr_len,
             [this](int res) { OnConnected(res); });
}

// The connection never got a socket to connect (`err`): the host is told
// (not marked down: the trouble is ours), the slots go back, and this
// object is deleted.
void Connection::FailBeforeConnect(int err) {
  pool_->HostFailed(host_, smtp::OutcomeForConnectFailure(err, label()), false);
  pool_->connections--;
  pool_->starting--;
  ReleaseSlots();
  Shard* shard = shard_;
  shard->Forget(this);  // deletes this
  shard->CheckDrained();
}

void Connection::OnConnected(int res) {
  if (state_ != State::kConnecting) return;  // timed out (closing) meanwhile
  if (connect_timer_) {
    shard_->reactor()->CancelTimer(connect_timer_);
    connect_timer_ = 0;
  }
  if (res < 0) {
    shard_->counters()->ConnectFailed(domain_label_);
    HostFailed(smtp::OutcomeForConnectFailure(-res, label()), true);
    return;
  }
  shard_->SessionOpened(domain_label_);
  state_ = State::kOpening;
  session_ = std::make_unique<smtp::Session>(
      shard_->SessionOptions(info_->hosts[host_], pool_->policy(), info_->source));
  shard_->reactor()->Recv(fd_, [this](int n, std::string_view bytes) {
    if (state_ == State::kClosing || !session_) return;
    if (n > 0)
      session_->Feed(bytes);
    else
      session_->OnConnectionLost();
    Drive();
  });
  Drive();
}

// ---------------------------------------------------------------------------
// The drive loop: session events -> actions, output -> socket, deadline -> timer.

void Connection::Drive() {
  if (state_ == State::kClosing || !session_) return;
  smtp::Session& s = *session_;
  for (int guard = 0; s.HasEvents() && guard < 64; ++guard) {
    for (smtp::Event& e : s.TakeEvents()) {
      switch (e.type) {
        case smtp::Event::Type::kReady:
          if (!ever_ready_) {
            ever_ready_ = true;
            if (const smtp::TlsInfo& tls = s.tls_info(); tls.active) {
              shard_->counters()->Add(metrics::Counter::kTlsSessions);
              if (tls.resumed) shard_->counters()->Add(metrics::Counter::kTlsResumed);
            }
            pool_->HostWorks(host_);
          }
          OnReady();
          break;
        case smtp::Event::Type::kTransactionDone:
          if (job_ && e.envelope_id == envelope_id_) ReportJob(std::move(e.outcomes));
          break;
        case smtp::Event::Type::kClosed:
          if (state_ == State::kIdle) Unidle();
          state_ = State::kEnding;
          close_outcome_ = std::move(e.outcome);
          break;
      }
    }
  }
  Flush();
  if (state_ == State::kEnding) {
    if (!send_in_flight_ && !s.HasOutput()) SessionFinished();
    return;
  }
  ArmDeadline();
}

void Connection::OnReady() {
  if (state_ == State::kEnding || state_ == State::kClosing) return;
  state_ = State::kBusy;
  while (true) {
    if (shard_->draining() || messages_ >= pool_->policy().messages_per_connection ||
        pool_->OverShare()) {
      session_->Quit();
      return;
    }
    // [queue] durable_before_next: the server must not accept this
    // connection's next message before the outcome of its last accepted one
    // is recorded (a crash repeats at most one message per connection). With
    // DATA the next transaction goes ahead up to its body and holds the final
    // "." (StartJob: Envelope::hold_end), which takes the MAIL..354 round
    // trip off the wait. With BDAT the whole message is one write after MAIL
    // and RCPT: holding part of it would cost a write and a reply each way
    // per message and save no round trip, so the transaction waits to start.
    if (session_->uses_chunking() && !shard_->IsDurable(awaits_durable_)) {
      shard_->WaitDurable(this);
      return;
    }
    std::optional<Job> job = pool_->TakeJob(pool_->idle.size());
    if (!job) {
      MakeIdle();
      return;
    }
    if (StartJob(std::move(*job))) return;
  }
}

void Connection::DurableNow() {
  if (state_ == State::kClosing || !session_) return;
  if (session_->end_held()) {
    session_->ReleaseEnd();
  } else if (state_ == State::kBusy && !job_) {
    OnReady();  // waiting to start its next transaction
  } else {
    return;
  }
  Drive();
}

bool Connection::StartJob(Job job) {
  if (state_ == State::kIdle) Unidle();
  state_ = State::kBusy;
  if (!job.body) {
    // Nothing composed ahead was available: compose here, now.
    bool permanent = false;
    absl::Status st = shard_->farm()->ComposeHere(&job, &permanent);
    if (!st.ok() || !job.body) {
      shard_->farm()->ReportFailure(std::move(job), st, permanent);
      return false;
    }
  }
  smtp::Envelope env;
  env.id = envelope_id_ = shard_->NextEnvelopeId();
  env.mail_from = job.mail_from;
  for (const JobRecipient& r : job.recipients) env.rcpts.push_back(r.address);
  env.body = *job.body;
  env.body_owner = job.body;
  env.needs_8bit = job.needs_8bitmime;
  env.needs_smtputf8 = job.needs_smtputf8;
  env.body_crlf = job.body_crlf;
  // The server accepted (or refused for good) the last message: this one
  // goes out at once, but its end of data waits until that outcome is
  // recorded (see OnReady).
  const bool hold = env.hold_end = !shard_->IsDurable(awaits_durable_);
  job_ = std::move(job);
  transaction_started_ = absl::Now();
  if (!session_->StartTransaction(std::move(env))) {
    Job j = std::move(*job_);
    job_.reset();
    shard_->Report(std::move(j), smtp::OutcomeForLocal("other", "the SMTP session was not ready",
                                                       false, smtp::Scope::kConnection, label()));
    return false;
  }
  if (hold) shard_->WaitDurable(this);
  return true;
}

void Connection::ReportJob(std::vector<smtp::Outcome> outcomes) {
  shard_->StopWaiting(this);  // a held transaction may end without its end (refused)
  Job job = std::move(*job_);
  job_.reset();
  messages_++;
  JobResult r;
  r.recipients = std::move(job.recipients);
  r.outcomes = std::move(outcomes);
  r.outcomes.resize(r.recipients.size(), r.outcomes.empty() ? smtp::Outcome{} : r.outcomes.back());
  shard_->counters()->Observe(metrics::Histogram::kSmtpTransaction,
                              absl::ToDoubleSeconds(absl::Now() - transaction_started_));
  const char* tls = StaticTlsName(session_->tls_info());
  const uint32_t size = job.body ? static_cast<uint32_t>(job.body->size()) : 0;
  const smtp::Outcome* delivered = nullptr;
  const smtp::Outcome* trouble = nullptr;  // the first that shaping acts on
  for (smtp::Outcome& o : r.outcomes) {
    o.tls_version = tls;
    o.size = size;
    o.source = static_cast<int16_t>(info_->source);
    shard_->CountOutcome(job.labels, o);
    if (!delivered && o.delivered()) delivered = &o;
    if (!trouble && !o.delivered() && (o.rule || o.bounce_class == smtp::Category::kRateLimited))
      trouble = &o;
  }
  for (const smtp::Outcome& o : r.outcomes)
    if (o.delivered() || o.disposition == smtp::Disposition::kBounced) {
      awaits_durable_ = shard_->PendingResultBatch();
      break;
    }
  if (delivered) {
    shard_->counters()->Add(metrics::Counter::kMessagesSent);
    pool_->Delivered();
    pool_->Feedback(*delivered);
  }
  if (trouble) pool_->Feedback(*trouble, job.domain, job.campaign);
  shard_->AddResult(std::move(r));
}

void Connection::Flush() {
  if (send_in_flight_ || state_ == State::kClosing || !session_) return;
  if (!session_->HasOutput()) return;
  // A buffer swap, not a copy; a body the session sends unchanged stays
  // where it was composed (a view in wbuf_, its owner held until the send
  // completes) and goes out with the commands around it in one sendmsg.
  session_->TakeOutput(&wbuf_);
  send_in_flight_ = true;
  shard_->counters()->Add(metrics::Counter::kBytesSent, wbuf_.size());
  auto done = [this](int res) {
    send_in_flight_ = false;
    wbuf_.Clear();  // releases the bodies (keeps the command buffer)
    if (state_ == State::kClosing) return;
    if (res < 0 && session_ && !session_->closed()) session_->OnConnectionLost();
    Drive();
  };
  segments_.clear();
  wbuf_.Segments(&segments_);
  if (segments_.size() == 1) {
    shard_->reactor()->Send(fd_, segments_[0].data(), segments_[0].size(), std::move(done));
  } else {
    shard_->reactor()->SendV(fd_, segments_, std::move(done));
  }
}

void Connection::ArmDeadline() {
  absl::Time d = session_->NextDeadline();
  if (d == absl::InfiniteFuture()) return;
  if (deadline_timer_ != 0 && d >= armed_deadline_) return;
  reactor::Reactor* r = shard_->reactor();
  if (deadline_timer_ != 0) r->CancelTimer(deadline_timer_);
  armed_deadline_ = d;
  absl::Duration left = std::max(absl::ZeroDuration(), d - shard_->session_clock()->Now());
  deadline_timer_ =
      r->RunAfter(absl::ToChronoNanoseconds(left) + std::chrono::milliseconds(1), [this] {
        deadline_timer_ = 0;
        armed_deadline_ = absl::InfiniteFuture();
        if (state_ == State::kClosing || !session_) return;
        session_->OnTimeout(shard_->session_clock()->Now());
        Drive();
      });
}

void Connection::MakeIdle() {
  if (state_ == State::kIdle) return;
  state_ = State::kIdle;
  pool_->idle.push_back(this);
  // An idle connection keeps no message-sized buffers (the send buffer and
  // the session's swap partner stay while messages flow). One that only waits
  // for a job in composition owed to it (one per idle connection) keeps them:
  // it sends again within a loop turn or two.
  if (pool_->composing < pool_->idle.size()) {
    if (!send_in_flight_) wbuf_.Release();
    session_->ReleaseBuffers();
  }
  idle_timer_ = shard_->reactor()->RunAfter(pool_->policy().idle_timeout, [this] {
    idle_timer_ = 0;
    if (state_ != State::kIdle) return;
    Quit();
  });
}

void Connection::Unidle() {
  if (state_ != State::kIdle) return;
  state_ = State::kBusy;
  auto& idle = pool_->idle;
  idle.erase(std::remove(idle.begin(), idle.end(), this), idle.end());
  if (idle_timer_) {
    shard_->reactor()->CancelTimer(idle_timer_);
    idle_timer_ = 0;
  }
}

void Connection::Quit() {
  if (state_ == State::kClosing || !session_) return;
  Unidle();
  session_->Quit();
  Drive();
}

void Connection::Abandon(const smtp::Outcome& open_outcome) {
  if (state_ == State::kClosing) return;
  if (session_ && !session_->closed()) {
    session_->OnConnectionLost();
    for (smtp::Event& e : session_->TakeEvents()) {
      if (e.type == smtp::Event::Type::kTransactionDone && job_ && e.envelope_id == envelope_id_)
        ReportJob(std::move(e.outcomes));
    }
  }
  if (job_) {
    Job j = std::move(*job_);
    job_.reset();
    smtp::Outcome o = open_outcome;
    o.host = label();
    shard_->Report(std::move(j), o);
  }
  Close(-1);
}

// The session is over (QUIT answered, or it failed).
void Connection::SessionFinished() {
  if (close_outcome_.kind == smtp::FailureKind::kTls)
    shard_->counters()->Add(metrics::Counter::kTlsFailures);
  const std::string domain = job_ ? job_->domain : std::string();
  const uint64_t campaign = job_ ? job_->campaign : 0;
  if (job_) {
    // The session closed without reporting the transaction: never delivered.
    smtp::Outcome o = close_outcome_;
    if (o.kind == smtp::FailureKind::kNone) o.host = label();
    Job j = std::move(*job_);
    job_.reset();
    shard_->Report(std::move(j), smtp::AsRetry(std::move(o)));
  }
  // Our credentials refused by a smarthost: the route waits, no deferrals.
  if (close_outcome_.category == "auth" && pool_->policy().credentials)
    pool_->AuthFailed(close_outcome_);
  // Shaping hears of a "slow down" or a suspending rule at any stage.
  if (close_outcome_.rule || close_outcome_.bounce_class == smtp::Category::kRateLimited)
    pool_->Feedback(close_outcome_, domain, campaign);
  if (!ever_ready_ && close_outcome_.kind != smtp::FailureKind::kNone) {
    // Greeting/EHLO/TLS trouble before any transaction: try the next host,
    // but don't mark this one down (421 "too busy" is not "dead").
    HostFailed(close_outcome_, false);
    return;
  }
  // A 421 (or another site-scope refusal) ends the session: the site says
  // "not now", so no new connection replaces this one before the backoff.
  // Recipient- and message-scope failures never end a session.
  if (close_outcome_.site_temporary()) pool_->BackOff(close_outcome_);
  Close(-1);
}

void Connection::HostFailed(const smtp::Outcome& outcome, bool mark_down) {
  // A host index of an older SiteInfo (DNS changed meanwhile) is not marked.
  const bool current = info_ == pool_->info();
  int next =
      pool_->HostFailed(current ? host_ : info_->hosts.size(), outcome, mark_down && current);
  Close(next);
}

void Connection::Close(int retry_host) {
  if (state_ == State::kClosing) return;
  Unidle();
  shard_->StopWaiting(this);
  const bool had_session = session_ != nullptr;
  state_ = State::kClosing;
  reactor::Reactor* r = shard_->reactor();
  if (connect_timer_) r->CancelTimer(connect_timer_);
  if (deadline_timer_) r->CancelTimer(deadline_timer_);
  connect_timer_ = deadline_timer_ = 0;
  if (had_session) shard_->SessionClosed(domain_label_);
  r->Close(fd_, [this, retry_host] { Destroyed(retry_host); });
}

void Connection::Destroyed(int retry_host) {
  fd_ = -1;  // closed by the reactor
  SitePool* pool = pool_;
  if (ever_ready_) pool->live--;
  if (retry_host >= 0 && !shard_->draining()) {
    if (ever_ready_) pool->starting++;
    wbuf_.Clear();
    session_.reset();
    ConnectTo(static_cast<size_t>(retry_host));
    return;
  }
  if (!ever_ready_) pool->starting--;
  pool->connections--;
  ReleaseSlots();
  Shard* shard = shard_;
  shard->Forget(this);  // deletes this
  pool->Pump();
  shard->CheckDrained();
}

}  // namespace salvo::delivery
