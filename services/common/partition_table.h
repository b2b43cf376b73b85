#ifndef CELLAR_SERVICES_COMMON_PARTITION_TABLE_H_
#define CELLAR_SERVICES_COMMON_PARTITION_TABLE_H_

// The partition table as a value type, shared by master, storage and
// client: P partitions, R replicas, one row of cells per partition, and a
// version (ptid) that grows by one per change.
//
// Not thread-safe: owners guard it with their own mutex.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/cellar/v1/common.pb.h"

namespace cellar::common {

using CellState = ::cellar::v1::CellState;

struct PtCell {
  uint32_t node_id = 0;
  CellState state = ::cellar::v1::CELL_UP_TO_DATE;
};

// Readable: UP_TO_DATE or FEEDING.
bool IsReadable(CellState state);
// Writable: UP_TO_DATE, OUT_OF_DATE or FEEDING.
bool IsWritable(CellState state);
// One letter per state, for the grid: U O F C D.
char CellStateLetter(CellState state);

// Most partitions a table may have. FromProto refuses more before
// allocating (a peer's num_partitions alone must not make a process
// allocate gigabytes: found by fuzzing, docs/fuzzing.md).
inline constexpr uint32_t kMaxPartitions = 1 << 20;

class PartitionTable {
 public:
  PartitionTable() = default;
  PartitionTable(uint32_t num_partitions, uint32_t num_replicas);

  // A new cluster's table (ptid 1): every partition gets min(R+1, nodes)
  // UP_TO_DATE cells, spread round-robin so every node holds the same
  // number of cells within one. INVALID_ARGUMENT without nodes or
  // partitions.
  static absl::StatusOr<PartitionTable> MakeBalanced(
      uint32_t num_partitions, uint32_t num_replicas,
      const std::vector<uint32_t>& node_ids);

  // INVALID_ARGUMENT if the proto is malformed (rows out of order, a
  // partition out of range, a node twice in one row, bad states, more
  // than kMaxPartitions partitions).
  static absl::StatusOr<PartitionTable> FromProto(const ::cellar::v1::PartitionTable& proto);
  ::cellar::v1::PartitionTable ToProto() const;

  // Applies a delta whose ptid is exactly ptid()+1. FAILED_PRECONDITION on
  // a gap (fetch the whole table); INVALID_ARGUMENT on a malformed delta.
  absl::Status ApplyDelta(const ::cellar::v1::PartitionTableDelta& delta);

  uint64_t ptid() const { return ptid_; }
  void set_ptid(uint64_t ptid) { ptid_ = ptid; }
  uint32_t num_partitions() const { return static_cast<uint32_t>(rows_.size()); }
  uint32_t num_replicas() const { return num_replicas_; }
  bool empty() const { return ptid_ == 0; }

  uint32_t PartitionOf(uint64_t id) const {
    return rows_.empty() ? 0 : static_cast<uint32_t>(id % rows_.size());
  }
  const std::vector<PtCell>& Row(uint32_t partition) const { return rows_[partition]; }

  // Node ids of cells of `partition` in a readable / writable state.
  std::vector<uint32_t> ReadableNodes(uint32_t partition) const;
  std::vector<uint32_t> WritableNodes(uint32_t partition) const;

  // The state of `node_id`'s cell of `partition`, or UNSPECIFIED if none.
  CellState CellStateOf(uint32_t partition, uint32_t node_id) const;

  // Sets (or adds) a cell; DISCARDED removes it. Does not bump ptid.
  void SetCell(uint32_t partition, uint32_t node_id, CellState state);

  // Every node id that holds at least one cell.
  absl::flat_hash_set<uint32_t> NodeIds() const;

  // True when every partition has a readable cell on a node in `running`.
  bool IsOperational(const absl::flat_hash_set<uint32_t>& running) const;

  // A compact grid, one line per partition: "  7 | U . O" with a header
  // naming the node columns (S1 S2 S3).
  std::string ToGrid() const;

 private:
  uint64_t ptid_ = 0;
  uint32_t num_replicas_ = 0;
  std::vector<std::vector<PtCell>> rows_;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_PARTITION_TABLE_H_
