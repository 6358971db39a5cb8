// Campaign loading: streams a CSV recipient list into a new campaign.
//
// Atomicity: the campaign is written under state "loading" (invisible to the
// engine, skipped by LeaseDue), its recipients in chunked WriteBatches, and a
// final synced WriteBatch flips it to "active". A failed or interrupted load
// deletes what it wrote; a crash mid-load leaves a "loading" campaign that the
// next Spool::Open removes. Either way no half campaign is ever visible.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/hash.h"
#include "engine/common/log.h"
#include "engine/common/strings.h"
#include "queue/address.h"
#include "queue/csv.h"
#include "queue/spool_impl.h"

namespace salvo::queue {

namespace {

// Rows per WriteBatch. The schedule keys of a chunk are sorted before they go
// into the batch: they are domain-first, so list order scatters them across
// the memtable, and sorted inserts let the skiplist reuse its search path
// (this halved the load's CPU time).
constexpr size_t kLoadChunk = 50000;
constexpr size_t kMaxTemplateBytes = 20 << 20;

// 128-bit fingerprint of a normalized address for dedupe: 16 bytes per
// recipient instead of the address itself; a collision is ~1e-20 at 10M rows.
struct Fingerprint {
  uint64_t a, b;
  bool operator==(const Fingerprint& o) const { return a == o.a && b == o.b; }
  template <typename H>
  friend H AbslHashValue(H h, const Fingerprint& f) {
    return H::combine(std::move(h), f.a, f.b);
  }
};

Fingerprint Fingerprint128(std::string_view s) {
  return {std::hash<std::string_view>{}(s), Fnv1a64(s)};
}

absl::StatusOr<std::string> ReadTemplate(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)  // the cause too: no such file, permission denied, a symlink loop
    return absl::NotFoundError(Cat(path, ":1: cannot read template file: ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(Cat(path, ":1: error reading template file"));
  std::string text = ss.str();
  if (text.empty()) return absl::InvalidArgumentError(Cat(path, ":1: template is empty"));
  if (text.size() > kMaxTemplateBytes)
    return absl::InvalidArgumentError(Cat(path, ":1: template larger than 20 MiB"));
  return text;
}

// A 64-bit checksum of a file's bytes, 8 at a time (a load's duplicate check
// reads the whole list once more, so it must cost far less than parsing it).
// Compared only within one spool, never across machines.
absl::StatusOr<uint64_t> FileChecksum(const std::string& path, uint64_t h) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return absl::NotFoundError(Cat(path, ": cannot read: ", std::strerror(errno)));
  std::vector<char> buf(1 << 20);
  auto mix = [&h](uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  };
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, buf.data() + i, 8);
      mix(w);
    }
    for (; i < n; ++i) mix(static_cast<unsigned char>(buf[i]));
    mix(n);
  }
  if (std::ferror(f.get())) return absl::DataLossError(Cat(path, ": error reading"));
  return h;
}

// The template, the recipient list and the sender: what makes two loads the
// same mailing whatever they are called.
absl::StatusOr<std::string> ContentChecksum(const CampaignSpec& spec,
                                            std::string_view template_text) {
  absl::StatusOr<uint64_t> h = FileChecksum(spec.recipients_path, Fnv1a64(template_text));
  if (!h.ok()) return h.status();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(*h ^ Fnv1a64(AsciiLower(spec.from))));
  return std::string(hex);
}

}  // namespace

absl::StatusOr<LoadReport> Spool::Impl::Load(const CampaignSpec& spec, const LoadOptions& opts) {
  const absl::Time started = absl::Now();
  // ---- Everything that can be checked before writing anything ----
  if (spec.name.empty()) return absl::InvalidArgumentError("campaign name is empty");
  if (spec.template_path.empty()) return absl::InvalidArgumentError("no template file given");
  if (spec.recipients_path.empty()) return absl::InvalidArgumentError("no recipient list given");
  if (absl::StatusOr<Address> from = ParseAddress(spec.from); !from.ok())
    return absl::InvalidArgumentError(
        Cat("invalid sender address '", spec.from, "': ", from.status().message()));
  if (!spec.dkim_domain.empty()) {
    if (absl::StatusOr<Address> d = ParseAddress(Cat("x@", spec.dkim_domain)); !d.ok())
      return absl::InvalidArgumentError(
          Cat("invalid DKIM domain '", spec.dkim_domain, "': ", d.status().message()));
  }
  if (absl::Status s = spec.retry.Validate(); !s.ok()) return s;
  // Path options are read by the engine when it composes: a missing secret
  // file must fail here, not defer every recipient at send time.
  if (absl::Status s = CheckPathOptions(spec.options); !s.ok()) return s;
  absl::StatusOr<std::string> template_text = ReadTemplate(spec.template_path);
  if (!template_text.ok()) return template_text.status();
  std::string checksum;
  if (opts.refuse_duplicates) {
    absl::StatusOr<std::string> sum = ContentChecksum(spec, *template_text);
    if (!sum.ok()) return sum.status();
    checksum = *sum;
    absl::MutexLock lock(&mu_);
    for (const auto& [cid, e] : campaigns_) {
      const CampaignInfo& other = e.info;
      if (other.state == CampaignState::kCancelled || other.state == CampaignState::kLoading)
        continue;
      const bool same_name = other.name == spec.name;
      if (!same_name && other.checksum != checksum) continue;
      return absl::AlreadyExistsError(
          Cat(same_name ? Cat("a campaign named '", spec.name, "' already exists")
                        : Cat("this campaign has the same template, recipient list and sender as "
                              "campaign '",
                              other.name, "'"),
              " (ID ", cid, ", ", CampaignStateName(other.state),
              e.counts[RecipientState::kQueued] + e.counts[RecipientState::kDeferred] == 0
                  ? ", every recipient has its final outcome"
                  : "",
              "): loading it again would send its recipients a second copy; cancel campaign ", cid,
              " first, or pass --allow-duplicate-name"));
    }
  }

  absl::StatusOr<std::unique_ptr<CsvReader>> reader_or = CsvReader::Open(spec.recipients_path);
  if (!reader_or.ok()) return reader_or.status();
  CsvReader& csv = **reader_or;
  std::vector<std::string> header;
  absl::StatusOr<bool> got = csv.Next(&header);
  if (!got.ok()) return got.status();
  if (!*got)
    return absl::InvalidArgumentError(
        Cat(spec.recipients_path, ":1: empty file: expected a header row with an 'email' column"));
  size_t email_col = header.size();
  {
    absl::flat_hash_set<std::string> seen;
    for (size_t i = 0; i < header.size(); ++i) {
      std::string name(StripWhitespace(header[i]));
      if (name.empty()) return csv.Error(Cat("header column ", i + 1, " has no name"));
      if (!seen.insert(name).second)
        return csv.Error(Cat("header column '", name, "' appears twice"));
      if (AsciiLower(name) == "email") {
        email_col = i;
        name = "email";
      }
      header[i] = name;
    }
  }
  if (email_col == header.size())
    return csv.Error(
        Cat("header has no 'email' column (columns: ", absl::StrJoin(header, ", "), ")"));
  if (opts.validate_template) {
    if (absl::Status s = opts.validate_template(*template_text, spec.template_path, header);
        !s.ok())
      return s;
  }

  // ---- Write under the 'loading' marker ----
  CampaignInfo info;
  {
    absl::MutexLock lock(&mu_);
    info.id = CampaignId{next_campaign_id_++};
  }
  const CampaignId id = info.id;
  info.name = spec.name;
  info.from = spec.from;
  info.dkim_domain = spec.dkim_domain;
  info.egress_pool = spec.egress_pool;
  info.window = spec.window;
  info.template_path = spec.template_path;
  info.recipients_path = spec.recipients_path;
  info.state = CampaignState::kLoading;
  info.created = clock_->Now();
  info.retry = spec.retry;
  info.columns = header;
  info.options = spec.options;
  info.checksum = checksum;
  const uint64_t now_us = keys::TimeToMicros(info.created);

  LoadReport report;
  report.id = id;
  StateCounts counts;
  bool wrote = false;  // a chunk reached the database: a failure must roll back
  auto fail = [&](absl::Status why) -> absl::Status {
    if (!wrote) {
      // Nothing reached the database: give the ID back unless another load
      // took the next one meanwhile, so a refused load leaves no gap.
      absl::MutexLock lock(&mu_);
      if (next_campaign_id_ == Value(id) + 1) next_campaign_id_ = Value(id);
      return why;
    }
    if (absl::Status s = DropCampaignData(id); !s.ok())
      SALVO_LOG(kError, "could not roll back campaign {}: {} (removed at next open)", Value(id),
                Sv(s.message()));
    return why;
  };

  // Most spools have an empty suppression list: skip the per-row lookup then.
  bool any_suppressed;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), suppression_cf_));
    it->SeekToFirst();
    any_suppressed = it->Valid();
  }
  absl::flat_hash_set<Fingerprint> seen;
  // The 'loading' marker and the template go in the first chunk's batch, so
  // nothing at all is written before the first copy has been composed (a
  // refused campaign leaves the spool untouched). The marker precedes every
  // recipient in the WAL, so a crash mid-load still leaves it for Open.
  rocksdb::WriteBatch batch;
  batch.Put(campaigns_cf_, keys::Campaign(id), keys::EncodeCampaign(info));
  batch.Put(templates_cf_, keys::Campaign(id), *template_text);
  bool first_copy_checked = !opts.check_first_copy;
  std::vector<std::string> schedule_keys;
  schedule_keys.reserve(kLoadChunk);
  auto flush_chunk = [&]() -> absl::Status {
    std::sort(schedule_keys.begin(), schedule_keys.end());
    for (const std::string& k : schedule_keys) batch.Put(schedule_cf_, k, rocksdb::Slice());
    wrote = true;
    absl::Status s = FromRocks(db_->Write(HotWrite(), &batch), "loading recipients");
    batch.Clear();
    if (s.ok() && !schedule_keys.empty()) {
      // Index the chunk's domains now that its keys are visible, with each
      // domain's first (smallest) key: a lease that ran meanwhile may have
      // moved a cursor past where they landed (a retry of another campaign
      // that came due during the load). Once visible they stop the cursor
      // (campaign not active), so this one check per chunk keeps it right.
      absl::MutexLock lock(&mu_);
      std::string_view last_domain;
      bool first = true;
      for (const std::string& k : schedule_keys) {
        keys::ScheduleKey sk;
        if (!keys::ParseSchedule(k, &sk)) continue;
        if (!first && sk.domain == last_domain) continue;
        first = false;
        last_domain = sk.domain;
        IndexSchedule(sk.domain, k);
      }
    }
    schedule_keys.clear();
    return s;
  };
  std::vector<std::string> row;
  uint64_t next_rid = 1;
  LoadProgress progress;
  progress.bytes_total = csv.file_size();
  for (;;) {
    got = csv.Next(&row);
    if (!got.ok()) return fail(got.status());
    if (!*got) break;
    ++report.rows;
    if (row.size() != header.size())
      return fail(
          csv.Error(Cat("row has ", row.size(), " fields, the header has ", header.size())));
    absl::StatusOr<Address> a = ParseAddress(row[email_col]);
    if (!a.ok()) {
      ++report.invalid;
      std::string msg = Cat(csv.path(), ":", csv.line(), ": invalid address '",
                            row[email_col].substr(0, 200), "': ", a.status().message());
      if (opts.strict) return fail(absl::InvalidArgumentError(Cat(msg, " (--strict)")));
      if (report.first_errors.size() < opts.max_reported_errors)
        report.first_errors.push_back(std::move(msg));
      continue;
    }
    const std::string normalized = a->Key(opts.case_sensitive_local_parts);
    if (!seen.insert(Fingerprint128(normalized)).second) {
      ++report.duplicates;
      continue;
    }
    // Fleet share: after dedupe, so duplicates count the same on every node.
    if (!opts.node.Takes(normalized)) {
      ++report.other_nodes;
      continue;
    }
    keys::RecipientRecord r;
    r.email = a->Mailbox();  // the domain lower-cased, in A-label form
    r.domain = a->domain;
    r.queued_us = now_us;
    r.next_us = now_us;
    r.values = std::move(row);
    r.values[email_col] = r.email;
    if (!first_copy_checked) {
      first_copy_checked = true;
      if (absl::Status s = opts.check_first_copy(info, *template_text, r.values); !s.ok())
        return fail(absl::InvalidArgumentError(Cat("cannot compose the campaign's first message (",
                                                   csv.path(), ":", csv.line(), ", ", r.email,
                                                   "): ", s.message())));
    }
    const RecipientId rid{next_rid++};
    if (any_suppressed && SuppressedMailbox(r.email)) {
      r.state = RecipientState::kSuppressed;
      r.last_reply = "on the suppression list at load time";
      ++report.suppressed;
    } else {
      r.state = RecipientState::kQueued;
      ++report.accepted;
      schedule_keys.push_back(keys::Schedule(r.domain, r.next_us, id, rid));
    }
    counts[r.state]++;
    batch.Put(recipients_cf_, keys::Recipient(id, rid), keys::EncodeRecord(r));
    row = {};
    if (batch.Count() >= kLoadChunk) {
      if (absl::Status s = flush_chunk(); !s.ok()) return fail(s);
    }
    if ((report.rows & 0xFFFF) == 0) {
      if (opts.interrupted != nullptr && opts.interrupted->load())
        return fail(absl::CancelledError("load interrupted; nothing was kept"));
      if (opts.progress) {
        progress.bytes_read = csv.bytes_read();
        progress.rows = report.rows;
        opts.progress(progress);
      }
    }
  }
  if (opts.interrupted != nullptr && opts.interrupted->load())
    return fail(absl::CancelledError("load interrupted; nothing was kept"));
  if (report.rows == 0)
    return fail(absl::InvalidArgumentError(
        Cat(spec.recipients_path, ":2: no recipient rows after the header")));
  // A node's share of a small list may be empty: that is a valid (finished) campaign.
  if (report.accepted + report.suppressed == 0 && report.other_nodes == 0)
    return fail(absl::InvalidArgumentError(Cat(spec.recipients_path, ": no valid recipient (",
                                               report.invalid, " invalid, ", report.duplicates,
                                               " duplicates)")));
  if (opts.progress) {
    progress.bytes_read = csv.bytes_read();
    progress.rows = report.rows;
    opts.progress(progress);
  }

  if (absl::Status s = flush_chunk(); !s.ok()) return fail(s);
  // ---- Flip: one synced batch makes the campaign visible ----
  info.state = CampaignState::kActive;
  batch.Put(campaigns_cf_, keys::Campaign(id), keys::EncodeCampaign(info));
  PutCounts(&batch, id, counts);
  // A lease between this write and the map insert below skips the campaign
  // (not in the map yet): harmless.
  if (auto s = FromRocks(db_->Write(SyncWrite(), &batch), "finishing the load"); !s.ok())
    return fail(s);
  {
    absl::MutexLock lock(&mu_);
    CampaignEntry e;
    e.columns = std::make_shared<const std::vector<std::string>>(info.columns);
    e.counts = counts;
    e.info = std::move(info);
    campaigns_[Value(id)] = std::move(e);
  }
  // The campaign is durable (synced above). A big load also goes to tables
  // now, so the next start does not replay its log: best effort, the
  // log still holds it all if this fails.
  if (report.accepted >= options_.flush_after_load_rows) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    if (rocksdb::Status s = db_->Flush(fo, handles_); !s.ok())
      SALVO_LOG(kWarning,
                "spool: flushing after the load of '{}' failed ({}); the next start "
                "replays its log",
                spec.name, s.ToString());
  }
  report.seconds = absl::ToDoubleSeconds(absl::Now() - started);
  return report;
}

absl::StatusOr<SuppressionImportReport> Spool::ImportSuppression(const std::string& path,
                                                                 std::string_view reason,
                                                                 bool case_sensitive_local) {
  absl::StatusOr<std::unique_ptr<CsvReader>> reader_or = CsvReader::Open(path);
  if (!reader_or.ok()) return reader_or.status();
  CsvReader& csv = **reader_or;
  SuppressionImportReport report;
  std::vector<std::string> row;
  size_t email_col = 0;
  bool first = true;
  absl::flat_hash_set<std::string> added;  // keys of this import (spellings of one address)
  rocksdb::WriteBatch batch;
  const uint64_t now_us = keys::TimeToMicros(impl_->clock_->Now());
  const std::string value =
      nlohmann::json({{"reason", std::string(reason)}, {"added_us", now_us}}).dump();
  for (;;) {
    absl::StatusOr<bool> got = csv.Next(&row);
    if (!got.ok()) return got.status();
    if (!*got) break;
    if (first) {
      first = false;
      // A header row with an `email` column makes it a CSV; else one address per line.
      bool is_header = false;
      for (size_t i = 0; i < row.size(); ++i) {
        if (AsciiLower(StripWhitespace(row[i])) == "email") {
          email_col = i;
          is_header = true;
        }
      }
      if (is_header) continue;
    }
    if (row.empty() || email_col >= row.size()) continue;
    std::string_view text = StripWhitespace(row[email_col]);
    if (text.empty() || text.front() == '#') continue;
    absl::StatusOr<Address> a = ParseAddress(text);
    if (!a.ok()) {
      ++report.invalid;
      if (report.first_errors.size() < 10)
        report.first_errors.push_back(Cat(path, ":", csv.line(), ": invalid address '",
                                          text.substr(0, 200), "': ", a.status().message()));
      continue;
    }
    const std::string key = a->Key(case_sensitive_local);
    if (added.contains(key) || impl_->Suppressed(key)) {
      ++report.already;
      continue;
    }
    impl_->MaySuppress();
    batch.Put(impl_->suppression_cf_, key, value);
    added.insert(key);
    ++report.added;
    if (batch.Count() >= kLoadChunk) {
      if (auto s = FromRocks(impl_->db_->Write(impl_->HotWrite(), &batch), "importing"); !s.ok())
        return s;
      batch.Clear();
    }
  }
  if (auto s = FromRocks(impl_->db_->Write(impl_->SyncWrite(), &batch), "importing"); !s.ok())
    return s;
  return report;
}

}  // namespace salvo::queue
