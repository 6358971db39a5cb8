// Strict TOML configuration loading. toml++ gives every key and value a source
// region, so each error names file:line:column. Parsing runs once at start-up,
// off the data path, so toml++'s exceptions are caught here and turned into
// absl::Status.
#include "engine/config/config.h"

#include "engine/common/duration.h"
#include "engine/common/host_port.h"
#include "engine/config/toml_reader.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "fmt/format.h"

namespace salvo::config {
namespace {

std::string SourceOf(std::string_view file, const toml::node& n) {
  return Cat(file, ":", n.source().begin.line);
}

void CheckHostList(TableReader& r, const toml::node& where, std::string_view what,
                   const std::vector<std::string>& hosts) {
  if (hosts.empty()) r.Fail(where.source(), Cat(what, ": needs at least one host"));
  for (const std::string& h : hosts) {
    std::string host;
    int port;
    absl::Status s = SplitHostPort(h, 25, &host, &port);
    if (!s.ok()) return r.Fail(where.source(), Cat(what, ": ", std::string(s.message())));
  }
}

// "addr:port" with a port (0 allowed: any free port).
absl::Status CheckListen(std::string_view text) {
  std::string host;
  int port;
  if (absl::Status s = SplitHostPort(text, -1, &host, &port); !s.ok()) return s;
  if (port < 0)
    return absl::InvalidArgumentError(Cat("expected \"addr:port\", got \"", text, "\""));
  return absl::OkStatus();
}

// "i/N" or "auto/N", 0 <= i < N <= 4096 (queue::ParseNodeShare reads it).
absl::Status CheckNode(std::string_view text) {
  const size_t slash = text.find('/');
  int index = 0, count = 0;
  const bool ok = slash != std::string_view::npos &&
                  absl::SimpleAtoi(std::string(text.substr(slash + 1)), &count) && count >= 1 &&
                  count <= 4096 &&
                  (text.substr(0, slash) == "auto" ||
                   (absl::SimpleAtoi(std::string(text.substr(0, slash)), &index) && index >= 0 &&
                    index < count));
  if (!ok)
    return absl::InvalidArgumentError(Cat(
        "\"", text, "\" is not a node share: expected \"i/N\" (0 <= i < N <= 4096) or \"auto/N\""));
  return absl::OkStatus();
}

}  // namespace

absl::Status SplitHostPort(std::string_view text, int default_port, std::string* host, int* port) {
  absl::StatusOr<HostPort> hp = ParseHostPort(text, {.default_port = default_port});
  if (!hp.ok()) return hp.status();
  *host = std::move(hp->host);
  *port = hp->port;
  return absl::OkStatus();
}

int Config::EffectiveShards() const {
  if (shards > 0) return shards;
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

std::string Config::AdminSocketPath() const {
  if (!queue.admin_socket.empty()) return queue.admin_socket;
  return (std::filesystem::path(data_dir) / "admin.sock").string();
}

std::string_view TlsModeName(TlsMode mode) {
  switch (mode) {
    case TlsMode::kOff:
      return "off";
    case TlsMode::kOpportunistic:
      return "opportunistic";
    case TlsMode::kRequired:
      return "required";
  }
  return "?";
}

std::string_view DkimKeyTypeName(DkimKeyType type) {
  return type == DkimKeyType::kRsa ? "rsa" : "ed25519";
}

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  toml::table doc;
  try {
    doc = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(Cat(Where(source_name, e.source()), ": ", e.description()));
  }
  std::filesystem::path base_dir = std::filesystem::path(source_name).parent_path();
  auto resolve = [&](std::string* p) {
    if (!p->empty() && std::filesystem::path(*p).is_relative() && !base_dir.empty())
      *p = (base_dir / *p).lexically_normal().string();
  };

  Config cfg;
  cfg.source_file = std::string(source_name);
  absl::Status status;
  TableReader root(doc, "", source_name, &status);

  root.String("data_dir", &cfg.data_dir);
  root.Int("shards", &cfg.shards, 0, 256);
  root.Bool("pin_threads", &cfg.pin_threads);
  if (const toml::node* n = root.Get("log_level")) {
    std::string level = n->value_or<std::string>("");
    if (!n->is_string())
      root.WrongType("log_level", *n, "a string");
    else if (level != "debug" && level != "info" && level != "warning" && level != "error" &&
             level != "off")
      root.Fail(n->source(),
                Cat("'log_level' = \"", level, "\": expected debug|info|warning|error|off"));
    else
      cfg.log_level = level;
  }
  root.String("shaping_file", &cfg.shaping_file);

  if (const toml::table* t = root.Table("dns")) {
    TableReader r(*t, "dns", source_name, &status);
    r.StringList("servers", &cfg.dns.servers);
    r.Duration("timeout", &cfg.dns.timeout, 0.001);
    r.Int("attempts", &cfg.dns.attempts, 1, 10);
    r.Bool("cache", &cfg.dns.cache);
    r.Duration("min_ttl", &cfg.dns.min_ttl);
    r.Duration("max_ttl", &cfg.dns.max_ttl);
    r.Duration("negative_ttl", &cfg.dns.negative_ttl);
    r.RejectUnknown();
    if (status.ok()) {
      for (const std::string& s : cfg.dns.servers) {
        std::string host;
        int port;
        absl::Status hs = SplitHostPort(s, 53, &host, &port);
        if (!hs.ok())
          r.Fail(t->get("servers")->source(), Cat("[dns] servers: ", std::string(hs.message())));
      }
    }
  }

  // Routes: [[route]] tables and/or a [routes] table of domain = host(s).
  if (const toml::node* n = root.Get("route")) {
    const toml::array* arr = n->as_array();
    if (!arr || !arr->is_array_of_tables()) {
      root.WrongType("route", *n, "an array of tables ([[route]])");
    } else {
      for (const toml::node& e : *arr) {
        if (!status.ok()) break;
        TableReader r(*e.as_table(), "route", source_name, &status);
        RouteConfig route;
        route.source = SourceOf(source_name, e);
        r.String("domain", &route.domain);
        r.StringList("hosts", &route.hosts);
        r.String("auth_user", &route.auth_user);
        r.String("auth_password_file", &route.auth_password_file);
        r.String("auth_password_env", &route.auth_password_env);
        r.String("tls", &route.tls);
        r.Bool("spread", &route.spread);
        r.RejectUnknown();
        resolve(&route.auth_password_file);
        if (status.ok() && !route.tls.empty() && route.tls != "off" &&
            route.tls != "opportunistic" && route.tls != "required")
          r.Fail(e.source(), Cat("route for '", route.domain, "': tls = \"", route.tls,
                                 "\": expected \"off\", \"opportunistic\" or \"required\""));
        if (status.ok() && !route.auth_user.empty() &&
            route.auth_password_file.empty() == route.auth_password_env.empty())
          r.Fail(e.source(), Cat("route for '", route.domain,
                                 "': auth_user needs exactly one of auth_password_file, "
                                 "auth_password_env"));
        if (status.ok() && route.auth_user.empty() &&
            !(route.auth_password_file.empty() && route.auth_password_env.empty()))
          r.Fail(e.source(), Cat("route for '", route.domain, "': a password without auth_user"));
        if (status.ok() && route.domain.empty())
          r.Fail(e.source(), "[[route]] needs domain = \"example.com\" (or \"*\")");
        if (status.ok()) CheckHostList(r, e, Cat("route for '", route.domain, "'"), route.hosts);
        cfg.routes.push_back(std::move(route));
      }
    }
  }
  // Egress sources and pools: [[egress.source]] and [[egress.pool]].
  if (const toml::table* eg = root.Table("egress")) {
    TableReader er(*eg, "egress", source_name, &status);
    auto tables = [&](std::string_view key, auto&& each) {
      const toml::node* n = er.Get(key);
      if (!n || !status.ok()) return;
      const toml::array* arr = n->as_array();
      if (!arr || !arr->is_array_of_tables())
        return er.WrongType(key, *n, Cat("an array of tables ([[egress.", key, "]])"));
      for (const toml::node& e : *arr) {
        if (!status.ok()) return;
        TableReader r(*e.as_table(), Cat("egress.", key), source_name, &status);
        each(r, e);
        r.RejectUnknown();
      }
    };
    absl::flat_hash_set<std::string> names;
    tables("source", [&](TableReader& r, const toml::node& e) {
      EgressSourceConfig s;
      s.source = SourceOf(source_name, e);
      r.String("name", &s.name);
      r.String("address", &s.address);
      r.String("ehlo", &s.ehlo);
      r.String("warmup_start", &s.warmup_start);
      std::vector<std::string> steps;
      r.StringList("warmup", &steps);
      if (!status.ok()) return;
      for (const std::string& step : steps) {
        const size_t colon = step.find(':');
        int day = 0;
        uint64_t limit = 0;
        if (colon == std::string::npos || !absl::SimpleAtoi(step.substr(0, colon), &day) ||
            !absl::SimpleAtoi(step.substr(colon + 1), &limit) || day < 1 ||
            (!s.warmup.empty() && day <= s.warmup.back().first))
          return r.Fail(e.source(), Cat("egress source '", s.name, "': warmup step \"", step,
                                        "\" is not \"DAY:LIMIT\" with days from 1, ascending "
                                        "(e.g. [\"1:200\", \"4:1000\", \"8:5000\"])"));
        s.warmup.emplace_back(day, limit);
      }
      if (!s.warmup.empty() && s.warmup_start.empty())
        return r.Fail(e.source(), Cat("egress source '", s.name,
                                      "': warmup needs warmup_start = \"YYYY-MM-DD\""));
      if (!s.warmup_start.empty()) {
        absl::Time t;
        std::string err;
        if (!absl::ParseTime("%Y-%m-%d", s.warmup_start, &t, &err))
          return r.Fail(e.source(), Cat("egress source '", s.name, "': warmup_start = \"",
                                        s.warmup_start, "\" is not a date YYYY-MM-DD"));
      }
      if (!status.ok()) return;
      in6_addr a6;
      in_addr a4;
      if (s.name.empty()) return r.Fail(e.source(), "[[egress.source]] needs name = \"...\"");
      if (!names.insert(s.name).second)
        return r.Fail(e.source(), Cat("[[egress.source]] '", s.name, "' is defined twice"));
      if (inet_pton(AF_INET, s.address.c_str(), &a4) != 1 &&
          inet_pton(AF_INET6, s.address.c_str(), &a6) != 1)
        return r.Fail(e.source(), Cat("egress source '", s.name, "': address = \"", s.address,
                                      "\" is not an IPv4 or IPv6 address"));
      cfg.egress_sources.push_back(std::move(s));
    });
    absl::flat_hash_set<std::string> pools;
    tables("pool", [&](TableReader& r, const toml::node& e) {
      EgressPoolConfig p;
      p.source = SourceOf(source_name, e);
      r.String("name", &p.name);
      r.StringList("sources", &p.sources);
      if (!status.ok()) return;
      if (p.name.empty()) return r.Fail(e.source(), "[[egress.pool]] needs name = \"...\"");
      if (!pools.insert(p.name).second)
        return r.Fail(e.source(), Cat("[[egress.pool]] '", p.name, "' is defined twice"));
      if (p.sources.empty())
        return r.Fail(e.source(), Cat("egress pool '", p.name, "' has no sources"));
      for (const std::string& src : p.sources)
        if (!names.contains(src))
          return r.Fail(e.source(),
                        Cat("egress pool '", p.name, "': no [[egress.source]] named '", src, "'"));
      cfg.egress_pools.push_back(std::move(p));
    });
    er.RejectUnknown();
  }
  if (const toml::table* t = root.Table("routes")) {
    for (auto&& [k, v] : *t) {
      if (!status.ok()) break;
      TableReader r(*t, "routes", source_name, &status);
      RouteConfig route;
      route.domain = std::string(k.str());
      route.source = SourceOf(source_name, v);
      r.StringList(k.str(), &route.hosts);
      if (status.ok()) CheckHostList(r, v, Cat("route for '", route.domain, "'"), route.hosts);
      cfg.routes.push_back(std::move(route));
    }
  }
  if (status.ok()) {
    absl::flat_hash_set<std::string> seen;
    for (RouteConfig& r : cfg.routes) {
      for (char& c : r.domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!seen.insert(r.domain).second) {
        status = absl::InvalidArgumentError(
            Cat(r.source, ": route for '", r.domain, "' is declared twice"));
        break;
      }
    }
  }

  if (const toml::table* t = root.Table("dkim")) {
    TableReader r(*t, "dkim", source_name, &status);
    if (const toml::node* n = r.Get("keys")) {
      const toml::array* arr = n->as_array();
      if (!arr || !arr->is_array_of_tables()) {
        r.WrongType("keys", *n, "an array of tables ([[dkim.keys]])");
      } else {
        for (const toml::node& e : *arr) {
          if (!status.ok()) break;
          TableReader kr(*e.as_table(), "dkim.keys", source_name, &status);
          DkimKeyConfig key;
          key.source = SourceOf(source_name, e);
          std::string type = "rsa";
          kr.String("domain", &key.domain);
          kr.String("selector", &key.selector);
          kr.String("key_file", &key.key_file);
          kr.String("type", &type);
          kr.RejectUnknown();
          if (!status.ok()) break;
          if (type == "rsa" || type == "rsa-sha256")
            key.type = DkimKeyType::kRsa;
          else if (type == "ed25519" || type == "ed25519-sha256")
            key.type = DkimKeyType::kEd25519;
          else
            kr.Fail(e.source(),
                    Cat("[[dkim.keys]] type = \"", type, "\": expected \"rsa\" or \"ed25519\""));
          if (key.domain.empty() || key.selector.empty() || key.key_file.empty())
            kr.Fail(e.source(), "[[dkim.keys]] needs domain, selector and key_file");
          resolve(&key.key_file);
          cfg.dkim_keys.push_back(std::move(key));
        }
      }
    }
    r.RejectUnknown();
  }

  if (const toml::table* t = root.Table("delivery")) {
    TableReader r(*t, "delivery", source_name, &status);
    DeliveryConfig& d = cfg.delivery;
    r.Int("connections_per_site", &d.connections_per_site, 1, 100000);
    r.Int("messages_per_connection", &d.messages_per_connection, 1, 1000000);
    r.Int("max_recipients_per_message", &d.max_recipients_per_message, 1, 10000);
    r.Duration("idle_timeout", &d.idle_timeout);
    r.Int("in_flight_limit", &d.in_flight_limit, 1, 10000000);
    r.Int("max_connections", &d.max_connections, 1, 10000000);
    r.Bytes("max_composed_bytes", &d.max_composed_bytes);
    if (status.ok() && d.max_composed_bytes == 0)
      r.Fail(t->get("max_composed_bytes")->source(),
             "[delivery] max_composed_bytes must be > 0 (bytes of copies composed ahead)");
    r.Duration("shutdown_deadline", &d.shutdown_deadline);
    r.String("helo_name", &d.helo_name);
    r.Duration("site_retry_delay", &d.site_retry_delay);
    if (const toml::table* tt = r.Table("timeouts")) {
      TableReader tr(*tt, "delivery.timeouts", source_name, &status);
      TimeoutConfig& to = d.timeouts;
      tr.Duration("connect", &to.connect, 0.001);
      tr.Duration("greeting", &to.greeting, 0.001);
      tr.Duration("ehlo", &to.ehlo, 0.001);
      tr.Duration("starttls", &to.starttls, 0.001);
      tr.Duration("mail", &to.mail, 0.001);
      tr.Duration("rcpt", &to.rcpt, 0.001);
      tr.Duration("data", &to.data, 0.001);
      tr.Duration("data_block", &to.data_block, 0.001);
      tr.Duration("data_end", &to.data_end, 0.001);
      tr.Duration("quit", &to.quit, 0.001);
      tr.RejectUnknown();
    }
    r.RejectUnknown();
  }

  if (const toml::table* t = root.Table("tls")) {
    TableReader r(*t, "tls", source_name, &status);
    if (const toml::node* n = r.Get("mode")) {
      std::string mode = n->value_or<std::string>("");
      if (!n->is_string())
        r.WrongType("mode", *n, "a string");
      else if (mode == "off")
        cfg.tls.mode = TlsMode::kOff;
      else if (mode == "opportunistic")
        cfg.tls.mode = TlsMode::kOpportunistic;
      else if (mode == "required")
        cfg.tls.mode = TlsMode::kRequired;
      else
        r.Fail(n->source(),
               Cat("[tls] mode = \"", mode, "\": expected off|opportunistic|required"));
    }
    r.Bool("verify", &cfg.tls.verify);
    r.String("ca_file", &cfg.tls.ca_file);
    r.RejectUnknown();
    resolve(&cfg.tls.ca_file);
  }

  if (const toml::table* t = root.Table("metrics")) {
    TableReader r(*t, "metrics", source_name, &status);
    r.String("listen", &cfg.metrics.listen);
    cfg.metrics.listen_set = t->contains("listen");
    if (t->contains("domains")) {
      cfg.metrics.domains.emplace();
      r.StringList("domains", &*cfg.metrics.domains);
    }
    r.Int("max_campaigns", &cfg.metrics.max_campaigns, 0, 100);
    r.RejectUnknown();
    if (status.ok() && !cfg.metrics.listen.empty()) {
      std::string host;
      int port;
      absl::Status s = SplitHostPort(cfg.metrics.listen, 0, &host, &port);
      if (!s.ok() || port == 0)
        r.Fail(t->get("listen")->source(),
               Cat("[metrics] listen: expected \"addr:port\", got \"", cfg.metrics.listen, "\""));
    }
    if (status.ok() && cfg.metrics.domains) {
      const toml::node& where = *t->get("domains");
      for (std::string& d : *cfg.metrics.domains) {
        for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        bool ok = !d.empty() && d.size() <= 253 && d != "other";
        for (char c : d)
          ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-');
        if (!ok) {
          r.Fail(where.source(),
                 Cat("[metrics] domains: \"", d, "\" is not a domain name (ASCII, IDNs as xn--)"));
          break;
        }
      }
      // Each domain x campaign label pair has its own counters on every shard
      // (about 460 bytes): keep that under ~10 MB per shard.
      const size_t pairs = (cfg.metrics.domains->size() + 1) * (cfg.metrics.max_campaigns + 1);
      if (status.ok() && (cfg.metrics.domains->size() > 1000 || pairs > 20000))
        r.Fail(where.source(), Cat("[metrics] domains: ", cfg.metrics.domains->size(),
                                   " domains with max_campaigns = ", cfg.metrics.max_campaigns,
                                   ": at most 1000 domains and (domains + 1) x (max_campaigns + 1) "
                                   "<= 20000 label pairs"));
    }
  }

  if (const toml::table* t = root.Table("delivery_log")) {
    TableReader r(*t, "delivery_log", source_name, &status);
    r.String("path", &cfg.delivery_log.path);
    r.Bytes("rotate_bytes", &cfg.delivery_log.rotate_bytes);
    r.Duration("rotate_interval", &cfg.delivery_log.rotate_interval);
    r.RejectUnknown();
    resolve(&cfg.delivery_log.path);
  }

  if (const toml::table* t = root.Table("verp")) {
    TableReader r(*t, "verp", source_name, &status);
    r.String("domain", &cfg.verp.domain);
    r.String("prefix", &cfg.verp.prefix);
    r.String("secret_file", &cfg.verp.secret_file);
    r.RejectUnknown();
    resolve(&cfg.verp.secret_file);
    if (status.ok()) {
      // Syntax here; the secret file's content is read (and checked) by
      // `salvo run` at start, like the DKIM keys.
      const std::string& d = cfg.verp.domain;
      bool ok = d.size() <= 253 && d.find('.') != std::string::npos && d.front() != '.' &&
                d.back() != '.' && d.find("..") == std::string::npos;
      for (char c : d)
        ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-');
      if (!d.empty() && !ok)
        r.Fail(t->get("domain")->source(),
               Cat("[verp] domain: \"", d, "\" is not a domain name (ASCII, IDNs as xn--)"));
      const std::string& p = cfg.verp.prefix;
      bool prefix_ok = !p.empty() && p.size() <= 32 && p.find('+') == std::string::npos &&
                       p.front() != '.' && p.back() != '.';
      for (char c : p)
        prefix_ok = prefix_ok && (std::isalnum(static_cast<unsigned char>(c)) ||
                                  std::strchr(".!#$%&'*/=?^_`{|}~-", c) != nullptr);
      if (status.ok() && !prefix_ok)
        r.Fail(t->contains("prefix") ? t->get("prefix")->source() : t->source(),
               Cat("[verp] prefix: \"", p,
                   "\" is not a VERP prefix (1-32 characters of a dot-atom, no '+')"));
    }
  }

  if (const toml::table* t = root.Table("queue")) {
    TableReader r(*t, "queue", source_name, &status);
    r.Int("lease_batch", &cfg.queue.lease_batch, 1, 100000);
    r.Duration("poll_interval", &cfg.queue.poll_interval, 0.001);
    r.String("admin_socket", &cfg.queue.admin_socket);
    r.Bool("sync_writes", &cfg.queue.sync_writes);
    r.Bool("history_for_first_deliveries", &cfg.queue.history_for_first_deliveries);
    r.Bool("durable_before_next", &cfg.queue.durable_before_next);
    r.String("rescue_dir", &cfg.queue.rescue_dir);
    r.Bytes("min_free_bytes", &cfg.queue.min_free_bytes);
    r.String("admin_listen", &cfg.queue.admin_listen);
    r.String("admin_token_file", &cfg.queue.admin_token_file);
    r.RejectUnknown();
    if (status.ok() && !cfg.queue.admin_listen.empty()) {
      if (absl::Status s = CheckListen(cfg.queue.admin_listen); !s.ok())
        r.Fail(t->get("admin_listen")->source(),
               Cat("[queue] admin_listen: ", std::string(s.message())));
    }
  }

  if (const toml::table* t = root.Table("inbound")) {
    TableReader r(*t, "inbound", source_name, &status);
    r.String("listen", &cfg.inbound.listen);
    r.StringList("domains", &cfg.inbound.domains);
    r.String("hostname", &cfg.inbound.hostname);
    r.Bytes("max_message_size", &cfg.inbound.max_message_size);
    r.Int("max_line", &cfg.inbound.max_line, 512, 1 << 20);
    r.Int("max_recipients", &cfg.inbound.max_recipients, 1, 100000);
    r.Int("max_connections", &cfg.inbound.max_connections, 1, 1000000);
    r.Bytes("max_buffered_bytes", &cfg.inbound.max_buffered_bytes);
    if (status.ok() && cfg.inbound.max_buffered_bytes < cfg.inbound.max_message_size)
      r.Fail(t->get("max_buffered_bytes") ? t->get("max_buffered_bytes")->source() : t->source(),
             Cat("[inbound] max_buffered_bytes (", cfg.inbound.max_buffered_bytes,
                 ") must be at least max_message_size (", cfg.inbound.max_message_size,
                 "): each DATA reserves max_message_size"));
    r.Duration("idle_timeout", &cfg.inbound.idle_timeout, 1.0);
    r.Bool("tls", &cfg.inbound.tls);
    r.String("tls_cert", &cfg.inbound.tls_cert);
    r.String("tls_key", &cfg.inbound.tls_key);
    r.RejectUnknown();
    resolve(&cfg.inbound.tls_cert);
    resolve(&cfg.inbound.tls_key);
    if (status.ok() && !cfg.inbound.listen.empty()) {
      if (absl::Status s = CheckListen(cfg.inbound.listen); !s.ok())
        r.Fail(t->get("listen")->source(), Cat("[inbound] listen: ", std::string(s.message())));
    }
    if (status.ok() && !cfg.inbound.listen.empty() && cfg.inbound.domains.empty())
      r.Fail(t->source(),
             "[inbound] domains: needed with listen (the bounce, feedback and unsubscribe "
             "domains to receive for; anything else is refused as relaying)");
    for (std::string& d : cfg.inbound.domains) {
      for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      bool ok = !d.empty() && d.size() <= 253;
      for (char c : d)
        ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-');
      if (status.ok() && !ok)
        r.Fail(t->get("domains")->source(),
               Cat("[inbound] domains: \"", d, "\" is not a domain name (ASCII, IDNs as xn--)"));
    }
    if (status.ok() && cfg.inbound.tls_cert.empty() != cfg.inbound.tls_key.empty())
      r.Fail(t->source(), "[inbound] tls_cert and tls_key go together: give both or neither");
    if (!cfg.inbound.tls_cert.empty()) cfg.inbound.tls = true;
  }

  if (const toml::table* t = root.Table("unsubscribe")) {
    TableReader r(*t, "unsubscribe", source_name, &status);
    r.String("listen", &cfg.unsubscribe.listen);
    r.RejectUnknown();
    if (status.ok() && !cfg.unsubscribe.listen.empty()) {
      if (absl::Status s = CheckListen(cfg.unsubscribe.listen); !s.ok())
        r.Fail(t->get("listen")->source(), Cat("[unsubscribe] listen: ", std::string(s.message())));
    }
  }

  if (const toml::table* t = root.Table("fleet")) {
    TableReader r(*t, "fleet", source_name, &status);
    r.String("node", &cfg.fleet.node);
    r.String("redis", &cfg.fleet.redis);
    r.String("node_id", &cfg.fleet.node_id);
    r.Int("size", &cfg.fleet.size, 0, 4096);
    r.RejectUnknown();
    if (status.ok() && !cfg.fleet.node.empty()) {
      if (absl::Status s = CheckNode(cfg.fleet.node); !s.ok())
        r.Fail(t->get("node")->source(), Cat("[fleet] node: ", std::string(s.message())));
    }
    if (status.ok() && !cfg.fleet.redis.empty()) {
      if (absl::Status s = CheckListen(cfg.fleet.redis); !s.ok())
        r.Fail(t->get("redis")->source(), Cat("[fleet] redis: ", std::string(s.message())));
    }
  }

  root.RejectUnknown();
  if (!status.ok()) return status;
  if (cfg.data_dir.empty())
    return absl::InvalidArgumentError(Cat(source_name, ": data_dir must not be empty"));
  resolve(&cfg.data_dir);
  resolve(&cfg.shaping_file);
  resolve(&cfg.queue.admin_socket);
  resolve(&cfg.queue.admin_token_file);
  return cfg;
}

int FleetConfig::FleetSize() const {
  if (size > 0) return size;
  const size_t slash = node.find('/');
  int n = 1;
  if (slash != std::string::npos && absl::SimpleAtoi(node.substr(slash + 1), &n) && n >= 1)
    return n;
  return 1;
}

absl::Status ApplyEnvironment(Config* cfg, const std::function<const char*(const char*)>& get_env) {
  auto get = [&](const char* name) -> const char* {
    return get_env ? get_env(name) : std::getenv(name);
  };
  for (const EnvOverride& e : kEnvOverrides) {
    const char* raw = get(e.variable);
    if (raw == nullptr) continue;
    const std::string v = raw;
    const std::string key = e.key;
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(
          Cat("environment ", e.variable, "=", v, ": ", why, " (sets ", key, ")"));
    };
    if (key == "data_dir") {
      if (v.empty()) return bad("must not be empty");
      cfg->data_dir = v;
    } else if (key == "shards") {
      int n;
      if (!absl::SimpleAtoi(v, &n) || n < 0 || n > 256) return bad("expected an integer 0..256");
      cfg->shards = n;
    } else if (key == "log_level") {
      if (v != "debug" && v != "info" && v != "warning" && v != "error" && v != "off")
        return bad("expected debug|info|warning|error|off");
      cfg->log_level = v;
    } else if (key == "fleet.node") {
      if (!v.empty())
        if (absl::Status s = CheckNode(v); !s.ok()) return bad(std::string(s.message()));
      cfg->fleet.node = v;
    } else if (key == "fleet.redis") {
      if (!v.empty())
        if (absl::Status s = CheckListen(v); !s.ok()) return bad(std::string(s.message()));
      cfg->fleet.redis = v;
    } else if (key == "delivery.helo_name") {
      cfg->delivery.helo_name = v;
    } else if (key == "metrics.listen") {
      if (!v.empty())
        if (absl::Status s = CheckListen(v); !s.ok()) return bad(std::string(s.message()));
      cfg->metrics.listen = v;
      cfg->metrics.listen_set = true;
    } else if (key == "queue.admin_listen") {
      if (!v.empty())
        if (absl::Status s = CheckListen(v); !s.ok()) return bad(std::string(s.message()));
      cfg->queue.admin_listen = v;
    } else if (key == "queue.admin_token_file") {
      cfg->queue.admin_token_file = v;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        Cat(path, ": cannot read configuration: ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace salvo::config
