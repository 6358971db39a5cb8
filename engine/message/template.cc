#include "engine/message/template.h"

#include <algorithm>
#include <array>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "engine/message/encoding.h"
#include "engine/message/unsubscribe.h"

namespace salvo::message {

namespace {

// Debian's abseil has its own absl::string_view (not std::string_view), so
// the few string helpers we need are written against std::string_view here.
void AppendPiece(std::string* s, std::string_view v) { s->append(v); }
void AppendPiece(std::string* s, const char* v) { s->append(v); }
void AppendPiece(std::string* s, const std::string& v) { s->append(v); }
void AppendPiece(std::string* s, size_t v) { s->append(std::to_string(v)); }

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string s;
  (AppendPiece(&s, args), ...);
  return s;
}

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}
std::string_view TrimRight(std::string_view v) {
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}
std::string Lower(std::string_view v) {
  std::string s(v);
  for (char& c : s) c = absl::ascii_tolower(c);
  return s;
}
bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool Contains(std::string_view s, std::string_view p) {
  return s.find(p) != std::string_view::npos;
}
std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) {
    if (!s.empty()) s.append(", ");
    s.append(x);
  }
  return s;
}

enum class Cte : uint8_t { k7bit, k8bit, kQuotedPrintable, kBase64 };

constexpr std::string_view CteName(Cte c) {
  switch (c) {
    case Cte::k7bit:
      return "7bit";
    case Cte::k8bit:
      return "8bit";
    case Cte::kQuotedPrintable:
      return "quoted-printable";
    case Cte::kBase64:
      return "base64";
  }
  return "7bit";
}

// Per-value flags computed once per copy (or once per default at Parse).
constexpr uint8_t kFlagBreak = 1;  // CR, LF or NUL: cannot go into a 7bit/8bit part as is
constexpr uint8_t kFlag8bit = 2;   // an octet >= 0x80

uint8_t ValueFlags(std::string_view v) {
  uint8_t f = 0;
  for (unsigned char c : v) {
    if (c == '\r' || c == '\n' || c == 0) f |= kFlagBreak;
    if (c >= 0x80) f |= kFlag8bit;
  }
  return f;
}

bool HasNonAscii(std::string_view v) {
  for (unsigned char c : v)
    if (c >= 0x80) return true;
  return false;
}

}  // namespace

// A piece of a header value or leaf body: literal text or a placeholder.
struct Segment {
  bool is_var = false;
  int var = -1;
  bool has_default = false;
  std::string text;   // literal text (CRLF line ends), or the placeholder's default
  uint8_t flags = 0;  // ValueFlags(text)
  // Identity statistics (literals in leaf bodies).
  size_t first_line_len = 0;
  size_t last_line_len = 0;
  bool has_newline = false;
  bool first_line_dashes = false;  // first line starts with "--"
  // Quoted-printable, pre-encoded from column 0.
  std::string qp;
  size_t qp_first_len = 0;
  size_t qp_last_col = 0;
  bool qp_has_break = false;
  // Base64 pre-encoded from column 0, for each of the 3 group alignments:
  // b64[k] encodes text[k, k + b64_len[k]).
  std::array<std::string, 3> b64;
  std::array<size_t, 3> b64_len = {0, 0, 0};
  std::array<size_t, 3> b64_last_col = {0, 0, 0};
};

struct Leaf {
  Cte declared = Cte::k7bit;
  bool cte_header_present = false;
  bool top_level = false;
  std::vector<Segment> segs;
};

struct HeaderEntry {
  enum class Kind { kStatic, kUnstructured, kAddress, kCte };
  Kind kind = Kind::kStatic;
  std::string name;
  std::string static_text;    // kStatic: complete field with CRLF
  std::vector<Segment> segs;  // kUnstructured value / kAddress display name
  std::string addr;           // kAddress: the addr-spec
  int leaf = -1;              // kCte
};

struct BodyOp {
  enum class Kind { kLiteral, kCteHeader, kLeafBody };
  Kind kind = Kind::kLiteral;
  std::string text;
  int leaf = -1;
};

struct Template::Impl {
  std::vector<HeaderEntry> headers;
  std::vector<BodyOp> body;
  std::vector<Leaf> leaves;
  bool has_from = false;
  // Per variable: does some occurrence lack a default, and where first.
  std::vector<bool> required;
  std::vector<std::string> where;  // file:line of the first occurrence (without default if any)
};

namespace {

// ---------------------------------------------------------------- parsing

struct Line {
  size_t begin;
  size_t end;  // exclusive, before CRLF
};

class Parser {
 public:
  Parser(std::string_view file_name, Template::Impl* impl, std::vector<std::string>* variables)
      : file_(file_name), impl_(impl), variables_(variables) {}

  absl::Status Run(std::string_view text, std::string* from_address);

 private:
  absl::Status Error(size_t line_index, std::string_view what) const {
    return absl::InvalidArgumentError(Cat(file_, ":", line_index + 1, ": ", what));
  }
  size_t LineOf(size_t offset) const {
    auto it = std::upper_bound(lines_.begin(), lines_.end(), offset,
                               [](size_t off, const Line& l) { return off < l.begin; });
    return static_cast<size_t>(it - lines_.begin()) - 1;
  }
  absl::Status Normalize(std::string_view text);
  struct RawHeader {
    std::string name;
    std::string lower;
    std::string value;  // unfolded, leading whitespace removed
    size_t first_line;
    size_t last_line;
  };
  absl::Status ParseHeaderBlock(size_t first, size_t* next, std::vector<RawHeader>* out);
  std::string_view RawText(const RawHeader& h) const {
    return std::string_view(norm_).substr(lines_[h.first_line].begin,
                                          lines_[h.last_line].end + 2 - lines_[h.first_line].begin);
  }
  // Splits text (whose first octet is on line `line`) into literal and
  // placeholder segments. `allow` false: any placeholder is an error naming `why`.
  absl::Status Scan(std::string_view text, size_t line, std::vector<Segment>* out);
  bool HasPlaceholder(std::string_view text) const;
  absl::Status TopHeaders(const std::vector<RawHeader>& headers, std::string* from_address,
                          const RawHeader** content_type, const RawHeader** cte);
  absl::Status ParseCte(const RawHeader* h, Cte* out) const;
  // Lines of text copied verbatim (preamble, epilogue, delimiters) must fit
  // the 998-octet limit too.
  absl::Status CheckLines(size_t begin, size_t end, std::string_view what) const {
    if (begin >= end) return absl::OkStatus();
    for (size_t l = LineOf(begin); l < lines_.size() && lines_[l].begin < end; ++l)
      if (lines_[l].end - lines_[l].begin > kMaxLineOctets)
        return Error(
            l, Cat(what, " line is ", lines_[l].end - lines_[l].begin, " octets (limit 998)"));
    return absl::OkStatus();
  }
  absl::Status Multipart(size_t begin, size_t end, std::string_view boundary, size_t ct_line,
                         std::vector<std::string>* boundaries);
  absl::Status Part(size_t begin, size_t end, std::vector<std::string>* boundaries);
  absl::Status AddLeaf(size_t begin, size_t end, Cte declared, bool cte_present, bool top_level,
                       int* leaf_index);
  void Literal(std::string_view text) {
    if (text.empty()) return;
    if (!impl_->body.empty() && impl_->body.back().kind == BodyOp::Kind::kLiteral) {
      impl_->body.back().text.append(text);
    } else {
      impl_->body.push_back({BodyOp::Kind::kLiteral, std::string(text), -1});
    }
  }

  std::string file_;
  Template::Impl* impl_;
  std::vector<std::string>* variables_;
  absl::flat_hash_map<std::string, int> var_index_;
  std::string norm_;
  std::vector<Line> lines_;
};

absl::Status Parser::Normalize(std::string_view text) {
  norm_.reserve(text.size() + text.size() / 32);
  size_t i = 0;
  while (i < text.size()) {
    Line l;
    l.begin = norm_.size();
    size_t j = i;
    while (j < text.size() && text[j] != '\n' && text[j] != '\r') {
      if (text[j] == '\0') return Error(lines_.size(), "NUL octet in template");
      ++j;
    }
    norm_.append(text.substr(i, j - i));
    l.end = norm_.size();
    lines_.push_back(l);
    if (j < text.size() && text[j] == '\r') {
      if (j + 1 >= text.size() || text[j + 1] != '\n')
        return Error(lines_.size() - 1, "bare CR (use LF or CRLF line ends)");
      ++j;
    }
    if (j < text.size()) ++j;  // the LF
    norm_.append("\r\n");
    i = j;
  }
  return absl::OkStatus();
}

bool IsFieldNameChar(unsigned char c) { return c > 32 && c < 127 && c != ':'; }

absl::Status Parser::ParseHeaderBlock(size_t first, size_t* next, std::vector<RawHeader>* out) {
  size_t i = first;
  for (; i < lines_.size(); ++i) {
    std::string_view line =
        std::string_view(norm_).substr(lines_[i].begin, lines_[i].end - lines_[i].begin);
    if (line.empty()) break;
    if (line.size() > kMaxLineOctets)
      return Error(i, Cat("header line is ", line.size(), " octets (limit 998)"));
    if (line[0] == ' ' || line[0] == '\t') {
      if (out->empty()) return Error(i, "continuation line before any header field");
      RawHeader& h = out->back();
      h.value.append(line);
      h.last_line = i;
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return Error(i,
                   "malformed header line (expected 'Name: value' or a blank line before the "
                   "body)");
    for (size_t k = 0; k < colon; ++k)
      if (!IsFieldNameChar(static_cast<unsigned char>(line[k])))
        return Error(i,
                     Cat("invalid character in header field name '", line.substr(0, colon), "'"));
    RawHeader h;
    h.name = std::string(line.substr(0, colon));
    h.lower = Lower(h.name);
    h.value = std::string(line.substr(colon + 1));
    h.first_line = h.last_line = i;
    out->push_back(std::move(h));
  }
  for (RawHeader& h : *out) {
    size_t k = 0;
    while (k < h.value.size() && (h.value[k] == ' ' || h.value[k] == '\t')) ++k;
    h.value.erase(0, k);
    while (!h.value.empty() && (h.value.back() == ' ' || h.value.back() == '\t'))
      h.value.pop_back();
  }
  *next = i;
  return absl::OkStatus();
}

bool IsVarNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsVarNameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-'; }

absl::Status Parser::Scan(std::string_view text, size_t line, std::vector<Segment>* out) {
  std::string literal;
  auto flush = [&] {
    if (literal.empty()) return;
    Segment s;
    s.text = std::move(literal);
    literal.clear();
    out->push_back(std::move(s));
  };
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find("{{", i);
    // Count lines of the literal stretch for error positions.
    size_t stop = open == std::string_view::npos ? text.size() : open;
    line += static_cast<size_t>(std::count(text.begin() + i, text.begin() + stop, '\n'));
    if (open == std::string_view::npos) {
      literal.append(text.substr(i));
      break;
    }
    if (open > 0 && text[open - 1] == '\\') {  // "\{{" is a literal "{{"
      literal.append(text.substr(i, open - 1 - i));
      literal.append("{{");
      i = open + 2;
      continue;
    }
    literal.append(text.substr(i, open - i));
    size_t close = text.find("}}", open + 2);
    size_t eol = text.find_first_of("\r\n", open + 2);
    if (close == std::string_view::npos || (eol != std::string_view::npos && eol < close))
      return Error(line, "unbalanced '{{' (no '}}' on the same line; write '\\{{' for a literal)");
    std::string_view inner = text.substr(open + 2, close - open - 2);
    size_t bar = inner.find('|');
    std::string_view name = Trim(inner.substr(0, bar));
    bool valid = !name.empty() && name.size() <= 64 && IsVarNameStart(name[0]);
    for (char c : name) valid = valid && IsVarNameChar(c);
    if (!valid)
      return Error(line, Cat("bad placeholder name '", name,
                             "' (letters, digits, '_', '.', '-'; starting with a letter "
                             "or '_')"));
    flush();
    Segment s;
    s.is_var = true;
    auto [it, inserted] = var_index_.try_emplace(std::string(name), variables_->size());
    if (inserted) {
      variables_->emplace_back(name);
      impl_->required.push_back(false);
      impl_->where.push_back(Cat(file_, ":", line + 1));
    }
    s.var = it->second;
    if (bar != std::string_view::npos) {
      s.has_default = true;
      s.text = std::string(Trim(inner.substr(bar + 1)));
      s.flags = ValueFlags(s.text);
    } else if (!impl_->required[s.var]) {
      impl_->required[s.var] = true;
      impl_->where[s.var] = Cat(file_, ":", line + 1);
    }
    out->push_back(std::move(s));
    i = close + 2;
  }
  flush();
  return absl::OkStatus();
}

bool Parser::HasPlaceholder(std::string_view text) const {
  for (size_t p = text.find("{{"); p != std::string_view::npos; p = text.find("{{", p + 2))
    if (p == 0 || text[p - 1] != '\\') return true;
  return false;
}

// Lower-cased type/subtype and parameters of a Content-Type value.
struct ContentType {
  std::string type;
  absl::flat_hash_map<std::string, std::string> params;
};

ContentType ParseContentType(std::string_view v) {
  ContentType ct;
  size_t semi = v.find(';');
  ct.type = Lower(Trim(v.substr(0, semi)));
  while (semi != std::string_view::npos) {
    v.remove_prefix(semi + 1);
    size_t eq = v.find('=');
    if (eq == std::string_view::npos) break;
    std::string name = Lower(Trim(v.substr(0, eq)));
    v.remove_prefix(eq + 1);
    while (!v.empty() && (v[0] == ' ' || v[0] == '\t')) v.remove_prefix(1);
    std::string value;
    if (!v.empty() && v[0] == '"') {
      size_t k = 1;
      for (; k < v.size() && v[k] != '"'; ++k) {
        if (v[k] == '\\' && k + 1 < v.size()) ++k;
        value.push_back(v[k]);
      }
      v.remove_prefix(std::min(k + 1, v.size()));
      semi = v.find(';');
    } else {
      semi = v.find(';');
      value = std::string(Trim(v.substr(0, semi)));
    }
    ct.params[name] = value;
  }
  return ct;
}

absl::Status Parser::ParseCte(const RawHeader* h, Cte* out) const {
  *out = Cte::k7bit;
  if (h == nullptr) return absl::OkStatus();
  std::string v = Lower(Trim(h->value));
  if (v == "7bit") {
    *out = Cte::k7bit;
  } else if (v == "8bit") {
    *out = Cte::k8bit;
  } else if (v == "quoted-printable") {
    *out = Cte::kQuotedPrintable;
  } else if (v == "base64") {
    *out = Cte::kBase64;
  } else {
    return Error(h->first_line, Cat("unsupported Content-Transfer-Encoding '", h->value,
                                    "' (use 7bit, 8bit, quoted-printable or base64)"));
  }
  return absl::OkStatus();
}

// Header classes.
bool IsEngineOwned(std::string_view lower) {
  return lower == "message-id" || lower == "date" || lower == "to" || lower == "list-unsubscribe" ||
         lower == "list-unsubscribe-post" || lower == "feedback-id";
}
bool IsForbidden(std::string_view lower) {
  return lower == "bcc" || lower == "return-path" || lower == "received" ||
         lower == "dkim-signature" || lower == "content-length";
}
bool IsAddressHeader(std::string_view lower) {
  return lower == "from" || lower == "reply-to" || lower == "sender";
}
bool IsStructured(std::string_view lower) {
  static constexpr std::string_view kNames[] = {
      "cc",         "mime-version",   "in-reply-to",  "references", "keywords",
      "precedence", "auto-submitted", "list-id",      "list-help",  "list-subscribe",
      "list-post",  "list-owner",     "list-archive", "errors-to",  "disposition-notification-to"};
  if (StartsWith(lower, "content-") || StartsWith(lower, "resent-")) return true;
  for (std::string_view n : kNames)
    if (n == lower) return true;
  return false;
}

bool IsAtomPhrase(std::string_view v) {
  if (v.empty() || v.front() == ' ' || v.back() == ' ' || v.size() > 60) return false;
  if (Contains(v, "=?") || Contains(v, "  ")) return false;
  for (unsigned char c : v) {
    if (absl::ascii_isalnum(c) || c == ' ') continue;
    if (std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) ==
        std::string_view::npos)
      return false;
  }
  return true;
}

// Renders a display name: atoms as is, printable ASCII quoted, else RFC 2047.
// Control characters cannot be represented in a display name at all (not even
// encoded: parsers refuse CR/LF there), so they become spaces.
void AppendDisplayName(std::string_view raw, size_t* col, std::string* out, std::string* tmp) {
  tmp->assign(raw);
  bool ascii = true;
  for (char& c : *tmp) {
    auto u = static_cast<unsigned char>(c);
    if (u < 32 || u == 127) c = ' ';
    if (u >= 0x80) ascii = false;
  }
  if (IsAtomPhrase(*tmp)) {
    out->append(*tmp);
    *col += tmp->size();
    return;
  }
  if (ascii && tmp->size() <= 60 && !Contains(*tmp, "=?")) {
    out->push_back('"');
    for (char c : *tmp) {
      if (c == '"' || c == '\\') out->push_back('\\');
      out->push_back(c);
    }
    out->push_back('"');
    *col += tmp->size() + 2;
    return;
  }
  AppendEncodedWords(*tmp, /*phrase=*/true, col, out);
}

void AppendUnstructured(std::string_view name, std::string_view value, std::string* out) {
  out->append(name);
  out->push_back(':');
  size_t col = name.size() + 1;
  if (!value.empty()) {
    out->push_back(' ');
    ++col;
    if (IsPlainHeaderText(value, name.size())) {
      AppendFoldedPlain(value, &col, out);
    } else {
      AppendEncodedWords(value, /*phrase=*/false, &col, out);
    }
  }
  out->append("\r\n");
}

void AppendAddressField(std::string_view name, std::string_view display, std::string_view addr,
                        std::string* out, std::string* tmp) {
  out->append(name);
  out->append(": ");
  size_t col = name.size() + 2;
  if (!display.empty()) {
    AppendDisplayName(display, &col, out, tmp);
    if (col + addr.size() + 3 > kFoldColumn) {
      out->append("\r\n");
      col = 0;
    }
    out->push_back(' ');
  }
  out->push_back('<');
  out->append(addr);
  out->append(">\r\n");
}

// Splits "phrase <addr>" / "addr". Returns false if it is not one mailbox.
bool SplitMailbox(std::string_view v, std::string_view* phrase, std::string_view* addr) {
  v = Trim(v);
  if (!v.empty() && v.back() == '>') {
    size_t lt = v.rfind('<');
    if (lt == std::string_view::npos) return false;
    *addr = v.substr(lt + 1, v.size() - lt - 2);
    *phrase = Trim(v.substr(0, lt));
  } else {
    *addr = v;
    *phrase = {};
  }
  if (addr->empty() || addr->find('@') == std::string_view::npos) return false;
  for (char c : *addr)
    if (c == ' ' || c == ',' || c == '<' || c == '>' || c == '\t') return false;
  return true;
}

absl::Status Parser::TopHeaders(const std::vector<RawHeader>& headers, std::string* from_address,
                                const RawHeader** content_type, const RawHeader** cte) {
  bool has_mime_version = false;
  for (const RawHeader& h : headers) {
    if (IsEngineOwned(h.lower))
      return Error(h.first_line,
                   Cat("'", h.name, "' is added per copy by Salvo; remove it from the template"));
    if (IsForbidden(h.lower))
      return Error(h.first_line, Cat("'", h.name, "' must not appear in a message template"));
    bool placeholders = HasPlaceholder(h.value);
    bool non_ascii = HasNonAscii(h.value);
    if (h.lower == "content-type" || h.lower == "content-transfer-encoding" ||
        h.lower == "mime-version") {
      if (placeholders) return Error(h.first_line, Cat("placeholders are not allowed in ", h.name));
      if (h.lower == "mime-version") has_mime_version = true;
      if (h.lower == "content-type") {
        if (*content_type != nullptr) return Error(h.first_line, "duplicate Content-Type");
        *content_type = &h;
      }
      if (h.lower == "content-transfer-encoding") {
        if (*cte != nullptr) return Error(h.first_line, "duplicate Content-Transfer-Encoding");
        *cte = &h;
        HeaderEntry e;
        e.kind = HeaderEntry::Kind::kCte;
        e.name = h.name;
        impl_->headers.push_back(std::move(e));
        continue;
      }
    }
    if (IsAddressHeader(h.lower)) {
      std::string_view phrase, addr;
      if (!SplitMailbox(h.value, &phrase, &addr)) {
        if (h.lower == "from") impl_->has_from = true;  // e.g. a group: copied as written
        if (placeholders || non_ascii)
          return Error(h.first_line, Cat(h.name,
                                         " with placeholders or non-ASCII text must be one "
                                         "mailbox: 'Display Name <local@domain>'"));
      } else {
        if (HasPlaceholder(addr) || HasNonAscii(addr))
          return Error(h.first_line, Cat("placeholders and non-ASCII are not allowed in the ",
                                         h.name, " address (only in its display name)"));
        if (h.lower == "from") {
          if (impl_->has_from) return Error(h.first_line, "duplicate From");
          *from_address = std::string(addr);
          impl_->has_from = true;
        }
      }
      if (placeholders || non_ascii) {
        std::string display(phrase);
        // A quoted display name: strip the quotes, Salvo re-quotes as needed.
        if (display.size() >= 2 && display.front() == '"' && display.back() == '"') {
          std::string unq;
          for (size_t k = 1; k + 1 < display.size(); ++k) {
            if (display[k] == '\\' && k + 2 < display.size()) ++k;
            unq.push_back(display[k]);
          }
          display = std::move(unq);
        }
        HeaderEntry e;
        e.kind = HeaderEntry::Kind::kAddress;
        e.name = h.name;
        e.addr = std::string(addr);
        if (absl::Status s = Scan(display, h.first_line, &e.segs); !s.ok()) return s;
        if (!placeholders) {
          std::string tmp;
          e.kind = HeaderEntry::Kind::kStatic;
          AppendAddressField(e.name, display, e.addr, &e.static_text, &tmp);
          e.segs.clear();
        }
        impl_->headers.push_back(std::move(e));
        continue;
      }
    } else if (IsStructured(h.lower)) {
      if (placeholders)
        return Error(h.first_line,
                     Cat("placeholders are not allowed in the structured header ", h.name,
                         " (only in Subject, other unstructured headers and "
                         "From/Reply-To/Sender display names)"));
      if (non_ascii)
        return Error(h.first_line, Cat("non-ASCII text in the structured header ", h.name));
    } else if (placeholders || non_ascii) {
      HeaderEntry e;
      e.kind = HeaderEntry::Kind::kUnstructured;
      e.name = h.name;
      if (absl::Status s = Scan(h.value, h.first_line, &e.segs); !s.ok()) return s;
      if (!placeholders) {
        e.kind = HeaderEntry::Kind::kStatic;
        AppendUnstructured(e.name, e.segs.empty() ? std::string_view() : e.segs[0].text,
                           &e.static_text);
        e.segs.clear();
      }
      impl_->headers.push_back(std::move(e));
      continue;
    }
    HeaderEntry e;
    e.kind = HeaderEntry::Kind::kStatic;
    e.name = h.name;
    e.static_text = std::string(RawText(h));
    impl_->headers.push_back(std::move(e));
  }
  if (*content_type == nullptr) {
    // A plain message: declare UTF-8 text so values in any script are legal.
    if (!has_mime_version)
      impl_->headers.push_back(
          {HeaderEntry::Kind::kStatic, "MIME-Version", "MIME-Version: 1.0\r\n", {}, {}, -1});
    impl_->headers.push_back({HeaderEntry::Kind::kStatic,
                              "Content-Type",
                              "Content-Type: text/plain; charset=utf-8\r\n",
                              {},
                              {},
                              -1});
  } else if (!has_mime_version) {
    impl_->headers.push_back(
        {HeaderEntry::Kind::kStatic, "MIME-Version", "MIME-Version: 1.0\r\n", {}, {}, -1});
  }
  return absl::OkStatus();
}

void PreEncodeLiteral(Segment* s, Cte declared) {
  std::string_view t = s->text;
  size_t nl = t.find("\r\n");
  s->has_newline = nl != std::string_view::npos;
  s->first_line_len = s->has_newline ? nl : t.size();
  s->last_line_len = s->has_newline ? t.size() - t.rfind("\r\n") - 2 : t.size();
  s->first_line_dashes = StartsWith(t, "--");
  s->flags = ValueFlags(t) & kFlag8bit;
  if (declared == Cte::kBase64) {
    for (size_t k = 0; k < 3; ++k) {
      if (t.size() < k) continue;
      size_t len = (t.size() - k) / 3 * 3;
      std::string flat;
      AppendBase64(t.substr(k, len), &flat);
      std::string& b = s->b64[k];
      for (size_t p = 0; p < flat.size(); p += kEncodedLineChars) {
        if (p > 0) b.append("\r\n");
        b.append(flat, p, kEncodedLineChars);
      }
      s->b64_len[k] = len;
      s->b64_last_col[k] = flat.empty() ? 0 : (flat.size() - 1) % kEncodedLineChars + 1;
    }
    return;
  }
  QpEncoder qp;
  qp.Append(t, /*text_mode=*/true, &s->qp);
  size_t br = s->qp.find("\r\n");
  s->qp_has_break = br != std::string::npos;
  s->qp_first_len = s->qp_has_break ? br - (br > 0 && s->qp[br - 1] == '=' ? 1 : 0) : s->qp.size();
  s->qp_last_col = qp.column();
}

absl::Status Parser::AddLeaf(size_t begin, size_t end, Cte declared, bool cte_present,
                             bool top_level, int* leaf_index) {
  Leaf leaf;
  leaf.declared = declared;
  leaf.cte_header_present = cte_present;
  leaf.top_level = top_level;
  std::string_view text = std::string_view(norm_).substr(begin, end - begin);
  size_t first_line = LineOf(begin);
  if (declared == Cte::k7bit || declared == Cte::k8bit) {
    for (size_t l = first_line; l < lines_.size() && lines_[l].begin < end; ++l)
      if (lines_[l].end - lines_[l].begin > kMaxLineOctets)
        return Error(l, Cat("line is ", lines_[l].end - lines_[l].begin,
                            " octets; a 7bit/8bit part allows 998 (declare "
                            "Content-Transfer-Encoding: quoted-printable or base64)"));
  }
  if (absl::Status s = Scan(text, first_line, &leaf.segs); !s.ok()) return s;
  for (Segment& s : leaf.segs)
    if (!s.is_var) PreEncodeLiteral(&s, declared);
  *leaf_index = static_cast<int>(impl_->leaves.size());
  impl_->leaves.push_back(std::move(leaf));
  return absl::OkStatus();
}

absl::Status Parser::Part(size_t begin, size_t end, std::vector<std::string>* boundaries) {
  size_t first = LineOf(begin);
  std::vector<RawHeader> headers;
  size_t blank = first;
  if (begin < end) {
    if (absl::Status s = ParseHeaderBlock(first, &blank, &headers); !s.ok()) return s;
    if (blank >= lines_.size() || lines_[blank].begin >= end)
      return Error(first, "MIME part has no blank line between its headers and its body");
  }
  const RawHeader* ct = nullptr;
  const RawHeader* cte = nullptr;
  std::string header_text;
  for (const RawHeader& h : headers) {
    if (HasPlaceholder(h.value))
      return Error(h.first_line, "placeholders are not allowed in MIME part headers");
    if (HasNonAscii(h.value)) return Error(h.first_line, "non-ASCII text in a MIME part header");
    if (h.lower == "content-type") ct = &h;
    if (h.lower == "content-transfer-encoding") {
      cte = &h;
      continue;
    }
    header_text.append(RawText(h));
  }
  size_t body_begin = begin < end ? std::min(lines_[blank].end + 2, end) : end;
  ContentType type = ct ? ParseContentType(ct->value) : ContentType{"text/plain", {}};
  if (StartsWith(type.type, "multipart/")) {
    if (cte != nullptr) header_text.append(RawText(*cte));
    Literal(header_text);
    Literal("\r\n");
    auto it = type.params.find("boundary");
    if (it == type.params.end() || it->second.empty())
      return Error(ct->first_line, "multipart Content-Type without a boundary parameter");
    return Multipart(body_begin, end, it->second, ct->first_line, boundaries);
  }
  Cte declared;
  if (absl::Status s = ParseCte(cte, &declared); !s.ok()) return s;
  int leaf = -1;
  if (absl::Status s = AddLeaf(body_begin, end, declared, cte != nullptr, false, &leaf); !s.ok())
    return s;
  Literal(header_text);
  impl_->body.push_back({BodyOp::Kind::kCteHeader, {}, leaf});
  Literal("\r\n");
  impl_->body.push_back({BodyOp::Kind::kLeafBody, {}, leaf});
  return absl::OkStatus();
}

absl::Status Parser::Multipart(size_t begin, size_t end, std::string_view boundary, size_t ct_line,
                               std::vector<std::string>* boundaries) {
  if (boundary.size() > 70)
    return Error(ct_line, "multipart boundary longer than 70 characters (RFC 2046)");
  std::string delim = Cat("--", boundary);
  boundaries->push_back(std::string(boundary));
  // Delimiter lines within [begin, end).
  struct Delim {
    size_t line;
    bool close;
  };
  std::vector<Delim> delims;
  for (size_t l = begin < end ? LineOf(begin) : lines_.size(); l < lines_.size(); ++l) {
    if (lines_[l].begin >= end) break;
    std::string_view line =
        std::string_view(norm_).substr(lines_[l].begin, lines_[l].end - lines_[l].begin);
    if (!StartsWith(line, delim)) continue;
    std::string_view rest = line.substr(delim.size());
    bool close = StartsWith(rest, "--");
    if (close) rest.remove_prefix(2);
    if (!TrimRight(rest).empty()) continue;
    delims.push_back({l, close});
    if (close) break;
  }
  if (delims.empty() || delims.front().close)
    return Error(ct_line, Cat("multipart body has no part delimited by '", delim, "'"));
  if (!delims.back().close)
    return Error(ct_line, Cat("multipart body is not closed by '", delim, "--'"));
  std::string_view preamble =
      std::string_view(norm_).substr(begin, lines_[delims[0].line].begin - begin);
  if (HasPlaceholder(preamble))
    return Error(LineOf(begin), "placeholders are not allowed in a multipart preamble");
  if (absl::Status s = CheckLines(begin, lines_[delims[0].line].begin, "multipart preamble");
      !s.ok())
    return s;
  Literal(preamble);
  for (size_t k = 0; k < delims.size(); ++k) {
    const Line& dl = lines_[delims[k].line];
    if (absl::Status s = CheckLines(dl.begin, dl.end, "multipart delimiter"); !s.ok()) return s;
    if (k > 0) Literal("\r\n");
    Literal(std::string_view(norm_).substr(dl.begin, dl.end - dl.begin));
    if (delims[k].close) {
      std::string_view epilogue = std::string_view(norm_).substr(dl.end, end - dl.end);
      if (HasPlaceholder(epilogue))
        return Error(delims[k].line, "placeholders are not allowed in a multipart epilogue");
      if (absl::Status s = CheckLines(dl.end, end, "multipart epilogue"); !s.ok()) return s;
      Literal(epilogue);
      break;
    }
    Literal("\r\n");
    size_t part_begin = dl.end + 2;
    size_t next_begin = lines_[delims[k + 1].line].begin;
    size_t part_end = next_begin >= part_begin + 2 ? next_begin - 2 : part_begin;
    if (absl::Status s = Part(part_begin, part_end, boundaries); !s.ok()) return s;
  }
  boundaries->pop_back();
  return absl::OkStatus();
}

absl::Status Parser::Run(std::string_view text, std::string* from_address) {
  if (absl::Status s = Normalize(text); !s.ok()) return s;
  std::vector<RawHeader> headers;
  size_t blank = 0;
  if (absl::Status s = ParseHeaderBlock(0, &blank, &headers); !s.ok()) return s;
  if (headers.empty()) return Error(0, "template has no header fields");
  const RawHeader* ct = nullptr;
  const RawHeader* cte = nullptr;
  if (absl::Status s = TopHeaders(headers, from_address, &ct, &cte); !s.ok()) return s;
  size_t body_begin = blank < lines_.size() ? lines_[blank].end + 2 : norm_.size();
  ContentType type = ct ? ParseContentType(ct->value) : ContentType{"text/plain", {}};
  if (StartsWith(type.type, "multipart/")) {
    if (cte != nullptr) {
      Cte c;
      if (absl::Status s = ParseCte(cte, &c); !s.ok()) return s;
      if (c != Cte::k7bit && c != Cte::k8bit)
        return Error(cte->first_line, "a multipart entity must be 7bit or 8bit");
      for (HeaderEntry& e : impl_->headers)
        if (e.kind == HeaderEntry::Kind::kCte) {
          e.kind = HeaderEntry::Kind::kStatic;
          e.static_text = std::string(RawText(*cte));
        }
    }
    auto it = type.params.find("boundary");
    if (it == type.params.end() || it->second.empty())
      return Error(ct->first_line, "multipart Content-Type without a boundary parameter");
    std::vector<std::string> boundaries;
    return Multipart(body_begin, norm_.size(), it->second, ct->first_line, &boundaries);
  }
  Cte declared;
  if (absl::Status s = ParseCte(cte, &declared); !s.ok()) return s;
  int leaf = -1;
  if (absl::Status s = AddLeaf(body_begin, norm_.size(), declared, cte != nullptr, true, &leaf);
      !s.ok())
    return s;
  bool slot = false;
  for (HeaderEntry& e : impl_->headers)
    if (e.kind == HeaderEntry::Kind::kCte) {
      e.leaf = leaf;
      slot = true;
    }
  if (!slot) {
    HeaderEntry e;
    e.kind = HeaderEntry::Kind::kCte;
    e.name = "Content-Transfer-Encoding";
    e.leaf = leaf;
    impl_->headers.push_back(std::move(e));
  }
  impl_->body.push_back({BodyOp::Kind::kLeafBody, {}, leaf});
  return absl::OkStatus();
}

// ---------------------------------------------------------------- rendering

struct Scratch {
  std::vector<std::string_view> values;  // per variable: the column value ("" if none)
  std::vector<uint8_t> flags;            // per variable: ValueFlags(value)
  std::vector<Cte> chosen;               // per leaf
  std::string tmp;
  std::string tmp2;
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

uint64_t RandomNonce() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

inline void Resolve(const Segment& s, const Scratch& sc, std::string_view* v, uint8_t* f) {
  *v = sc.values[s.var];
  *f = sc.flags[s.var];
  if (v->empty() && s.has_default) {
    *v = s.text;
    *f = s.flags;
  }
}

Cte ChooseCte(const Leaf& leaf, const Scratch& sc, bool allow_8bit) {
  if (leaf.declared == Cte::kQuotedPrintable || leaf.declared == Cte::kBase64) return leaf.declared;
  bool need_qp = false;
  bool eight = false;
  size_t col = 0;
  bool after_var = false;
  for (const Segment& s : leaf.segs) {
    if (!s.is_var) {
      eight |= (s.flags & kFlag8bit) != 0;
      // A placeholder that rendered empty at a line start must not turn the
      // following "--..." into a line that looks like a boundary.
      if (after_var && col == 0 && s.first_line_dashes) need_qp = true;
      if (s.has_newline) {
        if (col + s.first_line_len > kMaxLineOctets) need_qp = true;
        col = s.last_line_len;
      } else {
        col += s.text.size();
      }
      after_var = false;
    } else {
      std::string_view v;
      uint8_t f;
      Resolve(s, sc, &v, &f);
      if (f & kFlagBreak) need_qp = true;
      eight |= (f & kFlag8bit) != 0;
      if (col == 0 && !v.empty() && v[0] == '-') need_qp = true;
      col += v.size();
      after_var = true;
    }
    if (col > kMaxLineOctets) need_qp = true;
  }
  if (need_qp) return Cte::kQuotedPrintable;
  if (eight) return allow_8bit ? Cte::k8bit : Cte::kQuotedPrintable;
  return (leaf.declared == Cte::k8bit && allow_8bit) ? Cte::k8bit : Cte::k7bit;
}

void RenderLeaf(const Leaf& leaf, Cte cte, const Scratch& sc, std::string* out) {
  switch (cte) {
    case Cte::k7bit:
    case Cte::k8bit:
      for (const Segment& s : leaf.segs) {
        if (!s.is_var) {
          out->append(s.text);
        } else {
          std::string_view v;
          uint8_t f;
          Resolve(s, sc, &v, &f);
          out->append(v);
        }
      }
      break;
    case Cte::kQuotedPrintable: {
      QpEncoder qp;
      for (const Segment& s : leaf.segs) {
        if (!s.is_var) {
          qp.AppendPreEncoded(s.qp, s.qp_first_len, s.qp_last_col, s.qp_has_break, out);
        } else {
          std::string_view v;
          uint8_t f;
          Resolve(s, sc, &v, &f);
          qp.Append(v, /*text_mode=*/false, out);
        }
      }
      if (leaf.top_level && qp.column() > 0) out->append("\r\n");
      break;
    }
    case Cte::kBase64: {
      Base64Encoder b64;
      for (const Segment& s : leaf.segs) {
        if (!s.is_var) {
          size_t need = b64.PendingNeed();
          std::string_view t = s.text;
          if (t.size() < need) {
            b64.Append(t, out);
          } else {
            b64.AppendPreEncoded(t.substr(0, need), s.b64[need], s.b64_last_col[need], out);
            b64.Append(t.substr(need + s.b64_len[need]), out);
          }
        } else {
          std::string_view v;
          uint8_t f;
          Resolve(s, sc, &v, &f);
          b64.Append(v, out);
        }
      }
      b64.Finish(out);
      if (leaf.top_level && b64.column() > 0) out->append("\r\n");
      break;
    }
  }
}

void AppendCteHeader(std::string_view name, const Leaf& leaf, Cte chosen, std::string* out) {
  if (!leaf.cte_header_present && chosen == Cte::k7bit) return;
  out->append(name);
  out->append(": ");
  out->append(CteName(chosen));
  out->append("\r\n");
}

bool IsIdChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.'; }

absl::Status CheckId(std::string_view what, std::string_view id) {
  if (id.empty() || id.size() > 128 || id.front() == '.' || id.back() == '.' || Contains(id, ".."))
    return absl::InvalidArgumentError(Cat("invalid ", what, " '", id, "'"));
  for (char c : id)
    if (!IsIdChar(c))
      return absl::InvalidArgumentError(
          Cat("invalid ", what, " '", id, "' (letters, digits, '.', '_', '-')"));
  return absl::OkStatus();
}

absl::Status CheckAddress(std::string_view what, std::string_view a) {
  size_t at = a.rfind('@');
  if (a.size() > 254 || at == std::string_view::npos || at == 0 || at + 1 == a.size())
    return absl::InvalidArgumentError(Cat("invalid ", what, " address '", a, "'"));
  for (unsigned char c : a)
    if (c <= 32 || c == 127 || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' ||
        c == '(' || c == ')' || c == '\\' || c == '[' || c == ']')
      return absl::InvalidArgumentError(
          Cat("unsupported character in ", what, " address '", a, "'"));
  return absl::OkStatus();
}

absl::Status CheckHeaderText(std::string_view what, std::string_view v, size_t max) {
  if (v.size() > max)
    return absl::InvalidArgumentError(Cat(what, " is longer than ", max, " octets"));
  for (unsigned char c : v)
    if (c <= 32 || c >= 127 || c == '<' || c == '>')
      return absl::InvalidArgumentError(
          Cat(what, " contains a character not allowed there: '", v, "'"));
  return absl::OkStatus();
}

}  // namespace

Template::Template() : impl_(std::make_unique<Impl>()) {}
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

bool Template::BodyHasPlaceholders() const {
  for (const Leaf& leaf : impl_->leaves) {
    for (const Segment& seg : leaf.segs) {
      if (seg.is_var) return true;
    }
  }
  return false;
}

absl::StatusOr<Template> Template::Parse(std::string_view text, std::string_view file_name) {
  Template t;
  t.file_name_ = std::string(file_name);
  Parser parser(file_name, t.impl_.get(), &t.variables_);
  if (absl::Status s = parser.Run(text, &t.from_address_); !s.ok()) return s;
  return t;
}

absl::Status Template::CheckColumns(const std::vector<std::string>& columns) const {
  for (size_t v = 0; v < variables_.size(); ++v) {
    if (!impl_->required[v]) continue;
    if (std::find(columns.begin(), columns.end(), variables_[v]) != columns.end()) continue;
    return absl::InvalidArgumentError(
        Cat(impl_->where[v], ": placeholder {{", variables_[v],
            "}} has no column in the recipient file and no default (write {{", variables_[v],
            "|default}}; columns: ", Join(columns), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ColumnBinding> Template::Bind(const std::vector<std::string>& columns) const {
  if (absl::Status s = CheckColumns(columns); !s.ok()) return s;
  ColumnBinding b;
  b.column_count_ = columns.size();
  for (const std::string& v : variables_) {
    auto it = std::find(columns.begin(), columns.end(), v);
    b.column_of_variable_.push_back(
        it == columns.end() ? -1 : static_cast<int32_t>(it - columns.begin()));
  }
  return b;
}

absl::StatusOr<RenderResult> Template::Render(const RenderContext& ctx, std::string* out) const {
  if (ctx.binding == nullptr || ctx.binding->column_of_variable_.size() != variables_.size())
    return absl::InvalidArgumentError("RenderContext.binding is not a binding of this template");
  if (ctx.values.size() != ctx.binding->column_count_)
    return absl::InvalidArgumentError(Cat("recipient row has ", ctx.values.size(),
                                          " values, the binding expects ",
                                          ctx.binding->column_count_));
  if (absl::Status s = CheckAddress("recipient", ctx.recipient); !s.ok()) return s;
  if (absl::Status s = CheckId("campaign id", ctx.campaign_id); !s.ok()) return s;
  if (absl::Status s = CheckId("recipient id", ctx.recipient_id); !s.ok()) return s;
  if (absl::Status s = CheckId("sender domain", ctx.sender_domain); !s.ok()) return s;
  if (!impl_->has_from) {
    if (ctx.from_address.empty())
      return absl::InvalidArgumentError(
          Cat(file_name_, ": the template has no From header and no from address is set"));
    if (absl::Status s = CheckAddress("from", ctx.from_address); !s.ok()) return s;
  }
  const UnsubscribeSettings& unsub = ctx.unsubscribe;
  if (!unsub.https_base.empty()) {
    if (!StartsWith(unsub.https_base, "https://"))
      return absl::InvalidArgumentError(
          Cat("unsubscribe URL must start with https:// (got '", unsub.https_base, "')"));
    if (absl::Status s = CheckHeaderText("unsubscribe URL", unsub.https_base, 400); !s.ok())
      return s;
    if (unsub.secret.empty())
      return absl::InvalidArgumentError("unsubscribe URL set but the HMAC secret is empty");
    if (!unsub.mailto.empty()) {
      if (absl::Status s = CheckAddress("unsubscribe mailto", unsub.mailto); !s.ok()) return s;
    }
  }
  if (!ctx.feedback_id.empty()) {
    if (absl::Status s = CheckHeaderText("Feedback-ID", ctx.feedback_id, 200); !s.ok()) return s;
  }

  const size_t start_size = out->size();
  Scratch& sc = ThreadScratch();
  const std::vector<int32_t>& cols = ctx.binding->column_of_variable_;
  sc.values.resize(cols.size());
  sc.flags.resize(cols.size());
  for (size_t v = 0; v < cols.size(); ++v) {
    sc.values[v] = cols[v] >= 0 ? ctx.values[static_cast<size_t>(cols[v])] : std::string_view();
    sc.flags[v] = ValueFlags(sc.values[v]);
  }
  RenderResult result;
  sc.chosen.resize(impl_->leaves.size());
  for (size_t l = 0; l < impl_->leaves.size(); ++l) {
    sc.chosen[l] = ChooseCte(impl_->leaves[l], sc, ctx.allow_8bit);
    if (sc.chosen[l] == Cte::k8bit) {
      for (const Segment& s : impl_->leaves[l].segs) {
        std::string_view v = s.text;
        uint8_t f = s.flags;
        if (s.is_var) Resolve(s, sc, &v, &f);
        if (f & kFlag8bit) result.needs_8bitmime = true;
      }
    }
  }
  result.needs_smtputf8 = AddressNeedsSmtpUtf8(ctx.recipient) ||
                          (!impl_->has_from && AddressNeedsSmtpUtf8(ctx.from_address));

  // Header fields from the template, in template order.
  for (const HeaderEntry& h : impl_->headers) {
    switch (h.kind) {
      case HeaderEntry::Kind::kStatic:
        out->append(h.static_text);
        break;
      case HeaderEntry::Kind::kCte:
        AppendCteHeader(h.name, impl_->leaves[h.leaf], sc.chosen[h.leaf], out);
        break;
      case HeaderEntry::Kind::kUnstructured:
      case HeaderEntry::Kind::kAddress: {
        sc.tmp.clear();
        for (const Segment& s : h.segs) {
          if (!s.is_var) {
            sc.tmp.append(s.text);
          } else {
            std::string_view v;
            uint8_t f;
            Resolve(s, sc, &v, &f);
            sc.tmp.append(v);
          }
        }
        if (h.kind == HeaderEntry::Kind::kUnstructured) {
          AppendUnstructured(h.name, sc.tmp, out);
        } else {
          AppendAddressField(h.name, sc.tmp, h.addr, out, &sc.tmp2);
        }
        break;
      }
    }
  }
  // Header fields Salvo owns.
  if (!impl_->has_from) {
    out->append("From: <");
    out->append(ctx.from_address);
    out->append(">\r\n");
  }
  out->append("To: ");
  out->append(ctx.undisclosed_recipients ? std::string_view("undisclosed-recipients:;")
                                         : ctx.recipient);
  out->append("\r\nDate: ");
  AppendRfc5322Date(absl::ToUnixSeconds(ctx.date), out);
  out->append("\r\nMessage-ID: <");
  out->append(ctx.campaign_id);
  out->push_back('.');
  out->append(ctx.recipient_id);
  out->push_back('.');
  {
    uint64_t nonce = ctx.message_id_nonce != 0 ? ctx.message_id_nonce : RandomNonce();
    static constexpr char kHexDigits[] = "0123456789abcdef";
    char hex[16];
    for (int k = 15; k >= 0; --k, nonce >>= 4) hex[k] = kHexDigits[nonce & 15];
    out->append(hex, 16);
  }
  out->push_back('@');
  out->append(ctx.sender_domain);
  out->append(">\r\n");
  if (!unsub.https_base.empty()) {
    std::string token = MakeUnsubscribeToken(unsub.secret, ctx.campaign_id, ctx.recipient);
    if (token.empty()) {
      out->resize(start_size);
      return absl::InternalError("HMAC-SHA256 failed while making the unsubscribe token");
    }
    out->append("List-Unsubscribe: <");
    out->append(unsub.https_base);
    out->push_back(unsub.https_base.find('?') == std::string_view::npos ? '?' : '&');
    out->append("c=");
    AppendPercentEncoded(ctx.campaign_id, out);
    out->append("&r=");
    AppendPercentEncoded(ctx.recipient, out);
    out->append("&t=");
    out->append(token);
    out->push_back('>');
    if (!unsub.mailto.empty()) {
      out->append(",\r\n <mailto:");
      out->append(unsub.mailto);
      out->append("?subject=unsubscribe%20");
      out->append(ctx.campaign_id);
      out->append("%20");
      out->append(token);
      out->push_back('>');
    }
    out->append("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
  }
  if (!ctx.feedback_id.empty()) {
    out->append("Feedback-ID: ");
    out->append(ctx.feedback_id);
    out->append("\r\n");
  }
  out->append("\r\n");

  // Body.
  for (const BodyOp& op : impl_->body) {
    switch (op.kind) {
      case BodyOp::Kind::kLiteral:
        out->append(op.text);
        break;
      case BodyOp::Kind::kCteHeader:
        AppendCteHeader("Content-Transfer-Encoding", impl_->leaves[op.leaf], sc.chosen[op.leaf],
                        out);
        break;
      case BodyOp::Kind::kLeafBody:
        RenderLeaf(impl_->leaves[op.leaf], sc.chosen[op.leaf], sc, out);
        break;
    }
  }
  if (out->size() < 2 || out->compare(out->size() - 2, 2, "\r\n") != 0) out->append("\r\n");
  return result;
}

bool AddressNeedsSmtpUtf8(std::string_view address) { return HasNonAscii(address); }

}  // namespace salvo::message
