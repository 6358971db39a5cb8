#pragma once
// Incremental SMTP reply parser: bytes in, complete Reply objects out.
//
// Owned by one Session (or a test) and used on its thread only. Handles
// single- and multi-line replies ("250-" ... "250 "), a bare "250" final line,
// CRLF or bare-LF line ends, replies split across reads and several replies in
// one read. The RFC 3463 enhanced status code of the first line is split out
// (and stripped from continuation lines that repeat it). Memory is bounded:
// a line longer than max_line_bytes, more than max_lines lines in one reply,
// or garbage where a reply should start is a protocol error, after which the
// parser stays failed.
#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "engine/smtp/outcome.h"

namespace salvo::smtp {

struct ReplyParserLimits {
  size_t max_line_bytes = 4096;  // RFC 5321 says 512; real servers exceed it
  size_t max_lines = 200;        // per reply (EHLO answers have ~15)
};

class ReplyParser {
 public:
  explicit ReplyParser(ReplyParserLimits limits = {}) : limits_(limits) {}

  // Appends bytes read from the peer. Never fails; errors surface in Next().
  void Feed(std::string_view bytes);

  // Extracts the next complete reply into *out. Returns true when one was
  // produced, false when more bytes are needed. Once a protocol error has been
  // seen, returns false and error() is non-OK for good.
  bool Next(Reply* out);

  const absl::Status& error() const { return error_; }
  // True while part of a reply (a partial line or the first lines of a
  // multi-line reply) is buffered.
  bool HasPartial() const;
  // Drops everything buffered (used after STARTTLS: bytes that arrived with
  // the 220 must not be trusted, see CVE-2011-0411).
  void Reset();
  size_t buffered_bytes() const { return buf_.size() - pos_; }

 private:
  bool Fail(std::string message);
  // Parses one line (without its line end) into the reply in progress.
  // Returns true when the line completed the reply.
  bool TakeLine(std::string_view line);

  ReplyParserLimits limits_;
  std::string buf_;
  size_t pos_ = 0;   // first unconsumed byte of buf_
  size_t scan_ = 0;  // bytes after pos_ already known to contain no '\n'
  // Reply in progress.
  Reply cur_;
  size_t cur_lines_ = 0;
  absl::Status error_;
};

// Splits an RFC 3463 enhanced status code ("5.1.1") off the front of `text`.
// Returns the code (empty if none) and advances *text past it and one space.
std::string_view SplitEnhancedCode(std::string_view* text);

}  // namespace salvo::smtp
