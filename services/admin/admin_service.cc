#include "services/admin/admin_service.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "services/common/channel.h"
#include "services/common/ids.h"

namespace cellar::admin {
namespace {

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

}  // namespace

AdminService::AdminService(AdminOptions options) : options_(std::move(options)) {
  absl::MutexLock l(&mu_);
  for (const std::string& address : options_.master_addresses) {
    masters_.push_back(cellar::v1::Master::NewStub(common::MakeChannel(address)));
  }
}

cellar::v1::Master::Stub* AdminService::MasterStub(size_t i) {
  absl::MutexLock l(&mu_);
  return masters_[i].get();
}

cellar::v1::Storage::Stub* AdminService::StorageStub(const std::string& address) {
  absl::MutexLock l(&mu_);
  for (auto& [a, stub] : storages_) {
    if (a == address) return stub.get();
  }
  storages_.emplace_back(address, cellar::v1::Storage::NewStub(common::MakeChannel(address)));
  return storages_.back().second.get();
}

grpc::Status AdminService::ClusterInfo(cellar::v1::GetClusterInfoResponse* info) {
  grpc::Status last(grpc::StatusCode::UNAVAILABLE, "no master address configured");
  for (size_t i = 0; i < options_.master_addresses.size(); ++i) {
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    last = MasterStub(i)->GetClusterInfo(&context, {}, info);
    if (last.ok()) return last;
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat("no master answered: ", last.error_message()));
}

grpc::Status AdminService::GetClusterStatus(grpc::ServerContext*,
                                            const cellar::v1::GetClusterStatusRequest*,
                                            cellar::v1::GetClusterStatusResponse* response) {
  cellar::v1::GetClusterInfoResponse info;
  if (grpc::Status s = ClusterInfo(&info); !s.ok()) return s;
  response->set_cluster_name(info.cluster_name());
  response->set_cluster_state(info.cluster_state());
  response->set_primary_master_node_id(info.master_node_id());
  for (const auto& node : info.nodes()) {
    if (node.role() == cellar::v1::NODE_ROLE_STORAGE) {
      response->set_storages_total(response->storages_total() + 1);
      if (node.state() == cellar::v1::NODE_RUNNING) {
        response->set_storages_running(response->storages_running() + 1);
      }
    } else if (node.role() == cellar::v1::NODE_ROLE_CLIENT) {
      response->set_clients_connected(response->clients_connected() + 1);
    }
  }
  response->set_last_oid(info.last_oid());
  response->set_last_tid(info.last_tid());
  response->set_last_tid_time(info.last_tid() == 0 ? "" : common::TidTime(info.last_tid()));
  response->set_ptid(info.partition_table().ptid());
  response->set_num_partitions(info.partition_table().num_partitions());
  response->set_num_replicas(info.partition_table().num_replicas());
  response->set_operational(info.operational());
  return grpc::Status::OK;
}

grpc::Status AdminService::ListNodes(grpc::ServerContext*, const cellar::v1::ListNodesRequest*,
                                     cellar::v1::ListNodesResponse* response) {
  cellar::v1::GetClusterInfoResponse info;
  if (grpc::Status s = ClusterInfo(&info); !s.ok()) return s;
  *response->mutable_nodes() = info.nodes();
  return grpc::Status::OK;
}

grpc::Status AdminService::GetPartitionTable(grpc::ServerContext*,
                                             const cellar::v1::GetPartitionTableRequest*,
                                             cellar::v1::GetPartitionTableResponse* response) {
  cellar::v1::GetClusterInfoResponse info;
  if (grpc::Status s = ClusterInfo(&info); !s.ok()) return s;
  *response->mutable_partition_table() = info.partition_table();
  return grpc::Status::OK;
}

grpc::Status AdminService::StartCluster(grpc::ServerContext*,
                                        const cellar::v1::AdminStartClusterRequest*,
                                        cellar::v1::AdminStartClusterResponse* response) {
  grpc::Status last(grpc::StatusCode::UNAVAILABLE, "no master address configured");
  for (size_t i = 0; i < options_.master_addresses.size(); ++i) {
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    cellar::v1::StartClusterResponse r;
    last = MasterStub(i)->StartCluster(&context, {}, &r);
    if (last.ok()) {
      response->set_cluster_state(r.cluster_state());
      return last;
    }
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) return last;
  }
  return last;
}

grpc::Status AdminService::LastTransactions(
    grpc::ServerContext*, const cellar::v1::AdminLastTransactionsRequest* request,
    cellar::v1::AdminLastTransactionsResponse* response) {
  if (request->limit() > 1000) return Invalid("limit: must be at most 1000");
  const uint32_t limit = request->limit() == 0 ? 10 : request->limit();
  cellar::v1::GetClusterInfoResponse info;
  if (grpc::Status s = ClusterInfo(&info); !s.ok()) return s;
  std::vector<cellar::v1::TransactionInfo> all;
  absl::flat_hash_set<uint64_t> seen;
  int answered = 0;
  grpc::Status last_error;
  for (const auto& node : info.nodes()) {
    if (node.role() != cellar::v1::NODE_ROLE_STORAGE ||
        node.state() != cellar::v1::NODE_RUNNING) {
      continue;
    }
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    cellar::v1::LastTransactionsRequest req;
    req.set_limit(limit);
    cellar::v1::LastTransactionsResponse resp;
    grpc::Status s = StorageStub(node.address())->LastTransactions(&context, req, &resp);
    if (!s.ok()) {
      last_error = s;
      continue;
    }
    ++answered;
    for (const auto& txn : resp.transactions()) {
      if (seen.insert(txn.tid()).second) all.push_back(txn);
    }
  }
  if (answered == 0 && !last_error.ok()) return last_error;
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return a.tid() > b.tid(); });
  if (all.size() > limit) all.resize(limit);
  for (auto& txn : all) *response->add_transactions() = std::move(txn);
  return grpc::Status::OK;
}

grpc::Status AdminService::ObjectHistory(grpc::ServerContext*,
                                         const cellar::v1::ObjectHistoryRequest* request,
                                         cellar::v1::ObjectHistoryResponse* response) {
  if (request->limit() > 1000) return Invalid("limit: must be at most 1000");
  cellar::v1::GetClusterInfoResponse info;
  if (grpc::Status s = ClusterInfo(&info); !s.ok()) return s;
  const auto& pt = info.partition_table();
  if (pt.num_partitions() == 0) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the cluster has no partition table yet");
  }
  const uint32_t partition = static_cast<uint32_t>(request->oid() % pt.num_partitions());
  grpc::Status last(grpc::StatusCode::UNAVAILABLE,
                    absl::StrCat("no readable cell of partition ", partition));
  for (const auto& row : pt.rows()) {
    if (row.partition() != partition) continue;
    for (const auto& cell : row.cells()) {
      if (cell.state() != cellar::v1::CELL_UP_TO_DATE &&
          cell.state() != cellar::v1::CELL_FEEDING) {
        continue;
      }
      for (const auto& node : info.nodes()) {
        if (node.node_id() != cell.node_id() || node.state() != cellar::v1::NODE_RUNNING) {
          continue;
        }
        grpc::ClientContext context;
        common::SetDeadline(&context, options_.rpc_timeout);
        cellar::v1::HistoryRequest req;
        req.set_oid(request->oid());
        req.set_limit(request->limit());
        cellar::v1::HistoryResponse resp;
        last = StorageStub(node.address())->History(&context, req, &resp);
        if (last.ok()) {
          response->set_oid(request->oid());
          *response->mutable_revisions() = resp.revisions();
          return last;
        }
        if (last.error_code() == grpc::StatusCode::NOT_FOUND ||
            last.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          return last;
        }
      }
    }
  }
  return last;
}

}  // namespace cellar::admin
