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
