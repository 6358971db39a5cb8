#pragma once
// `salvo run`'s inbound side, wired from the configuration: the SMTP
// listener for bounces, complaints and unsubscribe mail ([inbound]) and the
// one-click unsubscribe endpoint ([unsubscribe]), with their metrics.
#include <memory>

#include "absl/status/statusor.h"
#include "engine/config/config.h"
#include "engine/inbound/server.h"
#include "engine/inbound/unsubscribe.h"
#include "engine/message/verp.h"
#include "metrics/metrics.h"
#include "queue/spool.h"

namespace salvo::cli {

struct InboundServices {
  std::unique_ptr<inbound::InboundServer> listener;         // null: [inbound] listen unset
  std::unique_ptr<inbound::UnsubscribeServer> unsubscribe;  // null: [unsubscribe] listen unset
  metrics::Registry* registry = nullptr;
  ~InboundServices();  // clears the metrics source, then stops both
};

// What the listener's processing thread does with one stored message: an
// unsubscribe request (Subject "unsubscribe CAMPAIGN TOKEN") is handled here;
// anything else goes to the report intake (bounce::ProcessReport, with the
// engine's installed classifier and the global VERP settings `verp`). The
// label: unsubscribe, unsubscribe_forged, the applied report's kind (bounce,
// delayed, complaint, auto_reply), or why nothing changed (duplicate,
// forged, unmatched, not_a_report). kUnavailable when the spool could not
// record it (the message stays stored).
absl::StatusOr<std::string> ProcessInboundMessage(queue::Spool& spool,
                                                  const message::VerpSettings& verp,
                                                  const queue::InboundMessage& message);

// Starts what the configuration asks for; errors name the key.
absl::StatusOr<std::unique_ptr<InboundServices>> StartInboundServices(
    const config::Config& config, queue::Spool* spool, metrics::Registry* registry,
    message::VerpSettings verp = {});

}  // namespace salvo::cli
