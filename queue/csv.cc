#include "queue/csv.h"
#include "engine/common/strings.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "queue/address.h"

namespace salvo::queue {

namespace {
constexpr size_t kBufSize = 64 * 1024;
}

absl::StatusOr<std::unique_ptr<CsvReader>> CsvReader::Open(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(Cat(path, ": cannot open recipient list: ", std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
    std::fclose(f);
    return absl::InvalidArgumentError(Cat(path, ": not a regular file"));
  }
  auto reader =
      std::unique_ptr<CsvReader>(new CsvReader(path, f, static_cast<uint64_t>(st.st_size)));
  // Skip a UTF-8 byte order mark.
  if (reader->Peek() == 0xEF) {
    reader->Get();
    if (reader->Get() != 0xBB || reader->Get() != 0xBF) {
      return reader->Error("file starts with a broken UTF-8 byte order mark");
    }
  }
  return reader;
}

CsvReader::CsvReader(std::string path, FILE* f, uint64_t size)
    : path_(std::move(path)), file_(f), file_size_(size), buf_(new char[kBufSize]) {}

CsvReader::~CsvReader() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status CsvReader::Error(std::string_view message) const {
  return absl::InvalidArgumentError(
      Cat(path_, ":", record_line_ == 0 ? line_ : record_line_, ": ", message));
}

int CsvReader::Peek() {
  if (pos_ == len_) {
    len_ = std::fread(buf_.get(), 1, kBufSize, file_);
    pos_ = 0;
    if (len_ == 0) {
      if (std::ferror(file_)) read_error_ = true;
      return read_error_ ? -2 : -1;
    }
  }
  return static_cast<unsigned char>(buf_[pos_]);
}

int CsvReader::Get() {
  int c = Peek();
  if (c >= 0) {
    ++pos_;
    ++consumed_;
  }
  return c;
}

absl::StatusOr<bool> CsvReader::Next(std::vector<std::string>* fields) {
  fields->clear();
  size_t record_bytes = 0;
  for (;;) {  // skip blank lines
    int c = Peek();
    if (c == -2) return absl::DataLossError(Cat(path_, ":", line_, ": read error"));
    if (c == -1) return false;
    if (c == '\n') {
      Get();
      ++line_;
      continue;
    }
    if (c == '\r') {
      Get();
      if (Peek() == '\n') {
        Get();
        ++line_;
        continue;
      }
      record_line_ = line_;
      return Error("bare carriage return (lines must end in CRLF or LF)");
    }
    break;
  }
  record_line_ = line_;
  std::string field;
  auto finish_field = [&]() -> absl::Status {
    if (!IsValidUtf8(field)) {
      return Error(Cat("field ", fields->size() + 1, " is not valid UTF-8"));
    }
    fields->push_back(std::move(field));
    field.clear();
    return absl::OkStatus();
  };
  for (;;) {
    // At the start of a field.
    int c = Peek();
    if (c == '"') {
      Get();
      const uint64_t quote_line = line_;
      for (;;) {
        int q = Get();
        if (q == -2) return absl::DataLossError(Cat(path_, ":", line_, ": read error"));
        if (q == -1) {
          return Error(Cat("unterminated quoted field (opened on line ", quote_line, ")"));
        }
        if (++record_bytes > kMaxRecordBytes) return Error("record longer than 1 MiB");
        if (q == '"') {
          if (Peek() == '"') {
            Get();
            field.push_back('"');
            continue;
          }
          break;
        }
        if (q == 0) return Error("NUL byte in field");
        if (q == '\n') ++line_;
        field.push_back(static_cast<char>(q));
      }
      // After the closing quote: separator, line end or EOF.
      int after = Peek();
      if (after == ',') {
        Get();
        if (absl::Status s = finish_field(); !s.ok()) return s;
        continue;
      }
      if (after == '\r') {
        Get();
        if (Peek() != '\n') return Error("bare carriage return after a quoted field");
      }
      if (after == '\n' || after == '\r') {
        Get();
        ++line_;
        if (absl::Status s = finish_field(); !s.ok()) return s;
        return true;
      }
      if (after == -1) {
        if (absl::Status s = finish_field(); !s.ok()) return s;
        return true;
      }
      if (after == -2) return absl::DataLossError(Cat(path_, ":", line_, ": read error"));
      return Error(Cat("unexpected character after closing quote in field ", fields->size() + 1,
                       " (quotes inside a quoted field are doubled)"));
    }
    // Unquoted field.
    for (;;) {
      int u = Peek();
      if (u == -2) return absl::DataLossError(Cat(path_, ":", line_, ": read error"));
      if (u == -1) {
        if (absl::Status s = finish_field(); !s.ok()) return s;
        return true;
      }
      Get();
      if (++record_bytes > kMaxRecordBytes) return Error("record longer than 1 MiB");
      if (u == ',') {
        if (absl::Status s = finish_field(); !s.ok()) return s;
        break;  // next field
      }
      if (u == '\n') {
        ++line_;
        if (absl::Status s = finish_field(); !s.ok()) return s;
        return true;
      }
      if (u == '\r') {
        if (Peek() != '\n') return Error("bare carriage return (lines must end in CRLF or LF)");
        Get();
        ++line_;
        if (absl::Status s = finish_field(); !s.ok()) return s;
        return true;
      }
      if (u == '"') {
        return Error(Cat("quote inside unquoted field ", fields->size() + 1,
                         " (quote the whole field and double the quote)"));
      }
      if (u == 0) return Error("NUL byte in field");
      field.push_back(static_cast<char>(u));
    }
  }
}

}  // namespace salvo::queue
