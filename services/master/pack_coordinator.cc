#include "services/master/pack_coordinator.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace cellar::master {
namespace {

// Storages to ask: connected, holding at least one cell.
std::vector<StorageTarget> Targets(const cellar::v1::GetClusterInfoResponse& info) {
  std::map<uint32_t, bool> holding;
  for (const cellar::v1::PartitionRow& row : info.partition_table().rows()) {
    for (const cellar::v1::Cell& c : row.cells()) holding[c.node_id()] = true;
  }
  std::vector<StorageTarget> out;
  for (const cellar::v1::NodeInfo& n : info.nodes()) {
    if (n.role() != cellar::v1::NODE_ROLE_STORAGE || holding.count(n.node_id()) == 0) continue;
    if (n.state() != cellar::v1::NODE_RUNNING && n.state() != cellar::v1::NODE_PENDING) continue;
    out.push_back({n.node_id(), n.address()});
  }
  std::sort(out.begin(), out.end(),
            [](const StorageTarget& a, const StorageTarget& b) { return a.node_id < b.node_id; });
  return out;
}

// Adds to `progress.pending_partitions` every cell that `info`'s table
// (the master's) says is readable on that storage but that the storage
// reported neither packed nor pending: a storage that has just come back
// may not have learnt yet that its cells are readable again, and would
// otherwise report "nothing left to pack" before it packed them.
void AddCellsTheStorageDoesNotSeeYet(const cellar::v1::GetClusterInfoResponse& info,
                                     cellar::v1::StoragePackProgress& progress) {
  std::set<uint32_t> reported(progress.pending_partitions().begin(),
                              progress.pending_partitions().end());
  reported.insert(progress.done_partitions().begin(), progress.done_partitions().end());
  for (const cellar::v1::PartitionRow& row : info.partition_table().rows()) {
    for (const cellar::v1::Cell& c : row.cells()) {
      if (c.node_id() == progress.node_id() &&
          (c.state() == cellar::v1::CELL_UP_TO_DATE || c.state() == cellar::v1::CELL_FEEDING) &&
          reported.count(row.partition()) == 0) {
        progress.add_pending_partitions(row.partition());
      }
    }
  }
}

}  // namespace

PackCoordinator::PackCoordinator(ClusterView view, StorageCaller* storages,
                                 CheckBusy check_busy, PackCoordinatorOptions options)
    : view_(std::move(view)),
      storages_(storages),
      check_busy_(std::move(check_busy)),
      options_(options) {
  if (options_.sync_interval > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Loop(); });
  }
}

PackCoordinator::~PackCoordinator() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<cellar::v1::PackStatus> PackCoordinator::Request(uint64_t pack_tid) {
  if (pack_tid == 0) {
    return absl::InvalidArgumentError("pack_tid: required (0 would pack nothing)");
  }
  const cellar::v1::GetClusterInfoResponse info = view_();
  if (info.cluster_state() != cellar::v1::CLUSTER_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("cluster is ", cellar::v1::ClusterState_Name(info.cluster_state()),
                     ": pack needs RUNNING"));
  }
  if (pack_tid > info.last_tid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pack_tid ", common::TidHex(pack_tid), " is beyond the last committed tid ",
                     common::TidHex(info.last_tid())));
  }
  if (check_busy_) CELLAR_RETURN_IF_ERROR(check_busy_());
  {
    absl::MutexLock l(&mu_);
    if (pack_tid > pack_tid_) {
      CELLAR_LOG(INFO) << "pack requested at tid " << common::TidHex(pack_tid);
      pack_tid_ = pack_tid;
    }
  }
  return Status();
}

cellar::v1::PackStatus PackCoordinator::Status() {
  absl::MutexLock sync(&sync_mu_);
  const cellar::v1::GetClusterInfoResponse info = view_();
  const std::vector<StorageTarget> targets = Targets(info);
  cellar::v1::PackStatus status;
  // Two rounds at most: the first may learn a higher tid a storage
  // remembers (this master is new) and the second hands it to the others.
  for (int round = 0; round < 2; ++round) {
    uint64_t asked;
    {
      absl::MutexLock l(&mu_);
      asked = pack_tid_;
    }
    status.Clear();
    uint64_t highest = asked;
    for (const StorageTarget& t : targets) {
      absl::StatusOr<cellar::v1::StoragePackProgress> p =
          storages_->Pack(t, info.epoch(), asked);
      cellar::v1::StoragePackProgress* out = status.add_storages();
      if (!p.ok()) {
        out->set_node_id(t.node_id);
        out->set_error(std::string(p.status().message()).substr(0, 512));
        continue;
      }
      *out = *std::move(p);
      if (out->pack_tid() != 0) AddCellsTheStorageDoesNotSeeYet(info, *out);
      highest = std::max<uint64_t>(highest, out->pack_tid());
    }
    {
      absl::MutexLock l(&mu_);
      pack_tid_ = std::max(pack_tid_, highest);
    }
    status.set_pack_tid(highest);
    if (highest == asked) break;
  }
  bool done = status.pack_tid() != 0;
  for (const cellar::v1::StoragePackProgress& p : status.storages()) {
    done = done && p.pack_tid() == status.pack_tid() && p.pending_partitions_size() == 0 &&
           p.error().empty();
  }
  status.set_done(done);
  return status;
}

absl::Status PackCoordinator::CheckIdle() {
  const cellar::v1::PackStatus status = Status();
  if (status.pack_tid() == 0) return absl::OkStatus();
  for (const cellar::v1::StoragePackProgress& p : status.storages()) {
    const std::string who = common::NodeName(p.node_id());
    if (p.pack_tid() != status.pack_tid() || p.pending_partitions_size() > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "a pack at tid ", common::TidHex(status.pack_tid()), " is in progress (", who,
          " has ", p.pending_partitions_size(),
          " cell(s) to pack): packed and unpacked cells differ, check once it is done"));
    }
    if (!p.error().empty() && p.pack_tid() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot tell whether ", who, " is packed: ", p.error()));
    }
  }
  return absl::OkStatus();
}

void PackCoordinator::Loop() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.sync_interval);
      if (stopping_) return;
    }
    if (view_().cluster_state() == cellar::v1::CLUSTER_RUNNING) (void)Status();
  }
}

}  // namespace cellar::master
