#ifndef CELLAR_SERVICES_COMMON_STORAGE_SIZES_H_
#define CELLAR_SERVICES_COMMON_STORAGE_SIZES_H_

// What the storage nodes of a cluster hold (objects, revisions, bytes),
// from Storage.GetPartitionStats (counters kept by the backends: no scan).
// Used by Admin.GetClusterStatus and `cellarctl status`.
//
//   ClusterSizes sizes = FetchClusterSizes(info, stub_for, absl::Seconds(2));
//
// Every RUNNING storage is asked at once, each call bounded by `timeout`;
// one that does not answer in time (or refuses) has its status set and no
// sizes. A node's sizes are the sums over its readable cells (UP_TO_DATE or
// FEEDING, as the storage reports them); the cluster total counts each
// partition once, from the readable cell of the lowest node id that
// answered. Thread-safe (no shared state).

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"

namespace cellar::common {

struct SizeCounts {
  uint64_t objects = 0;
  uint64_t revisions = 0;
  uint64_t bytes = 0;
};

struct NodeSizes {
  uint32_t node_id = 0;
  // Not OK: the storage did not answer (sizes and readable_cells are 0).
  absl::Status status;
  SizeCounts sizes;
  uint32_t readable_cells = 0;
};

struct ClusterSizes {
  // One per RUNNING storage, ascending node id.
  std::vector<NodeSizes> nodes;
  // Each partition once; complete when partitions_counted == num_partitions.
  SizeCounts total;
  uint32_t partitions_counted = 0;
  uint32_t num_partitions = 0;
};

// The stub to reach a storage node (callers keep their channels/credentials).
using StorageStubFor =
    std::function<std::shared_ptr<::cellar::v1::Storage::StubInterface>(const std::string& address)>;

ClusterSizes FetchClusterSizes(const ::cellar::v1::GetClusterInfoResponse& info,
                               const StorageStubFor& stub_for, absl::Duration timeout);

// The sums of FetchClusterSizes from the answers of each node (any order).
ClusterSizes SumClusterSizes(
    uint32_t num_partitions,
    std::vector<std::pair<uint32_t, absl::StatusOr<::cellar::v1::GetPartitionStatsResponse>>>
        answers);

// 1536 -> "1.5 KiB", 0 -> "0 B" (binary units, one decimal from KiB up).
std::string HumanBytes(uint64_t bytes);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_STORAGE_SIZES_H_
