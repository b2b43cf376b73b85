#include "client/testing/fake_cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/ttid_token.h"

namespace cellar::client::testing {
namespace {

using ::cellar::v1::ClusterEvent;
using ::cellar::v1::NodeInfo;

absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           port);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError("could not start a fake server");
  }
  return server;
}

grpc::Status ToGrpc(const absl::Status& status) {
  return common::ToGrpcStatus(status);
}

}  // namespace

bool StoreBarrier::Arrive() {
  absl::MutexLock lock(&mu_);
  ++arrived_;
  auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return arrived_ >= expected_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&all), timeout_);
}

// ---------------------------------------------------------------------------
// FakeStorage

FakeStorage::~FakeStorage() { Shutdown(); }

absl::Status FakeStorage::Start() {
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = StartServer(this, &port_);
  if (!server.ok()) return server.status();
  server_ = *std::move(server);
  return absl::OkStatus();
}

void FakeStorage::Shutdown() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }
}

std::string FakeStorage::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

void FakeStorage::SetTtidKey(std::string key) {
  absl::MutexLock lock(&mu_);
  ttid_key_ = std::move(key);
}

void FakeStorage::CommitTransaction(uint64_t ttid, uint64_t tid) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(ttid);
  if (it == pending_.end()) return;
  for (const auto& object : it->second.objects) {
    objects_[object.oid()][tid] = Revision{object.data(), object.checksum()};
  }
  if (it->second.has_metadata) {
    ::cellar::v1::TransactionInfo& info = transactions_[tid];
    info.set_tid(tid);
    info.set_ttid(ttid);
    info.set_user(it->second.metadata.user());
    info.set_description(it->second.metadata.description());
    info.set_extension(it->second.metadata.extension());
    *info.mutable_oids() = it->second.metadata.oids();
    info.set_size_bytes(it->second.metadata.size_bytes());
  }
  pending_.erase(it);
}

void FakeStorage::AbortTransactionLocal(uint64_t ttid) {
  absl::MutexLock lock(&mu_);
  pending_.erase(ttid);
}

bool FakeStorage::HasVote(uint64_t ttid) const {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(ttid);
  return it != pending_.end() && it->second.voted;
}

void FakeStorage::SetAllCallsError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  all_calls_error_ = std::move(status);
}

void FakeStorage::SetStoreError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  store_error_ = std::move(status);
}

void FakeStorage::SetLoadError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  load_error_ = std::move(status);
}

void FakeStorage::SetCorruptLoads(bool corrupt) {
  absl::MutexLock lock(&mu_);
  corrupt_loads_ = corrupt;
}

void FakeStorage::SetStoreBarrier(std::shared_ptr<StoreBarrier> barrier) {
  absl::MutexLock lock(&mu_);
  barrier_ = std::move(barrier);
}

int FakeStorage::load_calls() const {
  absl::MutexLock lock(&mu_);
  return load_calls_;
}

int FakeStorage::store_calls() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(store_requests_.size());
}

std::vector<::cellar::v1::StoreRequest> FakeStorage::store_requests() const {
  absl::MutexLock lock(&mu_);
  return store_requests_;
}

std::map<uint64_t, std::string> FakeStorage::Revisions(uint64_t oid) const {
  absl::MutexLock lock(&mu_);
  std::map<uint64_t, std::string> out;
  auto it = objects_.find(oid);
  if (it == objects_.end()) return out;
  for (const auto& [serial, revision] : it->second) out[serial] = revision.data;
  return out;
}

grpc::Status FakeStorage::Store(grpc::ServerContext*,
                                const ::cellar::v1::StoreRequest* request,
                                ::cellar::v1::StoreResponse* response) {
  std::shared_ptr<StoreBarrier> barrier;
  {
    absl::MutexLock lock(&mu_);
    store_requests_.push_back(*request);
    if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
    if (!store_error_.ok()) return ToGrpc(store_error_);
    if (absl::Status s = common::CheckTtidToken(ttid_key_, request->ttid(),
                                                request->ttid_token());
        !s.ok()) {
      return ToGrpc(s);
    }
    barrier = barrier_;
  }
  if (barrier != nullptr && !barrier->Arrive()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "Store calls did not arrive in parallel");
  }
  absl::MutexLock lock(&mu_);
  for (const auto& object : request->objects()) {
    if (!common::ChecksumMatches(object.data(), object.checksum())) {
      return ToGrpc(common::ErrorWithReason(
          absl::StatusCode::kInvalidArgument, common::kReasonChecksumMismatch,
          absl::StrCat("bad checksum for oid ", object.oid())));
    }
    uint64_t current = 0;
    auto it = objects_.find(object.oid());
    if (it != objects_.end() && !it->second.empty()) {
      current = it->second.rbegin()->first;
    }
    if (current != object.base_serial()) {
      return ToGrpc(
          common::ConflictError(object.oid(), current, object.base_serial()));
    }
  }
  Pending& pending = pending_[request->ttid()];
  for (const auto& object : request->objects()) pending.objects.push_back(object);
  if (request->vote()) {
    pending.voted = true;
    if (request->has_metadata()) {
      pending.has_metadata = true;
      pending.metadata = request->metadata();
    }
    response->set_voted(true);
  }
  return grpc::Status::OK;
}

grpc::Status FakeStorage::Vote(grpc::ServerContext*,
                               const ::cellar::v1::VoteRequest* request,
                               ::cellar::v1::VoteResponse*) {
  absl::MutexLock lock(&mu_);
  if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
  if (absl::Status s = common::CheckTtidToken(ttid_key_, request->ttid(),
                                              request->ttid_token());
      !s.ok()) {
    return ToGrpc(s);
  }
  Pending& pending = pending_[request->ttid()];
  pending.voted = true;
  if (request->has_metadata()) {
    pending.has_metadata = true;
    pending.metadata = request->metadata();
  }
  return grpc::Status::OK;
}

grpc::Status FakeStorage::AbortTransaction(
    grpc::ServerContext*, const ::cellar::v1::AbortTransactionRequest* request,
    ::cellar::v1::AbortTransactionResponse*) {
  absl::MutexLock lock(&mu_);
  if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
  pending_.erase(request->ttid());
  return grpc::Status::OK;
}

grpc::Status FakeStorage::Load(grpc::ServerContext*,
                               const ::cellar::v1::LoadRequest* request,
                               ::cellar::v1::LoadResponse* response) {
  absl::MutexLock lock(&mu_);
  ++load_calls_;
  if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
  if (!load_error_.ok()) return ToGrpc(load_error_);
  auto obj = objects_.find(request->oid());
  if (obj == objects_.end() || obj->second.empty()) {
    return ToGrpc(common::ErrorWithReason(
        absl::StatusCode::kNotFound, common::kReasonNoSuchObject,
        absl::StrCat("oid ", common::FormatOid(request->oid()), " unknown")));
  }
  const auto& revisions = obj->second;
  std::map<uint64_t, Revision>::const_iterator it;
  if (request->at_case() == ::cellar::v1::LoadRequest::kSerial) {
    it = revisions.find(request->serial());
    if (it == revisions.end()) {
      return ToGrpc(common::ErrorWithReason(
          absl::StatusCode::kNotFound, common::kReasonNoSuchRevision,
          "no such revision"));
    }
  } else {
    it = revisions.lower_bound(request->before_tid());
    if (it == revisions.begin()) {
      return ToGrpc(common::ErrorWithReason(
          absl::StatusCode::kNotFound, common::kReasonNoEarlierRevision,
          "no revision before that tid"));
    }
    --it;
  }
  auto next = std::next(it);
  response->set_oid(request->oid());
  response->set_serial(it->first);
  response->set_next_serial(next == revisions.end() ? 0 : next->first);
  response->set_data(it->second.data);
  response->set_checksum(corrupt_loads_ ? common::Checksum("corrupted")
                                        : it->second.checksum);
  return grpc::Status::OK;
}

grpc::Status FakeStorage::History(grpc::ServerContext*,
                                  const ::cellar::v1::HistoryRequest* request,
                                  ::cellar::v1::HistoryResponse* response) {
  absl::MutexLock lock(&mu_);
  if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
  auto obj = objects_.find(request->oid());
  if (obj == objects_.end()) {
    return ToGrpc(common::ErrorWithReason(absl::StatusCode::kNotFound,
                                          common::kReasonNoSuchObject,
                                          "oid unknown"));
  }
  response->set_oid(request->oid());
  const uint32_t limit = request->limit() == 0 ? 100 : request->limit();
  for (auto it = obj->second.rbegin();
       it != obj->second.rend() &&
       response->revisions_size() < static_cast<int>(limit);
       ++it) {
    ::cellar::v1::Revision* revision = response->add_revisions();
    revision->set_serial(it->first);
    revision->set_size_bytes(it->second.data.size());
    revision->set_deleted(it->second.data.empty());
  }
  return grpc::Status::OK;
}

void FakeStorage::AddTransactionRecord(uint64_t tid, const std::string& user) {
  absl::MutexLock lock(&mu_);
  ::cellar::v1::TransactionInfo& info = transactions_[tid];
  info.set_tid(tid);
  info.set_user(user);
}

void FakeStorage::SetPartitionStats(::cellar::v1::GetPartitionStatsResponse stats) {
  absl::MutexLock lock(&mu_);
  partition_stats_ = std::move(stats);
}

grpc::Status FakeStorage::GetPartitionStats(grpc::ServerContext*,
                                            const ::cellar::v1::GetPartitionStatsRequest*,
                                            ::cellar::v1::GetPartitionStatsResponse* response) {
  absl::MutexLock lock(&mu_);
  if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
  if (!partition_stats_.has_value()) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no partition stats set");
  }
  *response = *partition_stats_;
  return grpc::Status::OK;
}

grpc::Status FakeStorage::LastTransactions(
    grpc::ServerContext*, const ::cellar::v1::LastTransactionsRequest* request,
    ::cellar::v1::LastTransactionsResponse* response) {
  absl::MutexLock lock(&mu_);
  if (!all_calls_error_.ok()) return ToGrpc(all_calls_error_);
  const uint32_t limit = request->limit() == 0 ? 10 : request->limit();
  for (auto it = transactions_.rbegin();
       it != transactions_.rend() &&
       response->transactions_size() < static_cast<int>(limit);
       ++it) {
    if (request->before_tid() != 0 && it->first >= request->before_tid()) {
      continue;
    }
    *response->add_transactions() = it->second;
  }
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------
// FakeMaster

FakeMaster::FakeMaster(std::string cluster_name, common::PartitionTable table,
                       std::vector<FakeStorage*> storages)
    : cluster_name_(std::move(cluster_name)),
      table_(std::move(table)),
      // A realistic TID (2024-01-01) so tools print sensible times.
      last_tid_(common::TidFromTime(absl::FromUnixSeconds(1704067200))),
      tid_counter_(last_tid_),
      ttid_key_(common::NewTtidKey()) {
  absl::MutexLock lock(&mu_);
  for (FakeStorage* storage : storages) {
    storage->SetTtidKey(ttid_key_);
    storages_[storage->node_id()] = storage;
    storage_states_[storage->node_id()] = ::cellar::v1::NODE_RUNNING;
  }
}

FakeMaster::~FakeMaster() { Shutdown(); }

absl::Status FakeMaster::Start() {
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = StartServer(this, &port_);
  if (!server.ok()) return server.status();
  server_ = *std::move(server);
  return absl::OkStatus();
}

void FakeMaster::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(1));
    server_->Wait();
    server_.reset();
  }
}

std::string FakeMaster::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

void FakeMaster::PushLocked(const ClusterEvent& event) {
  for (auto& stream : streams_) stream->queue.push_back(event);
}

std::vector<NodeInfo> FakeMaster::NodesLocked() const {
  std::vector<NodeInfo> nodes;
  for (const auto& [id, storage] : storages_) {
    NodeInfo& node = nodes.emplace_back();
    node.set_node_id(id);
    node.set_role(::cellar::v1::NODE_ROLE_STORAGE);
    node.set_address(storage->address());
    node.set_state(storage_states_.at(id));
    node.set_version("0.1.0");
    node.set_track("stable");
  }
  for (uint32_t id : clients_) {
    NodeInfo& node = nodes.emplace_back();
    node.set_node_id(id);
    node.set_role(::cellar::v1::NODE_ROLE_CLIENT);
    node.set_state(::cellar::v1::NODE_RUNNING);
    node.set_version("0.1.0");
    node.set_track("stable");
  }
  return nodes;
}

uint64_t FakeMaster::NextTidLocked(uint64_t congruent_to) {
  const uint64_t p = std::max<uint32_t>(1, table_.num_partitions());
  uint64_t tid = tid_counter_ + 1;
  while (tid % p != congruent_to % p) ++tid;
  tid_counter_ = tid;
  return tid;
}

void FakeMaster::EndWatchStreams() {
  absl::MutexLock lock(&mu_);
  for (auto& stream : streams_) stream->end = true;
}

void FakeMaster::SetCellState(uint32_t partition, uint32_t node_id,
                              ::cellar::v1::CellState state) {
  absl::MutexLock lock(&mu_);
  table_.SetCell(partition, node_id, state);
  table_.set_ptid(table_.ptid() + 1);
  ClusterEvent event;
  auto* delta = event.mutable_partition_table_delta();
  delta->set_ptid(table_.ptid());
  auto* change = delta->add_changes();
  change->set_partition(partition);
  change->set_node_id(node_id);
  change->set_state(state);
  PushLocked(event);
}

void FakeMaster::SetCellStateWithGap(uint32_t partition, uint32_t node_id,
                                     ::cellar::v1::CellState state) {
  absl::MutexLock lock(&mu_);
  table_.SetCell(partition, node_id, state);
  table_.set_ptid(table_.ptid() + 2);
  ClusterEvent event;
  auto* delta = event.mutable_partition_table_delta();
  delta->set_ptid(table_.ptid());
  auto* change = delta->add_changes();
  change->set_partition(partition);
  change->set_node_id(node_id);
  change->set_state(state);
  PushLocked(event);
}

void FakeMaster::SetNodeState(uint32_t node_id, ::cellar::v1::NodeState state) {
  absl::MutexLock lock(&mu_);
  storage_states_[node_id] = state;
  for (const NodeInfo& node : NodesLocked()) {
    if (node.node_id() == node_id) {
      ClusterEvent event;
      *event.mutable_node() = node;
      PushLocked(event);
    }
  }
}

void FakeMaster::SetClusterState(::cellar::v1::ClusterState state) {
  absl::MutexLock lock(&mu_);
  state_ = state;
  ClusterEvent event;
  event.set_cluster_state(state);
  PushLocked(event);
}

uint64_t FakeMaster::AdvanceTid() {
  absl::MutexLock lock(&mu_);
  const uint64_t tid = NextTidLocked(tid_counter_ + 1);
  last_tid_ = tid;
  ClusterEvent event;
  event.mutable_invalidation()->set_tid(tid);
  PushLocked(event);
  return tid;
}

void FakeMaster::PushInvalidation(uint64_t tid,
                                  const std::vector<uint64_t>& oids) {
  absl::MutexLock lock(&mu_);
  ClusterEvent event;
  event.mutable_invalidation()->set_tid(tid);
  for (uint64_t oid : oids) event.mutable_invalidation()->add_oids(oid);
  PushLocked(event);
}

void FakeMaster::SetRegisterError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  register_error_ = std::move(status);
}

void FakeMaster::SetLoseFinishAnswer(bool lose) {
  absl::MutexLock lock(&mu_);
  lose_finish_answer_ = lose;
}

void FakeMaster::SetFailOverOnFinish(bool enabled, bool commit,
                                     bool recovering) {
  absl::MutexLock lock(&mu_);
  fail_over_on_finish_ = enabled;
  fail_over_commits_ = commit;
  fail_over_recovering_ = recovering;
}

int FakeMaster::refused_while_down() const {
  absl::MutexLock lock(&mu_);
  return refused_while_down_;
}

void FakeMaster::SetSuppressInvalidations(bool suppress) {
  absl::MutexLock lock(&mu_);
  suppress_invalidations_ = suppress;
}

void FakeMaster::SetFinishFault(FinishFault fault) {
  absl::MutexLock lock(&mu_);
  finish_fault_ = fault;
}

void FakeMaster::SetReportedLastTid(std::optional<uint64_t> last_tid) {
  absl::MutexLock lock(&mu_);
  reported_last_tid_ = last_tid;
}

void FakeMaster::SetEpoch(uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  epoch_ = epoch;
}

uint64_t FakeMaster::last_tid() const {
  absl::MutexLock lock(&mu_);
  return last_tid_;
}

int FakeMaster::register_calls() const {
  absl::MutexLock lock(&mu_);
  return register_calls_;
}

int FakeMaster::begin_calls() const {
  absl::MutexLock lock(&mu_);
  return begin_calls_;
}

int FakeMaster::preallocated_ttids() const {
  absl::MutexLock lock(&mu_);
  return preallocated_ttids_;
}

std::string FakeMaster::ttid_key() const {
  absl::MutexLock lock(&mu_);
  return ttid_key_;
}

void FakeMaster::NewTtidKey() {
  absl::MutexLock lock(&mu_);
  ttid_key_ = common::NewTtidKey();
  for (auto& [id, storage] : storages_) storage->SetTtidKey(ttid_key_);
}

int FakeMaster::open_watch_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

bool FakeMaster::AwaitOpenWatchStreams(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(streams_.size()) == n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

std::vector<::cellar::v1::FinishRequest> FakeMaster::finish_requests() const {
  absl::MutexLock lock(&mu_);
  return finish_requests_;
}

std::vector<::cellar::v1::AbortRequest> FakeMaster::abort_requests() const {
  absl::MutexLock lock(&mu_);
  return abort_requests_;
}

std::vector<::cellar::v1::ReportUnreachableRequest> FakeMaster::unreachable_reports() const {
  absl::MutexLock lock(&mu_);
  return unreachable_reports_;
}

bool FakeMaster::AwaitUnreachableReports(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return unreachable_reports_.size() >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

grpc::Status FakeMaster::ReportUnreachable(grpc::ServerContext*,
                                           const ::cellar::v1::ReportUnreachableRequest* request,
                                           ::cellar::v1::ReportUnreachableResponse* response) {
  absl::MutexLock lock(&mu_);
  unreachable_reports_.push_back(*request);
  response->set_outcome(::cellar::v1::REPORT_PROBING);
  return grpc::Status::OK;
}

common::PartitionTable FakeMaster::table() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

grpc::Status FakeMaster::RegisterNode(
    grpc::ServerContext*, const ::cellar::v1::RegisterNodeRequest* request,
    ::cellar::v1::RegisterNodeResponse* response) {
  absl::MutexLock lock(&mu_);
  ++register_calls_;
  if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "master down");
  if (!register_error_.ok()) return ToGrpc(register_error_);
  if (request->cluster_name() != cluster_name_) {
    return ToGrpc(common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonWrongCluster,
        absl::StrCat("this is cluster '", cluster_name_, "', not '",
                     request->cluster_name(), "'")));
  }
  if (request->protocol_version() != ::cellar::v1::PROTOCOL_VERSION_1) {
    return ToGrpc(common::ErrorWithReason(absl::StatusCode::kFailedPrecondition,
                                          common::kReasonProtocolMismatch,
                                          "unsupported protocol version"));
  }
  if (request->role() != ::cellar::v1::NODE_ROLE_CLIENT) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the fake master only registers clients");
  }
  const uint32_t id = next_node_id_++;
  clients_.insert(id);
  response->set_node_id(id);
  response->set_epoch(epoch_);
  response->set_cluster_state(state_);
  *response->mutable_partition_table() = table_.ToProto();
  response->set_master_node_id(1);
  return grpc::Status::OK;
}

grpc::Status FakeMaster::Watch(
    grpc::ServerContext* context, const ::cellar::v1::WatchRequest* request,
    grpc::ServerWriter<ClusterEvent>* writer) {
  auto stream = std::make_shared<WatchStream>();
  stream->node_id = request->node_id();
  {
    absl::MutexLock lock(&mu_);
    if (clients_.count(request->node_id()) == 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "node not registered");
    }
    ClusterEvent first;
    auto* snapshot = first.mutable_snapshot();
    snapshot->set_cluster_state(state_);
    *snapshot->mutable_partition_table() = table_.ToProto();
    for (const NodeInfo& node : NodesLocked()) *snapshot->add_nodes() = node;
    snapshot->set_last_tid(reported_last_tid_.value_or(last_tid_));
    snapshot->set_epoch(epoch_);
    stream->queue.push_back(std::move(first));
    streams_.push_back(stream);
  }
  auto remove = [&]() {
    absl::MutexLock lock(&mu_);
    streams_.erase(std::remove(streams_.begin(), streams_.end(), stream),
                   streams_.end());
    // A client whose stream ended is gone.
    clients_.erase(stream->node_id);
  };
  while (true) {
    std::deque<ClusterEvent> batch;
    bool end;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this, &stream]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !stream->queue.empty() || stream->end || shutdown_;
      };
      // Short waits so that a cancelled call is noticed.
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(20));
      batch.swap(stream->queue);
      end = stream->end || shutdown_;
    }
    for (const ClusterEvent& event : batch) {
      if (!writer->Write(event)) {
        remove();
        return grpc::Status(grpc::StatusCode::CANCELLED, "stream broken");
      }
    }
    if (end) {
      remove();
      return grpc::Status::OK;
    }
    if (context->IsCancelled()) {
      remove();
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
  }
}

grpc::Status FakeMaster::AllocateOids(
    grpc::ServerContext*, const ::cellar::v1::AllocateOidsRequest* request,
    ::cellar::v1::AllocateOidsResponse* response) {
  absl::MutexLock lock(&mu_);
  if (request->count() < 1 || request->count() > 1000) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "count 1..1000");
  }
  if (state_ != ::cellar::v1::CLUSTER_RUNNING) {
    return ToGrpc(common::ErrorWithReason(absl::StatusCode::kFailedPrecondition,
                                          common::kReasonClusterNotRunning,
                                          "cluster is not running"));
  }
  response->set_first_oid(next_oid_);
  response->set_count(request->count());
  next_oid_ += request->count();
  return grpc::Status::OK;
}

grpc::Status FakeMaster::Begin(grpc::ServerContext*,
                               const ::cellar::v1::BeginRequest* request,
                               ::cellar::v1::BeginResponse* response) {
  absl::MutexLock lock(&mu_);
  ++begin_calls_;
  if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "master down");
  if (state_ != ::cellar::v1::CLUSTER_RUNNING) {
    return ToGrpc(common::ErrorWithReason(absl::StatusCode::kFailedPrecondition,
                                          common::kReasonClusterNotRunning,
                                          "cluster is not running"));
  }
  if (clients_.count(request->node_id()) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown client");
  }
  const uint64_t ttid = NextTidLocked(tid_counter_ + 1);
  txns_[ttid] = Txn{request->node_id()};
  response->set_ttid(ttid);
  response->set_ttid_token(common::TtidToken(ttid_key_, ttid));
  return grpc::Status::OK;
}

grpc::Status FakeMaster::Finish(grpc::ServerContext* context,
                                const ::cellar::v1::FinishRequest* request,
                                ::cellar::v1::FinishResponse* response) {
  absl::MutexLock lock(&mu_);
  finish_requests_.push_back(*request);
  auto txn = txns_.find(request->ttid());
  if (txn == txns_.end() || txn->second.finishing ||
      txn->second.outcome != ::cellar::v1::TRANSACTION_ACTIVE) {
    return ToGrpc(common::ErrorWithReason(absl::StatusCode::kNotFound,
                                          common::kReasonUnknownTransaction,
                                          "unknown transaction"));
  }
  std::set<uint32_t> voted(request->voted_node_ids().begin(),
                           request->voted_node_ids().end());
  for (uint32_t partition : request->partitions()) {
    bool ok = false;
    for (uint32_t node : table_.WritableNodes(partition)) {
      if (voted.count(node) > 0) ok = true;
    }
    if (!ok) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "a partition has no voted cell");
    }
  }
  if (finish_fault_ == FinishFault::kUnavailableBeforeLock) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no lock taken");
  }
  if (finish_fault_ != FinishFault::kNone) {
    txn->second.finishing = true;
    if (finish_fault_ == FinishFault::kUnavailableAfterLock) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "connection lost after the storages locked");
    }
    // Never answers: returns once the caller gave up.
    while (!context->IsCancelled() && !shutdown_) {
      mu_.AwaitWithTimeout(absl::Condition(&shutdown_), absl::Milliseconds(20));
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "never answered");
  }
  if (fail_over_on_finish_) {
    fail_over_on_finish_ = false;
    if (fail_over_commits_) {
      const uint64_t tid = NextTidLocked(request->ttid());
      for (uint32_t node : voted) {
        auto storage = storages_.find(node);
        if (storage != storages_.end()) {
          storage->second->CommitTransaction(request->ttid(), tid);
        }
      }
      last_tid_ = tid;
      locked_on_storages_[request->ttid()] = tid;
    }
    txns_.erase(txn);
    down_ = true;
    for (auto& stream : streams_) stream->end = true;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "master failed over");
  }
  const uint64_t tid = NextTidLocked(request->ttid());
  for (uint32_t node : voted) {
    auto storage = storages_.find(node);
    if (storage != storages_.end()) {
      storage->second->CommitTransaction(request->ttid(), tid);
    }
  }
  txn->second.outcome = ::cellar::v1::TRANSACTION_COMMITTED;
  txn->second.tid = tid;
  last_tid_ = tid;
  if (!suppress_invalidations_) {
    ClusterEvent event;
    event.mutable_invalidation()->set_tid(tid);
    *event.mutable_invalidation()->mutable_oids() = request->oids();
    PushLocked(event);
  }
  if (lose_finish_answer_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "answer lost");
  }
  response->set_tid(tid);
  if (request->want_next_ttid() && state_ == ::cellar::v1::CLUSTER_RUNNING &&
      clients_.count(request->node_id()) > 0) {
    // The client's next ttid, begun now (as TransactionCoordinator does;
    // the fake does not bound them per client).
    const uint64_t next = NextTidLocked(tid_counter_ + 1);
    txns_[next] = Txn{request->node_id()};
    ++preallocated_ttids_;
    response->set_next_ttid(next);
    response->set_next_ttid_token(common::TtidToken(ttid_key_, next));
  }
  return grpc::Status::OK;
}

grpc::Status FakeMaster::Abort(grpc::ServerContext*,
                               const ::cellar::v1::AbortRequest* request,
                               ::cellar::v1::AbortResponse*) {
  absl::MutexLock lock(&mu_);
  if (down_) {
    // The client's last word to the old primary: the new one takes over.
    ++refused_while_down_;
    down_ = false;
    if (fail_over_recovering_) state_ = ::cellar::v1::CLUSTER_RECOVERING;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "master down");
  }
  abort_requests_.push_back(*request);
  auto txn = txns_.find(request->ttid());
  if (txn != txns_.end()) {
    if (txn->second.outcome == ::cellar::v1::TRANSACTION_COMMITTED ||
        txn->second.finishing) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "already committed");
    }
    txn->second.outcome = ::cellar::v1::TRANSACTION_ABORTED;
  }
  for (uint32_t node : request->storage_node_ids()) {
    auto storage = storages_.find(node);
    if (storage != storages_.end()) {
      storage->second->AbortTransactionLocal(request->ttid());
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeMaster::GetTransactionStatus(
    grpc::ServerContext*,
    const ::cellar::v1::GetTransactionStatusRequest* request,
    ::cellar::v1::GetTransactionStatusResponse* response) {
  absl::MutexLock lock(&mu_);
  if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "master down");
  auto txn = txns_.find(request->ttid());
  auto locked = locked_on_storages_.find(request->ttid());
  if (txn == txns_.end() && locked != locked_on_storages_.end() &&
      state_ == ::cellar::v1::CLUSTER_RUNNING) {
    // Unknown here, locked on a storage (Master.GetTransactionStatus).
    response->set_outcome(::cellar::v1::TRANSACTION_COMMITTED);
    response->set_tid(locked->second);
  } else if (txn == txns_.end()) {
    response->set_outcome(::cellar::v1::TRANSACTION_UNKNOWN);
  } else {
    response->set_outcome(txn->second.outcome);
    response->set_tid(txn->second.tid);
  }
  return grpc::Status::OK;
}

grpc::Status FakeMaster::GetClusterInfo(
    grpc::ServerContext*, const ::cellar::v1::GetClusterInfoRequest*,
    ::cellar::v1::GetClusterInfoResponse* response) {
  absl::MutexLock lock(&mu_);
  response->set_cluster_name(cluster_name_);
  response->set_cluster_state(state_);
  *response->mutable_partition_table() = table_.ToProto();
  for (const NodeInfo& node : NodesLocked()) *response->add_nodes() = node;
  response->set_last_tid(reported_last_tid_.value_or(last_tid_));
  response->set_last_oid(next_oid_ - 1);
  response->set_epoch(epoch_);
  response->set_master_node_id(1);
  absl::flat_hash_set<uint32_t> running;
  for (const auto& [id, state] : storage_states_) {
    if (state == ::cellar::v1::NODE_RUNNING) running.insert(id);
  }
  response->set_operational(table_.IsOperational(running));
  return grpc::Status::OK;
}

grpc::Status FakeMaster::StartCluster(
    grpc::ServerContext*, const ::cellar::v1::StartClusterRequest*,
    ::cellar::v1::StartClusterResponse* response) {
  absl::MutexLock lock(&mu_);
  if (state_ != ::cellar::v1::CLUSTER_RECOVERING) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "not recovering");
  }
  state_ = ::cellar::v1::CLUSTER_RUNNING;
  ClusterEvent event;
  event.set_cluster_state(state_);
  PushLocked(event);
  response->set_cluster_state(state_);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------
// FakeCluster

absl::StatusOr<std::unique_ptr<FakeCluster>> FakeCluster::Start(
    FakeClusterOptions options) {
  std::unique_ptr<FakeCluster> cluster(new FakeCluster());
  std::vector<uint32_t> ids;
  std::vector<FakeStorage*> storages;
  for (int i = 1; i <= options.num_storages; ++i) {
    auto storage = std::make_unique<FakeStorage>(static_cast<uint32_t>(i));
    absl::Status status = storage->Start();
    if (!status.ok()) return status;
    ids.push_back(static_cast<uint32_t>(i));
    storages.push_back(storage.get());
    cluster->storages_.push_back(std::move(storage));
  }
  absl::StatusOr<common::PartitionTable> table = common::PartitionTable::MakeBalanced(
      options.num_partitions, options.num_replicas, ids);
  if (!table.ok()) return table.status();
  cluster->master_ = std::make_unique<FakeMaster>(
      options.cluster_name, *std::move(table), storages);
  absl::Status status = cluster->master_->Start();
  if (!status.ok()) return status;
  return cluster;
}

FakeCluster::~FakeCluster() {
  if (master_ != nullptr) master_->Shutdown();
  for (auto& storage : storages_) storage->Shutdown();
}

}  // namespace cellar::client::testing
