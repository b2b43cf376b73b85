#ifndef CELLAR_SERVICES_MASTER_GRPC_STORAGE_CALLER_H_
#define CELLAR_SERVICES_MASTER_GRPC_STORAGE_CALLER_H_

// StorageCaller over gRPC: one channel per storage address (cached), calls
// fanned out with the callback API, every call with a deadline.
// Thread-safe.

#include <memory>
#include <string>

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

 private:
  // Starts `request` on every target in parallel (`start(async stub, call,
  // done)`) and waits for every answer; errors annotated with `what`.
  template <typename Request, typename Response, typename Start>
  std::vector<absl::Status> CallAll(const std::vector<StorageTarget>& targets,
                                    const Request& request, absl::string_view what,
                                    Start start);
  // Shared: Reconnect may drop the map's reference while a call uses it.
  std::shared_ptr<cellar::v1::Storage::Stub> StubFor(const std::string& address);

  const absl::Duration timeout_;
  const common::ChannelSecurity node_channel_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<cellar::v1::Storage::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  // Unlocks and aborts in flight; the destructor waits for them.
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_GRPC_STORAGE_CALLER_H_
