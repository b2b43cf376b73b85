#include "services/master/grpc_storage_caller.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::master {
namespace {

// Waits for N callbacks.
class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void CountDown() {
    absl::MutexLock l(&mu_);
    --n_;
  }
  void Wait() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](int* n) { return *n <= 0; }, &n_));
  }

 private:
  absl::Mutex mu_;
  int n_ ABSL_GUARDED_BY(mu_);
};

template <typename Request, typename Response>
struct Call {
  grpc::ClientContext context;
  Request request;
  Response response;
};

}  // namespace

GrpcStorageCaller::GrpcStorageCaller(absl::Duration timeout,
                                     common::ChannelSecurity node_channel)
    : timeout_(timeout), node_channel_(std::move(node_channel)) {}

GrpcStorageCaller::~GrpcStorageCaller() {
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](int* p) { return *p == 0; }, &pending_),
                       absl::Seconds(5));
}

std::shared_ptr<cellar::v1::Storage::Stub> GrpcStorageCaller::StubFor(
    const std::string& address) {
  absl::MutexLock l(&mu_);
  auto& stub = stubs_[address];
  if (stub == nullptr) {
    stub = cellar::v1::Storage::NewStub(common::MakeChannel(address, node_channel_));
  }
  return stub;
}

void GrpcStorageCaller::Reconnect(const std::string& address) {
  absl::MutexLock l(&mu_);
  stubs_.erase(address);  // calls in flight keep their own reference
}

std::vector<absl::StatusOr<LockedOids>> GrpcStorageCaller::LockAll(
    const std::vector<StorageTarget>& targets, uint64_t epoch, uint64_t ttid,
    uint64_t tid, uint64_t min_ptid, const std::vector<uint32_t>& partitions) {
  std::vector<absl::StatusOr<LockedOids>> results(targets.size());
  std::vector<std::unique_ptr<Call<cellar::v1::LockTransactionRequest,
                                   cellar::v1::LockTransactionResponse>>>
      calls;
  Latch latch(static_cast<int>(targets.size()));
  for (size_t i = 0; i < targets.size(); ++i) {
    auto call = std::make_unique<Call<cellar::v1::LockTransactionRequest,
                                      cellar::v1::LockTransactionResponse>>();
    common::SetDeadline(&call->context, timeout_);
    call->request.set_epoch(epoch);
    call->request.set_ttid(ttid);
    call->request.set_tid(tid);
    call->request.set_min_ptid(min_ptid);
    call->request.mutable_partitions()->Add(partitions.begin(), partitions.end());
    StubFor(targets[i].address)
        ->async()
        ->LockTransaction(&call->context, &call->request, &call->response,
                          [&results, &latch, i, &targets, c = call.get()](grpc::Status s) {
                            if (s.ok()) {
                              LockedOids answer;
                              answer.known = c->response.stored_oids_known();
                              answer.oids.assign(c->response.stored_oids().begin(),
                                                 c->response.stored_oids().end());
                              results[i] = std::move(answer);
                            } else {
                              results[i] = common::Annotate(
                                  common::FromGrpcStatus(s),
                                  absl::StrCat("lock on S", targets[i].node_id));
                            }
                            latch.CountDown();
                          });
    calls.push_back(std::move(call));
  }
  latch.Wait();
  return results;
}

void GrpcStorageCaller::UnlockAsync(const std::vector<StorageTarget>& targets,
                                    uint64_t epoch, uint64_t ttid, uint64_t tid,
                                    bool forget_lock, const RecordOids* record) {
  for (const StorageTarget& target : targets) {
    auto* call = new Call<cellar::v1::UnlockTransactionRequest,
                          cellar::v1::UnlockTransactionResponse>();
    common::SetDeadline(&call->context, timeout_);
    call->request.set_epoch(epoch);
    call->request.set_ttid(ttid);
    call->request.set_tid(tid);
    call->request.set_forget_lock(forget_lock);
    if (record != nullptr &&
        std::find(record->holders.begin(), record->holders.end(), target.node_id) !=
            record->holders.end()) {
      call->request.mutable_record_oids()->mutable_oids()->Add(record->oids.begin(),
                                                               record->oids.end());
    }
    {
      absl::MutexLock l(&mu_);
      ++pending_;
    }
    const uint32_t node_id = target.node_id;
    StubFor(target.address)
        ->async()
        ->UnlockTransaction(&call->context, &call->request, &call->response,
                            [this, call, node_id, ttid](grpc::Status s) {
                              static common::LogRateLimit limit(absl::Seconds(10));
                              uint64_t dropped = 0;
                              if (!s.ok() && limit.Allow(absl::Now(), &dropped)) {
                                CELLAR_LOG(WARNING)
                                    << "unlock of ttid " << common::TidHex(ttid)
                                    << " on S" << node_id
                                    << " failed: " << s.error_message()
                                    << common::Dropped(dropped);
                              }
                              delete call;
                              absl::MutexLock l(&mu_);
                              --pending_;
                            });
  }
}

std::vector<absl::Status> GrpcStorageCaller::AbortAll(
    const std::vector<StorageTarget>& targets, uint64_t epoch, uint64_t ttid) {
  std::vector<absl::Status> results(targets.size());
  std::vector<std::unique_ptr<Call<cellar::v1::AbortTransactionRequest,
                                   cellar::v1::AbortTransactionResponse>>>
      calls;
  Latch latch(static_cast<int>(targets.size()));
  for (size_t i = 0; i < targets.size(); ++i) {
    auto call = std::make_unique<Call<cellar::v1::AbortTransactionRequest,
                                      cellar::v1::AbortTransactionResponse>>();
    common::SetDeadline(&call->context, timeout_);
    call->request.set_ttid(ttid);
    call->request.set_epoch(epoch);
    StubFor(targets[i].address)
        ->async()
        ->AbortTransaction(&call->context, &call->request, &call->response,
                           [&results, &latch, i](grpc::Status s) {
                             results[i] = common::FromGrpcStatus(s);
                             latch.CountDown();
                           });
    calls.push_back(std::move(call));
  }
  latch.Wait();
  return results;
}

void GrpcStorageCaller::AbortAsync(const std::vector<StorageTarget>& targets,
                                   uint64_t epoch, uint64_t ttid) {
  for (const StorageTarget& target : targets) {
    auto* call = new Call<cellar::v1::AbortTransactionRequest,
                          cellar::v1::AbortTransactionResponse>();
    common::SetDeadline(&call->context, timeout_);
    call->request.set_ttid(ttid);
    call->request.set_epoch(epoch);
    {
      absl::MutexLock l(&mu_);
      ++pending_;
    }
    const uint32_t node_id = target.node_id;
    StubFor(target.address)
        ->async()
        ->AbortTransaction(&call->context, &call->request, &call->response,
                           [this, call, node_id, ttid](grpc::Status s) {
                             if (!s.ok()) {
                               CELLAR_LOG(INFO)
                                   << "abort of ttid " << common::TidHex(ttid) << " on S"
                                   << node_id << " failed: " << s.error_message();
                             }
                             delete call;
                             absl::MutexLock l(&mu_);
                             --pending_;
                           });
  }
}

std::vector<absl::StatusOr<StorageOutcome>> GrpcStorageCaller::OutcomeAll(
    const std::vector<StorageTarget>& targets, uint64_t ttid) {
  std::vector<absl::StatusOr<StorageOutcome>> results(targets.size(),
                                                      absl::UnknownError("no answer"));
  std::vector<std::unique_ptr<Call<cellar::v1::GetTransactionOutcomeRequest,
                                   cellar::v1::GetTransactionOutcomeResponse>>>
      calls;
  Latch latch(static_cast<int>(targets.size()));
  for (size_t i = 0; i < targets.size(); ++i) {
    auto call = std::make_unique<Call<cellar::v1::GetTransactionOutcomeRequest,
                                      cellar::v1::GetTransactionOutcomeResponse>>();
    common::SetDeadline(&call->context, timeout_);
    call->request.set_ttid(ttid);
    auto* raw = call.get();
    StubFor(targets[i].address)
        ->async()
        ->GetTransactionOutcome(
            &call->context, &call->request, &call->response,
            [&results, &latch, i, &targets, raw](grpc::Status s) {
              if (!s.ok()) {
                results[i] = common::Annotate(
                    common::FromGrpcStatus(s),
                    absl::StrCat("outcome on S", targets[i].node_id));
              } else {
                StorageOutcome outcome;
                switch (raw->response.state()) {
                  case cellar::v1::STORAGE_TRANSACTION_STORING:
                    outcome.state = StorageOutcome::State::kStoring;
                    break;
                  case cellar::v1::STORAGE_TRANSACTION_VOTED:
                    outcome.state = StorageOutcome::State::kVoted;
                    break;
                  case cellar::v1::STORAGE_TRANSACTION_LOCKED:
                    outcome.state = StorageOutcome::State::kLocked;
                    outcome.tid = raw->response.tid();
                    outcome.oids.assign(raw->response.oids().begin(),
                                        raw->response.oids().end());
                    outcome.partitions.assign(raw->response.partitions().begin(),
                                              raw->response.partitions().end());
                    break;
                  case cellar::v1::STORAGE_TRANSACTION_ABORTED:
                    outcome.state = StorageOutcome::State::kAborted;
                    break;
                  default:
                    outcome.state = StorageOutcome::State::kUnknown;
                    break;
                }
                results[i] = outcome;
              }
              latch.CountDown();
            });
    calls.push_back(std::move(call));
  }
  latch.Wait();
  return results;
}

template <typename Request, typename Response, typename Start>
std::vector<absl::Status> GrpcStorageCaller::CallAll(const std::vector<StorageTarget>& targets,
                                                     const Request& request,
                                                     absl::string_view what, Start start) {
  std::vector<absl::Status> results(targets.size());
  std::vector<std::unique_ptr<Call<Request, Response>>> calls;
  Latch latch(static_cast<int>(targets.size()));
  for (size_t i = 0; i < targets.size(); ++i) {
    auto call = std::make_unique<Call<Request, Response>>();
    common::SetDeadline(&call->context, timeout_);
    call->request = request;
    start(StubFor(targets[i].address)->async(), call.get(),
          [&results, &latch, i, &targets, what](grpc::Status s) {
            results[i] = common::Annotate(
                common::FromGrpcStatus(s),
                absl::StrCat(what, " on ", common::NodeName(targets[i].node_id)));
            latch.CountDown();
          });
    calls.push_back(std::move(call));
  }
  latch.Wait();
  return results;
}

std::vector<absl::Status> GrpcStorageCaller::SaveMasterStateAll(
    const std::vector<StorageTarget>& targets, uint64_t epoch, uint64_t oid_high_water) {
  using Request = cellar::v1::SaveMasterStateRequest;
  using Response = cellar::v1::SaveMasterStateResponse;
  Request request;
  request.set_epoch(epoch);
  request.set_oid_high_water(oid_high_water);
  return CallAll<Request, Response>(
      targets, request, "saving the OID high-water mark",
      [](auto* async, Call<Request, Response>* call, std::function<void(grpc::Status)> done) {
        async->SaveMasterState(&call->context, &call->request, &call->response,
                               std::move(done));
      });
}

std::vector<absl::Status> GrpcStorageCaller::SaveTokenTableAll(
    const std::vector<StorageTarget>& targets, uint64_t epoch,
    const cellar::v1::ClusterTokenTable& table) {
  using Request = cellar::v1::SaveTokenTableRequest;
  using Response = cellar::v1::SaveTokenTableResponse;
  Request request;
  request.set_epoch(epoch);
  *request.mutable_table() = table;
  return CallAll<Request, Response>(
      targets, request, "saving the token table",
      [](auto* async, Call<Request, Response>* call, std::function<void(grpc::Status)> done) {
        async->SaveTokenTable(&call->context, &call->request, &call->response,
                              std::move(done));
      });
}

std::vector<absl::Status> GrpcStorageCaller::SaveFeatureFlagsAll(
    const std::vector<StorageTarget>& targets, uint64_t epoch,
    const cellar::v1::FeatureFlagTable& table) {
  using Request = cellar::v1::SaveFeatureFlagsRequest;
  using Response = cellar::v1::SaveFeatureFlagsResponse;
  Request request;
  request.set_epoch(epoch);
  *request.mutable_table() = table;
  return CallAll<Request, Response>(
      targets, request, "saving the feature flags",
      [](auto* async, Call<Request, Response>* call, std::function<void(grpc::Status)> done) {
        async->SaveFeatureFlags(&call->context, &call->request, &call->response,
                                std::move(done));
      });
}

// --- Operator actions ---

absl::Status GrpcStorageCaller::Shutdown(const StorageTarget& target,
                                         const std::string& reason) {
  grpc::ClientContext context;
  common::SetDeadline(&context, timeout_);
  cellar::v1::ShutdownRequest request;
  request.set_reason(reason);
  request.set_node_id(target.node_id);
  cellar::v1::ShutdownResponse response;
  const grpc::Status s = StubFor(target.address)->Shutdown(&context, request, &response);
  if (s.ok()) return absl::OkStatus();
  return common::Annotate(common::FromGrpcStatus(s),
                          absl::StrCat("shutdown of ", common::NodeName(target.node_id)));
}

absl::Status GrpcStorageCaller::Probe(const StorageTarget& target, absl::Duration timeout) {
  grpc::ClientContext context;
  common::SetDeadline(&context, timeout);
  cellar::v1::GetNodeStatusRequest request;
  request.set_health_only(true);
  cellar::v1::GetNodeStatusResponse response;
  const grpc::Status s = StubFor(target.address)->GetNodeStatus(&context, request, &response);
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat("probe of ", common::NodeName(target.node_id)));
  }
  // Another storage now serves that address: the one we know is not there.
  if (s.ok() && response.node_id() != 0 && response.node_id() != target.node_id) {
    return absl::UnavailableError(absl::StrCat(target.address, " answers as ",
                                               common::NodeName(response.node_id()), ", not ",
                                               common::NodeName(target.node_id)));
  }
  return absl::OkStatus();  // it answered (an error such as PERMISSION_DENIED too)
}

// ---- Operator actions: replica check and truncate (blocking unary calls;
// the master runs them from its own background threads).

absl::StatusOr<CellCheck> GrpcStorageCaller::CheckCell(const StorageTarget& target,
                                                       uint64_t epoch,
                                                       const CellCheckRange& range) {
  grpc::ClientContext context;
  // Hashing a chunk with data may take longer than a commit-path call.
  common::SetDeadline(&context, std::max(timeout_, absl::Seconds(60)));
  cellar::v1::CheckCellRequest request;
  request.set_partition(range.partition);
  request.set_min_tid(range.min_tid);
  request.set_max_tid(range.max_tid);
  request.set_max_transactions(range.max_transactions);
  request.set_with_data(range.with_data);
  request.set_epoch(epoch);
  cellar::v1::CheckCellResponse response;
  const grpc::Status s = StubFor(target.address)->CheckCell(&context, request, &response);
  if (!s.ok()) {
    return common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat("check of partition ", range.partition, " on ",
                                         common::NodeName(target.node_id)));
  }
  CellCheck check;
  check.transaction_count = response.transaction_count();
  check.tid_hash = response.tid_hash();
  check.object_count = response.object_count();
  check.oid_hash = response.oid_hash();
  check.data_hash = response.data_hash();
  check.last_tid = response.last_tid();
  return check;
}

absl::StatusOr<uint64_t> GrpcStorageCaller::TruncateData(const StorageTarget& target,
                                                         uint64_t epoch, uint64_t tid) {
  grpc::ClientContext context;
  common::SetDeadline(&context, std::max(timeout_, absl::Seconds(120)));
  cellar::v1::TruncateDataRequest request;
  request.set_tid(tid);
  request.set_epoch(epoch);
  cellar::v1::TruncateDataResponse response;
  const grpc::Status s = StubFor(target.address)->TruncateData(&context, request, &response);
  if (!s.ok()) {
    return common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat("truncate on ", common::NodeName(target.node_id)));
  }
  return response.last_tid();
}

absl::StatusOr<cellar::v1::StoragePackProgress> GrpcStorageCaller::Pack(
    const StorageTarget& target, uint64_t epoch, uint64_t pack_tid) {
  grpc::ClientContext context;
  common::SetDeadline(&context, timeout_);
  cellar::v1::StoragePackRequest request;
  request.set_epoch(epoch);
  request.set_pack_tid(pack_tid);
  cellar::v1::StoragePackResponse response;
  const grpc::Status s = StubFor(target.address)->Pack(&context, request, &response);
  if (!s.ok()) {
    return common::Annotate(common::FromGrpcStatus(s),
                            absl::StrCat("pack on ", common::NodeName(target.node_id)));
  }
  cellar::v1::StoragePackProgress progress = response.progress();
  progress.set_node_id(target.node_id);
  return progress;
}

}  // namespace cellar::master
