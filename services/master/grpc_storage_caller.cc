#include "services/master/grpc_storage_caller.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_set.h"
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

// The earliest deadline of a batch's items.
template <typename Item>
absl::Time EarliestDeadline(const std::vector<Item>& items) {
  absl::Time deadline = absl::InfiniteFuture();
  for (const Item& item : items) deadline = std::min(deadline, item.deadline);
  return deadline;
}

// A batch rpc in flight and the items it carries.
template <typename Request, typename Response, typename Item>
struct BatchCall {
  grpc::ClientContext context;
  Request request;
  Response response;
  std::vector<Item> items;

  // The items back with their requests (the batch was not served).
  std::vector<Item> TakeItems() {
    for (int i = 0; i < request.items_size(); ++i) {
      items[i].request = std::move(*request.mutable_items(i));
    }
    return std::move(items);
  }
};

// A batch call for `batch`, with its items' earliest deadline.
template <typename Request, typename Response, typename Item>
BatchCall<Request, Response, Item>* NewBatchCall(std::vector<Item> batch) {
  auto* call = new BatchCall<Request, Response, Item>();
  call->context.set_deadline(absl::ToChronoTime(EarliestDeadline(batch)));
  for (Item& item : batch) *call->request.add_items() = std::move(item.request);
  call->items = std::move(batch);
  return call;
}

}  // namespace

// One lock of a LockAll, queued on its storage's lane.
struct GrpcStorageCaller::LockItem {
  cellar::v1::LockTransactionRequest request;
  uint32_t node_id = 0;
  absl::Time deadline;
  // LockAll's answer slot and latch (valid until CountDown).
  absl::StatusOr<LockedOids>* result = nullptr;
  Latch* latch = nullptr;
};

// One unlock of an UnlockAsync.
struct GrpcStorageCaller::UnlockItem {
  cellar::v1::UnlockTransactionRequest request;
  uint32_t node_id = 0;
  absl::Time deadline;
};

// The locks and unlocks of one storage address: at most one lock call and
// one unlock call in flight; what arrives meanwhile waits here and goes out
// as the next call.
struct GrpcStorageCaller::Lane {
  std::string address;
  bool locking = false;
  std::deque<LockItem> locks;
  bool unlocking = false;
  std::deque<UnlockItem> unlocks;
  // The storage answered UNIMPLEMENTED to a batch rpc (an older version):
  // single rpcs only, until it registers again (Reconnect).
  bool no_batch = false;
};

// The next call of a lane, taken under mu_: its items, whether the
// storage takes batches, its stub.
template <typename Item>
struct GrpcStorageCaller::Outgoing {
  std::vector<Item> items;
  bool no_batch = false;
  std::shared_ptr<cellar::v1::Storage::Stub> stub;
};

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
  return StubLocked(address);
}

std::shared_ptr<cellar::v1::Storage::Stub> GrpcStorageCaller::StubLocked(
    const std::string& address) {
  auto& stub = stubs_[address];
  if (stub == nullptr) {
    stub = cellar::v1::Storage::NewStub(common::MakeChannel(address, node_channel_));
  }
  return stub;
}

void GrpcStorageCaller::Reconnect(const std::string& address) {
  absl::MutexLock l(&mu_);
  stubs_.erase(address);  // calls in flight keep their own reference
  // Perhaps a newer version now: batches are tried again.
  if (auto it = lanes_.find(address); it != lanes_.end()) it->second->no_batch = false;
}

// ---- Natural batching of locks and unlocks (class comment).

namespace {

// The bounds of one LockTransactions / UnlockTransactions call
// (storage.proto), with room for the request's own framing.
constexpr size_t kMaxBatchItems = 1000;
constexpr size_t kMaxBatchBytes = (16 << 20) - (64 << 10);

// The status of one item of a batch, as the single rpc would have failed.
absl::Status FromItemStatus(const cellar::v1::ItemStatus& s) {
  if (s.code() == 0) return absl::OkStatus();
  const absl::StatusCode code = s.code() <= 16 ? static_cast<absl::StatusCode>(s.code())
                                               : absl::StatusCode::kUnknown;
  if (s.reason().empty()) return absl::Status(code, s.message());
  return common::ErrorWithReason(code, s.reason(), s.message());
}

}  // namespace

template <typename Item>
std::vector<Item> GrpcStorageCaller::TakeBatch(std::deque<Item>& queue) {
  std::vector<Item> batch;
  if (queue.size() == 1) {  // the usual case at low load
    batch.push_back(std::move(queue.front()));
    queue.pop_front();
    return batch;
  }
  absl::flat_hash_set<uint64_t> ttids;
  size_t bytes = 0;
  while (!queue.empty() && batch.size() < kMaxBatchItems) {
    Item& next = queue.front();
    // The item, its tag and its length.
    const size_t size = next.request.ByteSizeLong() + 16;
    if (!batch.empty() && bytes + size > kMaxBatchBytes) break;
    // A ttid twice in one batch (a retry overtaking): the second waits for
    // the next call (LockTransactions refuses duplicates; unlocks keep
    // their order).
    if (!ttids.insert(next.request.ttid()).second) break;
    bytes += size;
    batch.push_back(std::move(next));
    queue.pop_front();
  }
  return batch;
}

GrpcStorageCaller::Lane* GrpcStorageCaller::LaneFor(const std::string& address) {
  std::unique_ptr<Lane>& lane = lanes_[address];
  if (lane == nullptr) {
    lane = std::make_unique<Lane>();
    lane->address = address;
  }
  return lane.get();
}

template <typename Item>
GrpcStorageCaller::Outgoing<Item> GrpcStorageCaller::NextLocked(Lane* lane,
                                                                std::deque<Item>& queue,
                                                                bool locks) {
  Outgoing<Item> out;
  out.items = TakeBatch(queue);
  out.no_batch = lane->no_batch;
  out.stub = StubLocked(lane->address);
  const size_t n = out.items.size();
  if (locks) {
    ++batch_stats_.lock_calls;
    batch_stats_.locks += n;
    if (n > 1 && !out.no_batch) ++batch_stats_.lock_batches;
  } else {
    ++batch_stats_.unlock_calls;
    batch_stats_.unlocks += n;
  }
  return out;
}

GrpcStorageCaller::BatchStats GrpcStorageCaller::batch_stats() const {
  absl::MutexLock l(&mu_);
  return batch_stats_;
}

template <typename Item, typename Call>
GrpcStorageCaller::Outgoing<Item> GrpcStorageCaller::NoBatch(Lane* lane, Call* call) {
  Outgoing<Item> out;
  {
    absl::MutexLock l(&mu_);
    lane->no_batch = true;
    out.stub = StubLocked(lane->address);
  }
  out.no_batch = true;
  out.items = call->TakeItems();
  delete call;
  return out;
}

size_t GrpcStorageCaller::queued(const std::string& address) const {
  absl::MutexLock l(&mu_);
  auto it = lanes_.find(address);
  if (it == lanes_.end()) return 0;
  return it->second->locks.size() + it->second->unlocks.size();
}

std::vector<absl::StatusOr<LockedOids>> GrpcStorageCaller::LockAll(
    const std::vector<StorageTarget>& targets, uint64_t epoch, uint64_t ttid,
    uint64_t tid, uint64_t min_ptid, const std::vector<uint32_t>& partitions) {
  std::vector<absl::StatusOr<LockedOids>> results(targets.size());
  Latch latch(static_cast<int>(targets.size()));
  const absl::Time deadline = absl::Now() + timeout_;
  for (size_t i = 0; i < targets.size(); ++i) {
    LockItem item;
    item.request.set_epoch(epoch);
    item.request.set_ttid(ttid);
    item.request.set_tid(tid);
    item.request.set_min_ptid(min_ptid);
    item.request.mutable_partitions()->Add(partitions.begin(), partitions.end());
    item.node_id = targets[i].node_id;
    item.deadline = deadline;
    item.result = &results[i];
    item.latch = &latch;
    Lane* lane;
    Outgoing<LockItem> out;
    {
      absl::MutexLock l(&mu_);
      lane = LaneFor(targets[i].address);
      lane->locks.push_back(std::move(item));
      if (lane->locking) continue;  // goes with the next call
      lane->locking = true;
      ++pending_;
      out = NextLocked(lane, lane->locks, /*locks=*/true);
    }
    SendLocks(lane, std::move(out));
  }
  latch.Wait();
  return results;
}

void GrpcStorageCaller::LocksDone(Lane* lane) {
  Outgoing<LockItem> out;
  {
    absl::MutexLock l(&mu_);
    if (lane->locks.empty()) {
      lane->locking = false;
      --pending_;
      return;
    }
    out = NextLocked(lane, lane->locks, /*locks=*/true);
  }
  SendLocks(lane, std::move(out));
}

void GrpcStorageCaller::SendLocks(Lane* lane, Outgoing<LockItem> out) {
  if (out.items.size() == 1 || out.no_batch) {
    SendLocksAlone(lane, std::move(out));
    return;
  }
  auto* call = NewBatchCall<cellar::v1::LockTransactionsRequest,
                            cellar::v1::LockTransactionsResponse>(std::move(out.items));
  out.stub->async()->LockTransactions(
      &call->context, &call->request, &call->response,
      [this, lane, call](grpc::Status s) {
        if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
          // An older storage: it did nothing; the same locks, one by one.
          SendLocksAlone(lane, NoBatch<LockItem>(lane, call));
          return;
        }
        const bool complete =
            s.ok() && call->response.results_size() == static_cast<int>(call->items.size());
        for (size_t i = 0; i < call->items.size(); ++i) {
          LockItem& item = call->items[i];
          absl::Status status;
          if (!s.ok()) {
            status = common::FromGrpcStatus(s);
          } else if (!complete) {
            // Nothing tells which of them it locked: as a lost answer.
            status = absl::InternalError(absl::StrCat(
                "LockTransactions answered ", call->response.results_size(),
                " results for ", call->items.size(), " locks"));
          } else {
            status = FromItemStatus(call->response.results(static_cast<int>(i)).status());
          }
          if (status.ok()) {
            const cellar::v1::LockTransactionResponse& r =
                call->response.results(static_cast<int>(i)).response();
            LockedOids answer;
            answer.known = r.stored_oids_known();
            answer.oids.assign(r.stored_oids().begin(), r.stored_oids().end());
            *item.result = std::move(answer);
          } else {
            *item.result =
                common::Annotate(status, absl::StrCat("lock on S", item.node_id));
          }
          item.latch->CountDown();  // item.result and item.latch are gone now
        }
        delete call;
        LocksDone(lane);
      });
}

void GrpcStorageCaller::SendLocksAlone(Lane* lane, Outgoing<LockItem> out) {
  struct SingleCall {
    grpc::ClientContext context;
    cellar::v1::LockTransactionResponse response;
    LockItem item;
    Lane* lane = nullptr;
    // The calls of the group left (null: a group of one).
    std::atomic<size_t>* left = nullptr;
  };
  std::atomic<size_t>* left =
      out.items.size() > 1 ? new std::atomic<size_t>(out.items.size()) : nullptr;
  for (LockItem& item : out.items) {
    auto* call = new SingleCall();
    call->context.set_deadline(absl::ToChronoTime(item.deadline));
    call->item = std::move(item);
    call->lane = lane;
    call->left = left;
    out.stub->async()->LockTransaction(
        &call->context, &call->item.request, &call->response, [this, call](grpc::Status s) {
          if (s.ok()) {
            LockedOids answer;
            answer.known = call->response.stored_oids_known();
            answer.oids.assign(call->response.stored_oids().begin(),
                               call->response.stored_oids().end());
            *call->item.result = std::move(answer);
          } else {
            *call->item.result = common::Annotate(
                common::FromGrpcStatus(s), absl::StrCat("lock on S", call->item.node_id));
          }
          call->item.latch->CountDown();
          Lane* lane = call->lane;
          std::atomic<size_t>* left = call->left;
          delete call;
          if (left == nullptr || left->fetch_sub(1) == 1) {
            delete left;
            LocksDone(lane);
          }
        });
  }
}

void GrpcStorageCaller::UnlockAsync(const std::vector<StorageTarget>& targets,
                                    uint64_t epoch, uint64_t ttid, uint64_t tid,
                                    bool forget_lock, const RecordOids* record) {
  const absl::Time deadline = absl::Now() + timeout_;
  for (const StorageTarget& target : targets) {
    UnlockItem item;
    item.request.set_epoch(epoch);
    item.request.set_ttid(ttid);
    item.request.set_tid(tid);
    item.request.set_forget_lock(forget_lock);
    if (record != nullptr &&
        std::find(record->holders.begin(), record->holders.end(), target.node_id) !=
            record->holders.end()) {
      item.request.mutable_record_oids()->mutable_oids()->Add(record->oids.begin(),
                                                              record->oids.end());
    }
    item.node_id = target.node_id;
    item.deadline = deadline;
    Lane* lane;
    Outgoing<UnlockItem> out;
    {
      absl::MutexLock l(&mu_);
      lane = LaneFor(target.address);
      lane->unlocks.push_back(std::move(item));
      if (lane->unlocking) continue;  // goes with the next call
      lane->unlocking = true;
      ++pending_;
      out = NextLocked(lane, lane->unlocks, /*locks=*/false);
    }
    SendUnlocks(lane, std::move(out));
  }
}

namespace {

void LogUnlockFailure(uint64_t ttid, uint32_t node_id, absl::string_view error) {
  static common::LogRateLimit limit(absl::Seconds(10));
  uint64_t dropped = 0;
  if (limit.Allow(absl::Now(), &dropped)) {
    CELLAR_LOG(WARNING) << "unlock of ttid " << common::TidHex(ttid) << " on S" << node_id
                        << " failed: " << error << common::Dropped(dropped);
  }
}

}  // namespace

void GrpcStorageCaller::UnlocksDone(Lane* lane) {
  Outgoing<UnlockItem> out;
  {
    absl::MutexLock l(&mu_);
    if (lane->unlocks.empty()) {
      lane->unlocking = false;
      --pending_;
      return;
    }
    out = NextLocked(lane, lane->unlocks, /*locks=*/false);
  }
  SendUnlocks(lane, std::move(out));
}

void GrpcStorageCaller::SendUnlocks(Lane* lane, Outgoing<UnlockItem> out) {
  if (out.items.size() == 1 || out.no_batch) {
    SendUnlocksAlone(lane, std::move(out));
    return;
  }
  auto* call = NewBatchCall<cellar::v1::UnlockTransactionsRequest,
                            cellar::v1::UnlockTransactionsResponse>(std::move(out.items));
  out.stub->async()->UnlockTransactions(
      &call->context, &call->request, &call->response,
      [this, lane, call](grpc::Status s) {
        if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
          SendUnlocksAlone(lane, NoBatch<UnlockItem>(lane, call));
          return;
        }
        for (int i = 0; i < call->request.items_size(); ++i) {
          const uint64_t ttid = call->request.items(i).ttid();
          const uint32_t node_id = call->items[i].node_id;
          if (!s.ok()) {
            LogUnlockFailure(ttid, node_id, s.error_message());
          } else if (i < call->response.results_size() &&
                     call->response.results(i).code() != 0) {
            LogUnlockFailure(ttid, node_id, call->response.results(i).message());
          }
        }
        delete call;
        UnlocksDone(lane);
      });
}

void GrpcStorageCaller::SendUnlocksAlone(Lane* lane, Outgoing<UnlockItem> out) {
  struct SingleCall {
    grpc::ClientContext context;
    cellar::v1::UnlockTransactionResponse response;
    UnlockItem item;
    Lane* lane = nullptr;
    std::atomic<size_t>* left = nullptr;  // as in SendLocksAlone
  };
  std::atomic<size_t>* left =
      out.items.size() > 1 ? new std::atomic<size_t>(out.items.size()) : nullptr;
  for (UnlockItem& item : out.items) {
    auto* call = new SingleCall();
    call->context.set_deadline(absl::ToChronoTime(item.deadline));
    call->item = std::move(item);
    call->lane = lane;
    call->left = left;
    out.stub->async()->UnlockTransaction(
        &call->context, &call->item.request, &call->response, [this, call](grpc::Status s) {
          if (!s.ok()) {
            LogUnlockFailure(call->item.request.ttid(), call->item.node_id, s.error_message());
          }
          Lane* lane = call->lane;
          std::atomic<size_t>* left = call->left;
          delete call;
          if (left == nullptr || left->fetch_sub(1) == 1) {
            delete left;
            UnlocksDone(lane);
          }
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
