#ifndef CELLAR_SERVICES_MASTER_PT_PLANNER_H_
#define CELLAR_SERVICES_MASTER_PT_PLANNER_H_

// Plans partition-table changes the way NEO's `tweak` does: balance cells
// over the storage nodes, add and drop nodes, change the number of
// replicas, and finish data moves. A pure function of its inputs (no I/O,
// no clock, no randomness): the same table and node list always give the
// same plan. The master applies a plan with ApplyPlan (or broadcasts
// ToDelta) and bumps the ptid; a dry run just prints Plan::ToString().
//
// Rules every plan keeps (docs/rebalancing.md has the details):
//  - never drops the last readable (UP_TO_DATE/FEEDING) cell of a
//    partition; a readable cell is only removed outright when another
//    readable cell of the partition stays on a node that may hold cells;
//  - data moves: the new cell is added OUT_OF_DATE and the old one turns
//    FEEDING (still readable) until FinishFeeding drops it;
//  - nodes that may hold cells (RUNNING, plus the nodes being added) end
//    with the same number of assigned (UP_TO_DATE + OUT_OF_DATE) cells,
//    within one, with the fewest moves, from the most loaded nodes to the
//    least loaded ones; a balanced table is left alone (except to fix
//    failure domains, see next);
//  - replicas of one partition go to different zones, then hosts, then
//    devices when the nodes allow it; a warning names every partition
//    whose replicas still share a failure domain;
//  - balance comes first: domains are spread within the freedom balance
//    leaves (a single move to a node with fewer cells, or a swap);
//  - quarantined nodes (a quarantined version) keep their cells and get
//    no new cell;
//  - canary nodes (a storage on the canary or shadow track) hold only
//    extra cells: every partition keeps its R+1 cells on stable nodes,
//    planned as if the canaries were not there, and gets at most one more
//    cell on a canary node (the partitions spread evenly over the canary
//    nodes); a canary cell never counts as a replica, and a partition
//    whose only readable cells are on canaries gets a new stable cell
//    replicated from them;
//  - cells on DOWN/PENDING nodes never move and such nodes get no new cell
//    (Drop removes a dead node; an extra cell there may be discarded when
//    a partition has more than R+1); partitions with no readable cell at
//    all are left as they are;
//  - a CORRUPTED cell on a RUNNING node is discarded and replaced on
//    another node (never re-filled in place in the same plan).
//
// Thread-safety: PtPlanner is stateless; every method is const and may be
// called from any thread. Plan is a plain value.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/cellar/v1/common.pb.h"
#include "services/common/partition_table.h"

namespace cellar::master {

// A storage node as the planner sees it.
struct StorageNode {
  uint32_t node_id = 0;
  // NODE_RUNNING: may hold cells. NODE_PENDING: holds none until Add.
  // NODE_DOWN / NODE_UNKNOWN: keeps its cells, gets no new ones.
  // Default NODE_RUNNING.
  ::cellar::v1::NodeState state = ::cellar::v1::NODE_RUNNING;
  // Failure domain "zone/host/device"; trailing parts may be left out
  // ("z1", "z1/h2"); "" = unknown (shares no domain with anyone).
  // Default "".
  std::string label;
  // Runs a quarantined version (docs/rollouts.md): keeps its cells (they
  // count as replicas and stay readable) but gets no new one, from any
  // plan; Add refuses it. Default false.
  bool quarantined = false;
  // Runs on a non-stable track (canary or shadow, docs/rollouts.md): holds
  // only extra cells, at most one per partition, in addition to the R+1
  // cells on stable nodes; never counted as a replica. Default false.
  bool canary = false;
};

// One cell's new state (CELL_DISCARDED removes the cell).
struct PlannedChange {
  uint32_t partition = 0;
  uint32_t node_id = 0;
  ::cellar::v1::CellState state = ::cellar::v1::CELL_STATE_UNSPECIFIED;
  // The cell's state before the plan; CELL_STATE_UNSPECIFIED for a new cell.
  ::cellar::v1::CellState previous = ::cellar::v1::CELL_STATE_UNSPECIFIED;

  friend bool operator==(const PlannedChange& a, const PlannedChange& b) {
    return a.partition == b.partition && a.node_id == b.node_id && a.state == b.state &&
           a.previous == b.previous;
  }
};

// How many cells a node holds before and after the plan. "Cells" are the
// assigned ones (UP_TO_DATE + OUT_OF_DATE): what balancing evens out.
// FEEDING cells are counted apart: they go away with FinishFeeding.
struct NodeLoad {
  uint32_t node_id = 0;
  uint32_t cells_before = 0;
  uint32_t cells_after = 0;
  uint32_t feeding_before = 0;
  uint32_t feeding_after = 0;
};

// The result of planning. Apply it with ApplyPlan, or broadcast ToDelta.
struct Plan {
  // What was planned: "tweak", "add S4", "drop S3", "set replicas 2",
  // "finish feeding".
  std::string operation;
  // Copied from PlanOptions; only changes ToString's first line.
  bool dry_run = false;
  // The ptid of the table the plan was made from.
  uint64_t base_ptid = 0;
  // R before and after (they differ only for SetReplicas).
  uint32_t num_replicas_before = 0;
  uint32_t num_replicas = 0;
  // Sorted by (partition, node_id).
  std::vector<PlannedChange> changes;
  // Human-readable, e.g. "partition 3: replicas S1 and S4 share zone z1".
  std::vector<std::string> warnings;
  // Every node that holds cells before or after, or may hold cells,
  // sorted by node id.
  std::vector<NodeLoad> nodes;

  // True when applying the plan would change nothing.
  bool empty() const { return changes.empty() && num_replicas == num_replicas_before; }

  // The delta to broadcast; `ptid` is the table's version AFTER the change
  // (normally base_ptid + 1). The delta has no field for R: a plan that
  // changes R must be followed by the full table (see ApplyPlan).
  ::cellar::v1::PartitionTableDelta ToDelta(uint64_t ptid) const;

  // The dry-run report: a header, one line per move or change, then the
  // warnings and one line per node. A move reads
  //   partition 5: S2 -> S4 (S2 FEEDING, S4 OUT_OF_DATE)
  // (docs/rebalancing.md lists every line format).
  std::string ToString() const;
};

// Options of one planning call.
struct PlanOptions {
  // Marks the plan as a dry run (its ToString says so). The planner never
  // applies anything itself either way. Default false.
  bool dry_run = false;
};

// The table `pt` with `plan` applied: ptid + 1 and R = plan.num_replicas.
// FAILED_PRECONDITION if the plan was made for another ptid (stale plan:
// plan again); INVALID_ARGUMENT if a change is malformed.
absl::StatusOr<common::PartitionTable> ApplyPlan(const common::PartitionTable& pt,
                                                 const Plan& plan);

// Every method validates its input: INVALID_ARGUMENT for a node listed
// twice, node id 0, a bad label or state, a table cell on a node missing
// from `nodes`, an unknown node id in the request; FAILED_PRECONDITION for
// an empty table, no node able to hold cells, or a request the nodes'
// states forbid.
class PtPlanner {
 public:
  // Rebalances over the RUNNING nodes (see the rules above): every
  // partition gets R+1 assigned cells (fewer when there are not enough
  // nodes, with a warning), loads end within one, failure domains spread.
  absl::StatusOr<Plan> Tweak(const common::PartitionTable& pt,
                             const std::vector<StorageNode>& nodes,
                             const PlanOptions& options = {}) const;

  // Tweak with the PENDING nodes `node_ids` included (RUNNING ones are
  // accepted and change nothing). INVALID_ARGUMENT if a node is unknown or
  // the list is empty; FAILED_PRECONDITION if one is DOWN/UNKNOWN or
  // quarantined.
  absl::StatusOr<Plan> Add(const common::PartitionTable& pt, const std::vector<StorageNode>& nodes,
                           const std::vector<uint32_t>& node_ids,
                           const PlanOptions& options = {}) const;

  // Removes a dead node for good: its cells are DISCARDED, and the
  // partitions it leaves short get new cells on the RUNNING nodes
  // (balanced, as by Tweak). FAILED_PRECONDITION if the node is RUNNING
  // ("stop it first or use tweak to move its data away"), if one of its
  // cells is the last readable cell of a partition ("would drop the last
  // readable cell of partition 7"), or if a stable node holds a cell of a
  // partition that would be left with readable cells on canary nodes only
  // ("would leave only canary cells readable in partition 7");
  // INVALID_ARGUMENT if unknown.
  absl::StatusOr<Plan> Drop(const common::PartitionTable& pt, const std::vector<StorageNode>& nodes,
                            uint32_t node_id, const PlanOptions& options = {}) const;

  // Sets R to `replicas` (every partition gets replicas+1 cells) and
  // rebalances. New cells are OUT_OF_DATE; removed ones are DISCARDED,
  // preferring non-readable cells, then cells on the most loaded nodes,
  // never the last readable one. INVALID_ARGUMENT above kMaxReplicas.
  absl::StatusOr<Plan> SetReplicas(const common::PartitionTable& pt,
                                   const std::vector<StorageNode>& nodes, uint32_t replicas,
                                   const PlanOptions& options = {}) const;

  // Drops (DISCARDED) the FEEDING cells of every partition that has at
  // least R+1 UP_TO_DATE cells on RUNNING nodes, i.e. whose replacements
  // have caught up. Call it after marking cells UP_TO_DATE.
  absl::StatusOr<Plan> FinishFeeding(const common::PartitionTable& pt,
                                     const std::vector<StorageNode>& nodes) const;
  // As above, taking every node holding cells as RUNNING.
  Plan FinishFeeding(const common::PartitionTable& pt) const;

  // The largest R SetReplicas accepts.
  static constexpr uint32_t kMaxReplicas = 64;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_PT_PLANNER_H_
