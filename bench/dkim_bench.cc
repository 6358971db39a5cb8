// DKIM signing cost vs the crypto floor. Signs a 20 KB message with RSA-2048,
// Ed25519 and both (dual), and measures in the same run a bare OpenSSL RSA-2048
// sign of a 32-byte digest, a bare Ed25519 sign and SHA-256 of the 20 KB
// message. Prints the ratios at the end; target: Sign(RSA-2048) <= 1.1 x
// (bare RSA sign + SHA-256 of the message).
//
//   build-*/bench/dkim_bench [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "dkim/key_store.h"
#include "dkim/signer.h"

namespace {

using salvo::dkim::DkimKey;

const std::string& Message20K() {
  static const std::string* msg = [] {
    auto* m = new std::string(
        "From: \"Example Shop\" <news@example.com>\r\n"
        "To: alice@example.net\r\n"
        "Subject: This week's offers: 20% off everything in the store\r\n"
        "Date: Sat, 28 Nov 2026 01:00:00 +0000\r\n"
        "Message-ID: <c1.r1234567.1764291600@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "List-Unsubscribe: <https://example.com/u/abcdef0123456789>,\r\n"
        " <mailto:unsub-abcdef0123456789@example.com>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "Feedback-ID: c1:campaign:salvo\r\n"
        "\r\n");
    const std::string line =
        "<p style=3D\"margin:0\">Lorem ipsum dolor sit amet, consectetur adipiscing =\r\n";
    while (m->size() < 20 * 1024) m->append(line);
    return m;
  }();
  return *msg;
}

const DkimKey& RsaKey() {
  static const DkimKey* k = [] {
    auto g = salvo::dkim::GenerateKey(salvo::dkim::KeyType::kRsa, 2048, "example.com", "rsa");
    if (!g.ok()) std::abort();
    return new DkimKey(std::move(g->key));
  }();
  return *k;
}

const DkimKey& EdKey() {
  static const DkimKey* k = [] {
    auto g = salvo::dkim::GenerateKey(salvo::dkim::KeyType::kEd25519, 0, "example.com", "ed");
    if (!g.ok()) std::abort();
    return new DkimKey(std::move(g->key));
  }();
  return *k;
}

void SignWith(benchmark::State& state, std::vector<const DkimKey*> keys) {
  salvo::dkim::Signer signer;  // per shard in the engine: reused across messages
  salvo::dkim::SignOptions options;
  options.timestamp = 1764291600;
  const std::string& msg = Message20K();
  for (auto _ : state) {
    auto out = signer.Sign(msg, keys, options);
    if (!out.ok()) state.SkipWithError(std::string(out.status().message()).c_str());
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}

void BM_Sign_Rsa2048(benchmark::State& state) { SignWith(state, {&RsaKey()}); }
void BM_Sign_Ed25519(benchmark::State& state) { SignWith(state, {&EdKey()}); }
void BM_Sign_Dual(benchmark::State& state) { SignWith(state, {&RsaKey(), &EdKey()}); }

void BM_Bare_Sha256_20K(benchmark::State& state) {
  const std::string& msg = Message20K();
  unsigned char md[32];
  unsigned int len = 0;
  for (auto _ : state) {
    EVP_Digest(msg.data(), msg.size(), md, &len, EVP_sha256(), nullptr);
    benchmark::DoNotOptimize(md);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}

// The floor: one prepared RSA context, PKCS#1 v1.5 over a 32-byte digest.
void BareRsa(benchmark::State& state, bool with_sha) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(RsaKey().pkey.get(), nullptr);
  EVP_PKEY_sign_init(ctx);
  EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
  EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
  const std::string& msg = Message20K();
  unsigned char digest[32] = {1, 2, 3};
  unsigned int dlen = 0;
  unsigned char sig[512];
  for (auto _ : state) {
    if (with_sha) EVP_Digest(msg.data(), msg.size(), digest, &dlen, EVP_sha256(), nullptr);
    size_t sig_len = sizeof(sig);
    if (EVP_PKEY_sign(ctx, sig, &sig_len, digest, 32) != 1) state.SkipWithError("sign failed");
    benchmark::DoNotOptimize(sig);
  }
  EVP_PKEY_CTX_free(ctx);
}
void BM_Bare_Rsa2048_Sign32(benchmark::State& state) { BareRsa(state, false); }
void BM_Bare_Rsa2048_Sign32_Plus_Sha256_20K(benchmark::State& state) { BareRsa(state, true); }

void BM_Bare_Ed25519_Sign32(benchmark::State& state) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char digest[32] = {1, 2, 3};
  unsigned char sig[64];
  for (auto _ : state) {
    size_t sig_len = sizeof(sig);
    EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, EdKey().pkey.get());
    if (EVP_DigestSign(ctx, sig, &sig_len, digest, 32) != 1) state.SkipWithError("sign failed");
    benchmark::DoNotOptimize(sig);
  }
  EVP_MD_CTX_free(ctx);
}

// Canonicalization + SHA-256 of the body alone.
void BodyHash(benchmark::State& state, salvo::dkim::Canonicalization c) {
  salvo::dkim::Signer signer;
  const std::string& msg = Message20K();
  for (auto _ : state) {
    auto bh = signer.BodyHash(msg, c);
    benchmark::DoNotOptimize(bh);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
void BM_BodyHash_Relaxed_20K(benchmark::State& state) {
  BodyHash(state, salvo::dkim::Canonicalization::kRelaxed);
}
void BM_BodyHash_Simple_20K(benchmark::State& state) {
  BodyHash(state, salvo::dkim::Canonicalization::kSimple);
}

// Signing and body canonicalization across message sizes (range(1) bytes):
// the fixed cost (header hashing, the signature) against the per-byte cost.
std::string MessageOfSize(size_t size) {
  const std::string& base = Message20K();
  std::string m = base.substr(0, base.find("\r\n\r\n") + 4);
  const std::string line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n";
  while (m.size() < size) m += line;
  return m;
}
void BM_Sign_Size(benchmark::State& state) {
  const bool rsa = state.range(0) == 0;
  const std::string msg = MessageOfSize(static_cast<size_t>(state.range(1)));
  salvo::dkim::Signer signer;
  salvo::dkim::SignOptions options;
  options.timestamp = 1764291600;
  std::vector<const DkimKey*> keys = {rsa ? &RsaKey() : &EdKey()};
  for (auto _ : state) {
    auto out = signer.Sign(msg, keys, options);
    if (!out.ok()) state.SkipWithError(std::string(out.status().message()).c_str());
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel(rsa ? "rsa2048" : "ed25519");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
void BM_BodyHash_Relaxed_Size(benchmark::State& state) {
  const std::string msg = MessageOfSize(static_cast<size_t>(state.range(0)));
  salvo::dkim::Signer signer;
  for (auto _ : state) {
    auto bh = signer.BodyHash(msg, salvo::dkim::Canonicalization::kRelaxed);
    benchmark::DoNotOptimize(bh);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}

BENCHMARK(BM_Sign_Size)->ArgsProduct({{0, 1}, {2 << 10, 20 << 10, 200 << 10, 1 << 20}});
BENCHMARK(BM_BodyHash_Relaxed_Size)->Arg(2 << 10)->Arg(200 << 10)->Arg(1 << 20);
BENCHMARK(BM_Bare_Sha256_20K);
BENCHMARK(BM_BodyHash_Relaxed_20K);
BENCHMARK(BM_BodyHash_Simple_20K);
BENCHMARK(BM_Bare_Rsa2048_Sign32);
BENCHMARK(BM_Bare_Rsa2048_Sign32_Plus_Sha256_20K);
BENCHMARK(BM_Bare_Ed25519_Sign32);
BENCHMARK(BM_Sign_Rsa2048);
BENCHMARK(BM_Sign_Ed25519);
BENCHMARK(BM_Sign_Dual);

// Console output plus the ratios, from the mean CPU time per iteration of
// each benchmark (median when repetitions are used).
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred || r.iterations == 0) continue;
      const bool aggregate = r.run_type == Run::RT_Aggregate;
      if (aggregate && r.aggregate_name != "median") continue;
      if (!aggregate && have_median_.count(r.run_name.function_name)) continue;
      if (aggregate) have_median_[r.run_name.function_name] = true;
      ns_[r.run_name.function_name] = r.GetAdjustedCPUTime();  // in the run's time unit (ns)
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    auto get = [&](const char* n) { return ns_.count(n) ? ns_[n] : 0.0; };
    const double sha = get("BM_Bare_Sha256_20K");
    const double rsa = get("BM_Bare_Rsa2048_Sign32");
    const double rsa_sha = get("BM_Bare_Rsa2048_Sign32_Plus_Sha256_20K");
    const double ed = get("BM_Bare_Ed25519_Sign32");
    const double s_rsa = get("BM_Sign_Rsa2048");
    const double s_ed = get("BM_Sign_Ed25519");
    const double s_dual = get("BM_Sign_Dual");
    if (sha <= 0 || rsa <= 0 || ed <= 0 || s_rsa <= 0 || s_ed <= 0 || s_dual <= 0) return;
    // The floor is measured twice (combined, and as the sum of its parts);
    // on a busy machine they differ: take the lower, i.e. the stricter target.
    const double floor_rsa = rsa_sha > 0 ? std::min(rsa_sha, rsa + sha) : rsa + sha;
    std::printf("\nDKIM signing vs the crypto floor (20 KB message, CPU time per message):\n");
    std::printf(
        "  RSA-2048:  %8.1f us  floor (RSA sign + SHA-256 20 KB) %8.1f us  ratio %.3f "
        "(target <= 1.100)\n",
        s_rsa / 1e3, floor_rsa / 1e3, s_rsa / floor_rsa);
    std::printf("  Ed25519:   %8.1f us  floor (Ed25519 sign + SHA-256)   %8.1f us  ratio %.3f\n",
                s_ed / 1e3, (ed + sha) / 1e3, s_ed / (ed + sha));
    std::printf("  dual:      %8.1f us  floor (RSA + Ed25519 + SHA-256)  %8.1f us  ratio %.3f\n",
                s_dual / 1e3, (floor_rsa + ed) / 1e3, s_dual / (floor_rsa + ed));
    std::printf("  => %.0f RSA-2048 signed messages/s per core, %.0f Ed25519, %.0f dual\n",
                1e9 / s_rsa, 1e9 / s_ed, 1e9 / s_dual);
  }

 private:
  std::map<std::string, double> ns_;
  std::map<std::string, bool> have_median_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
