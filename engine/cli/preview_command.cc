// salvo campaign preview ID --recipient EMAIL [--data-dir DIR] [--config FILE]
//                       [--no-sign] [--date UNIX_SECONDS]
//
// Prints to stdout the exact bytes one recipient's copy would be sent as
// (CRLF line ends, before SMTP dot-stuffing): the campaign's template rendered
// with that recipient's CSV values, Salvo's per-copy headers, and, when DKIM
// keys are configured (--config FILE, [dkim] keys), the DKIM-Signature
// field(s) prepended exactly as the engine signs. The campaign and the
// recipient come from the running engine over its admin socket (while
// `salvo run` holds the spool), else from the spool directly; composing and
// signing happen here, with this command's keys. Notes (what was or was not
// done) go to stderr, never into the message.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "dkim/key_store.h"
#include "dkim/signer.h"
#include "engine/cli/commands.h"
#include "engine/cli/wiring.h"
#include "engine/config/config.h"
#include "engine/delivery/composer.h"
#include "queue/admin_server.h"
#include "queue/keys.h"
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

// Hex to bytes; false on an odd length or a non-hex digit (this abseil's
// HexStringToBytes does not check).
bool FromHex(const std::string& hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  for (char c : hex)
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  *out = absl::HexStringToBytes(hex);
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

  // The campaign, its template and the recipient: from the running engine
  // over its admin socket, else from the spool directly.
  std::string socket = queue::AdminSocketPath(data_dir);
  if (!args.config_file.empty()) {
    auto config = config::LoadConfig(args.config_file);
    if (config.ok() && !config->queue.admin_socket.empty()) socket = config->queue.admin_socket;
  }
  std::optional<queue::CampaignInfo> info;
  std::string text;
  std::optional<queue::RecipientView> found;
  absl::StatusOr<nlohmann::json> remote = queue::AdminCall(
      socket, {{"op", "preview_data"}, {"campaign", args.campaign}, {"recipient", args.recipient}});
  if (remote.ok()) {
    if (!remote->value("ok", false)) {
      PrintError(remote->value("error", std::string("preview failed")));
      return kExitFailure;
    }
    std::string record, bytes;
    if (!FromHex((*remote)["campaign_record"].get<std::string>(), &record) ||
        !FromHex((*remote)["template"].get<std::string>(), &text)) {
      PrintError("the engine's answer to preview_data is malformed");
      return kExitFailure;
    }
    auto decoded = queue::keys::DecodeCampaign(record);
    if (!decoded.ok()) {
      PrintError(Msg(decoded.status()));
      return kExitFailure;
    }
    info = std::move(*decoded);
    const nlohmann::json& r = (*remote)["recipient"];
    queue::RecipientView v;
    v.id = queue::RecipientId{r["id"].get<uint64_t>()};
    v.email = r["email"].get<std::string>();
    for (const auto& x : r["values"]) {
      v.values.emplace_back();
      if (!FromHex(x.get<std::string>(), &v.values.back())) {
        PrintError("the engine's answer to preview_data is malformed");
        return kExitFailure;
      }
    }
    found = std::move(v);
  } else if (remote.status().code() != absl::StatusCode::kUnavailable) {
    PrintError(Msg(remote.status()));
    return kExitFailure;
  } else {
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
    auto i = (*spool)->GetCampaign(*id);
    auto t = (*spool)->GetTemplate(*id);
    if (!i.ok() || !t.ok()) {
      PrintError(Msg(!i.ok() ? i.status() : t.status()));
      return kExitFailure;
    }
    info = std::move(*i);
    text = std::move(*t);
    // Compared as the queue compares addresses (case-insensitively).
    auto matches = (*spool)->FindRecipient(args.recipient, *id);
    if (!matches.ok()) {
      PrintError(Msg(matches.status()));
      return kExitFailure;
    }
    if (matches->empty()) {
      PrintError("recipient " + args.recipient + " is not in campaign " +
                 std::to_string(queue::Value(*id)) + " (" + info->name + ")");
      return kExitFailure;
    }
    found = std::move(matches->front());
  }
  const queue::CampaignId id = info->id;
  const std::string campaign_id = std::to_string(queue::Value(id));

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
      delivery::CampaignComposer::Prepare(queue::Value(id), *info, text, store.get());
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
