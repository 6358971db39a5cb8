#include "dkim/signer.h"

#include "engine/common/base64.h"
#include "engine/common/openssl_bio.h"
#include "engine/common/strings.h"

#include <openssl/err.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstring>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/common/log.h"

namespace salvo::dkim {
namespace {

constexpr std::size_t kMaxLine = 78;
constexpr std::size_t kSha256Len = 32;

// Feeds canonical body bytes into a digest. Small writes (words, CRLFs) are
// gathered in a fixed buffer so the digest sees few, large updates; large
// runs go straight from the message.
class DigestSink final : public BodySink {
 public:
  explicit DigestSink(EVP_MD_CTX* ctx) : ctx_(ctx) {}
  void Write(std::string_view bytes) override {
    if (bytes.size() >= kDirect) {
      Flush();
      ok_ &= EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()) == 1;
      return;
    }
    if (used_ + bytes.size() > sizeof(buf_)) Flush();
    std::memcpy(buf_ + used_, bytes.data(), bytes.size());
    used_ += bytes.size();
  }
  bool Finish() {
    Flush();
    return ok_;
  }

 private:
  static constexpr std::size_t kDirect = 512;
  void Flush() {
    if (used_ == 0) return;
    ok_ &= EVP_DigestUpdate(ctx_, buf_, used_) == 1;
    used_ = 0;
  }
  EVP_MD_CTX* ctx_;
  bool ok_ = true;
  std::size_t used_ = 0;
  char buf_[4096];
};

// The instance of `name` to sign next: RFC 6376 5.4.2, multiple instances are
// signed from the bottom up. `used` counts instances of this name already
// taken. Returns nullptr when none is left (over-signing).
const HeaderField* NthFromBottom(const ParsedMessage& m, std::string_view name, int used) {
  for (auto it = m.fields.rbegin(); it != m.fields.rend(); ++it) {
    if (EqualsIgnoreCase(it->name, name)) {
      if (used == 0) return &*it;
      --used;
    }
  }
  return nullptr;
}

// Value of tag `tag` in a DKIM-Signature field text, FWS removed.
std::string TagValue(std::string_view field, std::string_view tag) {
  const std::size_t colon = field.find(':');
  std::string_view value = colon == std::string_view::npos ? field : field.substr(colon + 1);
  for (std::string_view part : Split(value, ';')) {
    std::string compact;
    for (char c : part) {
      if (c != ' ' && c != '\t' && c != '\r' && c != '\n') compact.push_back(c);
    }
    const std::size_t eq = compact.find('=');
    if (eq != std::string::npos && compact.substr(0, eq) == tag) return compact.substr(eq + 1);
  }
  return "";
}

}  // namespace

const std::vector<std::string_view>& DefaultSignedHeaderNames() {
  static const auto* names = new std::vector<std::string_view>{"From",
                                                               "Sender",
                                                               "Reply-To",
                                                               "Subject",
                                                               "Date",
                                                               "Message-ID",
                                                               "To",
                                                               "Cc",
                                                               "MIME-Version",
                                                               "Content-Type",
                                                               "Content-Transfer-Encoding",
                                                               "In-Reply-To",
                                                               "References",
                                                               "List-Id",
                                                               "List-Help",
                                                               "List-Unsubscribe",
                                                               "List-Unsubscribe-Post",
                                                               "List-Subscribe",
                                                               "List-Post",
                                                               "List-Owner",
                                                               "List-Archive",
                                                               "Feedback-ID",
                                                               "Precedence",
                                                               "Auto-Submitted"};
  return *names;
}

const std::vector<std::string_view>& OverSignedHeaderNames() {
  static const auto* names = new std::vector<std::string_view>{"From",
                                                               "Reply-To",
                                                               "Subject",
                                                               "Date",
                                                               "Message-ID",
                                                               "To",
                                                               "Cc",
                                                               "MIME-Version",
                                                               "Content-Type",
                                                               "Content-Transfer-Encoding",
                                                               "List-Unsubscribe",
                                                               "List-Unsubscribe-Post",
                                                               "Feedback-ID"};
  return *names;
}

std::vector<std::string> DefaultSignedHeaders(const ParsedMessage& message) {
  struct Entry {
    std::string lower;
    bool over;
  };
  static const auto* table = [] {
    auto* t = new std::vector<Entry>;
    for (std::string_view name : DefaultSignedHeaderNames()) {
      bool over = false;
      for (std::string_view o : OverSignedHeaderNames()) over |= o == name;
      t->push_back(Entry{AsciiLower(name), over});
    }
    return t;
  }();
  // One pass over the fields: occurrences of each default name.
  int counts[64] = {};
  SALVO_CHECK(table->size() <= 64);
  for (const HeaderField& f : message.fields) {
    for (std::size_t i = 0; i < table->size(); ++i) {
      if (EqualsIgnoreCase(f.name, (*table)[i].lower)) {
        ++counts[i];
        break;
      }
    }
  }
  std::vector<std::string> out;
  out.reserve(32);
  for (std::size_t i = 0; i < table->size(); ++i) {
    const int times = counts[i] + ((*table)[i].over ? 1 : 0);
    for (int k = 0; k < times; ++k) out.push_back((*table)[i].lower);
  }
  return out;
}

std::string FoldSignatureField(const std::vector<std::string>& tags) {
  std::string out = "DKIM-Signature:";
  std::size_t col = out.size();
  auto put_word = [&](std::string_view word, bool space_before) {
    // `word` goes on this line if it fits, else on a new continuation line.
    const std::size_t need = word.size() + (space_before ? 1 : 0);
    if (col + need > kMaxLine && col > 1) {
      out.append("\r\n ");
      col = 1;
    } else if (space_before) {
      out.push_back(' ');
      ++col;
    }
    out.append(word);
    col += word.size();
  };
  for (std::size_t t = 0; t < tags.size(); ++t) {
    const std::string& tag = tags[t];
    const bool last = t + 1 == tags.size();
    if (tag.rfind("b=", 0) == 0) {
      // b= starts its own line so its (later filled) value never moves the
      // text before it; the value is split anywhere (FWS is ignored in b=).
      out.append("\r\n b=");
      col = 3;
      std::string_view v(tag);
      v.remove_prefix(2);
      while (!v.empty()) {
        if (col >= kMaxLine) {
          out.append("\r\n ");
          col = 1;
        }
        const std::size_t take = std::min(v.size(), kMaxLine - col);
        out.append(v.substr(0, take));
        col += take;
        v.remove_prefix(take);
      }
      if (!last) {
        out.push_back(';');
        ++col;
      }
      continue;
    }
    const std::string term = last ? tag : tag + ";";
    if (tag.rfind("h=", 0) == 0 && 1 + term.size() + col > kMaxLine) {
      // Break h= after colons.
      const std::vector<std::string_view> names = Split(std::string_view(term).substr(2), ':');
      for (std::size_t i = 0; i < names.size(); ++i) {
        std::string word = i == 0 ? Cat("h=", names[i]) : std::string(names[i]);
        if (i + 1 < names.size()) word.push_back(':');
        if (i == 0) {
          put_word(word, true);
        } else if (col + word.size() > kMaxLine) {
          out.append("\r\n ");
          col = 1;
          out.append(word);
          col += word.size();
        } else {
          out.append(word);
          col += word.size();
        }
      }
      continue;
    }
    put_word(term, true);
  }
  return out;
}

Signer::Signer()
    : body_ctx_(EVP_MD_CTX_new()), header_ctx_(EVP_MD_CTX_new()), ed_ctx_(EVP_MD_CTX_new()) {
  // Fetch SHA-256 once: with OpenSSL 3, passing EVP_sha256() to
  // EVP_DigestInit_ex looks the algorithm up in the provider on every call.
  sha256_ = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  SALVO_CHECK(body_ctx_ != nullptr && header_ctx_ != nullptr && ed_ctx_ != nullptr &&
              sha256_ != nullptr);
  scratch_.reserve(4096);
}

Signer::~Signer() {
  for (auto& [pkey, ctx] : rsa_ctx_) EVP_PKEY_CTX_free(ctx);
  for (auto& [pkey, ctx] : ed_ctx_template_) EVP_MD_CTX_free(ctx);
  EVP_MD_CTX_free(body_ctx_);
  EVP_MD_CTX_free(header_ctx_);
  EVP_MD_CTX_free(ed_ctx_);
  EVP_MD_free(sha256_);
}

absl::StatusOr<std::string> Signer::BodyHash(std::string_view message,
                                             Canonicalization body_canon) {
  auto parsed = ParseMessage(message);
  if (!parsed.ok()) return parsed.status();
  unsigned char digest[kSha256Len];
  if (auto s = HashBody(parsed->body, body_canon, digest); !s.ok()) return s;
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

absl::Status Signer::HashBody(std::string_view body, Canonicalization body_canon,
                              unsigned char* digest) {
  if (EVP_DigestInit_ex(body_ctx_, sha256_, nullptr) != 1) {
    return absl::InternalError("SHA-256 init failed: " + tlsio::LastErrors());
  }
  bool ok = true;
  if (auto prefix = CanonicalBodyAsPrefix(body_canon, body); prefix.has_value()) {
    // Already canonical: the message's own bytes in one update (about 4 us
    // less than the line-by-line stream for 20 KB).
    ok = EVP_DigestUpdate(body_ctx_, prefix->text.data(), prefix->text.size()) == 1 &&
         (!prefix->crlf || EVP_DigestUpdate(body_ctx_, "\r\n", 2) == 1);
  } else {
    DigestSink sink(body_ctx_);
    BodyCanonicalizer canon(body_canon, &sink);
    canon.Update(body);
    canon.Finish();
    ok = sink.Finish();
  }
  unsigned int len = 0;
  if (!ok || EVP_DigestFinal_ex(body_ctx_, digest, &len) != 1 || len != kSha256Len) {
    return absl::InternalError("SHA-256 of the body failed: " + tlsio::LastErrors());
  }
  return absl::OkStatus();
}

absl::Status Signer::HashHeaders(const ParsedMessage& message, Canonicalization header_canon,
                                 absl::Span<const std::string> names,
                                 std::string_view signature_field, unsigned char* digest) {
  scratch_.clear();
  for (std::size_t i = 0; i < names.size(); ++i) {
    int used = 0;
    for (std::size_t j = 0; j < i; ++j) {
      if (EqualsIgnoreCase(names[j], names[i])) ++used;
    }
    const HeaderField* f = NthFromBottom(message, names[i], used);
    if (f != nullptr) CanonicalizeHeader(header_canon, f->raw, &scratch_);
  }
  if (header_canon == Canonicalization::kSimple) {
    scratch_.append(signature_field);
  } else {
    CanonicalizeHeader(header_canon, signature_field, &scratch_);
    scratch_.resize(scratch_.size() - 2);  // the signature field is hashed without CRLF
  }
  unsigned int len = 0;
  if (EVP_DigestInit_ex(header_ctx_, sha256_, nullptr) != 1 ||
      EVP_DigestUpdate(header_ctx_, scratch_.data(), scratch_.size()) != 1 ||
      EVP_DigestFinal_ex(header_ctx_, digest, &len) != 1 || len != kSha256Len) {
    return absl::InternalError("SHA-256 of the header fields failed: " + tlsio::LastErrors());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Signer::SignHeaderHash(const DkimKey& key, const unsigned char* digest,
                                                   std::size_t digest_len) {
  unsigned char sig[1024];  // RSA-4096 needs 512
  std::size_t sig_len = sizeof(sig);
  if (key.type == KeyType::kEd25519) {
    // RFC 8463 section 3: pure Ed25519 over the SHA-256 digest of the
    // canonical header data (not over the data itself).
    // Initializing a DigestSign context fetches the algorithm by name from
    // the provider (locks, hash lookups). Do that once per key and shard, and
    // start each signature from a copy of the initialized context.
    EVP_MD_CTX*& prepared = ed_ctx_template_[key.pkey.get()];
    if (prepared == nullptr) {
      prepared = EVP_MD_CTX_new();
      if (prepared == nullptr ||
          EVP_DigestSignInit(prepared, nullptr, nullptr, nullptr, key.pkey.get()) != 1) {
        EVP_MD_CTX_free(prepared);
        ed_ctx_template_.erase(key.pkey.get());
        return absl::InternalError(
            Cat("Ed25519 signing context for ", key.path, " failed: ", tlsio::LastErrors()));
      }
    }
    if (EVP_MD_CTX_copy_ex(ed_ctx_, prepared) != 1 ||
        EVP_DigestSign(ed_ctx_, sig, &sig_len, digest, digest_len) != 1) {
      return absl::InternalError(
          Cat("Ed25519 signing with ", key.path, " failed: ", tlsio::LastErrors()));
    }
  } else {
    EVP_PKEY_CTX*& ctx = rsa_ctx_[key.pkey.get()];
    if (ctx == nullptr) {
      ctx = EVP_PKEY_CTX_new(key.pkey.get(), nullptr);
      if (ctx == nullptr || EVP_PKEY_sign_init(ctx) != 1 ||
          EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
          EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
        EVP_PKEY_CTX_free(ctx);
        rsa_ctx_.erase(key.pkey.get());
        return absl::InternalError(
            Cat("RSA signing context for ", key.path, " failed: ", tlsio::LastErrors()));
      }
    }
    if (EVP_PKEY_sign(ctx, sig, &sig_len, digest, digest_len) != 1) {
      return absl::InternalError(
          Cat("RSA signing with ", key.path, " failed: ", tlsio::LastErrors()));
    }
  }
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(sig), sig_len));
}

absl::StatusOr<std::string> Signer::SignFieldTemplate(const ParsedMessage& message,
                                                      std::string_view signature_field,
                                                      const DkimKey& key) {
  Canonicalization header_canon = Canonicalization::kSimple;
  Canonicalization body_canon = Canonicalization::kSimple;
  const std::string c = TagValue(signature_field, "c");
  if (!c.empty() && !ParseCanonicalization(c, &header_canon, &body_canon)) {
    return absl::InvalidArgumentError(Cat("bad c= value '", c, "'"));
  }
  const std::string h = TagValue(signature_field, "h");
  std::vector<std::string> names;
  for (std::string_view n : Split(h, ':')) names.emplace_back(n);
  if (names.empty() || names[0].empty()) return absl::InvalidArgumentError("no h= tag");
  unsigned char digest[kSha256Len];
  if (auto s = HashHeaders(message, header_canon, names, signature_field, digest); !s.ok()) {
    return s;
  }
  return SignHeaderHash(key, digest, sizeof(digest));
}

absl::StatusOr<std::string> Signer::Sign(std::string_view message,
                                         absl::Span<const DkimKey* const> keys,
                                         const SignOptions& options) {
  if (keys.empty()) return absl::InvalidArgumentError("no DKIM key to sign with");
  for (const DkimKey* key : keys) {
    if (key == nullptr || key->pkey == nullptr) {
      return absl::InvalidArgumentError("DKIM key list holds an empty key");
    }
  }
  auto parsed = ParseMessage(message);
  if (!parsed.ok()) return parsed.status();
  bool has_from = false;
  for (const HeaderField& f : parsed->fields) has_from |= EqualsIgnoreCase(f.name, "From");
  if (!has_from) {
    return absl::InvalidArgumentError("message has no From header field (DKIM must sign From)");
  }

  // Body hash, once for all keys; taken from a remembered body only when
  // that body is byte for byte this one (same canonicalization).
  unsigned char body_digest[kSha256Len];
  const RememberedBody* same = nullptr;
  for (std::size_t i = 0; i < remembered_count_ && same == nullptr; ++i) {
    const RememberedBody& r = remembered_[i];
    // (An empty body has no data() to compare: memcmp wants two pointers.)
    if (r.canon == options.body_canon && r.body.size() == parsed->body.size() &&
        (r.body.empty() || std::memcmp(r.body.data(), parsed->body.data(), r.body.size()) == 0)) {
      same = &r;
    }
  }
  if (same != nullptr) {
    std::memcpy(body_digest, same->digest, kSha256Len);
    ++body_hash_reused_;
  } else {
    if (auto s = HashBody(parsed->body, options.body_canon, body_digest); !s.ok()) return s;
    if (options.remember_body && parsed->body.size() <= kMaxRememberedBody) {
      RememberedBody& r = remembered_[remembered_next_];
      remembered_next_ = (remembered_next_ + 1) % kRememberedBodies;
      remembered_count_ = std::min(remembered_count_ + 1, kRememberedBodies);
      r.canon = options.body_canon;
      r.body.assign(parsed->body);
      std::memcpy(r.digest, body_digest, kSha256Len);
    }
  }
  const std::string bh = Base64Encode(
      std::string_view(reinterpret_cast<const char*>(body_digest), sizeof(body_digest)));

  std::vector<std::string> names;
  if (options.headers.empty()) {
    names = DefaultSignedHeaders(*parsed);
  } else {
    for (const std::string& n : options.headers) {
      std::string name(StripWhitespace(n));
      if (name.empty() || name.find_first_of(": \t\r\n;") != std::string::npos) {
        return absl::InvalidArgumentError(Cat("bad header name '", n, "' in h= list"));
      }
      names.push_back(AsciiLower(name));
    }
  }
  bool signs_from = false;
  for (const std::string& n : names) signs_from |= n == "from";
  if (!signs_from) return absl::InvalidArgumentError("the h= list must include From");
  const int64_t t =
      options.timestamp.has_value() ? *options.timestamp : absl::ToUnixSeconds(absl::Now());
  std::string h = "h=";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) h.push_back(':');
    h.append(names[i]);
  }
  const std::string c = Cat("c=", CanonicalizationName(options.header_canon), "/",
                            CanonicalizationName(options.body_canon));

  std::string out;
  for (const DkimKey* key : keys) {
    std::vector<std::string> tags;
    tags.reserve(11);
    tags.push_back("v=1");
    tags.push_back(Cat("a=", key->Algorithm()));
    tags.push_back(c);
    tags.push_back(Cat("d=", key->domain));
    tags.push_back(Cat("s=", key->selector));
    tags.push_back(Cat("t=", t));
    if (options.expire_after_seconds.has_value()) {
      tags.push_back(Cat("x=", t + *options.expire_after_seconds));
    }
    if (!options.identity.empty()) tags.push_back(Cat("i=", options.identity));
    tags.push_back(h);
    tags.push_back(Cat("bh=", bh));
    tags.push_back("b=");
    const std::string field = FoldSignatureField(tags);
    unsigned char digest[kSha256Len];
    if (auto s = HashHeaders(*parsed, options.header_canon, names, field, digest); !s.ok()) {
      return s;
    }
    auto b = SignHeaderHash(*key, digest, sizeof(digest));
    if (!b.ok()) return b.status();
    tags.back() = Cat("b=", *b);
    // Same folding as `field`, plus the b= value (which starts its own line).
    out.append(FoldSignatureField(tags));
    out.append("\r\n");
  }
  return out;
}

}  // namespace salvo::dkim
