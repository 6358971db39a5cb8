#include "engine/dns/message.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace salvo::dns {
namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxNameLength = 255;  // RFC 1035 2.3.4, wire form
constexpr int kMaxPointerJumps = 64;

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> wire) : wire_(wire) {}

  size_t offset() const { return offset_; }
  bool U8(uint8_t* out) {
    if (offset_ + 1 > wire_.size()) return false;
    *out = wire_[offset_++];
    return true;
  }
  bool U16(uint16_t* out) {
    if (offset_ + 2 > wire_.size()) return false;
    *out = static_cast<uint16_t>(wire_[offset_] << 8 | wire_[offset_ + 1]);
    offset_ += 2;
    return true;
  }
  bool U32(uint32_t* out) {
    if (offset_ + 4 > wire_.size()) return false;
    *out = static_cast<uint32_t>(wire_[offset_]) << 24 |
           static_cast<uint32_t>(wire_[offset_ + 1]) << 16 |
           static_cast<uint32_t>(wire_[offset_ + 2]) << 8 | wire_[offset_ + 3];
    offset_ += 4;
    return true;
  }
  void Seek(size_t offset) { offset_ = offset; }
  bool Skip(size_t n) {
    if (offset_ + n > wire_.size()) return false;
    offset_ += n;
    return true;
  }

  // Reads a possibly compressed name starting at the current offset and
  // leaves the offset just past its in-place part.
  absl::Status Name(std::string* out) {
    out->clear();
    size_t pos = offset_;
    size_t end_of_inline = 0;  // set at the first pointer
    int jumps = 0;
    size_t wire_length = 1;  // the root label
    while (true) {
      if (pos >= wire_.size()) {
        return absl::InvalidArgumentError(absl::StrCat("name runs past the end at offset ", pos));
      }
      const uint8_t len = wire_[pos];
      if ((len & 0xC0) == 0xC0) {
        if (pos + 2 > wire_.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("name pointer runs past the end at offset ", pos));
        }
        if (++jumps > kMaxPointerJumps) {
          return absl::InvalidArgumentError(absl::StrCat("name pointer loop at offset ", pos));
        }
        const size_t target = static_cast<size_t>(len & 0x3F) << 8 | wire_[pos + 1];
        if (end_of_inline == 0) end_of_inline = pos + 2;
        // Pointers must point backwards (RFC 1035 4.1.4 "prior occurrence");
        // this alone rules out loops, the jump limit is belt and braces.
        if (target >= pos) {
          return absl::InvalidArgumentError(
              absl::StrCat("name pointer at offset ", pos, " does not point backwards"));
        }
        pos = target;
        continue;
      }
      if ((len & 0xC0) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported label type 0x", absl::Hex(len), " at offset ", pos));
      }
      if (len == 0) {
        if (end_of_inline == 0) end_of_inline = pos + 1;
        break;
      }
      if (pos + 1 + len > wire_.size()) {
        return absl::InvalidArgumentError(absl::StrCat("label runs past the end at offset ", pos));
      }
      wire_length += 1 + len;
      if (wire_length > kMaxNameLength) {
        return absl::InvalidArgumentError(
            absl::StrCat("name longer than 255 octets at offset ", pos));
      }
      if (!out->empty()) out->push_back('.');
      for (size_t i = 0; i < len; ++i) {
        const uint8_t c = wire_[pos + 1 + i];
        if (c <= 0x20 || c >= 0x7F || c == '.') {
          return absl::InvalidArgumentError(absl::StrCat(
              "label byte 0x", absl::Hex(c), " is not allowed in a name at offset ", pos + 1 + i));
        }
        out->push_back(absl::ascii_tolower(static_cast<char>(c)));
      }
      pos += 1 + len;
    }
    offset_ = end_of_inline;
    return absl::OkStatus();
  }

 private:
  std::span<const uint8_t> wire_;
  size_t offset_ = 0;
};

absl::Status Truncated(absl::string_view what, size_t offset) {
  return absl::InvalidArgumentError(absl::StrCat(what, " is truncated at offset ", offset));
}

absl::Status DecodeRdata(Reader& in, absl::string_view where, uint16_t rdlength,
                         ResourceRecord* rr) {
  switch (static_cast<RecordType>(rr->type)) {
    case RecordType::kA:
    case RecordType::kAaaa: {
      const size_t want = rr->type == static_cast<uint16_t>(RecordType::kA) ? 4 : 16;
      if (rdlength != want) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": address record has ", rdlength,
                                                       " bytes of data, expected ", want));
      }
      rr->address.resize(want);
      for (size_t i = 0; i < want; ++i) {
        if (!in.U8(&rr->address[i])) return Truncated(where, in.offset());
      }
      return absl::OkStatus();
    }
    case RecordType::kMx:
      if (!in.U16(&rr->preference)) return Truncated(absl::StrCat(where, " MX"), in.offset());
      return in.Name(&rr->target);
    case RecordType::kCname:
      return in.Name(&rr->target);
    case RecordType::kSoa: {
      std::string rname;
      if (absl::Status s = in.Name(&rr->target); !s.ok()) return s;
      if (absl::Status s = in.Name(&rname); !s.ok()) return s;
      uint32_t serial, refresh, retry, expire;
      if (!in.U32(&serial) || !in.U32(&refresh) || !in.U32(&retry) || !in.U32(&expire) ||
          !in.U32(&rr->soa_minimum)) {
        return Truncated(absl::StrCat(where, " SOA"), in.offset());
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();  // kept with its header only
  }
}

absl::Status ReadRecord(Reader& r, absl::string_view where, ResourceRecord* rr) {
  if (absl::Status s = r.Name(&rr->name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  uint16_t rdlength = 0;
  if (!r.U16(&rr->type) || !r.U16(&rr->rclass) || !r.U32(&rr->ttl) || !r.U16(&rdlength)) {
    return Truncated(where, r.offset());
  }
  // RFC 2181 8: a TTL with the top bit set is treated as zero.
  if (rr->ttl > 0x7FFFFFFFu) rr->ttl = 0;
  const size_t rdata_start = r.offset();
  if (!r.Skip(rdlength)) return Truncated(absl::StrCat(where, " rdata"), rdata_start);
  // Decode RDATA with a second reader over the whole message (names in RDATA
  // may point backwards out of it), then check it stayed inside RDLENGTH.
  Reader in = r;
  in.Seek(rdata_start);
  if (absl::Status s = DecodeRdata(in, where, rdlength, rr); !s.ok()) {
    if (absl::StartsWith(s.message(), where)) return s;
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  if (in.offset() > rdata_start + rdlength) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": record data overruns its length at offset ", rdata_start));
  }
  return absl::OkStatus();
}

absl::Status ReadSection(Reader& r, absl::string_view section, uint16_t count,
                         std::vector<ResourceRecord>* out) {
  out->reserve(std::min<size_t>(count, 64));
  for (uint16_t i = 0; i < count; ++i) {
    ResourceRecord rr;
    if (absl::Status s = ReadRecord(r, absl::StrCat(section, " ", i + 1), &rr); !s.ok()) return s;
    out->push_back(std::move(rr));
  }
  return absl::OkStatus();
}

}  // namespace

std::string RcodeName(uint8_t rcode) {
  switch (rcode) {
    case 0:
      return "NOERROR";
    case 1:
      return "FORMERR";
    case 2:
      return "SERVFAIL";
    case 3:
      return "NXDOMAIN";
    case 4:
      return "NOTIMP";
    case 5:
      return "REFUSED";
    default:
      return absl::StrCat("RCODE ", rcode);
  }
}

absl::StatusOr<Message> ParseMessage(std::span<const uint8_t> wire) {
  if (wire.size() < kHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("DNS message of ", wire.size(), " bytes is shorter than its 12-byte header"));
  }
  Reader r(wire);
  Message m;
  uint16_t flags, qdcount, ancount, nscount, arcount;
  r.U16(&m.id);
  r.U16(&flags);
  r.U16(&qdcount);
  r.U16(&ancount);
  r.U16(&nscount);
  r.U16(&arcount);
  m.response = (flags & 0x8000) != 0;
  m.truncated = (flags & 0x0200) != 0;
  m.rcode = static_cast<uint8_t>(flags & 0x000F);
  for (uint16_t i = 0; i < qdcount; ++i) {
    std::string name;
    if (absl::Status s = r.Name(&name); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("question ", i + 1, ": ", s.message()));
    }
    uint16_t qtype, qclass;
    if (!r.U16(&qtype) || !r.U16(&qclass)) {
      return Truncated(absl::StrCat("question ", i + 1), r.offset());
    }
    if (i == 0) {
      m.question_name = std::move(name);
      m.question_type = qtype;
    }
  }
  if (absl::Status s = ReadSection(r, "answer", ancount, &m.answers); !s.ok()) return s;
  if (absl::Status s = ReadSection(r, "authority", nscount, &m.authority); !s.ok()) return s;
  // The additional section is not needed; it is not read (and a broken one
  // there does not spoil a good answer).
  (void)arcount;
  return m;
}

bool NegativeTtl(const Message& message, uint32_t* ttl) {
  for (const ResourceRecord& rr : message.authority) {
    if (rr.type == static_cast<uint16_t>(RecordType::kSoa)) {
      *ttl = std::min(rr.ttl, rr.soa_minimum);
      return true;
    }
  }
  return false;
}

}  // namespace salvo::dns
