#include "services/admin/testing/fake_storage.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"

namespace cellar::admin::testing {

absl::StatusOr<std::unique_ptr<FakeStorage>> FakeStorage::Start() {
  auto storage = std::unique_ptr<FakeStorage>(new FakeStorage);
  common::GrpcServerOptions options;
  options.services = {storage.get()};
  auto server = common::GrpcServer::Start(std::move(options));
  if (!server.ok()) return server.status();
  storage->server_ = *std::move(server);
  return storage;
}

FakeStorage::~FakeStorage() { Shutdown(); }

std::string FakeStorage::address() const {
  return absl::StrCat("127.0.0.1:", server_->port());
}

void FakeStorage::SetTransactions(const ::cellar::v1::LastTransactionsResponse& transactions) {
  absl::MutexLock l(&mu_);
  transactions_ = transactions;
}

void FakeStorage::SetHistory(const ::cellar::v1::HistoryResponse& history,
                             const absl::Status& status) {
  absl::MutexLock l(&mu_);
  history_ = history;
  history_error_ = status;
}

void FakeStorage::SetPartitionStats(const ::cellar::v1::GetPartitionStatsResponse& stats,
                                    const absl::Status& status) {
  absl::MutexLock l(&mu_);
  stats_ = stats;
  stats_error_ = status;
}

void FakeStorage::Shutdown() {
  if (server_) server_->Shutdown(absl::Milliseconds(100));
}

grpc::Status FakeStorage::LastTransactions(grpc::ServerContext*,
                                           const ::cellar::v1::LastTransactionsRequest* request,
                                           ::cellar::v1::LastTransactionsResponse* response) {
  absl::MutexLock l(&mu_);
  *response = transactions_;
  const int limit = request->limit() == 0 ? 10 : static_cast<int>(request->limit());
  while (response->transactions_size() > limit) response->mutable_transactions()->RemoveLast();
  return grpc::Status::OK;
}

grpc::Status FakeStorage::History(grpc::ServerContext*, const ::cellar::v1::HistoryRequest*,
                                  ::cellar::v1::HistoryResponse* response) {
  absl::MutexLock l(&mu_);
  if (!history_error_.ok()) return common::ToGrpcStatus(history_error_);
  *response = history_;
  return grpc::Status::OK;
}

grpc::Status FakeStorage::GetPartitionStats(grpc::ServerContext*,
                                            const ::cellar::v1::GetPartitionStatsRequest*,
                                            ::cellar::v1::GetPartitionStatsResponse* response) {
  absl::MutexLock l(&mu_);
  if (!stats_error_.ok()) return common::ToGrpcStatus(stats_error_);
  *response = stats_;
  return grpc::Status::OK;
}

void FakeStorage::SetShutdownResult(const absl::Status& status) {
  absl::MutexLock l(&mu_);
  shutdown_error_ = status;
}

std::vector<std::string> FakeStorage::shutdown_reasons() const {
  absl::MutexLock l(&mu_);
  return shutdown_reasons_;
}

std::vector<uint32_t> FakeStorage::shutdown_node_ids() const {
  absl::MutexLock l(&mu_);
  return shutdown_node_ids_;
}

grpc::Status FakeStorage::Shutdown(grpc::ServerContext*,
                                   const ::cellar::v1::ShutdownRequest* request,
                                   ::cellar::v1::ShutdownResponse*) {
  absl::MutexLock l(&mu_);
  shutdown_reasons_.push_back(request->reason());
  shutdown_node_ids_.push_back(request->node_id());
  return common::ToGrpcStatus(shutdown_error_);
}

}  // namespace cellar::admin::testing
