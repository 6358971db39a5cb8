#pragma once
// Bounce and deferral classification rules: RE2 patterns over the whole reply
// ("550 5.1.1 The email account ... does not exist"), first match wins, each
// naming a category (engine/smtp/category.h) and, optionally, what shaping
// does about it (back off, suspend a destination for a while).
//
// The rules come from the shipped rules file (deploy/bounce-rules.toml,
// compiled in) after the user's own `[[rule]]` tables (the shaping file, or
// `salvo bounce classify --rules FILE`), so a user's rule overrides a shipped
// one. Parsing lives in engine/shaping (shaping::ParseRules); this is the
// compiled, immutable form the failure module consults
// (engine/smtp/failure_scope: the one place a category is decided).
//
// Thread-safe: immutable after Create. One RE2::Set match per reply.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/smtp/category.h"

namespace salvo::smtp {

// What shaping does when a rule matches.
enum class RuleAction : uint8_t {
  kNone,     // only classify
  kBackoff,  // cut the destination's rate and connections (adaptive backoff)
  kSuspend,  // hold the destination's recipients for `duration`
};
// Which shaping key a rule's action applies to.
enum class RuleScope : uint8_t {
  kDestination,  // the destination's own key: its [domain] table, else its provider, else its site
  kDomain,       // the recipient's domain (its own [domain] key is made on the fly if needed)
  kProvider,     // the destination's provider (the destination when it has none)
  kCampaign,     // the recipient's campaign, everywhere
};
std::string_view RuleActionName(RuleAction a);
std::string_view RuleScopeName(RuleScope s);

struct Rule {
  std::string name;     // the rule's name, or "FILE:LINE" when unnamed
  std::string pattern;  // RE2 over Reply::ToString(); case-insensitive unless "(?-i)"
  Category category = Category::kOther;
  RuleAction action = RuleAction::kNone;
  RuleScope scope = RuleScope::kDestination;
  absl::Duration duration = absl::ZeroDuration();  // kSuspend
  // Whether a hard bounce of this rule puts the address on the suppression
  // list; unset: the category decides (SuppressOnHardBounce).
  std::optional<bool> suppress;
  std::string where;  // "file:line:column" of the rule, for errors and `explain`
};

class Classifier {
 public:
  // Compiles `rules` in order (first match wins). An invalid pattern is an
  // error naming the rule's `where`.
  static absl::StatusOr<std::unique_ptr<const Classifier>> Create(std::vector<Rule> rules);
  ~Classifier();

  // The first rule whose pattern matches `reply_line` ("CODE ENH TEXT"), or
  // nullptr. The returned rule lives as long as the classifier.
  const Rule* Match(std::string_view reply_line) const;
  const std::vector<Rule>& rules() const { return rules_; }

 private:
  struct Compiled;  // the RE2::Set
  Classifier();
  std::vector<Rule> rules_;
  std::unique_ptr<Compiled> set_;
};

// The classifier every Outcome made by failure_scope consults; nullptr (the
// default) leaves the built-in keyword categories alone. Installed by the
// engine and the CLI at start-up and on reload; lock-free to read. Replaced
// classifiers are kept alive (Outcomes hold Rule pointers): reloads are rare.
void InstallClassifier(std::unique_ptr<const Classifier> classifier);
const Classifier* InstalledClassifier();

}  // namespace salvo::smtp
