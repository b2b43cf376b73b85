#include "services/master/pt_planner.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/common/ids.h"
#include "services/common/status_macros.h"

namespace cellar::master {
namespace {

using ::cellar::common::PartitionTable;
using ::cellar::v1::CELL_CORRUPTED;
using ::cellar::v1::CELL_DISCARDED;
using ::cellar::v1::CELL_FEEDING;
using ::cellar::v1::CELL_OUT_OF_DATE;
using ::cellar::v1::CELL_STATE_UNSPECIFIED;
using ::cellar::v1::CELL_UP_TO_DATE;
using ::cellar::v1::CellState;
using ::cellar::v1::NODE_DOWN;
using ::cellar::v1::NODE_PENDING;
using ::cellar::v1::NODE_RUNNING;
using ::cellar::v1::NODE_UNKNOWN;
using ::cellar::v1::NodeState;

// Pair penalties: one pair sharing a zone outweighs any number of pairs
// sharing only a host, which outweigh any number sharing only a device.
constexpr uint64_t kZoneWeight = uint64_t{1} << 40;
constexpr uint64_t kHostWeight = uint64_t{1} << 20;
constexpr uint64_t kDeviceWeight = 1;
// Safety bound on failure-domain passes (each pass that changes anything
// strictly lowers the total penalty, so this is rarely reached).
constexpr int kMaxSpreadPasses = 256;

// Assigned cells are the ones a partition counts as its replicas.
bool Assigned(CellState s) { return s == CELL_UP_TO_DATE || s == CELL_OUT_OF_DATE; }

std::string StateName(CellState s) {
  std::string name = ::cellar::v1::CellState_Name(s);
  if (absl::StartsWith(name, "CELL_")) name = name.substr(5);
  return name;
}

std::string NodeStateName(NodeState s) {
  std::string name = ::cellar::v1::NodeState_Name(s);
  if (absl::StartsWith(name, "NODE_")) name = name.substr(5);
  return name;
}

std::string Name(uint32_t node_id) { return common::NodeName(node_id); }

std::string Plural(size_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

struct NodeEntry {
  NodeState state = NODE_RUNNING;
  // zone, host, device (0 to 3 parts).
  std::vector<std::string> domain;
  // The same, interned: equal ids mean the same zone, zone/host,
  // zone/host/device; -1 = unknown.
  int zone = -1, host = -1, device = -1;
  // May receive cells (RUNNING and not quarantined, or being added).
  bool eligible = false;
  bool quarantined = false;
  // On a non-stable track: planned apart, for extra cells only.
  bool canary = false;
};

absl::Status ParseLabel(uint32_t node_id, const std::string& label, std::vector<std::string>* out) {
  out->clear();
  if (label.empty()) return absl::OkStatus();
  std::vector<std::string> parts = absl::StrSplit(label, '/');
  bool ok = parts.size() <= 3;
  for (const std::string& part : parts) ok = ok && !part.empty();
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("label \"", label, "\" of ", Name(node_id),
                                                   ": want zone, zone/host or zone/host/device"));
  }
  *out = std::move(parts);
  return absl::OkStatus();
}

// How many leading label parts two nodes share: 0 nothing, 1 the zone,
// 2 the host, 3 the device. Unknown parts are never shared.
int SharedDepth(const NodeEntry& a, const NodeEntry& b) {
  if (a.zone < 0 || a.zone != b.zone) return 0;
  if (a.host < 0 || a.host != b.host) return 1;
  if (a.device < 0 || a.device != b.device) return 2;
  return 3;
}

uint64_t DepthPenalty(int depth) {
  uint64_t penalty = 0;
  if (depth >= 1) penalty += kZoneWeight;
  if (depth >= 2) penalty += kHostWeight;
  if (depth >= 3) penalty += kDeviceWeight;
  return penalty;
}

using NodeMap = std::map<uint32_t, NodeEntry>;

absl::StatusOr<NodeMap> Validate(const PartitionTable& pt, const std::vector<StorageNode>& nodes) {
  if (pt.empty() || pt.num_partitions() == 0) {
    return absl::FailedPreconditionError("there is no partition table yet");
  }
  NodeMap map;
  for (const StorageNode& node : nodes) {
    if (node.node_id == 0) return absl::InvalidArgumentError("node id 0 in the node list");
    if (map.count(node.node_id) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(Name(node.node_id), " is listed twice"));
    }
    if (node.state != NODE_RUNNING && node.state != NODE_PENDING && node.state != NODE_DOWN &&
        node.state != NODE_UNKNOWN) {
      return absl::InvalidArgumentError(absl::StrCat(Name(node.node_id), " has no valid state (",
                                                     static_cast<int>(node.state), ")"));
    }
    NodeEntry entry;
    entry.state = node.state;
    entry.eligible = node.state == NODE_RUNNING && !node.quarantined;
    entry.quarantined = node.quarantined;
    entry.canary = node.canary;
    CELLAR_RETURN_IF_ERROR(ParseLabel(node.node_id, node.label, &entry.domain));
    map.emplace(node.node_id, std::move(entry));
  }
  std::map<std::string, int> interned;
  auto intern = [&](const std::vector<std::string>& parts, size_t n) {
    if (parts.size() < n) return -1;
    const std::string key = absl::StrJoin(parts.begin(), parts.begin() + n, "/");
    return interned.emplace(key, static_cast<int>(interned.size())).first->second;
  };
  for (auto& [id, entry] : map) {
    entry.zone = intern(entry.domain, 1);
    entry.host = intern(entry.domain, 2);
    entry.device = intern(entry.domain, 3);
  }
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    for (const common::PtCell& cell : pt.Row(p)) {
      if (map.count(cell.node_id) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            Name(cell.node_id), " holds cells (partition ", p, ") but is not in the node list"));
      }
    }
  }
  return map;
}

// Which nodes an Engine plans: the stable ones, which hold the R+1 cells
// of every partition, or the canary ones, which hold extra cells.
enum class Group { kStable, kCanary };

// The working copy of the table and the planning steps, for the cells of
// one group of nodes (`nodes`); the cells of the other group are left out
// and only tell whether a partition has readable data elsewhere. Each step
// keeps the invariants: one cell per node per partition, readable cells
// only removed while another readable cell of the group stays on an
// eligible node.
class Engine {
 public:
  Engine(const PartitionTable& pt, NodeMap nodes, uint32_t copies, Group group = Group::kStable)
      : nodes_(std::move(nodes)),
        copies_(copies),
        num_partitions_(pt.num_partitions()),
        group_(group) {
    orig_.resize(num_partitions_);
    readable_elsewhere_.assign(num_partitions_, false);
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      for (const common::PtCell& cell : pt.Row(p)) {
        if (nodes_.count(cell.node_id) != 0) {
          orig_[p][cell.node_id] = cell.state;
        } else if (common::IsReadable(cell.state)) {
          readable_elsewhere_[p] = true;
        }
      }
    }
    cur_ = orig_;
    for (const auto& [id, node] : nodes_) entry_[id] = &node;
    for (const auto& [id, node] : nodes_) {
      if (!node.eligible) continue;
      eligible_.push_back(id);
      load_[id] = 0;
      held_[id];
    }
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      for (const auto& [id, state] : cur_[p]) {
        if (Assigned(state) && IsEligible(id)) {
          ++load_[id];
          held_[id].insert(p);
        }
      }
    }
    frozen_.assign(num_partitions_, false);
  }

  size_t num_eligible() const { return eligible_.size(); }

  // Drop: the node's cells go away (it is not eligible, so no load).
  void DiscardNode(uint32_t node_id) {
    for (auto& row : cur_) row.erase(node_id);
  }

  // FinishFeeding: FEEDING cells go where enough UP_TO_DATE cells run.
  void FinishFeeding() {
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      uint32_t up = 0;
      for (const auto& [id, state] : cur_[p]) {
        if (state == CELL_UP_TO_DATE && nodes_.at(id).state == NODE_RUNNING) ++up;
      }
      if (up < copies_) continue;
      for (auto it = cur_[p].begin(); it != cur_[p].end();) {
        it = it->second == CELL_FEEDING ? cur_[p].erase(it) : std::next(it);
      }
    }
  }

  // Tweak, Add, Drop and SetReplicas all end here.
  void Rebalance() {
    // A partition with readable data in the other group only: canary cells
    // copy from the stable ones (the normal case); stable cells copy from
    // canary ones (a stable node died), and then only cells on eligible
    // nodes count, so that a replacement starts even while a dead node's
    // cell still counts as a replica.
    std::vector<bool> rescue(num_partitions_, false);
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      bool readable = false;
      for (const auto& [id, state] : cur_[p]) readable = readable || common::IsReadable(state);
      frozen_[p] = !readable && !readable_elsewhere_[p];
      rescue[p] = !readable && readable_elsewhere_[p] && group_ == Group::kStable;
    }
    auto counted = [&](uint32_t p) {
      size_t n = 0;
      for (uint32_t id : AssignedNodes(p)) n += rescue[p] && !IsEligible(id) ? 0 : 1;
      return n;
    };
    // Corrupted cells on eligible nodes are useless: discard them (they
    // are replaced below like missing cells).
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      if (frozen_[p]) continue;
      for (auto it = cur_[p].begin(); it != cur_[p].end();) {
        it = it->second == CELL_CORRUPTED && IsEligible(it->first) ? cur_[p].erase(it)
                                                                   : std::next(it);
      }
    }
    std::vector<uint32_t> target(num_partitions_, 0);
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      if (frozen_[p]) continue;
      std::set<uint32_t> available(eligible_.begin(), eligible_.end());
      for (const auto& [id, state] : cur_[p]) {
        if (Assigned(state) && !rescue[p]) available.insert(id);
      }
      target[p] = std::min<uint32_t>(copies_, static_cast<uint32_t>(available.size()));
    }
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      if (frozen_[p] || rescue[p]) continue;
      while (AssignedNodes(p).size() > target[p]) {
        if (!RemoveOne(p)) {
          warnings_.push_back(absl::StrCat("partition ", p, ": keeps ", AssignedNodes(p).size(),
                                           " cells: no extra cell can go without losing "
                                           "its last readable cell on a running node"));
          break;
        }
      }
    }
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      if (frozen_[p]) continue;
      while (counted(p) < target[p]) {
        if (!AddOne(p)) {
          warnings_.push_back(absl::StrCat("partition ", p, ": short of cells: no node can take ",
                                           "another one now (a CORRUPTED cell is replaced ",
                                           "on another node or by the next tweak)"));
          break;
        }
      }
    }
    Balance();
    SpreadDomains();
  }

  // Warnings about the final table: too few nodes, frozen partitions,
  // shared failure domains.
  void AddFinalWarnings() {
    std::vector<std::string> out;
    if (!eligible_.empty() && eligible_.size() < copies_) {
      out.push_back(absl::StrCat(
          "only ", eligible_.size(), eligible_.size() == 1 ? " storage node" : " storage nodes",
          " can hold cells: partitions get ", eligible_.size(), " cells instead of ", copies_));
    }
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      if (frozen_[p]) {
        // Said once, by the stable group.
        if (group_ == Group::kStable) {
          out.push_back(absl::StrCat("partition ", p, " has no readable cell: left as is"));
        }
        continue;
      }
      const std::vector<uint32_t> ids = AssignedNodes(p);
      std::vector<std::string> shared;
      for (size_t i = 0; i < ids.size(); ++i) {
        for (size_t j = i + 1; j < ids.size(); ++j) {
          const std::vector<std::string>& a = nodes_.at(ids[i]).domain;
          const int depth = SharedDepth(nodes_.at(ids[i]), nodes_.at(ids[j]));
          if (depth == 0) continue;
          static const char* const kLevel[] = {"", "zone", "host", "device"};
          std::vector<std::string> prefix(a.begin(), a.begin() + depth);
          shared.push_back(absl::StrCat("replicas ", Name(ids[i]), " and ", Name(ids[j]), " share ",
                                        kLevel[depth], " ", absl::StrJoin(prefix, "/")));
        }
      }
      if (!shared.empty()) {
        out.push_back(absl::StrCat("partition ", p, ": ", absl::StrJoin(shared, "; ")));
      }
    }
    warnings_.insert(warnings_.end(), out.begin(), out.end());
  }

  // The plan: the difference between the original table and the working copy.
  Plan MakePlan(std::string operation, const PlanOptions& options, uint64_t base_ptid,
                uint32_t replicas_before, uint32_t replicas_after) const {
    Plan plan;
    plan.operation = std::move(operation);
    plan.dry_run = options.dry_run;
    plan.base_ptid = base_ptid;
    plan.num_replicas_before = replicas_before;
    plan.num_replicas = replicas_after;
    plan.warnings = warnings_;
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      std::set<uint32_t> ids;
      for (const auto& [id, state] : orig_[p]) ids.insert(id);
      for (const auto& [id, state] : cur_[p]) ids.insert(id);
      for (uint32_t id : ids) {
        const CellState before = StateIn(orig_[p], id);
        CellState after = StateIn(cur_[p], id);
        if (after == CELL_STATE_UNSPECIFIED) after = CELL_DISCARDED;
        if (before == after) continue;
        plan.changes.push_back({p, id, after, before});
      }
    }
    std::map<uint32_t, NodeLoad> loads;
    for (const auto& [id, node] : nodes_) loads[id].node_id = id;
    for (uint32_t p = 0; p < num_partitions_; ++p) {
      for (const auto& [id, state] : orig_[p]) {
        NodeLoad& l = loads[id];
        l.node_id = id;
        if (Assigned(state)) ++l.cells_before;
        if (state == CELL_FEEDING) ++l.feeding_before;
      }
      for (const auto& [id, state] : cur_[p]) {
        NodeLoad& l = loads[id];
        l.node_id = id;
        if (Assigned(state)) ++l.cells_after;
        if (state == CELL_FEEDING) ++l.feeding_after;
      }
    }
    for (const auto& [id, l] : loads) {
      const bool holds = l.cells_before + l.cells_after + l.feeding_before + l.feeding_after > 0;
      if (holds || IsEligible(id)) plan.nodes.push_back(l);
    }
    return plan;
  }

 private:
  using Row = std::map<uint32_t, CellState>;

  static CellState StateIn(const Row& row, uint32_t id) {
    auto it = row.find(id);
    return it == row.end() ? CELL_STATE_UNSPECIFIED : it->second;
  }
  CellState Cur(uint32_t p, uint32_t id) const { return StateIn(cur_[p], id); }
  CellState Orig(uint32_t p, uint32_t id) const { return StateIn(orig_[p], id); }
  bool IsEligible(uint32_t id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.eligible;
  }

  std::vector<uint32_t> AssignedNodes(uint32_t p) const {
    std::vector<uint32_t> ids;
    for (const auto& [id, state] : cur_[p]) {
      if (Assigned(state)) ids.push_back(id);
    }
    return ids;
  }

  uint64_t Pair(uint32_t a, uint32_t b) const {
    return DepthPenalty(SharedDepth(*entry_.at(a), *entry_.at(b)));
  }
  // Sum of the pair penalties of p's assigned cells (0: perfect spread).
  uint64_t Penalty(uint32_t p) const {
    uint64_t penalty = 0;
    for (auto i = cur_[p].begin(); i != cur_[p].end(); ++i) {
      if (!Assigned(i->second)) continue;
      for (auto j = std::next(i); j != cur_[p].end(); ++j) {
        if (Assigned(j->second)) penalty += Pair(i->first, j->first);
      }
    }
    return penalty;
  }
  // How p's penalty changes if `from` loses its cell and `to` gets one
  // (either may be 0: none).
  int64_t Delta(uint32_t p, uint32_t from, uint32_t to) const {
    int64_t delta = 0;
    for (const auto& [id, state] : cur_[p]) {
      if (!Assigned(state) || id == from || id == to) continue;
      if (to != 0) delta += static_cast<int64_t>(Pair(to, id));
      if (from != 0) delta -= static_cast<int64_t>(Pair(from, id));
    }
    return delta;
  }
  // The part of p's penalty due to the cell on `id`.
  uint64_t Contribution(uint32_t p, uint32_t id) const {
    return static_cast<uint64_t>(-Delta(p, id, 0));
  }

  // Readable cells of p on eligible nodes other than `except`.
  int OtherReadable(uint32_t p, uint32_t except) const {
    int n = 0;
    for (const auto& [id, state] : cur_[p]) {
      if (id != except && common::IsReadable(state) && IsEligible(id)) ++n;
    }
    return n;
  }

  // Whether `id` may get an assigned cell of p in this plan. A node whose
  // cell was CORRUPTED first drops it (DISCARDED); it may get a fresh cell
  // from a later plan.
  bool CanTake(uint32_t p, uint32_t id) const {
    const CellState now = Cur(p, id);
    return !Assigned(now) && now != CELL_CORRUPTED && Orig(p, id) != CELL_CORRUPTED;
  }

  // 0 when moving p's cell from `from` to `to` starts no new copy compared
  // with the original table: `to` gets back a cell it had (or revives a
  // FEEDING one), or `from`'s cell is one this plan added. 1 otherwise.
  int CopyCost(uint32_t p, uint32_t from, uint32_t to) const {
    const bool to_has_data = Cur(p, to) == CELL_FEEDING || Assigned(Orig(p, to));
    const bool from_is_new = !Assigned(Orig(p, from));
    return to_has_data || from_is_new ? 0 : 1;
  }

  // Gives `id` an assigned cell of p: revives a FEEDING cell, restores a
  // cell this plan removed, or adds an OUT_OF_DATE one.
  void Assign(uint32_t p, uint32_t id) {
    const CellState now = Cur(p, id);
    const CellState was = Orig(p, id);
    CellState next = CELL_OUT_OF_DATE;
    if (now == CELL_FEEDING) {
      next = CELL_UP_TO_DATE;
    } else if (Assigned(was)) {
      next = was;
    }
    cur_[p][id] = next;
    if (IsEligible(id)) {
      ++load_[id];
      held_[id].insert(p);
    }
  }

  // Takes p's assigned cell away from `id`. A move keeps readable data as
  // FEEDING; a removal discards it (unless it was FEEDING before the plan).
  void Unassign(uint32_t p, uint32_t id, bool move) {
    const CellState now = Cur(p, id);
    if (now == CELL_UP_TO_DATE && (move || Orig(p, id) == CELL_FEEDING)) {
      cur_[p][id] = CELL_FEEDING;
    } else {
      cur_[p].erase(id);
    }
    if (IsEligible(id)) {
      --load_[id];
      held_[id].erase(p);
    }
  }

  // Moves p's assigned cell from `from` to `to`. The old cell feeds the
  // new one, unless the new one is readable at once (a FEEDING cell revived
  // or a cell of the original table restored): then it is just discarded.
  void Move(uint32_t p, uint32_t from, uint32_t to) {
    Assign(p, to);
    Unassign(p, from, /*move=*/Cur(p, to) != CELL_UP_TO_DATE);
  }

  // Removes one extra cell of p: non-readable first, then cells on nodes
  // that may not hold cells, then the one whose removal helps failure
  // domains most, then the most loaded node.
  bool RemoveOne(uint32_t p) {
    bool found = false;
    std::tuple<int, int, int64_t, int, uint32_t> best;
    uint32_t best_id = 0;
    for (const auto& [id, state] : cur_[p]) {
      if (!Assigned(state)) continue;
      const bool readable = common::IsReadable(state);
      if (readable && OtherReadable(p, id) == 0) continue;
      const bool eligible = IsEligible(id);
      auto key = std::make_tuple(readable ? 1 : 0, eligible ? 1 : 0, Delta(p, id, 0),
                                 eligible ? -load_.at(id) : 0, id);
      if (!found || key < best) {
        found = true;
        best = key;
        best_id = id;
      }
    }
    if (!found) return false;
    Unassign(p, best_id, /*move=*/false);
    return true;
  }

  // Adds one cell of p: revive a FEEDING cell first (no copy), then the
  // best failure domain, then the least loaded node.
  bool AddOne(uint32_t p) {
    bool found = false;
    std::tuple<int, int64_t, int, uint32_t> best;
    uint32_t best_id = 0;
    for (uint32_t id : eligible_) {
      if (!CanTake(p, id)) continue;
      auto key =
          std::make_tuple(Cur(p, id) == CELL_FEEDING ? 0 : 1, Delta(p, 0, id), load_.at(id), id);
      if (!found || key < best) {
        found = true;
        best = key;
        best_id = id;
      }
    }
    if (!found) return false;
    Assign(p, best_id);
    return true;
  }

  // Moves cells from the most loaded to the least loaded eligible nodes
  // until loads are within one. Each move lowers the sum of squared loads,
  // so this ends; moving only while max - min > 1 gives the fewest moves.
  void Balance() {
    while (!eligible_.empty()) {
      int max_load = std::numeric_limits<int>::min();
      int min_load = std::numeric_limits<int>::max();
      for (const auto& [id, l] : load_) {
        max_load = std::max(max_load, l);
        min_load = std::min(min_load, l);
      }
      if (max_load - min_load <= 1) return;
      if (!MoveOne(max_load, min_load, /*extremes_only=*/true) &&
          !MoveOne(max_load, min_load, /*extremes_only=*/false)) {
        warnings_.push_back(
            absl::StrCat("could not balance within one (", max_load, " vs ", min_load,
                         " cells): no cell can move now (partitions without a readable cell, or a "
                         "CORRUPTED cell to drop first); tweak again later"));
        return;
      }
    }
  }

  bool MoveOne(int max_load, int min_load, bool extremes_only) {
    bool found = false;
    std::tuple<int64_t, int, uint32_t, uint32_t, uint32_t> best;
    for (uint32_t a : eligible_) {
      const int la = load_.at(a);
      if (extremes_only && la != max_load) continue;
      for (uint32_t b : eligible_) {
        const int lb = load_.at(b);
        if (extremes_only ? lb != min_load : la - lb < 2) continue;
        for (uint32_t p : held_.at(a)) {
          if (frozen_[p]) continue;
          if (!CanTake(p, b)) continue;
          const int64_t delta = Delta(p, a, b);
          const int cost = CopyCost(p, a, b);
          auto key = std::make_tuple(delta, cost, p, a, b);
          if (!found || key < best) {
            found = true;
            best = key;
          }
        }
      }
    }
    if (!found) return false;
    Move(std::get<2>(best), std::get<3>(best), std::get<4>(best));
    return true;
  }

  // Improves failure-domain spread without breaking balance: a single
  // move to a node with fewer cells, or a swap of two cells between two
  // nodes. Every change strictly lowers the total penalty.
  void SpreadDomains() {
    bool any_label = false;
    for (const auto& [id, node] : nodes_) any_label = any_label || !node.domain.empty();
    if (!any_label) return;
    for (int pass = 0; pass < kMaxSpreadPasses; ++pass) {
      bool improved = false;
      for (uint32_t p = 0; p < num_partitions_; ++p) {
        if (!frozen_[p] && Penalty(p) > 0 && ImproveOne(p)) improved = true;
      }
      if (!improved) return;
    }
  }

  // One improvement for partition p: the best single move (largest gain,
  // then fewest new copies, then lowest ids) if it clears the moved cell's
  // whole conflict; otherwise the better of that and the best swap. The
  // swap search stops at the first swap that clears the moved cell's whole
  // conflict at no cost to the other partition (it keeps big tables fast).
  bool ImproveOne(uint32_t p) {
    constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
    // (-gain, moves, cost, a, b, q)
    using Key = std::tuple<int64_t, int, int, uint32_t, uint32_t, uint32_t>;
    bool found = false;
    Key best;
    auto consider = [&](const Key& key) {
      if (!found || key < best) {
        found = true;
        best = key;
      }
    };
    std::vector<std::pair<uint32_t, int64_t>> movable;  // (a, its contribution)
    for (uint32_t a : AssignedNodes(p)) {
      const int64_t contribution = static_cast<int64_t>(Contribution(p, a));
      if (IsEligible(a) && contribution > 0) movable.emplace_back(a, contribution);
    }
    bool cleared = false;
    for (const auto& [a, contribution] : movable) {
      for (uint32_t b : eligible_) {
        if (b == a || load_.at(b) >= load_.at(a) || !CanTake(p, b)) continue;
        const int64_t gain = -Delta(p, a, b);
        if (gain <= 0) continue;
        consider(Key(-gain, 1, CopyCost(p, a, b), a, b, kNone));
        if (gain == contribution) cleared = true;
      }
    }
    if (!cleared) {
      for (const auto& [a, contribution] : movable) {
        for (uint32_t b : eligible_) {
          if (b == a || !CanTake(p, b)) continue;
          const int64_t gain_p = -Delta(p, a, b);
          if (gain_p <= 0) continue;
          const int cost_p = CopyCost(p, a, b);
          for (uint32_t q : held_.at(b)) {
            if (q == p || frozen_[q] || !CanTake(q, a)) continue;
            const int64_t delta_q = Delta(q, b, a);
            const int64_t gain = gain_p - delta_q;
            if (gain <= 0) continue;
            consider(Key(-gain, 2, cost_p + CopyCost(q, b, a), a, b, q));
            if (gain_p == contribution && delta_q <= 0) {
              cleared = true;
              break;
            }
          }
          if (cleared) break;
        }
        if (cleared) break;
      }
    }
    if (!found) return false;
    const uint32_t a = std::get<3>(best);
    const uint32_t b = std::get<4>(best);
    const uint32_t q = std::get<5>(best);
    Move(p, a, b);
    if (q != kNone) Move(q, b, a);
    return true;
  }

  NodeMap nodes_;
  absl::flat_hash_map<uint32_t, const NodeEntry*> entry_;  // into nodes_
  const uint32_t copies_;
  const uint32_t num_partitions_;
  const Group group_;
  std::vector<bool> readable_elsewhere_;  // a readable cell in the other group
  std::vector<Row> orig_;
  std::vector<Row> cur_;
  std::vector<uint32_t> eligible_;               // sorted
  std::map<uint32_t, int> load_;                 // eligible nodes: assigned cells
  std::map<uint32_t, std::set<uint32_t>> held_;  // eligible nodes: their assigned partitions
  std::vector<bool> frozen_;                     // partitions without a readable cell
  std::vector<std::string> warnings_;
};

// The stable and the canary nodes of `map`, apart.
std::pair<NodeMap, NodeMap> SplitGroups(NodeMap map) {
  NodeMap stable, canary;
  for (auto& [id, entry] : map) (entry.canary ? canary : stable).emplace(id, std::move(entry));
  return {std::move(stable), std::move(canary)};
}

// Adds the canary group's part of a plan to the stable group's (their
// nodes differ), keeping changes and nodes sorted.
void MergeInto(Plan* plan, Plan part) {
  plan->changes.insert(plan->changes.end(), part.changes.begin(), part.changes.end());
  plan->warnings.insert(plan->warnings.end(), part.warnings.begin(), part.warnings.end());
  plan->nodes.insert(plan->nodes.end(), part.nodes.begin(), part.nodes.end());
  std::sort(plan->changes.begin(), plan->changes.end(),
            [](const PlannedChange& a, const PlannedChange& b) {
              return std::tie(a.partition, a.node_id) < std::tie(b.partition, b.node_id);
            });
  std::sort(plan->nodes.begin(), plan->nodes.end(),
            [](const NodeLoad& a, const NodeLoad& b) { return a.node_id < b.node_id; });
}

// Plans the stable nodes for `copies` cells per partition and the canary
// nodes for one extra cell per partition, apart: the canaries change
// nothing of the stable layout. `prepare` runs on both engines before they
// rebalance (Drop discards a node's cells there).
absl::StatusOr<Plan> PlanGroups(const PartitionTable& pt, NodeMap map, uint32_t copies,
                                std::string operation, const PlanOptions& options,
                                uint32_t replicas_after,
                                const std::function<void(Engine&)>& prepare = nullptr) {
  auto [stable_nodes, canary_nodes] = SplitGroups(std::move(map));
  const bool any_canary = !canary_nodes.empty();
  Engine stable(pt, std::move(stable_nodes), copies, Group::kStable);
  Engine canary(pt, std::move(canary_nodes), 1, Group::kCanary);
  if (stable.num_eligible() == 0) {
    return absl::FailedPreconditionError(
        any_canary ? "no RUNNING stable storage node can hold cells (canary storages hold only "
                     "extra cells)"
                   : "no RUNNING storage node can hold cells");
  }
  Plan plan;
  for (Engine* engine : {&stable, &canary}) {
    if (prepare) prepare(*engine);
    engine->Rebalance();
    engine->AddFinalWarnings();
    Plan part = engine->MakePlan(operation, options, pt.ptid(), pt.num_replicas(), replicas_after);
    if (engine == &stable) {
      plan = std::move(part);
    } else {
      MergeInto(&plan, std::move(part));
    }
  }
  return plan;
}

}  // namespace

::cellar::v1::PartitionTableDelta Plan::ToDelta(uint64_t ptid) const {
  ::cellar::v1::PartitionTableDelta delta;
  delta.set_ptid(ptid);
  for (const PlannedChange& c : changes) {
    ::cellar::v1::CellChange* change = delta.add_changes();
    change->set_partition(c.partition);
    change->set_node_id(c.node_id);
    change->set_state(c.state);
  }
  return delta;
}

std::string Plan::ToString() const {
  std::vector<std::string> lines;
  size_t moves = 0, added = 0, removed = 0, other = 0;
  auto generic = [&](const PlannedChange& c) {
    ++other;
    lines.push_back(absl::StrCat("partition ", c.partition, ": ", Name(c.node_id), " ",
                                 StateName(c.previous), " -> ", StateName(c.state)));
  };
  for (size_t i = 0; i < changes.size();) {
    size_t end = i;
    while (end < changes.size() && changes[end].partition == changes[i].partition) ++end;
    // Within a partition, a cell losing its assignment and one gaining it
    // make a move.
    std::vector<const PlannedChange*> from, to, rest;
    for (size_t k = i; k < end; ++k) {
      const PlannedChange& c = changes[k];
      if (Assigned(c.previous) && !Assigned(c.state)) {
        from.push_back(&c);
      } else if (!Assigned(c.previous) && Assigned(c.state)) {
        to.push_back(&c);
      } else {
        rest.push_back(&c);
      }
    }
    const uint32_t p = changes[i].partition;
    const size_t paired = std::min(from.size(), to.size());
    for (size_t k = 0; k < paired; ++k) {
      ++moves;
      lines.push_back(absl::StrCat("partition ", p, ": ", Name(from[k]->node_id), " -> ",
                                   Name(to[k]->node_id), " (", Name(from[k]->node_id), " ",
                                   StateName(from[k]->state), ", ", Name(to[k]->node_id), " ",
                                   StateName(to[k]->state), ")"));
    }
    for (size_t k = paired; k < to.size(); ++k) {
      if (to[k]->previous != CELL_STATE_UNSPECIFIED) {
        generic(*to[k]);
        continue;
      }
      ++added;
      lines.push_back(absl::StrCat("partition ", p, ": new ", Name(to[k]->node_id), " (",
                                   StateName(to[k]->state), ")"));
    }
    for (size_t k = paired; k < from.size(); ++k) {
      if (from[k]->state != CELL_DISCARDED) {
        generic(*from[k]);
        continue;
      }
      ++removed;
      lines.push_back(absl::StrCat("partition ", p, ": remove ", Name(from[k]->node_id), " (was ",
                                   StateName(from[k]->previous), ")"));
    }
    for (const PlannedChange* c : rest) generic(*c);
    i = end;
  }

  std::string out = operation;
  if (dry_run) absl::StrAppend(&out, " (dry run)");
  if (empty()) {
    absl::StrAppend(&out, ": ptid ", base_ptid, ", no changes\n");
  } else {
    absl::StrAppend(&out, ": ptid ", base_ptid, " -> ", base_ptid + 1, ", ",
                    Plural(moves, "move", "moves"), ", ", Plural(added, "new cell", "new cells"),
                    ", ", removed, " removed, ", Plural(other, "other change", "other changes"));
    if (num_replicas != num_replicas_before) {
      absl::StrAppend(&out, ", replicas ", num_replicas_before, " -> ", num_replicas);
    }
    absl::StrAppend(&out, "\n");
  }
  for (const std::string& line : lines) absl::StrAppend(&out, line, "\n");
  for (const std::string& w : warnings) absl::StrAppend(&out, "warning: ", w, "\n");
  for (const NodeLoad& n : nodes) {
    absl::StrAppend(&out, Name(n.node_id), ": cells ", n.cells_before, " -> ", n.cells_after);
    if (n.feeding_after > 0) absl::StrAppend(&out, ", ", n.feeding_after, " feeding");
    absl::StrAppend(&out, "\n");
  }
  return out;
}

absl::StatusOr<common::PartitionTable> ApplyPlan(const common::PartitionTable& pt,
                                                 const Plan& plan) {
  if (plan.base_ptid != pt.ptid()) {
    return absl::FailedPreconditionError(absl::StrCat("the plan was made for ptid ", plan.base_ptid,
                                                      " but the table is at ptid ", pt.ptid(),
                                                      ": plan again"));
  }
  ::cellar::v1::PartitionTable proto = pt.ToProto();
  proto.set_num_replicas(plan.num_replicas);
  CELLAR_ASSIGN_OR_RETURN(common::PartitionTable out, common::PartitionTable::FromProto(proto));
  CELLAR_RETURN_IF_ERROR(out.ApplyDelta(plan.ToDelta(pt.ptid() + 1)));
  return out;
}

absl::StatusOr<Plan> PtPlanner::Tweak(const common::PartitionTable& pt,
                                      const std::vector<StorageNode>& nodes,
                                      const PlanOptions& options) const {
  CELLAR_ASSIGN_OR_RETURN(NodeMap map, Validate(pt, nodes));
  return PlanGroups(pt, std::move(map), pt.num_replicas() + 1, "tweak", options,
                    pt.num_replicas());
}

absl::StatusOr<Plan> PtPlanner::Add(const common::PartitionTable& pt,
                                    const std::vector<StorageNode>& nodes,
                                    const std::vector<uint32_t>& node_ids,
                                    const PlanOptions& options) const {
  CELLAR_ASSIGN_OR_RETURN(NodeMap map, Validate(pt, nodes));
  if (node_ids.empty()) return absl::InvalidArgumentError("no storage node to add");
  std::set<uint32_t> ids(node_ids.begin(), node_ids.end());
  std::vector<std::string> names;
  for (uint32_t id : ids) {
    auto it = map.find(id);
    if (it == map.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown storage node ", Name(id)));
    }
    if (it->second.state != NODE_PENDING && it->second.state != NODE_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat(Name(id), " is ", NodeStateName(it->second.state),
                       ": only a PENDING (or RUNNING) storage node can be added"));
    }
    if (it->second.quarantined) {
      return absl::FailedPreconditionError(absl::StrCat(
          Name(id), " runs a quarantined version: it gets no new cells (unquarantine the "
          "version first: docs/rollouts.md)"));
    }
    it->second.eligible = true;
    names.push_back(Name(id));
  }
  return PlanGroups(pt, std::move(map), pt.num_replicas() + 1,
                    absl::StrCat("add ", absl::StrJoin(names, " ")), options, pt.num_replicas());
}

absl::StatusOr<Plan> PtPlanner::Drop(const common::PartitionTable& pt,
                                     const std::vector<StorageNode>& nodes, uint32_t node_id,
                                     const PlanOptions& options) const {
  CELLAR_ASSIGN_OR_RETURN(NodeMap map, Validate(pt, nodes));
  auto it = map.find(node_id);
  if (it == map.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown storage node ", Name(node_id)));
  }
  if (it->second.state == NODE_RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat(
        Name(node_id), " is RUNNING: stop it first or use tweak to move its data away"));
  }
  std::vector<uint32_t> last;
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    if (common::IsReadable(pt.CellStateOf(p, node_id)) && pt.ReadableNodes(p).size() == 1) {
      last.push_back(p);
    }
  }
  if (!last.empty()) {
    std::string message = absl::StrCat("dropping ", Name(node_id),
                                       " would drop the last readable cell of partition ", last[0]);
    if (last.size() > 1) {
      absl::StrAppend(&message, " (and of partitions ",
                      absl::StrJoin(last.begin() + 1, last.end(), ", "), ")");
    }
    return absl::FailedPreconditionError(message);
  }
  if (!it->second.canary) {
    // A stable cell may go only while the partition keeps a readable cell
    // on a stable node: canary cells are extras, never the only copy.
    std::vector<uint32_t> canary_only;
    for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
      if (pt.CellStateOf(p, node_id) == CELL_STATE_UNSPECIFIED) continue;
      bool stable_readable = false, canary_readable = false;
      for (uint32_t id : pt.ReadableNodes(p)) {
        if (id == node_id) continue;
        (map.at(id).canary ? canary_readable : stable_readable) = true;
      }
      if (canary_readable && !stable_readable) canary_only.push_back(p);
    }
    if (!canary_only.empty()) {
      std::string message =
          absl::StrCat("dropping ", Name(node_id),
                       " would leave only canary cells readable in partition ", canary_only[0]);
      if (canary_only.size() > 1) {
        absl::StrAppend(&message, " (and in partitions ",
                        absl::StrJoin(canary_only.begin() + 1, canary_only.end(), ", "), ")");
      }
      absl::StrAppend(&message,
                      ": tweak first (it copies them to stable storages from the canary cells), "
                      "then drop once the new cells are UP_TO_DATE");
      return absl::FailedPreconditionError(message);
    }
  }
  return PlanGroups(pt, std::move(map), pt.num_replicas() + 1,
                    absl::StrCat("drop ", Name(node_id)), options, pt.num_replicas(),
                    [node_id](Engine& engine) { engine.DiscardNode(node_id); });
}

absl::StatusOr<Plan> PtPlanner::SetReplicas(const common::PartitionTable& pt,
                                            const std::vector<StorageNode>& nodes,
                                            uint32_t replicas, const PlanOptions& options) const {
  if (replicas > kMaxReplicas) {
    return absl::InvalidArgumentError(
        absl::StrCat("replicas must be at most ", kMaxReplicas, ", not ", replicas));
  }
  CELLAR_ASSIGN_OR_RETURN(NodeMap map, Validate(pt, nodes));
  return PlanGroups(pt, std::move(map), replicas + 1, absl::StrCat("set replicas ", replicas),
                    options, replicas);
}

absl::StatusOr<Plan> PtPlanner::FinishFeeding(const common::PartitionTable& pt,
                                              const std::vector<StorageNode>& nodes) const {
  CELLAR_ASSIGN_OR_RETURN(NodeMap map, Validate(pt, nodes));
  // Stable FEEDING cells go once R+1 stable cells are UP_TO_DATE, canary
  // ones once the partition's canary cell is.
  auto [stable_nodes, canary_nodes] = SplitGroups(std::move(map));
  Engine stable(pt, std::move(stable_nodes), pt.num_replicas() + 1, Group::kStable);
  Engine canary(pt, std::move(canary_nodes), 1, Group::kCanary);
  stable.FinishFeeding();
  canary.FinishFeeding();
  Plan plan = stable.MakePlan("finish feeding", PlanOptions{}, pt.ptid(), pt.num_replicas(),
                              pt.num_replicas());
  Plan extra = canary.MakePlan("finish feeding", PlanOptions{}, pt.ptid(), pt.num_replicas(),
                               pt.num_replicas());
  MergeInto(&plan, std::move(extra));
  return plan;
}

Plan PtPlanner::FinishFeeding(const common::PartitionTable& pt) const {
  std::vector<uint32_t> ids;
  for (uint32_t id : pt.NodeIds()) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<StorageNode> nodes;
  for (uint32_t id : ids) nodes.push_back({id, NODE_RUNNING, ""});
  absl::StatusOr<Plan> plan = FinishFeeding(pt, nodes);
  if (!plan.ok()) {  // Only an empty table: nothing to finish.
    Plan empty;
    empty.operation = "finish feeding";
    empty.base_ptid = pt.ptid();
    empty.num_replicas_before = empty.num_replicas = pt.num_replicas();
    return empty;
  }
  return *std::move(plan);
}

}  // namespace cellar::master
