// `salvo sink`: the SMTP receiving server for tests and benchmarks (engine/sink).
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/cli/commands.h"
#include "engine/sink/sink.h"
#include "engine/sink/tls_server.h"

namespace salvo::cli {
namespace {

struct SinkFlags {
  std::vector<std::string> listen;
  sink::SinkOptions options;
};

int RunSink(SinkFlags& flags) {
  sink::SinkOptions& o = flags.options;
  o.listen.clear();
  for (const std::string& text : flags.listen) {
    auto addr = sink::ParseListenAddress(text);
    if (!addr.ok()) {
      PrintError(std::string("--listen: ") + std::string(addr.status().message()));
      return kExitUsage;
    }
    o.listen.push_back(*addr);
  }
  if (auto s = sink::ValidateOptions(o); !s.ok()) {
    PrintError(std::string(s.message()));
    return kExitUsage;
  }
  if (!o.tls_cert.empty() || !o.tls_key.empty()) o.tls = true;
  if (o.tls && !o.tls_cert.empty()) {
    // Bad certificate or key files are usage errors: check them before
    // binding anything (Start() loads them again, cheaply).
    if (auto ctx = sink::MakeServerTlsContext(o.hostname, o.tls_cert, o.tls_key); !ctx.ok()) {
      PrintError(std::string(ctx.status().message()));
      return kExitUsage;
    }
  }
  if (!o.save_dir.empty()) {
    struct stat st;
    if (stat(o.save_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      PrintError("--save-dir " + o.save_dir + ": not an existing directory");
      return kExitUsage;
    }
  }

  // Signals are taken synchronously by this thread; the shard threads
  // inherit the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  sink::Sink server(o);
  if (auto s = server.Start(); !s.ok()) {
    PrintError(std::string("sink: ") + std::string(s.message()));
    return kExitFailure;
  }
  for (const sink::ListenAddress& a : server.Bound()) {
    std::printf("salvo sink: listening on %s\n", a.ToString().c_str());
  }
  std::fflush(stdout);

  for (;;) {
    timespec timeout{1, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGUSR1) {
      std::printf("salvo sink: %s\n", server.Stats().Line().c_str());
      std::fflush(stdout);
    } else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
      break;
    }
  }
  server.Stop();
  std::printf("salvo sink: exiting: %s\n", server.Stats().Line().c_str());
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace

void RegisterSinkCommand(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<SinkFlags>();
  CLI::App* cmd = app.add_subcommand(
      "sink",
      "Run the Salvo SMTP sink: a fast receiving server for tests and benchmarks. Runs until "
      "SIGTERM/SIGINT; SIGUSR1 prints a stats line.");
  sink::SinkOptions& o = flags->options;
  cmd->add_option("--listen", flags->listen,
                  "ADDR:PORT to listen on (repeatable; [::1]:PORT for IPv6; port 0 = any free "
                  "port). Default 127.0.0.1:2525");
  cmd->add_option("--shards", o.shards, "Shard threads (each with its own io_uring ring)")
      ->default_val(1)
      ->check(CLI::Range(1, 256));
  cmd->add_option("--bounce-rate", o.bounce_rate, "Share of RCPTs answered 550 5.1.1 (0..1)")
      ->default_val(0.0)
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--defer-rate", o.defer_rate,
                  "Share of RCPTs answered 450 4.2.0 or 451 4.3.0 (0..1)")
      ->default_val(0.0)
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--drop-rate", o.drop_rate,
                  "Share of DATA commands answered by dropping the connection (0..1)")
      ->default_val(0.0)
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-per-connection", o.max_per_connection,
                  "Answer MAIL with 421 4.7.0 and close after N messages on a connection (0 = no "
                  "limit)")
      ->default_val(0)
      ->check(NonNegativeCount());
  cmd->add_option("--max-rate", o.max_rate,
                  "Messages/s over the whole sink; MAIL above it gets 421 4.7.0 (0 = no limit)")
      ->default_val(0)
      ->check(NonNegativeCount());
  cmd->add_option("--delay-ms", o.delay_ms, "Delay every batch of replies by N ms")
      ->default_val(0)
      ->check(CLI::Range(0, 600000));
  cmd->add_option("--final-delay-ms", o.final_delay_ms,
                  "Delay the reply to each message's end of data by N ms (a slow server)")
      ->default_val(0)
      ->check(CLI::Range(0, 600000));
  cmd->add_option("--reject-pattern", o.reject_pattern,
                  "Answer 550 5.1.1 to every RCPT whose address contains TEXT");
  cmd->add_option(
      "--greeting", o.greeting,
      "The greeting line instead of 220 (e.g. \"421 4.7.0 busy\"; not 2xx: then close)");
  cmd->add_option("--seed", o.seed, "Seed for the injection RNG (0 = random)")->default_val(0);
  cmd->add_option("--save-dir", o.save_dir,
                  "Save each received message as N.eml (exact bytes after dot-unstuffing) and "
                  "N.env (MAIL FROM/RCPT TO lines)");
  cmd->add_option(
      "--stats-file", o.stats_file,
      "JSON stats, rewritten every second, within 50 ms when messages start after a quiet "
      "second, and at exit");
  cmd->add_flag("--track-duplicates", o.track_duplicates,
                "Count recipient addresses delivered more than once (duplicate_recipients)");
  cmd->add_option("--hostname", o.hostname, "Name in the greeting and EHLO reply")
      ->default_val("sink.salvo.invalid");
  cmd->add_flag("--tls", o.tls,
                "Offer STARTTLS (RFC 3207); without --tls-cert/--tls-key a self-signed P-256 "
                "certificate for CN=--hostname is generated at start-up");
  cmd->add_option("--tls-cert", o.tls_cert,
                  "PEM certificate (chain) file for STARTTLS (implies --tls; needs --tls-key)");
  cmd->add_option("--tls-key", o.tls_key,
                  "PEM private key file for STARTTLS (implies --tls; needs --tls-cert)");
  cmd->add_option("--max-size", o.max_message_size, "Largest message accepted (SIZE), bytes")
      ->default_val(50 * 1024 * 1024)
      ->check(NonNegativeCount());
  cmd->callback([flags, &ctx] { ctx.exit_code = RunSink(*flags); });
}

}  // namespace salvo::cli
