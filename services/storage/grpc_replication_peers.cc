#include "services/storage/grpc_replication_peers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"

namespace cellar::storage {

GrpcReplicationPeers::GrpcReplicationPeers(MasterLink* master,
                                           std::function<uint32_t()> node_id,
                                           absl::Duration fetch_timeout,
                                           common::ChannelSecurity node_channel)
    : master_(master),
      node_id_(std::move(node_id)),
      fetch_timeout_(fetch_timeout),
      node_channel_(std::move(node_channel)) {}

std::shared_ptr<::cellar::v1::Storage::Stub> GrpcReplicationPeers::StubFor(
    const std::string& address) {
  absl::MutexLock l(&mu_);
  auto& stub = stubs_[address];
  if (stub == nullptr) stub = ::cellar::v1::Storage::NewStub(common::MakeChannel(address, node_channel_));
  return stub;
}

absl::StatusOr<ReplicationTarget> GrpcReplicationPeers::Report(uint32_t partition,
                                                               uint64_t tid) {
  ::cellar::v1::ReportReplicationRequest request;
  request.set_node_id(node_id_());
  request.set_partition(partition);
  request.set_tid(tid);
  absl::StatusOr<::cellar::v1::ReportReplicationResponse> response =
      master_->ReportReplication(request);
  if (!response.ok()) return response.status();
  ReplicationTarget target;
  target.up_to_date = response->up_to_date();
  target.min_tid = response->min_tid();
  target.max_tid = response->max_tid();
  for (const auto& node : response->sources()) {
    if (node.address().empty()) continue;
    target.sources.push_back({node.node_id(), node.address()});
  }
  return target;
}

absl::Status GrpcReplicationPeers::Fetch(
    const std::string& address, const FetchRequest& request,
    const std::function<absl::Status(ReplicationChunk)>& on_chunk) {
  ::cellar::v1::ReplicateRequest wire;
  wire.set_partition(request.partition);
  wire.set_min_tid(request.min_tid);
  wire.set_max_tid(request.max_tid);
  wire.set_max_records(request.limits.max_records);
  wire.set_max_bytes(request.limits.max_bytes);
  wire.set_node_id(node_id_());
  std::shared_ptr<::cellar::v1::Storage::Stub> stub = StubFor(address);
  grpc::ClientContext context;
  common::SetDeadline(&context, fetch_timeout_);
  {
    absl::MutexLock l(&mu_);
    if (cancelled_) return absl::CancelledError("storage node is shutting down");
    active_.push_back(&context);
  }
  struct Untrack {
    GrpcReplicationPeers* self;
    grpc::ClientContext* context;
    ~Untrack() {
      absl::MutexLock l(&self->mu_);
      self->active_.erase(std::remove(self->active_.begin(), self->active_.end(), context),
                          self->active_.end());
    }
  } untrack{this, &context};
  std::unique_ptr<grpc::ClientReader<::cellar::v1::ReplicateChunk>> reader =
      stub->Replicate(&context, wire);
  ::cellar::v1::ReplicateChunk chunk;
  absl::Status status;
  while (reader->Read(&chunk)) {
    ReplicationChunk out;
    out.complete_through = chunk.complete_through();
    out.transactions.reserve(chunk.transactions_size());
    for (auto& t : *chunk.mutable_transactions()) {
      TransactionRecord record;
      record.partition = request.partition;
      record.tid = t.tid();
      record.ttid = t.ttid();
      record.user = std::move(*t.mutable_user());
      record.description = std::move(*t.mutable_description());
      record.extension = std::move(*t.mutable_extension());
      record.oids.assign(t.oids().begin(), t.oids().end());
      record.size_bytes = t.size_bytes();
      record.packed = t.packed();
      out.transactions.push_back(std::move(record));
    }
    out.objects.reserve(chunk.objects_size());
    for (auto& o : *chunk.mutable_objects()) {
      ObjectRecord record;
      record.partition = request.partition;
      record.oid = o.oid();
      record.tid = o.serial();
      record.data = std::move(*o.mutable_data());
      record.checksum = std::move(*o.mutable_checksum());
      record.data_tid = o.data_serial();
      out.objects.push_back(std::move(record));
    }
    status = on_chunk(std::move(out));
    if (!status.ok()) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status finish = reader->Finish();
  // UNAVAILABLE only (common::RedialAfter): a fetch's deadline also ends
  // long streams that were going well.
  if (finish.error_code() == grpc::StatusCode::UNAVAILABLE) {
    absl::MutexLock l(&mu_);
    if (stubs_[address] == stub) stubs_.erase(address);
  }
  if (!status.ok()) return status;
  return common::Annotate(common::FromGrpcStatus(finish),
                          absl::StrCat("replication stream from ", address));
}

void GrpcReplicationPeers::Cancel() {
  absl::MutexLock l(&mu_);
  cancelled_ = true;
  for (grpc::ClientContext* c : active_) c->TryCancel();
}

}  // namespace cellar::storage
