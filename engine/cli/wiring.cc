#include "engine/cli/wiring.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/time/clock.h"
#include "engine/common/log.h"
#include "engine/delivery/composer.h"
#include "engine/message/template.h"
#include "engine/reactor/reactor.h"

namespace salvo::cli {

queue::TemplateValidator TemplateValidator() {
  return [](std::string_view text, std::string_view path,
            const std::vector<std::string>& columns) -> absl::Status {
    absl::StatusOr<message::Template> t = message::Template::Parse(text, path);
    if (!t.ok()) return t.status();
    return t->CheckColumns(columns);
  };
}

queue::FirstCopyCheck FirstCopyCheck(std::shared_ptr<const dkim::KeyStore> keys,
                                     message::VerpSettings verp) {
  return [keys, verp](const queue::CampaignInfo& info, std::string_view text,
                      const std::vector<std::string>& row) -> absl::Status {
    std::shared_ptr<const delivery::CampaignComposer> composer =
        delivery::CampaignComposer::Prepare(queue::Value(info.id), info, std::string(text),
                                            keys.get(), verp);
    if (!composer->error().ok()) return composer->error();
    delivery::CopyRequest copy;
    for (size_t i = 0; i < info.columns.size() && i < row.size(); ++i)
      if (info.columns[i] == "email") copy.recipient = row[i];
    copy.values.assign(row.begin(), row.end());
    copy.recipient_id = 1;
    copy.date = absl::Now();
    copy.message_id_nonce = 1;
    dkim::Signer signer;
    bool permanent = false;
    absl::StatusOr<delivery::ComposedCopy> composed =
        composer->Compose(copy, &signer, composer->signs(), &permanent);
    return composed.status();
  };
}

absl::StatusOr<message::VerpSettings> VerpFromConfig(const config::Config& config) {
  message::VerpSettings v;
  v.domain = config.verp.domain;
  v.prefix = config.verp.prefix;
  if (!config.verp.secret_file.empty()) {
    auto secret = message::ReadVerpSecretFile(config.verp.secret_file, "[verp] secret_file");
    if (!secret.ok()) return secret.status();
    v.secret = std::move(*secret);
  } else if (const char* env = std::getenv("SALVO_VERP_SECRET"); env && *env) {
    v.secret = env;
  }
  if (v.enabled() && v.secret.empty())
    return absl::InvalidArgumentError(
        "[verp] domain = \"" + v.domain +
        "\" needs an HMAC secret: set [verp] secret_file or the SALVO_VERP_SECRET environment "
        "variable");
  return v;
}

std::vector<dkim::KeySpec> KeySpecsFromConfig(const config::Config& config) {
  std::vector<dkim::KeySpec> specs;
  for (const config::DkimKeyConfig& k : config.dkim_keys) {
    dkim::KeySpec spec;
    spec.domain = k.domain;
    spec.selector = k.selector;
    spec.path = k.key_file;
    spec.expected =
        k.type == config::DkimKeyType::kEd25519 ? dkim::KeyType::kEd25519 : dkim::KeyType::kRsa;
    specs.push_back(std::move(spec));
  }
  return specs;
}

absl::StatusOr<std::shared_ptr<const dkim::KeyStore>> LoadKeys(const config::Config& config) {
  auto keys = dkim::KeyStore::Load(KeySpecsFromConfig(config));
  if (!keys.ok()) return keys.status();
  return std::shared_ptr<const dkim::KeyStore>(std::move(*keys));
}

absl::StatusOr<EngineInputs> OpenEngineInputs(config::Config config) {
  EngineInputs out;
  out.config = std::move(config);
  if (absl::Status s = reactor::Reactor::CheckIoUringAvailable(); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::create_directories(out.config.data_dir, ec);
  if (ec)
    return absl::FailedPreconditionError(out.config.data_dir +
                                         ": cannot create data directory: " + ec.message());
  // A `salvo campaign ...` command may hold the spool for a moment (it opens
  // it directly when no engine runs): retry briefly before giving up.
  queue::Spool::Options spool_options;
  spool_options.sync_writes = out.config.queue.sync_writes;
  spool_options.history_for_first_deliveries = out.config.queue.history_for_first_deliveries;
  spool_options.min_free_bytes = out.config.queue.min_free_bytes;
  spool_options.rescue_dir = out.config.queue.rescue_dir;
  if (const std::string& rd = out.config.queue.rescue_dir;
      !rd.empty() && (!std::filesystem::is_directory(rd, ec) || ::access(rd.c_str(), W_OK) != 0))
    return absl::FailedPreconditionError("queue.rescue_dir: '" + rd +
                                         "' is not a directory this process can write to");
  auto spool = queue::Spool::Open(out.config.data_dir, spool_options);
  for (int i = 0; i < 50 && !spool.ok() && spool.status().code() == absl::StatusCode::kUnavailable;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spool = queue::Spool::Open(out.config.data_dir, spool_options);
  }
  if (!spool.ok()) {
    if (spool.status().code() == absl::StatusCode::kUnavailable)
      return absl::UnavailableError(out.config.data_dir +
                                    " is in use by another process (a running 'salvo run'?): " +
                                    std::string(spool.status().message()));
    return spool.status();
  }
  out.spool = std::move(*spool);
  auto keys = LoadKeys(out.config);
  if (!keys.ok()) return keys.status();
  out.keys = std::move(*keys);
  auto verp = VerpFromConfig(out.config);
  if (!verp.ok()) return verp.status();
  out.verp = std::move(*verp);
  auto recovered = out.spool->RecoverInFlight();
  if (!recovered.ok())
    return absl::InternalError("recovering in-flight recipients: " +
                               std::string(recovered.status().message()));
  if (*recovered > 0)
    SALVO_LOG(kInfo, "recovered {} recipient(s) left in flight by the previous run", *recovered);
  // Outcomes a dead disk kept from being written are recorded before anything
  // is sent: otherwise those recipients would get the message again.
  if (!out.config.queue.rescue_dir.empty()) {
    auto rescued = out.spool->RecoverRescueDir(out.config.queue.rescue_dir);
    if (!rescued.ok())
      return absl::Status(
          rescued.status().code(),
          "queue.rescue_dir: " + std::string(rescued.status().message()) +
              " (nothing was sent; fix or move the file aside, and its recipients are sent "
              "again)");
  }
  RaiseFdLimit();
  return out;
}

void RaiseFdLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace salvo::cli
