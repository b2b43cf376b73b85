#include "services/admin/testing/fake_master.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"

namespace cellar::admin::testing {

absl::StatusOr<std::unique_ptr<FakeMaster>> FakeMaster::Start() {
  auto master = std::unique_ptr<FakeMaster>(new FakeMaster);
  common::GrpcServerOptions options;
  options.services = {master.get()};
  auto server = common::GrpcServer::Start(std::move(options));
  if (!server.ok()) return server.status();
  master->server_ = *std::move(server);
  return master;
}

FakeMaster::~FakeMaster() { Shutdown(); }

std::string FakeMaster::address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

void FakeMaster::SetClusterInfo(const ::cellar::v1::GetClusterInfoResponse& info) {
  absl::MutexLock l(&mu_);
  info_ = info;
  info_error_ = absl::OkStatus();
}

void FakeMaster::SetClusterInfoError(const absl::Status& status) {
  absl::MutexLock l(&mu_);
  info_error_ = status;
}

void FakeMaster::SetStartResult(::cellar::v1::ClusterState state, const absl::Status& status) {
  absl::MutexLock l(&mu_);
  start_state_ = state;
  start_error_ = status;
}

int FakeMaster::start_calls() const {
  absl::MutexLock l(&mu_);
  return start_calls_;
}

void FakeMaster::Shutdown() {
  if (server_) server_->Shutdown(absl::Milliseconds(100));
}

grpc::Status FakeMaster::GetClusterInfo(grpc::ServerContext*,
                                        const ::cellar::v1::GetClusterInfoRequest*,
                                        ::cellar::v1::GetClusterInfoResponse* response) {
  absl::MutexLock l(&mu_);
  if (!info_error_.ok()) return common::ToGrpcStatus(info_error_);
  *response = info_;
  return grpc::Status::OK;
}

grpc::Status FakeMaster::StartCluster(grpc::ServerContext*,
                                      const ::cellar::v1::StartClusterRequest*,
                                      ::cellar::v1::StartClusterResponse* response) {
  absl::MutexLock l(&mu_);
  ++start_calls_;
  if (!start_error_.ok()) return common::ToGrpcStatus(start_error_);
  response->set_cluster_state(start_state_);
  return grpc::Status::OK;
}

void FakeMaster::SetActionError(const absl::Status& status) {
  absl::MutexLock l(&mu_);
  action_error_ = status;
}

void FakeMaster::SetChangeResponse(const ::cellar::v1::ChangePartitionTableResponse& response) {
  absl::MutexLock l(&mu_);
  change_response_ = response;
}

void FakeMaster::SetCheckStatus(const ::cellar::v1::GetCheckStatusResponse& response) {
  absl::MutexLock l(&mu_);
  check_status_ = response;
}

std::string FakeMaster::last_action() const {
  absl::MutexLock l(&mu_);
  return last_action_;
}

grpc::Status FakeMaster::Action(const std::string& name,
                                const google::protobuf::Message& request) {
  absl::MutexLock l(&mu_);
  last_action_ = name;
  last_request_.reset(request.New());
  last_request_->CopyFrom(request);
  return common::ToGrpcStatus(action_error_);
}

grpc::Status FakeMaster::SetClusterState(grpc::ServerContext*,
                                         const ::cellar::v1::SetClusterStateRequest* request,
                                         ::cellar::v1::SetClusterStateResponse* response) {
  grpc::Status s = Action("SetClusterState", *request);
  if (s.ok()) response->set_cluster_state(request->state());
  return s;
}

grpc::Status FakeMaster::ChangePartitionTable(
    grpc::ServerContext*, const ::cellar::v1::ChangePartitionTableRequest* request,
    ::cellar::v1::ChangePartitionTableResponse* response) {
  grpc::Status s = Action("ChangePartitionTable", *request);
  absl::MutexLock l(&mu_);
  if (s.ok()) *response = change_response_;
  return s;
}

grpc::Status FakeMaster::KillNode(grpc::ServerContext*,
                                  const ::cellar::v1::KillNodeRequest* request,
                                  ::cellar::v1::KillNodeResponse* response) {
  grpc::Status s = Action("KillNode", *request);
  if (s.ok()) {
    response->mutable_node()->set_node_id(request->node_id());
    response->mutable_node()->set_state(::cellar::v1::NODE_DOWN);
    response->set_stopped(request->stop());
  }
  return s;
}

grpc::Status FakeMaster::CheckReplicas(grpc::ServerContext*,
                                       const ::cellar::v1::CheckReplicasRequest* request,
                                       ::cellar::v1::CheckReplicasResponse* response) {
  grpc::Status s = Action("CheckReplicas", *request);
  if (s.ok()) response->set_check_id(7);
  return s;
}

grpc::Status FakeMaster::GetCheckStatus(grpc::ServerContext*,
                                        const ::cellar::v1::GetCheckStatusRequest* request,
                                        ::cellar::v1::GetCheckStatusResponse* response) {
  grpc::Status s = Action("GetCheckStatus", *request);
  absl::MutexLock l(&mu_);
  if (s.ok()) *response = check_status_;
  return s;
}

grpc::Status FakeMaster::RepairCell(grpc::ServerContext*,
                                    const ::cellar::v1::RepairCellRequest* request,
                                    ::cellar::v1::RepairCellResponse* response) {
  grpc::Status s = Action("RepairCell", *request);
  if (s.ok()) response->set_ptid(5);
  return s;
}

grpc::Status FakeMaster::Truncate(grpc::ServerContext*,
                                  const ::cellar::v1::TruncateRequest* request,
                                  ::cellar::v1::TruncateResponse* response) {
  grpc::Status s = Action("Truncate", *request);
  if (s.ok()) {
    response->set_last_tid(request->tid());
    response->set_cluster_state(::cellar::v1::CLUSTER_RUNNING);
  }
  return s;
}

::cellar::v1::GetClusterInfoResponse HealthyClusterInfo(int storages, int partitions,
                                                         int replicas,
                                                         int64_t registered_unix_ms) {
  ::cellar::v1::GetClusterInfoResponse info;
  info.set_cluster_name("cellar");
  info.set_cluster_state(::cellar::v1::CLUSTER_RUNNING);
  info.set_master_node_id(common::MakeNodeId(common::NodeKind::kMaster, 1));
  info.set_operational(true);
  info.set_epoch(1);
  auto* master = info.add_nodes();
  master->set_node_id(info.master_node_id());
  master->set_role(::cellar::v1::NODE_ROLE_MASTER);
  master->set_address("127.0.0.1:7100");
  master->set_state(::cellar::v1::NODE_RUNNING);
  master->set_registered_unix_ms(registered_unix_ms);
  for (int i = 1; i <= storages; ++i) {
    auto* node = info.add_nodes();
    node->set_node_id(common::MakeNodeId(common::NodeKind::kStorage, i));
    node->set_role(::cellar::v1::NODE_ROLE_STORAGE);
    node->set_address(absl::StrCat("127.0.0.1:", 7200 + i - 1));
    node->set_state(::cellar::v1::NODE_RUNNING);
    node->set_version("0.1.0");
    node->set_track("stable");
    node->set_registered_unix_ms(registered_unix_ms);
  }
  auto* pt = info.mutable_partition_table();
  pt->set_ptid(1);
  pt->set_num_partitions(partitions);
  pt->set_num_replicas(replicas);
  int next = 0;
  for (int p = 0; p < partitions; ++p) {
    auto* row = pt->add_rows();
    row->set_partition(p);
    for (int r = 0; r <= replicas && r < storages; ++r) {
      auto* cell = row->add_cells();
      cell->set_node_id(common::MakeNodeId(common::NodeKind::kStorage, next % storages + 1));
      cell->set_state(::cellar::v1::CELL_UP_TO_DATE);
      ++next;
    }
  }
  return info;
}

}  // namespace cellar::admin::testing
