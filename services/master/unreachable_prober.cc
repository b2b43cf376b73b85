#include "services/master/unreachable_prober.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::master {
namespace {

const char* ReasonName(cellar::v1::UnreachableReason reason) {
  return reason == cellar::v1::UNREACHABLE_DEADLINE_EXCEEDED ? "DEADLINE_EXCEEDED"
                                                             : "UNAVAILABLE";
}

std::string ReporterName(uint32_t reporter) {
  return reporter == 0 ? std::string("a node") : common::NodeName(reporter);
}

}  // namespace

UnreachableProber::UnreachableProber(ClusterManager* cluster, StorageCaller* storages,
                                     const common::Clock* clock,
                                     UnreachableProberOptions options)
    : cluster_(cluster), storages_(storages), clock_(clock), options_(options) {
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] { Work(); });
  }
}

UnreachableProber::~UnreachableProber() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

absl::StatusOr<cellar::v1::ReportOutcome> UnreachableProber::Report(
    uint32_t node_id, cellar::v1::UnreachableReason reason, uint32_t reporter) {
  if (reason != cellar::v1::UNREACHABLE_UNAVAILABLE &&
      reason != cellar::v1::UNREACHABLE_DEADLINE_EXCEEDED) {
    return absl::InvalidArgumentError(
        "reason: must be UNREACHABLE_UNAVAILABLE or UNREACHABLE_DEADLINE_EXCEEDED");
  }
  absl::StatusOr<ClusterManager::ProbeTarget> target = cluster_->UnreachableTarget(node_id);
  if (!target.ok()) return target.status();
  absl::MutexLock l(&mu_);
  if (target->down) {
    ++stats_.ignored;
    return cellar::v1::REPORT_ALREADY_DOWN;
  }
  PerNode& node = nodes_[node_id];
  const absl::Time now = clock_->Now();
  if (stopping_ || node.in_flight || now - node.last_start < options_.interval) {
    ++stats_.coalesced;
    return cellar::v1::REPORT_COALESCED;
  }
  node.in_flight = true;
  node.last_start = now;
  queue_.push_back(Probe{*target, reason, reporter});
  return cellar::v1::REPORT_PROBING;
}

void UnreachableProber::Work() {
  while (true) {
    Probe probe;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](UnreachableProber* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stopping_ || !p->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      probe = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    Run(probe);
    absl::MutexLock l(&mu_);
    --running_;
    nodes_[probe.target.target.node_id].in_flight = false;
  }
}

void UnreachableProber::Run(const Probe& probe) {
  const StorageTarget& target = probe.target.target;
  const absl::Time start = absl::Now();
  const absl::Time started = clock_->Now();  // the cluster's clock (heartbeats)
  const absl::Status status = storages_->Probe(target, options_.timeout);
  const absl::Duration took = absl::Now() - start;
  const bool gone = status.code() == absl::StatusCode::kUnavailable ||
                    status.code() == absl::StatusCode::kDeadlineExceeded;
  bool taken_down = false;
  if (gone) {
    taken_down = cluster_->ProbeFailed(
        target.node_id, probe.target.generation, started,
        absl::StrCat("unreachable: ", ReporterName(probe.reporter), " reported ",
                     ReasonName(probe.reason), " and the master's own probe failed (",
                     status.message(), ")"));
  } else {
    CELLAR_LOG(INFO) << ReporterName(probe.reporter) << " reported "
                     << common::NodeName(target.node_id) << " unreachable ("
                     << ReasonName(probe.reason) << "), but it answered the master's probe in "
                     << absl::FormatDuration(took) << ": it stays up";
  }
  absl::MutexLock l(&mu_);
  stats_.probe_time += took;
  if (taken_down) {
    ++stats_.probed_down;
  } else if (gone) {
    ++stats_.ignored;  // it went down, registered again or sent a heartbeat meanwhile
  } else {
    ++stats_.probed_up;
  }
}

UnreachableStats UnreachableProber::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

bool UnreachableProber::AwaitIdle(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](const UnreachableProber* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->queue_.empty() && p->running_ == 0;
          },
          this),
      timeout);
}

}  // namespace cellar::master
