#ifndef CELLAR_SERVICES_STORAGE_TESTING_FAKE_MASTER_H_
#define CELLAR_SERVICES_STORAGE_TESTING_FAKE_MASTER_H_

// A tiny cellar.v1.Master for storage-node tests (testonly): RegisterNode
// (checks the cluster name and protocol, assigns storage ids S1, S2, ...),
// Watch (a snapshot, then whatever the test pushes), GetClusterInfo and
// Heartbeat (counted).
// The test sets the partition table, cluster state and epoch it answers
// with, pushes events, and can end every open Watch stream (a master
// restart, as the storage sees it).
//
// Thread-safe.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/grpc_server.h"

namespace cellar::storage::testing {

class FakeMaster final : public ::cellar::v1::Master::Service {
 public:
  // Starts serving on 127.0.0.1:0.
  static absl::StatusOr<std::unique_ptr<FakeMaster>> Start(
      std::string cluster_name = "cellar");
  ~FakeMaster() override;

  std::string address() const;

  // What RegisterNode, the snapshot and GetClusterInfo answer with.
  void SetPartitionTable(const ::cellar::v1::PartitionTable& pt);
  void SetClusterState(::cellar::v1::ClusterState state);
  void SetEpoch(uint64_t epoch);
  // The ttid key given to storages at registration (a master term's key,
  // common/ttid_token.h). Default: a fixed test key, ttid_key().
  void SetTtidKey(std::string key);
  std::string ttid_key() const;

  // Sends `event` on every open Watch stream.
  void Push(const ::cellar::v1::ClusterEvent& event);
  // Ends every open Watch stream (OK status).
  void EndWatches();

  // Number of RegisterNode calls accepted / refused, and the last request.
  int registrations() const;
  int refusals() const;
  // Heartbeat calls received.
  int heartbeats() const;
  ::cellar::v1::RegisterNodeRequest last_registration() const;
  // Open Watch streams.
  int watchers() const;
  // Blocks until `pred` holds on this master's counters or `timeout`.
  bool WaitForRegistrations(int n, absl::Duration timeout) const;
  bool WaitForWatchers(int n, absl::Duration timeout) const;

  void Shutdown();

  grpc::Status RegisterNode(grpc::ServerContext* context,
                            const ::cellar::v1::RegisterNodeRequest* request,
                            ::cellar::v1::RegisterNodeResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const ::cellar::v1::WatchRequest* request,
                     grpc::ServerWriter<::cellar::v1::ClusterEvent>* writer) override;
  grpc::Status GetClusterInfo(grpc::ServerContext* context,
                              const ::cellar::v1::GetClusterInfoRequest* request,
                              ::cellar::v1::GetClusterInfoResponse* response) override;
  // Counts the call (OK for any node id but 0).
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const ::cellar::v1::HeartbeatRequest* request,
                         ::cellar::v1::HeartbeatResponse* response) override;

 private:
  struct Watcher {
    std::deque<::cellar::v1::ClusterEvent> events;
    bool end = false;
  };

  explicit FakeMaster(std::string cluster_name) : cluster_name_(std::move(cluster_name)) {}

  const std::string cluster_name_;
  std::unique_ptr<common::GrpcServer> server_;
  mutable absl::Mutex mu_;
  ::cellar::v1::PartitionTable pt_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ClusterState state_ ABSL_GUARDED_BY(mu_) = ::cellar::v1::CLUSTER_RUNNING;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  std::string ttid_key_ ABSL_GUARDED_BY(mu_) =
      "storage fake master ttid key 32B";
  uint32_t next_index_ ABSL_GUARDED_BY(mu_) = 1;
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;
  int refusals_ ABSL_GUARDED_BY(mu_) = 0;
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  ::cellar::v1::RegisterNodeRequest last_registration_ ABSL_GUARDED_BY(mu_);
  std::vector<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellar::storage::testing

#endif  // CELLAR_SERVICES_STORAGE_TESTING_FAKE_MASTER_H_
