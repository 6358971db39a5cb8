#include "engine/smtp/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "engine/common/strings.h"

namespace salvo::smtp {
namespace {

// ex_data slot on SSL objects pointing back at the TlsChannel's context/host.
int ChannelIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

struct ChannelRef {
  TlsClientContext* context;
  std::string host;
};

int NewSessionCallback(SSL* ssl, SSL_SESSION* session) {
  auto* ref = static_cast<ChannelRef*>(SSL_get_ex_data(ssl, ChannelIndex()));
  if (ref == nullptr || ref->context == nullptr) return 0;
  ref->context->StoreSession(ref->host, session);
  return 1;  // we took the reference
}

std::string OpenSslErrors() { return tlsio::ErrorQueue(); }

}  // namespace

absl::StatusOr<std::unique_ptr<TlsClientContext>> TlsClientContext::Create(
    const TlsClientConfig& config) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed: " + OpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
  if (!config.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, config.ca_file.c_str(), nullptr) != 1) {
      std::string err = OpenSslErrors();
      SSL_CTX_free(ctx);
      return absl::InvalidArgumentError(Cat("cannot load CA file ", config.ca_file, ": ", err));
    }
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, NewSessionCallback);
  return std::unique_ptr<TlsClientContext>(new TlsClientContext(ctx, config.session_cache_size));
}

TlsClientContext::~TlsClientContext() {
  for (auto& [host, entry] : sessions_) {
    for (SSL_SESSION* s : entry.sessions) SSL_SESSION_free(s);
  }
  SSL_CTX_free(ctx_);
}

SSL_SESSION* TlsClientContext::FindSession(const std::string& host) {
  auto it = sessions_.find(host);
  if (it == sessions_.end()) return nullptr;
  std::deque<SSL_SESSION*>& pool = it->second.sessions;
  SSL_SESSION* found = nullptr;
  while (!pool.empty() && found == nullptr) {
    SSL_SESSION* s = pool.back();
    if (!SSL_SESSION_is_resumable(s)) {  // used up or expired
      pool.pop_back();
      SSL_SESSION_free(s);
      continue;
    }
    if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
      pool.pop_back();  // single use: the caller gets our reference
    } else {
      SSL_SESSION_up_ref(s);
    }
    found = s;
  }
  if (pool.empty()) sessions_.erase(it);
  return found;
}

void TlsClientContext::StoreSession(const std::string& host, SSL_SESSION* session) {
  auto it = sessions_.find(host);
  if (it != sessions_.end()) {
    std::deque<SSL_SESSION*>& pool = it->second.sessions;
    pool.push_back(session);
    if (pool.size() > kPerHost) {
      SSL_SESSION_free(pool.front());
      pool.pop_front();
    }
    it->second.seq = ++seq_;
    return;
  }
  if (max_ == 0) {
    SSL_SESSION_free(session);
    return;
  }
  if (sessions_.size() >= max_) {
    // Evict the host used longest ago. Linear, but only when the cache is full.
    auto oldest = sessions_.begin();
    for (auto i = sessions_.begin(); i != sessions_.end(); ++i) {
      if (i->second.seq < oldest->second.seq) oldest = i;
    }
    for (SSL_SESSION* s : oldest->second.sessions) SSL_SESSION_free(s);
    sessions_.erase(oldest);
  }
  Entry e;
  e.sessions.push_back(session);
  e.seq = ++seq_;
  sessions_.emplace(host, std::move(e));
}

absl::StatusOr<std::unique_ptr<TlsChannel>> TlsChannel::Create(TlsClientContext* context,
                                                               const std::string& host,
                                                               bool verify) {
  std::unique_ptr<TlsChannel> ch(new TlsChannel());
  ch->context_ = context;
  ch->host_ = host;
  ch->verify_ = verify;
  ch->ssl_ = SSL_new(context->ctx());
  if (ch->ssl_ == nullptr) return absl::InternalError("SSL_new failed: " + OpenSslErrors());
  if (absl::Status st = ch->net_.Attach(ch->ssl_); !st.ok()) return st;
  SSL_set_connect_state(ch->ssl_);
  SSL_set_ex_data(ch->ssl_, ChannelIndex(), new ChannelRef{context, host});
  if (!host.empty()) {
    // SNI only for names, not IP literals.
    bool is_ip = host.find_first_not_of("0123456789.:") == std::string::npos;
    if (!is_ip) SSL_set_tlsext_host_name(ch->ssl_, host.c_str());
    // Checked for both modes so TlsInfo::verified is meaningful; enforced
    // only when `verify`.
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ch->ssl_), host.c_str());
    } else {
      SSL_set1_host(ch->ssl_, host.c_str());
    }
  }
  SSL_set_verify(ch->ssl_, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (SSL_SESSION* s = context->FindSession(host)) {
    SSL_set_session(ch->ssl_, s);
    SSL_SESSION_free(s);
  }
  return ch;
}

TlsChannel::~TlsChannel() {
  if (ssl_ != nullptr) {
    delete static_cast<ChannelRef*>(SSL_get_ex_data(ssl_, ChannelIndex()));
    SSL_free(ssl_);  // frees both BIOs
  }
}

std::string TlsChannel::ErrorString(int ret) {
  int err = SSL_get_error(ssl_, ret);
  std::string s;
  long vr = SSL_get_verify_result(ssl_);
  if (vr != X509_V_OK && verify_) {
    s = Cat("certificate verification failed: ", X509_verify_cert_error_string(vr));
  }
  std::string queue = OpenSslErrors();
  if (s.empty()) {
    s = queue.empty() ? Cat("SSL error ", err) : queue;
  }
  return s;
}

TlsChannel::Step TlsChannel::Handshake() {
  if (done_) return Step::kDone;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    if (SSL_session_reused(ssl_)) context_->CountResumed();
    return Step::kDone;
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Step::kInProgress;
  error_ = ErrorString(r);
  return Step::kFailed;
}

void TlsChannel::FeedCiphertext(std::string_view bytes) { net_.Append(bytes); }

absl::Status TlsChannel::ReadPlaintext(std::string* out) {
  char buf[16384];
  while (true) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, n);
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return absl::OkStatus();
    if (err == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return absl::OkStatus();
    }
    error_ = ErrorString(n);
    return absl::UnavailableError(error_);
  }
}

absl::Status TlsChannel::WritePlaintext(std::string_view bytes) {
  while (!bytes.empty()) {
    ERR_clear_error();
    int n =
        SSL_write(ssl_, bytes.data(), static_cast<int>(std::min<size_t>(bytes.size(), 1 << 30)));
    if (n <= 0) {
      error_ = ErrorString(n);
      return absl::UnavailableError(error_);
    }
    bytes.remove_prefix(n);
  }
  return absl::OkStatus();
}

void TlsChannel::Shutdown() {
  if (!done_) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);  // 0: sent ours, not waiting for the peer's
  ERR_clear_error();
}

TlsInfo TlsChannel::Info() const {
  TlsInfo info;
  info.active = done_;
  if (!done_) return info;
  info.protocol = SSL_get_version(ssl_);
  info.cipher = SSL_get_cipher_name(ssl_);
  long vr = SSL_get_verify_result(ssl_);
  info.verified = vr == X509_V_OK && SSL_get0_peer_certificate(ssl_) != nullptr;
  if (!info.verified) {
    info.verify_error = SSL_get0_peer_certificate(ssl_) == nullptr
                            ? "no peer certificate"
                            : X509_verify_cert_error_string(vr);
  }
  info.resumed = SSL_session_reused(ssl_) == 1;
  return info;
}

}  // namespace salvo::smtp
