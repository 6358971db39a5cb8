#pragma once
// DKIM signer (RFC 6376 rsa-sha256, RFC 8463 ed25519-sha256).
//
// One Signer per shard, used only on that shard's thread: it owns its OpenSSL
// digest and signing contexts and reuses them for every message. Keys come
// from a KeyStore shared read-only by all shards; the KeyStore must outlive
// every Signer that signs with its keys.
//
//   dkim::Signer signer;                              // per shard
//   auto keys = dkim::SelectKeysForFrom(*store, from_header);
//   auto fields = signer.Sign(message, *keys, options);
//   // *fields = "DKIM-Signature: ...\r\n" (one per key): prepend to the message.
//
// Several keys in one call (RSA + Ed25519 dual signing) hash the body once.
#include <openssl/evp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "dkim/canonicalization.h"
#include "dkim/key_store.h"

namespace salvo::dkim {

struct SignOptions {
  Canonicalization header_canon = Canonicalization::kRelaxed;
  Canonicalization body_canon = Canonicalization::kRelaxed;
  // Header names for h=, in order, duplicates allowed (a name listed more
  // times than it occurs is over-signed). Empty: DefaultSignedHeaders().
  std::vector<std::string> headers;
  // t= (Unix seconds). Unset: the current time.
  std::optional<int64_t> timestamp;
  // x= = t + expire_after_seconds when set.
  std::optional<int64_t> expire_after_seconds;
  // i= when non-empty (must be in d= or a subdomain; not checked here).
  std::string identity;
  // The body is likely to come again byte for byte (a campaign whose body
  // has no placeholders): keep a copy of it (up to 1 MiB) with its hash, so
  // that the next identical body is compared (memcmp), not hashed. Whatever
  // this says, a body hash is reused only for a body equal to a remembered
  // one under the same canonicalization, so bh= is always that of the body
  // signed; this only decides what is kept.
  bool remember_body = false;
};

// Header names Salvo signs by default, when present in the message.
const std::vector<std::string_view>& DefaultSignedHeaderNames();
// Of those, the ones over-signed (listed once more than they occur, so that
// nobody can add one, even when absent).
const std::vector<std::string_view>& OverSignedHeaderNames();
// The default h= list for this message: every default header present (once
// per occurrence) plus one extra entry for each over-signed name.
std::vector<std::string> DefaultSignedHeaders(const ParsedMessage& message);

class Signer {
 public:
  Signer();
  ~Signer();
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  // Signs `message` (header block, empty line, body; CRLF line endings) with
  // each key. Returns the DKIM-Signature header fields, in key order, each
  // folded to <= 78 columns and ending with CRLF, ready to prepend.
  absl::StatusOr<std::string> Sign(std::string_view message, absl::Span<const DkimKey* const> keys,
                                   const SignOptions& options);

  // The canonical body hash (base64, as in bh=) with SHA-256.
  absl::StatusOr<std::string> BodyHash(std::string_view message, Canonicalization body_canon);

  // The signing step alone, for reproducing other signers' signatures:
  // `signature_field` is a complete DKIM-Signature header field (name, tag
  // order and folding as they will appear, no trailing CRLF) whose b= value
  // is empty. The header hash covers the fields named by its h= (as it reads
  // c=), then the field itself. Returns the b= value (base64, unfolded).
  absl::StatusOr<std::string> SignFieldTemplate(const ParsedMessage& message,
                                                std::string_view signature_field,
                                                const DkimKey& key);

  // Body hashes taken from a remembered identical body (tests, benchmarks).
  uint64_t body_hashes_reused() const { return body_hash_reused_; }

 private:
  absl::StatusOr<std::string> SignHeaderHash(const DkimKey& key, const unsigned char* digest,
                                             std::size_t digest_len);
  // SHA-256 of the canonical body into `digest` (32 bytes).
  absl::Status HashBody(std::string_view body, Canonicalization body_canon, unsigned char* digest);
  absl::Status HashHeaders(const ParsedMessage& message, Canonicalization header_canon,
                           absl::Span<const std::string> names, std::string_view signature_field,
                           unsigned char* digest);

  EVP_MD_CTX* body_ctx_;
  EVP_MD_CTX* header_ctx_;
  EVP_MD_CTX* ed_ctx_;
  EVP_MD* sha256_;  // fetched once per Signer
  // Per-key RSA signing contexts, initialized once (padding, digest).
  absl::flat_hash_map<const EVP_PKEY*, EVP_PKEY_CTX*> rsa_ctx_;
  // Per-key Ed25519 DigestSign contexts, initialized once; copied per signature.
  absl::flat_hash_map<const EVP_PKEY*, EVP_MD_CTX*> ed_ctx_template_;
  std::string scratch_;  // canonical header bytes, reused
  // Bodies kept because SignOptions::remember_body said they will repeat,
  // with their canonical SHA-256: the last four (campaigns composed on this
  // shard at once), replaced round-robin. Only an equal body (same
  // canonicalization, same bytes) takes its digest from here.
  struct RememberedBody {
    Canonicalization canon = Canonicalization::kSimple;
    std::string body;
    unsigned char digest[32] = {};
  };
  static constexpr std::size_t kRememberedBodies = 4;
  // Larger bodies are hashed every time (memory: at most 4 MiB per Signer).
  static constexpr std::size_t kMaxRememberedBody = 1 << 20;
  RememberedBody remembered_[kRememberedBodies];
  std::size_t remembered_count_ = 0;
  std::size_t remembered_next_ = 0;
  uint64_t body_hash_reused_ = 0;
};

// Folds a DKIM-Signature field: tags separated by "; ", lines <= 78 columns,
// h= broken at colons, b= value split across lines. `tags` are "tag=value"
// strings in order; the last must be the b= tag. Exposed for tests.
std::string FoldSignatureField(const std::vector<std::string>& tags);

}  // namespace salvo::dkim
