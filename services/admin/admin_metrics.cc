#include "services/admin/admin_metrics.h"

#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "services/common/build_info.h"

namespace cellar::admin {

std::shared_ptr<prometheus::Collectable> MakeAdminCollector(
    common::MetricLabels const_labels, std::shared_ptr<const AlertIndex> alerts,
    std::shared_ptr<const ClusterMonitor> monitor) {
  return std::make_shared<common::CallbackCollector>(
      std::move(const_labels), [alerts, monitor](common::MetricsBuilder& m) {
        std::map<std::tuple<std::string, std::string, std::string, std::string>, int> counts;
        for (const Alert& alert : alerts->List()) {
          ++counts[{alert.spec.cluster, alert.spec.kind,
                    std::string(SeverityName(alert.spec.severity)),
                    alert.acknowledged ? "true" : "false"}];
        }
        for (const auto& [key, n] : counts) {
          const auto& [cluster, kind, severity, acknowledged] = key;
          m.Gauge("cellar_admin_alerts",
                  "Active alerts of the admin's index (see docs/alerts/<kind>.md).",
                  {{"cluster", cluster},
                   {"kind", kind},
                   {"severity", severity},
                   {"acknowledged", acknowledged}},
                  n);
        }
        for (const ClusterPoll& poll : monitor->LastPolls()) {
          if (poll.polled_at == absl::InfinitePast()) continue;
          m.Gauge("cellar_admin_cluster_reachable",
                  "1 if a master of the cluster answered the admin's last poll.",
                  {{"cluster", poll.cluster}}, poll.status.ok() ? 1 : 0);
          if (!poll.status.ok()) continue;
          m.Gauge("cellar_admin_cluster_operational",
                  "1 if the cluster was operational at the admin's last poll.",
                  {{"cluster", poll.cluster}}, poll.info.operational() ? 1 : 0);
          for (const ClockSkewSample& skew : poll.clock_skews) {
            m.Gauge("cellar_admin_clock_skew_seconds",
                    "Node clock minus the admin's clock, measured by the admin's last poll "
                    "(positive: the node is ahead).",
                    {{"cluster", poll.cluster}, {"node", skew.subject}},
                    absl::ToDoubleSeconds(skew.skew));
          }
          m.Gauge("cellar_admin_cluster_running",
                  "1 if the cluster was RUNNING at the admin's last poll.",
                  {{"cluster", poll.cluster}},
                  poll.info.cluster_state() == cellar::v1::CLUSTER_RUNNING ? 1 : 0);
        }
        m.Counter("cellar_admin_monitor_rounds_total",
                  "Completed polls of every configured cluster.", {},
                  static_cast<double>(monitor->rounds()));
        m.Gauge("cellar_node_up", "1 while the process serves.", {{"role", "admin"}}, 1);
        common::AddBuildInfo(m, common::kDefaultBuildId, "admin");
      });
}

}  // namespace cellar::admin
