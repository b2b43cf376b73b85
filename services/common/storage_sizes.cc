#include "services/common/storage_sizes.h"

#include <algorithm>
#include <set>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"

namespace cellar::common {

ClusterSizes FetchClusterSizes(const ::cellar::v1::GetClusterInfoResponse& info,
                               const StorageStubFor& stub_for, absl::Duration timeout) {
  struct Call {
    uint32_t node_id = 0;
    std::shared_ptr<::cellar::v1::Storage::StubInterface> stub;
    grpc::ClientContext context;
    ::cellar::v1::GetPartitionStatsResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  for (const auto& node : info.nodes()) {
    if (node.role() != ::cellar::v1::NODE_ROLE_STORAGE ||
        node.state() != ::cellar::v1::NODE_RUNNING || node.address().empty()) {
      continue;
    }
    auto call = std::make_unique<Call>();
    call->node_id = node.node_id();
    call->stub = stub_for(node.address());
    SetDeadline(&call->context, timeout);
    calls.push_back(std::move(call));
  }
  absl::BlockingCounter pending(static_cast<int>(calls.size()));
  const ::cellar::v1::GetPartitionStatsRequest request;
  for (auto& call : calls) {
    Call* c = call.get();
    c->stub->async()->GetPartitionStats(&c->context, &request, &c->response,
                                        [c, &pending](grpc::Status s) {
                                          c->status = std::move(s);
                                          pending.DecrementCount();
                                        });
  }
  pending.Wait();  // every call ends by its deadline
  std::vector<std::pair<uint32_t, absl::StatusOr<::cellar::v1::GetPartitionStatsResponse>>>
      answers;
  for (auto& call : calls) {
    if (call->status.ok()) {
      answers.emplace_back(call->node_id, std::move(call->response));
    } else {
      answers.emplace_back(call->node_id, FromGrpcStatus(call->status));
    }
  }
  return SumClusterSizes(info.partition_table().num_partitions(), std::move(answers));
}

ClusterSizes SumClusterSizes(
    uint32_t num_partitions,
    std::vector<std::pair<uint32_t, absl::StatusOr<::cellar::v1::GetPartitionStatsResponse>>>
        answers) {
  std::sort(answers.begin(), answers.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  ClusterSizes out;
  out.num_partitions = num_partitions;
  std::set<uint32_t> counted;
  for (const auto& [node_id, answer] : answers) {
    NodeSizes node;
    node.node_id = node_id;
    if (!answer.ok()) {
      node.status = answer.status();
      out.nodes.push_back(std::move(node));
      continue;
    }
    for (const auto& cell : answer->partitions()) {
      if (!cell.readable()) continue;
      ++node.readable_cells;
      node.sizes.objects += cell.objects();
      node.sizes.revisions += cell.revisions();
      node.sizes.bytes += cell.bytes();
      if (cell.partition() < num_partitions && counted.insert(cell.partition()).second) {
        out.total.objects += cell.objects();
        out.total.revisions += cell.revisions();
        out.total.bytes += cell.bytes();
      }
    }
    out.nodes.push_back(std::move(node));
  }
  out.partitions_counted = static_cast<uint32_t>(counted.size());
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrFormat("%d B", bytes);
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit + 1 < 6) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

}  // namespace cellar::common
