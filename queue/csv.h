#pragma once
// Streaming RFC 4180 reader: one record at a time from a file, in bounded
// memory (a 64 KiB read buffer plus the current record). Quoted fields may
// hold commas, quotes ("") and line breaks; lines end in CRLF or LF; a UTF-8
// BOM is skipped; blank lines are skipped. Every field must be valid UTF-8.
// Errors read "FILE:LINE: what".
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace salvo::queue {

class CsvReader {
 public:
  static constexpr size_t kMaxRecordBytes = 1 << 20;  // 1 MiB per record

  static absl::StatusOr<std::unique_ptr<CsvReader>> Open(const std::string& path);
  ~CsvReader();

  // Reads the next record. Returns false at end of file.
  absl::StatusOr<bool> Next(std::vector<std::string>* fields);
  // Line on which the last record returned by Next() starts (1-based).
  uint64_t line() const { return record_line_; }
  uint64_t bytes_read() const { return consumed_; }
  uint64_t file_size() const { return file_size_; }
  const std::string& path() const { return path_; }
  // "FILE:LINE: message" for the current record.
  absl::Status Error(std::string_view message) const;

 private:
  CsvReader(std::string path, FILE* f, uint64_t size);
  int Get();  // next byte or -1 at EOF; -2 on read error
  int Peek();

  std::string path_;
  FILE* file_;
  uint64_t file_size_;
  std::unique_ptr<char[]> buf_;
  size_t pos_ = 0;
  size_t len_ = 0;
  uint64_t consumed_ = 0;
  uint64_t line_ = 1;         // current physical line
  uint64_t record_line_ = 0;  // line where the current record starts
  bool read_error_ = false;
};

}  // namespace salvo::queue
