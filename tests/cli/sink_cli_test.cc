// `salvo sink` command surface: bad input is one line on stderr and exit 2.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"

namespace salvo::testing {
namespace {

int Lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void ExpectUsageError(const std::vector<std::string>& args, const std::string& mention) {
  CommandResult r = RunSalvo(args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("salvo: error: ")) << r.err;
  EXPECT_NE(r.err.find(mention), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(SinkCliTest, HelpListsFlags) {
  CommandResult r = RunSalvo({"sink", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--listen", "--bounce-rate", "--defer-rate", "--max-per-connection",
                           "--max-rate", "--delay-ms", "--save-dir", "--stats-file", "--shards",
                           "--drop-rate", "--seed", "--track-duplicates"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

TEST(SinkCliTest, UnknownFlag) { ExpectUsageError({"sink", "--bogus"}, "--bogus"); }

TEST(SinkCliTest, BadAddresses) {
  ExpectUsageError({"sink", "--listen", "1.2.3:99999"}, "1.2.3:99999");
  ExpectUsageError({"sink", "--listen", "127.0.0.1"}, "127.0.0.1");
  ExpectUsageError({"sink", "--listen", "mx.example:25"}, "mx.example:25");
  ExpectUsageError({"sink", "--listen", "127.0.0.1:25x"}, "127.0.0.1:25x");
}

TEST(SinkCliTest, RatesOutsideZeroToOne) {
  ExpectUsageError({"sink", "--bounce-rate", "1.5"}, "--bounce-rate");
  ExpectUsageError({"sink", "--defer-rate", "-0.1"}, "--defer-rate");
  ExpectUsageError({"sink", "--drop-rate", "abc"}, "--drop-rate");
  ExpectUsageError({"sink", "--bounce-rate", "0.7", "--defer-rate", "0.7"}, "<= 1");
}

TEST(SinkCliTest, OtherBadValues) {
  ExpectUsageError({"sink", "--shards", "0"}, "--shards");
  ExpectUsageError({"sink", "--save-dir", "/nonexistent/salvo-dir"}, "/nonexistent/salvo-dir");
  ExpectUsageError({"sink", "--final-delay-ms", "-1"}, "--final-delay-ms");
  ExpectUsageError({"sink", "--greeting", "hello"}, "--greeting");
}

TEST(SinkCliTest, BindFailureIsRuntimeError) {
  // Port 1 on a non-local address cannot be bound (EADDRNOTAVAIL): exit 1.
  CommandResult r = RunSalvo({"sink", "--listen", "192.0.2.1:1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("cannot listen on 192.0.2.1:1"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace salvo::testing
