#include "engine/bounce/report.h"

#include <gmime/gmime.h>
#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/strings.h"
#include "engine/smtp/outcome.h"
#include "engine/smtp/reply.h"
#include "nlohmann/json.hpp"

namespace salvo::bounce {
namespace {

// Bytes of a diagnostic code or reply line kept per recipient.
constexpr size_t kMaxDiagnostic = 1024;
// Bytes of one decoded part kept for reading (a report's parts are small).
constexpr size_t kMaxPartText = 1u << 20;

absl::once_flag g_gmime_once;

re2::StringPiece P(std::string_view s) { return re2::StringPiece(s.data(), s.size()); }
std::string_view V(re2::StringPiece s) { return std::string_view(s.data(), s.size()); }

bool ContainsCi(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return true;
  if (needle.size() > haystack.size()) return false;
  for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    if (EqualsIgnoreCase(haystack.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

size_t CountCi(std::string_view haystack, std::string_view needle, size_t stop_after) {
  size_t n = 0;
  for (size_t i = 0; i + needle.size() <= haystack.size() && n <= stop_after; ++i) {
    if (AsciiLower(haystack[i]) == needle[0] &&
        EqualsIgnoreCase(haystack.substr(i, needle.size()), needle))
      ++n;
  }
  return n;
}

std::string WithoutCr(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c != '\r') out.push_back(c);
  }
  return out;
}

std::string Clip(std::string_view s, size_t max) {
  return std::string(s.substr(0, std::min(s.size(), max)));
}

// ---- Header-style fields (delivery-status, feedback-report, quoted heads) ----

struct Field {
  std::string name;   // lower case
  std::string value;  // unfolded, trimmed
};
using Fields = std::vector<Field>;

// One block of "Name: value" lines (continuations start with a space or a
// tab); stops at the first blank line, or at a line that is not a field when
// `stop_at_non_field`. Returns the bytes consumed through *consumed.
Fields ParseFields(std::string_view text, size_t max_fields, bool stop_at_non_field,
                   size_t* consumed = nullptr) {
  Fields out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (StripWhitespace(line).empty()) break;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      std::string& v = out.back().value;
      if (v.size() < kMaxDiagnostic * 4) {
        v.push_back(' ');
        v.append(StripWhitespace(line));
      }
    } else {
      const size_t colon = line.find(':');
      bool field = colon != std::string_view::npos && colon > 0;
      // RFC 5322 4.5.3 (obsolete syntax, still sent: Mimecast's
      // "Final-Recipient : rfc822;..."): blanks between the name and the colon.
      size_t name_end = colon;
      while (field && name_end > 0 && (line[name_end - 1] == ' ' || line[name_end - 1] == '\t'))
        --name_end;
      field = field && name_end > 0;
      for (size_t i = 0; field && i < name_end; ++i) {
        const unsigned char c = static_cast<unsigned char>(line[i]);
        if (c <= ' ' || c >= 127) field = false;
      }
      if (!field) {
        if (stop_at_non_field) break;
      } else if (out.size() < max_fields) {
        out.push_back({AsciiLower(line.substr(0, name_end)),
                       std::string(StripWhitespace(line.substr(colon + 1)))});
      }
    }
    pos = eol + 1;
  }
  if (consumed) *consumed = std::min(pos, text.size());
  return out;
}

std::string_view Get(const Fields& f, std::string_view name) {
  for (const Field& x : f) {
    if (x.name == name) return x.value;
  }
  return {};
}

// Groups of fields separated by blank lines (a message/delivery-status body).
std::vector<Fields> ParseGroups(std::string_view text, size_t max_fields, size_t max_groups) {
  std::vector<Fields> groups;
  size_t pos = 0;
  while (pos < text.size() && groups.size() < max_groups) {
    // Skip blank lines.
    while (pos < text.size()) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string_view::npos) eol = text.size();
      if (!StripWhitespace(text.substr(pos, eol - pos)).empty()) break;
      pos = eol + 1;
    }
    if (pos >= text.size()) break;
    size_t used = 0;
    Fields f = ParseFields(text.substr(pos), max_fields, false, &used);
    if (!f.empty()) groups.push_back(std::move(f));
    pos += std::max<size_t>(used, 1);
  }
  return groups;
}

// "rfc822; <User@Example.org>" -> "User@Example.org".
std::string AddressOf(std::string_view v) {
  if (size_t semi = v.find(';'); semi != std::string_view::npos) v = v.substr(semi + 1);
  v = StripWhitespace(v);
  if (size_t lt = v.find('<'); lt != std::string_view::npos) {
    size_t gt = v.find('>', lt);
    v = v.substr(lt + 1, gt == std::string_view::npos ? std::string_view::npos : gt - lt - 1);
  }
  v = StripWhitespace(v);
  while (!v.empty() && (v.back() == '.' || v.back() == ',')) v.remove_suffix(1);
  return std::string(v);
}

// "dns; mx.example.org" -> "mx.example.org".
std::string AfterType(std::string_view v) {
  if (size_t semi = v.find(';'); semi != std::string_view::npos && semi < 16)
    v = v.substr(semi + 1);
  return std::string(StripWhitespace(v));
}

// ---- The GMime walk ----

struct GObjectUnref {
  void operator()(void* p) const {
    if (p) g_object_unref(p);
  }
};
template <typename T>
using GPtr = std::unique_ptr<T, GObjectUnref>;

struct Walk {
  const ParseLimits* limits = nullptr;
  size_t parts = 0;
  bool multipart_report = false;
  std::string report_type;
  std::string delivery_status;
  std::string feedback_report;
  std::string original_headers;  // text/rfc822-headers, or the head of message/rfc822
  std::string first_text;        // the first text/plain (else text/html) part, decoded
  bool first_text_is_html = false;
};

std::string PartContent(GMimePart* part) {
  if (GMIME_IS_TEXT_PART(part)) {
    // Text in its declared charset (ISO-2022-JP from Domino and Notes,
    // ISO-8859-1, ...) is read as UTF-8, so that rules can match it.
    const char* charset = g_mime_text_part_get_charset(GMIME_TEXT_PART(part));
    if (charset && !EqualsIgnoreCase(charset, "utf-8") && !EqualsIgnoreCase(charset, "us-ascii")) {
      if (char* utf8 = g_mime_text_part_get_text(GMIME_TEXT_PART(part))) {
        std::string out = WithoutCr(std::string_view(utf8, strnlen(utf8, kMaxPartText)));
        g_free(utf8);
        return out;
      }
    }
  }
  GMimeDataWrapper* w = g_mime_part_get_content(part);
  if (!w) return {};
  GPtr<GMimeStream> mem(g_mime_stream_mem_new());
  g_mime_data_wrapper_write_to_stream(w, mem.get());
  GByteArray* a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
  if (!a || !a->data) return {};
  std::string out = WithoutCr(std::string_view(reinterpret_cast<const char*>(a->data),
                                               std::min<size_t>(a->len, kMaxPartText)));
  // 7-bit ISO-2022-JP names itself by its escapes ("ESC $ B"): Domino puts
  // it in a message/delivery-status Diagnostic-Code with no charset at all.
  if (out.find("\x1b$B") != std::string::npos || out.find("\x1b$@") != std::string::npos) {
    gsize written = 0;
    if (gchar* utf8 = g_convert(out.data(), static_cast<gssize>(out.size()), "UTF-8", "ISO-2022-JP",
                                nullptr, &written, nullptr)) {
      out.assign(utf8, written);
      g_free(utf8);
    }
  }
  return out;
}

std::string HeadersOf(GMimeObject* obj) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  if (!list) return {};
  char* s = g_mime_header_list_to_string(list, nullptr);
  if (!s) return {};
  std::string out = WithoutCr(s);
  g_free(s);
  return out;
}

std::string MimeType(GMimeObject* obj) {
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  if (!ct) return "text/plain";
  char* s = g_mime_content_type_get_mime_type(ct);
  std::string out = s ? AsciiLower(s) : "text/plain";
  g_free(s);
  return out;
}

void Visit(GMimeObject* obj, Walk* w, int depth) {
  if (!obj || depth > 32 || ++w->parts > w->limits->max_mime_parts) return;
  const std::string type = MimeType(obj);
  if (GMIME_IS_MULTIPART(obj)) {
    GMimeMultipart* mp = GMIME_MULTIPART(obj);
    if (type == "multipart/report" && depth <= 1) {
      w->multipart_report = true;
      GMimeContentType* ct = g_mime_object_get_content_type(obj);
      if (const char* rt = ct ? g_mime_content_type_get_parameter(ct, "report-type") : nullptr)
        w->report_type = AsciiLower(rt);
    }
    const int n = g_mime_multipart_get_count(mp);
    for (int i = 0; i < n; ++i) Visit(g_mime_multipart_get_part(mp, i), w, depth + 1);
    return;
  }
  if (GMIME_IS_MESSAGE_PART(obj)) {
    GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
    if (!inner) return;
    // The returned original: keep its head, never read its body as the report.
    if (w->original_headers.empty()) w->original_headers = HeadersOf(GMIME_OBJECT(inner));
    return;
  }
  if (!GMIME_IS_PART(obj)) return;
  GMimePart* part = GMIME_PART(obj);
  if (type == "message/delivery-status" || type == "message/global-delivery-status") {
    if (w->delivery_status.empty()) w->delivery_status = PartContent(part);
  } else if (type == "message/feedback-report") {
    if (w->feedback_report.empty()) w->feedback_report = PartContent(part);
  } else if (type == "text/rfc822-headers" || type == "message/rfc822-headers" ||
             type == "text/rfc822-header") {
    if (w->original_headers.empty()) w->original_headers = PartContent(part);
  } else if (type == "message/rfc822" || type == "message/global") {
    // GMime did not parse it as a message (malformed): its text starts with the head.
    if (w->original_headers.empty()) {
      std::string body = PartContent(part);
      size_t end = body.find("\n\n");
      w->original_headers = body.substr(0, end);
    }
  } else if (type == "text/plain" && (w->first_text.empty() || w->first_text_is_html)) {
    w->first_text = PartContent(part);
    w->first_text_is_html = false;
  } else if (type == "text/html" && w->first_text.empty()) {
    w->first_text = PartContent(part);
    w->first_text_is_html = true;
  }
}

// Crude tag stripping for HTML-only bounces: enough to find addresses and codes.
std::string HtmlToText(std::string_view html) {
  std::string out;
  out.reserve(html.size());
  bool in_tag = false;
  for (size_t i = 0; i < html.size(); ++i) {
    const char c = html[i];
    if (in_tag) {
      if (c == '>') in_tag = false;
      continue;
    }
    if (c == '<' && i + 1 < html.size() &&
        (std::isalpha(static_cast<unsigned char>(html[i + 1])) || html[i + 1] == '/' ||
         html[i + 1] == '!')) {
      // "<user@example.org>" is an address, not a tag.
      size_t gt = html.find('>', i);
      std::string_view inside = html.substr(i + 1, gt == std::string_view::npos ? 0 : gt - i - 1);
      if (inside.find('@') != std::string_view::npos &&
          inside.find(' ') == std::string_view::npos &&
          inside.find('=') == std::string_view::npos) {
        out.push_back(c);
        continue;
      }
      const std::string_view tag = html.substr(i + 1, 4);
      if (EqualsIgnoreCase(tag.substr(0, 2), "br") || EqualsIgnoreCase(tag.substr(0, 1), "p") ||
          EqualsIgnoreCase(tag.substr(0, 3), "/p>") || EqualsIgnoreCase(tag.substr(0, 3), "div") ||
          EqualsIgnoreCase(tag.substr(0, 2), "tr") || EqualsIgnoreCase(tag.substr(0, 4), "/div"))
        out.push_back('\n');
      in_tag = true;
      continue;
    }
    if (c == '&') {
      if (html.substr(i, 4) == "&lt;") {
        out.push_back('<');
        i += 3;
        continue;
      }
      if (html.substr(i, 4) == "&gt;") {
        out.push_back('>');
        i += 3;
        continue;
      }
      if (html.substr(i, 6) == "&nbsp;") {
        out.push_back(' ');
        i += 5;
        continue;
      }
      if (html.substr(i, 5) == "&amp;") {
        out.push_back('&');
        i += 4;
        continue;
      }
    }
    out.push_back(c);
  }
  return out;
}

// ---- Reading pieces of text ----

const RE2& StatusRe() {
  static const RE2 re(R"((?:^|[^\d.])([245]\.\d{1,3}\.\d{1,3})(?:[^\d.]|\.(?:\D|$)|$))");
  return re;
}
const RE2& ReplyCodeRe() {
  // A reply code that starts a reply: "550 5.1.1", "550-", "said: 550", "<...>: 550",
  // Zoho's "ERROR_CODE :421, ...".
  static const RE2 re(R"((?:^|[\s:;(\[\"'])([45][0-5]\d)(?:[ ,-]|$))");
  return re;
}

// X.0.0 says only "failed" and X.4.7 only "gave up in time": another code in
// the same text says why.
bool IsGenericStatus(std::string_view status) {
  return status.size() == 5 && (status.substr(1) == ".0.0" || status.substr(1) == ".4.7");
}

// Whether the status at `at` directly follows an SMTP reply code of its class
// ("550 5.7.1", "550-'5.7.1", "<421 4.4.2"): the remote server's own reply.
bool AfterReplyCode(std::string_view text, size_t at) {
  size_t i = at;
  for (int skipped = 0; i > 0 && skipped < 3; ++skipped) {
    const char c = text[i - 1];
    if (c != ' ' && c != '-' && c != '\'' && c != '"' && c != '#') break;
    --i;
  }
  if (i == at || i < 3) return false;
  std::string_view code = text.substr(i - 3, 3);
  for (char c : code) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  if (i > 3 && std::isdigit(static_cast<unsigned char>(text[i - 4]))) return false;
  return code[0] == text[at];
}

// The RFC 3463 status a text gives, the way sisimai reads one: the first that
// is not generic (X.0.0, X.4.7), one that follows a reply code before one that
// does not (Amazon SES: "5.1.0 - Unknown address error 550-'5.7.1 ..."); a
// generic one only when there is nothing else.
std::string FindStatus(std::string_view text) {
  re2::StringPiece in = P(text.substr(0, std::min<size_t>(text.size(), 64u << 10)));
  re2::StringPiece m;
  std::string first, specific;
  for (int n = 0; n < 64 && RE2::FindAndConsume(&in, StatusRe(), &m); ++n) {
    const std::string_view code = V(m);
    if (first.empty()) first = std::string(code);
    if (!IsGenericStatus(code)) {
      if (AfterReplyCode(text, static_cast<size_t>(m.data() - text.data())))
        return std::string(code);
      if (specific.empty()) specific = std::string(code);
    }
    // The pattern consumed the character after the code: step back onto it
    // so that "5.1.0 5.7.1" finds both.
    const char* after = m.data() + m.size();
    const char* end = in.data() + in.size();
    if (in.data() > after) in = re2::StringPiece(after, static_cast<size_t>(end - after));
  }
  return specific.empty() ? first : specific;
}

// The line (from the reply code on) that holds the first SMTP reply, or "".
std::string FindReplyLine(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    re2::StringPiece code;
    if (RE2::PartialMatch(P(line), ReplyCodeRe(), &code)) {
      const size_t at = static_cast<size_t>(code.data() - line.data());
      std::string out(StripWhitespace(line.substr(at)));
      // Continuation lines of the same reply ("550-5.1.1 ...", indented text).
      size_t next = eol + 1;
      while (next < text.size() && out.size() < kMaxDiagnostic) {
        size_t e2 = text.find('\n', next);
        if (e2 == std::string_view::npos) e2 = text.size();
        std::string_view l2 = text.substr(next, e2 - next);
        std::string_view t2 = StripWhitespace(l2);
        const bool same_code =
            t2.size() > 3 && t2.substr(0, 3) == V(code) && (t2[3] == '-' || t2[3] == ' ');
        if (t2.empty() || (!same_code && !(l2.size() > 0 && (l2[0] == ' ' || l2[0] == '\t'))) ||
            t2.find('@') == 0)
          break;
        if (!same_code && (t2.find(':') == t2.size() - 1)) break;
        out.push_back(' ');
        out.append(same_code ? StripWhitespace(t2.substr(4)) : t2);
        next = e2 + 1;
      }
      return Clip(out, kMaxDiagnostic);
    }
    pos = eol + 1;
  }
  return {};
}

bool IsRoleAddress(std::string_view addr) {
  const std::string lower = AsciiLower(addr);
  return lower.rfind("mailer-daemon@", 0) == 0 || lower.rfind("postmaster@", 0) == 0 ||
         lower.rfind("mail-daemon@", 0) == 0 || lower.rfind("mailerdaemon@", 0) == 0 ||
         lower.rfind("mailer_daemon@", 0) == 0 || lower.rfind("bounce@", 0) == 0 ||
         lower.rfind("noreply@", 0) == 0 || lower.rfind("no-reply@", 0) == 0 ||
         lower.rfind("abuse@", 0) == 0;
}

// Where the quoted original begins in a text bounce, or npos.
size_t OriginalMarker(std::string_view text) {
  static const RE2 re(
      R"((?im)^[ \t>]*(?:[-=_*]+ ?)?(?:original message|this is a copy of the|below this line is a copy|(?:the )?headers? of (?:the )?(?:original|returned|your) message|returned message|original message (?:headers?|follows)|message headers? follows|unsent message follows|undelivered message (?:headers )?follows|the original message headers|included is the original|message was:|copy of (?:the |your )?(?:original )?message|original headers|your message reads|rejected message|message header:|text of the message|end of the transcript)|^Content-Type: message/rfc822|^Content-Type: text/rfc822-headers)");
  re2::StringPiece in = P(text);
  re2::StringPiece whole;
  static const RE2 full(std::string("(") + re.pattern() + ")");
  if (RE2::PartialMatch(in, full, &whole)) return static_cast<size_t>(whole.data() - text.data());
  // No marker: a quoted head starts at the first "Received:" or "Return-Path:".
  static const RE2 head(R"((?m)^(Received|Return-Path|X-Original-To|Delivered-To): ?)");
  if (RE2::PartialMatch(in, head, &whole)) {
    size_t at = static_cast<size_t>(whole.data() - text.data());
    // The "Received:" of the bounce's own head has already been cut off; a
    // line begins here.
    while (at > 0 && text[at - 1] != '\n') --at;
    return at;
  }
  return std::string_view::npos;
}

// The quoted head after a marker: skip the marker line and blank lines, then
// read fields until a blank line.
std::string QuotedHead(std::string_view rest, size_t max) {
  size_t pos = 0;
  // Skip up to 3 lines that are not fields (the marker, a blank line, "Content-Type: ...").
  for (int i = 0; i < 6 && pos < rest.size(); ++i) {
    size_t eol = rest.find('\n', pos);
    if (eol == std::string_view::npos) eol = rest.size();
    std::string_view line = StripWhitespace(rest.substr(pos, eol - pos));
    static const RE2 field(R"(^[A-Za-z][A-Za-z0-9-]*: )");
    if (!line.empty() && RE2::PartialMatch(P(line), field) &&
        !ContainsCi(line.substr(0, 13), "content-type")) {
      break;
    }
    pos = eol + 1;
  }
  if (pos >= rest.size()) return {};
  std::string_view block = rest.substr(pos);
  // Strip indentation that some MTAs put before quoted heads.
  std::string out;
  size_t p = 0;
  int nfields = 0;
  while (p < block.size() && out.size() < max) {
    size_t eol = block.find('\n', p);
    if (eol == std::string_view::npos) eol = block.size();
    std::string_view line = block.substr(p, eol - p);
    if (StripWhitespace(line).empty()) break;
    out.append(line);
    out.push_back('\n');
    ++nfields;
    p = eol + 1;
  }
  return nfields ? Clip(out, max) : std::string();
}

// Fills the original's identity from a head (original_headers).
void IdentifyOriginal(Report* r, const ParseLimits& limits) {
  if (r->original_headers.size() > limits.max_original_headers)
    r->original_headers.resize(limits.max_original_headers);
  // Quoted heads are often indented; unindent for reading.
  std::string unindented;
  for (std::string_view line : Split(r->original_headers, '\n')) {
    std::string_view l = line;
    if (!l.empty() && l[0] == '>') l.remove_prefix(1);
    const bool cont = !l.empty() && (l[0] == ' ' || l[0] == '\t') &&
                      !RE2::PartialMatch(P(StripWhitespace(l)), R"(^[A-Za-z][A-Za-z0-9-]*: )");
    unindented.append(cont ? std::string(l) : std::string(StripWhitespace(l)));
    unindented.push_back('\n');
  }
  Fields f = ParseFields(unindented, limits.max_fields, false);
  if (r->original_message_id.empty()) r->original_message_id = AddressOf(Get(f, "message-id"));
  if (r->original_return_path.empty()) r->original_return_path = AddressOf(Get(f, "return-path"));
  if (r->feedback_id.empty()) {
    r->feedback_id = std::string(Get(f, "feedback-id"));
    if (r->feedback_id.empty()) r->feedback_id = std::string(Get(f, "x-feedback-id"));
  }
}

constexpr std::string_view kAddr =
    R"([A-Za-z0-9._%+\-=/!#$&'*?^`{|}~]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+)";

struct Anchor {
  std::string address;
  size_t at = 0;  // offset in the explanation
};

// The failed addresses a text bounce names, in order, most telling form
// first: a DSN-like field, an address alone on its line, RCPT TO, an address
// that starts a line, an address after "to"/"recipient", then any address.
// `roles_alone`: a role address (postmaster@...) counts in the first three
// forms (after "the following addresses", Biglobe's failed address can be
// a postmaster).
std::vector<Anchor> FindAnchors(std::string_view text, const std::vector<std::string>& exclude,
                                size_t max, bool roles_alone = false) {
  static const std::string addr(kAddr);
  static const RE2 kForms[] = {
      RE2(R"((?im)^\s*(?:final|original)-recipient:\s*(?:rfc822;)?\s*<?()" + addr + ")"),
      // Sendmail's transcript: "550 <a@b>... User unknown".
      RE2(R"((?m)^[45]\d\d <()" + addr + R"()>\.\.\. )"),
      RE2(R"((?m)^[ \t>*-]*["']?<?()" + addr +
          R"()>?["']?[ \t]*(?::?[ \t]*$|<[^>\n]*>[ \t]*$|\[[^\]\n]*\][ \t]*$| on [A-Z][a-z][a-z],))"),
      RE2(R"((?i)rcpt to:\s*<?()" + addr + ")"),
      RE2(R"((?m)^[ \t>*-]*<?()" + addr + R"()>?[ \t]*[:(,]|^[ \t]*<()" + addr + ")>"),
      RE2(R"((?i)(?:recipient|recipients|address|addresses|mailbox|user|to|for|message to)\s*(?:address(?:es)?)?[:\s]\s*["'<]?()" +
          addr + ")"),
      RE2("(" + addr + ")"),
  };
  int form = 0;
  auto excluded = [&](std::string_view a) {
    if (IsRoleAddress(a) && !(roles_alone && form <= 2)) return true;
    for (const std::string& e : exclude) {
      if (!e.empty() && EqualsIgnoreCase(a, e)) return true;
    }
    return false;
  };
  for (const RE2& re : kForms) {
    std::vector<Anchor> found;
    re2::StringPiece in = P(text);
    re2::StringPiece m1, m2;
    const int groups = re.NumberOfCapturingGroups();
    while (found.size() < max) {
      bool ok =
          groups >= 2 ? RE2::FindAndConsume(&in, re, &m1, &m2) : RE2::FindAndConsume(&in, re, &m1);
      if (!ok) break;
      re2::StringPiece m = m1.empty() ? m2 : m1;
      std::string a(V(m));
      while (!a.empty() && (a.back() == '.' || a.back() == '-')) a.pop_back();
      if (a.empty() || excluded(a)) continue;
      bool dup = false;
      for (const Anchor& x : found) dup = dup || EqualsIgnoreCase(x.address, a);
      if (!dup) found.push_back({a, static_cast<size_t>(m.data() - text.data())});
      if (in.empty()) break;
    }
    if (!found.empty()) {
      std::sort(found.begin(), found.end(),
                [](const Anchor& x, const Anchor& y) { return x.at < y.at; });
      return found;
    }
    ++form;
  }
  return {};
}

bool LooksDelayed(std::string_view subject, std::string_view text) {
  static const RE2 delayed(
      R"((?i)delivery (status notification )?\(?delay|delayed mail|warning: (could not send|message .* delayed)|delivery delayed|message delayed|not yet been delivered|has not yet been delivered|will (keep|continue to|be) (trying|retried|retry)|still (trying|being retried)|will retry|delivery is delayed|is delayed|retry timeout not exceeded|warning: message still undelivered)");
  static const RE2 final_words(
      R"((?i)permanent|fatal|failed permanently|giving up|gave up|could not be delivered|undeliverable|rejected|does not exist|user unknown|not exist|retry time(out)? (not reached|exceeded)|has been expired|no longer)");
  const bool delay = RE2::PartialMatch(P(subject), delayed) || RE2::PartialMatch(P(text), delayed);
  if (!delay) return false;
  if (RE2::PartialMatch(P(subject), delayed)) return true;
  return !RE2::PartialMatch(P(text), final_words);
}

bool LooksLikeBounce(std::string_view from, std::string_view subject, std::string_view text,
                     bool returned_original) {
  static const RE2 sender(
      R"((?i)mailer[- _]?daemon|post_?master|mail delivery (sub)?system|mail administrator|mail ?delivery|microsoftexchange|deliverystatus|nobody@|bounce|mailer@|mmsd@|daemon@|system administrator|mail services)");
  static const RE2 subj(
      R"((?i)undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem|report|notification)|returned mail|return(ed)? to sender|failure notice|mail delivery failed|could not send|delivery status|non.?delivery|nondeliverable|not delivered|warning: could not|mail system error|message (not delivered|delivery failed)|rejected|failed mail|unable to deliver|delivery error|error sending|bounce|mail failure|permanent error|message you sent|delayed mail|ndn|ndr|returned message|delivery notification)");
  static const RE2 body(
      R"((?i)could not be delivered|couldn't be delivered|was not delivered|wasn't delivered|delivery (to the following|has failed|failed)|permanent(ly)? (fatal )?error|following (address(es)?|recipient)|unable to deliver|undeliverable|message you sent|not be delivered|qmail-send program|mail delivery software|returned to (the )?sender|delivery to the following|delivery has failed|failed permanently|remote host said|user unknown|unknown user|no such user|recipient address rejected|mailbox (unavailable|full)|does not exist|has not been delivered|message was undeliverable|your message .{0,40}(rejected|blocked|couldn't|could not|bounced|failed)|error (has )?occurred while attempting to deliver|did not reach the following|delivery to .{0,80} failed)");
  static const RE2 reply(R"((?m)(^|\s)[45]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}\b)");
  const std::string_view head = text.substr(0, 16384);
  const int score = RE2::PartialMatch(P(from), sender) + RE2::PartialMatch(P(subject), subj) +
                    RE2::PartialMatch(P(head), body) + RE2::PartialMatch(P(head), reply) +
                    returned_original;
  return score >= 2;
}

// Reads a plain-text bounce. Returns false when it names no failed address.
bool ReadTextBounce(std::string_view text, std::string_view subject,
                    const std::vector<std::string>& exclude,
                    const std::vector<std::string>& x_failed, const ParseLimits& limits,
                    Report* r) {
  const size_t marker = OriginalMarker(text);
  std::string_view explanation = text.substr(0, std::min(marker, text.size()));
  if (marker != std::string_view::npos && r->original_headers.empty())
    r->original_headers = QuotedHead(text.substr(marker), limits.max_original_headers);
  std::vector<Anchor> anchors;
  // Addresses after "the following recipients" first: before it, the text
  // often names the original's To or the sender.
  static const RE2 lead(
      R"((?i)(following (recipient|address|destination)|did not reach|could(n't| not) be delivered to|delivery to the following|permanent fatal errors|had (permanent )?(fatal|delivery) errors|delivery has failed to|failed recipient|undeliverable to|address(es)? failed|list of recipients))");
  re2::StringPiece lead_at;
  if (RE2::PartialMatch(P(explanation), lead, &lead_at)) {
    const size_t from = static_cast<size_t>(lead_at.data() - explanation.data());
    anchors = FindAnchors(explanation.substr(from), exclude, limits.max_recipients,
                          /*roles_alone=*/true);
    for (Anchor& a : anchors) a.at += from;
  }
  if (anchors.empty()) anchors = FindAnchors(explanation, exclude, limits.max_recipients);
  // Sent to oneself: the failed address is the bounce's own To.
  if (anchors.empty()) anchors = FindAnchors(explanation, {}, limits.max_recipients);
  if (anchors.empty() && x_failed.empty() && !r->original_headers.empty()) {
    // Old Sendmail reports the host, not the address ("421 example.com
    // (smtp)... Deferred: Connection timed out"), Verizon's MMS gateway
    // neither: the failed address is the returned original's To, when it
    // names exactly one.
    // Not when the returned message is itself a bounce (a forwarded
    // report: its To is the original sender).
    Fields head = ParseFields(r->original_headers, limits.max_fields, false);
    std::string_view to_field = Get(head, "to");
    if (to_field.find(',') == std::string_view::npos &&
        !IsRoleAddress(AddressOf(Get(head, "from")))) {
      std::string a = AddressOf(to_field);
      static const RE2 one(std::string("^") + std::string(kAddr) + "$");
      if (RE2::FullMatch(P(a), one) && !IsRoleAddress(a))
        anchors.push_back({std::move(a), std::string_view::npos});
    }
  }
  if (!x_failed.empty()) {
    // X-Failed-Recipients (Exim, Gmail) names the set; the text places them.
    std::vector<Anchor> placed;
    for (const std::string& x : x_failed) {
      if (placed.size() >= limits.max_recipients) break;
      Anchor a{x, std::string_view::npos};
      for (const Anchor& t : anchors) {
        if (EqualsIgnoreCase(t.address, x)) a.at = t.at;
      }
      if (a.at == std::string_view::npos) {
        const std::string lower_text = AsciiLower(explanation);
        if (size_t at = lower_text.find(AsciiLower(x)); at != std::string::npos) a.at = at;
      }
      placed.push_back(std::move(a));
    }
    std::sort(placed.begin(), placed.end(),
              [](const Anchor& x, const Anchor& y) { return x.at < y.at; });
    anchors = std::move(placed);
  }
  if (anchors.empty()) return false;
  const bool delayed = LooksDelayed(subject, explanation);
  const std::string any_status = FindStatus(explanation);
  const std::string any_reply = FindReplyLine(explanation);
  static const RE2 host_re(
      R"((?i)(?:host|server|mx|mail server|remote host|mta)\s+\[?([a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)\]?)");
  for (size_t i = 0; i < anchors.size(); ++i) {
    // The block of an address: from the start of its line to the next
    // address (the whole explanation for an address the text never names).
    const bool placed = anchors[i].at != std::string_view::npos;
    size_t end = explanation.size();
    if (placed && i + 1 < anchors.size() && anchors[i + 1].at != std::string_view::npos)
      end = anchors[i + 1].at;
    size_t begin = placed ? anchors[i].at : 0;
    if (!placed && lead_at.data() != nullptr)
      begin = static_cast<size_t>(lead_at.data() - explanation.data());
    while (begin > 0 && explanation[begin - 1] != '\n') --begin;
    if (!placed && lead_at.data() == nullptr) {
      // A salutation to the bounce's own addressee ("Hello a@b,": Google
      // Groups) says nothing about the failure: the reason follows it.
      size_t text_at = explanation.find_first_not_of(" \t\n", begin);
      size_t eol = text_at == std::string_view::npos ? text_at : explanation.find('\n', text_at);
      if (eol != std::string_view::npos && eol - text_at < 80 &&
          (eol + 1 >= explanation.size() || explanation[eol + 1] == '\n')) {
        std::string_view greeting = explanation.substr(text_at, eol - text_at);
        for (const std::string& e : exclude) {
          if (!e.empty() && ContainsCi(greeting, e)) {
            begin = eol + 1;
            break;
          }
        }
      }
    }
    std::string_view block = explanation.substr(begin, end - begin);
    FailedRecipient fr;
    fr.final_recipient = anchors[i].address;
    fr.action = delayed ? "delayed" : "failed";
    fr.diagnostic_code = FindReplyLine(block);
    if (fr.diagnostic_code.empty() && anchors.size() == 1) fr.diagnostic_code = any_reply;
    if (fr.diagnostic_code.empty()) {
      // The address's line and those after it (qmail: "<a@b>:" then "Sorry, no
      // mailbox here by that name. (#5.1.1)"; "a@b [User unknown]").
      // When the address stands alone, the reason is in the next paragraph.
      std::string joined;
      bool reason = false;
      for (std::string_view line : Split(block, '\n')) {
        std::string_view t = StripWhitespace(line);
        while (!t.empty() && (t.front() == '>' || t.front() == ':' || t.front() == '*'))
          t.remove_prefix(1);
        t = StripWhitespace(t);
        if (t.empty()) {
          // A paragraph that ends in ':' ("The following address(es)
          // failed:") leads in to the next one.
          if (reason && joined.back() != ':') break;
          continue;
        }
        if (!joined.empty()) joined.push_back(' ');
        joined.append(t);
        // The line without the address and what brackets it ("<a@b>", "'a@b':").
        std::string rest(t);
        if (size_t at = rest.find(fr.final_recipient); at != std::string::npos)
          rest.erase(at, fr.final_recipient.size());
        static const RE2 letters("[A-Za-z]{3}");
        // "because:", "Reason:", "For the following reason:" lead in to the reason.
        if (RE2::PartialMatch(P(rest), letters) && rest.back() != ':') reason = true;
        if (joined.size() > 300) break;
      }
      if (!reason && placed) {
        // The reason came first ("The user(s) account is disabled." then the
        // address): the paragraph just above the address's line.
        size_t para_end = begin;
        while (para_end > 0 && explanation[para_end - 1] == '\n') --para_end;
        size_t para_begin = explanation.substr(0, para_end).rfind("\n\n");
        para_begin = para_begin == std::string_view::npos ? 0 : para_begin + 2;
        // "Remote host is not responding.\n\nThe following recipients did not
        // receive this message:\n\n<a@b>": a lead-in paragraph, and the
        // reason above it.
        if (para_begin > 0 && explanation[para_end - 1] == ':') {
          size_t above_end = para_begin;
          while (above_end > 0 && explanation[above_end - 1] == '\n') --above_end;
          size_t above = explanation.substr(0, above_end).rfind("\n\n");
          para_begin = above == std::string_view::npos ? 0 : above + 2;
        }
        std::string before;
        for (std::string_view line :
             Split(explanation.substr(para_begin, para_end - para_begin), '\n')) {
          std::string_view t = StripWhitespace(line);
          if (t.empty()) continue;
          if (!before.empty()) before.push_back(' ');
          before.append(t);
        }
        if (!before.empty()) joined = Clip(before, 300) + " " + joined;
      }
      // A status further down the block belongs with the reason (Mimecast:
      // "Additional information follows :" then "-- 5.4.1 Recipient address
      // rejected: Access denied").
      if (FindStatus(joined).empty()) {
        re2::StringPiece st;
        if (RE2::PartialMatch(P(block), StatusRe(), &st)) {
          const size_t at = static_cast<size_t>(st.data() - block.data());
          size_t line_begin = block.rfind('\n', at);
          line_begin = line_begin == std::string_view::npos ? 0 : line_begin + 1;
          size_t line_end = block.find('\n', at);
          if (line_end == std::string_view::npos) line_end = block.size();
          std::string_view line = StripWhitespace(block.substr(line_begin, line_end - line_begin));
          if (joined.find(line) == std::string::npos) {
            if (!joined.empty()) joined.push_back(' ');
            joined.append(line);
          }
        }
      }
      fr.diagnostic_code = Clip(joined, kMaxDiagnostic);
    }
    fr.status = FindStatus(fr.diagnostic_code);
    if (fr.status.empty() || IsGenericStatus(fr.status)) {
      // "550 4.4.7 QUEUE.Expired" first, the error that made it expire after.
      std::string in_block = FindStatus(block);
      if (fr.status.empty() ||
          (!in_block.empty() && !IsGenericStatus(in_block) && in_block[0] == fr.status[0]))
        fr.status = std::move(in_block);
    }
    if (fr.status.empty() && anchors.size() == 1) fr.status = any_status;
    re2::StringPiece host;
    if (RE2::PartialMatch(P(block), host_re, &host)) fr.remote_mta = AsciiLower(V(host));
    r->recipients.push_back(std::move(fr));
  }
  r->kind = delayed ? ReportKind::kDelayed : ReportKind::kBounce;
  r->format = "text";
  return true;
}

// Infers a status when a report gives none: from the reply code, else from
// the action.
void FillStatus(FailedRecipient* fr) {
  const std::string from_diag = FindStatus(fr->diagnostic_code);
  // A generic X.0.0 status with a specific code in the diagnostic of the
  // same class: the diagnostic says more.
  // The same for a different code of the same class: the remote server's own
  // reply is more precise than the reporting MTA's summary (Amazon SES
  // reports 5.1.0 for every failure, with the real code in the diagnostic).
  // But a generic code in the diagnostic ("550 5.0.0", "554 4.4.7 Message
  // expired") does not replace a specific status.
  if (!from_diag.empty() && (fr->status.empty() || from_diag[0] == fr->status[0]) &&
      !(IsGenericStatus(from_diag) && !fr->status.empty() && !IsGenericStatus(fr->status))) {
    fr->status = from_diag;
  }
  if (!fr->status.empty()) return;
  re2::StringPiece code;
  if (RE2::PartialMatch(P(fr->diagnostic_code), ReplyCodeRe(), &code)) {
    fr->status = std::string(1, code[0]) + ".0.0";
    return;
  }
  fr->status = fr->action == "delayed" ? "4.0.0" : "5.0.0";
}

bool ReadDeliveryStatus(std::string_view ds, const ParseLimits& limits, Report* r) {
  std::vector<Fields> groups;
  // A recipient's fields start again at a repeated Final-Recipient or
  // Original-Recipient: some MTAs (AOL) leave out the blank line between
  // recipients.
  for (Fields& g : ParseGroups(ds, limits.max_fields, limits.max_recipients + 1)) {
    Fields piece;
    for (Field& f : g) {
      if ((f.name == "final-recipient" || f.name == "original-recipient") &&
          !Get(piece, f.name).empty() && groups.size() <= limits.max_recipients) {
        groups.push_back(std::move(piece));
        piece.clear();
      }
      piece.push_back(std::move(f));
    }
    if (!piece.empty()) groups.push_back(std::move(piece));
  }
  if (groups.empty()) return false;
  const Fields& per_message = groups[0];
  r->reporting_mta = AfterType(Get(per_message, "reporting-mta"));
  if (std::string_view s = Get(per_message, "x-postfix-sender"); !s.empty())
    r->original_return_path = AddressOf(s);
  bool any_failed = false, any_delayed = false;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Fields& f = groups[g];
    std::string final_rcpt = AddressOf(Get(f, "final-recipient"));
    std::string orig_rcpt = AddressOf(Get(f, "original-recipient"));
    if (final_rcpt.empty()) final_rcpt = AddressOf(Get(f, "x-actual-recipient"));
    if (final_rcpt.empty()) final_rcpt = orig_rcpt;
    if (final_rcpt.empty()) continue;
    if (r->recipients.size() >= limits.max_recipients) break;
    FailedRecipient fr;
    fr.final_recipient = final_rcpt;
    fr.original_recipient = orig_rcpt;
    fr.action = AsciiLower(StripWhitespace(Get(f, "action")));
    fr.status = std::string(StripWhitespace(Get(f, "status")));
    if (size_t sp = fr.status.find_first_of(" \t("); sp != std::string::npos) fr.status.resize(sp);
    fr.diagnostic_code = Clip(Get(f, "diagnostic-code"), kMaxDiagnostic);
    fr.remote_mta = AfterType(Get(f, "remote-mta"));
    if (fr.action.empty())
      fr.action = !fr.status.empty() && fr.status[0] == '4' ? "delayed" : "failed";
    if (fr.action == "delivered" || fr.action == "relayed" || fr.action == "expanded") continue;
    if (fr.action == "delayed") {
      any_delayed = true;
    } else {
      any_failed = true;
    }
    r->recipients.push_back(std::move(fr));
  }
  if (r->recipients.empty()) return false;
  r->kind = any_failed ? ReportKind::kBounce : ReportKind::kDelayed;
  (void)any_delayed;
  r->format = "rfc3464";
  return true;
}

void ReadFeedbackReport(std::string_view fb, const ParseLimits& limits, Report* r) {
  Fields f = ParseFields(fb, limits.max_fields, false);
  Complaint c;
  c.feedback_type = AsciiLower(StripWhitespace(Get(f, "feedback-type")));
  c.user_agent = std::string(Get(f, "user-agent"));
  c.version = std::string(Get(f, "version"));
  c.original_rcpt_to = AddressOf(Get(f, "original-rcpt-to"));
  c.original_mail_from = AddressOf(Get(f, "original-mail-from"));
  c.arrival_date = std::string(Get(f, "arrival-date"));
  if (c.arrival_date.empty()) c.arrival_date = std::string(Get(f, "received-date"));
  c.source_ip = std::string(Get(f, "source-ip"));
  c.reported_domain = std::string(Get(f, "reported-domain"));
  if (c.feedback_type.empty()) c.feedback_type = "abuse";
  if (!c.original_mail_from.empty() && r->original_return_path.empty())
    r->original_return_path = c.original_mail_from;
  r->complaint = std::move(c);
  r->kind = ReportKind::kComplaint;
  r->format = "arf";
}

// The recipient a complaint is about: Original-Rcpt-To, else the To of the
// original head (often redacted by the provider).
void ComplaintRecipient(const ParseLimits& limits, Report* r) {
  std::string rcpt = r->complaint ? r->complaint->original_rcpt_to : std::string();
  if (rcpt.empty()) {
    Fields f = ParseFields(r->original_headers, limits.max_fields, false);
    rcpt = AddressOf(Get(f, "to"));
    if (rcpt.find('@') == std::string::npos) rcpt.clear();
  }
  if (rcpt.empty()) return;
  FailedRecipient fr;
  fr.final_recipient = rcpt;
  fr.action = "complained";
  r->recipients.push_back(std::move(fr));
}

// Amazon SES / SNS JSON notifications (a Bounce or Complaint object).
bool ReadSesJson(std::string_view text, const ParseLimits& limits, Report* r) {
  size_t brace = text.find('{');
  if (brace == std::string_view::npos || text.find("notificationType") == std::string_view::npos)
    return false;
  // SNS mails append a signature ("--\nIf you wish to stop receiving ..."):
  // the object ends at the last '}' before it.
  std::string_view body = text.substr(brace);
  if (size_t sig = body.find("\n--"); sig != std::string_view::npos) body = body.substr(0, sig);
  if (size_t last = body.rfind('}'); last != std::string_view::npos)
    body = body.substr(0, last + 1);
  // Mailers fold long lines: JSON has no line ends of its own to keep.
  std::string flat;
  for (char c : body) {
    if (c != '\n') flat.push_back(c);
  }
  nlohmann::json j = nlohmann::json::parse(flat, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return false;
  // SNS wraps the notification as a string in "Message".
  if (j.contains("Message") && j["Message"].is_string()) {
    nlohmann::json inner = nlohmann::json::parse(j["Message"].get<std::string>(), nullptr, false);
    if (!inner.is_discarded() && inner.is_object()) j = std::move(inner);
  }
  auto str = [](const nlohmann::json& o, const char* key) -> std::string {
    if (!o.is_object()) return {};
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string type =
      str(j, "notificationType").empty() ? str(j, "eventType") : str(j, "notificationType");
  if (j.contains("mail") && j["mail"].is_object()) {
    const auto& mail = j["mail"];
    r->original_message_id = AddressOf(str(mail, "messageId"));
    r->original_return_path = AddressOf(str(mail, "source"));
    if (mail.contains("commonHeaders") && mail["commonHeaders"].is_object())
      r->original_message_id = AddressOf(str(mail["commonHeaders"], "messageId"));
  }
  if (type == "Bounce" && j.contains("bounce") && j["bounce"].is_object()) {
    const auto& b = j["bounce"];
    const bool transient = str(b, "bounceType") == "Transient";
    r->reporting_mta = AfterType(str(b, "reportingMTA"));
    if (b.contains("bouncedRecipients") && b["bouncedRecipients"].is_array()) {
      for (const auto& br : b["bouncedRecipients"]) {
        if (r->recipients.size() >= limits.max_recipients) break;
        FailedRecipient fr;
        fr.final_recipient = AddressOf(str(br, "emailAddress"));
        fr.action = str(br, "action").empty() ? "failed" : AsciiLower(str(br, "action"));
        fr.status = str(br, "status");
        fr.diagnostic_code = Clip(str(br, "diagnosticCode"), kMaxDiagnostic);
        if (fr.status.empty() && transient) fr.status = "4.0.0";
        if (!fr.final_recipient.empty()) r->recipients.push_back(std::move(fr));
      }
    }
    r->kind = ReportKind::kBounce;
    r->format = "amazonses-json";
    return true;
  }
  if (type == "Complaint" && j.contains("complaint") && j["complaint"].is_object()) {
    const auto& c = j["complaint"];
    Complaint out;
    out.feedback_type = str(c, "complaintFeedbackType");
    if (out.feedback_type.empty()) out.feedback_type = "abuse";
    out.user_agent = str(c, "userAgent");
    if (c.contains("complainedRecipients") && c["complainedRecipients"].is_array() &&
        !c["complainedRecipients"].empty())
      out.original_rcpt_to = AddressOf(str(c["complainedRecipients"][0], "emailAddress"));
    out.original_mail_from = r->original_return_path;
    r->complaint = std::move(out);
    r->kind = ReportKind::kComplaint;
    r->format = "amazonses-json";
    return true;
  }
  if (type == "Delivery") {
    r->kind = ReportKind::kNotAReport;
    r->format = "amazonses-json";
    return true;
  }
  return false;
}

bool LooksAutoReply(GMimeObject* top, std::string_view subject) {
  auto header = [&](const char* name) -> std::string {
    const char* v = g_mime_object_get_header(top, name);
    return v ? AsciiLower(StripWhitespace(v)) : std::string();
  };
  const std::string auto_submitted = header("Auto-Submitted");
  if (!auto_submitted.empty() && auto_submitted.rfind("no", 0) != 0) return true;
  if (!header("X-Autoreply").empty() || !header("X-Autorespond").empty() ||
      !header("X-Autoresponder").empty() || !header("X-Autogenerated").empty() ||
      !header("X-Auto-Reply").empty() || !header("X-Vacation").empty() ||
      !header("X-Mail-Autoreply").empty())
    return true;
  const std::string precedence = header("Precedence");
  if (precedence == "auto_reply") return true;
  static const RE2 subj(
      R"((?i)^(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|ooo\b|vacation|abwesenheitsnotiz|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|automatisch antwoord|autosvar|autoreply|away from|on vacation|i am (currently )?(out|away|on leave))|(?i)\b(out of (the )?office|auto-?reply|automatic reply|autoresponder|vacation reply|away message)\b)");
  return RE2::PartialMatch(P(subject), subj);
}

}  // namespace

std::string_view ReportKindName(ReportKind k) {
  switch (k) {
    case ReportKind::kNotAReport:
      return "not-a-report";
    case ReportKind::kBounce:
      return "bounce";
    case ReportKind::kDelayed:
      return "delayed";
    case ReportKind::kComplaint:
      return "complaint";
    case ReportKind::kAutoReply:
      return "auto-reply";
  }
  return "not-a-report";
}

absl::StatusOr<Report> ParseReport(std::string_view message, const ParseLimits& limits) {
  if (message.size() > limits.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message of ", message.size(), " bytes is over the limit of ", limits.max_message_bytes));
  }
  // GMime recurses once per nested part: bounding the Content-Type headers
  // bounds its depth.
  if (CountCi(message, "content-type", limits.max_mime_parts) > limits.max_mime_parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("more than ", limits.max_mime_parts, " MIME parts"));
  }
  absl::call_once(g_gmime_once, [] { g_mime_init(); });

  // mbox files from some archives start with a "From " line.
  if (message.rfind("From ", 0) == 0) {
    size_t eol = message.find('\n');
    message = eol == std::string_view::npos ? std::string_view() : message.substr(eol + 1);
  }
  GPtr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(message.data(), message.size()));
  GPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  g_mime_parser_set_format(parser.get(), GMIME_FORMAT_MESSAGE);
  GPtr<GMimeMessage> msg(g_mime_parser_construct_message(parser.get(), nullptr));
  if (!msg) return absl::InvalidArgumentError("not an RFC 5322 message");
  GMimeObject* top = GMIME_OBJECT(msg.get());

  Report r;
  if (const char* s = g_mime_message_get_subject(msg.get())) r.subject = Clip(s, 1024);
  if (const char* s = g_mime_object_get_header(top, "From")) r.from = Clip(s, 1024);
  std::string to;
  if (const char* s = g_mime_object_get_header(top, "To")) to = Clip(s, 1024);

  Walk w;
  w.limits = &limits;
  Visit(g_mime_message_get_mime_part(msg.get()), &w, 1);
  std::string text = w.first_text_is_html ? HtmlToText(w.first_text) : std::move(w.first_text);
  r.original_headers = std::move(w.original_headers);
  if (r.original_headers.size() > limits.max_original_headers)
    r.original_headers.resize(limits.max_original_headers);

  if (!w.feedback_report.empty() || (w.multipart_report && w.report_type == "feedback-report")) {
    ReadFeedbackReport(w.feedback_report, limits, &r);
    IdentifyOriginal(&r, limits);
    ComplaintRecipient(limits, &r);
    return r;
  }
  if (w.multipart_report && w.report_type == "disposition-notification") {
    r.format = "mdn";  // a read receipt: not a report about delivery
    return r;
  }
  const std::vector<std::string> exclude = {AddressOf(r.from), AddressOf(to)};
  std::vector<std::string> x_failed;
  if (const char* s = g_mime_object_get_header(top, "X-Failed-Recipients")) {
    for (std::string_view a : Split(s, ',')) {
      std::string addr = AddressOf(a);
      if (addr.find('@') != std::string::npos && x_failed.size() < limits.max_recipients)
        x_failed.push_back(std::move(addr));
    }
  }
  if (!w.delivery_status.empty() && ReadDeliveryStatus(w.delivery_status, limits, &r)) {
    // Reports without a diagnostic code: the human-readable part often has the reply.
    Report from_text;
    const bool have_text = ReadTextBounce(text, r.subject, exclude, x_failed, limits, &from_text);
    for (FailedRecipient& fr : r.recipients) {
      if (!fr.diagnostic_code.empty() || !have_text) continue;
      for (const FailedRecipient& t : from_text.recipients) {
        if (EqualsIgnoreCase(t.final_recipient, fr.final_recipient) ||
            from_text.recipients.size() == 1) {
          fr.diagnostic_code = t.diagnostic_code;
          break;
        }
      }
    }
    if (r.original_headers.empty()) r.original_headers = from_text.original_headers;
    for (FailedRecipient& fr : r.recipients) {
      FillStatus(&fr);
      if (!IsGenericStatus(fr.status) || !have_text) continue;
      // A generic status (Exchange: 4.4.7 "QUEUE.Expired") whose recipient the
      // human-readable part explains with a specific code of the same class
      // (the "441 4.4.1" that made it expire).
      for (const FailedRecipient& t : from_text.recipients) {
        if (EqualsIgnoreCase(t.final_recipient, fr.final_recipient) && !t.status.empty() &&
            !IsGenericStatus(t.status) && t.status[0] == fr.status[0]) {
          fr.status = t.status;
          break;
        }
      }
    }
    IdentifyOriginal(&r, limits);
    return r;
  }
  if (ReadSesJson(text, limits, &r)) {
    for (FailedRecipient& fr : r.recipients) FillStatus(&fr);
    if (r.kind == ReportKind::kComplaint) ComplaintRecipient(limits, &r);
    return r;
  }
  // Without a text part (a bare non-MIME body GMime gave as text/plain, or
  // none at all), read the raw body.
  if (text.empty()) {
    size_t body = message.find("\n\n");
    if (body != std::string_view::npos) text = WithoutCr(message.substr(body + 2, kMaxPartText));
  }
  if (LooksLikeBounce(r.from, r.subject, text, !r.original_headers.empty()) || w.multipart_report ||
      !x_failed.empty()) {
    if (ReadTextBounce(text, r.subject, exclude, x_failed, limits, &r)) {
      for (FailedRecipient& fr : r.recipients) FillStatus(&fr);
      IdentifyOriginal(&r, limits);
      return r;
    }
    {
      // A bounce we recognise but whose failed address we cannot find.
      r.kind = LooksDelayed(r.subject, text) ? ReportKind::kDelayed : ReportKind::kBounce;
      r.format = "text";
      IdentifyOriginal(&r, limits);
      return r;
    }
  }
  if (LooksAutoReply(top, r.subject)) {
    r.kind = ReportKind::kAutoReply;
    r.format = "rfc3834";
    if (const char* s = g_mime_object_get_header(top, "In-Reply-To"))
      r.original_message_id = AddressOf(s);
    return r;
  }
  return r;
}

void Classify(Report* report, const smtp::Classifier* rules) {
  for (FailedRecipient& fr : report->recipients) {
    fr.category = smtp::Category::kNone;
    fr.hard = false;
    fr.rule.clear();
    fr.reply.clear();
    if (report->kind != ReportKind::kBounce && report->kind != ReportKind::kDelayed) continue;
    std::string_view diag = StripWhitespace(fr.diagnostic_code);
    // "smtp; 550 ...", "X-Postfix; host ... said: 550 ..."
    if (size_t semi = diag.find(';'); semi != std::string_view::npos && semi < 16 &&
                                      diag.substr(0, semi).find(' ') == std::string_view::npos)
      diag = StripWhitespace(diag.substr(semi + 1));
    smtp::Reply reply;
    std::string_view rest = diag;
    re2::StringPiece code;
    if (RE2::PartialMatch(P(diag), ReplyCodeRe(), &code)) {
      reply.code = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
      const size_t at = static_cast<size_t>(code.data() - diag.data()) + 3;
      std::string prefix(StripWhitespace(diag.substr(0, at - 3)));
      rest = at < diag.size() ? diag.substr(at + 1) : std::string_view();
      reply.enhanced = std::string(smtp::SplitEnhancedCode(&rest));
      // Keep what came before the code ("host mx said:"): rules may match it.
      // Not a status there that the chosen one replaced (Amazon SES's
      // "5.1.0 - Unknown address error" before the remote "550 5.7.1").
      // Such a prefix is the reporting MTA's own summary of the code it gave,
      // which the remote server's reply says better: it is left out whole.
      if (!fr.status.empty()) {
        static const RE2 other_status(R"((\b[245]\.\d{1,3}\.\d{1,3}\b))");
        re2::StringPiece in = P(prefix), m;
        while (RE2::FindAndConsume(&in, other_status, &m) && !m.empty()) {
          if (V(m) != fr.status) {
            prefix.clear();
            break;
          }
        }
      }
      reply.text =
          prefix.empty() ? std::string(rest) : absl::StrCat(Av(rest), " (", Av(prefix), ")");
    } else {
      reply.text = std::string(diag);
    }
    const char cls =
        !fr.status.empty() ? fr.status[0] : (reply.code ? '0' + reply.code / 100 : '5');
    if (reply.code == 0 || (reply.code / 100 != 4 && reply.code / 100 != 5))
      reply.code = cls == '4' ? 450 : 550;
    if (reply.enhanced.empty()) reply.enhanced = fr.status;
    fr.reply = reply.ToString();
    fr.hard = cls == '5' && fr.action != "delayed";
    fr.category = smtp::Category::kOther;
    if (rules) {
      if (const smtp::Rule* rule = rules->Match(fr.reply)) {
        fr.category = rule->category;
        fr.rule = rule->name;
      }
    }
  }
}

}  // namespace salvo::bounce
