// Cost of one complete pipelined SMTP transaction (MAIL + 1 RCPT + 20 KB
// DATA) through the sans-I/O state machine alone: canned server replies in,
// command and body bytes out, outcome event taken. Compared with a plain
// memcpy of the same body, which is the floor for "copy the body once".
// The *Segments variants take the output as the engine's connection does
// (TakeOutput into an OutputBuffer): a composed copy goes out as a view of
// itself, no copy at all (bench/README.md "Sending from segments").
//
//   ./build/bench/smtp_bench
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/common/clock.h"
#include "engine/smtp/reply.h"
#include "engine/smtp/session.h"

namespace {

using namespace salvo::smtp;

std::string MakeBody(size_t size) {
  std::string body =
      "From: Sender <sender@bench.example>\r\nTo: <rcpt@dest.example>\r\n"
      "Subject: benchmark\r\nMessage-ID: <1@bench.example>\r\n\r\n";
  const std::string line =
      "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n";
  while (body.size() < size) body += line;
  body.resize(size - 2);
  body += "\r\n";
  return body;
}

Session* NewReadySession(salvo::FakeClock* clock, bool chunking) {
  Options o;
  o.helo_name = "bench.example";
  o.host = "mx.dest.example";
  o.tls = TlsMode::kDisabled;
  o.clock = clock;
  auto* s = new Session(o);
  s->Feed("220 mx.dest.example ESMTP\r\n");
  s->ConsumeOutput(s->PendingOutput().size());
  s->Feed(chunking ? "250-mx.dest.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
                     "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"
                   : "250-mx.dest.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
                     "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
  s->TakeEvents();
  return s;
}

void BM_PipelinedTransactionData(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  salvo::FakeClock clock;
  std::unique_ptr<Session> s(NewReadySession(&clock, false));
  Envelope proto;
  proto.mail_from = "bounce-123@bench.example";
  proto.rcpts = {"rcpt@dest.example"};
  proto.body = body;
  size_t out_bytes = 0;
  std::vector<Event> events;
  for (auto _ : state) {
    Envelope e = proto;
    if (!s->StartTransaction(std::move(e))) state.SkipWithError("not ready");
    out_bytes += s->PendingOutput().size();
    s->ConsumeOutput(s->PendingOutput().size());
    s->Feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    out_bytes += s->PendingOutput().size();
    s->ConsumeOutput(s->PendingOutput().size());
    s->Feed("250 2.0.0 Ok: queued as 4ABCDEF\r\n");
    s->TakeEvents(&events);
    benchmark::DoNotOptimize(events);
  }
  state.SetBytesProcessed(static_cast<int64_t>(out_bytes));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PipelinedTransactionData)->Arg(512)->Arg(20 * 1024);

void BM_PipelinedTransactionBdat(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  salvo::FakeClock clock;
  std::unique_ptr<Session> s(NewReadySession(&clock, true));
  Envelope proto;
  proto.mail_from = "bounce-123@bench.example";
  proto.rcpts = {"rcpt@dest.example"};
  proto.body = body;
  std::vector<Event> events;
  for (auto _ : state) {
    Envelope e = proto;
    if (!s->StartTransaction(std::move(e))) state.SkipWithError("not ready");
    s->ConsumeOutput(s->PendingOutput().size());
    s->Feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 4ABCDEF\r\n");
    s->TakeEvents(&events);
    benchmark::DoNotOptimize(events);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PipelinedTransactionBdat)->Arg(20 * 1024);

// A composed copy (CRLF only, kept alive by its owner) taken as segments: the
// commands and a view of the body, as the connection sends them with one
// sendmsg. DATA adds the read-only scan for lines starting with ".".
void TransactionSegments(benchmark::State& state, bool chunking) {
  auto body = std::make_shared<const std::string>(MakeBody(static_cast<size_t>(state.range(0))));
  salvo::FakeClock clock;
  std::unique_ptr<Session> s(NewReadySession(&clock, chunking));
  Envelope proto;
  proto.mail_from = "bounce-123@bench.example";
  proto.rcpts = {"rcpt@dest.example"};
  proto.body = *body;
  proto.body_owner = body;
  proto.body_crlf = true;
  OutputBuffer wire;
  std::vector<std::string_view> segments;
  std::vector<Event> events;
  size_t views = 0;
  for (auto _ : state) {
    Envelope e = proto;
    if (!s->StartTransaction(std::move(e))) state.SkipWithError("not ready");
    if (!chunking) {
      s->TakeOutput(&wire);
      s->Feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    }
    s->TakeOutput(&wire);
    segments.clear();
    wire.Segments(&segments);
    views += wire.views();
    benchmark::DoNotOptimize(segments.data());
    s->Feed(chunking ? "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 4ABCDEF\r\n"
                     : "250 2.0.0 Ok: queued as 4ABCDEF\r\n");
    s->TakeEvents(&events);
    benchmark::DoNotOptimize(events);
  }
  wire.Clear();
  if (views != static_cast<size_t>(state.iterations()))
    state.SkipWithError("the body was copied, not sent as a view");
  state.SetItemsProcessed(state.iterations());
}
void BM_PipelinedTransactionBdatSegments(benchmark::State& state) {
  TransactionSegments(state, true);
}
BENCHMARK(BM_PipelinedTransactionBdatSegments)->Arg(20 * 1024);
void BM_PipelinedTransactionDataSegments(benchmark::State& state) {
  TransactionSegments(state, false);
}
BENCHMARK(BM_PipelinedTransactionDataSegments)->Arg(20 * 1024);

// The read-only scan that lets DATA send a composed copy as it is.
void BM_NoLineStartsWithDot(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(NoLineStartsWithDot(body));
  state.SetBytesProcessed(static_cast<int64_t>(body.size()) * state.iterations());
}
BENCHMARK(BM_NoLineStartsWithDot)->Arg(20 * 1024);

// The floor: copying the body once into an output buffer.
void BM_BodyMemcpy(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  std::string out;
  out.reserve(body.size() + 64);
  for (auto _ : state) {
    out.resize(body.size());
    std::memcpy(out.data(), body.data(), body.size());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    out.clear();
  }
}
BENCHMARK(BM_BodyMemcpy)->Arg(20 * 1024);

// Dot-stuffing + CRLF check alone, for the breakdown.
void BM_NormalizeBody(benchmark::State& state) {
  const std::string body = MakeBody(static_cast<size_t>(state.range(0)));
  std::string out;
  out.reserve(body.size() + 64);
  for (auto _ : state) {
    AppendNormalizedBody(body, true, &out);
    benchmark::DoNotOptimize(out.data());
    out.clear();
  }
}
BENCHMARK(BM_NormalizeBody)->Arg(20 * 1024);

// Reply parsing alone: an EHLO answer (10 lines) and a pipelined batch of
// MAIL/RCPT/DATA answers with enhanced status codes, fed in one read, then in
// reads of 7 bytes (a slow or hostile peer's worst case).
void BM_ReplyParse(benchmark::State& state) {
  const std::string bytes =
      "250-mx.dest.example Hello bench.example [127.0.0.1]\r\n250-SIZE 52428800\r\n"
      "250-8BITMIME\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n"
      "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n250 HELP\r\n"
      "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n"
      "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
      "550 5.1.1 Please try double-checking the recipient's email address.\r\n"
      "354 Go ahead\r\n";
  const size_t piece = static_cast<size_t>(state.range(0));
  int64_t replies = 0;
  for (auto _ : state) {
    ReplyParser parser;
    Reply reply;
    for (size_t off = 0; off < bytes.size(); off += piece) {
      parser.Feed(std::string_view(bytes).substr(off, piece));
      while (parser.Next(&reply)) ++replies;
    }
  }
  if (replies != 5 * state.iterations()) state.SkipWithError("wrong reply count");
  state.SetItemsProcessed(replies);
}
BENCHMARK(BM_ReplyParse)->Arg(1 << 20)->Arg(7);

}  // namespace

BENCHMARK_MAIN();
