#include "engine/smtp/category.h"

#include <array>
#include <string>

namespace salvo::smtp {
namespace {

constexpr std::array<std::string_view, kCategoryCount> kNames = {
    "",
    "bad-mailbox",
    "inactive-mailbox",
    "quota-issues",
    "bad-domain",
    "no-answer-from-host",
    "bad-connection",
    "routing-errors",
    "spam-related",
    "policy-related",
    "content-related",
    "virus-related",
    "relaying-issues",
    "protocol-errors",
    "invalid-sender",
    "message-expired",
    "rate-limited",
    "other",
};

}  // namespace

std::string_view CategoryName(Category c) {
  auto i = static_cast<size_t>(c);
  return i < kNames.size() ? kNames[i] : "other";
}

std::optional<Category> ParseCategory(std::string_view name) {
  if (name.empty()) return std::nullopt;
  std::string n(name);
  for (char& ch : n) {
    if (ch == '_') ch = '-';
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  for (size_t i = 1; i < kNames.size(); ++i)
    if (kNames[i] == n) return static_cast<Category>(i);
  return std::nullopt;
}

bool SuppressOnHardBounce(Category c) {
  return c == Category::kBadMailbox || c == Category::kInactiveMailbox || c == Category::kBadDomain;
}

}  // namespace salvo::smtp
