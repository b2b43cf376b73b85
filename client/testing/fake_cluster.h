#ifndef CELLAR_CLIENT_TESTING_FAKE_CLUSTER_H_
#define CELLAR_CLIENT_TESTING_FAKE_CLUSTER_H_

// In-process fakes of the primary master and storage nodes, serving the
// real cellar.v1 gRPC API on 127.0.0.1 port 0, for client and cellarctl
// tests (testonly). They keep data in memory and implement just enough of
// the protocol: registration, the Watch stream (snapshot, deltas, node and
// state events, invalidations pushed before Finish answers), OID/TID
// allocation, Begin/Finish/Abort, Store with checksum and conflict checks
// (vote included), MVCC Load, History, LastTransactions, GetClusterInfo.
// Begin hands out ttid tokens (common/ttid_token.h) with the master's key,
// which its storages hold: Store and Vote without the right token are
// PERMISSION_DENIED (BAD_TTID_TOKEN), as on a real storage.
// No locking between transactions, no durability, no replication.
//
// Fault injection: per-storage errors for all calls / Store / Load,
// corrupted load checksums, a barrier that proves Store calls run in
// parallel; master-side refused registrations, lost Finish answers,
// suppressed invalidations, ending every Watch stream, cell/node/cluster
// state changes pushed as events.
//
// Thread-safe.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/partition_table.h"

namespace cellar::client::testing {

// Makes Store calls wait until `expected` of them are in progress at once
// (DEADLINE_EXCEEDED after `timeout`): a commit passes only if it sends
// its Store calls in parallel.
class StoreBarrier {
 public:
  StoreBarrier(int expected, absl::Duration timeout)
      : expected_(expected), timeout_(timeout) {}
  // True if `expected` calls arrived in time.
  bool Arrive();

 private:
  const int expected_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
};

// A storage node holding committed revisions and pending transactions.
class FakeStorage final : public ::cellar::v1::Storage::Service {
 public:
  explicit FakeStorage(uint32_t node_id) : node_id_(node_id) {}
  ~FakeStorage() override;

  // Serves on 127.0.0.1:0.
  absl::Status Start();
  void Shutdown();
  uint32_t node_id() const { return node_id_; }
  int port() const { return port_; }
  std::string address() const;

  // Called by the fake master (in-process, not over gRPC).
  void SetTtidKey(std::string key);
  void CommitTransaction(uint64_t ttid, uint64_t tid);
  // A transaction record as LastTransactions lists it, with no objects
  // (e.g. one locked here but not yet published by the master).
  void AddTransactionRecord(uint64_t tid, const std::string& user);
  void AbortTransactionLocal(uint64_t ttid);
  bool HasVote(uint64_t ttid) const;

  // Every RPC fails with `status` (OK clears).
  void SetAllCallsError(absl::Status status);
  // GetPartitionStats answers `stats` (until set: UNIMPLEMENTED).
  void SetPartitionStats(::cellar::v1::GetPartitionStatsResponse stats);
  // Store fails with `status` (OK clears).
  void SetStoreError(absl::Status status);
  // Load fails with `status` (OK clears).
  void SetLoadError(absl::Status status);
  // Loads answer a wrong checksum.
  void SetCorruptLoads(bool corrupt);
  void SetStoreBarrier(std::shared_ptr<StoreBarrier> barrier);

  int load_calls() const;
  int store_calls() const;
  // Every Store request received, in order.
  std::vector<::cellar::v1::StoreRequest> store_requests() const;
  // Committed revisions of `oid` (serial -> data).
  std::map<uint64_t, std::string> Revisions(uint64_t oid) const;

  grpc::Status Store(grpc::ServerContext* context,
                     const ::cellar::v1::StoreRequest* request,
                     ::cellar::v1::StoreResponse* response) override;
  grpc::Status Vote(grpc::ServerContext* context,
                    const ::cellar::v1::VoteRequest* request,
                    ::cellar::v1::VoteResponse* response) override;
  grpc::Status AbortTransaction(
      grpc::ServerContext* context,
      const ::cellar::v1::AbortTransactionRequest* request,
      ::cellar::v1::AbortTransactionResponse* response) override;
  grpc::Status Load(grpc::ServerContext* context,
                    const ::cellar::v1::LoadRequest* request,
                    ::cellar::v1::LoadResponse* response) override;
  grpc::Status History(grpc::ServerContext* context,
                       const ::cellar::v1::HistoryRequest* request,
                       ::cellar::v1::HistoryResponse* response) override;
  grpc::Status LastTransactions(
      grpc::ServerContext* context,
      const ::cellar::v1::LastTransactionsRequest* request,
      ::cellar::v1::LastTransactionsResponse* response) override;
  grpc::Status GetPartitionStats(grpc::ServerContext* context,
                                 const ::cellar::v1::GetPartitionStatsRequest* request,
                                 ::cellar::v1::GetPartitionStatsResponse* response) override;

 private:
  struct Revision {
    std::string data;
    std::string checksum;
  };
  struct Pending {
    std::vector<::cellar::v1::ObjectToStore> objects;
    bool voted = false;
    bool has_metadata = false;
    ::cellar::v1::TransactionMetadata metadata;
  };

  const uint32_t node_id_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, std::map<uint64_t, Revision>> objects_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  // tid -> record, for LastTransactions.
  std::map<uint64_t, ::cellar::v1::TransactionInfo> transactions_
      ABSL_GUARDED_BY(mu_);
  absl::Status all_calls_error_ ABSL_GUARDED_BY(mu_);
  absl::Status store_error_ ABSL_GUARDED_BY(mu_);
  absl::Status load_error_ ABSL_GUARDED_BY(mu_);
  bool corrupt_loads_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<::cellar::v1::GetPartitionStatsResponse> partition_stats_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<StoreBarrier> barrier_ ABSL_GUARDED_BY(mu_);
  std::string ttid_key_ ABSL_GUARDED_BY(mu_);
  int load_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<::cellar::v1::StoreRequest> store_requests_ ABSL_GUARDED_BY(mu_);
};

// The primary master.
class FakeMaster final : public ::cellar::v1::Master::Service {
 public:
  FakeMaster(std::string cluster_name, common::PartitionTable table,
             std::vector<FakeStorage*> storages);
  ~FakeMaster() override;

  absl::Status Start();
  // Ends every Watch stream, then stops the server.
  void Shutdown();
  int port() const { return port_; }
  std::string address() const;

  // --- Test controls. Events are pushed to every open Watch stream.
  // Ends every open Watch stream (status OK); clients reconnect.
  void EndWatchStreams();
  // Sets a cell (bumps ptid) and pushes the delta.
  void SetCellState(uint32_t partition, uint32_t node_id,
                    ::cellar::v1::CellState state);
  // Pushes a delta whose ptid skips one version (the table itself is
  // changed by the delta); clients must fetch the table.
  void SetCellStateWithGap(uint32_t partition, uint32_t node_id,
                           ::cellar::v1::CellState state);
  void SetNodeState(uint32_t node_id, ::cellar::v1::NodeState state);
  void SetClusterState(::cellar::v1::ClusterState state);
  // An empty committed transaction: bumps last_tid, pushes its (empty)
  // invalidation; returns the tid. Clients that Sync() afterwards have
  // processed every event pushed before.
  uint64_t AdvanceTid();
  // Pushes an invalidation (does not commit anything).
  void PushInvalidation(uint64_t tid, const std::vector<uint64_t>& oids);
  // RegisterNode fails with `status` (OK clears).
  void SetRegisterError(absl::Status status);
  // Finish commits but answers UNAVAILABLE (the answer is "lost").
  void SetLoseFinishAnswer(bool lose);
  // A failover during Finish: Finish commits (unless `commit` is false),
  // pushes no invalidation, answers UNAVAILABLE, forgets the transaction
  // (as a new primary would: only "the storages" know it was locked) and
  // ends every Watch stream. The master is then "down" (RegisterNode,
  // Begin, Abort and GetTransactionStatus answer UNAVAILABLE) until a
  // client sends Abort (its last call to the old primary), after which it
  // answers as the new primary: GetTransactionStatus of a forgotten
  // committed ttid is COMMITTED with its tid (what a storage that locked it
  // reports) while RUNNING. `recovering`: the new primary starts in
  // RECOVERING (until SetClusterState). One Finish only (the setting
  // clears itself).
  void SetFailOverOnFinish(bool enabled, bool commit = true,
                           bool recovering = false);
  // Abort requests refused while "down" (SetFailOverOnFinish).
  int refused_while_down() const;
  // Finish commits without pushing invalidations.
  void SetSuppressInvalidations(bool suppress);
  // Finish faults. The first two leave the outcome unknown to the client:
  // the transaction stays "finishing" (GetTransactionStatus: ACTIVE;
  // Abort: FAILED_PRECONDITION, a final tid was picked) and nothing
  // commits.
  enum class FinishFault {
    kNone,
    // Finish never answers (returns once the caller's deadline passed).
    kNeverAnswer,
    // The storages locked, then Finish fails with UNAVAILABLE.
    kUnavailableAfterLock,
    // Finish fails with UNAVAILABLE before any lock: the transaction stays
    // active (the client's Abort aborts it).
    kUnavailableBeforeLock,
  };
  void SetFinishFault(FinishFault fault);
  // Watch snapshots and GetClusterInfo report `last_tid` instead of the
  // real last tid (a new primary still RECOVERING reports 0 or less than
  // it will recover); nullopt clears.
  void SetReportedLastTid(std::optional<uint64_t> last_tid);
  // The master epoch reported at registration, in snapshots and by
  // GetClusterInfo (a failover raises it). Default 1.
  void SetEpoch(uint64_t epoch);

  uint64_t last_tid() const;
  // The key of the ttid tokens Begin hands out.
  std::string ttid_key() const;
  // A new term: the master and every storage take a new ttid key (tokens
  // of earlier ttids are refused by the storages from now on).
  void NewTtidKey();
  int register_calls() const;
  int begin_calls() const;
  // Ttids handed out with a Finish answer (FinishRequest.want_next_ttid).
  int preallocated_ttids() const;
  int open_watch_streams() const;
  // Waits until open_watch_streams() == n (false on timeout).
  bool AwaitOpenWatchStreams(int n, absl::Duration timeout) const;
  std::vector<::cellar::v1::FinishRequest> finish_requests() const;
  std::vector<::cellar::v1::AbortRequest> abort_requests() const;
  // ReportUnreachable requests received (answered OK, REPORT_PROBING).
  std::vector<::cellar::v1::ReportUnreachableRequest> unreachable_reports() const;
  // Waits until at least `n` were received (false on timeout).
  bool AwaitUnreachableReports(size_t n, absl::Duration timeout) const;
  common::PartitionTable table() const;

  grpc::Status RegisterNode(grpc::ServerContext* context,
                            const ::cellar::v1::RegisterNodeRequest* request,
                            ::cellar::v1::RegisterNodeResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const ::cellar::v1::WatchRequest* request,
                     grpc::ServerWriter<::cellar::v1::ClusterEvent>* writer) override;
  grpc::Status AllocateOids(grpc::ServerContext* context,
                            const ::cellar::v1::AllocateOidsRequest* request,
                            ::cellar::v1::AllocateOidsResponse* response) override;
  grpc::Status Begin(grpc::ServerContext* context,
                     const ::cellar::v1::BeginRequest* request,
                     ::cellar::v1::BeginResponse* response) override;
  grpc::Status Finish(grpc::ServerContext* context,
                      const ::cellar::v1::FinishRequest* request,
                      ::cellar::v1::FinishResponse* response) override;
  grpc::Status Abort(grpc::ServerContext* context,
                     const ::cellar::v1::AbortRequest* request,
                     ::cellar::v1::AbortResponse* response) override;
  grpc::Status GetTransactionStatus(
      grpc::ServerContext* context,
      const ::cellar::v1::GetTransactionStatusRequest* request,
      ::cellar::v1::GetTransactionStatusResponse* response) override;
  grpc::Status GetClusterInfo(
      grpc::ServerContext* context,
      const ::cellar::v1::GetClusterInfoRequest* request,
      ::cellar::v1::GetClusterInfoResponse* response) override;
  grpc::Status StartCluster(
      grpc::ServerContext* context,
      const ::cellar::v1::StartClusterRequest* request,
      ::cellar::v1::StartClusterResponse* response) override;
  grpc::Status ReportUnreachable(
      grpc::ServerContext* context,
      const ::cellar::v1::ReportUnreachableRequest* request,
      ::cellar::v1::ReportUnreachableResponse* response) override;

 private:
  struct WatchStream {
    uint32_t node_id = 0;
    std::deque<::cellar::v1::ClusterEvent> queue;
    bool end = false;
  };
  struct Txn {
    uint32_t node_id = 0;
    ::cellar::v1::TransactionOutcome outcome = ::cellar::v1::TRANSACTION_ACTIVE;
    uint64_t tid = 0;
    // A final tid was picked, the outcome is not known (FinishFault).
    bool finishing = false;
  };

  void PushLocked(const ::cellar::v1::ClusterEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<::cellar::v1::NodeInfo> NodesLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t NextTidLocked(uint64_t congruent_to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string cluster_name_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  common::PartitionTable table_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, FakeStorage*> storages_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, ::cellar::v1::NodeState> storage_states_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> clients_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ClusterState state_ ABSL_GUARDED_BY(mu_) =
      ::cellar::v1::CLUSTER_RUNNING;
  uint64_t last_tid_ ABSL_GUARDED_BY(mu_);
  uint64_t tid_counter_ ABSL_GUARDED_BY(mu_);
  uint64_t next_oid_ ABSL_GUARDED_BY(mu_) = 1;
  uint32_t next_node_id_ ABSL_GUARDED_BY(mu_) = 100;
  std::map<uint64_t, Txn> txns_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<WatchStream>> streams_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status register_error_ ABSL_GUARDED_BY(mu_);
  bool lose_finish_answer_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_over_on_finish_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_over_commits_ ABSL_GUARDED_BY(mu_) = true;
  bool fail_over_recovering_ ABSL_GUARDED_BY(mu_) = false;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  int refused_while_down_ ABSL_GUARDED_BY(mu_) = 0;
  // ttid -> tid of committed transactions forgotten in a failover.
  std::map<uint64_t, uint64_t> locked_on_storages_ ABSL_GUARDED_BY(mu_);
  bool suppress_invalidations_ ABSL_GUARDED_BY(mu_) = false;
  FinishFault finish_fault_ ABSL_GUARDED_BY(mu_) = FinishFault::kNone;
  std::optional<uint64_t> reported_last_tid_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  int register_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string ttid_key_ ABSL_GUARDED_BY(mu_);
  int begin_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int preallocated_ttids_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<::cellar::v1::FinishRequest> finish_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<::cellar::v1::AbortRequest> abort_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<::cellar::v1::ReportUnreachableRequest> unreachable_reports_
      ABSL_GUARDED_BY(mu_);
};

struct FakeClusterOptions {
  // Default 2 storages, 4 partitions, 1 replica (every partition on both).
  int num_storages = 2;
  uint32_t num_partitions = 4;
  uint32_t num_replicas = 1;
  std::string cluster_name = "cellar";
};

// A fake master plus storages S1..Sn, all started.
class FakeCluster {
 public:
  static absl::StatusOr<std::unique_ptr<FakeCluster>> Start(
      FakeClusterOptions options = {});
  ~FakeCluster();

  FakeMaster& master() { return *master_; }
  // Storage S<id>, id in 1..num_storages.
  FakeStorage& storage(uint32_t id) { return *storages_.at(id - 1); }
  int num_storages() const { return static_cast<int>(storages_.size()); }
  std::string master_address() const { return master_->address(); }

 private:
  FakeCluster() = default;
  std::vector<std::unique_ptr<FakeStorage>> storages_;
  std::unique_ptr<FakeMaster> master_;
};

}  // namespace cellar::client::testing

#endif  // CELLAR_CLIENT_TESTING_FAKE_CLUSTER_H_
