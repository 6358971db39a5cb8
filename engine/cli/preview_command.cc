// salvo campaign preview ID --recipient EMAIL [--data-dir DIR] [--config FILE]
//                       [--no-sign] [--date UNIX_SECONDS]
//
// Prints to stdout the exact bytes one recipient's copy would be sent as
// (CRLF line ends, before SMTP dot-stuffing): the campaign's template rendered
// with that recipient's CSV values, Salvo's per-copy headers, and, when DKIM
// keys are configured (--config FILE, [dkim] keys), the DKIM-Signature
// field(s) prepended exactly as the engine signs. Needs the spool: it opens
// the data directory, so it fails with a clear error while `salvo run` holds
// it. Notes (what was or was not done) go to stderr, never into the message.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "dkim/key_store.h"
#include "dkim/signer.h"
#include "engine/cli/commands.h"
#include "engine/cli/wiring.h"
#include "engine/config/config.h"
#include "engine/delivery/composer.h"
#include "queue/spool.h"

namespace salvo::cli {
namespace {

struct PreviewArgs {
  std::string campaign;
  std::string recipient;
  std::string data_dir;
  std::string config_file;
  bool no_sign = false;
  int64_t date = -1;
  std::string message_id_nonce;
};

// Debian's abseil has its own string_view type: copy messages out.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

bool SameAddress(std::string_view a, std::string_view b) {
  // Local parts compare exactly, domains case-insensitively.
  size_t at_a = a.rfind('@'), at_b = b.rfind('@');
  if (at_a == std::string_view::npos || at_b == std::string_view::npos) return a == b;
  if (a.substr(0, at_a) != b.substr(0, at_b)) return false;
  std::string_view da = a.substr(at_a + 1), db = b.substr(at_b + 1);
  if (da.size() != db.size()) return false;
  for (size_t i = 0; i < da.size(); ++i) {
    char x = da[i], y = db[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

int RunPreview(const PreviewArgs& args) {
  std::string data_dir = args.data_dir;
  std::vector<dkim::KeySpec> key_specs;
  if (!args.config_file.empty()) {
    auto config = config::LoadConfig(args.config_file);
    if (!config.ok()) {
      PrintError(Msg(config.status()));
      return kExitFailure;
    }
    if (data_dir.empty()) data_dir = config->data_dir;
    key_specs = KeySpecsFromConfig(*config);
  }
  if (data_dir.empty()) data_dir = "./salvo-data";

  queue::Spool::Options options;
  options.create_if_missing = false;
  auto spool = queue::Spool::Open(data_dir, options);
  if (!spool.ok()) {
    PrintError("cannot open the spool in " + data_dir + ": " + Msg(spool.status()));
    return kExitFailure;
  }
  auto id = (*spool)->FindCampaign(args.campaign);
  if (!id.ok()) {
    PrintError(Msg(id.status()));
    return kExitFailure;
  }
  auto info = (*spool)->GetCampaign(*id);
  auto text = (*spool)->GetTemplate(*id);
  auto counts = (*spool)->Counts(*id);
  if (!info.ok() || !text.ok() || !counts.ok()) {
    PrintError(Msg(!info.ok() ? info.status() : !text.ok() ? text.status() : counts.status()));
    return kExitFailure;
  }
  // Find the recipient (the spool is keyed by recipient id; a preview can
  // afford one pass over the campaign).
  std::optional<queue::RecipientView> found;
  for (uint64_t r = 1; r <= counts->Total(); ++r) {
    auto view = (*spool)->GetRecipient(*id, queue::RecipientId{r});
    if (view.ok() && SameAddress(view->email, args.recipient)) {
      found = std::move(*view);
      break;
    }
  }
  const std::string campaign_id = std::to_string(queue::Value(*id));
  if (!found) {
    PrintError("recipient " + args.recipient + " is not in campaign " + campaign_id + " (" +
               info->name + ")");
    return kExitFailure;
  }

  // The engine's composer (engine/delivery/composer.h): the same bytes.
  std::shared_ptr<const dkim::KeyStore> store;
  if (!args.no_sign && !key_specs.empty()) {
    auto loaded = dkim::KeyStore::Load(key_specs);
    if (!loaded.ok()) {
      PrintError(Msg(loaded.status()));
      return kExitFailure;
    }
    store = std::move(*loaded);
  }
  std::shared_ptr<const delivery::CampaignComposer> composer =
      delivery::CampaignComposer::Prepare(queue::Value(*id), *info, *text, store.get());
  if (!composer->error().ok()) {
    PrintError("campaign " + campaign_id + ": " + Msg(composer->error()));
    return kExitFailure;
  }
  delivery::CopyRequest copy;
  copy.recipient = found->email;
  copy.values.assign(found->values.begin(), found->values.end());
  copy.recipient_id = queue::Value(found->id);
  copy.date = args.date >= 0 ? absl::FromUnixSeconds(args.date) : absl::Now();
  if (!args.message_id_nonce.empty()) {
    uint64_t nonce = 0;
    if (args.message_id_nonce.size() > 16 || !absl::SimpleHexAtoi(args.message_id_nonce, &nonce) ||
        nonce == 0) {
      PrintError(
          "--message-id-nonce wants the 16 hex digits after the recipient ID in a "
          "Message-ID, got '" +
          args.message_id_nonce + "'");
      return kExitUsage;
    }
    copy.message_id_nonce = nonce;
  }
  if (args.no_sign) {
    std::fprintf(stderr, "salvo: note: not signed (--no-sign)\n");
  } else if (key_specs.empty()) {
    std::fprintf(stderr,
                 "salvo: note: not signed: no DKIM keys configured (pass --config FILE with "
                 "[dkim] keys)\n");
  } else if (!composer->unsigned_reason().empty()) {
    std::fprintf(stderr, "salvo: note: not signed (the engine would send it unsigned): %s\n",
                 composer->unsigned_reason().c_str());
  }
  dkim::Signer signer;
  bool permanent = false;
  absl::StatusOr<delivery::ComposedCopy> result =
      composer->Compose(copy, &signer, !args.no_sign, &permanent);
  if (!result.ok()) {
    PrintError("recipient " + found->email + ": " + Msg(result.status()));
    return kExitFailure;
  }
  std::fwrite(result->bytes.data(), 1, result->bytes.size(), stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "salvo: note: %zu octets; 8BITMIME %s; SMTPUTF8 %s\n", result->bytes.size(),
               result->needs_8bitmime ? "required" : "not needed",
               result->needs_smtputf8 ? "required" : "not needed");
  return kExitOk;
}

}  // namespace

void RegisterPreviewCommand(CLI::App& app, CommandContext& ctx) {
  CLI::App* campaign = app.get_subcommand("campaign");
  CLI::App* preview = campaign->add_subcommand(
      "preview", "Print the exact bytes one recipient's copy would be sent as (after signing)");
  auto args = std::make_shared<PreviewArgs>();
  preview->add_option("campaign", args->campaign, "Campaign ID or name")->required();
  preview->add_option("--recipient", args->recipient, "Recipient address (as loaded)")->required();
  preview->add_option("--data-dir", args->data_dir,
                      "Spool directory (default: the config's data_dir, else ./salvo-data)");
  preview->add_option("--config", args->config_file,
                      "salvo run configuration: data_dir and [dkim] keys for signing");
  preview->add_flag("--no-sign", args->no_sign, "Do not add DKIM signatures");
  preview->add_option("--date", args->date, "Unix time for the Date header (default: now)");
  preview->add_option("--message-id-nonce", args->message_id_nonce,
                      "The 16 hex digits of a sent copy's Message-ID (after the recipient ID), to "
                      "reproduce that copy byte for byte (default: random, as the engine)");
  preview->callback([&ctx, args] { ctx.exit_code = RunPreview(*args); });
}

}  // namespace salvo::cli
