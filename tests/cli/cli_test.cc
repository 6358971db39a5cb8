// The command surface every subcommand shares: help, version, exit codes, and
// one-line errors for bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "tests/cli/cli_runner.h"

namespace salvo::testing {
namespace {

int CountLines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

TEST(CliTest, HelpListsEverySubcommandAndExitsZero) {
  CommandResult r = RunSalvo({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"sink", "dkim", "campaign", "suppression", "run", "send", "bench"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  EXPECT_NE(r.out.find("Exit codes"), std::string::npos);
}

TEST(CliTest, VersionPrintsNameAndVersion) {
  CommandResult r = RunSalvo({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("salvo ", 0), 0u) << r.out;
}

TEST(CliTest, SubcommandHelpWorks) {
  for (const char* sub : {"sink", "dkim", "campaign", "run", "send", "bench"}) {
    CommandResult r = RunSalvo({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub;
  }
}

// Issue 16 item 2: negative counts are usage errors naming the flag, before
// any data directory is touched.
TEST(CliTest, NegativeCountsAreRefused) {
  const std::vector<std::vector<std::string>> cases = {
      {"campaign", "status", "1", "--top=-3", "--data-dir", "/nonexistent/salvo"},
      {"suppression", "list", "--limit=-1", "--data-dir", "/nonexistent/salvo"},
      {"sink", "--max-per-connection=-1", "--listen", "127.0.0.1:0"},
      {"sink", "--max-rate=-5", "--listen", "127.0.0.1:0"},
      {"sink", "--max-size=-1", "--listen", "127.0.0.1:0"},
  };
  for (const auto& args : cases) {
    CommandResult r = RunSalvo(args);
    EXPECT_EQ(r.exit_code, 2) << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("-"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("non-negative"), std::string::npos) << args[1] << ": " << r.err;
    EXPECT_EQ(r.err.find("data directory"), std::string::npos) << r.err;
  }
}

// Issue 16 item 2: a file argument that is a symlink loop says so, not
// "File does not exist".
TEST(CliTest, SymlinkLoopIsReportedAsSuch) {
  std::string dir = "/tmp/salvo-cli-loop-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::create_symlink(dir + "/b", dir + "/a");
  std::filesystem::create_symlink(dir + "/a", dir + "/b");
  CommandResult r = RunSalvo({"campaign", "load", dir + "/a", "--data-dir", dir + "/data"});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("Too many levels of symbolic links"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("does not exist"), std::string::npos) << r.err;
}

// Issue 13 item 5: a campaign naming an egress pool the configuration does
// not define is refused at load, naming the file and the pools there are.
TEST(CliTest, AnUnknownEgressPoolIsRefusedAtLoad) {
  std::string dir = "/tmp/salvo-cli-egress-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write("r.csv", "email\nok@b.example\n");
  write("t.eml", "From: a@b.example\nSubject: x\n\nhi\n");
  write("c.toml",
        "name = \"n\"\ntemplate = \"t.eml\"\nrecipients = \"r.csv\"\nfrom = \"a@b.example\"\n"
        "egress_pool = \"nope\"\n");
  write("s.toml",
        "[[egress.source]]\nname = \"ip2\"\naddress = \"127.0.0.2\"\n[[egress.pool]]\nname = "
        "\"main\"\nsources = [\"ip2\"]\n");
  CommandResult r = RunSalvo({"campaign", "load", dir + "/c.toml", "--config", dir + "/s.toml",
                              "--data-dir", dir + "/data"});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("c.toml: egress_pool = \"nope\" is not an [[egress.pool]]"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("it defines: main"), std::string::npos) << r.err;
}

// Issue 16 item 5: an ESC sequence in a recipient address reaches the
// terminal escaped in the load report, never raw.
TEST(CliTest, ControlCharactersFromDataAreEscapedInTheLoadReport) {
  std::string dir = "/tmp/salvo-cli-esc-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write("r.csv", "email\n\"a\x1b[31mred@b.example\"\nok@b.example\n");
  write("t.eml", "From: a@b.example\nSubject: x\n\nhi\n");
  write("c.toml",
        "name = \"n\\u001b[2J\"\ntemplate = \"t.eml\"\nrecipients = \"r.csv\"\n"
        "from = \"a@b.example\"\n");
  CommandResult r = RunSalvo({"campaign", "load", dir + "/c.toml", "--data-dir", dir + "/data"});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("a\\x1b[31mred@b.example"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'n\\x1b[2J'"), std::string::npos) << r.err;
}

// Issue 16 item 5: control characters from data (a campaign name, a sender,
// a suppression reason) are escaped in every human view: campaign list,
// campaign status, recipient show, suppression list.
TEST(CliTest, ControlCharactersFromDataAreEscapedInEveryHumanView) {
  std::string dir = "/tmp/salvo-cli-views-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write("r.csv", "email\nok@b.example\n");
  write("t.eml", "From: a@b.example\nSubject: x\n\nhi\n");
  // ESC, CR, a UTF-8 C1 control (U+009B, CSI) and text in a script that stays.
  write("c.toml",
        "name = \"n\\u001b[2J\\r\\u009b1mÜ\"\ntemplate = \"t.eml\"\nrecipients = \"r.csv\"\n"
        "from = \"a@b.example\"\n");
  const std::string data = dir + "/data";
  CommandResult load = RunSalvo({"campaign", "load", dir + "/c.toml", "--data-dir", data});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  CommandResult add = RunSalvo({"suppression", "add", "ok@b.example", "--reason",
                                "spam\x1b]0;owned\x07\xc2\x85x", "--data-dir", data});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  const std::string name = "n\\x1b[2J\\x0d\\xc2\\x9b1mÜ";
  const std::string reason = "spam\\x1b]0;owned\\x07\\xc2\\x85x";
  const std::vector<std::pair<std::vector<std::string>, std::string>> views = {
      {{"campaign", "list"}, name},
      {{"campaign", "status", "1"}, "campaign 1 '" + name + "'"},
      {{"recipient", "show", "ok@b.example"}, "campaign 1 '" + name + "'"},
      {{"recipient", "show", "ok@b.example"}, "(" + reason + ")"},
      {{"suppression", "list"}, "\t" + reason + "\n"},
  };
  for (auto [args, expected] : views) {
    args.insert(args.end(), {"--data-dir", data});
    CommandResult r = RunSalvo(args);
    EXPECT_EQ(r.exit_code, 0) << args[0] << " " << args[1] << ": " << r.err;
    for (char c : {'\x1b', '\r', '\x07'})
      EXPECT_EQ(r.out.find(c), std::string::npos) << args[0] << " " << args[1] << ": " << r.out;
    EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\xc2\x85"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(expected), std::string::npos)
        << args[0] << " " << args[1] << ": " << r.out;
  }
  std::filesystem::remove_all(dir);
}

// Issue 16 item 2: a dkim_domain the configuration has no key for is refused
// at load (it would be refused at every send); without --config a warning
// says nothing was checked; a d= not aligned with From is a warning.
TEST(CliTest, ADkimDomainWithoutAKeyIsRefusedAtLoadAndMisalignmentWarned) {
  std::string dir = "/tmp/salvo-cli-dkim-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  CommandResult kg = RunSalvo({"dkim", "keygen", "--domain", "b.example", "--selector", "s1",
                               "--type", "ed25519", "--out", dir});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  write("r.csv", "email\nok@c.example\n");
  write("t.eml", "From: a@b.example\nSubject: x\n\nhi\n");
  write("s.toml", "[[dkim.keys]]\ndomain = \"b.example\"\nselector = \"s1\"\nkey_file = \"" + dir +
                      "/s1.b.example.pem\"\ntype = \"ed25519\"\n");
  auto campaign = [&](const std::string& name, const std::string& d,
                      const std::string& from = "a@b.example") {
    write(name + ".toml", "name = \"" + name +
                              "\"\ntemplate = \"t.eml\"\nrecipients = \"r.csv\"\n" + "from = \"" +
                              from + "\"\ndkim_domain = \"" + d + "\"\n");
    return dir + "/" + name + ".toml";
  };
  const std::string data = dir + "/data";
  CommandResult no_key = RunSalvo({"campaign", "load", campaign("n1", "other.example"), "--config",
                                   dir + "/s.toml", "--data-dir", data});
  EXPECT_EQ(no_key.exit_code, 1) << no_key.err;
  EXPECT_NE(no_key.err.find("n1.toml: dkim_domain = \"other.example\" has no [[dkim.keys]] in " +
                            dir + "/s.toml (it has keys for: b.example)"),
            std::string::npos)
      << no_key.err;
  // The key's own domain loads without a word; a subdomain of From is aligned.
  CommandResult ok = RunSalvo({"campaign", "load", campaign("n2", "b.example"), "--config",
                               dir + "/s.toml", "--data-dir", data});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.err.find("warning"), std::string::npos) << ok.err;
  // No --config: loaded, with a warning that nothing was checked, and one
  // that other.example is not aligned with b.example.
  CommandResult unchecked = RunSalvo({"campaign", "load", campaign("n3", "other.example"),
                                      "--data-dir", data, "--allow-duplicate-name"});
  EXPECT_EQ(unchecked.exit_code, 0) << unchecked.err;
  EXPECT_NE(unchecked.err.find("salvo: warning: " + dir +
                               "/n3.toml: dkim_domain = \"other.example\": no --config given"),
            std::string::npos)
      << unchecked.err;
  EXPECT_NE(unchecked.err.find("is not aligned with the From domain b.example"), std::string::npos)
      << unchecked.err;
  CommandResult sub =
      RunSalvo({"campaign", "load", campaign("n4", "b.example", "news@mail.b.example"),
                "--data-dir", data, "--allow-duplicate-name"});
  EXPECT_EQ(sub.exit_code, 0) << sub.err;
  EXPECT_EQ(sub.err.find("not aligned"), std::string::npos) << sub.err;
  std::filesystem::remove_all(dir);
}

TEST(CliTest, UnknownSubcommandIsOneLineUsageError) {
  CommandResult r = RunSalvo({"sendd"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("unknown command 'sendd' for 'salvo'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

// A typo one level down names the word and the command it was given to
// (CLI11 alone says "A subcommand is required"), also after global flags and
// option values; a group with no command lists its commands.
TEST(CliTest, UnknownNestedCommandNamesWordAndParent) {
  CommandResult r = RunSalvo({"campaign", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("unknown command 'frobnicate' for 'salvo campaign'"), std::string::npos)
      << r.err;
  r = RunSalvo({"--log-level", "error", "suppression", "lst"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'lst' for 'salvo suppression'"), std::string::npos)
      << r.err;
  r = RunSalvo({"campaign"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'salvo campaign' needs a command: load, list"), std::string::npos) << r.err;
  // Not a typo: an option's value and a positional argument are left alone.
  r = RunSalvo({"campaign", "list", "--data-dir", "/nonexistent/salvo-cli-test"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.find("unknown command"), std::string::npos) << r.err;
}

// Global flags work anywhere on the line, also after the subcommand.
TEST(CliTest, LogLevelAfterTheSubcommand) {
  CommandResult r = RunSalvo(
      {"campaign", "list", "--data-dir", "/nonexistent/salvo-cli", "--log-level", "error"});
  EXPECT_EQ(r.exit_code, 1) << r.err;  // the missing data dir, not a usage error
  EXPECT_EQ(r.err.find("not expected"), std::string::npos) << r.err;
  r = RunSalvo({"campaign", "list", "--log-level", "loud"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--log-level"), std::string::npos) << r.err;
}

// With --json, errors are JSON on stderr too (one object per line).
TEST(CliTest, JsonMakesErrorsJson) {
  CommandResult r = RunSalvo({"campaign", "status", "x", "--json", "--data-dir", "/nonexistent/c"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.err);
  EXPECT_NE(j["error"].get<std::string>().find("/nonexistent/c"), std::string::npos) << r.err;
  r = RunSalvo({"--json", "campaign", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(nlohmann::json::parse(r.err)["error"].get<std::string>().find("unknown command"),
            std::string::npos);
}

TEST(CliTest, NoSubcommandIsUsageError) {
  CommandResult r = RunSalvo({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
}

TEST(CliTest, UnknownTopLevelFlagIsOneLineUsageError) {
  CommandResult r = RunSalvo({"--frobnicate", "sink"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("salvo: error:"), std::string::npos);
}

TEST(CliTest, BadLogLevelIsUsageError) {
  CommandResult r = RunSalvo({"--log-level", "loud", "sink", "--help"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("loud"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace salvo::testing
