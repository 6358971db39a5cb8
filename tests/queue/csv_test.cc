#include "queue/csv.h"

#include "gtest/gtest.h"
#include "tests/queue/test_util.h"

namespace salvo::queue {
namespace {

using testing::TempDir;

std::vector<std::vector<std::string>> ReadAll(const std::string& path, absl::Status* error,
                                              std::vector<uint64_t>* lines = nullptr) {
  std::vector<std::vector<std::string>> rows;
  auto r = CsvReader::Open(path);
  if (!r.ok()) {
    *error = r.status();
    return rows;
  }
  std::vector<std::string> fields;
  for (;;) {
    absl::StatusOr<bool> got = (*r)->Next(&fields);
    if (!got.ok()) {
      *error = got.status();
      return rows;
    }
    if (!*got) break;
    rows.push_back(fields);
    if (lines) lines->push_back((*r)->line());
  }
  *error = absl::OkStatus();
  return rows;
}

TEST(CsvTest, ParsesRfc4180QuotingAndLineNumbers) {
  TempDir dir;
  std::string p = dir.Write("a.csv",
                            "\xef\xbb\xbf"
                            "email,name,note\r\n"
                            "a@example.com,Alice,\"hello, world\"\r\n"
                            "\n"
                            "b@example.com,\"Bob \"\"B\"\"\",\"two\nlines\"\n"
                            "c@example.com,,\"\"\n"
                            "d@example.com,Dee,last");
  absl::Status err;
  std::vector<uint64_t> lines;
  auto rows = ReadAll(p, &err, &lines);
  ASSERT_TRUE(err.ok()) << err;
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"email", "name", "note"}));
  EXPECT_EQ(rows[1][2], "hello, world");
  EXPECT_EQ(rows[2][1], "Bob \"B\"");
  EXPECT_EQ(rows[2][2], "two\nlines");
  EXPECT_EQ(rows[3], (std::vector<std::string>{"c@example.com", "", ""}));
  EXPECT_EQ(rows[4][2], "last");
  EXPECT_EQ(lines, (std::vector<uint64_t>{1, 2, 4, 6, 7}));
}

TEST(CsvTest, ErrorsNameFileAndLine) {
  TempDir dir;
  struct Case {
    std::string content;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"email\nx@example.com\n\"open", ":3: unterminated quoted field"},
           {"email,n\nx@example.com,a\"b\n", ":2: quote inside unquoted field"},
           {"email,n\nx@example.com,\"a\"b\n", ":2: unexpected character after closing quote"},
           {"email\n\xff@example.com\n", ":2: field 1 is not valid UTF-8"},
           {"email\rx\n", ":1: bare carriage return"},
           {std::string("email\nx@e.com\0y\n", 16), ":2: NUL byte"},
       }) {
    std::string p = dir.Write("bad.csv", c.content);
    absl::Status err;
    ReadAll(p, &err);
    EXPECT_FALSE(err.ok()) << c.want;
    EXPECT_NE(err.message().find(p + c.want), std::string::npos) << err.message();
  }
}

TEST(CsvTest, RecordOverOneMegabyteIsAnError) {
  TempDir dir;
  std::string p =
      dir.Write("big.csv", "email,blob\nx@example.com," +
                               std::string(CsvReader::kMaxRecordBytes + 10, 'x') + "\n");
  absl::Status err;
  ReadAll(p, &err);
  EXPECT_NE(err.message().find(":2: record longer than 1 MiB"), std::string::npos) << err;
}

}  // namespace
}  // namespace salvo::queue
