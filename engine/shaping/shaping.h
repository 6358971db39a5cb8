#pragma once
// Traffic shaping configuration: the shaping file (`shaping_file` in the
// config), its limits per destination and how a destination resolves to them.
//
//   [default]                 every destination unless overridden
//   [provider.NAME]           one set of limits shared by every member: domains
//                             by name (`domains`) or by MX host (`mx_suffixes`)
//   [domain."example.org"]    one destination domain (gets its own site pool)
//   [[rule]]                  classification rules (engine/smtp/classifier.h),
//                             before the shipped ones
//
// Start-up, reload and the CLI only: the data path reads the resolved form
// (shaping::Resolved, engine/shaping/throttle.h), never this.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/config/config.h"
#include "engine/smtp/classifier.h"

namespace salvo::shaping {

// A rate: "N/s", "N/min", "N/h" (N may be fractional); "0" = unlimited.
struct Rate {
  double per_second = 0;
  std::string text = "0";
  bool unlimited() const { return per_second <= 0; }
};
absl::StatusOr<Rate> ParseRate(std::string_view text);

enum class Tls : uint8_t { kOff, kOpportunistic, kRequired };
std::string_view TlsName(Tls t);

// One table's limits; unset keys inherit (see Resolve).
struct Limits {
  std::optional<int> max_connections;
  std::optional<int> max_messages_per_connection;
  std::optional<int> max_recipients_per_message;
  std::optional<Rate> max_message_rate;
  std::optional<Rate> max_connection_rate;
  std::optional<Tls> tls;
  std::string where;  // "file:line" of the table
};

struct Provider {
  std::string name;
  std::vector<std::string> mx_suffixes;  // lower case
  std::vector<std::string> domains;      // lower case
  Limits limits;
};

struct ShapingConfig {
  std::string source;                     // the file, or "" for none
  Limits defaults;                        // every key set
  std::vector<Provider> providers;        // file order: the first match wins
  std::map<std::string, Limits> domains;  // lower-case domain -> limits
  std::vector<smtp::Rule> rules;          // the user's [[rule]] tables, file order
};

// The [delivery] and [tls] settings as the defaults, before any file.
ShapingConfig DefaultsFrom(const config::Config& config);
// Parses a shaping file's text over `base` (DefaultsFrom the config). Errors
// name file:line:column.
absl::StatusOr<ShapingConfig> ParseShaping(std::string_view text, std::string_view file,
                                           ShapingConfig base);
absl::StatusOr<ShapingConfig> LoadShapingFile(const std::string& path, ShapingConfig base);
// The config's shaping_file over its defaults ("" = the defaults alone).
absl::StatusOr<ShapingConfig> LoadShaping(const config::Config& config);

// `[[rule]]` tables of a TOML text (a shaping file or a rules file).
absl::StatusOr<std::vector<smtp::Rule>> ParseRules(std::string_view text, std::string_view file);
// The shipped rules (deploy/bounce-rules.toml, compiled in).
std::string_view BuiltinRulesText();
const std::vector<smtp::Rule>& BuiltinRules();
// The user's rules, then the shipped ones, compiled.
absl::StatusOr<std::unique_ptr<const smtp::Classifier>> BuildClassifier(
    const std::vector<smtp::Rule>& user_rules);

// What applies to one destination.
struct Resolved {
  // The shaping key the destination's own limits belong to: "domain.NAME",
  // "provider.NAME" or "default" (then every site has its own).
  std::string key;
  std::string provider;  // the provider's name, "" if none
  std::string domain;    // set when a [domain] table applies
  // Membership was decided by the domain's name (a [domain] table, or a
  // provider's `domains`): the domain gets a site pool of its own, apart from
  // other domains with the same MX hosts.
  bool by_name = false;
  // Per site pool (single shard).
  int max_connections = 32;
  int max_messages_per_connection = 100;
  int max_recipients_per_message = 100;
  Rate message_rate;     // the pool's own rate ([domain], else [default] when no provider rate)
  Rate connection_rate;  // likewise for new connections
  Tls tls = Tls::kOpportunistic;
  // Shared by every member of the provider, across shards (0/unlimited: none).
  int provider_max_connections = 0;
  Rate provider_message_rate;
  Rate provider_connection_rate;
  // Why, one line per decision, for `salvo shaping show`.
  std::vector<std::string> why;
};

// `domain` (lower case) whose mail goes to `mx_hosts` (host names; may be
// empty when unknown).
Resolved Resolve(const ShapingConfig& config, std::string_view domain,
                 absl::Span<const std::string> mx_hosts);

// The burst a rate allows (GCRA tolerance), in messages: a tenth of a
// second's worth, at least 1. Stated in the README.
double BurstOf(const Rate& rate);

}  // namespace salvo::shaping
