#ifndef CELLAR_SERVICES_MASTER_GRPC_STORAGE_CALLER_H_
#define CELLAR_SERVICES_MASTER_GRPC_STORAGE_CALLER_H_

// StorageCaller over gRPC: one channel per storage address (cached), calls
// fanned out with the callback API, every call with a deadline.
//
// Locks and unlocks are batched naturally, per storage address: while a
// lock call to a storage is in flight, further locks for it queue, and
// when it completes the queue goes out as ONE Storage.LockTransactions
// call (at most 1000 locks and 16 MiB, distinct ttids; the rest waits for
// the next call); a lone lock goes out at once as LockTransaction. Unlocks
// likewise (UnlockTransactions, in the order they were asked). No delay is
// added: at low load every call carries one item. Each lock keeps its own
// answer and its own deadline (a batch's deadline is its items' earliest).
// A storage that answers UNIMPLEMENTED (an older version) gets single
// calls until it registers again (Reconnect).
//
// Thread-safe.

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/master/storage_caller.h"
#include "services/common/channel.h"

namespace cellar::master {

class GrpcStorageCaller final : public StorageCaller {
 public:
  // `timeout`: deadline of each call (default 10 s).
  // `node_channel`: the node bearer (NodeBearer of the cluster secret;
  // empty = none) sent on every call, and the transport (TLS or
  // plaintext). Default: plaintext, no bearer.
  explicit GrpcStorageCaller(absl::Duration timeout = absl::Seconds(10),
                             common::ChannelSecurity node_channel = {});
  ~GrpcStorageCaller() override;

  void Reconnect(const std::string& address) override;

  std::vector<absl::StatusOr<LockedOids>> LockAll(
      const std::vector<StorageTarget>& targets, uint64_t epoch, uint64_t ttid, uint64_t tid,
      uint64_t min_ptid, const std::vector<uint32_t>& partitions) override;
  void UnlockAsync(const std::vector<StorageTarget>& targets, uint64_t epoch,
                   uint64_t ttid, uint64_t tid, bool forget_lock,
                   const RecordOids* record = nullptr) override;
  std::vector<absl::Status> AbortAll(const std::vector<StorageTarget>& targets,
                                     uint64_t epoch, uint64_t ttid) override;
  void AbortAsync(const std::vector<StorageTarget>& targets, uint64_t epoch,
                  uint64_t ttid) override;
  std::vector<absl::StatusOr<StorageOutcome>> OutcomeAll(
      const std::vector<StorageTarget>& targets, uint64_t ttid) override;
  std::vector<absl::Status> SaveMasterStateAll(const std::vector<StorageTarget>& targets,
                                               uint64_t epoch,
                                               uint64_t oid_high_water) override;
  std::vector<absl::Status> SaveTokenTableAll(const std::vector<StorageTarget>& targets,
                                              uint64_t epoch,
                                              const cellar::v1::ClusterTokenTable& table) override;
  std::vector<absl::Status> SaveFeatureFlagsAll(const std::vector<StorageTarget>& targets,
                                                uint64_t epoch,
                                                const cellar::v1::FeatureFlagTable& table) override;
  absl::StatusOr<cellar::v1::StoragePackProgress> Pack(const StorageTarget& target,
                                                       uint64_t epoch,
                                                       uint64_t pack_tid) override;
  absl::Status Shutdown(const StorageTarget& target, const std::string& reason) override;
  absl::Status Probe(const StorageTarget& target, absl::Duration timeout) override;
  absl::StatusOr<CellCheck> CheckCell(const StorageTarget& target, uint64_t epoch,
                                      const CellCheckRange& range) override;
  absl::StatusOr<uint64_t> TruncateData(const StorageTarget& target, uint64_t epoch,
                                        uint64_t tid) override;

  // How locks and unlocks went out (metrics): calls sent (single or
  // batch) and the items they carried.
  struct BatchStats {
    uint64_t lock_calls = 0;
    uint64_t locks = 0;
    // Lock calls that carried more than one lock (LockTransactions).
    uint64_t lock_batches = 0;
    uint64_t unlock_calls = 0;
    uint64_t unlocks = 0;
  };
  BatchStats batch_stats() const;
  // Locks and unlocks for `address` waiting for the call in flight to
  // complete (tests, diagnostics).
  size_t queued(const std::string& address) const;

 private:
  struct LockItem;
  struct UnlockItem;
  struct Lane;
  template <typename Item>
  struct Outgoing;
  // The next call's items from the front of `queue` (class comment).
  template <typename Item>
  static std::vector<Item> TakeBatch(std::deque<Item>& queue);
  // The lane of `address` (created on first use; never removed).
  Lane* LaneFor(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lane's next call from `queue` (counted in batch_stats_).
  template <typename Item>
  Outgoing<Item> NextLocked(Lane* lane, std::deque<Item>& queue, bool locks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends `out` (one batch rpc, or single rpcs for one item or a storage
  // without the batch rpcs); the lane's next call follows when they
  // complete (LocksDone / UnlocksDone).
  void SendLocks(Lane* lane, Outgoing<LockItem> out);
  void SendLocksAlone(Lane* lane, Outgoing<LockItem> out);
  void LocksDone(Lane* lane);
  void SendUnlocks(Lane* lane, Outgoing<UnlockItem> out);
  void SendUnlocksAlone(Lane* lane, Outgoing<UnlockItem> out);
  void UnlocksDone(Lane* lane);
  // A batch `call` answered UNIMPLEMENTED: the lane gets single rpcs from
  // now on; deletes the call and gives its items back, to send alone.
  template <typename Item, typename Call>
  Outgoing<Item> NoBatch(Lane* lane, Call* call);

  // Starts `request` on every target in parallel (`start(async stub, call,
  // done)`) and waits for every answer; errors annotated with `what`.
  template <typename Request, typename Response, typename Start>
  std::vector<absl::Status> CallAll(const std::vector<StorageTarget>& targets,
                                    const Request& request, absl::string_view what,
                                    Start start);
  // Shared: Reconnect may drop the map's reference while a call uses it.
  std::shared_ptr<cellar::v1::Storage::Stub> StubFor(const std::string& address);
  std::shared_ptr<cellar::v1::Storage::Stub> StubLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration timeout_;
  const common::ChannelSecurity node_channel_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<cellar::v1::Storage::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  // Storage address -> its queued locks and unlocks. (A lane's fields are
  // guarded by mu_ too.)
  absl::flat_hash_map<std::string, std::unique_ptr<Lane>> lanes_ ABSL_GUARDED_BY(mu_);
  BatchStats batch_stats_ ABSL_GUARDED_BY(mu_);
  // Unlocks and aborts in flight, and busy lanes; the destructor waits for
  // them.
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_GRPC_STORAGE_CALLER_H_
