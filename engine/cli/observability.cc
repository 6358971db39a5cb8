#include "engine/cli/observability.h"

#include <utility>
#include <vector>

#include "engine/common/log.h"
#include "queue/campaign.h"

namespace salvo::cli {

metrics::QueueSource QueueMetricsSource(const queue::Spool* spool) {
  return [spool] {
    std::vector<metrics::CampaignQueueSample> samples;
    for (const queue::CampaignInfo& info : spool->ListCampaigns()) {
      if (info.state == queue::CampaignState::kLoading) continue;
      absl::StatusOr<queue::StateCounts> counts = spool->Counts(info.id);
      if (!counts.ok()) continue;  // removed meanwhile
      metrics::CampaignQueueSample s;
      s.id = queue::Value(info.id);
      s.name = info.name;
      const bool paused = info.state == queue::CampaignState::kPaused;
      uint64_t held = 0;
      for (size_t i = 0; i < queue::kNumRecipientStates; ++i) {
        auto state = static_cast<queue::RecipientState>(i);
        uint64_t n = (*counts)[state];
        if (paused && (state == queue::RecipientState::kQueued ||
                       state == queue::RecipientState::kDeferred)) {
          held += n;
          continue;
        }
        s.recipients.emplace_back(std::string(queue::RecipientStateName(state)), n);
      }
      if (paused) s.recipients.emplace_back("paused", held);
      samples.push_back(std::move(s));
    }
    return samples;
  };
}

absl::StatusOr<Observability> StartObservability(const config::Config& config,
                                                 const std::string& listen, bool required,
                                                 const queue::Spool* spool) {
  Observability o;
  metrics::RegistryOptions ro;
  if (config.metrics.domains) ro.domains = *config.metrics.domains;
  ro.max_campaigns = config.metrics.max_campaigns;
  o.registry = std::make_shared<metrics::Registry>(std::move(ro));
  if (spool) {
    o.registry->SetQueueSource(QueueMetricsSource(spool));
    o.registry->SetSpoolHealthSource([spool] {
      const queue::SpoolHealth h = spool->Health();
      return metrics::SpoolSample{h.writable, h.write_errors, h.held_outcomes};
    });
  }
  if (!listen.empty()) {
    auto e = metrics::StartExposer(listen, o.registry);
    if (e.ok()) {
      o.exposer = std::move(*e);
      SALVO_LOG(kInfo, "metrics on http://{}/metrics", listen);
    } else if (required) {
      return e.status();
    } else {
      SALVO_LOG(kWarning, "{} (set metrics.listen to another address, or \"\" for none)",
                std::string(e.status().message()));
    }
  }
  if (!config.delivery_log.path.empty()) {
    deliverylog::WriterOptions wo;
    wo.path = config.delivery_log.path;
    wo.rotate_bytes = config.delivery_log.rotate_bytes;
    wo.rotate_interval = absl::Seconds(config.delivery_log.rotate_interval.count());
    auto w = deliverylog::Writer::Open(std::move(wo));
    if (!w.ok()) return w.status();
    o.delivery_log = std::move(*w);
  }
  return o;
}

}  // namespace salvo::cli
