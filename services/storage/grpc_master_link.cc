#include "services/storage/grpc_master_link.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"

namespace cellar::storage {

GrpcMasterLink::GrpcMasterLink(std::vector<std::string> addresses,
                               absl::Duration rpc_timeout,
                               common::ChannelSecurity node_channel)
    : addresses_(std::move(addresses)),
      rpc_timeout_(rpc_timeout),
      node_channel_(std::move(node_channel)) {
  absl::MutexLock l(&mu_);
  stubs_.resize(addresses_.size());
}

GrpcMasterLink::~GrpcMasterLink() { Cancel(); }

std::shared_ptr<::cellar::v1::Master::Stub> GrpcMasterLink::Stub(size_t index) {
  absl::MutexLock l(&mu_);
  auto& stub = stubs_[index];
  if (stub == nullptr) {
    stub = ::cellar::v1::Master::NewStub(common::MakeChannel(addresses_[index], node_channel_));
  }
  return stub;
}

void GrpcMasterLink::Redial(size_t index) {
  absl::MutexLock l(&mu_);
  stubs_[index] = nullptr;  // calls in flight keep their own reference
}

bool GrpcMasterLink::Track(grpc::ClientContext* context) {
  absl::MutexLock l(&mu_);
  if (cancelled_) return false;
  active_.push_back(context);
  return true;
}

void GrpcMasterLink::Untrack(grpc::ClientContext* context) {
  absl::MutexLock l(&mu_);
  active_.erase(std::remove(active_.begin(), active_.end(), context), active_.end());
}

void GrpcMasterLink::Cancel() {
  absl::MutexLock l(&mu_);
  cancelled_ = true;
  for (grpc::ClientContext* c : active_) c->TryCancel();
}

absl::StatusOr<::cellar::v1::RegisterNodeResponse> GrpcMasterLink::RegisterNode(
    const ::cellar::v1::RegisterNodeRequest& request) {
  if (addresses_.empty()) {
    return absl::InvalidArgumentError("no master address configured");
  }
  size_t start;
  {
    absl::MutexLock l(&mu_);
    start = current_;
  }
  absl::Status last;
  for (size_t n = 0; n < addresses_.size(); ++n) {
    const size_t i = (start + n) % addresses_.size();
    grpc::ClientContext context;
    common::SetDeadline(&context, rpc_timeout_);
    if (!Track(&context)) return absl::CancelledError("storage node is shutting down");
    ::cellar::v1::RegisterNodeResponse response;
    grpc::Status s = Stub(i)->RegisterNode(&context, request, &response);
    Untrack(&context);
    if (s.ok()) {
      absl::MutexLock l(&mu_);
      current_ = i;
      return response;
    }
    last = common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat("master ", addresses_[i]));
    if (common::RedialAfter(s.error_code())) Redial(i);
    const std::string reason = common::ErrorReason(last);
    // A refusal on identity is the same everywhere: don't hide it behind
    // the next address's "unavailable".
    if (reason == common::kReasonWrongCluster ||
        reason == common::kReasonProtocolMismatch ||
        last.code() == absl::StatusCode::kInvalidArgument) {
      return last;
    }
  }
  return last;
}

absl::StatusOr<::cellar::v1::GetClusterInfoResponse> GrpcMasterLink::GetClusterInfo() {
  if (addresses_.empty()) {
    return absl::InvalidArgumentError("no master address configured");
  }
  size_t i;
  {
    absl::MutexLock l(&mu_);
    i = current_;
  }
  grpc::ClientContext context;
  common::SetDeadline(&context, rpc_timeout_);
  if (!Track(&context)) return absl::CancelledError("storage node is shutting down");
  ::cellar::v1::GetClusterInfoRequest request;
  ::cellar::v1::GetClusterInfoResponse response;
  grpc::Status s = Stub(i)->GetClusterInfo(&context, request, &response);
  Untrack(&context);
  if (!s.ok()) {
    return common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat("master ", addresses_[i]));
  }
  return response;
}

template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> GrpcMasterLink::Unary(const char* what, const Request& request,
                                               Method method) {
  if (addresses_.empty()) {
    return absl::InvalidArgumentError("no master address configured");
  }
  size_t i;
  {
    absl::MutexLock l(&mu_);
    i = current_;
  }
  grpc::ClientContext context;
  common::SetDeadline(&context, rpc_timeout_);
  if (!Track(&context)) return absl::CancelledError("storage node is shutting down");
  Response response;
  grpc::Status s = (Stub(i).get()->*method)(&context, request, &response);
  Untrack(&context);
  if (!s.ok()) {
    return common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat(what, " to master ", addresses_[i]));
  }
  return response;
}

absl::Status GrpcMasterLink::Heartbeat(uint32_t node_id,
                                       const std::vector<uint64_t>& stale_votes,
                                       const common::DataPathSample& data_path) {
  ::cellar::v1::HeartbeatRequest request;
  request.set_node_id(node_id);
  for (uint64_t ttid : stale_votes) request.add_stale_votes(ttid);
  common::DataPathToProto(data_path, request.mutable_data_path());
  return Unary<::cellar::v1::HeartbeatRequest, ::cellar::v1::HeartbeatResponse>(
             "heartbeat", request, &::cellar::v1::Master::Stub::Heartbeat)
      .status();
}

absl::StatusOr<::cellar::v1::GetTokenTableResponse> GrpcMasterLink::GetTokenTable(
    uint64_t known_version) {
  ::cellar::v1::GetTokenTableRequest request;
  request.set_known_version(known_version);
  return Unary<::cellar::v1::GetTokenTableRequest, ::cellar::v1::GetTokenTableResponse>(
      "token table", request, &::cellar::v1::Master::Stub::GetTokenTable);
}

absl::StatusOr<::cellar::v1::ReportReplicationResponse> GrpcMasterLink::ReportReplication(
    const ::cellar::v1::ReportReplicationRequest& request) {
  return Unary<::cellar::v1::ReportReplicationRequest,
               ::cellar::v1::ReportReplicationResponse>(
      "replication report", request, &::cellar::v1::Master::Stub::ReportReplication);
}

absl::Status GrpcMasterLink::Watch(
    uint32_t node_id,
    const std::function<void(const ::cellar::v1::ClusterEvent&)>& on_event) {
  if (addresses_.empty()) {
    return absl::InvalidArgumentError("no master address configured");
  }
  size_t i;
  {
    absl::MutexLock l(&mu_);
    i = current_;
  }
  grpc::ClientContext context;
  if (!Track(&context)) return absl::CancelledError("storage node is shutting down");
  ::cellar::v1::WatchRequest request;
  request.set_node_id(node_id);
  std::shared_ptr<::cellar::v1::Master::Stub> stub = Stub(i);  // for the whole stream
  std::unique_ptr<grpc::ClientReader<::cellar::v1::ClusterEvent>> reader =
      stub->Watch(&context, request);
  ::cellar::v1::ClusterEvent event;
  while (reader->Read(&event)) on_event(event);
  grpc::Status s = reader->Finish();
  Untrack(&context);
  // The session is over (the node registers again): the master may be
  // restarting, dial it afresh.
  if (s.error_code() != grpc::StatusCode::CANCELLED) Redial(i);
  return common::Annotate(common::FromGrpcStatus(s),
                          absl::StrCat("watch stream from master ", addresses_[i]));
}

}  // namespace cellar::storage
