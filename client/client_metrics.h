#ifndef CELLAR_CLIENT_CLIENT_METRICS_H_
#define CELLAR_CLIENT_CLIENT_METRICS_H_

// Prometheus metrics of cellar client sessions, for applications that
// export metrics (docs/observability.md, "Client library"). The values are
// read from `stats` at scrape time, so the data path pays nothing:
//
//   auto metrics = cellar::client::MakeClientMetrics(
//       [&] { return client->stats(); }, {{"app", "shop"}});
//   exposer.RegisterCollectable(metrics);   // or any prometheus registry
//
// Families (counters, `cellar_client_` prefix): cache_hits_total,
// cache_misses_total, checksum_failures_total, commits_total,
// conflicts_total, commit_failures_total, reconnects_total,
// unreachable_reports_total, unreachable_reports_failed_total. `stats` may sum
// several clients; it must be thread-safe (Client::stats() is).

#include <functional>
#include <memory>

#include <prometheus/collectable.h>

#include "client/client.h"
#include "services/common/collector.h"

namespace cellar::client {

std::shared_ptr<prometheus::Collectable> MakeClientMetrics(
    std::function<ClientStats()> stats, common::MetricLabels const_labels = {});

}  // namespace cellar::client

#endif  // CELLAR_CLIENT_CLIENT_METRICS_H_
