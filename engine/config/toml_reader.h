#pragma once
// Strict reading of TOML tables with file:line:column errors, shared by every
// TOML file Salvo reads (the config, the shaping file). toml++ gives every key
// and value a source region; TableReader reads known keys, rejects unknown
// ones, and keeps the first error. Start-up and reload only: never on the
// data path.
#include <toml++/toml.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "engine/common/duration.h"
#include "fmt/format.h"

namespace salvo::config {

using Seconds = std::chrono::duration<double>;

// absl::StrCat takes absl::string_view, which in Debian's abseil is not
// std::string_view; fmt concatenates both kinds.
template <typename... A>
inline std::string Cat(const A&... a) {
  std::string s;
  (fmt::format_to(std::back_inserter(s), "{}", a), ...);
  return s;
}

inline std::string Where(std::string_view file, const toml::source_region& r) {
  return Cat(file, ":", r.begin.line, ":", r.begin.column);
}

inline std::string_view TypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    default:
      return "nothing";
  }
}

// Walks one TOML table, reading known keys and rejecting the rest. The first
// error wins; later reads become no-ops so callers need not check each one.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, std::string_view file,
              absl::Status* status)
      : table_(table), path_(std::move(path)), file_(file), status_(status) {}

  std::string KeyName(std::string_view key) const {
    return path_.empty() ? std::string(key) : Cat(path_, ".", key);
  }
  bool ok() const { return status_->ok(); }
  void Fail(const toml::source_region& where, std::string_view what) {
    if (status_->ok()) *status_ = absl::InvalidArgumentError(Cat(Where(file_, where), ": ", what));
  }
  const toml::node* Get(std::string_view key) {
    seen_.insert(std::string(key));
    if (!ok()) return nullptr;
    return table_.get(key);
  }
  void WrongType(std::string_view key, const toml::node& n, std::string_view want) {
    Fail(n.source(), Cat("'", KeyName(key), "' must be ", want, ", not ", TypeName(n.type())));
  }

  void String(std::string_view key, std::string* out) {
    const toml::node* n = Get(key);
    if (!n) return;
    if (auto v = n->value<std::string>(); v && n->is_string())
      *out = *v;
    else
      WrongType(key, *n, "a string");
  }
  void Bool(std::string_view key, bool* out) {
    const toml::node* n = Get(key);
    if (!n) return;
    if (n->is_boolean())
      *out = *n->value<bool>();
    else
      WrongType(key, *n, "true or false");
  }
  void Int(std::string_view key, int* out, int64_t min, int64_t max) {
    const toml::node* n = Get(key);
    if (!n) return;
    if (!n->is_integer()) return WrongType(key, *n, "an integer");
    int64_t v = *n->value<int64_t>();
    if (v < min || v > max)
      return Fail(n->source(),
                  Cat("'", KeyName(key), "' = ", v, " is out of range [", min, ", ", max, "]"));
    *out = static_cast<int>(v);
  }
  // Seconds: a number, or a string with a unit ("250ms", "30s", "5m", "1h").
  void Duration(std::string_view key, Seconds* out, double min_s = 0) {
    const toml::node* n = Get(key);
    if (!n) return;
    double v;
    if (n->is_integer())
      v = static_cast<double>(*n->value<int64_t>());
    else if (n->is_floating_point())
      v = *n->value<double>();
    else if (n->is_string()) {
      absl::StatusOr<absl::Duration> d = ParseDuration(*n->value<std::string>());
      if (!d.ok())
        return Fail(n->source(), Cat("'", KeyName(key), "' = \"", *n->value<std::string>(),
                                     "\" is not a duration (e.g. 30, \"30s\", "
                                     "\"250ms\", \"5m\", \"1h\"): ",
                                     std::string(d.status().message())));
      v = absl::ToDoubleSeconds(*d);
    } else {
      return WrongType(key, *n, "a duration (seconds, or a string like \"30s\")");
    }
    if (!std::isfinite(v) || v < min_s)
      return Fail(n->source(), Cat("'", KeyName(key), "' must be a duration >= ", min_s, "s"));
    // Bounded like every parsed duration, so that deadlines computed from it
    // cannot overflow (issue 16 item 2).
    if (v > absl::ToDoubleSeconds(kMaxParsedDuration))
      return Fail(n->source(), Cat("'", KeyName(key), "' = ", v,
                                   "s is longer than 100 years (the most Salvo takes)"));
    *out = Seconds(v);
  }
  void StringList(std::string_view key, std::vector<std::string>* out) {
    const toml::node* n = Get(key);
    if (!n) return;
    if (n->is_string()) {
      *out = {*n->value<std::string>()};
      return;
    }
    const toml::array* a = n->as_array();
    if (!a) return WrongType(key, *n, "a list of strings");
    out->clear();
    for (const toml::node& e : *a) {
      if (!e.is_string()) return WrongType(key, e, "a list of strings; an element");
      out->push_back(*e.value<std::string>());
    }
  }
  // Bytes: an integer, or a string with a binary unit ("512k", "64M", "1G").
  void Bytes(std::string_view key, uint64_t* out) {
    const toml::node* n = Get(key);
    if (!n) return;
    if (n->is_integer()) {
      if (*n->value<int64_t>() < 0)
        return Fail(n->source(), Cat("'", KeyName(key), "' must be >= 0"));
      *out = static_cast<uint64_t>(*n->value<int64_t>());
      return;
    }
    if (!n->is_string()) return WrongType(key, *n, "a size (bytes, or a string like \"512M\")");
    std::string text = *n->value<std::string>();
    uint64_t mult = 1;
    if (!text.empty()) {
      switch (text.back()) {
        case 'k':
        case 'K':
          mult = 1ull << 10;
          break;
        case 'M':
          mult = 1ull << 20;
          break;
        case 'G':
          mult = 1ull << 30;
          break;
      }
      if (mult > 1) text.pop_back();
    }
    uint64_t v;
    if (!absl::SimpleAtoi(text, &v) || v > (UINT64_MAX >> 30))
      return Fail(n->source(), Cat("'", KeyName(key), "' = \"", *n->value<std::string>(),
                                   "\" is not a size (e.g. 1048576, \"512k\", \"64M\", \"1G\")"));
    *out = v * mult;
  }
  // A sub-table; returns nullptr if absent (or wrong type, with the error set).
  const toml::table* Table(std::string_view key) {
    const toml::node* n = Get(key);
    if (!n) return nullptr;
    if (const toml::table* t = n->as_table()) return t;
    WrongType(key, *n, "a table");
    return nullptr;
  }
  // Call last: every key not read is an error.
  void RejectUnknown() {
    if (!ok()) return;
    for (auto&& [k, v] : table_) {
      if (seen_.contains(std::string(k.str()))) continue;
      const toml::source_region& where = k.source().begin.line ? k.source() : v.source();
      Fail(where, path_.empty() ? Cat("unknown key '", k.str(), "'")
                                : Cat("unknown key '", k.str(), "' in [", path_, "]"));
      return;
    }
  }

  const std::string& path() const { return path_; }

 private:
  const toml::table& table_;
  std::string path_;
  std::string_view file_;
  absl::Status* status_;
  absl::flat_hash_set<std::string> seen_;
};

}  // namespace salvo::config
