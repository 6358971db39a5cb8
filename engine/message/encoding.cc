#include "engine/message/encoding.h"

#include <cstdio>

#include "engine/common/base64.h"

namespace salvo::message {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";
// For the streaming MIME encoder (Base64Encoder), which wraps lines as it goes;
// whole strings go through engine/common/base64.h.
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// Length of the UTF-8 sequence starting at s[i]; 1 for anything malformed so
// that hostile bytes still make progress (they are encoded byte by byte).
size_t Utf8Len(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + len > s.size()) return 1;
  for (size_t k = 1; k < len; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  return len;
}

bool QLiteral(unsigned char c, bool phrase) {
  if (phrase) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '!' ||
           c == '*' || c == '+' || c == '-' || c == '/';
  }
  return c > 32 && c < 127 && c != '=' && c != '?' && c != '_';
}

}  // namespace

void AppendBase64(std::string_view in, std::string* out) { out->append(Base64Encode(in)); }

void AppendBase64Url(std::string_view in, std::string* out) { out->append(Base64UrlEncode(in)); }

void QpEncoder::Append(std::string_view in, bool text_mode, std::string* out) {
  const size_t n = in.size();
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(in[i]);
    if (text_mode && c == '\r' && i + 1 < n && in[i + 1] == '\n') {
      out->append("\r\n");
      col_ = 0;
      ++i;
      continue;
    }
    bool wsp = c == ' ' || c == '\t';
    bool line_end_follows =
        i + 1 == n || (text_mode && i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n');
    bool encode = c == '=' || (c < 32 && c != '\t') || c >= 127 || (wsp && line_end_follows);
    bool line_start_special = c == '-' || c == '.';
    size_t tok = (encode || (col_ == 0 && line_start_special)) ? 3 : 1;
    if (col_ + tok > 75) {
      out->append("=\r\n");
      col_ = 0;
    }
    if (col_ == 0 && line_start_special) encode = true;
    if (encode) {
      char t[3] = {'=', kHex[c >> 4], kHex[c & 15]};
      out->append(t, 3);
      col_ += 3;
    } else {
      out->push_back(static_cast<char>(c));
      ++col_;
    }
  }
}

void QpEncoder::AppendPreEncoded(std::string_view block, size_t first_line_len, size_t last_col,
                                 bool has_break, std::string* out) {
  if (block.empty()) return;
  if (col_ > 0 && col_ + first_line_len > 75) {
    out->append("=\r\n");
    col_ = 0;
  }
  out->append(block);
  col_ = has_break ? last_col : col_ + last_col;
}

void Base64Encoder::EmitQuad(const unsigned char* g, size_t n, std::string* out) {
  if (col_ + 4 > kEncodedLineChars) {
    out->append("\r\n");
    col_ = 0;
  }
  uint32_t v = (uint32_t{g[0]} << 16) | (uint32_t{n > 1 ? g[1] : 0u} << 8) | (n > 2 ? g[2] : 0u);
  char q[4] = {kB64[v >> 18], kB64[(v >> 12) & 63], n > 1 ? kB64[(v >> 6) & 63] : '=',
               n > 2 ? kB64[v & 63] : '='};
  out->append(q, 4);
  col_ += 4;
}

void Base64Encoder::Append(std::string_view in, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size();
  size_t i = 0;
  while (i < n && carry_len_ > 0) {
    carry_[carry_len_++] = p[i++];
    if (carry_len_ == 3) {
      EmitQuad(carry_, 3, out);
      carry_len_ = 0;
    }
  }
  for (; i + 3 <= n; i += 3) EmitQuad(p + i, 3, out);
  while (i < n) carry_[carry_len_++] = p[i++];
}

void Base64Encoder::AppendPreEncoded(std::string_view head, std::string_view block, size_t last_col,
                                     std::string* out) {
  Append(head, out);
  if (block.empty()) return;
  if (col_ > 0) out->append("\r\n");
  out->append(block);
  col_ = last_col;
}

void Base64Encoder::Finish(std::string* out) {
  if (carry_len_ > 0) EmitQuad(carry_, carry_len_, out);
  carry_len_ = 0;
}

void AppendEncodedWords(std::string_view value, bool phrase, size_t* col, std::string* out) {
  constexpr std::string_view kPrefix = "=?utf-8?q?";
  constexpr size_t kMaxWord = 75;  // RFC 2047 section 2
  size_t c = *col;
  size_t i = 0;
  bool first = true;
  do {
    // Room for the prefix, one 4-byte character (12) and the suffix.
    if (!first || c + kPrefix.size() + 14 > kFoldColumn) {
      out->append("\r\n ");
      c = 1;
    } else if (c > 0 && (*out)[out->size() - 1] != ' ') {
      out->push_back(' ');
      ++c;
    }
    first = false;
    out->append(kPrefix);
    c += kPrefix.size();
    size_t word = kPrefix.size();
    bool any = false;
    while (i < value.size()) {
      size_t len = Utf8Len(value, i);
      size_t enc = 0;
      for (size_t k = 0; k < len; ++k) {
        auto b = static_cast<unsigned char>(value[i + k]);
        enc += (b == ' ' || QLiteral(b, phrase)) ? 1 : 3;
      }
      if (any && (c + enc + 2 > kFoldColumn || word + enc + 2 > kMaxWord)) break;
      for (size_t k = 0; k < len; ++k) {
        auto b = static_cast<unsigned char>(value[i + k]);
        if (b == ' ') {
          out->push_back('_');
        } else if (QLiteral(b, phrase)) {
          out->push_back(static_cast<char>(b));
        } else {
          char t[3] = {'=', kHex[b >> 4], kHex[b & 15]};
          out->append(t, 3);
        }
      }
      c += enc;
      word += enc;
      i += len;
      any = true;
    }
    out->append("?=");
    c += 2;
  } while (i < value.size());
  *col = c;
}

bool IsPlainHeaderText(std::string_view value, size_t name_len) {
  if (value.empty()) return true;
  if (value.front() == ' ' || value.back() == ' ') return false;
  size_t word = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    auto c = static_cast<unsigned char>(value[i]);
    if (c < 32 || c >= 127) return false;
    if (c == '=' && i + 1 < value.size() && value[i + 1] == '?') return false;
    word = c == ' ' ? 0 : word + 1;
    if (word + name_len + 3 > 900) return false;
  }
  return true;
}

void AppendFoldedPlain(std::string_view value, size_t* col, std::string* out) {
  size_t c = *col;
  size_t i = 0;
  bool first = true;
  while (i < value.size()) {
    size_t sp = i;
    while (sp < value.size() && value[sp] == ' ') ++sp;
    size_t end = sp;
    while (end < value.size() && value[end] != ' ') ++end;
    size_t piece = end - i;
    if (!first && c + piece > kFoldColumn) {
      out->append("\r\n");
      c = 0;
    }
    out->append(value.data() + i, piece);
    c += piece;
    first = false;
    i = end;
  }
  *col = c;
}

void AppendRfc5322Date(int64_t unix_seconds, std::string* out) {
  static constexpr const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = unix_seconds >= 0 ? unix_seconds / 86400 : (unix_seconds - 86399) / 86400;
  int64_t secs = unix_seconds - days * 86400;
  // Howard Hinnant's civil_from_days.
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  int64_t wd = ((days % 7) + 7) % 7;
  int hh = static_cast<int>(secs / 3600), mm = static_cast<int>(secs / 60 % 60),
      ss = static_cast<int>(secs % 60);
  // Written digit by digit: once per copy, snprintf was 0.6% of a shard.
  auto two = [out](int v) {
    out->push_back(static_cast<char>('0' + v / 10));
    out->push_back(static_cast<char>('0' + v % 10));
  };
  out->append(kDays[wd]);
  out->append(", ");
  two(static_cast<int>(d));
  out->push_back(' ');
  out->append(kMonths[m - 1]);
  out->push_back(' ');
  if (y >= 0 && y <= 9999) {
    two(static_cast<int>(y / 100));
    two(static_cast<int>(y % 100));
  } else {
    out->append(std::to_string(y));
  }
  out->push_back(' ');
  two(hh);
  out->push_back(':');
  two(mm);
  out->push_back(':');
  two(ss);
  out->append(" +0000");
}

void AppendPercentEncoded(std::string_view in, std::string* out) {
  for (unsigned char c : in) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out->push_back(static_cast<char>(c));
    } else {
      char t[3] = {'%', kHex[c >> 4], kHex[c & 15]};
      out->append(t, 3);
    }
  }
}

}  // namespace salvo::message
