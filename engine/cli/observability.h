#pragma once
// What `salvo run` and `salvo send` start beside the engine so operators can
// watch it: the metrics registry (label tables from [metrics]) with the
// queue gauges fed from the spool, the Prometheus endpoint, and the delivery
// log writer ([delivery_log]). Built on the main thread before the engine,
// torn down after it (Stop the delivery log once the shards have joined).
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/config/config.h"
#include "engine/deliverylog/writer.h"
#include "metrics/metrics.h"
#include "prometheus/exposer.h"
#include "queue/spool.h"

namespace salvo::cli {

struct Observability {
  std::shared_ptr<metrics::Registry> registry;
  std::unique_ptr<prometheus::Exposer> exposer;       // null: no endpoint
  std::unique_ptr<deliverylog::Writer> delivery_log;  // null: no delivery log
};

// `listen`: the address to serve ("" = none). When `required`, failing to
// bind it is an error; otherwise (the built-in default of `salvo run`) it is
// a warning and the engine runs without an endpoint. `spool` (may be null)
// feeds salvo_queue_recipients; it must outlive the returned registry's use.
absl::StatusOr<Observability> StartObservability(const config::Config& config,
                                                 const std::string& listen, bool required,
                                                 const queue::Spool* spool);

// salvo_queue_recipients samples: every campaign's recipients by state;
// queued and deferred recipients of a paused campaign count as "paused".
metrics::QueueSource QueueMetricsSource(const queue::Spool* spool);

}  // namespace salvo::cli
