#include "services/common/partition_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cellar::common {

using ::cellar::v1::CELL_CORRUPTED;
using ::cellar::v1::CELL_DISCARDED;
using ::cellar::v1::CELL_FEEDING;
using ::cellar::v1::CELL_OUT_OF_DATE;
using ::cellar::v1::CELL_STATE_UNSPECIFIED;
using ::cellar::v1::CELL_UP_TO_DATE;

bool IsReadable(CellState s) { return s == CELL_UP_TO_DATE || s == CELL_FEEDING; }

bool IsWritable(CellState s) {
  return s == CELL_UP_TO_DATE || s == CELL_OUT_OF_DATE || s == CELL_FEEDING;
}

char CellStateLetter(CellState s) {
  switch (s) {
    case CELL_UP_TO_DATE:
      return 'U';
    case CELL_OUT_OF_DATE:
      return 'O';
    case CELL_FEEDING:
      return 'F';
    case CELL_CORRUPTED:
      return 'C';
    case CELL_DISCARDED:
      return 'D';
    default:
      return '?';
  }
}

PartitionTable::PartitionTable(uint32_t num_partitions, uint32_t num_replicas)
    : num_replicas_(num_replicas), rows_(num_partitions) {}

absl::StatusOr<PartitionTable> PartitionTable::MakeBalanced(
    uint32_t num_partitions, uint32_t num_replicas,
    const std::vector<uint32_t>& node_ids) {
  if (num_partitions == 0) {
    return absl::InvalidArgumentError("partitions must be at least 1");
  }
  if (node_ids.empty()) {
    return absl::InvalidArgumentError("a partition table needs at least one storage");
  }
  std::vector<uint32_t> nodes = node_ids;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  PartitionTable pt(num_partitions, num_replicas);
  const size_t copies = std::min<size_t>(num_replicas + 1, nodes.size());
  size_t next = 0;
  for (uint32_t p = 0; p < num_partitions; ++p) {
    for (size_t c = 0; c < copies; ++c) {
      pt.rows_[p].push_back({nodes[(next + c) % nodes.size()], CELL_UP_TO_DATE});
    }
    next = (next + copies) % nodes.size();
  }
  pt.ptid_ = 1;
  return pt;
}

absl::StatusOr<PartitionTable> PartitionTable::FromProto(
    const ::cellar::v1::PartitionTable& proto) {
  if (proto.num_partitions() > kMaxPartitions) {
    return absl::InvalidArgumentError(absl::StrCat("partition table has ", proto.num_partitions(),
                                                   " partitions (at most ", kMaxPartitions, ")"));
  }
  PartitionTable pt(proto.num_partitions(), proto.num_replicas());
  pt.ptid_ = proto.ptid();
  if (proto.rows_size() > static_cast<int>(proto.num_partitions())) {
    return absl::InvalidArgumentError("partition table has more rows than partitions");
  }
  for (const auto& row : proto.rows()) {
    if (row.partition() >= proto.num_partitions()) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition ", row.partition(), " out of range"));
    }
    for (const auto& cell : row.cells()) {
      if (cell.node_id() == 0) {
        return absl::InvalidArgumentError("cell with node_id 0");
      }
      if (cell.state() == CELL_STATE_UNSPECIFIED || cell.state() == CELL_DISCARDED ||
          !::cellar::v1::CellState_IsValid(cell.state())) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad cell state in partition ", row.partition()));
      }
      if (pt.CellStateOf(row.partition(), cell.node_id()) != CELL_STATE_UNSPECIFIED) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node ", cell.node_id(), " twice in partition ", row.partition()));
      }
      pt.rows_[row.partition()].push_back({cell.node_id(), cell.state()});
    }
  }
  return pt;
}

::cellar::v1::PartitionTable PartitionTable::ToProto() const {
  ::cellar::v1::PartitionTable proto;
  proto.set_ptid(ptid_);
  proto.set_num_partitions(num_partitions());
  proto.set_num_replicas(num_replicas_);
  for (uint32_t p = 0; p < rows_.size(); ++p) {
    auto* row = proto.add_rows();
    row->set_partition(p);
    for (const PtCell& c : rows_[p]) {
      auto* cell = row->add_cells();
      cell->set_node_id(c.node_id);
      cell->set_state(c.state);
    }
  }
  return proto;
}

absl::Status PartitionTable::ApplyDelta(const ::cellar::v1::PartitionTableDelta& delta) {
  if (delta.ptid() != ptid_ + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "partition table delta ", delta.ptid(), " does not follow ptid ", ptid_));
  }
  for (const auto& change : delta.changes()) {
    if (change.partition() >= rows_.size() || change.node_id() == 0 ||
        !::cellar::v1::CellState_IsValid(change.state()) ||
        change.state() == CELL_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError("malformed partition table delta");
    }
  }
  for (const auto& change : delta.changes()) {
    SetCell(change.partition(), change.node_id(), change.state());
  }
  ptid_ = delta.ptid();
  return absl::OkStatus();
}

std::vector<uint32_t> PartitionTable::ReadableNodes(uint32_t partition) const {
  std::vector<uint32_t> out;
  if (partition >= rows_.size()) return out;
  for (const PtCell& c : rows_[partition]) {
    if (IsReadable(c.state)) out.push_back(c.node_id);
  }
  return out;
}

std::vector<uint32_t> PartitionTable::WritableNodes(uint32_t partition) const {
  std::vector<uint32_t> out;
  if (partition >= rows_.size()) return out;
  for (const PtCell& c : rows_[partition]) {
    if (IsWritable(c.state)) out.push_back(c.node_id);
  }
  return out;
}

CellState PartitionTable::CellStateOf(uint32_t partition, uint32_t node_id) const {
  if (partition >= rows_.size()) return CELL_STATE_UNSPECIFIED;
  for (const PtCell& c : rows_[partition]) {
    if (c.node_id == node_id) return c.state;
  }
  return CELL_STATE_UNSPECIFIED;
}

void PartitionTable::SetCell(uint32_t partition, uint32_t node_id, CellState state) {
  if (partition >= rows_.size()) return;
  auto& row = rows_[partition];
  auto it = std::find_if(row.begin(), row.end(),
                         [&](const PtCell& c) { return c.node_id == node_id; });
  if (state == CELL_DISCARDED) {
    if (it != row.end()) row.erase(it);
  } else if (it != row.end()) {
    it->state = state;
  } else {
    row.push_back({node_id, state});
  }
}

absl::flat_hash_set<uint32_t> PartitionTable::NodeIds() const {
  absl::flat_hash_set<uint32_t> ids;
  for (const auto& row : rows_) {
    for (const PtCell& c : row) ids.insert(c.node_id);
  }
  return ids;
}

bool PartitionTable::IsOperational(const absl::flat_hash_set<uint32_t>& running) const {
  if (rows_.empty()) return false;
  for (const auto& row : rows_) {
    bool ok = false;
    for (const PtCell& c : row) {
      if (IsReadable(c.state) && running.contains(c.node_id)) ok = true;
    }
    if (!ok) return false;
  }
  return true;
}

std::string PartitionTable::ToGrid() const {
  const absl::flat_hash_set<uint32_t> ids = NodeIds();
  std::vector<uint32_t> nodes(ids.begin(), ids.end());
  std::sort(nodes.begin(), nodes.end());
  std::string out = absl::StrFormat("ptid %d, %d partitions, %d replicas\n", ptid_,
                                    rows_.size(), num_replicas_);
  absl::StrAppend(&out, "     |");
  for (uint32_t n : nodes) absl::StrAppend(&out, absl::StrFormat(" %4s", absl::StrCat("S", n)));
  absl::StrAppend(&out, "\n");
  for (uint32_t p = 0; p < rows_.size(); ++p) {
    absl::StrAppend(&out, absl::StrFormat("%4d |", p));
    for (uint32_t n : nodes) {
      const CellState s = CellStateOf(p, n);
      absl::StrAppend(&out, absl::StrFormat(" %4c",
                                            s == CELL_STATE_UNSPECIFIED ? '.' : CellStateLetter(s)));
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace cellar::common
