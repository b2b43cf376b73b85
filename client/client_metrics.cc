#include "client/client_metrics.h"

#include <utility>

namespace cellar::client {

std::shared_ptr<prometheus::Collectable> MakeClientMetrics(std::function<ClientStats()> stats,
                                                           common::MetricLabels const_labels) {
  return std::make_shared<common::CallbackCollector>(
      std::move(const_labels), [stats = std::move(stats)](common::MetricsBuilder& m) {
        const ClientStats s = stats();
        m.Counter("cellar_client_cache_hits_total", "Loads answered by the client cache.", {},
                  static_cast<double>(s.cache_hits));
        m.Counter("cellar_client_cache_misses_total", "Loads that had to ask a storage node.",
                  {}, static_cast<double>(s.cache_misses));
        m.Counter("cellar_client_checksum_failures_total",
                  "Loaded data whose checksum did not match (another cell was tried).", {},
                  static_cast<double>(s.checksum_failures));
        m.Counter("cellar_client_commits_total", "Transactions this client committed.", {},
                  static_cast<double>(s.commits));
        m.Counter("cellar_client_conflicts_total",
                  "Commits refused with ABORTED (conflict or lock contention).", {},
                  static_cast<double>(s.conflicts));
        m.Counter("cellar_client_commit_failures_total",
                  "Commits that failed for another reason.", {},
                  static_cast<double>(s.commit_failures));
        m.Counter("cellar_client_reconnects_total",
                  "Master sessions established after the first one.", {},
                  static_cast<double>(s.reconnects));
        m.Counter("cellar_client_unreachable_reports_total",
                  "Storages reported unreachable to the master (Master.ReportUnreachable).", {},
                  static_cast<double>(s.unreachable_reports));
        m.Counter("cellar_client_unreachable_reports_failed_total",
                  "Unreachable reports the master refused or did not receive (ignored).", {},
                  static_cast<double>(s.unreachable_reports_failed));
        m.Counter("cellar_client_preallocated_ttids_used_total",
                  "Commits that used the ttid handed out with the previous Finish instead of "
                  "calling Master.Begin.",
                  {}, static_cast<double>(s.preallocated_ttids_used));
      });
}

}  // namespace cellar::client
