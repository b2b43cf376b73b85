#ifndef CELLAR_SERVICES_STORAGE_CELL_VIEW_H_
#define CELLAR_SERVICES_STORAGE_CELL_VIEW_H_

// This node's cells as one partition-table version describes them: an
// immutable snapshot a call keeps from start to end, so a table change in
// the middle of a call does not change its decisions.
//
// Thread-safe (immutable; the table is shared, const).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"

namespace cellar::storage {

class CellView {
 public:
  CellView(uint32_t node_id, std::shared_ptr<const common::PartitionTable> pt)
      : node_id_(node_id), pt_(std::move(pt)) {}

  uint32_t node_id() const { return node_id_; }
  const common::PartitionTable& table() const { return *pt_; }
  uint64_t ptid() const { return pt_->ptid(); }
  uint32_t num_partitions() const { return pt_->num_partitions(); }
  uint32_t PartitionOf(uint64_t id) const { return pt_->PartitionOf(id); }

  common::CellState StateOf(uint32_t partition) const {
    return pt_->CellStateOf(partition, node_id_);
  }
  bool Readable(uint32_t partition) const {
    return common::IsReadable(StateOf(partition));
  }
  bool Writable(uint32_t partition) const {
    return common::IsWritable(StateOf(partition));
  }

  // "node S2 holds no writable cell of partition 5 (ptid 12)".
  std::string NoCellMessage(const char* what, uint32_t partition) const {
    return absl::StrCat("node ", common::NodeName(node_id_), " holds no ", what,
                        " cell of partition ", partition, " (ptid ", ptid(), ")");
  }

 private:
  uint32_t node_id_;
  std::shared_ptr<const common::PartitionTable> pt_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_CELL_VIEW_H_
