#include "services/storage/testing/fake_master.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"

namespace cellar::storage::testing {

absl::StatusOr<std::unique_ptr<FakeMaster>> FakeMaster::Start(std::string cluster_name) {
  std::unique_ptr<FakeMaster> master(new FakeMaster(std::move(cluster_name)));
  common::GrpcServerOptions options;
  options.services = {master.get()};
  auto server = common::GrpcServer::Start(options);
  if (!server.ok()) return server.status();
  master->server_ = *std::move(server);
  return master;
}

FakeMaster::~FakeMaster() { Shutdown(); }

std::string FakeMaster::address() const {
  return absl::StrCat("127.0.0.1:", server_->port());
}

void FakeMaster::SetPartitionTable(const ::cellar::v1::PartitionTable& pt) {
  absl::MutexLock l(&mu_);
  pt_ = pt;
}

void FakeMaster::SetClusterState(::cellar::v1::ClusterState state) {
  absl::MutexLock l(&mu_);
  state_ = state;
}

void FakeMaster::SetEpoch(uint64_t epoch) {
  absl::MutexLock l(&mu_);
  epoch_ = epoch;
}

void FakeMaster::SetTtidKey(std::string key) {
  absl::MutexLock l(&mu_);
  ttid_key_ = std::move(key);
}

std::string FakeMaster::ttid_key() const {
  absl::MutexLock l(&mu_);
  return ttid_key_;
}

void FakeMaster::Push(const ::cellar::v1::ClusterEvent& event) {
  absl::MutexLock l(&mu_);
  for (Watcher* w : watchers_) w->events.push_back(event);
}

void FakeMaster::EndWatches() {
  absl::MutexLock l(&mu_);
  for (Watcher* w : watchers_) w->end = true;
}

int FakeMaster::registrations() const {
  absl::MutexLock l(&mu_);
  return registrations_;
}

int FakeMaster::heartbeats() const {
  absl::MutexLock l(&mu_);
  return heartbeats_;
}

int FakeMaster::refusals() const {
  absl::MutexLock l(&mu_);
  return refusals_;
}

::cellar::v1::RegisterNodeRequest FakeMaster::last_registration() const {
  absl::MutexLock l(&mu_);
  return last_registration_;
}

int FakeMaster::watchers() const {
  absl::MutexLock l(&mu_);
  return static_cast<int>(watchers_.size());
}

bool FakeMaster::WaitForRegistrations(int n, absl::Duration timeout) const {
  struct Arg {
    const FakeMaster* self;
    int n;
  } arg{this, n};
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return a->self->registrations_ >= a->n;
          },
          &arg),
      timeout);
}

bool FakeMaster::WaitForWatchers(int n, absl::Duration timeout) const {
  struct Arg {
    const FakeMaster* self;
    int n;
  } arg{this, n};
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return static_cast<int>(a->self->watchers_.size()) == a->n;
          },
          &arg),
      timeout);
}

void FakeMaster::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
  }
  if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
}

grpc::Status FakeMaster::RegisterNode(grpc::ServerContext* /*context*/,
                                      const ::cellar::v1::RegisterNodeRequest* request,
                                      ::cellar::v1::RegisterNodeResponse* response) {
  absl::MutexLock l(&mu_);
  if (request->cluster_name() != cluster_name_) {
    ++refusals_;
    return common::ToGrpcStatus(common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonWrongCluster,
        absl::StrCat("wrong cluster name \"", request->cluster_name(),
                     "\": this master serves \"", cluster_name_, "\"")));
  }
  if (request->protocol_version() != ::cellar::v1::PROTOCOL_VERSION_1) {
    ++refusals_;
    return common::ToGrpcStatus(common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonProtocolMismatch,
        "protocol version mismatch"));
  }
  ++registrations_;
  last_registration_ = *request;
  uint32_t id = request->node_id();
  if (id == 0) id = common::MakeNodeId(common::NodeKind::kStorage, next_index_++);
  response->set_node_id(id);
  response->set_epoch(epoch_);
  response->set_ttid_key(ttid_key_);
  response->set_cluster_state(state_);
  *response->mutable_partition_table() = pt_;
  response->set_master_node_id(common::MakeNodeId(common::NodeKind::kMaster, 1));
  return grpc::Status::OK;
}

grpc::Status FakeMaster::Watch(grpc::ServerContext* context,
                               const ::cellar::v1::WatchRequest* /*request*/,
                               grpc::ServerWriter<::cellar::v1::ClusterEvent>* writer) {
  Watcher watcher;
  {
    absl::MutexLock l(&mu_);
    ::cellar::v1::ClusterEvent first;
    auto* snapshot = first.mutable_snapshot();
    snapshot->set_cluster_state(state_);
    *snapshot->mutable_partition_table() = pt_;
    snapshot->set_epoch(epoch_);
    watcher.events.push_back(first);
    watchers_.push_back(&watcher);
  }
  while (true) {
    std::deque<::cellar::v1::ClusterEvent> events;
    bool end;
    {
      absl::MutexLock l(&mu_);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](Watcher* w) { return w->end || !w->events.empty(); }, &watcher),
          absl::Milliseconds(20));
      events.swap(watcher.events);
      end = watcher.end || shutdown_;
    }
    bool ok = true;
    for (const auto& e : events) {
      if (!writer->Write(e)) {
        ok = false;
        break;
      }
    }
    if (!ok || end || context->IsCancelled()) break;
  }
  absl::MutexLock l(&mu_);
  watchers_.erase(std::remove(watchers_.begin(), watchers_.end(), &watcher),
                  watchers_.end());
  return grpc::Status::OK;
}

grpc::Status FakeMaster::GetClusterInfo(grpc::ServerContext* /*context*/,
                                        const ::cellar::v1::GetClusterInfoRequest*,
                                        ::cellar::v1::GetClusterInfoResponse* response) {
  absl::MutexLock l(&mu_);
  response->set_cluster_name(cluster_name_);
  response->set_cluster_state(state_);
  *response->mutable_partition_table() = pt_;
  response->set_epoch(epoch_);
  return grpc::Status::OK;
}

grpc::Status FakeMaster::Heartbeat(grpc::ServerContext* /*context*/,
                                   const ::cellar::v1::HeartbeatRequest* request,
                                   ::cellar::v1::HeartbeatResponse* /*response*/) {
  absl::MutexLock l(&mu_);
  if (request->node_id() == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_id: required");
  }
  ++heartbeats_;
  return grpc::Status::OK;
}

}  // namespace cellar::storage::testing
