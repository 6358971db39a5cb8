// Spool: messages received by the inbound listener, kept until processed.
//
//   default CF  "inbound/" u64 id  ->  u32 len + mail_from, u32 count, (u32 len + rcpt)*,
//                                      u32 len + client, u64 received_us, raw (the rest)
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "queue/keys.h"
#include "queue/spool.h"
#include "queue/spool_impl.h"

namespace salvo::queue {
namespace {

constexpr std::string_view kInboundPrefix = "inbound/";

std::string InboundKey(uint64_t id) {
  std::string k(kInboundPrefix);
  keys::PutU64(&k, id);
  return k;
}

void PutString(std::string* out, std::string_view s) {
  keys::PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

bool GetString(std::string_view* in, std::string* out) {
  if (in->size() < 4) return false;
  uint32_t n = keys::GetU32(*in);
  if (in->size() - 4 < n) return false;
  out->assign(in->substr(4, n));
  in->remove_prefix(4 + n);
  return true;
}

std::string EncodeInbound(const InboundMessage& m) {
  std::string v;
  v.reserve(m.raw.size() + 128);
  PutString(&v, m.mail_from);
  keys::PutU32(&v, static_cast<uint32_t>(m.recipients.size()));
  for (const std::string& r : m.recipients) PutString(&v, r);
  PutString(&v, m.client);
  keys::PutU64(&v, keys::TimeToMicros(m.received));
  v.append(m.raw);
  return v;
}

bool DecodeInbound(std::string_view v, InboundMessage* m) {
  if (!GetString(&v, &m->mail_from) || v.size() < 4) return false;
  uint32_t n = keys::GetU32(v);
  v.remove_prefix(4);
  if (n > v.size() / 4) return false;
  m->recipients.resize(n);
  for (std::string& r : m->recipients)
    if (!GetString(&v, &r)) return false;
  if (!GetString(&v, &m->client) || v.size() < 8) return false;
  m->received = keys::MicrosToTime(keys::GetU64(v));
  v.remove_prefix(8);
  m->raw.assign(v);
  return true;
}

}  // namespace

absl::Status Spool::StoreInbound(absl::Span<InboundMessage* const> messages) {
  if (messages.empty()) return absl::OkStatus();
  absl::MutexLock lock(&impl_->inbound_mu_);
  if (impl_->next_inbound_id_ == 0) {
    // After the highest id on disk (pending ones survive restarts), and never
    // below the clock, so ids of removed messages are not reused soon.
    uint64_t next = keys::TimeToMicros(impl_->clock_->Now());
    std::unique_ptr<rocksdb::Iterator> it(
        impl_->db_->NewIterator(rocksdb::ReadOptions(), impl_->default_cf_));
    std::string end(kInboundPrefix);
    end.back() = static_cast<char>(end.back() + 1);
    it->SeekForPrev(end);
    if (it->Valid() && it->key().starts_with(kInboundPrefix) &&
        it->key().size() == kInboundPrefix.size() + 8)
      next = std::max(next, keys::GetU64(it->key().ToStringView(), kInboundPrefix.size()) + 1);
    if (auto s = FromRocks(it->status(), "reading the inbound queue"); !s.ok()) return s;
    impl_->next_inbound_id_ = std::max<uint64_t>(next, 1);
  }
  rocksdb::WriteBatch batch;
  uint64_t id = impl_->next_inbound_id_;
  for (InboundMessage* m : messages) {
    m->id = id++;
    batch.Put(impl_->default_cf_, InboundKey(m->id), EncodeInbound(*m));
  }
  absl::Status s =
      FromRocks(impl_->db_->Write(impl_->SyncWrite(), &batch), "storing a received report");
  if (s.ok()) impl_->next_inbound_id_ = id;
  return s;
}

absl::StatusOr<std::vector<InboundMessage>> Spool::PendingInbound(size_t limit) const {
  std::vector<InboundMessage> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db_->NewIterator(rocksdb::ReadOptions(), impl_->default_cf_));
  for (it->Seek(std::string(kInboundPrefix));
       it->Valid() && it->key().starts_with(kInboundPrefix) && out.size() < limit; it->Next()) {
    std::string_view key = it->key().ToStringView();
    InboundMessage m;
    if (key.size() != kInboundPrefix.size() + 8 || !DecodeInbound(it->value().ToStringView(), &m))
      return absl::DataLossError(absl::StrCat("inbound message record ", out.size() + 1,
                                              " in the spool cannot be decoded"));
    m.id = keys::GetU64(key, kInboundPrefix.size());
    out.push_back(std::move(m));
  }
  if (auto s = FromRocks(it->status(), "reading the inbound queue"); !s.ok()) return s;
  return out;
}

absl::Status Spool::MarkInboundDone(uint64_t id) {
  std::string value;
  rocksdb::Status g =
      impl_->db_->Get(rocksdb::ReadOptions(), impl_->default_cf_, InboundKey(id), &value);
  if (g.IsNotFound())
    return absl::NotFoundError(absl::StrCat("inbound message ", id, " is not in the spool"));
  if (auto s = FromRocks(g, "reading an inbound message"); !s.ok()) return s;
  // Not synced (the WAL still survives a process crash): after a power loss a
  // processed message may be processed again, and processing is idempotent
  // (the report intake applies a report once). A sync per message held the
  // worker to ~230 messages/s here; this way it keeps up with the listener.
  return FromRocks(impl_->db_->Delete(impl_->HotWrite(), impl_->default_cf_, InboundKey(id)),
                   "removing a processed inbound message");
}

}  // namespace salvo::queue
