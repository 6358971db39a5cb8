#include "queue/campaign.h"
#include "engine/common/strings.h"

#include <toml++/toml.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "engine/common/duration.h"
#include "engine/common/hash.h"
#include "queue/address.h"

namespace salvo::queue {

namespace {
constexpr const char* kDayNames[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

bool ParseHourMinute(std::string_view t, int* minutes) {
  int h = 0, m = 0;
  if (t.size() != 5 || t[2] != ':') return false;
  for (size_t i : {0, 1, 3, 4})
    if (t[i] < '0' || t[i] > '9') return false;
  h = (t[0] - '0') * 10 + (t[1] - '0');
  m = (t[3] - '0') * 10 + (t[4] - '0');
  if (m > 59 || h > 24 || (h == 24 && m != 0)) return false;
  *minutes = h * 60 + m;
  return true;
}

int Weekday(absl::CivilDay d) {
  switch (absl::GetWeekday(d)) {
    case absl::Weekday::monday:
      return 0;
    case absl::Weekday::tuesday:
      return 1;
    case absl::Weekday::wednesday:
      return 2;
    case absl::Weekday::thursday:
      return 3;
    case absl::Weekday::friday:
      return 4;
    case absl::Weekday::saturday:
      return 5;
    case absl::Weekday::sunday:
      return 6;
  }
  return 0;
}
}  // namespace

absl::StatusOr<SendWindow> ParseSendWindow(std::string_view hours,
                                           const std::vector<std::string>& days,
                                           std::string_view timezone) {
  SendWindow w;
  w.set = true;
  const size_t dash = hours.find('-');
  if (dash == std::string_view::npos || !ParseHourMinute(hours.substr(0, dash), &w.start_minute) ||
      !ParseHourMinute(hours.substr(dash + 1), &w.end_minute))
    return absl::InvalidArgumentError(
        Cat("hours = \"", hours, "\" is not \"HH:MM-HH:MM\" (e.g. \"09:00-17:00\")"));
  if (w.start_minute == w.end_minute)
    return absl::InvalidArgumentError(Cat("hours = \"", hours, "\" is an empty window"));
  if (!days.empty()) {
    w.days = 0;
    for (const std::string& d : days) {
      int found = -1;
      for (int i = 0; i < 7; ++i)
        if (absl::AsciiStrToLower(d) == kDayNames[i]) found = i;
      if (found < 0)
        return absl::InvalidArgumentError(
            Cat("days: '", d, "' is not a day (mon, tue, wed, thu, fri, sat, sun)"));
      w.days |= static_cast<uint8_t>(1u << found);
    }
  }
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(std::string(timezone), &tz))
    return absl::InvalidArgumentError(
        Cat("timezone = \"", timezone, "\" is not a known time zone (e.g. \"Europe/Berlin\")"));
  w.timezone = std::string(timezone);
  return w;
}

std::string SendWindow::ToString() const {
  if (!set) return "";
  auto hm = [](int m) {
    char b[32];
    std::snprintf(b, sizeof b, "%02d:%02d", m / 60, m % 60);
    return std::string(b);
  };
  std::string d;
  for (int i = 0; i < 7; ++i) {
    if (!(days & (1u << i))) continue;
    if (!d.empty()) d.push_back(',');
    d.append(kDayNames[i]);
  }
  return Cat(hm(start_minute), "-", hm(end_minute), " ", d, " ", timezone);
}

absl::Time NextWindowOpen(const SendWindow& w, absl::Time now) {
  if (!w.set) return now;
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(w.timezone, &tz)) tz = absl::UTCTimeZone();
  const absl::CivilSecond local = absl::ToCivilSecond(now, tz);
  const absl::CivilDay today(local);
  const int minute = static_cast<int>(local.hour()) * 60 + static_cast<int>(local.minute());
  auto allowed = [&](absl::CivilDay d) { return (w.days >> Weekday(d)) & 1; };
  if (w.start_minute < w.end_minute) {
    if (allowed(today) && minute >= w.start_minute && minute < w.end_minute) return now;
  } else {  // wraps midnight: open from start today, or until end (from yesterday)
    if (allowed(today) && minute >= w.start_minute) return now;
    if (allowed(today - 1) && minute < w.end_minute) return now;
  }
  for (int i = 0; i <= 7; ++i) {
    const absl::CivilDay d = today + i;
    if (!allowed(d)) continue;
    const absl::Time open = absl::FromCivil(absl::CivilMinute(d) + w.start_minute, tz);
    if (open > now) return open;
  }
  return now + absl::Hours(24 * 7);  // no day allowed: unreachable after parsing
}

std::string_view RecipientStateName(RecipientState s) {
  switch (s) {
    case RecipientState::kQueued:
      return "queued";
    case RecipientState::kInFlight:
      return "in_flight";
    case RecipientState::kDelivered:
      return "delivered";
    case RecipientState::kDeferred:
      return "deferred";
    case RecipientState::kBounced:
      return "bounced";
    case RecipientState::kExpired:
      return "expired";
    case RecipientState::kSuppressed:
      return "suppressed";
    case RecipientState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

bool IsFinal(RecipientState s) {
  return s != RecipientState::kQueued && s != RecipientState::kInFlight &&
         s != RecipientState::kDeferred;
}

std::string_view CampaignStateName(CampaignState s) {
  switch (s) {
    case CampaignState::kLoading:
      return "loading";
    case CampaignState::kActive:
      return "active";
    case CampaignState::kPaused:
      return "paused";
    case CampaignState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

uint64_t StateCounts::Total() const {
  uint64_t t = 0;
  for (uint64_t v : n) t += v;
  return t;
}

uint64_t StateCounts::Pending() const {
  return (*this)[RecipientState::kQueued] + (*this)[RecipientState::kDeferred] +
         (*this)[RecipientState::kInFlight];
}

absl::Status RetryPolicy::Validate() const {
  if (first_retry_min <= absl::ZeroDuration())
    return absl::InvalidArgumentError("retry.first_retry_min must be positive");
  if (first_retry_max < first_retry_min)
    return absl::InvalidArgumentError("retry.first_retry_max must be >= first_retry_min");
  if (!(multiplier >= 1.0 && multiplier <= 100.0))
    return absl::InvalidArgumentError("retry.multiplier must be between 1 and 100");
  if (max_delay < first_retry_min)
    return absl::InvalidArgumentError("retry.max_delay must be >= first_retry_min");
  if (max_age <= absl::ZeroDuration())
    return absl::InvalidArgumentError("retry.max_age must be positive");
  return absl::OkStatus();
}

namespace {

std::string Where(const std::string& path, const toml::node& node) {
  return Cat(path, ":", node.source().begin.line);
}

// options.unsubscribe_url: the List-Unsubscribe base of RFC 8058 one-click
// unsubscribe, which mailbox providers only POST to over https. Anything else
// would load and then fail at every composition (issue 16 item 2).
absl::Status CheckUnsubscribeUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("options.unsubscribe_url = \"", url, "\": ", why));
  };
  const size_t colon = url.find(':');
  std::string scheme(url.substr(0, colon == std::string_view::npos ? 0 : colon));
  for (char& c : scheme) c = AsciiLower(c);
  if (scheme != "https")
    return bad(scheme.empty() ? "not a URL: it must start with https://"
                              : Cat("the scheme is ", scheme,
                                    ", not https (RFC 8058 one-click unsubscribe needs https)"));
  if (url.substr(colon, 3) != "://") return bad("not a URL: it must start with https://");
  if (url.substr(0, colon) != "https") return bad("write the scheme in lower case: https://");
  const std::string_view rest = url.substr(colon + 3);
  const std::string_view host = rest.substr(0, rest.find_first_of("/?#"));
  if (host.empty() || host.find('@') != std::string_view::npos)
    return bad("no host after https:// (e.g. https://example.com/unsubscribe)");
  for (unsigned char c : url)
    if (c <= 32 || c >= 127 || c == '<' || c == '>' || c == '"')
      return bad("spaces, control characters, <, > and \" are not allowed (percent-encode them)");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CampaignSpec> ParseCampaignFile(const std::string& path) {
  std::ifstream probe(path);
  if (!probe) {
    return absl::NotFoundError(Cat(path, ": cannot open campaign file: ", std::strerror(errno)));
  }
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    // toml++ reports with exceptions; this is the control plane (CLI), not the data path.
    return absl::InvalidArgumentError(Cat(path, ":", e.source().begin.line, ": ", e.description()));
  }
  // The file's own folder, absolute: its paths mean the same from any
  // working directory, and errors show where they were looked for.
  std::error_code ec;
  std::filesystem::path base = std::filesystem::absolute(path, ec).parent_path();
  if (ec) base = std::filesystem::path(path).parent_path();
  auto resolve = [&](const std::string& p) {
    std::filesystem::path fp(p);
    if (fp.is_absolute() || base.empty()) return fp.string();
    return (base / fp).lexically_normal().string();
  };
  CampaignSpec spec;
  auto get_string = [&](const toml::node& node, std::string_view key,
                        std::string* out) -> absl::Status {
    const auto* s = node.as_string();
    if (s == nullptr)
      return absl::InvalidArgumentError(Cat(Where(path, node), ": '", key, "' must be a string"));
    *out = s->get();
    return absl::OkStatus();
  };
  for (const auto& [key, node] : root) {
    const std::string_view k = key.str();
    absl::Status s;
    if (k == "name") {
      s = get_string(node, k, &spec.name);
    } else if (k == "template") {
      s = get_string(node, k, &spec.template_path);
      spec.template_path = resolve(spec.template_path);
    } else if (k == "recipients") {
      s = get_string(node, k, &spec.recipients_path);
      spec.recipients_path = resolve(spec.recipients_path);
    } else if (k == "from") {
      s = get_string(node, k, &spec.from);
    } else if (k == "dkim_domain") {
      s = get_string(node, k, &spec.dkim_domain);
    } else if (k == "egress_pool") {
      s = get_string(node, k, &spec.egress_pool);
    } else if (k == "window") {
      const auto* t = node.as_table();
      if (t == nullptr)
        return absl::InvalidArgumentError(Cat(Where(path, node), ": [window] must be a table"));
      std::string hours = "00:00-24:00", tz = "UTC";
      std::vector<std::string> days;
      for (const auto& [wk, wn] : *t) {
        const std::string_view w = wk.str();
        if (w == "hours" || w == "timezone") {
          if (absl::Status gs = get_string(wn, Cat("window.", w), w == "hours" ? &hours : &tz);
              !gs.ok())
            return gs;
        } else if (w == "days") {
          const auto* a = wn.as_array();
          if (a == nullptr)
            return absl::InvalidArgumentError(
                Cat(Where(path, wn), ": window.days must be a list like [\"mon\", \"tue\"]"));
          for (const toml::node& d : *a) {
            if (!d.is_string())
              return absl::InvalidArgumentError(
                  Cat(Where(path, d), ": window.days: each day is a string (mon..sun)"));
            days.push_back(*d.value<std::string>());
          }
        } else {
          return absl::InvalidArgumentError(Cat(Where(path, wn), ": unknown key 'window.", w,
                                                "' (known: hours, days, timezone)"));
        }
      }
      absl::StatusOr<SendWindow> win = ParseSendWindow(hours, days, tz);
      if (!win.ok())
        return absl::InvalidArgumentError(
            Cat(Where(path, node), ": [window]: ", win.status().message()));
      spec.window = *win;
    } else if (k == "retry") {
      const auto* t = node.as_table();
      if (t == nullptr)
        return absl::InvalidArgumentError(Cat(Where(path, node), ": [retry] must be a table"));
      for (const auto& [rk, rn] : *t) {
        const std::string_view r = rk.str();
        if (r == "multiplier") {
          auto v = rn.value<double>();
          if (!v)
            return absl::InvalidArgumentError(
                Cat(Where(path, rn), ": retry.multiplier must be a number"));
          spec.retry.multiplier = *v;
          continue;
        }
        absl::Duration* target = nullptr;
        if (r == "first_retry_min") target = &spec.retry.first_retry_min;
        if (r == "first_retry_max") target = &spec.retry.first_retry_max;
        if (r == "max_delay") target = &spec.retry.max_delay;
        if (r == "max_age") target = &spec.retry.max_age;
        if (target == nullptr)
          return absl::InvalidArgumentError(
              Cat(Where(path, rn), ": unknown key 'retry.", r,
                  "' (known: first_retry_min, first_retry_max, multiplier, max_delay, max_age)"));
        std::string text;
        if (auto num = rn.value<double>()) {
          text = Cat(*num);
        } else if (const auto* str = rn.as_string()) {
          text = str->get();
        } else {
          return absl::InvalidArgumentError(Cat(
              Where(path, rn), ": retry.", r, " must be a duration string like \"5m\" or seconds"));
        }
        absl::StatusOr<absl::Duration> d = ParseDuration(text);
        if (!d.ok())
          return absl::InvalidArgumentError(
              Cat(Where(path, rn), ": retry.", r, ": ", d.status().message()));
        *target = *d;
      }
    } else if (k == "options") {
      const auto* t = node.as_table();
      if (t == nullptr)
        return absl::InvalidArgumentError(Cat(Where(path, node), ": [options] must be a table"));
      for (const auto& [ok, on] : *t) {
        if (const auto* str = on.as_string()) {
          std::string value = str->get();
          if (IsPathOption(ok.str()) && !value.empty()) {
            value = resolve(value);
            if (absl::Status ps = CheckPathOptions({{std::string(ok.str()), value}}); !ps.ok())
              return absl::InvalidArgumentError(Cat(Where(path, on), ": ", ps.message()));
          }
          if (ok.str() == "unsubscribe_url")
            if (absl::Status us = CheckUnsubscribeUrl(value); !us.ok())
              return absl::InvalidArgumentError(Cat(Where(path, on), ": ", us.message()));
          spec.options[std::string(ok.str())] = std::move(value);
        } else if (auto i = on.value<int64_t>()) {
          spec.options[std::string(ok.str())] = Cat(*i);
        } else if (auto b = on.value<bool>()) {
          spec.options[std::string(ok.str())] = *b ? "true" : "false";
        } else if (auto f = on.value<double>()) {
          spec.options[std::string(ok.str())] = Cat(*f);
        } else {
          return absl::InvalidArgumentError(
              Cat(Where(path, on), ": options.", ok.str(), " must be a string, number or boolean"));
        }
      }
    } else {
      return absl::InvalidArgumentError(
          Cat(Where(path, node), ": unknown key '", k,
              "' (known: name, template, recipients, from, dkim_domain, egress_pool, [window], "
              "[retry], [options])"));
    }
    if (!s.ok()) return s;
  }
  for (auto [key, value] : {std::pair<const char*, const std::string*>{"name", &spec.name},
                            {"template", &spec.template_path},
                            {"recipients", &spec.recipients_path},
                            {"from", &spec.from}}) {
    if (!value->empty()) continue;
    if (const toml::node* given = root.get(key))
      return absl::InvalidArgumentError(
          Cat(Where(path, *given), ": '", key, "' is empty (it needs a value)"));
    return absl::InvalidArgumentError(Cat(path, ":1: missing required key '", key, "'"));
  }
  if (absl::Status s = spec.retry.Validate(); !s.ok())
    return absl::InvalidArgumentError(Cat(path, ": ", s.message()));
  return spec;
}

bool IsPathOption(std::string_view key) {
  return key.size() > 5 && key.substr(key.size() - 5) == "_file";
}

absl::Status CheckPathOptions(const std::map<std::string, std::string>& options) {
  for (const auto& [key, path] : options) {
    if (!IsPathOption(key) || path.empty()) continue;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      return absl::InvalidArgumentError(
          Cat("options.", key, ": '", path, "' is a directory, not a file"));
    std::ifstream in(path, std::ios::binary);
    if (!in)
      return absl::InvalidArgumentError(
          Cat("options.", key, ": cannot read '", path, "': ", std::strerror(errno)));
    if (in.peek() == std::ifstream::traits_type::eof())
      return absl::InvalidArgumentError(Cat("options.", key, ": '", path, "' is empty"));
  }
  return absl::OkStatus();
}

// ---- Fleet shares ----------------------------------------------------------

uint64_t NodeHash(std::string_view normalized_address) {
  return Fnv1a64(normalized_address);  // specified, so stable on every node
}

bool NodeShare::Takes(std::string_view normalized_address) const {
  if (whole()) return true;
  return NodeHash(normalized_address) % count == index;
}

std::string NodeShare::ToString() const { return Cat(index, "/", count); }

absl::StatusOr<NodeShare> ParseNodeShare(std::string_view text, std::string_view host_name) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        Cat("node share '", text, "': ", why, " (expected i/N with 0 <= i < N, or auto/N)"));
  };
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return bad("no '/'");
  std::string_view index_text = text.substr(0, slash);
  uint32_t index = 0, count = 0;
  if (!absl::SimpleAtoi(std::string(text.substr(slash + 1)), &count) || count < 1 || count > 4096)
    return bad("N must be 1..4096");
  if (index_text == "auto") {
    size_t end = host_name.size(), begin = end;
    while (begin > 0 && std::isdigit(static_cast<unsigned char>(host_name[begin - 1]))) --begin;
    if (begin == end)
      return bad(Cat("auto: the host name '", host_name, "' does not end in a number"));
    index_text = host_name.substr(begin);
  }
  if (!absl::SimpleAtoi(std::string(index_text), &index)) return bad("i is not a number");
  if (index >= count) return bad("i must be less than N");
  NodeShare share;
  share.index = index;
  share.count = count;
  return share;
}

}  // namespace salvo::queue
