#include "engine/smtp/category.h"

#include <array>
#include <string>

namespace salvo::smtp {
std::optional<Category> ParseCategory(std::string_view name) {
  if (name.empty()) return std::nullopt;
  std::string n(name);
  for (char& ch : n) {
    if (ch == '_') ch = '-';
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  for (size_t i = 1; i < kCategoryNames.size(); ++i)
    if (kCategoryNames[i] == n) return static_cast<Category>(i);
  return std::nullopt;
}

bool SuppressOnHardBounce(Category c) {
  return c == Category::kBadMailbox || c == Category::kInactiveMailbox || c == Category::kBadDomain;
}

}  // namespace salvo::smtp
