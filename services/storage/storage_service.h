#ifndef CELLAR_SERVICES_STORAGE_STORAGE_SERVICE_H_
#define CELLAR_SERVICES_STORAGE_STORAGE_SERVICE_H_

// The cellar.v1.Storage gRPC adapter: validates every request field
// (INVALID_ARGUMENT naming the field), calls the StorageNode, maps the
// absl::Status with common::ToGrpcStatus. No domain logic here.
//
// Uses the synchronous gRPC API on purpose: a Store may wait for an OID
// lock and a Vote/Lock waits for the group commit, and blocking the handler
// thread is the simplest correct way to do both (gRPC's sync server grows
// its thread pool as needed; waits are bounded by deadlines).
//
// Thread-safe.

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/authenticator.h"
#include "services/common/partition_table.h"
#include "services/storage/storage_node.h"

namespace cellar::storage {

struct StorageServiceOptions {
  // Longest a Store waits for an OID lock (the client's deadline may cut it
  // shorter). Default 10 s.
  absl::Duration lock_wait_timeout = absl::Seconds(10);
  // Storage.Shutdown (operator stop): called with the reason after the
  // request is validated; it must only start the stop (the rpc answers
  // after it returns, then the node stops). Its error is the rpc's
  // answer. Default: none (Shutdown answers FAILED_PRECONDITION).
  std::function<absl::Status(const std::string& reason)> on_shutdown;
  // The server's authenticator (null = auth off): an AbortTransaction with
  // a master epoch needs the node role. Default null.
  std::shared_ptr<const common::Authenticator> authenticator;
};

// Request limits (see storage.proto).
inline constexpr int kMaxObjectsPerStore = 10000;
inline constexpr int kMaxLoadManyOids = 1000;
inline constexpr int kMaxLockPartitions = static_cast<int>(common::kMaxPartitions);
// Most oids an UnlockTransaction's record_oids may carry (as many as a
// Finish may name, services/master).
inline constexpr int kMaxRecordOids = 1000000;
// Bounds of one LockTransactions / UnlockTransactions call.
inline constexpr int kMaxBatchItems = 1000;
inline constexpr size_t kMaxBatchBytes = 16 << 20;
inline constexpr uint64_t kLoadManyBudgetBytes = 8 << 20;
inline constexpr uint32_t kMaxHistoryLimit = 1000;
inline constexpr uint32_t kDefaultHistoryLimit = 100;
inline constexpr uint32_t kMaxLastTransactionsLimit = 1000;
inline constexpr uint32_t kDefaultLastTransactionsLimit = 10;
inline constexpr uint32_t kMaxScanTransactionsLimit = 1000;
inline constexpr uint32_t kDefaultScanTransactionsLimit = 100;
inline constexpr uint32_t kMaxReplicateRecords = 10000;
inline constexpr uint32_t kDefaultReplicateRecords = 1000;
inline constexpr uint64_t kMaxReplicateBytes = 32 << 20;
inline constexpr uint64_t kDefaultReplicateBytes = 4 << 20;

class StorageService final : public ::cellar::v1::Storage::Service {
 public:
  // `node` is not owned and must outlive the service.
  StorageService(StorageNode* node, StorageServiceOptions options);

  grpc::Status Store(grpc::ServerContext* context,
                     const ::cellar::v1::StoreRequest* request,
                     ::cellar::v1::StoreResponse* response) override;
  grpc::Status Vote(grpc::ServerContext* context,
                    const ::cellar::v1::VoteRequest* request,
                    ::cellar::v1::VoteResponse* response) override;
  grpc::Status AbortTransaction(grpc::ServerContext* context,
                                const ::cellar::v1::AbortTransactionRequest* request,
                                ::cellar::v1::AbortTransactionResponse* response) override;
  grpc::Status LockTransaction(grpc::ServerContext* context,
                               const ::cellar::v1::LockTransactionRequest* request,
                               ::cellar::v1::LockTransactionResponse* response) override;
  grpc::Status UnlockTransaction(grpc::ServerContext* context,
                                 const ::cellar::v1::UnlockTransactionRequest* request,
                                 ::cellar::v1::UnlockTransactionResponse* response) override;
  grpc::Status LockTransactions(grpc::ServerContext* context,
                                const ::cellar::v1::LockTransactionsRequest* request,
                                ::cellar::v1::LockTransactionsResponse* response) override;
  grpc::Status UnlockTransactions(grpc::ServerContext* context,
                                  const ::cellar::v1::UnlockTransactionsRequest* request,
                                  ::cellar::v1::UnlockTransactionsResponse* response) override;
  grpc::Status Load(grpc::ServerContext* context,
                    const ::cellar::v1::LoadRequest* request,
                    ::cellar::v1::LoadResponse* response) override;
  grpc::Status LoadMany(grpc::ServerContext* context,
                        const ::cellar::v1::LoadManyRequest* request,
                        ::cellar::v1::LoadManyResponse* response) override;
  grpc::Status History(grpc::ServerContext* context,
                       const ::cellar::v1::HistoryRequest* request,
                       ::cellar::v1::HistoryResponse* response) override;
  grpc::Status LastTransactions(grpc::ServerContext* context,
                                const ::cellar::v1::LastTransactionsRequest* request,
                                ::cellar::v1::LastTransactionsResponse* response) override;
  grpc::Status ScanTransactions(grpc::ServerContext* context,
                                const ::cellar::v1::ScanTransactionsRequest* request,
                                ::cellar::v1::ScanTransactionsResponse* response) override;
  grpc::Status GetTransaction(grpc::ServerContext* context,
                              const ::cellar::v1::GetTransactionRequest* request,
                              ::cellar::v1::GetTransactionResponse* response) override;
  grpc::Status GetPartitionStats(grpc::ServerContext* context,
                                 const ::cellar::v1::GetPartitionStatsRequest* request,
                                 ::cellar::v1::GetPartitionStatsResponse* response) override;
  grpc::Status GetNodeStatus(grpc::ServerContext* context,
                             const ::cellar::v1::GetNodeStatusRequest* request,
                             ::cellar::v1::GetNodeStatusResponse* response) override;
  grpc::Status Replicate(grpc::ServerContext* context,
                         const ::cellar::v1::ReplicateRequest* request,
                         grpc::ServerWriter<::cellar::v1::ReplicateChunk>* writer) override;
  grpc::Status GetTransactionOutcome(
      grpc::ServerContext* context, const ::cellar::v1::GetTransactionOutcomeRequest* request,
      ::cellar::v1::GetTransactionOutcomeResponse* response) override;
  // Operator actions (master only): replica check and truncate.
  grpc::Status CheckCell(grpc::ServerContext* context,
                         const ::cellar::v1::CheckCellRequest* request,
                         ::cellar::v1::CheckCellResponse* response) override;
  grpc::Status Pack(grpc::ServerContext* context, const ::cellar::v1::StoragePackRequest* request,
                    ::cellar::v1::StoragePackResponse* response) override;
  grpc::Status TruncateData(grpc::ServerContext* context,
                            const ::cellar::v1::TruncateDataRequest* request,
                            ::cellar::v1::TruncateDataResponse* response) override;

  // Operator stop (see StorageServiceOptions::on_shutdown).
  grpc::Status SaveMasterState(grpc::ServerContext* context,
                               const ::cellar::v1::SaveMasterStateRequest* request,
                               ::cellar::v1::SaveMasterStateResponse* response) override;
  grpc::Status SaveTokenTable(grpc::ServerContext* context,
                              const ::cellar::v1::SaveTokenTableRequest* request,
                              ::cellar::v1::SaveTokenTableResponse* response) override;
  grpc::Status SaveFeatureFlags(grpc::ServerContext* context,
                                const ::cellar::v1::SaveFeatureFlagsRequest* request,
                                ::cellar::v1::SaveFeatureFlagsResponse* response) override;
  grpc::Status Shutdown(grpc::ServerContext* context,
                        const ::cellar::v1::ShutdownRequest* request,
                        ::cellar::v1::ShutdownResponse* response) override;

 private:
  StorageNode* const node_;
  const StorageServiceOptions options_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_STORAGE_SERVICE_H_
