#include "engine/smtp/classifier.h"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "engine/common/strings.h"

namespace salvo::smtp {

std::string_view RuleActionName(RuleAction a) {
  switch (a) {
    case RuleAction::kNone:
      return "none";
    case RuleAction::kBackoff:
      return "backoff";
    case RuleAction::kSuspend:
      return "suspend";
  }
  return "none";
}

std::string_view RuleScopeName(RuleScope s) {
  switch (s) {
    case RuleScope::kDestination:
      return "destination";
    case RuleScope::kDomain:
      return "domain";
    case RuleScope::kProvider:
      return "provider";
    case RuleScope::kCampaign:
      return "campaign";
  }
  return "destination";
}

struct Classifier::Compiled {
  explicit Compiled(const RE2::Options& o) : set(o, RE2::UNANCHORED) {}
  RE2::Set set;
};

Classifier::Classifier() = default;
Classifier::~Classifier() = default;

absl::StatusOr<std::unique_ptr<const Classifier>> Classifier::Create(std::vector<Rule> rules) {
  std::unique_ptr<Classifier> c(new Classifier());
  RE2::Options opts;
  opts.set_case_sensitive(false);
  opts.set_log_errors(false);
  opts.set_max_mem(64 << 20);
  c->set_ = std::make_unique<Compiled>(opts);
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string error;
    // Checked alone first: RE2::Set's errors do not say which pattern.
    RE2 alone(rules[i].pattern, opts);
    if (!alone.ok())
      return absl::InvalidArgumentError(
          Cat(rules[i].where, ": rule '", rules[i].name, "': bad pattern: ", alone.error()));
    if (c->set_->set.Add(rules[i].pattern, &error) != static_cast<int>(i))
      return absl::InvalidArgumentError(
          Cat(rules[i].where, ": rule '", rules[i].name, "': bad pattern: ", error));
  }
  if (!c->set_->set.Compile())
    return absl::ResourceExhaustedError("the classification rules are too large to compile");
  c->rules_ = std::move(rules);
  return std::unique_ptr<const Classifier>(std::move(c));
}

const Rule* Classifier::Match(std::string_view reply_line) const {
  if (rules_.empty()) return nullptr;
  std::vector<int> hits;
  if (!set_->set.Match(reply_line, &hits) || hits.empty()) return nullptr;
  return &rules_[static_cast<size_t>(*std::min_element(hits.begin(), hits.end()))];
}

namespace {
std::atomic<const Classifier*> g_installed{nullptr};
std::mutex g_keep_mu;
std::vector<std::unique_ptr<const Classifier>>* g_keep = nullptr;
}  // namespace

void InstallClassifier(std::unique_ptr<const Classifier> classifier) {
  std::lock_guard<std::mutex> lock(g_keep_mu);
  if (!g_keep) g_keep = new std::vector<std::unique_ptr<const Classifier>>();
  g_installed.store(classifier.get(), std::memory_order_release);
  if (classifier) g_keep->push_back(std::move(classifier));
}

const Classifier* InstalledClassifier() { return g_installed.load(std::memory_order_acquire); }

}  // namespace salvo::smtp
