#pragma once
// Label tables: how a recipient domain or a campaign becomes a label value
// with a bounded number of values, resolved to a small slot index once (when
// a site or a campaign is set up), never hashed per increment.
//
// The per-shard counters (metrics.h) are arrays indexed by these slots; the
// collector turns slots back into label values at scrape time. Slot 0 is
// always "other".
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace salvo::metrics {

inline constexpr std::string_view kOtherLabel = "other";

// A `domain` label value: index into DomainLabels. 0 = "other".
struct DomainSlot {
  uint16_t index = 0;
};

// A `campaign` label value: index into CampaignLabels plus the generation of
// the slot when it was resolved. When the slot is later given to a newer
// campaign its generation changes, and counts made with this stale handle go
// to "other" instead of to the newer campaign. Index 0 = "other".
struct CampaignSlot {
  uint16_t index = 0;
  uint32_t generation = 0;
};

// The `domain` label: the recipient's domain when it is in the configured list
// (`metrics.domains`), else "other". Immutable after construction: any thread
// may call Resolve/Name without locks.
class DomainLabels {
 public:
  // `domains`: lower-cased and de-duplicated here; empty strings and "other"
  // are ignored. At most 65,534 entries (more are ignored).
  explicit DomainLabels(const std::vector<std::string>& domains);

  // Case-insensitive exact match; a trailing dot is ignored.
  DomainSlot Resolve(std::string_view domain) const;
  std::string_view Name(DomainSlot slot) const { return names_[slot.index]; }
  // Label values, "other" included.
  int size() const { return static_cast<int>(names_.size()); }

 private:
  std::vector<std::string> names_;  // [0] = "other"
  absl::flat_hash_map<std::string, uint16_t> index_;
};

// The big mailbox providers' domains: the default of `metrics.domains`.
const std::vector<std::string>& DefaultLabelledDomains();

// The `campaign` label: the campaign's name for at most `max_campaigns`
// campaigns, the newest ones (by campaign ID); every other campaign is
// "other". Campaigns with the same name share one label value (and slot).
//
// When every slot is taken and a campaign newer than the oldest labelled one
// resolves, the oldest drops out: its slot goes to the newer campaign. The
// dropped campaign's series leave the scrape (its past counts are dropped,
// not folded into "other": folding would show as a burst in "other"'s rate),
// and whatever it still counts afterwards goes to "other".
//
// Threads: Resolve, Find and Names are serialized by the owner (the Registry
// calls them under its lock, so a slot changes hands atomically with its
// counts being set aside); call Resolve once per campaign, when its context
// is built, never per increment. Current() is lock-free, for any thread.
class CampaignLabels {
 public:
  explicit CampaignLabels(int max_campaigns);

  // The slot for campaign `id` named `name` (IDs grow with age: a larger ID is
  // a newer campaign). `before_reuse(slot)` is called before a slot is handed
  // from an older campaign to this one, so the owner can set the old
  // campaign's counts aside.
  CampaignSlot Resolve(uint64_t id, std::string_view name,
                       const std::function<void(uint16_t slot)>& before_reuse = nullptr);
  // The slot `name` has now, without assigning one; "other" if none.
  CampaignSlot Find(std::string_view name) const;

  // True while `slot` still belongs to the campaign it was resolved for.
  bool Current(CampaignSlot slot) const {
    return generations_[slot.index].load(std::memory_order_relaxed) == slot.generation;
  }
  // Label values by slot ("" for a slot never used); [0] = "other".
  std::vector<std::string> Names() const;
  // Slots, "other" included: max_campaigns + 1.
  int size() const { return static_cast<int>(slots_.size()); }

 private:
  struct Slot {
    std::string name;  // "" = free
    uint64_t newest_id = 0;
  };
  std::vector<Slot> slots_;  // [0] = "other"
  std::unique_ptr<std::atomic<uint32_t>[]> generations_;
};

}  // namespace salvo::metrics
