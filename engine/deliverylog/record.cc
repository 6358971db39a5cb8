#include "engine/deliverylog/record.h"

#include <climits>
#include <cstdio>

#include "absl/time/civil_time.h"

namespace salvo::deliverylog {
namespace {

void AppendUnsigned(uint64_t v, std::string* out) {
  char buf[20];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) out->push_back(buf[--n]);
}

void AppendSigned(int64_t v, std::string* out) {
  if (v < 0) {
    out->push_back('-');
    AppendUnsigned(static_cast<uint64_t>(-(v + 1)) + 1, out);
  } else {
    AppendUnsigned(static_cast<uint64_t>(v), out);
  }
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
void AppendTime(absl::Time t, std::string* out) {
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
  out->push_back('"');
  out->append(cache.text);
  AppendDigits(ms_total - second * 1000, 3, out);
  out->append("Z\"");
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

void Key(std::string_view key, std::string* out) {
  out->push_back(',');
  out->push_back('"');
  out->append(key);
  out->append("\":");
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
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    // Copy runs of plain ASCII at once.
    size_t j = i;
    while (j < text.size()) {
      unsigned char c = static_cast<unsigned char>(text[j]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++j;
    }
    out->append(text.data() + i, j - i);
    i = j;
    if (i == text.size()) break;
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t n = Utf8Length(text, i);
      if (n == 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD
        ++i;
      } else {
        out->append(text.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xF]);
    }
    ++i;
  }
  out->push_back('"');
}

void AppendJsonLine(const Record& r, std::string* out) {
  out->append("{\"time\":");
  AppendTime(r.time, out);
  Key("type", out);
  out->push_back('"');
  out->append(RecordTypeName(r.type));
  out->push_back('"');
  Key("campaign", out);
  AppendJsonString(r.campaign, out);
  Key("campaign_id", out);
  AppendUnsigned(r.campaign_id, out);
  Key("recipient", out);
  AppendJsonString(r.recipient, out);
  Key("domain", out);
  AppendJsonString(r.domain, out);
  Key("mx_host", out);
  AppendJsonString(r.mx_host, out);
  Key("mx_ip", out);
  AppendJsonString(r.mx_ip, out);
  Key("code", out);
  AppendSigned(r.code, out);
  Key("enhanced_code", out);
  AppendJsonString(r.enhanced_code, out);
  Key("reply", out);
  if (r.reply.size() > kMaxReplyBytes) {
    // Cut at a character boundary, never inside a UTF-8 sequence.
    size_t cut = kMaxReplyBytes;
    while (cut > 0 && (static_cast<unsigned char>(r.reply[cut]) & 0xC0) == 0x80) --cut;
    std::string shortened(r.reply.substr(0, cut));
    shortened.append("...");
    AppendJsonString(shortened, out);
  } else {
    AppendJsonString(r.reply, out);
  }
  Key("category", out);
  out->push_back('"');
  out->append(smtp::CategoryName(r.category));
  out->push_back('"');
  Key("phase", out);
  out->append(r.type != RecordType::kBounced ? "\"\"" : r.async ? "\"async\"" : "\"sync\"");
  Key("attempt", out);
  AppendUnsigned(r.attempt, out);
  Key("tls", out);
  AppendJsonString(r.tls_version, out);
  Key("size", out);
  AppendUnsigned(r.size, out);
  Key("latency_ms", out);
  AppendSigned(r.latency_ms, out);
  Key("source_ip", out);
  AppendJsonString(r.source_ip, out);
  out->append("}\n");
}

}  // namespace salvo::deliverylog
