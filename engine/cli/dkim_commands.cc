// `salvo dkim keygen` and `salvo dkim sign`: key generation and one-message
// signing with exactly the code the engine uses (dkim/).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dkim/key_store.h"
#include "dkim/signer.h"
#include "engine/cli/commands.h"

namespace salvo::cli {
namespace {

struct KeygenArgs {
  std::string domain;
  std::string selector;
  std::string type = "rsa";
  int bits = 2048;
  std::string out_dir = ".";
};

struct SignArgs {
  std::vector<std::string> keys;
  std::string domain;
  std::vector<std::string> selectors;
  std::string type = "auto";
  std::string canon = "relaxed/relaxed";
  std::string headers;
  std::optional<int64_t> time;
  std::optional<int64_t> expire;
  std::string identity;
};

bool ValidDnsLabelText(const std::string& s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.') return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

int RunKeygen(const KeygenArgs& a) {
  if (!ValidDnsLabelText(a.domain)) {
    PrintError("dkim keygen: --domain '" + a.domain + "' is not a domain name");
    return kExitUsage;
  }
  if (!ValidDnsLabelText(a.selector)) {
    PrintError("dkim keygen: --selector '" + a.selector + "' is not a valid selector");
    return kExitUsage;
  }
  dkim::KeyType type;
  if (!dkim::ParseKeyType(a.type, &type) || type == dkim::KeyType::kAuto) {
    PrintError("dkim keygen: --type must be rsa or ed25519, not '" + a.type + "'");
    return kExitUsage;
  }
  auto generated = dkim::GenerateKey(type, a.bits, a.domain, a.selector);
  if (!generated.ok()) {
    PrintError("dkim keygen: " + std::string(generated.status().message()));
    return type == dkim::KeyType::kRsa ? kExitUsage : kExitFailure;
  }
  const std::string path = a.out_dir + "/" + a.selector + "." + a.domain + ".pem";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    PrintError("dkim keygen: cannot create key file " + path + ": " + std::strerror(errno) +
               (errno == EEXIST ? " (an existing key is never overwritten)" : ""));
    return kExitFailure;
  }
  const bool ok = WriteAll(fd, generated->pem) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    PrintError("dkim keygen: cannot write key file " + path + ": " + std::strerror(errno));
    ::unlink(path.c_str());
    return kExitFailure;
  }
  auto record = dkim::PublicKeyRecord(generated->key);
  if (!record.ok()) {
    PrintError("dkim keygen: " + std::string(record.status().message()));
    return kExitFailure;
  }
  std::fprintf(stderr,
               "salvo: wrote %s key (%d bits) to %s (mode 0600); publish this TXT record:\n",
               std::string(dkim::KeyTypeName(generated->key.type)).c_str(), generated->key.bits,
               path.c_str());
  std::printf("%s\n", dkim::ZoneFileLine(generated->key, *record).c_str());
  return kExitOk;
}

// Reads all of stdin and converts bare LF line endings to CRLF (what SMTP
// DATA carries), so a message saved by a text editor signs as it will be sent.
bool ReadMessage(std::string* out) {
  std::string raw;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(0, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  out->clear();
  out->reserve(raw.size() + raw.size() / 32);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) out->push_back('\r');
    out->push_back(raw[i]);
  }
  return true;
}

int RunSign(const SignArgs& a) {
  if (a.keys.size() != a.selectors.size()) {
    PrintError("dkim sign: give one --selector per --key (got " + std::to_string(a.keys.size()) +
               " keys, " + std::to_string(a.selectors.size()) + " selectors)");
    return kExitUsage;
  }
  dkim::KeyType type;
  if (!dkim::ParseKeyType(a.type, &type)) {
    PrintError("dkim sign: --type must be auto, rsa or ed25519, not '" + a.type + "'");
    return kExitUsage;
  }
  dkim::SignOptions options;
  if (!dkim::ParseCanonicalization(a.canon, &options.header_canon, &options.body_canon)) {
    PrintError("dkim sign: --canon must be simple|relaxed[/simple|relaxed], not '" + a.canon + "'");
    return kExitUsage;
  }
  if (!a.headers.empty()) {
    std::size_t start = 0;
    while (start <= a.headers.size()) {
      const std::size_t colon = std::min(a.headers.find(':', start), a.headers.size());
      options.headers.push_back(a.headers.substr(start, colon - start));
      start = colon + 1;
    }
  }
  options.timestamp = a.time;
  options.expire_after_seconds = a.expire;
  options.identity = a.identity;

  dkim::KeyStore store;
  for (std::size_t i = 0; i < a.keys.size(); ++i) {
    dkim::KeySpec spec{a.domain, a.selectors[i], a.keys[i], type};
    if (auto s = store.AddFromFile(spec); !s.ok()) {
      PrintError("dkim sign: " + std::string(s.message()));
      return kExitFailure;
    }
  }
  std::vector<const dkim::DkimKey*> keys;
  for (const std::string& sel : a.selectors) keys.push_back(store.Find(a.domain, sel));

  std::string message;
  if (!ReadMessage(&message)) {
    PrintError(std::string("dkim sign: cannot read the message from stdin: ") +
               std::strerror(errno));
    return kExitFailure;
  }
  dkim::Signer signer;
  auto fields = signer.Sign(message, keys, options);
  if (!fields.ok()) {
    PrintError("dkim sign: stdin: " + std::string(fields.status().message()));
    return kExitFailure;
  }
  if (!WriteAll(1, *fields) || !WriteAll(1, message)) {
    PrintError(std::string("dkim sign: cannot write to stdout: ") + std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void RegisterDkimCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* dkim = app.add_subcommand("dkim", "DKIM keys and signing");
  dkim->require_subcommand(1);

  auto kg = std::make_shared<KeygenArgs>();
  CLI::App* keygen = dkim->add_subcommand(
      "keygen", "Generate a DKIM private key and print the DNS TXT record to publish");
  keygen->add_option("--domain", kg->domain, "Signing domain (d=)")->required();
  keygen->add_option("--selector", kg->selector, "Selector (s=)")->required();
  keygen->add_option("--type", kg->type, "rsa or ed25519")->default_val("rsa");
  keygen->add_option("--bits", kg->bits, "RSA key size (1024..4096)")->default_val(2048);
  keygen->add_option("--out", kg->out_dir, "Directory for SELECTOR.DOMAIN.pem")->default_val(".");
  keygen->callback([kg, &ctx] { ctx.exit_code = RunKeygen(*kg); });

  auto sa = std::make_shared<SignArgs>();
  CLI::App* sign = dkim->add_subcommand(
      "sign", "Sign one message (stdin) and write it with its DKIM-Signature(s) to stdout");
  sign->add_option("--key", sa->keys, "PEM private key file (repeat for dual signing)")->required();
  sign->add_option("--domain", sa->domain, "Signing domain (d=)")->required();
  sign->add_option("--selector", sa->selectors, "Selector (s=), one per --key")->required();
  sign->add_option("--type", sa->type, "auto, rsa or ed25519")->default_val("auto");
  sign->add_option("--canon", sa->canon, "Header/body canonicalization")
      ->default_val("relaxed/relaxed");
  sign->add_option("--headers", sa->headers,
                   "Colon-separated h= list (default: Salvo's list with over-signing)");
  sign->add_option("--time", sa->time, "Signature timestamp t= (Unix seconds; default now)");
  sign->add_option("--expire", sa->expire, "Add x= this many seconds after t=");
  sign->add_option("--identity", sa->identity, "Agent or user identifier i=");
  sign->callback([sa, &ctx] { ctx.exit_code = RunSign(*sa); });
}

}  // namespace salvo::cli
