// salvo bench: end-to-end throughput of the real engine and the real queue
// against a sink, on the user's own machine.
//
// It generates a campaign (N recipients over K domains with a realistic mix,
// messages of S bytes, DKIM keys of the chosen kind) in a temporary folder,
// starts `salvo sink` as its own process (so the sink's CPU is not counted),
// loads the campaign into a fresh RocksDB spool, and runs the same engine
// `salvo send` runs until every recipient is finished. Engine CPU is the
// process's user+sys time during the run; latency is per recipient, from the
// moment the engine takes it from the queue to its outcome.
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "dkim/key_store.h"
#include "engine/cli/commands.h"
#include "engine/cli/observability.h"
#include "engine/cli/wiring.h"
#include "engine/config/config.h"
#include "engine/delivery/engine.h"
#include "engine/delivery/spool_source.h"
#include "engine/deliverylog/writer.h"
#include "engine/message/template.h"
#include "metrics/metrics.h"
#include "queue/spool.h"

namespace salvo::cli {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

struct BenchArgs {
  uint64_t recipients = 20000;
  int domains = 100;
  std::string shaping;  // a shaping file for the engine ("" = none)
  std::string size = "20k";
  std::string dkim = "rsa2048";
  std::string tls = "off";
  std::string sink;  // host:port; empty = start the built-in sink
  int shards = 0;
  int sink_shards = 1;
  int messages_per_connection = 100;
  int connections_per_site = 16;
  // delivery.max_connections of the generated config (0 = the engine's default).
  int max_connections = 0;
  bool json = false;
  bool keep = false;
  double timeout_seconds = 600;
  bool metrics = false;      // labelled counting as `salvo run` does it
  int scrape_every_ms = 0;   // a Prometheus text scrape this often (0 = none)
  std::string delivery_log;  // write the delivery log here ("" = none)
  std::string fleet_redis;   // [fleet] redis for the engine ("" = none)
  // Every per-message feature of a production run at once (issue 19, point
  // 4): provider limits that never bind, the Prometheus endpoint scraped over
  // HTTP every second, the delivery log, VERP return paths, and (unless
  // --dkim is given) dual DKIM signing.
  bool everything_on = false;
  std::string durable_before_next = "on";  // [queue] durable_before_next
  // No placeholder in the body (the Subject keeps its own): every copy's body
  // is the same bytes, as in a newsletter without a personal greeting.
  bool same_body = false;
};

// What --everything-on shapes with, when --shaping names no file: the limits
// of bench/shaping-providers-nonbinding.toml (configured, never binding), with
// the connection limits at --connections.
std::string NonBindingProviders(int connections) {
  std::string text = absl::StrCat(
      "# salvo bench --everything-on\n[default]\nmax_connections = ", connections, "\n");
  static const char* const kProviders[][2] = {
      {"google", "gmail.com"}, {"yahoo", "yahoo.com"}, {"microsoft", "outlook.com"}};
  for (const auto& provider : kProviders) {
    text += absl::StrCat("\n[provider.", provider[0], "]\ndomains = [\"", provider[1],
                         "\"]\nmax_message_rate = \"1000000/s\"\n");
    text += absl::StrCat("max_connections = ", connections, "\n");
  }
  return text;
}

absl::StatusOr<size_t> ParseSize(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("--size: empty");
  size_t mult = 1;
  std::string digits = text;
  char last = static_cast<char>(std::tolower(static_cast<unsigned char>(text.back())));
  if (last == 'k') mult = 1024;
  if (last == 'm') mult = 1024 * 1024;
  if (mult != 1) digits.pop_back();
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit))
    return absl::InvalidArgumentError(
        "--size: expected BYTES with an optional k or M suffix, got '" + text + "'");
  size_t n = std::stoull(digits) * mult;
  if (n < 512 || n > 50 * 1024 * 1024)
    return absl::InvalidArgumentError("--size: must be between 512 bytes and 50M, got '" + text +
                                      "'");
  return n;
}

absl::Status WriteFile(const fs::path& path, std::string_view data, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return absl::UnavailableError(path.string() + ": " + std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      ::close(fd);
      return absl::UnavailableError(path.string() + ": write failed");
    }
    off += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);
  ::close(fd);
  return absl::OkStatus();
}

// The domain mix of a typical B2C list: the big three take 65%, the rest is a
// long tail with a Zipf-like spread.
std::vector<std::string> MakeDomains(int k) {
  std::vector<std::string> domains = {"gmail.com", "yahoo.com", "outlook.com"};
  for (int i = 3; i < k; ++i) domains.push_back(absl::StrCat("tail", i, ".example"));
  return domains;
}

std::string PickDomain(const std::vector<std::string>& domains, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  double x = u(rng);
  if (domains.size() >= 3) {
    if (x < 0.30) return domains[0];
    if (x < 0.50) return domains[1];
    if (x < 0.65) return domains[2];
  }
  if (domains.size() <= 3) return domains[rng() % domains.size()];
  // Zipf-ish over the tail: index ~ tail * y^2.
  double y = u(rng);
  size_t tail = domains.size() - 3;
  size_t i = std::min(tail - 1, static_cast<size_t>(tail * y * y));
  return domains[3 + i];
}

std::string MakeTemplate(size_t size, bool same_body) {
  std::string t =
      "From: Salvo Bench <news@bench.example>\n"
      "Subject: Hello {{first_name}}, your {{city}} offer\n"
      "MIME-Version: 1.0\n"
      "Content-Type: text/plain; charset=us-ascii\n"
      "Content-Transfer-Encoding: 7bit\n"
      "\n"
      "Hi ";
  t += same_body ? "there,\n\n" : "{{first_name}} {{last_name}},\n\n";
  static const char kLine[] =
      "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\n";
  while (t.size() + sizeof(kLine) < size) t += kLine;
  t += same_body ? "See you soon.\n" : "See you in {{city}}.\n";
  return t;
}

struct Paths {
  fs::path dir, data, config, campaign, template_file, recipients, sink_stats;
  // --everything-on: the shaping file, VERP secret, delivery log and the
  // metrics endpoint's port.
  fs::path shaping, verp_secret, delivery_log;
  int metrics_port = 0;
};

// Each sink address is its own destination site, and a site belongs to one
// shard: spreading the domains over several addresses (127.0.0.1-4, as
// several MX hosts would be) lets every shard work. One address: one route.
std::string Routes(const std::vector<std::string>& domains,
                   const std::vector<std::string>& sink_addrs) {
  if (sink_addrs.size() == 1) return absl::StrCat("[routes]\n\"*\" = \"", sink_addrs[0], "\"\n\n");
  std::string routes = "[routes]\n";
  for (size_t i = 0; i < domains.size(); ++i)
    absl::StrAppend(&routes, "\"", domains[i], "\" = \"", sink_addrs[i % sink_addrs.size()],
                    "\"\n");
  return routes + "\n";
}

absl::Status GenerateCampaign(const BenchArgs& a, size_t size, const Paths& p,
                              const std::vector<std::string>& sink_addrs) {
  std::mt19937_64 rng(42);
  std::vector<std::string> domains = MakeDomains(std::max(1, a.domains));
  {
    std::ofstream csv(p.recipients);
    csv << "email,first_name,last_name,city\n";
    static const char* kFirst[] = {"Ana", "Bo", "Chen", "Dara", "Eli", "Farah", "Goran", "Hana"};
    static const char* kCity[] = {"Lisbon", "Osaka", "Lagos", "Quito", "Oslo", "Perth"};
    for (uint64_t i = 0; i < a.recipients; ++i) {
      csv << "user" << i << '@' << PickDomain(domains, rng) << ',' << kFirst[i % 8] << ",Tester"
          << i << ',' << kCity[i % 6] << '\n';
    }
    if (!csv) return absl::UnavailableError(p.recipients.string() + ": write failed");
  }
  if (auto s = WriteFile(p.template_file, MakeTemplate(size, a.same_body)); !s.ok()) return s;

  std::string keys_toml;
  auto add_key = [&](dkim::KeyType type, const char* selector) -> absl::Status {
    absl::StatusOr<dkim::GeneratedKey> key =
        dkim::GenerateKey(type, 2048, "bench.example", selector);
    if (!key.ok()) return key.status();
    fs::path file = p.dir / (std::string(selector) + ".pem");
    if (auto s = WriteFile(file, key->pem, 0600); !s.ok()) return s;
    absl::StrAppend(&keys_toml, "[[dkim.keys]]\ndomain = \"bench.example\"\nselector = \"",
                    selector, "\"\nkey_file = \"", file.string(), "\"\ntype = \"",
                    type == dkim::KeyType::kRsa ? "rsa" : "ed25519", "\"\n\n");
    return absl::OkStatus();
  };
  if (a.dkim == "rsa2048" || a.dkim == "both")
    if (auto s = add_key(dkim::KeyType::kRsa, "rsa"); !s.ok()) return s;
  if (a.dkim == "ed25519" || a.dkim == "both")
    if (auto s = add_key(dkim::KeyType::kEd25519, "ed"); !s.ok()) return s;

  std::string everything;  // --everything-on: what `salvo run` is configured with
  if (a.everything_on) {
    if (a.shaping.empty())
      if (auto s = WriteFile(p.shaping, NonBindingProviders(a.connections_per_site)); !s.ok())
        return s;
    // A fresh VERP secret for each run, as an operator's key file would be.
    std::random_device rd;
    std::string secret;
    for (int i = 0; i < 32; ++i) absl::StrAppend(&secret, absl::Hex(rd() & 0xff, absl::kZeroPad2));
    if (auto s = WriteFile(p.verp_secret, secret + "\n", 0600); !s.ok()) return s;
    everything = absl::StrCat("[metrics]\nlisten = \"127.0.0.1:", p.metrics_port, "\"\n\n",
                              "[delivery_log]\npath = \"", p.delivery_log.string(), "\"\n\n",
                              "[verp]\ndomain = \"bounces.bench.example\"\n", "secret_file = \"",
                              p.verp_secret.string(), "\"\n\n");
  }
  const std::string shaping_file = !a.shaping.empty()
                                       ? fs::absolute(a.shaping).string()
                                       : (a.everything_on ? p.shaping.string() : std::string());
  std::string config = absl::StrCat(
      "data_dir = \"", p.data.string(), "\"\n", "shards = ", a.shards, "\n",
      "log_level = \"warning\"\n",
      shaping_file.empty() ? std::string()
                           : absl::StrCat("shaping_file = \"", shaping_file, "\"\n"),
      "\n", Routes(domains, sink_addrs),
      "[delivery]\nmessages_per_connection = ", a.messages_per_connection,
      "\nconnections_per_site = ", a.connections_per_site,
      a.max_connections > 0 ? absl::StrCat("\nmax_connections = ", a.max_connections)
                            : std::string(),
      "\nin_flight_limit = 20000\n\n",
      a.durable_before_next == "on" ? "" : "[queue]\ndurable_before_next = false\n\n",
      "[tls]\nmode = \"", a.tls == "on" ? "required" : "off", "\"\nverify = false\n\n",
      a.fleet_redis.empty()
          ? std::string()
          : absl::StrCat("[fleet]\nredis = \"", a.fleet_redis, "\"\nnode_id = \"bench\"\n\n"),
      everything, keys_toml);
  if (auto s = WriteFile(p.config, config); !s.ok()) return s;

  std::string campaign = absl::StrCat(
      "name = \"bench\"\ntemplate = \"", p.template_file.string(), "\"\nrecipients = \"",
      p.recipients.string(), "\"\nfrom = \"news@bench.example\"\n",
      a.dkim == "none" ? "" : "dkim_domain = \"bench.example\"\n",
      // Deferrals (if the sink injects them) retry within seconds, so the run
      // ends. No recipient expires before the run's own --timeout stops it:
      // a fixed 120 s expired 93,037 Gmail recipients of a 4,000,000-recipient
      // run over 100,000 domains that was still sending them.
      "\n[retry]\nfirst_retry_min = \"1s\"\nfirst_retry_max = \"2s\"\nmax_delay = \"5s\"\n"
      "max_age = \"",
      static_cast<int64_t>(std::ceil(a.timeout_seconds)) + 60, "s\"\n");
  return WriteFile(p.campaign, campaign);
}

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Starts `salvo sink` (this same executable) as a child process.
constexpr int kSinkAddresses = 4;  // 127.0.0.1 .. 127.0.0.4

absl::StatusOr<pid_t> StartSink(int port, int shards, const std::string& stats_file, bool tls) {
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::string listen = absl::StrCat("127.0.0.1:", port);
  std::string shard_text = std::to_string(shards);
  std::vector<std::string> argv_text = {self,       "--log-level", "error",        "sink",
                                        "--shards", shard_text,    "--stats-file", stats_file};
  if (tls) argv_text.push_back("--tls");  // offer STARTTLS, self-signed certificate
  for (int i = 1; i <= kSinkAddresses; ++i) {
    argv_text.push_back("--listen");
    argv_text.push_back(absl::StrCat("127.0.0.", i, ":", port));
  }
  pid_t pid = ::fork();
  if (pid < 0) return absl::UnavailableError("fork failed");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    std::vector<char*> argv;
    for (std::string& arg : argv_text) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(self.c_str(), argv.data());
    ::_exit(127);
  }
  for (int i = 0; i < 100; ++i) {  // up to 5 s for the sink to listen
    if (CanConnect(port)) return pid;
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return absl::UnavailableError("the built-in sink exited at start-up");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return absl::DeadlineExceededError("the built-in sink did not listen on " + listen +
                                     " within 5s");
}

// Wraps the real source to time each recipient from the moment the engine
// takes it to its outcome. Feeder thread only, like the source itself.
class TimedSource final : public delivery::MessageSource {
 public:
  explicit TimedSource(delivery::MessageSource* inner) : inner_(inner) {}
  absl::StatusOr<std::vector<delivery::Job>> Fetch(size_t max_jobs) override {
    auto jobs = inner_->Fetch(max_jobs);
    if (jobs.ok()) {
      auto now = SteadyClock::now();
      for (const delivery::Job& job : *jobs)
        for (const delivery::JobRecipient& r : job.recipients) started_[{r.tag1, r.tag2}] = now;
    }
    return jobs;
  }
  absl::Status Complete(absl::Span<delivery::JobResult> results) override {
    auto now = SteadyClock::now();
    for (const delivery::JobResult& result : results) {
      for (size_t i = 0; i < result.recipients.size(); ++i) {
        auto it = started_.find({result.recipients[i].tag1, result.recipients[i].tag2});
        if (it == started_.end()) continue;
        if (result.outcomes[i].delivered())
          latencies_ms_.push_back(
              std::chrono::duration<double, std::milli>(now - it->second).count());
        started_.erase(it);
      }
    }
    return inner_->Complete(results);
  }
  bool Done(size_t in_flight) override { return inner_->Done(in_flight); }
  absl::Status Compose(delivery::Job* job, int shard, bool* permanent) override {
    return inner_->Compose(job, shard, permanent);
  }
  double Percentile(double p) {
    if (latencies_ms_.empty()) return 0;
    size_t k = std::min(latencies_ms_.size() - 1,
                        static_cast<size_t>(std::ceil(p * latencies_ms_.size())) - 1);
    std::nth_element(latencies_ms_.begin(), latencies_ms_.begin() + k, latencies_ms_.end());
    return latencies_ms_[k];
  }

 private:
  delivery::MessageSource* inner_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, SteadyClock::time_point> started_;
  std::vector<double> latencies_ms_;
};

// The crypto floor: one RSA-2048 signature over a digest plus SHA-256 of one
// message, in CPU time (like the engine's figure, so a busy machine skews
// neither). Measured twice per run: on the idle machine before the run, and
// sampled during the run on the same loaded machine (both cores busy slow
// each operation down; the engine pays that too).
class FloorProbe {
 public:
  explicit FloorProbe(size_t size) : pkey_(EVP_RSA_gen(2048)), body_(size, 'x') {}
  ~FloorProbe() { EVP_PKEY_free(pkey_); }
  bool ok() const { return pkey_ != nullptr; }
  // Microseconds of this thread's CPU for `n` sign + digest operations, per operation.
  double MeasureUs(int n) {
    double start = ThreadCpuUs();
    for (int i = 0; i < n; ++i) {
      unsigned char digest[32];
      unsigned char sig[512];
      unsigned int dlen = 0;
      EVP_Digest(body_.data(), body_.size(), digest, &dlen, EVP_sha256(), nullptr);
      EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(pkey_, nullptr);
      EVP_PKEY_sign_init(ctx);
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
      EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
      size_t siglen = sizeof(sig);
      EVP_PKEY_sign(ctx, sig, &siglen, digest, dlen);
      EVP_PKEY_CTX_free(ctx);
    }
    return (ThreadCpuUs() - start) / n;
  }

 private:
  static double ThreadCpuUs() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
  }
  EVP_PKEY* pkey_;
  std::string body_;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// CPU time (ns) of every thread of process `pid` so far, from
// /proc/<pid>/task/*/schedstat; -1 when unreadable.
int64_t ProcessCpuNs(pid_t pid) {
  std::error_code ec;
  int64_t total = 0;
  fs::path dir = fs::path("/proc") / std::to_string(pid) / "task";
  for (const auto& task : fs::directory_iterator(dir, ec)) {
    std::ifstream in(task.path() / "schedstat");
    int64_t ns = 0;
    if (in >> ns) total += ns;
  }
  return ec ? -1 : total;
}

// One GET /metrics over loopback, as Prometheus makes it. True on a 200
// reply that carries the engine's counters; *bytes gets the reply's size.
bool ScrapeEndpoint(int port, size_t* bytes) {
  *bytes = 0;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{5, 0};  // a stuck endpoint does not hold the run
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return false;
  }
  static constexpr char kRequest[] =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n"
      "Connection: close\r\n\r\n";
  if (::send(fd, kRequest, sizeof(kRequest) - 1, MSG_NOSIGNAL) !=
      static_cast<ssize_t>(sizeof(kRequest) - 1)) {
    ::close(fd);
    return false;
  }
  std::string reply;
  char buf[65536];
  while (reply.size() < (size_t{256} << 20)) {  // bounded: 256 MiB
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  *bytes = reply.size();
  return reply.rfind("HTTP/1.1 200", 0) == 0 && reply.find("salvo_") != std::string::npos;
}

double CpuSeconds(const rusage& r) {
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
         r.ru_stime.tv_usec / 1e6;
}

int RunBench(const BenchArgs& a) {
  absl::StatusOr<size_t> size = ParseSize(a.size);
  if (!size.ok()) {
    PrintError(std::string(size.status().message()));
    return kExitUsage;
  }
  if (a.recipients == 0) {
    PrintError("--recipients must be at least 1");
    return kExitUsage;
  }
  char tmpl[] = "/tmp/salvo-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    PrintError("cannot create a temporary folder in /tmp");
    return kExitFailure;
  }
  Paths p;
  p.dir = tmpl;
  p.data = p.dir / "data";
  p.config = p.dir / "salvo.toml";
  p.campaign = p.dir / "campaign.toml";
  p.template_file = p.dir / "message.eml";
  p.recipients = p.dir / "recipients.csv";
  p.sink_stats = p.dir / "sink-stats.json";
  p.shaping = p.dir / "shaping.toml";
  p.verp_secret = p.dir / "verp.key";
  p.delivery_log = a.delivery_log.empty() ? p.dir / "delivery.log" : fs::absolute(a.delivery_log);

  pid_t sink_pid = -1;
  auto cleanup = [&] {
    if (sink_pid > 0) {
      ::kill(sink_pid, SIGTERM);
      ::waitpid(sink_pid, nullptr, 0);
      sink_pid = -1;
    }
    if (!a.keep) {
      std::error_code ec;
      fs::remove_all(p.dir, ec);
    }
  };
  auto fail = [&](absl::string_view what) {
    PrintError(std::string(what));
    cleanup();
    return kExitFailure;
  };

  if (a.everything_on) {
    p.metrics_port = FreeLoopbackPort();
    if (p.metrics_port < 0) return fail("no free loopback port for the metrics endpoint");
  }
  std::vector<std::string> sink_addrs;
  if (!a.sink.empty()) {
    sink_addrs.push_back(a.sink);
  } else {
    int port = FreeLoopbackPort();
    if (port < 0) return fail("no free loopback port for the built-in sink");
    auto pid = StartSink(port, a.sink_shards, p.sink_stats.string(), a.tls == "on");
    if (!pid.ok()) return fail(pid.status().message());
    sink_pid = *pid;
    for (int i = 1; i <= kSinkAddresses; ++i)
      sink_addrs.push_back(absl::StrCat("127.0.0.", i, ":", port));
  }
  if (auto s = GenerateCampaign(a, *size, p, sink_addrs); !s.ok()) return fail(s.message());

  absl::StatusOr<config::Config> cfg = config::LoadConfig(p.config.string());
  if (!cfg.ok()) return fail(cfg.status().message());
  absl::StatusOr<queue::CampaignSpec> spec = queue::ParseCampaignFile(p.campaign.string());
  if (!spec.ok()) return fail(spec.status().message());
  // The same opening as run and send (io_uring check, spool, keys, fd limit).
  auto inputs = OpenEngineInputs(*cfg);
  if (!inputs.ok()) return fail(inputs.status().message());
  auto* spool = &inputs->spool;
  auto* keys = &inputs->keys;
  queue::LoadOptions load_options;
  load_options.validate_template = TemplateValidator();
  auto report = (*spool)->LoadCampaign(*spec, load_options);
  if (!report.ok()) return fail(report.status().message());

  FloorProbe floor_probe(*size);
  if (!floor_probe.ok()) return fail("cannot generate an RSA-2048 key for the crypto floor");
  const double floor_idle_us = floor_probe.MeasureUs(200);

  delivery::SpoolSourceOptions source_options;
  source_options.shards = cfg->EffectiveShards();
  source_options.until_done = report->id;
  // What `salvo run` adds: labelled counts (the registry the engine counts
  // into, with the campaign and domain labels resolved per job), scrapes,
  // the delivery log.
  std::shared_ptr<metrics::Registry> registry;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::unique_ptr<deliverylog::Writer> log_writer;
  if (a.everything_on) {
    // As `salvo run` starts them: the registry with the queue gauges, the
    // endpoint and the delivery log from the generated config, and VERP.
    auto obs = StartObservability(*cfg, cfg->metrics.listen, /*required=*/true, spool->get());
    if (!obs.ok()) return fail(obs.status().message());
    registry = std::move(obs->registry);
    exposer = std::move(obs->exposer);
    log_writer = std::move(obs->delivery_log);
    source_options.registry = registry.get();
    source_options.delivery_log = log_writer ? log_writer->AddProducer() : nullptr;
    source_options.verp = inputs->verp;
  } else if (a.metrics || a.scrape_every_ms > 0) {
    metrics::RegistryOptions ro;
    if (cfg->metrics.domains) ro.domains = *cfg->metrics.domains;
    ro.max_campaigns = cfg->metrics.max_campaigns;
    registry = std::make_shared<metrics::Registry>(ro);
    source_options.registry = registry.get();
  }
  if (!a.everything_on && !a.delivery_log.empty()) {
    deliverylog::WriterOptions wo;
    wo.path = a.delivery_log;
    wo.rotate_bytes = 0;
    auto w = deliverylog::Writer::Open(std::move(wo));
    if (!w.ok()) return fail(w.status().message());
    log_writer = std::move(*w);
    source_options.delivery_log = log_writer->AddProducer();
  }
  auto spool_source = std::make_unique<delivery::SpoolSource>(spool->get(), *keys, source_options);
  TimedSource source(spool_source.get());

  bool tty = ::isatty(STDERR_FILENO) && !a.json;
  const uint64_t total = report->accepted;
  delivery::EngineOptions engine_options;
  engine_options.shards = cfg->EffectiveShards();
  engine_options.on_tick = [&](const delivery::EngineStats& s) {
    if (!tty) return;
    uint64_t done = s.delivered + s.bounced;
    int width = 40;
    int filled = total ? static_cast<int>(width * std::min<uint64_t>(done, total) / total) : 0;
    std::fprintf(stderr, "\r[%s%s] %llu/%llu delivered, %llu sessions open ",
                 std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
                 static_cast<unsigned long long>(s.delivered),
                 static_cast<unsigned long long>(total),
                 static_cast<unsigned long long>(s.open_sessions));
  };
  auto engine = delivery::Engine::Create(*cfg, &source, registry.get(), engine_options);
  if (!engine.ok()) return fail(engine.status().message());

  // The run is bounded: a watchdog asks the engine to stop after the timeout.
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    auto deadline = SteadyClock::now() + std::chrono::duration<double>(a.timeout_seconds);
    while (!finished.load() && SteadyClock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!finished.load()) (*engine)->RequestShutdown();
  });
  // The floor under load: one operation every 25 ms during the run (about
  // 1.5% of one core), excluded from the engine's CPU below.
  std::vector<double> floor_samples;
  double probe_cpu_us = 0;
  // Progress marks on the same 25 ms beat, for the steady part of the run
  // (from 10% to 90% of the recipients done): the ceiling it is compared
  // with is a steady rate, the whole run also holds the start (shard
  // threads, first leases, first connections) and the last copies.
  struct ProgressMark {
    SteadyClock::time_point at;
    uint64_t done = 0;
    double cpu_s = 0;     // the process's CPU
    double probe_us = 0;  // the probes' share of it
  };
  std::vector<ProgressMark> marks;
  std::thread prober([&] {
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
      if (finished.load()) break;
      double us = floor_probe.MeasureUs(1);
      floor_samples.push_back(us);
      probe_cpu_us += us;
      const delivery::EngineStats st = (*engine)->Stats();
      rusage ru{};
      ::getrusage(RUSAGE_SELF, &ru);
      marks.push_back(
          {SteadyClock::now(), st.delivered + st.bounced, CpuSeconds(ru), probe_cpu_us});
    }
  });
  // Scrapes as Prometheus would make them, on their own thread (their CPU is
  // in the engine's figure: they run in this process).
  uint64_t scrapes = 0;
  double scrape_ms_total = 0;
  std::thread scraper([&] {
    if (!registry || a.scrape_every_ms <= 0) return;
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(a.scrape_every_ms));
      if (finished.load()) break;
      auto t0 = SteadyClock::now();
      std::string text = registry->Scrape();
      scrape_ms_total += std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
      ++scrapes;
    }
  });
  // --everything-on: Prometheus's view, GET /metrics every second over HTTP
  // from the start of the run (the endpoint's threads and the scrape are in
  // this process's CPU, as they are in `salvo run`'s).
  // Between scrapes it sleeps until the next second or the end of the run
  // (not a polling loop: this thread's CPU is counted as the engine's, and
  // Prometheus's own is not the engine's).
  uint64_t http_scrapes = 0, http_scrape_failures = 0;
  size_t http_scrape_bytes = 0;
  absl::Notification run_over;
  std::thread http_scraper([&] {
    if (!exposer) return;
    do {
      size_t bytes = 0;
      if (ScrapeEndpoint(p.metrics_port, &bytes)) {
        ++http_scrapes;
        http_scrape_bytes = bytes;
      } else {
        ++http_scrape_failures;
      }
    } while (!run_over.WaitForNotificationWithTimeout(absl::Seconds(1)));
  });
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  const int64_t sink_before = sink_pid > 0 ? ProcessCpuNs(sink_pid) : -1;
  auto start = SteadyClock::now();
  absl::Status run = (*engine)->Run();
  double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  ::getrusage(RUSAGE_SELF, &after);
  const int64_t sink_after = sink_pid > 0 ? ProcessCpuNs(sink_pid) : -1;
  finished.store(true);
  run_over.Notify();
  watchdog.join();
  prober.join();
  scraper.join();
  http_scraper.join();
  exposer.reset();
  // The log: the source's last lines, then everything written and synced.
  spool_source.reset();
  deliverylog::WriterStats log_stats;
  if (log_writer) {
    log_writer->Stop();
    log_stats = log_writer->Stats();
  }
  // Too short a run for samples: fall back to the idle figure.
  const double floor_us = floor_samples.size() >= 5 ? Median(floor_samples) : floor_idle_us;
  if (tty) std::fprintf(stderr, "\n");
  if (!run.ok()) return fail(run.message());

  // The built-in sink's own count (it writes its stats file at exit).
  nlohmann::json sink_stats;
  if (sink_pid > 0) {
    ::kill(sink_pid, SIGTERM);
    ::waitpid(sink_pid, nullptr, 0);
    sink_pid = -1;
    std::ifstream in(p.sink_stats);
    sink_stats = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  }
  delivery::EngineStats stats = (*engine)->Stats();
  auto counts = (*spool)->Counts(report->id);
  uint64_t delivered = counts.ok() ? (*counts)[queue::RecipientState::kDelivered] : stats.delivered;
  uint64_t bounced = counts.ok() ? (*counts)[queue::RecipientState::kBounced] +
                                       (*counts)[queue::RecipientState::kExpired]
                                 : stats.bounced;
  double cpu = CpuSeconds(after) - CpuSeconds(before) - probe_cpu_us / 1e6;
  double per_msg_us = delivered ? cpu * 1e6 / delivered : 0;
  double sink_per_msg_us = sink_before >= 0 && sink_after >= sink_before && delivered
                               ? (sink_after - sink_before) / 1e3 / delivered
                               : 0;
  // The steady part: the first marks at or past 10% and 90% done.
  double steady_rate = 0, steady_cpu_us = 0, first_done_ms = -1, tail_ms = -1;
  {
    const ProgressMark* m10 = nullptr;
    const ProgressMark* m90 = nullptr;
    for (const ProgressMark& m : marks) {
      if (first_done_ms < 0 && m.done > 0)
        first_done_ms = std::chrono::duration<double, std::milli>(m.at - start).count();
      if (!m10 && m.done * 10 >= total) m10 = &m;
      if (!m90 && m.done * 10 >= total * 9) m90 = &m;
    }
    if (m10 && m90 && m90->done > m10->done && m90->at > m10->at) {
      const double s = std::chrono::duration<double>(m90->at - m10->at).count();
      steady_rate = (m90->done - m10->done) / s;
      steady_cpu_us = ((m90->cpu_s - m10->cpu_s) * 1e6 - (m90->probe_us - m10->probe_us)) /
                      static_cast<double>(m90->done - m10->done);
      tail_ms = seconds * 1e3 - std::chrono::duration<double, std::milli>(m90->at - start).count();
    }
  }
  nlohmann::json out = {
      {"recipients", total},
      {"domains", a.domains},
      {"message_bytes", *size},
      {"dkim", a.dkim},
      {"tls", a.tls},
      {"shards", cfg->EffectiveShards()},
      {"seconds", seconds},
      {"messages_per_second", delivered / seconds},
      {"messages_per_hour", delivered / seconds * 3600},
      {"engine_cpu_us_per_message", per_msg_us},
      {"steady_messages_per_second", steady_rate},
      {"steady_engine_cpu_us_per_message", steady_cpu_us},
      {"first_done_ms", first_done_ms},
      {"last_tenth_ms", tail_ms},
      {"crypto_floor_us_per_message", floor_us},
      {"crypto_floor_idle_us_per_message", floor_idle_us},
      {"crypto_floor_samples", floor_samples.size()},
      {"engine_cpu_over_floor", floor_us > 0 ? per_msg_us / floor_us : 0},
      {"sink_cpu_us_per_message", sink_per_msg_us},
      {"peak_rss_bytes", static_cast<uint64_t>(after.ru_maxrss) * 1024},
      {"peak_sessions", stats.peak_sessions},
      {"max_connections", a.max_connections},
      {"latency_ms_p50", source.Percentile(0.50)},
      {"latency_ms_p99", source.Percentile(0.99)},
      {"delivered", delivered},
      {"bounced", bounced},
      {"deferred", stats.deferred},
      {"completed", (*engine)->finished()},
      {"metrics", registry != nullptr},
      {"scrapes", scrapes},
      {"scrape_ms_mean", scrapes ? scrape_ms_total / scrapes : 0},
      {"everything_on", a.everything_on},
      {"same_body", a.same_body},
  };
  if (a.everything_on) {
    out["shaping_file"] = a.shaping.empty() ? "built-in non-binding provider limits" : a.shaping;
    out["http_scrapes"] = http_scrapes;
    out["http_scrape_failures"] = http_scrape_failures;
    out["http_scrape_bytes_last"] = http_scrape_bytes;
    out["verp_domain"] = cfg->verp.domain;
  }
  if (fleet::SharedLimits* f = (*engine)->fleet_limits()) {
    const fleet::SharedLimitsStats fs = f->Stats();
    out["fleet_redis_round_trips"] = fs.redis_round_trips;
    out["fleet_round_trips_per_1000_messages"] =
        delivered ? 1000.0 * static_cast<double>(fs.redis_round_trips) / delivered : 0;
    out["fleet_shared"] = fs.shared;
    out["fleet_message_refusals"] = fs.message_refusals;
    out["fleet_connection_refusals"] = fs.connection_refusals;
  }
  if (log_writer) {
    out["delivery_log_lines"] = log_stats.lines;
    out["delivery_log_dropped"] = log_stats.dropped;
  }
  if (sink_stats.is_object()) {
    out["sink_messages"] = sink_stats.value("messages", uint64_t{0});
    out["sink_connections"] = sink_stats.value("connections", uint64_t{0});
    out["sink_tls_sessions"] = sink_stats.value("tls_sessions", uint64_t{0});
    out["sink_tls_resumed"] = sink_stats.value("tls_resumed", uint64_t{0});
  }
  if (a.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf(
        "salvo bench: %llu recipients over %d domains, %zu-byte messages, dkim=%s, tls=%s, "
        "%d shard(s), sink %s\n",
        static_cast<unsigned long long>(total), a.domains, *size, a.dkim.c_str(), a.tls.c_str(),
        cfg->EffectiveShards(), a.sink.empty() ? "built-in (own process)" : a.sink.c_str());
    auto row = [](const char* name, const std::string& value) {
      std::printf("  %-34s %s\n", name, value.c_str());
    };
    row("messages/s", absl::StrCat(static_cast<int64_t>(delivered / seconds)));
    row("messages/hour", absl::StrCat(static_cast<int64_t>(delivered / seconds * 3600)));
    row("engine CPU per message (us)", absl::StrCat(static_cast<int64_t>(per_msg_us)));
    if (steady_rate > 0)
      row("steady, 10% to 90% done",
          absl::StrFormat("%.0f messages/s, %.1f us engine CPU per message", steady_rate,
                          steady_cpu_us));
    if (first_done_ms >= 0 && tail_ms >= 0)
      row("first done / last tenth (ms)", absl::StrFormat("%.0f / %.0f", first_done_ms, tail_ms));
    row("crypto floor per message (us)",
        absl::StrCat(static_cast<int64_t>(floor_us),
                     "  (RSA-2048 sign + SHA-256 of the message, during the run; idle: ",
                     static_cast<int64_t>(floor_idle_us), ")"));
    row("engine CPU / crypto floor",
        absl::StrFormat("%.2f", floor_us > 0 ? per_msg_us / floor_us : 0));
    if (sink_per_msg_us > 0)
      row("built-in sink CPU per message (us)",
          absl::StrCat(static_cast<int64_t>(sink_per_msg_us)));
    row("peak RSS (MiB)", absl::StrCat(after.ru_maxrss / 1024));
    row("peak concurrent sessions", absl::StrCat(stats.peak_sessions));
    row("latency p50 / p99 (ms)", absl::StrCat(static_cast<int64_t>(source.Percentile(0.5)), " / ",
                                               static_cast<int64_t>(source.Percentile(0.99))));
    row("delivered / bounced / deferred",
        absl::StrCat(delivered, " / ", bounced, " / ", stats.deferred));
    if (sink_stats.is_object()) {
      row("sink connections (TLS, resumed)",
          absl::StrCat(sink_stats.value("connections", uint64_t{0}), " (",
                       sink_stats.value("tls_sessions", uint64_t{0}), ", ",
                       sink_stats.value("tls_resumed", uint64_t{0}), ")"));
    }
    if (registry)
      row("labelled metrics, scrapes (mean ms)",
          absl::StrCat("on, ", scrapes, " (",
                       absl::StrFormat("%.2f", scrapes ? scrape_ms_total / scrapes : 0), ")"));
    if (out.contains("fleet_redis_round_trips"))
      row("fleet: Redis round trips (per 1,000 messages)",
          absl::StrCat(
              out["fleet_redis_round_trips"].get<uint64_t>(), " (",
              absl::StrFormat("%.1f", out["fleet_round_trips_per_1000_messages"].get<double>()),
              ")", out["fleet_shared"].get<bool>() ? "" : "  NOT shared: Redis unreachable"));
    if (a.everything_on)
      row("everything on: /metrics scrapes (failed)",
          absl::StrCat(http_scrapes, " (", http_scrape_failures, "), shaping, VERP bounces.",
                       "bench.example, dkim=", a.dkim));
    if (log_writer)
      row("delivery log lines (dropped)",
          absl::StrCat(log_stats.lines, " (", log_stats.dropped, ")"));
    row("wall time (s)", absl::StrCat(static_cast<int64_t>(seconds * 10) / 10.0));
  }
  bool complete = (*engine)->finished();
  cleanup();
  if (!complete) {
    PrintError(absl::StrCat("the run did not finish within --timeout ", a.timeout_seconds, "s"));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void RegisterBenchCommand(CLI::App& app, CommandContext& ctx) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure end-to-end throughput: the real engine and queue against a sink");
  cmd->add_option("--recipients", args->recipients, "Recipients in the generated campaign")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  cmd->add_option("--domains", args->domains,
                  "Destination domains (30% gmail, 20% yahoo, 15% outlook, long tail)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--size", args->size, "Message size in bytes, k/M suffixes allowed")
      ->capture_default_str();
  CLI::Option* dkim = cmd->add_option("--dkim", args->dkim, "DKIM signing");
  dkim->capture_default_str()->check(CLI::IsMember({"none", "rsa2048", "ed25519", "both"}));
  cmd->add_option("--tls", args->tls, "STARTTLS on every connection")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--sink", args->sink, "ADDR:PORT of a running sink (else a built-in one)");
  cmd->add_option(
         "--shaping", args->shaping,
         "A shaping file for the engine (what its limits cost; bench/shaping-nonbinding.toml "
         "sets limits that never bind)")
      ->check(ReadableFile());
  cmd->add_option("--shards", args->shards, "Engine shards (0 = one per CPU)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--sink-shards", args->sink_shards, "Shards of the built-in sink")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--messages-per-connection", args->messages_per_connection,
                  "Messages per SMTP connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--connections", args->connections_per_site, "Connections per destination")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  cmd->add_option("--max-connections", args->max_connections,
                  "delivery.max_connections of the generated config: outbound connections "
                  "open at once over every site (default: the engine's)")
      ->check(CLI::Range(1, 10'000'000));
  cmd->add_option("--timeout", args->timeout_seconds, "Stop the run after this many seconds")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  cmd->add_flag("--metrics", args->metrics,
                "Count with campaign and domain labels as `salvo run` does (metrics.domains and "
                "max_campaigns of the generated config)");
  cmd->add_option("--scrape-every", args->scrape_every_ms,
                  "Take a Prometheus text scrape this often during the run, in ms (implies "
                  "--metrics; 0 = none)")
      ->check(CLI::Range(0, 600000));
  cmd->add_option("--delivery-log", args->delivery_log,
                  "Write the delivery log to this file during the run (reports lines written "
                  "and dropped)");
  cmd->add_option("--fleet-redis", args->fleet_redis,
                  "Hold the shaping file's provider and domain limits in this Redis "
                  "(host:port), as a fleet node does (bench/shaping-providers-nonbinding.toml "
                  "names the bench's providers); reports Redis round trips");
  cmd->add_flag(
      "--everything-on", args->everything_on,
      "Every per-message feature of a production run: provider limits that never "
      "bind (--shaping, else those of bench/shaping-providers-nonbinding.toml), the "
      "metrics endpoint scraped over HTTP every second, the delivery log (--delivery-log, "
      "else a temporary file), VERP return paths with a fresh secret, and --dkim both "
      "unless --dkim is given");
  cmd->add_option("--durable-before-next", args->durable_before_next,
                  "[queue] durable_before_next: a connection's next message ends only once the "
                  "outcome of its last one is recorded")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  cmd->add_flag("--same-body", args->same_body,
                "No placeholder in the message body (the Subject keeps its own): every copy's "
                "body is the same bytes, whose DKIM body hash each shard takes once");
  cmd->add_flag("--json", args->json, "Print the results as JSON");
  cmd->add_flag("--keep", args->keep, "Keep the generated campaign and spool in /tmp");
  cmd->callback([args, dkim, &ctx] {
    if (args->everything_on && dkim->count() == 0) args->dkim = "both";
    ctx.exit_code = RunBench(*args);
  });
}

}  // namespace salvo::cli
