#include "engine/smtp/session.h"

#include <openssl/evp.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstring>
#include <utility>

#include "engine/common/base64.h"
#include "engine/common/log.h"
#include "engine/common/strings.h"

namespace salvo::smtp {
namespace {

// An address we can put between <> without letting it inject commands.
bool SafeAddress(std::string_view a) {
  for (unsigned char c : a) {
    if (c < 0x20 || c == 0x7f || c == '<' || c == '>') return false;
  }
  return a.size() <= 1000;
}

Outcome CleanClose(std::string_view host) {
  Outcome o;
  o.disposition = Disposition::kDelivered;
  o.scope = Scope::kConnection;
  o.kind = FailureKind::kNone;
  o.host.assign(host);
  return o;
}

}  // namespace

std::string_view StateName(State s) {
  switch (s) {
    case State::kGreeting:
      return "greeting";
    case State::kEhlo:
      return "ehlo";
    case State::kHelo:
      return "helo";
    case State::kStartTls:
      return "starttls";
    case State::kTlsHandshake:
      return "tls_handshake";
    case State::kAuth:
      return "auth";
    case State::kReady:
      return "ready";
    case State::kTransaction:
      return "transaction";
    case State::kDataBody:
      return "data_body";
    case State::kRset:
      return "rset";
    case State::kQuit:
      return "quit";
    case State::kClosed:
      return "closed";
  }
  return "unknown";
}

namespace {

// Calls on_special(q) for every '\n' at q that needs rewriting: a bare LF
// (no '\r' before it) or, when dot_stuff, one followed by '.'. Ordinary
// CRLF line ends (nearly all of them) cost a few vector instructions per
// 16/32 bytes and no call at all. Returns where the caller's scalar tail
// must continue. Requires begin < p (p[-1] readable).
#if defined(__x86_64__)
template <typename F>
__attribute__((target("avx2"))) const char* ScanAvx2(const char* p, const char* end, bool dot_stuff,
                                                     F& on_special) {
  const __m256i nl = _mm256_set1_epi8('\n');
  const __m256i cr = _mm256_set1_epi8('\r');
  const __m256i dot = _mm256_set1_epi8('.');
  while (end - p >= 33) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    __m256i is_nl = _mm256_cmpeq_epi8(v, nl);
    if (_mm256_testz_si256(is_nl, is_nl)) {  // no line end in these 32 bytes
      p += 32;
      continue;
    }
    __m256i prev = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p - 1));
    __m256i odd = _mm256_andnot_si256(_mm256_cmpeq_epi8(prev, cr), is_nl);
    if (dot_stuff) {
      __m256i next = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 1));
      odd = _mm256_or_si256(odd, _mm256_and_si256(is_nl, _mm256_cmpeq_epi8(next, dot)));
    }
    unsigned mask = static_cast<unsigned>(_mm256_movemask_epi8(odd));
    while (mask != 0) {
      on_special(p + __builtin_ctz(mask));
      mask &= mask - 1;
    }
    p += 32;
  }
  return p;
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

template <typename F>
inline void ForEachSpecialNewline(const char* begin, const char* end, bool dot_stuff,
                                  F&& on_special) {
  auto special = [&](const char* q) {
    return q == begin || q[-1] != '\r' || (dot_stuff && q + 1 < end && q[1] == '.');
  };
  const char* p = begin;
  if (p < end && *p == '\n') on_special(p);  // LF at offset 0 is bare
  if (p < end) ++p;
#if defined(__x86_64__)
  if (HasAvx2()) p = ScanAvx2(p, end, dot_stuff, on_special);
#endif
#if defined(__SSE2__)
  const __m128i nl = _mm_set1_epi8('\n');
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i dot = _mm_set1_epi8('.');
  // p - 1 >= begin and p + 17 <= end: the shifted loads stay inside the body.
  while (end - p >= 17) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i is_nl = _mm_cmpeq_epi8(v, nl);
    if (_mm_movemask_epi8(is_nl) == 0) {
      p += 16;
      continue;
    }
    __m128i prev = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p - 1));
    __m128i odd = _mm_andnot_si128(_mm_cmpeq_epi8(prev, cr), is_nl);
    if (dot_stuff) {
      __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
      odd = _mm_or_si128(odd, _mm_and_si128(is_nl, _mm_cmpeq_epi8(next, dot)));
    }
    unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(odd));
    while (mask != 0) {
      on_special(p + __builtin_ctz(mask));
      mask &= mask - 1;
    }
    p += 16;
  }
#endif
  while (p < end) {
    const char* q = static_cast<const char*>(std::memchr(p, '\n', end - p));
    if (q == nullptr) break;
    if (special(q)) on_special(q);
    p = q + 1;
  }
}

}  // namespace

void AppendNormalizedBody(std::string_view body, bool dot_stuff, std::string* out) {
  out->reserve(out->size() + body.size() + 64);
  const char* begin = body.data();
  const char* end = begin + body.size();
  const char* run = begin;  // start of bytes not yet copied
  if (dot_stuff && begin < end && *begin == '.') out->push_back('.');
  ForEachSpecialNewline(begin, end, dot_stuff, [&](const char* nl) {
    const char* next = nl + 1;
    bool bare = nl == begin || nl[-1] != '\r';
    bool dot = dot_stuff && next < end && *next == '.';
    if (bare) {
      out->append(run, nl - run);
      out->append("\r\n", 2);
    } else {
      out->append(run, next - run);
    }
    if (dot) out->push_back('.');
    run = next;
  });
  out->append(run, end - run);
  if (body.empty()) {
    out->append("\r\n", 2);
  } else if (end[-1] == '\r') {
    out->push_back('\n');
  } else if (end[-1] != '\n') {
    out->append("\r\n", 2);
  }
}

size_t NormalizedBodySize(std::string_view body) {
  size_t size = body.size();
  const char* begin = body.data();
  const char* end = begin + body.size();
  ForEachSpecialNewline(begin, end, false, [&](const char*) { ++size; });
  if (body.empty()) {
    size += 2;
  } else if (end[-1] == '\r') {
    size += 1;
  } else if (end[-1] != '\n') {
    size += 2;
  }
  return size;
}

namespace {
#if defined(__x86_64__)
// Where a scan for "\n." must go on from (the last <33 bytes), or nullptr
// when one was found.
__attribute__((target("avx2"))) const char* SkipNoNlDotAvx2(const char* p, const char* end) {
  const __m256i nl = _mm256_set1_epi8('\n');
  const __m256i dot = _mm256_set1_epi8('.');
  while (end - p >= 33) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 1));
    __m256i hit = _mm256_and_si256(_mm256_cmpeq_epi8(v, nl), _mm256_cmpeq_epi8(w, dot));
    if (!_mm256_testz_si256(hit, hit)) return nullptr;
    p += 32;
  }
  return p;
}
#endif
}  // namespace

bool NoLineStartsWithDot(std::string_view body) {
  if (body.empty()) return true;
  if (body.front() == '.') return false;
  const char* p = body.data();
  const char* end = p + body.size();
  // A "\n." pair anywhere: compare each byte with '\n' and the next with '.'.
#if defined(__x86_64__)
  if (HasAvx2()) {
    p = SkipNoNlDotAvx2(p, end);
    if (p == nullptr) return false;
  }
#endif
#if defined(__SSE2__)
  const __m128i nl = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  while (end - p >= 17) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
    if (_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(v, nl), _mm_cmpeq_epi8(w, dot))) != 0)
      return false;
    p += 16;
  }
#endif
  for (; end - p >= 2; ++p)
    if (p[0] == '\n' && p[1] == '.') return false;
  return true;
}

// ---- OutputBuffer -------------------------------------------------------

template <typename F>
void OutputBuffer::ForEachSegment(F&& f) const {
  size_t skip = consumed_;
  size_t own_pos = 0;
  auto emit = [&](std::string_view b) {
    if (skip >= b.size()) {
      skip -= b.size();
      return;
    }
    b.remove_prefix(skip);
    skip = 0;
    f(b);
  };
  const std::string_view own(own_);
  for (const View& v : views_) {
    emit(own.substr(own_pos, v.at - own_pos));
    emit(v.bytes);
    own_pos = v.at;
  }
  emit(own.substr(own_pos));
}

void OutputBuffer::Segments(std::vector<std::string_view>* out) const {
  ForEachSegment([out](std::string_view b) { out->push_back(b); });
}

void OutputBuffer::AppendView(std::string_view bytes, std::shared_ptr<const void> owner) {
  if (bytes.empty()) return;
  views_.push_back(View{own_.size(), bytes, std::move(owner)});
  views_bytes_ += bytes.size();
}

void OutputBuffer::Consume(size_t n) {
  consumed_ += std::min(n, size());
  if (consumed_ == own_.size() + views_bytes_) {
    Clear();
  } else if (!views_.empty() ? consumed_ >= views_.front().at + views_.front().bytes.size()
                             : consumed_ > 65536 && consumed_ * 2 > own_.size()) {
    Compact();  // a body sent whole goes (its owner with it); or a long own prefix
  }
}

void OutputBuffer::Compact() {
  size_t skip = consumed_;
  size_t cut = 0;  // own bytes to drop from the front
  size_t dropped = 0;
  size_t own_pos = 0;
  bool done = false;
  for (View& v : views_) {
    const size_t piece = v.at - own_pos;
    if (skip < piece) {
      cut = own_pos + skip;
      skip = 0;
      done = true;
      break;
    }
    skip -= piece;
    cut = own_pos = v.at;
    if (skip < v.bytes.size()) {
      v.bytes.remove_prefix(skip);
      views_bytes_ -= skip;
      skip = 0;
      done = true;
      break;
    }
    skip -= v.bytes.size();
    views_bytes_ -= v.bytes.size();
    ++dropped;
  }
  if (!done) cut = own_pos + skip;
  views_.erase(views_.begin(), views_.begin() + static_cast<ptrdiff_t>(dropped));
  own_.erase(0, cut);
  for (View& v : views_) v.at -= cut;
  consumed_ = 0;
}

void OutputBuffer::Clear() {
  own_.clear();
  views_.clear();
  views_bytes_ = 0;
  consumed_ = 0;
}

void OutputBuffer::Release() {
  Clear();
  std::string().swap(own_);
  std::vector<View>().swap(views_);
}

std::string_view OutputBuffer::Flatten() {
  if (views_.empty()) return std::string_view(own_).substr(consumed_);
  std::string flat;
  flat.reserve(size());
  ForEachSegment([&flat](std::string_view b) { flat.append(b); });
  Clear();
  own_.swap(flat);
  return own_;
}

void OutputBuffer::TakeFlat(std::string* into) {
  Flatten();
  if (consumed_ == 0) {
    into->clear();
    own_.swap(*into);
  } else {
    into->assign(own_, consumed_);
  }
  Clear();
}

void OutputBuffer::Swap(OutputBuffer* other) {
  own_.swap(other->own_);
  views_.swap(other->views_);
  std::swap(views_bytes_, other->views_bytes_);
  std::swap(consumed_, other->consumed_);
}

Session::Session(Options options)
    : opts_(std::move(options)),
      clock_(opts_.clock != nullptr ? opts_.clock : Clock::System()),
      parser_(opts_.reply_limits) {
  if (opts_.host_label.empty()) opts_.host_label = opts_.host;
  pending_.reserve(16);
  pending_.push_back(Pending{Cmd::kGreeting, 0});
  now_ = clock_->Now();
  ArmDeadline();
}

Session::~Session() = default;

// ---- Output -------------------------------------------------------------

void Session::Write(std::string_view bytes) { Buf()->append(bytes); }

void Session::WriteBody(std::string_view body, bool dot_stuff) {
  const bool tls = tls_ != nullptr && tls_->handshake_done();
  std::string* out = tls ? &scratch_ : out_.own();
  if (dot_stuff ? BodyNeedsNoStuffing() : BodyIsCanonical()) {
    // As it is: a view when the caller keeps it alive (TLS encrypts a copy).
    if (!tls && txn_->env.body_owner != nullptr) {
      out_.AppendView(body, txn_->env.body_owner);
    } else {
      out->append(body);
    }
    return;
  }
  AppendNormalizedBody(body, dot_stuff, out);
}

bool Session::BodyIsCanonical() const {
  if (!txn_ || !txn_->env.body_crlf) return false;
  std::string_view b = txn_->env.body;
  return b.size() >= 2 && b[b.size() - 2] == '\r' && b[b.size() - 1] == '\n';
}

bool Session::BodyNeedsNoStuffing() {
  if (!BodyIsCanonical()) return false;
  if (txn_->dot_free < 0) txn_->dot_free = NoLineStartsWithDot(txn_->env.body) ? 1 : 0;
  return txn_->dot_free == 1;
}

void Session::FlushTls() {
  if (tls_ == nullptr) return;
  if (!scratch_.empty() && tls_->handshake_done()) {
    absl::Status st = tls_->WritePlaintext(scratch_);
    scratch_.clear();
    if (!st.ok() && state_ != State::kClosed) {
      AbortWith(OutcomeForTlsFailure(std::string(st.message()), opts_.tls == TlsMode::kRequired,
                                     opts_.host_label),
                false);
    }
  }
  tls_->DrainCiphertext(out_.own());
}

void Session::ConsumeOutput(size_t n) {
  out_.Consume(n);
  OutputConsumed(n);
}

void Session::TakeOutput(std::string* into) {
  size_t n = out_.size();
  out_.TakeFlat(into);
  OutputConsumed(n);
}

void Session::TakeOutput(OutputBuffer* into) {
  size_t n = out_.size();
  into->Clear();
  out_.Swap(into);
  OutputConsumed(n);
}

void Session::ReleaseBuffers() {
  if (out_.empty()) out_.Release();
  if (scratch_.empty()) std::string().swap(scratch_);
  if (plain_in_.empty()) std::string().swap(plain_in_);
}

void Session::OutputConsumed(size_t n) {
  if (n > 0 && pending_head_ < pending_.size()) {
    Cmd front = pending_[pending_head_].cmd;
    if (front == Cmd::kDot || front == Cmd::kBdat) {
      now_ = clock_->Now();
      ArmDeadline();
    }
  }
}

std::string* Session::Buf() {
  return tls_ != nullptr && tls_->handshake_done() ? &scratch_ : out_.own();
}

void Session::Expect(Cmd cmd, uint32_t index) {
  bool was_idle = pending_head_ == pending_.size();
  pending_.push_back(Pending{cmd, index});
  if (was_idle) ArmDeadline();
}

void Session::Send(Cmd cmd, uint32_t index, std::string_view line) {
  Append(Buf(), line, "\r\n");
  Expect(cmd, index);
}

// ---- Deadlines ----------------------------------------------------------

absl::Duration Session::TimeoutFor(Cmd cmd) const {
  const Timeouts& t = opts_.timeouts;
  switch (cmd) {
    case Cmd::kGreeting:
      return t.greeting;
    case Cmd::kEhlo:
    case Cmd::kHelo:
      return t.ehlo;
    case Cmd::kStartTls:
      return t.starttls;
    case Cmd::kAuth:
      return t.auth;
    case Cmd::kMail:
      return t.mail;
    case Cmd::kRcpt:
      return t.rcpt;
    case Cmd::kData:
      return t.data_init;
    case Cmd::kDot:
    case Cmd::kBdat:
      return t.data_final;
    case Cmd::kRset:
      return t.rset;
    case Cmd::kQuit:
      return t.quit;
  }
  return t.mail;
}

void Session::ArmDeadline() {
  if (state_ == State::kClosed) {
    deadline_ = absl::InfiniteFuture();
    return;
  }
  if (state_ == State::kTlsHandshake) {
    deadline_ = now_ + opts_.timeouts.starttls;
    return;
  }
  if (pending_head_ == pending_.size()) {
    deadline_ = absl::InfiniteFuture();
    return;
  }
  Cmd front = pending_[pending_head_].cmd;
  absl::Duration d = TimeoutFor(front);
  if ((front == Cmd::kDot || front == Cmd::kBdat) && !out_.empty()) {
    d = opts_.timeouts.data_block;  // still writing the body
  }
  deadline_ = now_ + d;
}

Phase Session::PhaseFor(Cmd cmd) const {
  switch (cmd) {
    case Cmd::kGreeting:
      return Phase::kGreeting;
    case Cmd::kEhlo:
    case Cmd::kHelo:
      return Phase::kEhlo;
    case Cmd::kStartTls:
      return Phase::kStartTls;
    case Cmd::kAuth:
      return Phase::kAuth;
    case Cmd::kMail:
      return Phase::kMail;
    case Cmd::kRcpt:
      return Phase::kRcpt;
    case Cmd::kData:
      return Phase::kData;
    case Cmd::kDot:
    case Cmd::kBdat:
      return Phase::kDataEnd;
    case Cmd::kRset:
      return Phase::kRset;
    case Cmd::kQuit:
      return Phase::kQuit;
  }
  return Phase::kMail;
}

Phase Session::CurrentPhase() const {
  if (state_ == State::kTlsHandshake) return Phase::kTlsHandshake;
  if (pending_head_ < pending_.size()) return PhaseFor(pending_[pending_head_].cmd);
  return state_ == State::kGreeting ? Phase::kGreeting : Phase::kQuit;
}

void Session::OnTimeout(absl::Time now) {
  if (state_ == State::kClosed || now < deadline_) return;
  now_ = now;
  SALVO_LOG(kDebug, "smtp {}: timeout in {}", opts_.host_label, PhaseName(CurrentPhase()));
  AbortWith(OutcomeForTimeout(CurrentPhase(), opts_.host_label), false);
  FlushTls();
}

// ---- State machine ------------------------------------------------------

void Session::Enter(State next) {
  SALVO_LOG(kDebug, "smtp {}: {} -> {}", opts_.host_label, StateName(state_), StateName(next));
  state_ = next;
  switch (next) {
    case State::kGreeting:
      break;
    case State::kEhlo:
      ext_ = Extensions{};
      Send(Cmd::kEhlo, 0, Cat("EHLO ", opts_.helo_name));
      break;
    case State::kHelo:
      tried_helo_ = true;
      Send(Cmd::kHelo, 0, Cat("HELO ", opts_.helo_name));
      break;
    case State::kStartTls:
      Send(Cmd::kStartTls, 0, "STARTTLS");
      break;
    case State::kTlsHandshake:
      StartTls();
      break;
    case State::kAuth:
      SendAuth();
      break;
    case State::kReady:
      Emit(Event{Event::Type::kReady, 0, {}, {}});
      break;
    case State::kTransaction:
      PumpTransaction();
      break;
    case State::kDataBody: {
      internal::Transaction& t = *txn_;
      if (t.mail_ok && t.accepted_count > 0) {
        WriteBody(t.env.body, /*dot_stuff=*/true);
        t.body_sent = true;
        if (t.end_held) {
          t.end_owed = true;  // ReleaseEnd() sends the "."
          break;
        }
      }
      // With no accepted recipient a lone "." ends the data phase (RFC 2920 3.1).
      Write(".\r\n");
      Expect(Cmd::kDot, 0);
      break;
    }
    case State::kRset:
      Send(Cmd::kRset, 0, "RSET");
      break;
    case State::kQuit:
      Send(Cmd::kQuit, 0, "QUIT");
      break;
    case State::kClosed:
      pending_.clear();
      pending_head_ = 0;
      deadline_ = absl::InfiniteFuture();
      break;
  }
}

void Session::Feed(std::string_view bytes) {
  if (state_ == State::kClosed) return;
  now_ = clock_->Now();  // one clock read per call: every deadline armed below uses it
  if (tls_ != nullptr) {
    tls_->FeedCiphertext(bytes);
    if (!tls_->handshake_done()) {
      ContinueHandshake();
      if (tls_ == nullptr || !tls_->handshake_done() || state_ == State::kClosed) {
        FlushTls();
        return;
      }
    }
    absl::Status st = tls_->ReadPlaintext(&plain_in_);
    if (!st.ok()) {
      AbortWith(OutcomeForTlsFailure(std::string(st.message()), opts_.tls == TlsMode::kRequired,
                                     opts_.host_label),
                false);
      FlushTls();
      return;
    }
    parser_.Feed(plain_in_);
    plain_in_.clear();
  } else {
    parser_.Feed(bytes);
  }
  ProcessInput();
  FlushTls();
}

void Session::ProcessInput() {
  Reply reply;
  while (state_ != State::kClosed && state_ != State::kTlsHandshake && parser_.Next(&reply)) {
    HandleReply(reply);
  }
  if (state_ != State::kClosed && !parser_.error().ok()) {
    AbortWith(OutcomeForProtocolError(std::string(parser_.error().message()), opts_.host_label),
              false);
  }
}

void Session::HandleReply(const Reply& reply) {
  if (pending_head_ == pending_.size()) {
    // Nothing was asked. A 421 may come at any time (server shutting down);
    // anything else means the peer is out of sync.
    if (reply.code == 421) {
      AbortWith(OutcomeForReply(reply, Phase::kQuit, opts_.host_label), false);
    } else {
      AbortWith(OutcomeForProtocolError(
                    Cat("unexpected reply \"", reply.ToString(), "\" with no command outstanding"),
                    opts_.host_label),
                false);
    }
    return;
  }
  Pending p = pending_[pending_head_++];
  if (pending_head_ == pending_.size()) {
    pending_.clear();
    pending_head_ = 0;
  }
  if (reply.code == 421 && p.cmd != Cmd::kQuit) {
    // Service closing: no RSET, no QUIT (RFC 5321 3.8; Python issue 5713).
    AbortWith(OutcomeForReply(reply, PhaseFor(p.cmd), opts_.host_label), false);
    return;
  }
  const int cls = reply.code / 100;
  switch (p.cmd) {
    case Cmd::kGreeting:
      if (reply.code == 220) {
        Enter(State::kEhlo);
      } else {
        // e.g. 554 "no SMTP service here": do not EHLO; QUIT (RFC 5321 3.1).
        AbortWith(OutcomeForReply(reply, Phase::kGreeting, opts_.host_label), true);
      }
      break;
    case Cmd::kEhlo:
      if (cls == 2) {
        ext_ = Extensions::Parse(reply);
        AfterEhlo();
      } else if (!tried_helo_ && tls_ == nullptr) {
        Enter(State::kHelo);
      } else {
        AbortWith(OutcomeForReply(reply, Phase::kEhlo, opts_.host_label), true);
      }
      break;
    case Cmd::kHelo:
      if (cls == 2) {
        ext_ = Extensions{};
        AfterEhlo();
      } else {
        AbortWith(OutcomeForReply(reply, Phase::kEhlo, opts_.host_label), true);
      }
      break;
    case Cmd::kStartTls:
      if (reply.code == 220) {
        Enter(State::kTlsHandshake);
      } else if (opts_.tls == TlsMode::kRequired) {
        AbortWith(OutcomeForTlsFailure(Cat("STARTTLS refused: ", reply.ToString()), true,
                                       opts_.host_label),
                  true);
      } else {
        tls_failed_opportunistic_ = true;  // carry on in plaintext
        AfterEhlo();
      }
      break;
    case Cmd::kAuth:
      if (reply.code == 235) {
        authenticated_ = true;
        Enter(State::kReady);
      } else if (reply.code == 334 && auth_step_ == 1) {
        auth_step_ = 2;
        Send(Cmd::kAuth, 0, Base64Encode(opts_.auth->username));
      } else if (reply.code == 334 && auth_step_ == 2) {
        auth_step_ = 3;
        Send(Cmd::kAuth, 0, Base64Encode(opts_.auth->password));
      } else {
        if (auth_step_ >= 1 && auth_step_ <= 3 && reply.code == 334) {
          Send(Cmd::kAuth, 0, "*");  // cancel an exchange we do not understand
        }
        AbortWith(OutcomeForAuthFailure(reply, reply.ToString(), opts_.host_label), true);
      }
      break;
    case Cmd::kMail:
    case Cmd::kRcpt:
    case Cmd::kData:
    case Cmd::kDot:
    case Cmd::kBdat:
      HandleTransactionReply(p.cmd, p.index, reply);
      break;
    case Cmd::kRset:
      if (cls == 2) {
        Enter(State::kReady);
      } else {
        AbortWith(OutcomeForReply(reply, Phase::kRset, opts_.host_label), true);
      }
      break;
    case Cmd::kQuit:
      // A clean end: close_notify keeps the TLS session resumable.
      if (tls_ != nullptr && tls_->handshake_done()) tls_->Shutdown();
      Enter(State::kClosed);
      Emit(Event{Event::Type::kClosed, 0, {}, CleanClose(opts_.host_label)});
      break;
  }
  ArmDeadline();
}

void Session::AfterEhlo() {
  const bool want_tls = opts_.tls != TlsMode::kDisabled;
  const bool required = opts_.tls == TlsMode::kRequired;
  if (tls_ == nullptr && want_tls && !tls_failed_opportunistic_) {
    if (ext_.starttls && opts_.tls_context != nullptr) {
      Enter(State::kStartTls);
      return;
    }
    if (required) {
      AbortWith(OutcomeForTlsFailure(opts_.tls_context == nullptr
                                         ? "TLS required but no TLS context configured"
                                         : "TLS required but the server does not offer STARTTLS",
                                     true, opts_.host_label),
                true);
      return;
    }
  }
  if (opts_.auth.has_value() && !authenticated_) {
    if (tls_ == nullptr && !opts_.allow_auth_without_tls) {
      AbortWith(
          OutcomeForAuthFailure({}, "refusing to send credentials without TLS", opts_.host_label),
          true);
      return;
    }
    if (!ext_.auth_plain && !ext_.auth_login) {
      AbortWith(OutcomeForAuthFailure({}, "server offers neither AUTH PLAIN nor AUTH LOGIN",
                                      opts_.host_label),
                true);
      return;
    }
    Enter(State::kAuth);
    return;
  }
  Enter(State::kReady);
}

void Session::StartTls() {
  parser_.Reset();  // never trust bytes that came with the 220 (CVE-2011-0411)
  const bool required = opts_.tls == TlsMode::kRequired;
  auto ch = TlsChannel::Create(opts_.tls_context, opts_.host, required && opts_.verify_peer);
  if (!ch.ok()) {
    AbortWith(OutcomeForTlsFailure(std::string(ch.status().message()), required, opts_.host_label),
              true);
    return;
  }
  tls_ = std::move(*ch);
  ContinueHandshake();
}

void Session::ContinueHandshake() {
  TlsChannel::Step step = tls_->Handshake();
  tls_->DrainCiphertext(out_.own());
  switch (step) {
    case TlsChannel::Step::kInProgress:
      ArmDeadline();
      return;
    case TlsChannel::Step::kFailed:
      AbortWith(
          OutcomeForTlsFailure(tls_->error(), opts_.tls == TlsMode::kRequired, opts_.host_label),
          false);
      return;
    case TlsChannel::Step::kDone:
      tls_info_ = tls_->Info();
      SALVO_LOG(kDebug, "smtp {}: TLS {} {} verified={} resumed={}", opts_.host_label,
                tls_info_.protocol, tls_info_.cipher, tls_info_.verified, tls_info_.resumed);
      Enter(State::kEhlo);  // RFC 3207 4.2: forget what we knew, EHLO again
      return;
  }
}

void Session::SendAuth() {
  const Credentials& c = *opts_.auth;
  if (ext_.auth_plain) {
    std::string token;
    token.push_back('\0');
    token += c.username;
    token.push_back('\0');
    token += c.password;
    auth_step_ = 10;
    Send(Cmd::kAuth, 0, Cat("AUTH PLAIN ", Base64Encode(token)));
  } else {
    auth_step_ = 1;
    Send(Cmd::kAuth, 0, "AUTH LOGIN");
  }
}

// ---- Transactions -------------------------------------------------------

bool Session::StartTransaction(Envelope envelope) {
  if (state_ != State::kReady || envelope.rcpts.empty()) return false;
  now_ = clock_->Now();
  ++transactions_;
  txn_.emplace();
  internal::Transaction& t = *txn_;
  t.env = std::move(envelope);
  t.end_held = t.env.hold_end;
  const size_t n = t.env.rcpts.size();
  t.outcomes.resize(n);
  t.decided.assign(n, 0);
  t.accepted.assign(n, 0);

  // Refusals decided before sending anything.
  std::optional<Outcome> all;
  if (!SafeAddress(t.env.mail_from)) {
    all = OutcomeForLocal("invalid_sender", "sender address contains forbidden characters", true,
                          Scope::kMessage, opts_.host_label);
  } else if (t.env.needs_smtputf8 && !ext_.smtputf8) {
    all = OutcomeForLocal("smtputf8", "message needs SMTPUTF8 but the server does not offer it",
                          true, Scope::kMessage, opts_.host_label);
  } else if (ext_.size && ext_.max_size > 0 && t.env.body.size() > ext_.max_size) {
    all = OutcomeForLocal(
        "message_too_large",
        Cat("message size ", t.env.body.size(), " exceeds the server's SIZE limit ", ext_.max_size),
        true, Scope::kMessage, opts_.host_label);
  }
  size_t open = 0;
  for (size_t i = 0; i < n; ++i) {
    if (all.has_value()) {
      t.outcomes[i] = *all;
      t.decided[i] = 1;
    } else if (!SafeAddress(t.env.rcpts[i])) {
      t.outcomes[i] =
          OutcomeForLocal("invalid_recipient", "recipient address contains forbidden characters",
                          true, Scope::kRecipient, opts_.host_label);
      t.decided[i] = 1;
    } else {
      ++open;
    }
  }
  if (open == 0) {
    t.need_rset = false;
    FinishTransaction();
  } else {
    Enter(State::kTransaction);
  }
  FlushTls();
  return true;
}

void Session::PumpTransaction() {
  internal::Transaction& t = *txn_;
  const bool pipe = ext_.pipelining && opts_.use_pipelining;
  const bool chunk = ext_.chunking && opts_.use_chunking;
  const size_t n = t.env.rcpts.size();
  while (state_ == State::kTransaction) {
    if (!pipe && pending_head_ < pending_.size()) return;  // one command at a time
    if (!t.mail_sent) {
      // Written straight into the output buffer: no temporary strings.
      std::string* b = Buf();
      Append(b, "MAIL FROM:<", t.env.mail_from, ">");
      if (ext_.size) {
        if (chunk)
          t.chunk_size = BodyIsCanonical() ? t.env.body.size() : NormalizedBodySize(t.env.body);
        Append(b, " SIZE=", chunk ? t.chunk_size : t.env.body.size());
      }
      if (t.env.needs_8bit && ext_.eight_bit_mime) b->append(" BODY=8BITMIME");
      if (t.env.needs_smtputf8 && ext_.smtputf8) b->append(" SMTPUTF8");
      b->append("\r\n");
      t.mail_sent = true;
      Expect(Cmd::kMail, 0);
      continue;
    }
    if (!t.mail_ok && !pipe) return;  // (MAIL failure handled in the reply)
    while (t.next_rcpt < n && t.decided[t.next_rcpt]) ++t.next_rcpt;
    if (t.next_rcpt < n) {
      uint32_t i = static_cast<uint32_t>(t.next_rcpt++);
      Append(Buf(), "RCPT TO:<", t.env.rcpts[i], ">\r\n");
      Expect(Cmd::kRcpt, i);
      continue;
    }
    if (t.data_sent) return;
    if (!pipe && (!t.mail_ok || t.accepted_count == 0)) {
      FinishTransaction();  // nobody to send to; RSET follows
      return;
    }
    t.data_sent = true;
    if (chunk) {
      // One chunk with the whole message. Pipelined, it goes out with MAIL and
      // RCPT (RFC 3030): one round trip per message. Held: MAIL and RCPT go
      // out now, the chunk on ReleaseEnd() (SendEnd).
      if (t.end_held) {
        t.end_owed = true;
        return;
      }
      SendLastChunk();
    } else {
      Send(Cmd::kData, 0, "DATA");
    }
    return;
  }
}

void Session::HandleTransactionReply(Cmd cmd, uint32_t index, const Reply& reply) {
  internal::Transaction& t = *txn_;
  const bool pipe = ext_.pipelining && opts_.use_pipelining;
  const int cls = reply.code / 100;
  const size_t n = t.env.rcpts.size();
  switch (cmd) {
    case Cmd::kMail:
      if (cls == 2) {
        t.mail_ok = true;
      } else {
        Outcome o = OutcomeForReply(reply, Phase::kMail, opts_.host_label);
        for (size_t i = 0; i < n; ++i) {
          if (!t.decided[i]) {
            t.outcomes[i] = o;
            t.decided[i] = 1;
          }
        }
        if (!pipe) {
          t.need_rset = false;
          FinishTransaction();
          return;
        }
      }
      break;
    case Cmd::kRcpt:
      if (!t.mail_ok) break;  // decided by the MAIL failure (expect 503 here)
      if (cls == 2) {
        t.accepted[index] = 1;
        ++t.accepted_count;
      } else {
        t.outcomes[index] = OutcomeForReply(reply, Phase::kRcpt, opts_.host_label);
        t.decided[index] = 1;
      }
      break;
    case Cmd::kData:
      if (reply.code == 354) {
        Enter(State::kDataBody);
        return;
      }
      if (t.mail_ok) {
        Outcome o = OutcomeForReply(reply, Phase::kData, opts_.host_label);
        for (size_t i = 0; i < n; ++i) {
          if (t.accepted[i] && !t.decided[i]) {
            t.outcomes[i] = o;
            t.decided[i] = 1;
          }
        }
      }
      t.need_rset = true;
      FinishTransaction();
      return;
    case Cmd::kDot:
    case Cmd::kBdat:
      if (t.mail_ok && t.accepted_count > 0) {
        Outcome o = OutcomeForReply(reply, Phase::kDataEnd, opts_.host_label);
        for (size_t i = 0; i < n; ++i) {
          if (t.accepted[i] && !t.decided[i]) {
            t.outcomes[i] = o;
            t.decided[i] = 1;
          }
        }
      }
      // After the dot the server has reset the transaction; after a refused
      // BDAT it may not have.
      t.need_rset = cmd == Cmd::kBdat && cls != 2;
      FinishTransaction();
      return;
    default:
      break;
  }
  PumpTransaction();
}

void Session::ReleaseEnd() {
  if (!txn_.has_value() || !txn_->end_held) return;
  now_ = clock_->Now();
  txn_->end_held = false;
  if (!txn_->end_owed) return;  // the end goes out unheld when it is due
  txn_->end_owed = false;
  SendEnd();
  FlushTls();
}

void Session::SendEnd() {
  if (state_ == State::kDataBody) {
    Write(".\r\n");
    Expect(Cmd::kDot, 0);
  } else {
    SendLastChunk();
  }
  ArmDeadline();
}

void Session::SendLastChunk() {
  internal::Transaction& t = *txn_;
  if (!ext_.size)
    t.chunk_size = BodyIsCanonical() ? t.env.body.size() : NormalizedBodySize(t.env.body);
  Append(Buf(), "BDAT ", t.chunk_size, " LAST\r\n");
  WriteBody(t.env.body, /*dot_stuff=*/false);
  t.body_sent = true;
  Expect(Cmd::kBdat, 0);
}

void Session::FinishTransaction() {
  internal::Transaction& t = *txn_;
  for (size_t i = 0; i < t.outcomes.size(); ++i) {
    if (!t.decided[i]) {
      // Unreachable by construction; keep the recipient retryable anyway.
      t.outcomes[i] = OutcomeForProtocolError(
          "transaction ended without a reply for this recipient", opts_.host_label);
    }
  }
  Event e;
  e.type = Event::Type::kTransactionDone;
  e.envelope_id = t.env.id;
  e.outcomes = std::move(t.outcomes);
  Emit(std::move(e));
  bool rset = t.need_rset;
  txn_.reset();
  Enter(rset ? State::kRset : State::kReady);
}

void Session::Abort(const Outcome& open_outcome, const Outcome& session_outcome, bool send_quit) {
  if (state_ == State::kClosed) return;
  if (txn_.has_value()) {
    internal::Transaction& t = *txn_;
    for (size_t i = 0; i < t.outcomes.size(); ++i) {
      if (!t.decided[i]) {
        t.outcomes[i] = open_outcome;
        t.decided[i] = 1;
      }
    }
    Event e;
    e.type = Event::Type::kTransactionDone;
    e.envelope_id = t.env.id;
    e.outcomes = std::move(t.outcomes);
    Emit(std::move(e));
    txn_.reset();
  }
  if (send_quit) Write("QUIT\r\n");
  SALVO_LOG(
      kDebug, "smtp {}: session ends: {} {}", opts_.host_label,
      FailureKindName(session_outcome.kind),
      session_outcome.reply.empty() ? session_outcome.detail : session_outcome.reply.ToString());
  Enter(State::kClosed);
  Emit(Event{Event::Type::kClosed, 0, {}, session_outcome});
}

void Session::Quit() {
  if (state_ == State::kClosed || state_ == State::kQuit) return;
  now_ = clock_->Now();
  if (state_ == State::kReady) {
    Enter(State::kQuit);
  } else {
    Outcome o = OutcomeForLocal("shutdown", "session ended by the client", false,
                                Scope::kConnection, opts_.host_label);
    Abort(o, CleanClose(opts_.host_label),
          state_ != State::kGreeting && state_ != State::kTlsHandshake);
  }
  FlushTls();
}

void Session::OnConnectionLost() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kQuit) {
    Enter(State::kClosed);
    Emit(Event{Event::Type::kClosed, 0, {}, CleanClose(opts_.host_label)});
    return;
  }
  AbortWith(OutcomeForConnectionLost(CurrentPhase(), opts_.host_label), false);
}

std::vector<Event> Session::TakeEvents() {
  std::vector<Event> out;
  out.swap(events_);
  return out;
}

void Session::TakeEvents(std::vector<Event>* out) {
  out->clear();
  out->swap(events_);
}

}  // namespace salvo::smtp
