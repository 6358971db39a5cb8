#include "engine/deliverylog/record.h"

#include <climits>
#include <cstdio>
#include <cstring>

#include "absl/time/civil_time.h"

namespace salvo::deliverylog {
namespace {

// Lines are formatted through a raw cursor into memory sized for the worst
// case (LineBound) and appended in one piece: a capacity check per field and
// per byte cost more than the rest of the line.
char* PutUnsigned(uint64_t v, char* p) {
  char buf[20];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) *p++ = buf[--n];
  return p;
}

char* PutSigned(int64_t v, char* p) {
  if (v < 0) {
    *p++ = '-';
    return PutUnsigned(static_cast<uint64_t>(-(v + 1)) + 1, p);
  }
  return PutUnsigned(static_cast<uint64_t>(v), p);
}

char* Put(std::string_view s, char* p) {
  // An empty view may have a null data(): memcpy must not see it.
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

void AppendDigits(int64_t v, int width, std::string* out) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  out->append(buf, static_cast<size_t>(width));
}

// RFC 3339, UTC, milliseconds: "2026-12-03T08:11:36.123Z". The civil
// conversion costs more than the rest of a line, so each thread keeps the
// last second it formatted.
constexpr size_t kTimeBytes = 26;  // with the quotes
char* PutTime(absl::Time t, char* p) {
  struct Cache {
    int64_t second = INT64_MIN;
    std::string text;  // "2026-12-03T08:11:36."
  };
  thread_local Cache cache;
  const int64_t ms_total = absl::ToUnixMillis(t);
  const int64_t second = ms_total >= 0 ? ms_total / 1000 : (ms_total - 999) / 1000;
  if (second != cache.second) {
    const absl::CivilSecond cs =
        absl::ToCivilSecond(absl::FromUnixSeconds(second), absl::UTCTimeZone());
    cache.text.clear();
    AppendDigits(cs.year(), 4, &cache.text);
    cache.text.push_back('-');
    AppendDigits(cs.month(), 2, &cache.text);
    cache.text.push_back('-');
    AppendDigits(cs.day(), 2, &cache.text);
    cache.text.push_back('T');
    AppendDigits(cs.hour(), 2, &cache.text);
    cache.text.push_back(':');
    AppendDigits(cs.minute(), 2, &cache.text);
    cache.text.push_back(':');
    AppendDigits(cs.second(), 2, &cache.text);
    cache.text.push_back('.');
    cache.second = second;
  }
  *p++ = '"';
  p = Put(cache.text, p);
  int64_t ms = ms_total - second * 1000;
  p[2] = static_cast<char>('0' + ms % 10);
  p[1] = static_cast<char>('0' + ms / 10 % 10);
  p[0] = static_cast<char>('0' + ms / 100);
  p += 3;
  *p++ = 'Z';
  *p++ = '"';
  return p;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if there is none.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n;
  uint32_t min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// ,"key": (the key is plain ASCII)
template <size_t N>
char* PutKey(const char (&key)[N], char* p) {
  *p++ = ',';
  *p++ = '"';
  std::memcpy(p, key, N - 1);
  p += N - 1;
  *p++ = '"';
  *p++ = ':';
  return p;
}

// Worst case of a JSON string: every byte a \u00XX escape, and the quotes.
constexpr size_t JsonStringBound(size_t bytes) { return 6 * bytes + 2; }

// The bytes a JSON string holds as they are: printable ASCII but the quote
// and the backslash. One table lookup per byte on the common path (every
// field of a typical line is plain ASCII).
struct PlainBytes {
  bool plain[256] = {};
  constexpr PlainBytes() {
    for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  }
};
constexpr PlainBytes kPlainBytes;

// `text` as a JSON string literal, then `suffix` (plain ASCII) inside the
// quotes.
char* PutJsonString(std::string_view text, char* p, std::string_view suffix = {}) {
  static constexpr char kHex[] = "0123456789abcdef";
  *p++ = '"';
  size_t i = 0;
  while (i < text.size()) {
    // Copy runs of plain ASCII at once.
    size_t j = i;
    while (j < text.size() && kPlainBytes.plain[static_cast<unsigned char>(text[j])]) ++j;
    std::memcpy(p, text.data() + i, j - i);
    p += j - i;
    i = j;
    if (i == text.size()) break;
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t n = Utf8Length(text, i);
      if (n == 0) {
        p = Put("\xEF\xBF\xBD", p);  // U+FFFD
        ++i;
      } else {
        p = Put(text.substr(i, n), p);
        i += n;
      }
      continue;
    }
    *p++ = '\\';
    switch (c) {
      case '"':
        *p++ = '"';
        break;
      case '\\':
        *p++ = '\\';
        break;
      case '\n':
        *p++ = 'n';
        break;
      case '\r':
        *p++ = 'r';
        break;
      case '\t':
        *p++ = 't';
        break;
      default:
        p = Put("u00", p);
        *p++ = kHex[c >> 4];
        *p++ = kHex[c & 15];
    }
    ++i;
  }
  p = Put(suffix, p);
  *p++ = '"';
  return p;
}

}  // namespace

std::string_view RecordTypeName(RecordType t) {
  switch (t) {
    case RecordType::kDelivered:
      return "delivered";
    case RecordType::kDeferred:
      return "deferred";
    case RecordType::kBounced:
      return "bounced";
    case RecordType::kExpired:
      return "expired";
    case RecordType::kSuppressed:
      return "suppressed";
    case RecordType::kComplaint:
      return "complaint";
  }
  return "delivered";
}

void AppendJsonString(std::string_view text, std::string* out) {
  const size_t at = out->size();
  out->resize(at + JsonStringBound(text.size()));
  char* end = PutJsonString(text, out->data() + at);
  out->resize(static_cast<size_t>(end - out->data()));
}

namespace {

constexpr std::string_view kEllipsis = "...";

// The reply as written: at most kMaxReplyBytes, cut at a character boundary
// (never inside a UTF-8 sequence) and then ending in "...".
std::string_view ReplyText(std::string_view reply, bool* cut) {
  *cut = reply.size() > kMaxReplyBytes;
  if (!*cut) return reply;
  size_t n = kMaxReplyBytes;
  while (n > 0 && (static_cast<unsigned char>(reply[n]) & 0xC0) == 0x80) --n;
  return reply.substr(0, n);
}

// Every byte of a line but its strings (keys, numbers, names, time), with
// room to spare.
constexpr size_t kFixedBound = 512;

char* PutLine(const Record& r, std::string_view reply, bool reply_cut, char* p) {
  p = Put("{\"time\":", p);
  p = PutTime(r.time, p);
  p = PutKey("type", p);
  *p++ = '"';
  p = Put(RecordTypeName(r.type), p);
  *p++ = '"';
  p = PutKey("campaign", p);
  p = PutJsonString(r.campaign, p);
  p = PutKey("campaign_id", p);
  p = PutUnsigned(r.campaign_id, p);
  p = PutKey("recipient", p);
  p = PutJsonString(r.recipient, p);
  p = PutKey("domain", p);
  p = PutJsonString(r.domain, p);
  p = PutKey("mx_host", p);
  p = PutJsonString(r.mx_host, p);
  p = PutKey("mx_ip", p);
  p = PutJsonString(r.mx_ip, p);
  p = PutKey("code", p);
  p = PutSigned(r.code, p);
  p = PutKey("enhanced_code", p);
  p = PutJsonString(r.enhanced_code, p);
  p = PutKey("reply", p);
  p = PutJsonString(reply, p, reply_cut ? kEllipsis : std::string_view());
  p = PutKey("category", p);
  *p++ = '"';
  p = Put(smtp::CategoryName(r.category), p);
  *p++ = '"';
  p = PutKey("phase", p);
  p = Put(r.type != RecordType::kBounced ? "\"\"" : r.async ? "\"async\"" : "\"sync\"", p);
  p = PutKey("attempt", p);
  p = PutUnsigned(r.attempt, p);
  p = PutKey("tls", p);
  p = PutJsonString(r.tls_version, p);
  p = PutKey("size", p);
  p = PutUnsigned(r.size, p);
  p = PutKey("latency_ms", p);
  p = PutSigned(r.latency_ms, p);
  p = PutKey("source_ip", p);
  p = PutJsonString(r.source_ip, p);
  return Put("}\n", p);
}

}  // namespace

void AppendJsonLine(const Record& r, std::string* out) {
  bool reply_cut = false;
  const std::string_view reply = ReplyText(r.reply, &reply_cut);
  const size_t bound = kFixedBound + kTimeBytes + smtp::CategoryName(r.category).size() +
                       JsonStringBound(r.campaign.size()) + JsonStringBound(r.recipient.size()) +
                       JsonStringBound(r.domain.size()) + JsonStringBound(r.mx_host.size()) +
                       JsonStringBound(r.mx_ip.size()) + JsonStringBound(r.enhanced_code.size()) +
                       JsonStringBound(reply.size()) + kEllipsis.size() +
                       JsonStringBound(r.tls_version.size()) + JsonStringBound(r.source_ip.size());
  // A typical line's worst case fits on the stack; the line is then appended
  // in one copy. Longer ones go through a heap buffer.
  char stack[4096];
  if (bound <= sizeof stack) {
    char* end = PutLine(r, reply, reply_cut, stack);
    out->append(stack, static_cast<size_t>(end - stack));
    return;
  }
  std::string heap(bound, '\0');
  char* end = PutLine(r, reply, reply_cut, heap.data());
  out->append(heap.data(), static_cast<size_t>(end - heap.data()));
}

}  // namespace salvo::deliverylog
