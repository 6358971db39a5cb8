#include "engine/message/downgrade.h"

#include <vector>

#include "engine/message/encoding.h"

namespace salvo::message {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool Has8bit(std::string_view v) {
  for (unsigned char c : v)
    if (c >= 0x80) return true;
  return false;
}

struct Field {
  std::string_view raw;  // the whole field with its CRLFs
  std::string_view name;
  std::string value;  // unfolded
};

// Splits an entity into header fields and body. `entity` starts with the
// header block; an entity without a blank line is all headers.
void SplitEntity(std::string_view entity, std::vector<Field>* fields, std::string_view* body) {
  size_t p = 0;
  while (p < entity.size()) {
    size_t eol = entity.find("\r\n", p);
    if (eol == std::string_view::npos) eol = entity.size();
    if (eol == p) {  // blank line
      *body = entity.substr(std::min(p + 2, entity.size()));
      return;
    }
    std::string_view line = entity.substr(p, eol - p);
    if ((line[0] == ' ' || line[0] == '\t') && !fields->empty()) {
      Field& f = fields->back();
      f.raw = std::string_view(
          f.raw.data(),
          static_cast<size_t>(entity.data() + std::min(eol + 2, entity.size()) - f.raw.data()));
      f.value.append(line);
    } else {
      Field f;
      size_t colon = line.find(':');
      f.name = line.substr(0, colon == std::string_view::npos ? line.size() : colon);
      f.value =
          colon == std::string_view::npos ? std::string() : std::string(line.substr(colon + 1));
      f.raw = entity.substr(p, std::min(eol + 2, entity.size()) - p);
      fields->push_back(std::move(f));
    }
    p = eol + 2;
  }
  *body = std::string_view();
}

// The boundary parameter of a multipart Content-Type, or "".
std::string Boundary(std::string_view content_type) {
  std::string lower;
  for (char c : content_type) lower.push_back(Lower(c));
  if (Trim(lower).substr(0, 10) != "multipart/") return std::string();
  size_t b = lower.find("boundary=");
  if (b == std::string::npos) return std::string();
  std::string_view v = std::string_view(content_type).substr(b + 9);
  std::string out;
  if (!v.empty() && v[0] == '"') {
    for (size_t k = 1; k < v.size() && v[k] != '"'; ++k) {
      if (v[k] == '\\' && k + 1 < v.size()) ++k;
      out.push_back(v[k]);
    }
  } else {
    size_t end = v.find_first_of("; \t");
    out = std::string(v.substr(0, end));
  }
  return out;
}

absl::StatusOr<bool> Entity(std::string_view entity, bool top, std::string* out);

absl::StatusOr<bool> Multipart(std::string_view body, const std::string& boundary,
                               std::string* out) {
  const std::string delim = "--" + boundary;
  bool changed = false;
  size_t p = 0;
  // Positions of delimiter lines (start of line).
  size_t part_start = std::string_view::npos;
  while (p <= body.size()) {
    size_t eol = body.find("\r\n", p);
    size_t line_end = eol == std::string_view::npos ? body.size() : eol;
    std::string_view line = body.substr(p, line_end - p);
    bool is_delim = line.substr(0, delim.size()) == delim;
    bool close = false;
    if (is_delim) {
      std::string_view rest = line.substr(delim.size());
      close = rest.substr(0, 2) == "--";
      if (close) rest.remove_prefix(2);
      is_delim = Trim(rest).empty();
    }
    if (is_delim) {
      if (part_start == std::string_view::npos) {
        out->append(body.substr(0, p));  // preamble (with the CRLF before the delimiter)
      } else {
        // The CRLF before a delimiter belongs to the delimiter.
        size_t part_end = p >= part_start + 2 ? p - 2 : part_start;
        auto sub = Entity(body.substr(part_start, part_end - part_start), false, out);
        if (!sub.ok()) return sub;
        changed |= *sub;
        out->append("\r\n");
      }
      out->append(line);
      if (close) {
        out->append(body.substr(line_end));  // epilogue
        return changed;
      }
      out->append("\r\n");
      part_start = eol == std::string_view::npos ? body.size() : eol + 2;
    }
    if (eol == std::string_view::npos) break;
    p = eol + 2;
  }
  // Never closed: copy the rest unchanged.
  if (part_start == std::string_view::npos) {
    out->append(body);
  } else {
    out->append(body.substr(part_start));
  }
  return changed;
}

absl::StatusOr<bool> Entity(std::string_view entity, bool top, std::string* out) {
  std::vector<Field> fields;
  std::string_view body;
  SplitEntity(entity, &fields, &body);
  const Field* content_type = nullptr;
  const Field* cte = nullptr;
  for (const Field& f : fields) {
    if (Has8bit(f.raw))
      return absl::FailedPreconditionError("header field '" + std::string(f.name) +
                                           "' has 8-bit octets (needs SMTPUTF8)");
    if (IEquals(f.name, "content-type")) content_type = &f;
    if (IEquals(f.name, "content-transfer-encoding")) cte = &f;
  }
  std::string boundary = content_type ? Boundary(content_type->value) : std::string();
  bool has_blank = body.data() != nullptr;
  if (!boundary.empty()) {
    for (const Field& f : fields) out->append(f.raw);
    out->append("\r\n");
    return Multipart(body, boundary, out);
  }
  std::string cte_value;
  if (cte) {
    for (char c : Trim(cte->value)) cte_value.push_back(Lower(c));
  }
  bool encoded = cte_value == "quoted-printable" || cte_value == "base64";
  if (encoded || !Has8bit(body)) {
    out->append(entity);
    return false;
  }
  for (const Field& f : fields) {
    if (&f == cte) {
      out->append(f.name);
      out->append(": quoted-printable\r\n");
    } else {
      out->append(f.raw);
    }
  }
  if (cte == nullptr) out->append("Content-Transfer-Encoding: quoted-printable\r\n");
  if (has_blank || top) out->append("\r\n");
  QpEncoder qp;
  qp.Append(body, /*text_mode=*/true, out);
  if (top && qp.column() > 0) out->append("\r\n");
  return true;
}

}  // namespace

absl::StatusOr<bool> DowngradeTo7bit(std::string_view message, std::string* out) {
  const size_t start = out->size();
  auto r = Entity(message, true, out);
  if (!r.ok()) out->resize(start);
  return r;
}

}  // namespace salvo::message
