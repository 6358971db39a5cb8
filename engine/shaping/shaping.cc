// Parsing the shaping file and resolving a destination to its limits.
// Start-up, reload and CLI only.
#include "engine/shaping/shaping.h"

#include <re2/re2.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "engine/common/strings.h"
#include "engine/config/toml_reader.h"

namespace salvo::shaping {

extern const char kBuiltinRules[];  // generated from deploy/bounce-rules.toml

namespace {

using config::TableReader;

bool ValidDomainName(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  for (char c : d) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                    c == '_' || static_cast<unsigned char>(c) >= 0x80;
    if (!ok) return false;
  }
  return d.find("..") == std::string_view::npos;
}

void ReadRate(TableReader& r, std::string_view key, std::optional<Rate>* out) {
  const toml::node* n = r.Get(key);
  if (!n) return;
  std::string text;
  if (n->is_string())
    text = *n->value<std::string>();
  else if (n->is_integer())
    text = std::to_string(*n->value<int64_t>());
  else
    return r.WrongType(key, *n, "a rate (\"N/s\", \"N/min\", \"N/h\" or \"0\")");
  absl::StatusOr<Rate> rate = ParseRate(text);
  if (!rate.ok())
    return r.Fail(n->source(), Cat("'", r.KeyName(key), "': ", rate.status().message()));
  *out = *rate;
}

void ReadInt(TableReader& r, std::string_view key, std::optional<int>* out, int min, int max) {
  if (!r.ok()) return;
  int v = 0;
  const toml::node* n = r.Get(key);
  if (!n) return;
  r.Int(key, &v, min, max);
  if (r.ok()) *out = v;
}

void ReadLimits(TableReader& r, const toml::table& t, Limits* l, std::string_view file) {
  l->where = Cat(file, ":", t.source().begin.line);
  ReadInt(r, "max_connections", &l->max_connections, 1, 100000);
  ReadInt(r, "max_messages_per_connection", &l->max_messages_per_connection, 1, 1000000);
  ReadInt(r, "max_recipients_per_message", &l->max_recipients_per_message, 1, 10000);
  ReadRate(r, "max_message_rate", &l->max_message_rate);
  ReadRate(r, "max_connection_rate", &l->max_connection_rate);
  if (const toml::node* n = r.Get("tls")) {
    std::string v = n->value_or<std::string>("");
    if (!n->is_string()) return r.WrongType("tls", *n, "a string");
    if (v == "off")
      l->tls = Tls::kOff;
    else if (v == "opportunistic")
      l->tls = Tls::kOpportunistic;
    else if (v == "required")
      l->tls = Tls::kRequired;
    else
      r.Fail(n->source(), Cat("'", r.KeyName("tls"), "' = \"", v,
                              "\": expected \"off\", \"opportunistic\" or \"required\""));
  }
}

void Overlay(Limits* base, const Limits& over) {
  if (over.max_connections) base->max_connections = over.max_connections;
  if (over.max_messages_per_connection)
    base->max_messages_per_connection = over.max_messages_per_connection;
  if (over.max_recipients_per_message)
    base->max_recipients_per_message = over.max_recipients_per_message;
  if (over.max_message_rate) base->max_message_rate = over.max_message_rate;
  if (over.max_connection_rate) base->max_connection_rate = over.max_connection_rate;
  if (over.tls) base->tls = over.tls;
}

void ReadRule(TableReader& r, const toml::table& t, std::string_view file,
              std::vector<smtp::Rule>* out) {
  smtp::Rule rule;
  rule.where = config::Where(file, t.source());
  r.String("name", &rule.name);
  if (const toml::node* n = r.Get("name"); n && rule.name.empty() && r.ok())
    r.Fail(n->source(), "'rule.name' is empty");
  if (rule.name.empty()) rule.name = Cat(file, ":", t.source().begin.line);
  const toml::node* match = r.Get("match");
  r.String("match", &rule.pattern);
  if (r.ok() && !match)
    r.Fail(t.source(), "[[rule]] needs 'match' (an RE2 pattern over the reply)");
  if (r.ok() && match && rule.pattern.empty()) r.Fail(match->source(), "'rule.match' is empty");
  if (r.ok() && match) {
    RE2::Options opts;
    opts.set_case_sensitive(false);
    opts.set_log_errors(false);
    RE2 re(rule.pattern, opts);
    if (!re.ok())
      r.Fail(match->source(), Cat("'rule.match' is not a valid RE2 pattern: ", re.error()));
  }
  std::string category;
  const toml::node* cat = r.Get("category");
  r.String("category", &category);
  if (r.ok()) {
    if (!cat) {
      r.Fail(t.source(), "[[rule]] needs 'category'");
    } else if (auto c = smtp::ParseCategory(category)) {
      rule.category = *c;
    } else {
      r.Fail(cat->source(), Cat("'rule.category' = \"", category,
                                "\" is not a category (bad-mailbox, inactive-mailbox, "
                                "quota-issues, bad-domain, no-answer-from-host, bad-connection, "
                                "routing-errors, spam-related, policy-related, content-related, "
                                "virus-related, relaying-issues, protocol-errors, invalid-sender, "
                                "message-expired, rate-limited, other)"));
    }
  }
  std::string action = "none";
  const toml::node* act = r.Get("action");
  r.String("action", &action);
  if (r.ok()) {
    if (action == "none")
      rule.action = smtp::RuleAction::kNone;
    else if (action == "backoff")
      rule.action = smtp::RuleAction::kBackoff;
    else if (action == "suspend")
      rule.action = smtp::RuleAction::kSuspend;
    else
      r.Fail(act->source(), Cat("'rule.action' = \"", action,
                                "\": expected \"none\", \"backoff\" or \"suspend\""));
  }
  std::string scope = "destination";
  const toml::node* sc = r.Get("scope");
  r.String("scope", &scope);
  if (r.ok()) {
    if (scope == "destination")
      rule.scope = smtp::RuleScope::kDestination;
    else if (scope == "domain")
      rule.scope = smtp::RuleScope::kDomain;
    else if (scope == "provider")
      rule.scope = smtp::RuleScope::kProvider;
    else if (scope == "campaign")
      rule.scope = smtp::RuleScope::kCampaign;
    else
      r.Fail(sc->source(), Cat("'rule.scope' = \"", scope,
                               "\": expected \"destination\", \"domain\", \"provider\" or "
                               "\"campaign\""));
  }
  const toml::node* dur = r.Get("duration");
  if (dur && r.ok()) {
    if (!dur->is_string()) {
      r.WrongType("duration", *dur, "a duration string like \"30m\"");
    } else {
      absl::StatusOr<absl::Duration> d = ParseDuration(*dur->value<std::string>());
      if (!d.ok() || *d <= absl::ZeroDuration())
        r.Fail(dur->source(), Cat("'rule.duration' = \"", *dur->value<std::string>(),
                                  "\" is not a positive duration (e.g. \"30s\", \"30m\", \"2h\")"));
      else
        rule.duration = *d;
    }
  }
  if (r.ok() && rule.action == smtp::RuleAction::kSuspend && !dur)
    r.Fail(t.source(), "[[rule]] with action = \"suspend\" needs 'duration'");
  if (r.ok() && rule.action != smtp::RuleAction::kSuspend && dur)
    r.Fail(dur->source(), "'rule.duration' is only for action = \"suspend\"");
  if (const toml::node* n = r.Get("suppress"); n && r.ok()) {
    bool v = false;
    r.Bool("suppress", &v);
    if (r.ok()) rule.suppress = v;
  }
  r.RejectUnknown();
  if (r.ok()) out->push_back(std::move(rule));
}

absl::StatusOr<toml::table> ParseToml(std::string_view text, std::string_view file) {
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(Cat(config::Where(file, e.source()), ": ", e.description()));
  }
}

std::string LowerAscii(std::string_view s) { return AsciiLower(s); }

bool HostEndsWith(std::string_view host, std::string_view suffix) {
  if (host.size() && host.back() == '.') host.remove_suffix(1);
  if (suffix.empty()) return false;
  if (suffix.front() == '.') {
    return host.size() > suffix.size() &&
           EqualsIgnoreCase(host.substr(host.size() - suffix.size()), suffix);
  }
  if (EqualsIgnoreCase(host, suffix)) return true;
  return host.size() > suffix.size() + 1 && host[host.size() - suffix.size() - 1] == '.' &&
         EqualsIgnoreCase(host.substr(host.size() - suffix.size()), suffix);
}

}  // namespace

absl::StatusOr<Rate> ParseRate(std::string_view text) {
  std::string_view t = StripWhitespace(text);
  Rate r;
  r.text = std::string(t);
  if (t == "0") return r;
  const size_t slash = t.find('/');
  if (slash == std::string_view::npos)
    return absl::InvalidArgumentError(
        Cat("\"", text, "\" is not a rate (expected \"N/s\", \"N/min\", \"N/h\" or \"0\")"));
  double n = 0;
  std::string num(StripWhitespace(t.substr(0, slash)));
  std::string unit = AsciiLower(StripWhitespace(t.substr(slash + 1)));
  if (!absl::SimpleAtod(num, &n) || !std::isfinite(n) || n < 0)
    return absl::InvalidArgumentError(Cat(
        "\"", text, "\": '", num, "' is not a number >= 0 (expected \"N/s\", \"N/min\", \"N/h\")"));
  double per;
  if (unit == "s" || unit == "sec" || unit == "second")
    per = 1;
  else if (unit == "m" || unit == "min" || unit == "minute")
    per = 60;
  else if (unit == "h" || unit == "hour")
    per = 3600;
  else if (unit == "d" || unit == "day")
    per = 86400;
  else
    return absl::InvalidArgumentError(
        Cat("\"", text, "\": unknown unit '", unit, "' (use s, min, h or d)"));
  if (n > 1e7 * per)
    return absl::InvalidArgumentError(Cat("\"", text, "\" is more than 10,000,000/s"));
  r.per_second = n / per;
  return r;
}

std::string_view TlsName(Tls t) {
  switch (t) {
    case Tls::kOff:
      return "off";
    case Tls::kOpportunistic:
      return "opportunistic";
    case Tls::kRequired:
      return "required";
  }
  return "opportunistic";
}

double BurstOf(const Rate& rate) { return std::max(1.0, rate.per_second / 10.0); }

ShapingConfig DefaultsFrom(const config::Config& config) {
  ShapingConfig c;
  const config::DeliveryConfig& d = config.delivery;
  c.defaults.max_connections = std::max(1, d.connections_per_site);
  c.defaults.max_messages_per_connection = std::max(1, d.messages_per_connection);
  c.defaults.max_recipients_per_message = std::max(1, d.max_recipients_per_message);
  c.defaults.max_message_rate = Rate{};
  c.defaults.max_connection_rate = Rate{};
  c.defaults.tls = config.tls.mode == config::TlsMode::kOff        ? Tls::kOff
                   : config.tls.mode == config::TlsMode::kRequired ? Tls::kRequired
                                                                   : Tls::kOpportunistic;
  c.defaults.where =
      config.source_file.empty() ? "[delivery] defaults" : Cat(config.source_file, " [delivery]");
  return c;
}

absl::StatusOr<std::vector<smtp::Rule>> ParseRules(std::string_view text, std::string_view file) {
  absl::StatusOr<toml::table> doc = ParseToml(text, file);
  if (!doc.ok()) return doc.status();
  std::vector<smtp::Rule> rules;
  const toml::node* n = doc->get("rule");
  if (!n) return rules;
  absl::Status st;
  TableReader root(*doc, "", file, &st);
  const toml::array* a = n->as_array();
  if (!a) {
    root.WrongType("rule", *n, "an array of tables ([[rule]])");
    return st;
  }
  for (const toml::node& e : *a) {
    const toml::table* t = e.as_table();
    if (!t)
      return absl::InvalidArgumentError(
          Cat(config::Where(file, e.source()), ": each [[rule]] must be a table"));
    TableReader r(*t, "rule", file, &st);
    ReadRule(r, *t, file, &rules);
    if (!st.ok()) return st;
  }
  return rules;
}

absl::StatusOr<ShapingConfig> ParseShaping(std::string_view text, std::string_view file,
                                           ShapingConfig base) {
  absl::StatusOr<toml::table> doc = ParseToml(text, file);
  if (!doc.ok()) return doc.status();
  ShapingConfig c = std::move(base);
  c.source = std::string(file);
  absl::Status st;
  TableReader root(*doc, "", file, &st);

  if (const toml::table* t = root.Table("default")) {
    TableReader r(*t, "default", file, &st);
    Limits l;
    ReadLimits(r, *t, &l, file);
    r.RejectUnknown();
    if (!st.ok()) return st;
    Overlay(&c.defaults, l);
    c.defaults.where = l.where;
  }
  absl::flat_hash_map<std::string, std::string> member_of;  // domain -> provider
  if (const toml::table* t = root.Table("provider")) {
    for (auto&& [name, node] : *t) {
      const toml::table* pt = node.as_table();
      if (!pt) {
        root.Fail(node.source(), Cat("[provider.", name.str(), "] must be a table"));
        return st;
      }
      Provider p;
      p.name = std::string(name.str());
      TableReader r(*pt, Cat("provider.", p.name), file, &st);
      ReadLimits(r, *pt, &p.limits, file);
      r.StringList("mx_suffixes", &p.mx_suffixes);
      r.StringList("domains", &p.domains);
      r.RejectUnknown();
      if (!st.ok()) return st;
      if (p.mx_suffixes.empty() && p.domains.empty()) {
        r.Fail(pt->source(),
               Cat("[provider.", p.name, "] has no members: give 'mx_suffixes' and/or 'domains'"));
        return st;
      }
      for (std::string& s : p.mx_suffixes) {
        s = LowerAscii(StripWhitespace(s));
        if (s.empty() || s == "." || !ValidDomainName(s.front() == '.' ? s.substr(1) : s)) {
          r.Fail(pt->get("mx_suffixes")->source(),
                 Cat("'provider.", p.name, ".mx_suffixes': \"", s,
                     "\" is not a host name suffix (e.g. \".google.com\")"));
          return st;
        }
      }
      for (std::string& d : p.domains) {
        d = LowerAscii(StripWhitespace(d));
        if (!ValidDomainName(d)) {
          r.Fail(pt->get("domains")->source(),
                 Cat("'provider.", p.name, ".domains': \"", d, "\" is not a domain name"));
          return st;
        }
        auto [it, fresh] = member_of.emplace(d, p.name);
        if (!fresh) {
          r.Fail(pt->get("domains")->source(),
                 Cat("'provider.", p.name, ".domains': ", d, " is already a member of provider.",
                     it->second));
          return st;
        }
      }
      c.providers.push_back(std::move(p));
    }
  }
  if (const toml::table* t = root.Table("domain")) {
    for (auto&& [name, node] : *t) {
      const toml::table* dt = node.as_table();
      std::string d = LowerAscii(name.str());
      if (!dt) {
        root.Fail(node.source(), Cat("[domain.\"", d, "\"] must be a table"));
        return st;
      }
      if (!ValidDomainName(d)) {
        root.Fail(name.source().begin.line ? name.source() : dt->source(),
                  Cat("[domain.\"", name.str(), "\"]: not a domain name"));
        return st;
      }
      TableReader r(*dt, Cat("domain.\"", d, "\""), file, &st);
      Limits l;
      ReadLimits(r, *dt, &l, file);
      r.RejectUnknown();
      if (!st.ok()) return st;
      if (c.domains.count(d)) {
        r.Fail(dt->source(),
               Cat("[domain.\"", d, "\"] appears twice (names are case-insensitive)"));
        return st;
      }
      c.domains[d] = l;
    }
  }
  if (const toml::node* n = root.Get("rule")) {
    (void)n;
    absl::StatusOr<std::vector<smtp::Rule>> rules = ParseRules(text, file);
    if (!rules.ok()) return rules.status();
    c.rules = *std::move(rules);
  }
  root.RejectUnknown();
  if (!st.ok()) return st;
  return c;
}

absl::StatusOr<ShapingConfig> LoadShapingFile(const std::string& path, ShapingConfig base) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(
        Cat("shaping_file: cannot read '", path, "': ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseShaping(ss.str(), path, std::move(base));
}

absl::StatusOr<ShapingConfig> LoadShaping(const config::Config& config) {
  ShapingConfig base = DefaultsFrom(config);
  if (config.shaping_file.empty()) return base;
  return LoadShapingFile(config.shaping_file, std::move(base));
}

std::string_view BuiltinRulesText() { return kBuiltinRules; }

const std::vector<smtp::Rule>& BuiltinRules() {
  static const std::vector<smtp::Rule>* rules = [] {
    absl::StatusOr<std::vector<smtp::Rule>> r = ParseRules(kBuiltinRules, "bounce-rules.toml");
    // The shipped file is tested (ShapingTest.BuiltinRulesParse); a broken
    // build is a bug, not a user error.
    if (!r.ok()) {
      std::fprintf(stderr, "salvo: built-in bounce rules: %s\n",
                   std::string(r.status().message()).c_str());
      std::abort();
    }
    return new std::vector<smtp::Rule>(*std::move(r));
  }();
  return *rules;
}

absl::StatusOr<std::unique_ptr<const smtp::Classifier>> BuildClassifier(
    const std::vector<smtp::Rule>& user_rules) {
  std::vector<smtp::Rule> all = user_rules;
  const std::vector<smtp::Rule>& shipped = BuiltinRules();
  all.insert(all.end(), shipped.begin(), shipped.end());
  return smtp::Classifier::Create(std::move(all));
}

Resolved Resolve(const ShapingConfig& config, std::string_view domain_in,
                 absl::Span<const std::string> mx_hosts) {
  Resolved r;
  const std::string domain = AsciiLower(domain_in);
  const Provider* provider = nullptr;
  for (const Provider& p : config.providers) {
    if (std::find(p.domains.begin(), p.domains.end(), domain) != p.domains.end()) {
      provider = &p;
      r.by_name = true;
      r.why.push_back(
          Cat("provider.", p.name, ": ", domain, " is in its domains (", p.limits.where, ")"));
      break;
    }
  }
  if (!provider) {
    for (const Provider& p : config.providers) {
      for (const std::string& host : mx_hosts) {
        for (const std::string& s : p.mx_suffixes) {
          if (HostEndsWith(host, s)) {
            provider = &p;
            r.why.push_back(Cat("provider.", p.name, ": MX host ", host, " ends with ", s, " (",
                                p.limits.where, ")"));
            break;
          }
        }
        if (provider) break;
      }
      if (provider) break;
    }
  }
  const Limits* dom = nullptr;
  if (auto it = config.domains.find(domain); it != config.domains.end()) {
    dom = &it->second;
    r.by_name = true;
    r.domain = domain;
    r.why.push_back(Cat("domain.\"", domain, "\" (", dom->where, ")"));
  }
  if (!provider && !dom) r.why.push_back(Cat("default (", config.defaults.where, ")"));
  r.key = dom ? Cat("domain.", domain) : provider ? Cat("provider.", provider->name) : "default";
  if (provider) r.provider = provider->name;

  // Per pool: [default], overridden by the provider, then by the domain;
  // where the provider and the domain both set an integer, the smaller wins.
  const Limits& d = config.defaults;
  auto pick = [&](auto member) {
    auto v = d.*member;
    if (provider && (provider->limits.*member)) v = provider->limits.*member;
    if (dom && (dom->*member)) {
      if (provider && (provider->limits.*member))
        v = std::min(*(provider->limits.*member), *(dom->*member));
      else
        v = dom->*member;
    }
    return v.value_or(1);
  };
  r.max_connections = pick(&Limits::max_connections);
  r.max_messages_per_connection = pick(&Limits::max_messages_per_connection);
  r.max_recipients_per_message = pick(&Limits::max_recipients_per_message);
  r.tls = d.tls.value_or(Tls::kOpportunistic);
  if (provider && provider->limits.tls) r.tls = *provider->limits.tls;
  if (dom && dom->tls) r.tls = *dom->tls;
  if (provider && provider->limits.tls && dom && dom->tls)
    r.tls = std::max(*provider->limits.tls, *dom->tls);  // the stricter
  // Rates: the pool's own is the domain's, else the default's unless the
  // provider sets one (then the provider's shared rate governs).
  auto own_rate = [&](std::optional<Rate> Limits::*member) {
    if (dom && (dom->*member)) return *(dom->*member);
    if (provider && (provider->limits.*member)) return Rate{};
    return (d.*member).value_or(Rate{});
  };
  r.message_rate = own_rate(&Limits::max_message_rate);
  r.connection_rate = own_rate(&Limits::max_connection_rate);
  if (provider) {
    r.provider_max_connections = provider->limits.max_connections.value_or(0);
    r.provider_message_rate = provider->limits.max_message_rate.value_or(Rate{});
    r.provider_connection_rate = provider->limits.max_connection_rate.value_or(Rate{});
  }
  return r;
}

}  // namespace salvo::shaping
