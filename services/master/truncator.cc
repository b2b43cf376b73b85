#include "services/master/truncator.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::master {

Truncator::Truncator(ClusterManager* cluster, TransactionCoordinator* coordinator,
                     StorageCaller* storages, TruncatorOptions options)
    : cluster_(cluster), coordinator_(coordinator), storages_(storages), options_(options) {}

absl::StatusOr<cellar::v1::ClusterState> Truncator::Truncate(uint64_t tid) {
  absl::StatusOr<std::vector<StorageTarget>> targets = cluster_->BeginTruncate(tid);
  if (!targets.ok()) return targets.status();
  auto fail = [this](absl::Status s) {
    cluster_->AbandonTruncate();
    CELLAR_LOG(ERROR) << "truncate failed, the cluster stays RECOVERING: " << s;
    return absl::Status(s.code(), absl::StrCat(s.message(),
                                               " (the cluster stays RECOVERING: retry "
                                               "Truncate once fixed)"));
  };
  if (absl::Status s = coordinator_->AwaitNoFinishing(options_.drain_timeout); !s.ok()) {
    return fail(s);
  }
  for (const StorageTarget& target : *targets) {
    // The storage may not have seen RECOVERING yet (FAILED_PRECONDITION)
    // or be briefly unreachable: retry, bounded.
    const absl::Time deadline = absl::Now() + options_.storage_timeout;
    absl::Duration backoff = absl::Milliseconds(20);
    while (true) {
      absl::StatusOr<uint64_t> last = storages_->TruncateData(target, cluster_->epoch(), tid);
      if (last.ok()) {
        CELLAR_LOG(INFO) << "truncate: " << common::NodeName(target.node_id)
                         << " truncated, its last tid is " << common::TidHex(*last);
        break;
      }
      const bool retry = last.status().code() == absl::StatusCode::kFailedPrecondition ||
                         last.status().code() == absl::StatusCode::kUnavailable;
      if (!retry || absl::Now() + backoff > deadline) return fail(last.status());
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Milliseconds(500));
    }
  }
  return cluster_->FinishTruncate(tid);
}

}  // namespace cellar::master
