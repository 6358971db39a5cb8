#include "engine/cli/inbound_wiring.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "engine/bounce/intake.h"
#include "engine/common/log.h"
#include "engine/sink/sink.h"
#include "engine/smtp/classifier.h"

namespace salvo::cli {

InboundServices::~InboundServices() {
  if (registry != nullptr) registry->SetInboundSource(nullptr);
  if (listener) listener->Stop();
  if (unsubscribe) unsubscribe->Stop();
}

absl::StatusOr<std::string> ProcessInboundMessage(queue::Spool& spool,
                                                  const message::VerpSettings& verp,
                                                  const queue::InboundMessage& message) {
  absl::StatusOr<std::string> unsubscribe = inbound::ProcessUnsubscribeMail(spool, message);
  if (unsubscribe.ok() || !absl::IsNotFound(unsubscribe.status())) return unsubscribe;
  bounce::IntakeOptions options;
  // The engine's rules (the shaping file's, reloaded on SIGHUP, then the
  // shipped ones): the same categories as synchronous replies.
  options.classifier = smtp::InstalledClassifier();
  options.verp = verp;
  // report_id stays "": the SHA-256 of the message, so the same report
  // delivered twice (a sender retrying after a lost 250) is applied once.
  absl::StatusOr<bounce::IntakeResult> r = bounce::ProcessReport(
      spool, options, message.raw, message.recipients.empty() ? "" : message.recipients[0]);
  if (!r.ok()) {
    // The spool could not record it: keep the message and try again.
    return absl::UnavailableError(std::string(r.status().message()));
  }
  std::string label(r->outcome == bounce::IntakeOutcome::kApplied
                        ? bounce::ReportKindName(r->kind)
                        : bounce::IntakeOutcomeName(r->outcome));
  for (char& c : label)
    if (c == '-') c = '_';
  SALVO_LOG(kInfo, "inbound: report from <{}> to <{}>: {}", message.mail_from,
            message.recipients.empty() ? "" : message.recipients[0], r->why);
  return label;
}

absl::StatusOr<std::unique_ptr<InboundServices>> StartInboundServices(const config::Config& config,
                                                                      queue::Spool* spool,
                                                                      metrics::Registry* registry,
                                                                      message::VerpSettings verp) {
  auto services = std::make_unique<InboundServices>();
  if (!config.inbound.listen.empty()) {
    inbound::InboundOptions o;
    absl::StatusOr<sink::ListenAddress> addr = sink::ParseListenAddress(config.inbound.listen);
    if (!addr.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("[inbound] listen: ", std::string(addr.status().message())));
    o.listen.push_back(*addr);
    o.domains = config.inbound.domains;
    o.hostname = config.inbound.hostname;
    if (o.hostname.empty()) o.hostname = config.delivery.helo_name;
    if (o.hostname.empty()) {
      char host[256] = {};
      o.hostname = gethostname(host, sizeof(host) - 1) == 0 && host[0] ? host : "localhost";
    }
    o.max_message_size = config.inbound.max_message_size;
    o.max_line = static_cast<size_t>(config.inbound.max_line);
    o.max_recipients = static_cast<size_t>(config.inbound.max_recipients);
    o.max_connections = static_cast<size_t>(config.inbound.max_connections);
    o.max_buffered_bytes = config.inbound.max_buffered_bytes;
    o.idle_timeout =
        std::chrono::seconds(static_cast<int64_t>(config.inbound.idle_timeout.count()));
    o.tls = config.inbound.tls;
    o.tls_cert = config.inbound.tls_cert;
    o.tls_key = config.inbound.tls_key;
    auto listener = inbound::InboundServer::Start(spool, std::move(o),
                                                  [spool, verp](const queue::InboundMessage& m) {
                                                    return ProcessInboundMessage(*spool, verp, m);
                                                  });
    if (!listener.ok()) return listener.status();
    services->listener = std::move(*listener);
    SALVO_LOG(kInfo, "inbound listener on {} for {} domain(s)",
              services->listener->Bound()[0].ToString(), config.inbound.domains.size());
  }
  if (!config.unsubscribe.listen.empty()) {
    auto server = inbound::UnsubscribeServer::Start(spool, config.unsubscribe.listen);
    if (!server.ok()) return server.status();
    services->unsubscribe = std::move(*server);
    SALVO_LOG(kInfo, "one-click unsubscribe endpoint on {}", config.unsubscribe.listen);
  }
  if (registry != nullptr && (services->listener || services->unsubscribe)) {
    services->registry = registry;
    inbound::InboundServer* listener = services->listener.get();
    inbound::UnsubscribeServer* unsubscribe = services->unsubscribe.get();
    registry->SetInboundSource([listener, unsubscribe] {
      metrics::InboundSample s;
      if (listener != nullptr) {
        inbound::InboundStats st = listener->Stats();
        s.listener = true;
        s.messages = std::move(st.messages);
        s.rejected = std::move(st.rejected);
        s.processed = std::move(st.processed);
        s.pending = st.pending;
        s.buffered_bytes = st.buffered_bytes;
      }
      if (unsubscribe != nullptr) {
        s.unsubscribe = true;
        s.unsubscribe_requests = unsubscribe->Counts();
      }
      return s;
    });
  }
  return services;
}

}  // namespace salvo::cli
