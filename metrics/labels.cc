#include "metrics/labels.h"

#include <algorithm>

namespace salvo::metrics {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

}  // namespace

DomainLabels::DomainLabels(const std::vector<std::string>& domains) {
  names_.emplace_back(kOtherLabel);
  for (const std::string& d : domains) {
    std::string name = Lower(d);
    if (name.empty() || name == kOtherLabel || index_.contains(name)) continue;
    if (names_.size() >= 65535) break;
    index_.emplace(name, static_cast<uint16_t>(names_.size()));
    names_.push_back(std::move(name));
  }
}

DomainSlot DomainLabels::Resolve(std::string_view domain) const {
  // Recipient domains arrive lower-cased from the queue; only copy when not.
  bool plain =
      !domain.empty() && domain.back() != '.' &&
      std::none_of(domain.begin(), domain.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  // Debian's absl::string_view is not std::string_view.
  auto it = plain ? index_.find(absl::string_view(domain.data(), domain.size()))
                  : index_.find(Lower(domain));
  if (it == index_.end()) return DomainSlot{};
  return DomainSlot{it->second};
}

const std::vector<std::string>& DefaultLabelledDomains() {
  // Mailbox providers with most of the world's consumer mailboxes, by region.
  // Operators add their own (B2B lists, regional ISPs) with metrics.domains.
  static const std::vector<std::string> kDomains = {
      // Google, Yahoo, Microsoft, Apple, AOL
      "gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "yahoo.co.uk", "yahoo.fr",
      "yahoo.co.jp", "outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com",
      "msn.com", "icloud.com", "me.com", "mac.com", "aol.com",
      // Europe
      "gmx.de", "gmx.net", "web.de", "t-online.de", "orange.fr", "free.fr", "laposte.net",
      "libero.it", "proton.me", "protonmail.com", "seznam.cz", "wp.pl", "btinternet.com",
      // Russia, Asia, Americas
      "mail.ru", "bk.ru", "yandex.ru", "qq.com", "163.com", "126.com", "naver.com", "comcast.net",
      "att.net", "verizon.net", "uol.com.br"};
  return kDomains;
}

CampaignLabels::CampaignLabels(int max_campaigns)
    : slots_(static_cast<size_t>(std::clamp(max_campaigns, 0, 65534)) + 1),
      generations_(new std::atomic<uint32_t>[slots_.size()]) {
  for (size_t i = 0; i < slots_.size(); ++i) generations_[i].store(0);
  slots_[0].name = std::string(kOtherLabel);
}

CampaignSlot CampaignLabels::Resolve(uint64_t id, std::string_view name,
                                     const std::function<void(uint16_t)>& before_reuse) {
  if (name.empty() || name == kOtherLabel) return CampaignSlot{};
  size_t free_slot = 0, oldest = 0;
  for (size_t i = 1; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (s.name == name) {
      s.newest_id = std::max(s.newest_id, id);
      return CampaignSlot{static_cast<uint16_t>(i), generations_[i].load()};
    }
    if (s.name.empty()) {
      if (free_slot == 0) free_slot = i;
    } else if (oldest == 0 || s.newest_id < slots_[oldest].newest_id) {
      oldest = i;
    }
  }
  size_t chosen = free_slot;
  if (chosen == 0) {
    // Full: the newest campaigns keep their names.
    if (oldest == 0 || slots_[oldest].newest_id >= id) return CampaignSlot{};
    chosen = oldest;
  }
  if (before_reuse) before_reuse(static_cast<uint16_t>(chosen));
  slots_[chosen].name = std::string(name);
  slots_[chosen].newest_id = id;
  // Handles resolved for the previous owner stop matching from here on.
  uint32_t generation = generations_[chosen].load() + 1;
  generations_[chosen].store(generation, std::memory_order_release);
  return CampaignSlot{static_cast<uint16_t>(chosen), generation};
}

CampaignSlot CampaignLabels::Find(std::string_view name) const {
  for (size_t i = 1; i < slots_.size(); ++i)
    if (!slots_[i].name.empty() && slots_[i].name == name)
      return CampaignSlot{static_cast<uint16_t>(i), generations_[i].load()};
  return CampaignSlot{};
}

std::vector<std::string> CampaignLabels::Names() const {
  std::vector<std::string> names;
  names.reserve(slots_.size());
  for (const Slot& s : slots_) names.push_back(s.name);
  return names;
}

}  // namespace salvo::metrics
