#include "engine/smtp/reply.h"

#include <cstring>

#include "engine/common/strings.h"

namespace salvo::smtp {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Digits run of 1..3 at the front of s; returns its length (0 if none).
size_t DigitRun(std::string_view s, size_t max) {
  size_t n = 0;
  while (n < s.size() && n <= max && IsDigit(s[n])) ++n;
  return (n >= 1 && n <= max) ? n : 0;
}

}  // namespace

std::string_view SplitEnhancedCode(std::string_view* text) {
  std::string_view s = *text;
  // class "." subject "." detail; class is 2, 4 or 5 (RFC 3463 2).
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return {};
  size_t i = 2;
  size_t n = DigitRun(s.substr(i), 3);
  if (n == 0) return {};
  i += n;
  if (i >= s.size() || s[i] != '.') return {};
  ++i;
  n = DigitRun(s.substr(i), 3);
  if (n == 0) return {};
  i += n;
  if (i < s.size() && s[i] != ' ' && s[i] != '\t') return {};
  std::string_view code = s.substr(0, i);
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  *text = s.substr(i);
  return code;
}

void ReplyParser::Feed(std::string_view bytes) {
  if (!error_.ok()) return;
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= 4096)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

bool ReplyParser::HasPartial() const { return pos_ < buf_.size() || cur_lines_ > 0; }

void ReplyParser::Reset() {
  buf_.clear();
  pos_ = 0;
  scan_ = 0;
  cur_ = Reply{};
  cur_lines_ = 0;
}

bool ReplyParser::Fail(std::string message) {
  error_ = absl::DataLossError(std::move(message));
  buf_.clear();
  buf_.shrink_to_fit();
  pos_ = 0;
  scan_ = 0;
  return false;
}

bool ReplyParser::Next(Reply* out) {
  while (error_.ok()) {
    const char* base = buf_.data() + pos_;
    size_t avail = buf_.size() - pos_;
    const void* nl = avail > scan_ ? std::memchr(base + scan_, '\n', avail - scan_) : nullptr;
    if (nl == nullptr) {
      scan_ = avail;
      if (avail > limits_.max_line_bytes) {
        return Fail(Cat("reply line longer than ", limits_.max_line_bytes, " bytes"));
      }
      return false;
    }
    size_t len = static_cast<const char*>(nl) - base;
    size_t consumed = len + 1;
    if (len > limits_.max_line_bytes) {
      return Fail(Cat("reply line longer than ", limits_.max_line_bytes, " bytes"));
    }
    if (len > 0 && base[len - 1] == '\r') --len;
    std::string_view line(base, len);
    pos_ += consumed;
    scan_ = 0;
    bool done = TakeLine(line);
    if (!error_.ok()) return false;
    if (done) {
      *out = std::move(cur_);
      cur_ = Reply{};
      cur_lines_ = 0;
      return true;
    }
  }
  return false;
}

bool ReplyParser::TakeLine(std::string_view line) {
  bool coded = line.size() >= 3 && IsDigit(line[0]) && IsDigit(line[1]) && IsDigit(line[2]) &&
               (line.size() == 3 || line[3] == ' ' || line[3] == '-');
  if (++cur_lines_ > limits_.max_lines) {
    Fail(Cat("reply has more than ", limits_.max_lines, " lines"));
    return false;
  }
  if (!coded) {
    if (cur_lines_ == 1) {
      std::string_view shown = line.substr(0, 40);
      Fail(Cat("garbage where a reply was expected: \"", Printable(shown), "\""));
      return false;
    }
    // A text line inside a multi-line reply (Go's textproto tolerates this).
    cur_.text.push_back('\n');
    cur_.text.append(line);
    return false;
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (code < 200 || code > 599) {
    Fail(Cat("reply code ", code, " is out of range"));
    return false;
  }
  bool last = line.size() == 3 || line[3] == ' ';
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  if (cur_lines_ == 1) {
    cur_.code = code;
    std::string_view enh = SplitEnhancedCode(&text);
    if (!enh.empty() && enh[0] == line[0]) {
      cur_.enhanced.assign(enh);
    } else if (!enh.empty()) {
      text = line.size() > 4 ? line.substr(4) : std::string_view();  // class mismatch: keep text
    }
    cur_.text.assign(text);
  } else {
    if (code != cur_.code) {
      Fail(Cat("multi-line reply changed code from ", cur_.code, " to ", code));
      return false;
    }
    if (!cur_.enhanced.empty()) {
      std::string_view t = text;
      std::string_view enh = SplitEnhancedCode(&t);
      if (enh == cur_.enhanced) text = t;
    }
    cur_.text.push_back('\n');
    cur_.text.append(text);
  }
  return last;
}

}  // namespace salvo::smtp
