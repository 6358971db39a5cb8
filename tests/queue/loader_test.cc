// Campaign loading: malformed input gives a clear FILE:LINE error and leaves
// the database unchanged; invalid addresses are skipped and reported (fatal
// with strict); campaign files (TOML).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "queue/campaign.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

using testing::SpoolTest;

// Stands in for engine/message's Template::CheckColumns: every {{name}} must
// be a CSV column; the error names the placeholder and template file:line.
absl::Status CheckPlaceholders(std::string_view text, std::string_view path,
                               const std::vector<std::string>& columns) {
  // A plain scan (std::regex trips GCC 12's -Wmaybe-uninitialized under ASan).
  size_t pos = 0;
  while ((pos = text.find("{{", pos)) != std::string_view::npos) {
    size_t end = text.find("}}", pos);
    if (end == std::string_view::npos) break;
    std::string name(text.substr(pos + 2, end - pos - 2));
    if (std::find(columns.begin(), columns.end(), name) == columns.end()) {
      int line = 1 + std::count(text.begin(), text.begin() + pos, '\n');
      return absl::InvalidArgumentError(std::string(path) + ":" + std::to_string(line) +
                                        ": unknown placeholder {{" + name + "}}");
    }
    pos = end + 2;
  }
  return absl::OkStatus();
}

class LoaderTest : public SpoolTest {
 protected:
  void SetUp() override {
    SpoolTest::SetUp();
    // Some existing state so "unchanged" means something.
    CampaignSpec spec = Spec("email,name\nold@example.com,Old\n", "existing");
    ASSERT_TRUE(spool_->LoadCampaign(spec, {}).ok());
    ASSERT_TRUE(spool_->AddSuppression("gone@example.com", "manual").ok());
  }
  testing::Dump Snapshot() {
    spool_.reset();
    testing::Dump d = testing::DumpSpool(dir_.File("data"));
    Reopen();
    return d;
  }
};

struct BadCase {
  std::string name;
  std::string csv;   // recipient list content
  std::string want;  // substring of the error, after the path
  std::string template_text = testing::kTemplate;
  bool csv_is_missing = false;
  bool template_is_missing = false;
  bool template_is_dir = false;
  bool strict = false;
};

TEST_F(LoaderTest, MalformedInputGivesFileLineErrorAndLeavesTheDatabaseUnchanged) {
  const std::string big_field(1 << 20, 'x');
  std::string late_error = "email,name\n";
  for (int i = 0; i < 45000; ++i) late_error += "r" + std::to_string(i) + "@example.com,n\n";
  late_error += "broken@example.com,\"unterminated\n";
  std::vector<BadCase> cases = {
      {"unterminated quote", "email,name\na@example.com,\"Ann\n", ":2: unterminated quoted field"},
      {"quote in unquoted field", "email,name\na@example.com,An\"n\n",
       ":2: quote inside unquoted field"},
      {"junk after closing quote", "email,name\na@example.com,\"Ann\"x\n",
       ":2: unexpected character after closing quote"},
      {"missing email column", "mail,name\na@example.com,Ann\n",
       ":1: header has no 'email' column"},
      {"non-UTF-8 bytes", "email,name\na@example.com,\xe9t\xe9\n",
       ":2: field 2 is not valid UTF-8"},
      {"non-UTF-8 in header", "email,n\xff\na@example.com,x\n", ":1: field 2 is not valid UTF-8"},
      {"1 MB line", "email,name\na@example.com," + big_field + "\n",
       ":2: record longer than 1 MiB"},
      {"empty file", "", ":1: empty file"},
      {"only blank lines", "\n\n\r\n", ":1: empty file"},
      {"header only", "email,name\n", ":2: no recipient rows"},
      {"duplicate column", "email,name,name\na@example.com,x,y\n",
       ":1: header column 'name' appears twice"},
      {"empty column name", "email,,name\na@example.com,x,y\n", ":1: header column 2 has no name"},
      {"too many fields", "email,name\na@example.com,Ann\nb@example.com,Bob,extra\n",
       ":3: row has 3 fields, the header has 2"},
      {"too few fields", "email,name\na@example.com\n", ":2: row has 1 fields, the header has 2"},
      {"bare CR", "email,name\ra@example.com,Ann\n", ":1: bare carriage return"},
      {"NUL byte", std::string("email,name\na@example.com,A\0n\n", 29), ":2: NUL byte"},
      {"broken BOM",
       "\xef\xbb"
       "email\na@example.com\n",
       ":1: file starts with a broken UTF-8 byte order mark"},
      {"unknown placeholder", "email,name\na@example.com,Ann\n",
       "template.eml:6: unknown placeholder {{coupon}}",
       std::string(testing::kTemplate) + "Use {{coupon}}\r\n"},
      {"missing template", "email,name\na@example.com,Ann\n",
       "template.eml:1: cannot read template file", testing::kTemplate, false, true},
      {"unreadable template (a directory)", "email,name\na@example.com,Ann\n",
       "template.eml:1:", testing::kTemplate, false, false, true},
      {"empty template", "email,name\na@example.com,Ann\n", "template.eml:1: template is empty",
       ""},
      {"missing recipient list", "", ": cannot open recipient list", testing::kTemplate, true},
      {"no valid address", "email,name\nnot-an-address,x\n@nope,y\n", ": no valid recipient"},
      {"invalid address with strict", "email,name\na@example.com,Ann\nbad address,x\n",
       ":3: invalid address 'bad address'", testing::kTemplate, false, false, false, true},
      {"error after 45000 good rows", late_error, ":45002: unterminated quoted field"},
  };
  ASSERT_GE(cases.size(), 20u);
  testing::Dump before = Snapshot();
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    testing::TempDir files;
    CampaignSpec spec;
    spec.name = "bad";
    spec.from = "news@example.com";
    spec.template_path = files.File("template.eml");
    if (c.template_is_dir) {
      std::filesystem::create_directory(spec.template_path);
    } else if (!c.template_is_missing) {
      files.Write("template.eml", c.template_text);
    }
    spec.recipients_path = files.File("list.csv");
    if (!c.csv_is_missing) files.Write("list.csv", c.csv);
    LoadOptions o;
    o.strict = c.strict;
    o.validate_template = CheckPlaceholders;
    absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, o);
    ASSERT_FALSE(r.ok());
    const std::string msg(r.status().message());
    const std::string& file =
        c.want.rfind("template.eml", 0) == 0 ? files.path() + "/" : spec.recipients_path;
    EXPECT_NE(msg.find(file + c.want), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    EXPECT_EQ(spool_->ListCampaigns().size(), 1u);
  }
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(LoaderTest, InterruptedLoadLeavesNothing) {
  testing::Dump before = Snapshot();
  std::string csv = "email\n";
  for (int i = 0; i < 70000; ++i) csv += "r" + std::to_string(i) + "@example.com\n";
  std::atomic<bool> interrupted{false};
  LoadOptions o;
  o.interrupted = &interrupted;
  size_t progress_calls = 0;
  o.progress = [&](const LoadProgress& p) {
    ++progress_calls;
    EXPECT_LE(p.bytes_read, p.bytes_total);
    interrupted = true;  // "Ctrl-C" after the first progress report
  };
  absl::StatusOr<LoadReport> r = spool_->LoadCampaign(Spec(csv), o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_GE(progress_calls, 1u);
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(LoaderTest, InvalidAddressesAreSkippedAndReportedWithFileLine) {
  CampaignSpec spec = Spec(
      "email,name\r\ngood@example.com,G\r\nno-at-sign,X\r\n\"multi\r\nline\",Y\r\n"
      "ok@ex\xc3\xa4mple.de,Z\r\nuser@localhost,W\r\n");
  LoadOptions o;
  o.validate_template = CheckPlaceholders;
  absl::StatusOr<LoadReport> r = spool_->LoadCampaign(spec, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows, 5u);
  EXPECT_EQ(r->accepted, 2u);
  EXPECT_EQ(r->invalid, 3u);
  ASSERT_EQ(r->first_errors.size(), 3u);
  EXPECT_EQ(r->first_errors[0], spec.recipients_path + ":3: invalid address 'no-at-sign': no '@'");
  EXPECT_NE(r->first_errors[1].find(spec.recipients_path + ":4: invalid address"),
            std::string::npos);
  EXPECT_NE(r->first_errors[2].find(":7: invalid address 'user@localhost'"), std::string::npos)
      << r->first_errors[2];
}

// Start-up time: what RocksDB keeps in its write-ahead log is replayed at the
// next open. A 10,000,000-recipient load used to leave ~1.5 GB of log (the
// log is kept until every column family with data in it is flushed).
uint64_t LogBytes(const std::string& data_dir) {
  uint64_t total = 0;
  for (const auto& f : std::filesystem::directory_iterator(data_dir))
    if (f.path().extension() == ".log") total += f.file_size();
  return total;
}

// Loads `rows` recipients into a fresh spool opened with `o`; the bytes of
// write-ahead log left behind.
// Loads `rows` recipients into a fresh spool opened with `o`; the bytes of
// write-ahead log left behind once they stop falling (background flushes
// done; polled for at most 10 s).
uint64_t LogBytesAfterLoad(Spool::Options o, int rows) {
  testing::TempDir dir;
  std::string csv = "email,name\n";
  for (int i = 0; i < rows; ++i) absl::StrAppend(&csv, "user", i, "@d", i % 50, ".example,N\n");
  CampaignSpec spec;
  spec.name = "big";
  spec.from = "news@example.com";
  spec.template_path = dir.Write("template.eml", testing::kTemplate);
  spec.recipients_path = dir.Write("list.csv", csv);
  o.rng_seed = 1;
  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir.File("data"), o);
  EXPECT_TRUE(spool.ok()) << spool.status();
  if (!spool.ok()) return 0;
  absl::StatusOr<LoadReport> r = (*spool)->LoadCampaign(spec, {});
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r.ok() ? r->accepted : 0, static_cast<uint64_t>(rows));
  uint64_t bytes = LogBytes(dir.File("data"));
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const uint64_t now = LogBytes(dir.File("data"));
    if (now == bytes && i >= 5) break;
    bytes = now;
  }
  return bytes;
}

TEST(SpoolLogTest, ABigLoadEndsFlushedSoTheNextStartReplaysNothing) {
  Spool::Options keep;
  keep.flush_after_load_rows = 1000000;  // not flushed: the control
  const uint64_t kept = LogBytesAfterLoad(keep, 20000);
  EXPECT_GT(kept, 1u << 20) << "the control load should leave its log";
  Spool::Options flush;
  flush.flush_after_load_rows = 10000;
  EXPECT_LT(LogBytesAfterLoad(flush, 20000), 64u << 10);
}

TEST(SpoolLogTest, TheLogIsBoundedByMaxWalBytesDuringALoad) {
  // Three chunks of the loader (50,000 rows each, ~7 MB of log); memtables
  // small enough that every chunk fills them.
  Spool::Options o;
  o.flush_after_load_rows = 1000000;
  o.write_buffer_bytes = 512 << 10;
  o.max_wal_bytes = 256 << 10;
  // Once the logs no longer written to pass the bound, the families holding
  // the oldest one (the template's, written once) are flushed: the last
  // chunk's log stays.
  const uint64_t bounded = LogBytesAfterLoad(o, 150000);
  // Without the bound the template's family keeps the first log, and with
  // it every later one, alive.
  o.max_wal_bytes = 256ull << 20;
  const uint64_t kept = LogBytesAfterLoad(o, 150000);
  EXPECT_GT(kept, 15u << 20) << "the control load should leave its whole log";
  EXPECT_LT(bounded, 8u << 20) << "kept without the bound: " << kept;
}

TEST(CampaignFileTest, ParsesAndResolvesRelativePaths) {
  testing::TempDir d;
  std::string path = d.Write("spring.toml", R"(
name = "Spring sale"
template = "message.eml"
recipients = "/abs/list.csv"
from = "news@example.com"
dkim_domain = "example.com"
[retry]
first_retry_min = "1m"
first_retry_max = "2m"
multiplier = 3.0
max_delay = "2h"
max_age = "1d"
[options]
priority = 5
)");
  absl::StatusOr<CampaignSpec> spec = ParseCampaignFile(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "Spring sale");
  EXPECT_EQ(spec->template_path, d.path() + "/message.eml");
  EXPECT_EQ(spec->recipients_path, "/abs/list.csv");
  EXPECT_EQ(spec->retry.first_retry_min, absl::Minutes(1));
  EXPECT_EQ(spec->retry.multiplier, 3.0);
  EXPECT_EQ(spec->retry.max_age, absl::Hours(24));
  EXPECT_EQ(spec->options.at("priority"), "5");
}

TEST(CampaignFileTest, BadCampaignFilesNameFileAndLine) {
  testing::TempDir d;
  const std::string head =
      "name = \"x\"\ntemplate = \"t\"\nrecipients = \"r\"\nfrom = \"a@b.example\"\n";
  struct Case {
    std::string content, want;
  } cases[] = {
      {"name = \"x\nfrom = 1\n", ":1: "},
      {head + "colour = \"red\"\n", ":5: unknown key 'colour'"},
      {"name = \"x\"\ntemplate = \"t\"\nrecipients = \"r\"\n", ":1: missing required key 'from'"},
      {head + "[retry]\nmax_age = \"3 weeks\"\n", ":6: retry.max_age: '3 weeks' is not a duration"},
      {head + "[retry]\nfirst_retry_min = \"1h\"\nfirst_retry_max = \"1m\"\n",
       ": retry.first_retry_max must be >="},
      {"name = 5\n", ":1: 'name' must be a string"},
      {"name = \"\"\ntemplate = \"t\"\nrecipients = \"r\"\nfrom = \"a@b.example\"\n",
       ":1: 'name' is empty"},
      {"name = \"x\"\ntemplate = \"t\"\nrecipients = \"r\"\nfrom = \"\"\n", ":4: 'from' is empty"},
      {head + "[retry]\nbackoff = 2\n", ":6: unknown key 'retry.backoff'"},
  };
  for (const Case& c : cases) {
    std::string path = d.Write("c.toml", c.content);
    absl::StatusOr<CampaignSpec> spec = ParseCampaignFile(path);
    ASSERT_FALSE(spec.ok()) << c.content;
    EXPECT_NE(spec.status().message().find(path + c.want), std::string::npos)
        << spec.status().message();
  }
  EXPECT_NE(ParseCampaignFile(d.File("missing.toml")).status().message().find("missing.toml"),
            std::string::npos);
}

}  // namespace
}  // namespace salvo::queue
