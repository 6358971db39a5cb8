// SpoolSource against a real spool (RocksDB on a temp dir): issue 15 item 4
// at send time. A campaign none of whose copies can be composed is paused
// with the reason, which `salvo campaign status` shows, and its recipients
// stay queued, untried; it does not defer them until they expire.
#include "engine/delivery/spool_source.h"

#include <filesystem>
#include <memory>
#include <string>

#include "engine/common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue/admin_server.h"
#include "queue/spool.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace salvo::delivery {
namespace {

using ::testing::HasSubstr;

constexpr char kTemplate[] = "From: news@example.com\r\nSubject: Hi {{name}}\r\n\r\nHello\r\n";

TEST(SpoolSourceTest, ACompositionFailureOfEveryCopyPausesTheCampaignWithItsReason) {
  testsupport::TempDir dir("salvo-spool-source-test");
  testsupport::WriteFile(dir / "message.eml", kTemplate);
  testsupport::WriteFile(dir / "list.csv", "email,name\na@one.example,Ann\nb@two.example,Bob\n");
  testsupport::WriteFile(dir / "secret.txt", "s3cret\n");
  const std::string data = dir / "data";
  FakeClock clock;
  queue::Spool::Options so;
  so.clock = &clock;
  auto spool = queue::Spool::Open(data, so);
  ASSERT_TRUE(spool.ok()) << spool.status();
  queue::CampaignSpec spec;
  spec.name = "spring";
  spec.template_path = dir / "message.eml";
  spec.recipients_path = dir / "list.csv";
  spec.from = "news@example.com";
  spec.options = {{"unsubscribe_url", "https://u.example/unsub"},
                  {"unsubscribe_secret_file", dir / "secret.txt"}};
  auto report = (*spool)->LoadCampaign(spec, {});
  ASSERT_TRUE(report.ok()) << report.status();
  const queue::CampaignId id = report->id;

  // Between load and send the secret goes away: no copy can be composed.
  std::filesystem::remove(dir / "secret.txt");
  {
    SpoolSource source(spool->get(), nullptr, {});
    auto jobs = source.Fetch(100);
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    EXPECT_TRUE(jobs->empty());
  }
  auto info = (*spool)->GetCampaign(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, queue::CampaignState::kPaused);
  EXPECT_THAT(info->pause_reason,
              HasSubstr("cannot compose messages: option unsubscribe_secret_file: cannot read '" +
                        (dir / "secret.txt") + "'"));
  for (uint64_t rid : {1, 2}) {
    auto r = (*spool)->GetRecipient(id, queue::RecipientId{rid});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->state, queue::RecipientState::kQueued) << rid;
    EXPECT_EQ(r->attempts, 0u) << rid;
  }
  nlohmann::json st =
      queue::HandleAdminRequest(**spool, {{"op", "status"}, {"campaign", queue::Value(id)}}, {});
  EXPECT_THAT(st["status"].value("pause_reason", ""), HasSubstr("unsubscribe_secret_file"));

  // What the operator sees.
  spool->reset();
  testsupport::RunResult r = testsupport::RunShell(std::string(SALVO_BINARY) +
                                                   " campaign status spring --data-dir " + data);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(paused)"));
  EXPECT_THAT(r.out, HasSubstr("paused by the engine: cannot compose messages: option "
                               "unsubscribe_secret_file: cannot read"));
  EXPECT_THAT(r.out, HasSubstr("salvo campaign resume 1"));

  // Fixed and resumed: the recipients are sent, the reason is gone.
  spool = queue::Spool::Open(data, so);
  ASSERT_TRUE(spool.ok()) << spool.status();
  testsupport::WriteFile(dir / "secret.txt", "s3cret\n");
  ASSERT_TRUE((*spool)->Resume(id).ok());
  EXPECT_EQ((*spool)->GetCampaign(id)->pause_reason, "");
  clock.Advance(absl::Seconds(2));
  SpoolSource source(spool->get(), nullptr, {});
  auto jobs = source.Fetch(100);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 2u);
  bool permanent = false;
  ASSERT_TRUE(source.Compose(&(*jobs)[0], 0, &permanent).ok());
  EXPECT_THAT(*(*jobs)[0].body, HasSubstr("List-Unsubscribe: <https://u.example/unsub"));
}

// Issue 16 item 2: a dkim_domain the engine has no key for (its configuration
// has no [[dkim.keys]] at all) pauses the campaign with the reason; it was
// sent unsigned without a word.
TEST(SpoolSourceTest, ADkimDomainWithoutKeysPausesTheCampaignNotSentUnsigned) {
  testsupport::TempDir dir("salvo-spool-source-dkim-test");
  testsupport::WriteFile(dir / "message.eml", kTemplate);
  testsupport::WriteFile(dir / "list.csv", "email,name\na@one.example,Ann\n");
  auto spool = queue::Spool::Open(dir / "data", {});
  ASSERT_TRUE(spool.ok()) << spool.status();
  queue::CampaignSpec spec;
  spec.name = "signed";
  spec.template_path = dir / "message.eml";
  spec.recipients_path = dir / "list.csv";
  spec.from = "news@example.com";
  spec.dkim_domain = "example.com";
  auto report = (*spool)->LoadCampaign(spec, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto no_keys = dkim::KeyStore::Load({});
  ASSERT_TRUE(no_keys.ok()) << no_keys.status();
  SpoolSource source(spool->get(), *no_keys, {});
  auto jobs = source.Fetch(100);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_TRUE(jobs->empty());
  auto info = (*spool)->GetCampaign(report->id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, queue::CampaignState::kPaused);
  EXPECT_THAT(info->pause_reason,
              HasSubstr("asks for DKIM domain example.com but the configuration has no "
                        "[[dkim.keys]] for it"));
}

}  // namespace
}  // namespace salvo::delivery
