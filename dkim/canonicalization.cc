#include "dkim/canonicalization.h"

#include "engine/common/base64.h"
#include "engine/common/strings.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace salvo::dkim {
namespace {

inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }

class StringSink final : public BodySink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  void Write(std::string_view bytes) override { out_->append(bytes); }

 private:
  std::string* out_;
};

constexpr std::string_view kCrlf = "\r\n";

// Skips, 16 bytes at a time, the bytes a relaxed run certainly continues
// through: no CR, no HTAB, and no SP followed by SP/HTAB/CR. Returns where the
// byte-by-byte scan must resume (at the first byte that may end the run, or
// near the end of the chunk). Body scanning was the largest cost after the
// signature itself; this keeps it near memchr speed.
inline std::size_t RelaxedRunEnd(const char* p, std::size_t i, std::size_t n) {
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i sp = _mm_set1_epi8(' ');
  while (i + 17 <= n) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    const __m128i hard = _mm_or_si128(_mm_cmpeq_epi8(b, cr), _mm_cmpeq_epi8(b, tab));
    const __m128i next_wsp =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(next, sp), _mm_cmpeq_epi8(next, tab)),
                     _mm_cmpeq_epi8(next, cr));
    const __m128i stop = _mm_or_si128(hard, _mm_and_si128(_mm_cmpeq_epi8(b, sp), next_wsp));
    const int mask = _mm_movemask_epi8(stop);
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    i += 16;
  }
#else
  (void)p;
  (void)n;
#endif
  return i;
}

// True when no byte of body[0, n) changes under relaxed canonicalization, its
// last byte included (n > 0): no HTAB, no SP before SP or CR, every CR
// followed by LF, and the last byte neither WSP nor CR. Bare LFs and single
// SPs are content. Scans 16 bytes at a time; what must change is rare in
// composed mail, so this usually runs to the end at memchr speed.
bool RelaxedUnchanged(const char* p, std::size_t n) {
  const char last = p[n - 1];
  if (last == ' ' || last == '\t' || last == '\r') return false;
  std::size_t i = 0;
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i sp = _mm_set1_epi8(' ');
  for (; i + 17 <= n; i += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    const __m128i sp_then_wsp = _mm_and_si128(
        _mm_cmpeq_epi8(b, sp), _mm_or_si128(_mm_cmpeq_epi8(next, sp), _mm_cmpeq_epi8(next, cr)));
    const __m128i bare_cr = _mm_andnot_si128(_mm_cmpeq_epi8(next, lf), _mm_cmpeq_epi8(b, cr));
    const __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, tab), sp_then_wsp), bare_cr);
    if (_mm_movemask_epi8(bad) != 0) return false;
  }
#endif
  // The tail (and the whole body without SSE2); the last byte was checked.
  for (; i + 1 < n; ++i) {
    const char c = p[i];
    const char d = p[i + 1];
    if (c == '\t' || (c == ' ' && (d == ' ' || d == '\r')) || (c == '\r' && d != '\n'))
      return false;
  }
  return true;
}

}  // namespace

std::optional<CanonicalBodyPrefix> CanonicalBodyAsPrefix(Canonicalization c,
                                                         std::string_view body) {
  // Both canonicalizations drop the trailing empty lines and end a non-empty
  // body with exactly one CRLF.
  std::size_t end = body.size();
  while (end >= 2 && body[end - 2] == '\r' && body[end - 1] == '\n') end -= 2;
  if (c == Canonicalization::kSimple) {
    // simple changes nothing else; an empty body is a single CRLF.
    return CanonicalBodyPrefix{body.substr(0, end), true};
  }
  if (end == 0) return CanonicalBodyPrefix{body.substr(0, 0), false};  // nothing at all
  if (!RelaxedUnchanged(body.data(), end)) return std::nullopt;
  return CanonicalBodyPrefix{body.substr(0, end), true};
}

std::string_view CanonicalizationName(Canonicalization c) {
  return c == Canonicalization::kSimple ? "simple" : "relaxed";
}

bool ParseCanonicalization(std::string_view text, Canonicalization* header,
                           Canonicalization* body) {
  auto one = [](std::string_view t, Canonicalization* out) {
    if (t == "simple") {
      *out = Canonicalization::kSimple;
      return true;
    }
    if (t == "relaxed") {
      *out = Canonicalization::kRelaxed;
      return true;
    }
    return false;
  };
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    *body = Canonicalization::kSimple;
    return one(text, header);
  }
  return one(text.substr(0, slash), header) && one(text.substr(slash + 1), body);
}

absl::StatusOr<ParsedMessage> ParseMessage(std::string_view message) {
  ParsedMessage parsed;
  std::size_t pos = 0;
  std::size_t line_no = 0;
  std::size_t field_start = std::string_view::npos;
  auto close_field = [&](std::size_t end) -> absl::Status {
    if (field_start == std::string_view::npos) return absl::OkStatus();
    std::string_view raw = message.substr(field_start, end - field_start);
    const std::size_t colon = raw.find(':');
    // The first line of a field was checked to hold a colon.
    std::string_view name = raw.substr(0, colon);
    while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
    parsed.fields.push_back(HeaderField{name, raw});
    field_start = std::string_view::npos;
    return absl::OkStatus();
  };
  while (pos < message.size()) {
    ++line_no;
    const std::size_t lf = message.find('\n', pos);
    if (lf == std::string_view::npos) {
      return absl::InvalidArgumentError(
          Cat("message header line ", line_no,
              " does not end with CRLF (header block not terminated)"));
    }
    if (lf == pos || message[lf - 1] != '\r') {
      return absl::InvalidArgumentError(
          Cat("message header line ", line_no, " ends with a bare LF (CRLF expected)"));
    }
    std::string_view line = message.substr(pos, lf - 1 - pos);
    if (line.empty()) {  // end of the header block
      if (auto s = close_field(pos); !s.ok()) return s;
      parsed.body = message.substr(lf + 1);
      return parsed;
    }
    if (IsWsp(line.front())) {
      if (field_start == std::string_view::npos) {
        return absl::InvalidArgumentError(Cat("message header line ", line_no,
                                              " is a continuation line before any header field"));
      }
    } else {
      if (auto s = close_field(pos); !s.ok()) return s;
      const std::size_t colon = line.find(':');
      std::string_view name = line.substr(0, colon == std::string_view::npos ? 0 : colon);
      while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
      if (colon == std::string_view::npos || name.empty()) {
        return absl::InvalidArgumentError(
            Cat("message header line ", line_no, " is not a header field (no name:)"));
      }
      field_start = pos;
    }
    pos = lf + 1;
  }
  // No empty line: the whole message is a header block without a body.
  if (auto s = close_field(pos); !s.ok()) return s;
  parsed.body = message.substr(message.size());
  return parsed;
}

void CanonicalizeHeader(Canonicalization c, std::string_view raw, std::string* out) {
  if (c == Canonicalization::kSimple) {
    out->append(raw);
    return;
  }
  const std::size_t colon = raw.find(':');
  std::string_view name = raw.substr(0, colon);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  std::string_view value =
      colon == std::string_view::npos ? std::string_view() : raw.substr(colon + 1);
  // Write into space reserved up front (the canonical form is never longer
  // than name + ':' + value + CRLF), then trim to the bytes written.
  const std::size_t start = out->size();
  out->resize(start + name.size() + value.size() + 3);
  char* w = out->data() + start;
  for (char ch : name) *w++ = AsciiLower(ch);
  *w++ = ':';
  // Value: unfold (drop CR and LF), WSP runs -> one SP, trim both ends.
  bool wsp = false;
  bool any = false;
  for (char ch : value) {
    if (ch == '\r' || ch == '\n') continue;
    if (IsWsp(ch)) {
      wsp = true;
      continue;
    }
    if (wsp && any) *w++ = ' ';
    wsp = false;
    any = true;
    *w++ = ch;
  }
  *w++ = '\r';
  *w++ = '\n';
  out->resize(static_cast<std::size_t>(w - out->data()));
}

void BodyCanonicalizer::Reset(Canonicalization c, BodySink* sink) {
  canon_ = c;
  sink_ = sink;
  pending_crlf_ = 0;
  pending_cr_ = false;
  pending_wsp_ = false;
  wrote_any_ = false;
}

void BodyCanonicalizer::FlushPendingLines() {
  // Empty lines are held back until content follows: trailing ones are dropped.
  static constexpr char kManyCrlf[] =
      "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
  while (pending_crlf_ > 0) {
    const std::size_t n = pending_crlf_ < 16 ? pending_crlf_ : 16;
    sink_->Write(std::string_view(kManyCrlf, 2 * n));
    pending_crlf_ -= n;
  }
}

void BodyCanonicalizer::Update(std::string_view chunk) {
  if (canon_ == Canonicalization::kSimple) {
    UpdateSimple(chunk);
  } else {
    UpdateRelaxed(chunk);
  }
}

// simple: bytes unchanged, except that trailing CRLFs are held back.
void BodyCanonicalizer::UpdateSimple(std::string_view chunk) {
  std::size_t i = 0;
  const std::size_t n = chunk.size();
  while (i < n) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (chunk[i] == '\n') {
        ++pending_crlf_;
        ++i;
        continue;
      }
      FlushPendingLines();
      sink_->Write("\r");
    }
    if (chunk[i] == '\r') {
      pending_cr_ = true;
      ++i;
      continue;
    }
    // A run of content bytes up to the next CR.
    const void* cr = std::memchr(chunk.data() + i, '\r', n - i);
    const std::size_t end =
        cr == nullptr ? n : static_cast<std::size_t>(static_cast<const char*>(cr) - chunk.data());
    FlushPendingLines();
    sink_->Write(chunk.substr(i, end - i));
    i = end;
  }
}

// relaxed: WSP at line end dropped, WSP runs -> one SP, trailing empty lines
// dropped. Content runs are written straight from the input.
void BodyCanonicalizer::UpdateRelaxed(std::string_view chunk) {
  std::size_t i = 0;
  const std::size_t n = chunk.size();
  while (i < n) {
    char c = chunk[i];
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') {  // end of line: pending WSP was trailing
        ++pending_crlf_;
        pending_wsp_ = false;
        ++i;
        continue;
      }
      // A bare CR is content.
      FlushPendingLines();
      if (pending_wsp_) sink_->Write(" ");
      pending_wsp_ = false;
      sink_->Write("\r");
      wrote_any_ = true;
    }
    if (c == '\r') {
      pending_cr_ = true;
      ++i;
      continue;
    }
    if (IsWsp(c)) {
      pending_wsp_ = true;
      ++i;
      continue;
    }
    // A run of bytes the canonical form keeps as they are: content, and single
    // SPs between content bytes. Typical text lines are one run.
    std::size_t end = RelaxedRunEnd(chunk.data(), i + 1, n);
    while (end < n) {
      const char d = chunk[end];
      if (d == '\r' || d == '\t') break;
      if (d == ' ') {
        if (end + 1 >= n) break;
        const char e = chunk[end + 1];
        if (e == ' ' || e == '\t' || e == '\r') break;
      }
      ++end;
    }
    FlushPendingLines();
    if (pending_wsp_) {
      // Write the single SP together with the run when it directly precedes
      // it in the input (the common "word word" case): one sink call.
      if (i > 0 && chunk[i - 1] == ' ') {
        --i;
      } else {
        sink_->Write(" ");
      }
      pending_wsp_ = false;
    }
    sink_->Write(chunk.substr(i, end - i));
    wrote_any_ = true;
    i = end;
  }
}

void BodyCanonicalizer::Finish() {
  if (canon_ == Canonicalization::kSimple) {
    if (pending_cr_) {  // a final bare CR is content
      FlushPendingLines();
      sink_->Write("\r");
      pending_cr_ = false;
    }
    // Exactly one CRLF ends the body; an empty body is a single CRLF.
    pending_crlf_ = 0;
    sink_->Write(kCrlf);
    return;
  }
  if (pending_cr_) {
    FlushPendingLines();
    if (pending_wsp_) sink_->Write(" ");
    sink_->Write("\r");
    wrote_any_ = true;
    pending_cr_ = false;
  }
  // Non-empty body: exactly one CRLF ends it (trailing empty lines dropped).
  // A body of only empty or WSP lines canonicalizes to nothing at all.
  if (wrote_any_) sink_->Write(kCrlf);
  pending_crlf_ = 0;
  pending_wsp_ = false;
  wrote_any_ = false;
}

std::string CanonicalizeBody(Canonicalization c, std::string_view body) {
  std::string out;
  StringSink sink(&out);
  BodyCanonicalizer canon(c, &sink);
  canon.Update(body);
  canon.Finish();
  return out;
}

}  // namespace salvo::dkim
