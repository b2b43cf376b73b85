#include "services/master/replica_checker.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/common/partition_table.h"

namespace cellar::master {
namespace {

// Compared cells are asked for the reference's whole chunk at once.
constexpr uint32_t kMaxCheckTransactions = 100000;

bool Connected(const cellar::v1::NodeInfo& node) {
  return node.state() == cellar::v1::NODE_RUNNING || node.state() == cellar::v1::NODE_PENDING;
}

// What differs between a cell's answer and the reference's, "" if nothing.
std::string Compare(const CellCheck& cell, const CellCheck& reference) {
  std::vector<std::string> what;
  if (cell.last_tid != reference.last_tid) {
    what.push_back(absl::StrCat("covered up to ", common::TidHex(cell.last_tid), " vs ",
                                common::TidHex(reference.last_tid)));
  }
  if (cell.transaction_count != reference.transaction_count) {
    what.push_back(absl::StrCat("transactions: ", cell.transaction_count, " vs ",
                                reference.transaction_count));
  } else if (cell.tid_hash != reference.tid_hash) {
    what.push_back("tid hash differs");
  }
  if (cell.object_count != reference.object_count) {
    what.push_back(
        absl::StrCat("objects: ", cell.object_count, " vs ", reference.object_count));
  } else if (cell.oid_hash != reference.oid_hash) {
    what.push_back("oid hash differs");
  }
  if (cell.data_hash != reference.data_hash) what.push_back("data hash differs");
  if (what.empty()) return "";
  return absl::StrCat(absl::StrJoin(what, "; "), " (this cell vs the reference)");
}

std::vector<const StorageTarget*> AllOf(const StorageTarget& reference,
                                        const std::vector<StorageTarget>& others) {
  std::vector<const StorageTarget*> all = {&reference};
  for (const StorageTarget& t : others) all.push_back(&t);
  return all;
}

}  // namespace

ReplicaChecker::ReplicaChecker(ClusterView view, StorageCaller* storages,
                               const common::Clock* clock, ReplicaCheckerOptions options)
    : view_(std::move(view)), storages_(storages), clock_(clock), options_(options) {}

ReplicaChecker::~ReplicaChecker() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  absl::MutexLock l(&start_mu_);
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<uint64_t> ReplicaChecker::Start(
    const cellar::v1::CheckReplicasRequest& request) {
  absl::MutexLock start(&start_mu_);
  {
    absl::MutexLock l(&mu_);
    if (status_.running()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "check ", status_.check_id(), " is still running: one check at a time"));
    }
  }
  const cellar::v1::GetClusterInfoResponse info = view_();
  if (info.cluster_state() != cellar::v1::CLUSTER_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("cluster is ", cellar::v1::ClusterState_Name(info.cluster_state()),
                     ": checks need RUNNING"));
  }
  if (start_precondition_) CELLAR_RETURN_IF_ERROR(start_precondition_());
  const uint32_t num_partitions = info.partition_table().num_partitions();
  Plan plan;
  for (uint32_t p : request.partitions()) {
    if (p >= num_partitions) {
      return absl::InvalidArgumentError(absl::StrCat("partitions: ", p, " out of range (",
                                                     num_partitions, " partitions)"));
    }
    plan.partitions.push_back(p);
  }
  if (plan.partitions.empty()) {
    for (uint32_t p = 0; p < num_partitions; ++p) plan.partitions.push_back(p);
  }
  std::sort(plan.partitions.begin(), plan.partitions.end());
  plan.partitions.erase(std::unique(plan.partitions.begin(), plan.partitions.end()),
                        plan.partitions.end());
  plan.min_tid = request.min_tid();
  // Only completed transactions are compared: every cell has them all
  // (one still in commit may be locked on some cells and not yet others).
  plan.max_tid = request.max_tid() == 0 ? info.last_tid()
                                        : std::min<uint64_t>(request.max_tid(), info.last_tid());
  plan.with_data = request.with_data();
  if (plan.min_tid > plan.max_tid) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_tid: ", common::TidHex(plan.min_tid), " is above max_tid ",
                     common::TidHex(plan.max_tid)));
  }
  if (thread_.joinable()) thread_.join();  // the previous check has ended
  uint64_t id;
  {
    absl::MutexLock l(&mu_);
    id = next_id_++;
    status_.Clear();
    status_.set_check_id(id);
    status_.set_running(true);
    status_.set_partitions_total(static_cast<uint32_t>(plan.partitions.size()));
    status_.set_min_tid(plan.min_tid);
    status_.set_max_tid(plan.max_tid);
    status_.set_started_unix_ms(absl::ToUnixMillis(clock_->Now()));
  }
  CELLAR_LOG(INFO) << "check " << id << ": " << plan.partitions.size() << " partition(s), tids "
                   << common::TidHex(plan.min_tid) << ".." << common::TidHex(plan.max_tid)
                   << (plan.with_data ? ", with data" : "");
  thread_ = std::thread([this, plan = std::move(plan)]() mutable { Run(std::move(plan)); });
  return id;
}

absl::StatusOr<cellar::v1::GetCheckStatusResponse> ReplicaChecker::Status(
    uint64_t check_id) const {
  absl::MutexLock l(&mu_);
  if (status_.check_id() == 0) {
    return absl::NotFoundError("no check ran since this master started");
  }
  if (check_id != 0 && check_id != status_.check_id()) {
    return absl::NotFoundError(absl::StrCat("check ", check_id, " is unknown (the last one is ",
                                            status_.check_id(), ")"));
  }
  return status_;
}

bool ReplicaChecker::WaitIdle(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](const cellar::v1::GetCheckStatusResponse* s) { return !s->running(); },
          &status_),
      timeout);
}

bool ReplicaChecker::Stopping() const {
  absl::MutexLock l(&mu_);
  return stopping_;
}

bool ReplicaChecker::ChooseCells(const cellar::v1::GetClusterInfoResponse& info,
                                 uint32_t partition, Cells* cells) {
  absl::flat_hash_map<uint32_t, const cellar::v1::NodeInfo*> nodes;
  for (const cellar::v1::NodeInfo& n : info.nodes()) nodes[n.node_id()] = &n;
  const cellar::v1::PartitionRow* row = nullptr;
  for (const cellar::v1::PartitionRow& r : info.partition_table().rows()) {
    if (r.partition() == partition) row = &r;
  }
  if (row == nullptr) return false;
  auto connected = [&](uint32_t id) {
    auto it = nodes.find(id);
    return it != nodes.end() && Connected(*it->second);
  };
  bool have_reference = false;
  for (const cellar::v1::Cell& c : row->cells()) {
    if (c.state() == cellar::v1::CELL_UP_TO_DATE && connected(c.node_id())) {
      cells->reference = {c.node_id(), nodes[c.node_id()]->address()};
      have_reference = true;
      break;
    }
  }
  if (!have_reference) return false;
  for (const cellar::v1::Cell& c : row->cells()) {
    if (c.node_id() == cells->reference.node_id || !common::IsReadable(c.state()) ||
        !connected(c.node_id())) {
      continue;
    }
    cells->others.push_back({c.node_id(), nodes[c.node_id()]->address()});
  }
  return !cells->others.empty();
}

void ReplicaChecker::Run(Plan plan) {
  absl::Status error;
  for (uint32_t partition : plan.partitions) {
    if (Stopping()) {
      error = absl::CancelledError("the master is shutting down");
      break;
    }
    Cells cells;
    if (!ChooseCells(view_(), partition, &cells)) {
      absl::MutexLock l(&mu_);
      status_.add_skipped_partitions(partition);
    } else {
      error = CheckPartition(plan, partition, cells);
      if (!error.ok()) break;
    }
    absl::MutexLock l(&mu_);
    status_.set_partitions_done(status_.partitions_done() + 1);
  }
  absl::MutexLock l(&mu_);
  if (!error.ok()) status_.set_error(std::string(error.message()));
  status_.set_running(false);
  status_.set_finished_unix_ms(absl::ToUnixMillis(clock_->Now()));
  CELLAR_LOG(INFO) << "check " << status_.check_id() << " done: "
                   << status_.mismatches_size() << " mismatch(es), "
                   << status_.skipped_partitions_size() << " partition(s) skipped"
                   << (error.ok() ? "" : absl::StrCat(", stopped: ", error.message()));
}

absl::Status ReplicaChecker::CheckPartition(const Plan& plan, uint32_t partition,
                                            const Cells& cells) {
  const uint64_t epoch = view_().epoch();
  std::vector<StorageTarget> others = cells.others;
  uint64_t min_tid = plan.min_tid;
  while (!others.empty()) {
    if (Stopping()) return absl::CancelledError("the master is shutting down");
    // A storage that went away (or was killed) ends the check, even if it
    // still answers.
    const cellar::v1::GetClusterInfoResponse info = view_();
    if (info.cluster_state() != cellar::v1::CLUSTER_RUNNING) {  // e.g. a truncate began
      return absl::FailedPreconditionError(
          absl::StrCat("partition ", partition, ": the cluster left RUNNING (",
                       cellar::v1::ClusterState_Name(info.cluster_state()), ")"));
    }
    for (const StorageTarget* t : AllOf(cells.reference, others)) {
      bool connected = false;
      for (const cellar::v1::NodeInfo& n : info.nodes()) {
        if (n.node_id() == t->node_id) connected = Connected(n);
      }
      if (!connected) {
        return absl::UnavailableError(absl::StrCat("partition ", partition, ": ",
                                                   common::NodeName(t->node_id),
                                                   " went away during the check"));
      }
    }
    CellCheckRange range;
    range.partition = partition;
    range.min_tid = min_tid;
    range.max_tid = plan.max_tid;
    range.max_transactions = options_.chunk_transactions;
    range.with_data = plan.with_data;
    absl::StatusOr<CellCheck> reference = storages_->CheckCell(cells.reference, epoch, range);
    if (!reference.ok()) {
      return absl::Status(reference.status().code(),
                          absl::StrCat("partition ", partition, ": ",
                                       reference.status().message()));
    }
    if (reference->last_tid < min_tid || reference->last_tid > plan.max_tid) {
      return absl::InternalError(absl::StrCat(
          "partition ", partition, ": ", common::NodeName(cells.reference.node_id),
          " answered a chunk ending at ", common::TidHex(reference->last_tid),
          " outside the range asked"));
    }
    range.max_tid = reference->last_tid;
    range.max_transactions = kMaxCheckTransactions;
    std::vector<StorageTarget> still_equal;
    for (const StorageTarget& other : others) {
      absl::StatusOr<CellCheck> check = storages_->CheckCell(other, epoch, range);
      if (!check.ok()) {
        return absl::Status(check.status().code(),
                            absl::StrCat("partition ", partition, ": ",
                                         check.status().message()));
      }
      const std::string detail = Compare(*check, *reference);
      if (detail.empty()) {
        still_equal.push_back(other);
        continue;
      }
      CELLAR_LOG(WARNING) << "check: partition " << partition << " on "
                          << common::NodeName(other.node_id) << " differs from "
                          << common::NodeName(cells.reference.node_id) << " in tids "
                          << common::TidHex(range.min_tid) << ".."
                          << common::TidHex(range.max_tid) << ": " << detail;
      absl::MutexLock l(&mu_);
      cellar::v1::CheckMismatch* m = status_.add_mismatches();
      m->set_partition(partition);
      m->set_node_id(other.node_id);
      m->set_reference_node_id(cells.reference.node_id);
      m->set_min_tid(range.min_tid);
      m->set_max_tid(range.max_tid);
      m->set_detail(detail);
    }
    others = std::move(still_equal);
    {
      absl::MutexLock l(&mu_);
      status_.set_transactions_checked(status_.transactions_checked() +
                                       reference->transaction_count);
    }
    if (reference->last_tid >= plan.max_tid) break;
    min_tid = reference->last_tid + 1;
  }
  return absl::OkStatus();
}

}  // namespace cellar::master
