#include "services/admin/cluster_monitor.h"

#include <map>
#include <set>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::admin {

absl::StatusOr<cellar::v1::GetNodeStatusResponse> GrpcStorageStatusSource::GetNodeStatus(
    const std::string& address, absl::Duration timeout) {
  std::shared_ptr<cellar::v1::Storage::Stub> stub = clients_->StorageStub(address);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  cellar::v1::GetNodeStatusRequest request;
  request.set_health_only(true);  // no database scan on every poll
  cellar::v1::GetNodeStatusResponse response;
  const grpc::Status status = stub->GetNodeStatus(&context, request, &response);
  if (!status.ok()) return common::FromGrpcStatus(status);
  return response;
}

ClusterMonitor::ClusterMonitor(std::vector<std::string> clusters, ClusterClients* clients,
                               AlertIndex* alerts, const common::Clock* clock,
                               ClusterMonitorOptions options)
    : ClusterMonitor(std::move(clusters), clients, static_cast<StorageStatusSource*>(nullptr),
                     alerts, clock, std::move(options)) {
  owned_storages_ = std::make_unique<GrpcStorageStatusSource>(clients);
  storages_ = owned_storages_.get();
}

ClusterMonitor::ClusterMonitor(std::vector<std::string> clusters, ClusterInfoSource* source,
                               AlertIndex* alerts, const common::Clock* clock,
                               ClusterMonitorOptions options)
    : ClusterMonitor(std::move(clusters), source, static_cast<StorageStatusSource*>(nullptr),
                     alerts, clock, std::move(options)) {}

ClusterMonitor::ClusterMonitor(std::vector<std::string> clusters, ClusterInfoSource* source,
                               StorageStatusSource* storages, AlertIndex* alerts,
                               const common::Clock* clock, ClusterMonitorOptions options)
    : clusters_(std::move(clusters)),
      source_(source),
      storages_(storages),
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

absl::optional<absl::Duration> ClusterMonitor::Skew(absl::Time node_time, absl::Time sent,
                                                    absl::Time received,
                                                    absl::Duration max_round_trip) {
  const absl::Duration round_trip = received - sent;
  if (round_trip < absl::ZeroDuration() || round_trip > max_round_trip) return absl::nullopt;
  return node_time - (sent + round_trip / 2);
}

ClusterObservation ClusterMonitor::Observe(
    absl::Time now, const absl::StatusOr<cellar::v1::GetClusterInfoResponse>& info,
    absl::Time sent, absl::Duration clock_skew_threshold) {
  ClusterObservation obs;
  obs.now = now;
  obs.reachable = info.status();
  if (!info.ok()) return obs;
  obs.info = *info;
  obs.clock_measured = true;
  const std::string master = info->master_node_id() != 0
                                 ? common::NodeName(info->master_node_id())
                                 : std::string("master");
  if (info->has_unix_time_ms()) {
    // The master's clock, measured directly.
    const absl::optional<absl::Duration> skew =
        Skew(absl::FromUnixMillis(info->unix_time_ms()),
             sent == absl::InfinitePast() ? now : sent, now, clock_skew_threshold);
    // A call too slow to measure leaves the clock-skew alerts as they are
    // (unless a storage is measured).
    obs.clock_measured = skew.has_value();
    if (skew.has_value()) {
      obs.clock_skews.push_back(
          {master, *skew, "GetClusterInfo time vs the admin's clock"});
    }
    return obs;
  }
  // An older master: the only clock signal GetClusterInfo carries is the
  // last TID. TIDs come from the primary master's clock (tid = max(clock,
  // last + 1)), so a last TID whose time is ahead of ours means that
  // master's clock is (or was) ahead of the admin's. A clock behind ours
  // cannot be seen this way.
  if (info->last_tid() != 0) {
    const absl::Duration ahead = common::TimeFromTid(info->last_tid()) - now;
    if (ahead > absl::ZeroDuration()) {
      ClockSkewSample sample;
      sample.subject = master;
      sample.skew = ahead;
      sample.source = "the last TID is ahead of the admin's clock";
      obs.clock_skews.push_back(std::move(sample));
    }
  }
  return obs;
}

void ClusterMonitor::ObserveStorages(const std::vector<StorageStatusAnswer>& answers,
                                     absl::Duration clock_skew_threshold,
                                     ClusterObservation* obs) {
  // OUT_OF_DATE cells by node, from the master's table.
  std::map<uint32_t, std::set<uint32_t>> out_of_date;
  for (const auto& row : obs->info.partition_table().rows()) {
    for (const auto& cell : row.cells()) {
      if (cell.state() == cellar::v1::CELL_OUT_OF_DATE) {
        out_of_date[cell.node_id()].insert(row.partition());
      }
    }
  }
  for (const StorageStatusAnswer& answer : answers) {
    if (!answer.status.ok()) {
      obs->storages_silent.push_back(answer.node_id);
      continue;
    }
    const cellar::v1::GetNodeStatusResponse& status = *answer.status;
    const std::string name = common::NodeName(answer.node_id);
    StorageHealthSample health;
    health.node_id = answer.node_id;
    if (status.has_backend_errors_total()) {
      health.backend_errors_total = status.backend_errors_total();
    }
    if (status.has_disk_free_bytes() && status.has_disk_total_bytes()) {
      health.disk_free_bytes = status.disk_free_bytes();
      health.disk_total_bytes = status.disk_total_bytes();
    }
    obs->storages.push_back(health);

    // Replication: the durable position of each OUT_OF_DATE cell; a cell
    // the replicator has not reported on yet is at 0 (no progress).
    obs->replication_measured = true;
    std::set<uint32_t> cells = out_of_date[answer.node_id];
    for (const cellar::v1::CellReplication& r : status.replication()) {
      if (cells.erase(r.partition()) == 0) continue;  // not OUT_OF_DATE
      obs->replication.push_back({r.partition(), answer.node_id, r.replicated_tid()});
    }
    for (uint32_t partition : cells) obs->replication.push_back({partition, answer.node_id, 0});

    if (status.has_unix_time_ms()) {
      const absl::optional<absl::Duration> skew =
          Skew(absl::FromUnixMillis(status.unix_time_ms()), answer.sent, answer.received,
               clock_skew_threshold);
      if (skew.has_value()) {
        obs->clock_measured = true;
        obs->clock_skews.push_back({name, *skew, "GetNodeStatus time vs the admin's clock"});
      }
    }
  }
}

std::vector<StorageStatusAnswer> ClusterMonitor::AskStorages(
    const cellar::v1::GetClusterInfoResponse& info) {
  std::vector<StorageStatusAnswer> answers;
  if (storages_ == nullptr) return answers;
  for (const cellar::v1::NodeInfo& node : info.nodes()) {
    if (node.role() != cellar::v1::NODE_ROLE_STORAGE ||
        node.state() != cellar::v1::NODE_RUNNING || node.address().empty()) {
      continue;
    }
    StorageStatusAnswer answer;
    answer.node_id = node.node_id();
    answer.sent = clock_->Now();
    answer.status = storages_->GetNodeStatus(node.address(), options_.storage_status_timeout);
    answer.received = clock_->Now();
    answers.push_back(std::move(answer));
  }
  return answers;
}

void ClusterMonitor::Poll() {
  absl::MutexLock pl(&poll_mu_);
  for (size_t i = 0; i < clusters_.size(); ++i) {
    const absl::Time sent = clock_->Now();
    absl::StatusOr<cellar::v1::GetClusterInfoResponse> info =
        source_->GetClusterInfo(clusters_[i]);
    const absl::Time now = clock_->Now();
    ClusterObservation obs = Observe(now, info, sent, options_.rules.clock_skew_threshold);
    if (info.ok()) {
      ObserveStorages(AskStorages(*info), options_.rules.clock_skew_threshold, &obs);
    }
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
    last.clock_skews = obs.clock_skews;
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
