#ifndef CELLAR_SERVICES_ADMIN_ADMIN_METRICS_H_
#define CELLAR_SERVICES_ADMIN_ADMIN_METRICS_H_

// The admin's domain metrics, computed at scrape time:
//
//   cellar_admin_alerts{cluster,kind,severity,acknowledged}  active alerts
//       (a series exists only while such an alert is active)
//   cellar_admin_cluster_reachable{cluster}      1 if the last poll got an answer
//   cellar_admin_cluster_operational{cluster}    1 if the last poll saw it operational
//   cellar_admin_cluster_running{cluster}        1 if the last poll saw it RUNNING
//   cellar_admin_monitor_rounds_total            completed monitor rounds
//   cellar_admin_clock_skew_seconds{cluster,node}  node clock - admin clock, as
//       measured by the last poll (nodes measured then only)
//   cellar_build_info{build_id,role="admin"}     always 1
//   cellar_node_up{role="admin"}                 1 while the process serves
//
// Register the collector on the admin's MetricsEndpoint. Thread-safe.

#include <memory>

#include <prometheus/collectable.h>

#include "services/admin/alert_index.h"
#include "services/admin/cluster_monitor.h"
#include "services/common/collector.h"

namespace cellar::admin {

// The collector shares ownership of `alerts` and `monitor`, so it may
// outlive the AdminServer (metrics endpoints are often stopped last).
std::shared_ptr<prometheus::Collectable> MakeAdminCollector(
    common::MetricLabels const_labels, std::shared_ptr<const AlertIndex> alerts,
    std::shared_ptr<const ClusterMonitor> monitor);

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ADMIN_METRICS_H_
