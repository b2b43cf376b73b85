#include "services/admin/cluster_monitor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::admin {

ClusterMonitor::ClusterMonitor(std::vector<std::string> clusters, ClusterInfoSource* source,
                               AlertIndex* alerts, const common::Clock* clock,
                               ClusterMonitorOptions options)
    : clusters_(std::move(clusters)),
      source_(source),
      alerts_(alerts),
      clock_(clock),
      options_(std::move(options)) {
  absl::MutexLock pl(&poll_mu_);
  absl::MutexLock l(&mu_);
  for (const std::string& name : clusters_) {
    rules_.emplace_back(name, options_.rules);
    ClusterPoll poll;
    poll.cluster = name;
    last_.push_back(std::move(poll));
  }
}

ClusterMonitor::~ClusterMonitor() { Stop(); }

void ClusterMonitor::Start() {
  if (options_.period <= absl::ZeroDuration() || thread_.joinable()) return;
  {
    absl::MutexLock l(&mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void ClusterMonitor::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ClusterMonitor::Run() {
  while (true) {
    Poll();
    absl::MutexLock l(&mu_);
    // Wakes early when Stop() sets stop_.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.period);
    if (stop_) return;
  }
}

ClusterObservation ClusterMonitor::Observe(
    absl::Time now, const absl::StatusOr<cellar::v1::GetClusterInfoResponse>& info) {
  ClusterObservation obs;
  obs.now = now;
  obs.reachable = info.status();
  if (!info.ok()) return obs;
  obs.info = *info;
  // The only clock signal GetClusterInfo carries: TIDs come from the
  // primary master's clock (tid = max(clock, last + 1)), so a last TID
  // whose time is ahead of ours means that master's clock is (or was)
  // ahead of the admin's. A clock behind ours cannot be seen this way.
  obs.clock_measured = true;
  if (info->last_tid() != 0) {
    const absl::Duration ahead = common::TimeFromTid(info->last_tid()) - now;
    if (ahead > absl::ZeroDuration()) {
      ClockSkewSample sample;
      sample.subject = info->master_node_id() != 0 ? common::NodeName(info->master_node_id())
                                                   : std::string("master");
      sample.skew = ahead;
      sample.source = "the last TID is ahead of the admin's clock";
      obs.clock_skews.push_back(std::move(sample));
    }
  }
  return obs;
}

void ClusterMonitor::Poll() {
  absl::MutexLock pl(&poll_mu_);
  for (size_t i = 0; i < clusters_.size(); ++i) {
    absl::StatusOr<cellar::v1::GetClusterInfoResponse> info =
        source_->GetClusterInfo(clusters_[i]);
    const absl::Time now = clock_->Now();
    const ClusterObservation obs = Observe(now, info);
    const AlertEvaluation verdict = rules_[i].Evaluate(obs);
    alerts_->Reconcile(clusters_[i], verdict.evaluated_kinds, verdict.alerts);
    absl::MutexLock l(&mu_);
    ClusterPoll& last = last_[i];
    if (last.status.ok() != info.ok() && last.polled_at != absl::InfinitePast()) {
      // Log transitions only, once.
      if (info.ok()) {
        CELLAR_LOG(INFO) << "admin: cluster \"" << clusters_[i] << "\" is reachable again";
      } else {
        CELLAR_LOG(WARNING) << "admin: " << info.status().message();
      }
    }
    last.polled_at = now;
    last.status = info.status();
    last.info = info.ok() ? *info : cellar::v1::GetClusterInfoResponse();
  }
  absl::MutexLock l(&mu_);
  ++rounds_;
}

std::vector<ClusterPoll> ClusterMonitor::LastPolls() const {
  absl::MutexLock l(&mu_);
  return last_;
}

int64_t ClusterMonitor::rounds() const {
  absl::MutexLock l(&mu_);
  return rounds_;
}

}  // namespace cellar::admin
