#include "engine/sink/smtp_server.h"

#include <string.h>

#include <algorithm>
#include <charconv>

#include "absl/strings/str_cat.h"

namespace salvo::sink {
namespace {

// DATA or BDAT refused for want of memory (the inbound listener's
// max_buffered_bytes): RFC 5321 4.2.3 "452 Requested action not taken:
// insufficient system storage"; the client tries again later.
constexpr char kNoStorageReply[] =
    "452 4.3.1 Error: insufficient system storage, try again later\r\n";

// Debian's abseil has its own absl::string_view (not std::string_view), so
// the few string helpers needed here are local.
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

std::string_view StripEol(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses "<prefix><address> params" (prefix like "FROM:"); returns false on
// bad syntax. The angle brackets are optional (lenient, like Postfix).
bool ParsePath(std::string_view args, std::string_view prefix, std::string_view* address,
               std::string_view* params) {
  if (args.size() < prefix.size() || !EqualsIgnoreCase(args.substr(0, prefix.size()), prefix))
    return false;
  args = TrimSpaces(args.substr(prefix.size()));
  if (args.empty()) return false;
  if (args.front() == '<') {
    size_t close = args.find('>');
    if (close == std::string_view::npos) return false;
    *address = args.substr(1, close - 1);
    *params = TrimSpaces(args.substr(close + 1));
  } else {
    size_t sp = args.find(' ');
    *address = args.substr(0, sp);
    *params = sp == std::string_view::npos ? std::string_view() : TrimSpaces(args.substr(sp));
  }
  return address->find_first_of(" <>\t") == std::string_view::npos;
}

// A complete command line (its '\n' included) ends in CRLF and holds no
// other CR or LF. Returns "" when it does, else the offending "<CR>"/"<LF>".
std::string_view BadLineEnding(std::string_view raw) {
  if (raw.size() < 2 || raw[raw.size() - 2] != '\r') return "<LF>";
  if (memchr(raw.data(), '\r', raw.size() - 2) != nullptr) return "<CR>";
  return {};
}

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string DomainOf(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string domain(address.substr(at + 1));
  for (char& c : domain) c = Lower(c);
  return domain;
}

void ServerSession::Greeting(std::string* out) const {
  absl::StrAppend(out, "220 ", options_.hostname, " ESMTP ", options_.product, "\r\n");
}

ServerSession::Result ServerSession::Feed(std::string_view in, std::string* out) {
  if (result_ == Result::kStartTls) result_ = Result::kContinue;
  while (!in.empty() && mode_ != Mode::kDone && result_ != Result::kStartTls) {
    switch (mode_) {
      case Mode::kCommand: {
        const void* nl = memchr(in.data(), '\n', in.size());
        if (nl == nullptr) {
          if (overlong_line_ || line_buf_.size() + in.size() > options_.max_line) {
            overlong_line_ = true;  // discard up to the end of this line
            line_buf_.clear();
          } else {
            line_buf_.append(in);
          }
          return result_;
        }
        size_t n = static_cast<size_t>(static_cast<const char*>(nl) - in.data()) + 1;
        if (overlong_line_ || line_buf_.size() + n > options_.max_line) {
          overlong_line_ = false;
          line_buf_.clear();
          out->append("500 5.5.2 Error: line too long\r\n");
        } else if (line_buf_.empty()) {
          std::string_view line = in.substr(0, n);
          if (std::string_view bad = BadLineEnding(line); !bad.empty())
            return RejectBareLineEnding(bad, out), result_;
          HandleLine(line, out);
        } else {
          line_buf_.append(in.substr(0, n));
          std::string line = std::move(line_buf_);
          line_buf_.clear();
          if (std::string_view bad = BadLineEnding(line); !bad.empty())
            return RejectBareLineEnding(bad, out), result_;
          HandleLine(line, out);
        }
        in.remove_prefix(n);
        break;
      }
      case Mode::kData:
        in.remove_prefix(ConsumeData(in, out));
        break;
      case Mode::kBdat: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(bdat_remaining_, in.size()));
        if (has_mail_) AppendContent(in.substr(0, n));
        bdat_remaining_ -= n;
        in.remove_prefix(n);
        if (bdat_remaining_ == 0) {
          mode_ = Mode::kCommand;
          if (bdat_answered_) {
            bdat_answered_ = false;  // one reply per BDAT command
          } else if (!has_mail_) {
            out->append("503 5.5.1 Error: need MAIL and RCPT before BDAT\r\n");
          } else if (bdat_last_) {
            FinishMessage(out);
          } else {
            out->append("250 2.0.0 Ok: chunk received\r\n");
          }
        }
        break;
      }
      case Mode::kHeld:
        // Pipelined after the end of data: acted upon once the reply is given.
        if (held_input_.size() + in.size() > 16 * options_.max_line) {
          result_ = Result::kDropNow;
          mode_ = Mode::kDone;
          return result_;
        }
        held_input_.append(in);
        in = {};
        break;
      case Mode::kDone:
        break;
    }
  }
  return result_;
}

ServerSession::Result ServerSession::Resume(std::string_view reply, std::string* out) {
  if (mode_ != Mode::kHeld) return result_;
  mode_ = Mode::kCommand;
  out->append(reply);
  out->append("\r\n");
  if (!reply.empty() && reply[0] == '2') ++messages_done_;
  ResetTransaction();
  std::string held = std::move(held_input_);
  held_input_.clear();
  return Feed(held, out);
}

void ServerSession::Apply(Verdict v, std::string* out) {
  if (v == Verdict::kShutdown) {
    absl::StrAppend(out, "421 4.7.0 ", options_.hostname,
                    " Error: too many messages, closing connection\r\n");
    result_ = Result::kCloseAfterSend;
    mode_ = Mode::kDone;
  } else if (v == Verdict::kDrop) {
    result_ = Result::kDropNow;
    mode_ = Mode::kDone;
  }
}

void ServerSession::RejectBareLineEnding(std::string_view what, std::string* out) {
  policy_->OnBareLineEnding();
  absl::StrAppend(out, "521 5.5.2 ", options_.hostname, " Error: bare ");
  out->append(what);
  out->append(" received; lines must end with <CR><LF>\r\n");
  ResetTransaction();
  result_ = Result::kCloseAfterSend;
  mode_ = Mode::kDone;
}

void ServerSession::HandleLine(std::string_view raw, std::string* out) {
  std::string_view line = StripEol(raw);
  size_t sp = line.find(' ');
  std::string_view verb = line.substr(0, sp);
  std::string_view args = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  auto is = [&](std::string_view name) { return EqualsIgnoreCase(verb, name); };

  if (is("EHLO")) {
    if (TrimSpaces(args).empty()) {
      out->append("501 5.5.4 Syntax: EHLO hostname\r\n");
      return;
    }
    ResetTransaction();
    greeted_ = true;
    client_name_ = std::string(TrimSpaces(args).substr(0, 255));
    absl::StrAppend(out, "250-", options_.hostname, "\r\n250-PIPELINING\r\n250-SIZE ",
                    options_.max_message_size,
                    "\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n",
                    options_.starttls && !tls_active_ ? "250-STARTTLS\r\n" : "",
                    options_.chunking ? "250 CHUNKING\r\n" : "250 HELP\r\n");
  } else if (is("HELO")) {
    if (TrimSpaces(args).empty()) {
      out->append("501 5.5.4 Syntax: HELO hostname\r\n");
      return;
    }
    ResetTransaction();
    greeted_ = true;
    client_name_ = std::string(TrimSpaces(args).substr(0, 255));
    absl::StrAppend(out, "250 ", options_.hostname, "\r\n");
  } else if (is("MAIL")) {
    HandleMail(args, out);
  } else if (is("RCPT")) {
    HandleRcpt(args, out);
  } else if (is("DATA")) {
    HandleData(out);
  } else if (is("BDAT")) {
    HandleBdat(args, out);
  } else if (is("STARTTLS")) {
    HandleStartTls(args, out);
  } else if (is("RSET")) {
    ResetTransaction();
    out->append("250 2.0.0 Ok\r\n");
  } else if (is("NOOP")) {
    out->append("250 2.0.0 Ok\r\n");
  } else if (is("QUIT")) {
    out->append("221 2.0.0 Bye\r\n");
    result_ = Result::kCloseAfterSend;
    mode_ = Mode::kDone;
  } else if (is("VRFY")) {
    out->append("252 2.5.0 Cannot VRFY user\r\n");
  } else if (is("HELP")) {
    absl::StrAppend(out, "214 2.0.0 ", options_.product,
                    ": EHLO HELO STARTTLS MAIL RCPT DATA BDAT RSET NOOP QUIT\r\n");
  } else {
    out->append("500 5.5.2 Error: command not recognized\r\n");
  }
}

void ServerSession::HandleStartTls(std::string_view args, std::string* out) {
  if (!options_.starttls) {
    out->append("502 5.5.1 Error: command not implemented\r\n");
    return;
  }
  if (tls_active_) {
    out->append("503 5.5.1 Error: TLS already active\r\n");
    return;
  }
  if (!TrimSpaces(args).empty()) {
    out->append("501 5.5.4 Syntax: STARTTLS\r\n");
    return;
  }
  if (!greeted_) {
    out->append("503 5.5.1 Error: send EHLO first\r\n");
    return;
  }
  if (!policy_->OnStartTls()) {
    out->append("454 4.7.0 TLS not available due to local problem\r\n");
    return;
  }
  out->append("220 2.0.0 Ready to start TLS\r\n");
  // RFC 3207 4.2: the client must EHLO again; forget everything learnt in
  // plaintext, including any partial line.
  ResetTransaction();
  greeted_ = false;
  tls_active_ = true;
  line_buf_.clear();
  overlong_line_ = false;
  result_ = Result::kStartTls;
}

void ServerSession::HandleMail(std::string_view args, std::string* out) {
  if (!greeted_) {
    out->append("503 5.5.1 Error: send HELO/EHLO first\r\n");
    return;
  }
  if (has_mail_) {
    out->append("503 5.5.1 Error: nested MAIL command\r\n");
    return;
  }
  std::string_view address, params;
  if (!ParsePath(args, "FROM:", &address, &params)) {
    out->append("501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    return;
  }
  while (!params.empty()) {
    size_t sp = params.find(' ');
    std::string_view p = params.substr(0, sp);
    params = sp == std::string_view::npos ? std::string_view() : TrimSpaces(params.substr(sp));
    if (p.size() > 5 && EqualsIgnoreCase(p.substr(0, 5), "SIZE=")) {
      uint64_t size = 0;
      if (!ParseU64(p.substr(5), &size)) {
        out->append("501 5.5.4 Bad SIZE parameter\r\n");
        return;
      }
      if (size > options_.max_message_size) {
        out->append("552 5.3.4 Error: message size exceeds fixed limit\r\n");
        return;
      }
    }
  }
  Verdict v = policy_->OnMail(address, messages_done_);
  if (v != Verdict::kAccept) return Apply(v, out);
  has_mail_ = true;
  envelope_.mail_from.assign(address);
  out->append("250 2.1.0 Ok\r\n");
}

void ServerSession::HandleRcpt(std::string_view args, std::string* out) {
  if (!has_mail_) {
    out->append("503 5.5.1 Error: need MAIL command\r\n");
    return;
  }
  std::string_view address, params;
  if (!ParsePath(args, "TO:", &address, &params) || address.empty()) {
    out->append("501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    return;
  }
  Verdict v = policy_->OnRcpt(address);
  switch (v) {
    case Verdict::kAccept:
      envelope_.recipients.emplace_back(address);
      out->append("250 2.1.5 Ok\r\n");
      return;
    case Verdict::kBounce:
      out->append("550 5.1.1 Recipient address rejected: User unknown (salvo sink)\r\n");
      return;
    case Verdict::kDefer450:
      out->append("450 4.2.0 Recipient address temporarily unavailable (salvo sink)\r\n");
      return;
    case Verdict::kDefer451:
      out->append("451 4.3.0 Temporary local problem, try again later (salvo sink)\r\n");
      return;
    case Verdict::kRelayDenied:
      out->append("550 5.7.1 Relay access denied: not a domain this server receives mail for\r\n");
      return;
    case Verdict::kTooManyRecipients:
      out->append("452 4.5.3 Error: too many recipients\r\n");
      return;
    case Verdict::kNoStorage:
      out->append(kNoStorageReply);
      return;
    case Verdict::kShutdown:
    case Verdict::kDrop:
      return Apply(v, out);
  }
}

void ServerSession::HandleData(std::string* out) {
  if (!has_mail_) {
    out->append("503 5.5.1 Error: need MAIL command\r\n");
    return;
  }
  if (envelope_.recipients.empty()) {
    out->append("554 5.5.1 Error: no valid recipients\r\n");
    return;
  }
  Verdict v = policy_->OnData();
  if (v == Verdict::kNoStorage) {
    out->append(kNoStorageReply);
    ResetTransaction();
    return;
  }
  if (v != Verdict::kAccept) return Apply(v, out);
  out->append("354 End data with <CR><LF>.<CR><LF>\r\n");
  mode_ = Mode::kData;
  dot_ = DotState::kLineStart;
  pending_cr_ = false;
  content_.clear();
  content_size_ = 0;
}

void ServerSession::HandleBdat(std::string_view args, std::string* out) {
  args = TrimSpaces(args);
  size_t sp = args.find(' ');
  uint64_t size = 0;
  std::string_view rest = sp == std::string_view::npos ? "" : TrimSpaces(args.substr(sp));
  if (!ParseU64(args.substr(0, sp), &size) || !(rest.empty() || EqualsIgnoreCase(rest, "LAST"))) {
    // The chunk length is unknown: the stream cannot be resynchronized.
    out->append("501 5.5.4 Syntax: BDAT size [LAST], closing connection\r\n");
    result_ = Result::kCloseAfterSend;
    mode_ = Mode::kDone;
    return;
  }
  bdat_last_ = !rest.empty();
  if (has_mail_ && envelope_.recipients.empty()) {
    // Consume the chunk, answer as DATA would.
    out->append("554 5.5.1 Error: no valid recipients\r\n");
    ResetTransaction();
    bdat_answered_ = true;
  } else if (has_mail_ && !bdat_started_) {
    Verdict v = policy_->OnData();
    if (v == Verdict::kNoStorage) {
      // Consume the chunk, answer it once, end the transaction.
      out->append(kNoStorageReply);
      ResetTransaction();
      bdat_answered_ = true;
    } else if (v != Verdict::kAccept) {
      return Apply(v, out);
    } else {
      bdat_started_ = true;
      content_.clear();
      content_size_ = 0;
    }
  }
  bdat_remaining_ = size;
  mode_ = Mode::kBdat;
  if (size == 0) {
    mode_ = Mode::kCommand;
    if (bdat_answered_) {
      bdat_answered_ = false;
    } else if (!has_mail_) {
      out->append("503 5.5.1 Error: need MAIL and RCPT before BDAT\r\n");
    } else if (bdat_last_) {
      FinishMessage(out);
    } else {
      out->append("250 2.0.0 Ok: chunk received\r\n");
    }
  }
}

// Dot-unstuffing with strict line endings: every LF must follow a CR and
// every CR must precede an LF (the CR may end one read and its LF start the
// next: pending_cr_). Two memchr passes per line keep the 20 KB body path cheap.
size_t ServerSession::ConsumeData(std::string_view in, std::string* out) {
  size_t i = 0;
  while (i < in.size()) {
    switch (dot_) {
      case DotState::kInLine: {
        if (pending_cr_) {  // the previous read ended with a CR
          if (in[i] != '\n') {
            RejectBareLineEnding("<CR>", out);
            return in.size();
          }
          pending_cr_ = false;
          AppendContent(in.substr(i, 1));
          ++i;
          dot_ = DotState::kLineStart;
          break;
        }
        const void* nl = memchr(in.data() + i, '\n', in.size() - i);
        size_t stop = nl == nullptr ? in.size()
                                    : static_cast<size_t>(static_cast<const char*>(nl) - in.data());
        const void* cr = memchr(in.data() + i, '\r', stop - i);
        size_t cr_at = cr == nullptr
                           ? std::string_view::npos
                           : static_cast<size_t>(static_cast<const char*>(cr) - in.data());
        if (nl != nullptr) {
          // The line's only CR must be the byte before its LF.
          if (cr_at != stop - 1 || stop == i) {
            RejectBareLineEnding(
                cr_at != std::string_view::npos && cr_at < stop - 1 ? "<CR>" : "<LF>", out);
            return in.size();
          }
          AppendContent(in.substr(i, stop + 1 - i));
          i = stop + 1;
          dot_ = DotState::kLineStart;
        } else {
          // No LF in this read: a CR may only be its last byte.
          if (cr_at != std::string_view::npos && cr_at != in.size() - 1) {
            RejectBareLineEnding("<CR>", out);
            return in.size();
          }
          pending_cr_ = cr_at != std::string_view::npos;
          AppendContent(in.substr(i));
          i = in.size();
        }
        break;
      }
      case DotState::kLineStart:
        if (in[i] == '.') {
          dot_ = DotState::kDot;
          ++i;
        } else {
          dot_ = DotState::kInLine;
        }
        break;
      case DotState::kDot:
        if (in[i] == '\r') {
          dot_ = DotState::kDotCr;
          ++i;
        } else if (in[i] == '\n') {  // "<LF>.<LF>"-style end: smuggling, never an end
          RejectBareLineEnding("<LF>", out);
          return in.size();
        } else {
          dot_ = DotState::kInLine;  // a leading dot is removed (RFC 5321 4.5.2)
        }
        break;
      case DotState::kDotCr:
        if (in[i] == '\n') {
          ++i;
          FinishMessage(out);
          return i;
        }
        RejectBareLineEnding("<CR>", out);
        return in.size();
    }
  }
  return i;
}

void ServerSession::AppendContent(std::string_view bytes) {
  content_size_ += bytes.size();
  if (options_.keep_content && content_size_ <= options_.max_message_size) content_.append(bytes);
}

void ServerSession::FinishMessage(std::string* out) {
  mode_ = Mode::kCommand;
  dot_ = DotState::kLineStart;
  pending_cr_ = false;
  if (content_size_ > options_.max_message_size) {
    out->append("552 5.3.4 Error: message file too big\r\n");
  } else if (options_.hold_final_reply) {
    policy_->OnMessage(envelope_, content_, content_size_);
    // The owner has its copy: hold no second one while the reply waits.
    content_.clear();
    content_.shrink_to_fit();
    mode_ = Mode::kHeld;  // the transaction is kept until Resume
    return;
  } else {
    policy_->OnMessage(envelope_, content_, content_size_);
    ++messages_done_;
    absl::StrAppend(out, "250 2.0.0 Ok: queued as S", messages_done_, "\r\n");
  }
  ResetTransaction();
}

void ServerSession::ResetTransaction() {
  has_mail_ = false;
  bdat_started_ = false;
  envelope_.mail_from.clear();
  envelope_.recipients.clear();
  content_.clear();
  content_.shrink_to_fit();  // idle connections hold no message buffer
  content_size_ = 0;
}

}  // namespace salvo::sink
