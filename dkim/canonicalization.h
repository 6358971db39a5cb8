#pragma once
// DKIM canonicalization (RFC 6376 section 3.4): header fields and body,
// "simple" and "relaxed".
//
// The header block of a message is parsed once into HeaderField views (no
// copies); the body is canonicalized as a stream of string_view chunks into a
// BodySink (a digest in production, a string in tests), carrying the CR / WSP /
// trailing-empty-line state across chunk boundaries so the body is never
// copied. Pure functions and small value types: usable from any thread.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace salvo::dkim {

enum class Canonicalization { kSimple, kRelaxed };

// "simple" / "relaxed".
std::string_view CanonicalizationName(Canonicalization c);
// Parses "relaxed/simple" style c= values ("relaxed" alone means
// relaxed/simple, RFC 6376 3.5). Returns false on anything else.
bool ParseCanonicalization(std::string_view text, Canonicalization* header, Canonicalization* body);

// One header field as it appears in the message, folding included.
struct HeaderField {
  std::string_view name;  // as written, without surrounding WSP
  std::string_view raw;   // the whole field including its final CRLF
};

// A message split into header fields and body. Views into the caller's text.
struct ParsedMessage {
  std::vector<HeaderField> fields;
  std::string_view body;  // everything after the empty line (may be empty)
};

// Splits `message` (CRLF line endings) into header fields and body. A header
// line without a colon, a bare LF or a continuation line before the first
// field is an InvalidArgument error naming the line number.
absl::StatusOr<ParsedMessage> ParseMessage(std::string_view message);

// Appends the canonical form of one header field (with its trailing CRLF) to
// `out`. For relaxed: lower-case name, unfolded, WSP runs -> one SP, no WSP
// around the colon or at the end of the value.
void CanonicalizeHeader(Canonicalization c, std::string_view raw_field, std::string* out);

// Receives canonical body bytes.
class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual void Write(std::string_view bytes) = 0;
};

// Streaming body canonicalizer. Feed the body in any chunking with Update(),
// then call Finish() once. Not thread-safe; cheap to Reset() and reuse.
class BodyCanonicalizer {
 public:
  BodyCanonicalizer(Canonicalization c, BodySink* sink) : canon_(c), sink_(sink) {}
  void Reset(Canonicalization c, BodySink* sink);
  void Update(std::string_view chunk);
  void Finish();

 private:
  void UpdateSimple(std::string_view chunk);
  void UpdateRelaxed(std::string_view chunk);
  void FlushPendingLines();

  Canonicalization canon_;
  BodySink* sink_;
  std::size_t pending_crlf_ = 0;  // line ends not yet written (may be trailing)
  bool pending_cr_ = false;       // last byte seen was CR (LF may follow)
  bool pending_wsp_ = false;      // relaxed: WSP run seen, not yet written
  bool wrote_any_ = false;        // relaxed: some body byte was written
};

// The canonical body in one piece when the body is already canonical up to
// its trailing empty lines (the common case for composed mail: no WSP run to
// fold, no WSP at a line end, no bare CR): `text`, a prefix of `body`, then
// CRLF when `crlf`. A digest can then take the message's bytes in a single
// update instead of a line at a time. nullopt: the body needs the streaming
// BodyCanonicalizer. Same result as BodyCanonicalizer on every input.
struct CanonicalBodyPrefix {
  std::string_view text;
  bool crlf = false;
};
std::optional<CanonicalBodyPrefix> CanonicalBodyAsPrefix(Canonicalization c, std::string_view body);

// Convenience for tests and tools: canonical body as a string.
std::string CanonicalizeBody(Canonicalization c, std::string_view body);

}  // namespace salvo::dkim
