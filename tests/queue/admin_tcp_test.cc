// The admin protocol over TCP (queue.admin_listen), for fleet tools on other
// machines: the token is required when configured and compared exactly; an
// address that is not loopback is refused without one; the Unix socket
// keeps working without the token.
#include <string>

#include "gtest/gtest.h"
#include "queue/admin_server.h"
#include "tests/queue/spool_fixture.h"

namespace salvo::queue {
namespace {

using testing::SpoolTest;

class AdminTcpTest : public SpoolTest {
 protected:
  std::unique_ptr<AdminServer> Start(const std::string& listen, const std::string& token) {
    AdminOptions o;
    o.tcp_listen = listen;
    o.token = token;
    absl::StatusOr<std::unique_ptr<AdminServer>> s = AdminServer::Start(spool_.get(), o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
};

TEST_F(AdminTcpTest, TokenRequiredAndChecked) {
  std::unique_ptr<AdminServer> server = Start("127.0.0.1:0", "s3cret-token");
  ASSERT_NE(server, nullptr);
  const std::string addr = server->tcp_address();
  ASSERT_FALSE(addr.empty());
  EXPECT_TRUE(IsLoopbackAddress(addr)) << addr;

  absl::StatusOr<nlohmann::json> r = AdminCallTcp(addr, "s3cret-token", {{"op", "ping"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)["ok"].get<bool>()) << r->dump();

  for (const std::string bad : {"", "s3cret-toke", "s3cret-token2", "S3CRET-TOKEN"}) {
    r = AdminCallTcp(addr, bad, {{"op", "list"}});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE((*r)["ok"].get<bool>()) << bad;
    EXPECT_EQ((*r)["code"], "permission_denied") << r->dump();
  }
  // A token of the wrong JSON type is refused, not a crash.
  r = AdminCallTcp(addr, "", {{"op", "list"}, {"token", 42}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["code"], "permission_denied");

  // The same server's Unix socket needs no token (mode 0600 is its check).
  r = AdminCall(server->socket_path(), {{"op", "list"}}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)["ok"].get<bool>());

  // Real work with the token: list shows a loaded campaign with counts.
  Load("email,name\na@x.example,A\nb@y.example,B\n");
  r = AdminCallTcp(addr, "s3cret-token", {{"op", "list"}});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)["campaigns"].size(), 1u) << r->dump();
  EXPECT_EQ((*r)["campaigns"][0]["counts"]["queued"], 2);
}

TEST_F(AdminTcpTest, LoopbackWithoutTokenIsOpenElsewhereRefused) {
  std::unique_ptr<AdminServer> server = Start("127.0.0.1:0", "");
  ASSERT_NE(server, nullptr);
  absl::StatusOr<nlohmann::json> r = AdminCallTcp(server->tcp_address(), "", {{"op", "ping"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)["ok"].get<bool>());
  server.reset();

  // Refused before anything binds: no wildcard socket is ever opened.
  AdminOptions o;
  o.tcp_listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<AdminServer>> s = AdminServer::Start(spool_.get(), o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("needs a token"), std::string::npos)
      << s.status();
  o.tcp_listen = "nonsense";
  s = AdminServer::Start(spool_.get(), o);
  EXPECT_FALSE(s.ok());
}

TEST_F(AdminTcpTest, NothingListeningIsUnavailable) {
  std::unique_ptr<AdminServer> server = Start("127.0.0.1:0", "t");
  ASSERT_NE(server, nullptr);
  const std::string addr = server->tcp_address();
  server.reset();
  absl::StatusOr<nlohmann::json> r = AdminCallTcp(addr, "t", {{"op", "ping"}}, absl::Seconds(2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

TEST_F(AdminTcpTest, LoadWithANodeShare) {
  std::unique_ptr<AdminServer> server = Start("127.0.0.1:0", "t");
  ASSERT_NE(server, nullptr);
  CampaignSpec spec = Spec("email,name\na@x.example,A\nb@y.example,B\nc@z.example,C\n", "c");
  uint64_t accepted = 0;
  absl::StatusOr<nlohmann::json> r;
  for (const char* node : {"0/2", "1/2"}) {
    // Both shares into the same spool: between them, every recipient once
    // (the same campaign twice, so duplicates must be allowed).
    r = AdminCallTcp(server->tcp_address(), "t",
                     {{"op", "load"},
                      {"spec", SpecToJson(spec)},
                      {"node", node},
                      {"allow_duplicate_name", true}});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)["ok"].get<bool>()) << r->dump();
    accepted += (*r)["report"]["accepted"].get<uint64_t>();
    EXPECT_EQ(
        (*r)["report"]["accepted"].get<uint64_t>() + (*r)["report"]["other_nodes"].get<uint64_t>(),
        3u);
  }
  EXPECT_EQ(accepted, 3u);
  r = AdminCallTcp(server->tcp_address(), "t",
                   {{"op", "load"}, {"spec", SpecToJson(spec)}, {"node", "2/2"}});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE((*r)["ok"].get<bool>());
  EXPECT_EQ((*r)["code"], "invalid_argument") << r->dump();
}

}  // namespace
}  // namespace salvo::queue
