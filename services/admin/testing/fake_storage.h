#ifndef CELLAR_SERVICES_ADMIN_TESTING_FAKE_STORAGE_H_
#define CELLAR_SERVICES_ADMIN_TESTING_FAKE_STORAGE_H_

// A canned cellar.v1.Storage for admin tests (testonly): LastTransactions,
// History and GetPartitionStats answer what the test set. Serves on 127.0.0.1:0.
//
// Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/grpc_server.h"

namespace cellar::admin::testing {

class FakeStorage final : public ::cellar::v1::Storage::Service {
 public:
  static absl::StatusOr<std::unique_ptr<FakeStorage>> Start();
  ~FakeStorage() override;

  std::string address() const;

  // LastTransactions answers these (newest first), cut to the limit.
  void SetTransactions(const ::cellar::v1::LastTransactionsResponse& transactions);
  // History answers `history`, or fails with `status` if not OK.
  void SetHistory(const ::cellar::v1::HistoryResponse& history, const absl::Status& status);
  // GetPartitionStats answers `stats` (default: no cells), or fails with
  // `status` if not OK.
  void SetPartitionStats(const ::cellar::v1::GetPartitionStatsResponse& stats,
                         const absl::Status& status);

  void Shutdown();

  // Storage.Shutdown fails with `status` if not OK (else answers OK);
  // shutdown_reasons() lists the reasons of the calls so far,
  // shutdown_node_ids() the node ids they named.
  void SetShutdownResult(const absl::Status& status);
  std::vector<std::string> shutdown_reasons() const;
  std::vector<uint32_t> shutdown_node_ids() const;
  grpc::Status Shutdown(grpc::ServerContext* context, const ::cellar::v1::ShutdownRequest* request,
                        ::cellar::v1::ShutdownResponse* response) override;

  grpc::Status LastTransactions(grpc::ServerContext* context,
                                const ::cellar::v1::LastTransactionsRequest* request,
                                ::cellar::v1::LastTransactionsResponse* response) override;
  grpc::Status History(grpc::ServerContext* context, const ::cellar::v1::HistoryRequest* request,
                       ::cellar::v1::HistoryResponse* response) override;
  grpc::Status GetPartitionStats(grpc::ServerContext* context,
                                 const ::cellar::v1::GetPartitionStatsRequest* request,
                                 ::cellar::v1::GetPartitionStatsResponse* response) override;

 private:
  FakeStorage() = default;
  std::unique_ptr<common::GrpcServer> server_;
  mutable absl::Mutex mu_;
  ::cellar::v1::LastTransactionsResponse transactions_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::HistoryResponse history_ ABSL_GUARDED_BY(mu_);
  absl::Status history_error_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::GetPartitionStatsResponse stats_ ABSL_GUARDED_BY(mu_);
  absl::Status stats_error_ ABSL_GUARDED_BY(mu_);
  absl::Status shutdown_error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> shutdown_reasons_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> shutdown_node_ids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::admin::testing

#endif  // CELLAR_SERVICES_ADMIN_TESTING_FAKE_STORAGE_H_
