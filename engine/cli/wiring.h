#pragma once
// The pieces every command that touches a campaign wires the same way, once:
// the template check at load, the DKIM key specs from the configuration and
// the key store, and the process limits the engine needs. `salvo run`,
// `salvo send`, `salvo bench`, `salvo campaign load` and `salvo campaign
// preview` all call these, so a change reaches every command.
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "dkim/key_store.h"
#include "engine/config/config.h"
#include "engine/message/verp.h"
#include "queue/campaign.h"
#include "queue/spool.h"

namespace salvo::cli {

// The template check at load time: the message library's parser and the
// columns every placeholder needs.
queue::TemplateValidator TemplateValidator();

// The first-copy check at load: the campaign composed exactly as the engine
// composes it (delivery::CampaignComposer: template, unsubscribe settings and
// their secret file, Feedback-ID, DKIM keys when `keys` is given) for the
// first recipient, so a campaign that cannot send is refused at load.
// `verp`: the config's [verp] (VerpFromConfig), which the campaign's options
// override; a VERP campaign without a secret is refused.
queue::FirstCopyCheck FirstCopyCheck(std::shared_ptr<const dkim::KeyStore> keys,
                                     message::VerpSettings verp = {});

// The config's [verp] with its secret read: secret_file, else the
// SALVO_VERP_SECRET environment variable. A domain without a readable,
// non-empty secret is an error naming the key (never the secret). What the
// engine composes return paths with and report intake verifies tokens with.
absl::StatusOr<message::VerpSettings> VerpFromConfig(const config::Config& config);

// [[dkim.keys]] of the configuration as key specs, in file order.
std::vector<dkim::KeySpec> KeySpecsFromConfig(const config::Config& config);

// The key store of the configuration (empty when it has no keys); the error
// names the key file.
absl::StatusOr<std::shared_ptr<const dkim::KeyStore>> LoadKeys(const config::Config& config);

// What the engine runs on: the configuration, the opened spool and the
// DKIM keys.
struct EngineInputs {
  config::Config config;
  std::unique_ptr<queue::Spool> spool;
  std::shared_ptr<const dkim::KeyStore> keys;
  message::VerpSettings verp;  // [verp], secret read
};

// The one way `run`, `send` and `bench` get there from a configuration:
// io_uring usable, data directory created, spool opened (retried for up to
// 5 s while a `salvo campaign` command holds it), DKIM keys and the [verp]
// secret loaded, recipients
// left in flight by a previous run made due again, the open-files limit
// raised. The error is one line naming the cause.
absl::StatusOr<EngineInputs> OpenEngineInputs(config::Config config);

// The engine holds thousands of sockets: raise the soft open-files limit to
// the hard one.
void RaiseFdLimit();

}  // namespace salvo::cli
