// The admin socket, in-process: a real AdminServer on a real spool, driven
// through AdminCall exactly as the CLI does while `salvo run` owns the spool.
#include "queue/admin_server.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

using testing::SpoolTest;

class AdminTest : public SpoolTest {
 protected:
  void SetUp() override {
    SpoolTest::SetUp();
    absl::StatusOr<std::unique_ptr<AdminServer>> s = AdminServer::Start(spool_.get(), {});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  void TearDown() override { server_.reset(); }

  nlohmann::json Call(const nlohmann::json& req) {
    absl::StatusOr<nlohmann::json> r =
        AdminCall(AdminSocketPath(dir_.File("data")), req, absl::Seconds(30));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : nlohmann::json();
  }

  std::unique_ptr<AdminServer> server_;
};

TEST_F(AdminTest, LoadListStatusPauseResumeCancelOverTheSocket) {
  CampaignSpec spec = Spec("email,name\na@x.example,A\nb@y.example,B\nbad,C\n", "spring");
  nlohmann::json r = Call({{"op", "load"}, {"spec", SpecToJson(spec)}});
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["report"]["accepted"], 2);
  EXPECT_EQ(r["report"]["invalid"], 1);
  const uint64_t id = r["report"]["id"];

  r = Call({{"op", "list"}});
  ASSERT_TRUE(r["ok"]);
  ASSERT_EQ(r["campaigns"].size(), 1u);
  EXPECT_EQ(r["campaigns"][0]["name"], "spring");
  EXPECT_EQ(r["campaigns"][0]["counts"]["queued"], 2);

  r = Call({{"op", "status"}, {"campaign", "spring"}});
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["status"]["id"], id);
  EXPECT_EQ(r["status"]["top_domains"].size(), 2u);
  EXPECT_EQ(r["status"]["done"], false);

  r = Call({{"op", "pause"}, {"campaign", std::to_string(id)}});
  EXPECT_EQ(r["state"], "paused") << r.dump();
  EXPECT_TRUE(LeaseAll(clock_.Now()).empty());  // the engine side sees it at once
  r = Call({{"op", "resume"}, {"campaign", id}});
  EXPECT_EQ(r["state"], "active") << r.dump();
  EXPECT_EQ(LeaseAll(clock_.Now()).size(), 2u);
  r = Call({{"op", "cancel"}, {"campaign", id}});
  EXPECT_EQ(r["state"], "cancelled") << r.dump();

  r = Call({{"op", "status"}, {"campaign", "nope"}});
  EXPECT_FALSE(r["ok"]);
  EXPECT_EQ(r["code"], "not_found");
}

TEST_F(AdminTest, SuppressionOverTheSocket) {
  nlohmann::json r = Call({{"op", "suppression_add"}, {"emails", {"a@x.example", "B@Y.example"}}});
  EXPECT_EQ(r["added"], 2) << r.dump();
  r = Call({{"op", "suppression_list"}});
  ASSERT_EQ(r["entries"].size(), 2u);
  EXPECT_EQ(r["entries"][1]["email"], "b@y.example");  // by key (lower-cased), bytewise order
  r = Call({{"op", "suppression_remove"}, {"emails", {"a@x.example"}}});
  EXPECT_EQ(r["removed"], 1);
  r = Call({{"op", "suppression_remove"}, {"emails", {"a@x.example"}}});
  EXPECT_FALSE(r["ok"]);
  std::string f = dir_.Write("unsub.txt", "c@z.example\nnope\n");
  r = Call({{"op", "suppression_import"}, {"path", f}});
  EXPECT_EQ(r["report"]["added"], 1) << r.dump();
  EXPECT_EQ(r["report"]["invalid"], 1);
  EXPECT_TRUE(spool_->IsSuppressed("c@z.example"));
}

TEST_F(AdminTest, HostileRequestsGetErrorsNotCrashes) {
  for (const nlohmann::json& bad :
       {nlohmann::json::array(), nlohmann::json{{"op", 5}}, nlohmann::json{{"op", "explode"}},
        nlohmann::json{{"op", "load"}, {"spec", "x"}},
        nlohmann::json{{"op", "status"}, {"campaign", {1, 2}}},
        nlohmann::json{{"op", "suppression_add"}, {"emails", 7}}}) {
    nlohmann::json r = Call(bad);
    EXPECT_FALSE(r["ok"]) << bad.dump();
    EXPECT_TRUE(r["error"].is_string());
  }
  // Raw garbage and an unterminated huge line.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = AdminSocketPath(dir_.File("data"));
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::string junk = "{not json\n";
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, n).find("not valid JSON"), std::string::npos);
  std::string huge((2 << 20), 'x');
  (void)::send(fd, huge.data(), huge.size(), MSG_NOSIGNAL);
  ::close(fd);
  // Still serving.
  EXPECT_TRUE(Call({{"op", "ping"}})["ok"]);
  // A count that is a huge float or negative (found by the admin_request
  // fuzzer: UB in a cast to size_t) falls back to the default.
  EXPECT_TRUE(Call(
      nlohmann::json::parse(R"({"op": "suppression_list", "limit": 2.9e44, "after": ""})"))["ok"]);
  EXPECT_TRUE(Call({{"op", "suppression_list"}, {"limit", -5}})["ok"]);
}

TEST(AdminCallTest, NoEngineMeansUnavailable) {
  testing::TempDir d;
  absl::StatusOr<nlohmann::json> r =
      AdminCall(AdminSocketPath(d.path()), {{"op", "list"}}, absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

}  // namespace
}  // namespace salvo::queue
