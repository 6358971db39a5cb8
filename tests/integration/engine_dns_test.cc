// `salvo send` resolving MX records from a real unbound (the dns helper's
// fixture, tests/dns/unbound_fixture.h) and delivering to `salvo sink`
// processes listening on 127.0.77.x:25 (MX hosts always use port 25, so this
// test needs root to bind them, as CI has; it skips otherwise).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "queue/spool.h"
#include "tests/dns/unbound_fixture.h"
#include "tests/integration/harness.h"

namespace salvo::itest {
namespace {

TEST(EngineDnsE2E, MailGoesToMxByPreferenceImplicitMxAndPermanentFailuresBounce) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to bind port 25 on 127.0.77.x";
  TempDir dir;
  // 127.0.77.1 (preference 10) has nothing listening: connections are refused.
  auto start_sink = [&](const std::string& name, const std::string& ip) {
    return std::make_unique<Process>(
        std::vector<std::string>{SALVO_BINARY, "sink", "--listen", ip + ":25", "--stats-file",
                                 dir / (name + ".json")},
        dir / (name + ".out"), dir / (name + ".err"));
  };
  auto mx20 = start_sink("mx20", "127.0.77.2");
  auto mx30 = start_sink("mx30", "127.0.77.3");
  auto stats = [&](const std::string& name) {
    std::string t = ReadFile(dir / (name + ".json"));
    return t.empty() ? nlohmann::json::object() : nlohmann::json::parse(t);
  };
  ASSERT_TRUE(WaitFor([&] { return !stats("mx20").empty() && !stats("mx30").empty(); },
                      std::chrono::seconds(10)))
      << mx20->err() << mx30->err();
  std::string zones =
      "  local-zone: \"test.\" nodefault\n"
      "  local-zone: \"pref.test.\" static\n"
      "  local-data: \"pref.test. 300 IN MX 10 mx10.pref.test.\"\n"
      "  local-data: \"pref.test. 300 IN MX 20 mx20.pref.test.\"\n"
      "  local-data: \"pref.test. 300 IN MX 30 mx30.pref.test.\"\n"
      "  local-data: \"mx10.pref.test. 300 IN A 127.0.77.1\"\n"
      "  local-data: \"mx20.pref.test. 300 IN A 127.0.77.2\"\n"
      "  local-data: \"mx30.pref.test. 300 IN A 127.0.77.3\"\n"
      "  local-zone: \"aonly.test.\" static\n"
      "  local-data: \"aonly.test. 300 IN A 127.0.77.3\"\n"
      "  local-zone: \"nullmx.test.\" static\n"
      "  local-data: \"nullmx.test. 300 IN MX 0 .\"\n"
      "  local-zone: \"gone.test.\" always_nxdomain\n";
  auto unbound = dns::testing::UnboundServer::Start(zones, "");
  ASSERT_TRUE(unbound.ok()) << unbound.status();
  std::string cfg = dir / "salvo.toml";
  WriteFile(cfg,
            "data_dir = \"data\"\nshards = 2\npin_threads = false\nlog_level = \"warning\"\n"
            "[tls]\nmode = \"off\"\n[dns]\nservers = [\"" +
                (*unbound)->address() + "\"]\ntimeout = \"1s\"\n");
  std::string csv = "email,name\n";
  for (int i = 0; i < 20; ++i) csv += "p" + std::to_string(i) + "@pref.test,n\n";
  for (int i = 0; i < 5; ++i) csv += "a" + std::to_string(i) + "@aonly.test,n\n";
  csv += "x@nullmx.test,n\nx@gone.test,n\n";
  WriteFile(dir / "list.csv", csv);
  WriteFile(dir / "msg.eml", "From: a@sender.example\nSubject: hi {{name}}\n\nbody\n");
  WriteFile(dir / "c.toml",
            "name = \"dns\"\ntemplate = \"msg.eml\"\nrecipients = \"list.csv\"\n"
            "from = \"a@sender.example\"\n");
  RunResult r = RunSalvo(dir, {"send", dir / "c.toml", "--config", cfg, "--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["delivered"].get<int>(), 25);
  EXPECT_EQ(summary["bounced"].get<int>(), 2);  // null MX and NXDOMAIN: permanent at once
  mx20->Kill();
  mx30->Kill();
  // Preference 10 refused; everything for pref.test went to preference 20,
  // none to 30; the A-only domain used its own address (implicit MX).
  EXPECT_EQ(stats("mx20")["domains"]["pref.test"]["delivered"].get<int>(), 20);
  EXPECT_FALSE(stats("mx30")["domains"].contains("pref.test"));
  EXPECT_EQ(stats("mx30")["domains"]["aonly.test"]["delivered"].get<int>(), 5);

  // The null MX is typed by the resolver and mapped by the failure module:
  // category bad-domain with "null MX" in the recipient's record, and in
  // `campaign status`.
  RunResult st = RunSalvo(dir, {"campaign", "status", "dns", "--json", "--config", cfg});
  ASSERT_EQ(st.code, 0) << st.err << st.out;
  auto status = nlohmann::json::parse(st.out);
  EXPECT_EQ(status["categories"]["bad-domain"].get<int>(), 2) << st.out;  // and NXDOMAIN
  RunResult text = RunSalvo(dir, {"campaign", "status", "dns", "--config", cfg});
  EXPECT_THAT(text.out, ::testing::HasSubstr("bad-domain 2")) << text.out;
  auto spool = queue::Spool::Open(dir / "data", {});
  ASSERT_TRUE(spool.ok()) << spool.status();
  auto campaign = (*spool)->FindCampaign("dns");
  ASSERT_TRUE(campaign.ok()) << campaign.status();
  bool seen = false;
  for (uint64_t id = 0; id < 40; ++id) {
    auto v = (*spool)->GetRecipient(*campaign, static_cast<queue::RecipientId>(id));
    if (!v.ok() || v->email != "x@nullmx.test") continue;
    seen = true;
    EXPECT_EQ(v->state, queue::RecipientState::kBounced);
    EXPECT_EQ(v->category, "bad-domain");
    EXPECT_THAT(v->last_reply, ::testing::HasSubstr("null MX")) << v->last_reply;
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace salvo::itest
