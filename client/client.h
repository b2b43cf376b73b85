#ifndef CELLAR_CLIENT_CLIENT_H_
#define CELLAR_CLIENT_CLIENT_H_

// The cellar client library: connects to the primary master, follows the
// cluster through the master's Watch stream (partition table, nodes,
// invalidations), routes reads and writes by partition, runs the two-phase
// commit from the client side and keeps an MVCC object cache.
//
//   CELLAR_ASSIGN_OR_RETURN(auto client, Client::Connect(options));
//   CELLAR_ASSIGN_OR_RETURN(uint64_t oid, client->NewOid());
//   auto txn = client->NewTransaction();
//   txn->Store(oid, /*base_serial=*/0, "hello");
//   CELLAR_ASSIGN_OR_RETURN(uint64_t tid, txn->Commit());
//   CELLAR_ASSIGN_OR_RETURN(LoadResult r, client->Load(oid));  // r.serial == tid
//
// Session: Connect registers a client node (Master.RegisterNode) and opens
// Master.Watch on a background thread; it returns once the first
// ClusterSnapshot arrived (the snapshot starts at its last_tid). Master
// addresses are tried in order. A cluster that is not RUNNING still lets
// Connect succeed; data calls then fail as the servers say
// (FAILED_PRECONDITION / UNAVAILABLE). When the stream breaks, the client
// re-registers (new node id), clears its cache (invalidations may have
// been lost) and takes the new snapshot; commits in flight fail with
// UNAVAILABLE, or OUTCOME_UNKNOWN (transaction.h) once Finish was sent.
// A Commit() or NewOid() issued while no session is open (a master
// restarting, a failover) waits for the next one, at most rpc_timeout,
// then fails with UNAVAILABLE ("not connected ...").
//
// The snapshot never decreases (semantics rule 6): a new master that
// reports a last tid below the client's snapshot (a new primary still
// RECOVERING reports 0) does not move it back, and the cache is cleared
// at the client's snapshot, not at the master's. Until that master has
// reported a last tid at least the snapshot (its snapshot or an
// invalidation, which a new primary publishes once verified) or the
// cluster is RUNNING (verified; a lower last tid then comes from a
// Truncate), Load() and Commit() wait, at most rpc_timeout, then fail
// with UNAVAILABLE ("... behind ..."); LoadBefore waits only for a
// before_tid the master has not covered. OIDs of a batch taken under an
// earlier master epoch are never handed out: NewOid() drops the batch
// when the epoch changed (semantics rule 7).
//
// Reads: the snapshot is the last tid whose invalidations were applied;
// Load() reads at it. A read goes to one readable cell of partition(oid)
// (round-robin over replicas), checks the checksum and tries the next
// readable cell on a mismatch, UNAVAILABLE or DEADLINE_EXCEEDED. NOT_FOUND
// (reasons NO_SUCH_OBJECT / NO_EARLIER_REVISION / NO_SUCH_REVISION) is
// returned as is. No readable cell: UNAVAILABLE (reason NOT_READABLE);
// every replica failed its checksum: DATA_LOSS (reason CHECKSUM_MISMATCH).
//
// Thread-safety: Client is thread-safe (any number of threads may load
// and commit at once). A Transaction is used by one thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/cluster_view.h"
#include "client/object_cache.h"
#include "client/transaction.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.pb.h"
#include "services/common/channel.h"
#include "services/common/feature_flags.h"
#include "services/common/tls_config.h"

namespace cellar::client {

struct ClientOptions {
  // Master addresses (host:port), tried in order. Default 127.0.0.1:7100.
  std::vector<std::string> master_addresses = {"127.0.0.1:7100"};
  // Must match the master's cluster name. Default "cellar".
  std::string cluster_name = "cellar";
  // Object cache size in bytes; 0 disables the cache. Default 64 MiB.
  size_t cache_bytes = 64 << 20;
  // Deadline of every unary call. Default 10 s.
  absl::Duration rpc_timeout = absl::Seconds(10);
  // How long Connect waits for the first snapshot. Default 10 s.
  absl::Duration connect_timeout = absl::Seconds(10);
  // How long Commit waits, after Finish, for its invalidation to reach the
  // snapshot. Default 5 s.
  absl::Duration commit_wait_timeout = absl::Seconds(5);
  // Longest pause between two reconnection rounds. Default 500 ms (a
  // restarted master is found within half a second).
  absl::Duration max_reconnect_backoff = absl::Milliseconds(500);
  // Software version sent at registration. Default "0.1.0".
  std::string version = "0.1.0";
  // Deployment track sent at registration. Default "stable".
  std::string track = "stable";
  // Bearer token sent on every call to masters and storages: a token of
  // role `client` when the cluster runs with authentication
  // (docs/security.md). Default "": none.
  std::string token;
  // TLS to masters and storages (docs/security.md, "TLS and mTLS"):
  // ca_file verifies the servers, cert_file/key_file are presented when
  // the cluster asks for client certificates, server_name replaces the
  // dialled host in the name check. Connect fails with INVALID_ARGUMENT
  // naming the field if a file cannot be read or does not parse.
  // Default nullopt: plaintext.
  std::optional<common::TlsClientConfig> tls;
  // Report storages this client cannot reach (a call failed with
  // DEADLINE_EXCEEDED, or UNAVAILABLE from the transport) to the master
  // (Master.ReportUnreachable): the master probes them and takes one that
  // does not answer it either DOWN at once, instead of after its heartbeat
  // timeout (docs/operations.md, "Unreachable storages"). Sent
  // asynchronously (never delaying the load or commit that failed), at
  // most once per storage per `report_unreachable_interval`; best effort
  // (answers are only counted, ClientStats). Default true, 1 s.
  bool report_unreachable = true;
  absl::Duration report_unreachable_interval = absl::Seconds(1);
  // Ask for the next ttid with each Finish (FinishRequest.want_next_ttid)
  // and use it for the next commit of the same session instead of calling
  // Master.Begin: one round trip less per commit for a client that commits
  // again (docs/protocol.md, "Pre-allocated ttids"). Default true.
  bool preallocate_ttid = true;
};

// One revision of an object.
struct LoadResult {
  uint64_t oid = 0;
  // The revision's tid.
  uint64_t serial = 0;
  // Tid of the next revision; 0 if this revision is current (as far as the
  // answering storage or the cache knew).
  uint64_t next_serial = 0;
  std::string data;
};

// The cluster's size (Client::Size), each partition counted once, from
// one readable cell.
struct ClusterSize {
  // Oids whose latest revision is not a deletion.
  uint64_t objects = 0;
  // Committed object revisions, deletions included.
  uint64_t revisions = 0;
  // Bytes of object data of those revisions.
  uint64_t bytes = 0;
  // Partitions counted, of num_partitions: fewer when no storage with a
  // readable cell of some partition answered (the counts are then low).
  uint32_t partitions = 0;
  uint32_t num_partitions = 0;
};

// Counters, since Connect.
struct ClientStats {
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
  // Loads whose checksum did not match the data (another cell was tried).
  uint64_t checksum_failures = 0;
  uint64_t commits = 0;
  // Commits that failed with ABORTED (conflict, lock contention).
  uint64_t conflicts = 0;
  // Commits that failed otherwise.
  uint64_t commit_failures = 0;
  // Sessions established after the first (master stream broke).
  uint64_t reconnects = 0;
  // Master.ReportUnreachable sent (ClientOptions::report_unreachable), and
  // those that failed (the master refused or could not be reached;
  // ignored otherwise).
  uint64_t unreachable_reports = 0;
  uint64_t unreachable_reports_failed = 0;
  // Commits that used a ttid handed out with the previous Finish instead
  // of calling Master.Begin (ClientOptions::preallocate_ttid).
  uint64_t preallocated_ttids_used = 0;
};

// Called on the watch thread after each invalidation is applied (the
// snapshot already includes `tid`). Must not block for long nor call
// Close().
using InvalidationListener =
    std::function<void(uint64_t tid, const std::vector<uint64_t>& oids)>;

class Client : private TransactionCommitter {
 public:
  // Connects (see the file comment). FAILED_PRECONDITION / INVALID_ARGUMENT
  // when the master refuses the registration (wrong cluster name or
  // protocol version); UNAVAILABLE / DEADLINE_EXCEEDED when no master
  // gave a snapshot within connect_timeout.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);

  ~Client() override;

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // A new OID, from batches of 100 allocated by the master. A batch
  // allocated under an earlier master epoch is dropped, unused.
  absl::StatusOr<uint64_t> NewOid();

  // A new transaction committing through this client.
  std::unique_ptr<Transaction> NewTransaction();

  // The revision of `oid` visible at the current snapshot.
  absl::StatusOr<LoadResult> Load(uint64_t oid);
  // The newest revision with serial < before_tid (ZODB loadBefore).
  absl::StatusOr<LoadResult> LoadBefore(uint64_t oid, uint64_t before_tid);
  // Exactly the revision `serial` (ZODB loadSerial).
  absl::StatusOr<LoadResult> LoadSerial(uint64_t oid, uint64_t serial);
  // Many objects in one Storage.LoadMany call per storage (ZODB prefetch,
  // cold reads): results[i] is what Load(oids[i]) / LoadBefore(oids[i],
  // before_tid) returns. Cache hits come from the cache; an object a
  // storage could not serve (UNAVAILABLE, checksum mismatch) and every
  // object of a storage without LoadMany are loaded one by one as Load
  // does, trying the other replicas.
  std::vector<absl::StatusOr<LoadResult>> LoadMany(const std::vector<uint64_t>& oids);
  std::vector<absl::StatusOr<LoadResult>> LoadManyBefore(const std::vector<uint64_t>& oids,
                                                         uint64_t before_tid);

  // Revisions of `oid`, newest first (at most `limit`, 0 = server default).
  absl::StatusOr<std::vector<::cellar::v1::Revision>> History(
      uint64_t oid, uint32_t limit = 100);
  // The last `limit` committed transactions cluster-wide, newest first, up
  // to this client's snapshot (a storage may already hold a commit the
  // master has not published): every running storage is asked, answers
  // are merged by tid. Fails only if no storage answered.
  absl::StatusOr<std::vector<::cellar::v1::TransactionInfo>> LastTransactions(
      uint32_t limit = 10);
  // The committed transaction `tid` (user, description, extension, the
  // oids it wrote), read from a readable cell of partition(tid), trying
  // the replicas as Load does. NOT_FOUND (NO_SUCH_TRANSACTION) if no
  // transaction has that tid; INVALID_ARGUMENT for tid 0.
  absl::StatusOr<::cellar::v1::TransactionInfo> GetTransaction(uint64_t tid);
  // Objects, revisions and bytes of the cluster: Storage.GetPartitionStats
  // of every running storage, each partition counted once from a readable
  // cell. Fails (UNAVAILABLE) only if no storage answered.
  absl::StatusOr<ClusterSize> Size();
  // Master.GetClusterInfo.
  absl::StatusOr<::cellar::v1::GetClusterInfoResponse> ClusterInfo();
  // Waits until the snapshot reaches the master's last tid (asked now).
  // DEADLINE_EXCEEDED after rpc_timeout.
  absl::Status Sync();

  // The last tid whose invalidations were applied.
  uint64_t snapshot() const;
  // The node id of the current session (changes on reconnection).
  uint32_t node_id() const;
  // The cluster state as last pushed by the master.
  ::cellar::v1::ClusterState cluster_state() const;
  // True while a Watch stream is open.
  bool connected() const;
  // Number of sessions established so far (1 after Connect, +1 per
  // reconnection).
  uint64_t session_count() const;
  // Waits until session_count() >= min_sessions and a stream is open.
  // DEADLINE_EXCEEDED after `timeout`; CANCELLED after Close().
  absl::Status AwaitSession(uint64_t min_sessions, absl::Duration timeout);

  // Replaces the invalidation listener (null to remove).
  void SetInvalidationListener(InvalidationListener listener);

  ClientStats stats() const;
  const ClientOptions& options() const { return options_; }
  // The routing view (for tools and tests).
  const ClusterView& view() const { return view_; }
  // The cluster's feature flags as the master pushed them over Watch
  // (docs/rollouts.md, "Feature flags"). Thread-safe.
  const common::FeatureFlags& feature_flags() const { return feature_flags_; }

  // Closes the Watch stream (the master then treats the client as gone)
  // and stops the background thread. Idempotent; later calls fail with
  // CANCELLED or UNAVAILABLE.
  void Close();

 private:
  using MasterStub = ::cellar::v1::Master::StubInterface;

  // Per-session state of the watch thread.
  struct Session;

  Client(ClientOptions options, const common::ChannelSecurity& security);

  absl::StatusOr<uint64_t> CommitTransaction(
      const TransactionData& data) override;
  absl::StatusOr<uint64_t> RunCommit(const TransactionData& data);
  // Best effort (logged); returns the master's answer.
  absl::Status AbortOnMaster(MasterStub* master, uint32_t node_id,
                             uint64_t ttid,
                             const std::vector<uint32_t>& storage_node_ids);
  // Finish failed with `finish_error`: what became of `ttid` (session
  // `session`)? The final tid if it committed; the Finish error if the
  // primary says it did not (or aborted it now, on `involved`);
  // UNAVAILABLE with reason OUTCOME_UNKNOWN otherwise (transaction.h).
  absl::StatusOr<uint64_t> ResolveFinishFailure(
      MasterStub* master, uint32_t node_id, uint64_t session, uint64_t ttid,
      const std::vector<uint32_t>& involved, const absl::Status& finish_error);
  // Master.GetTransactionStatus of `ttid` as client node `node_id`,
  // within `timeout`.
  absl::StatusOr<::cellar::v1::GetTransactionStatusResponse> AskOutcome(
      MasterStub* master, uint32_t node_id, uint64_t ttid, absl::Duration timeout);
  // After the master of session `session` could not tell (transport
  // errors): waits for a newer session, then asks its master (which asks
  // the storages for a ttid it never saw) once the cluster is RUNNING
  // (after its verification). The final tid if committed,
  // else 0 (no session in time, or not known to be committed). Bounded by
  // options_.rpc_timeout.
  uint64_t CommittedTidAfterReconnect(uint64_t session, uint64_t ttid);

  // Background thread: connect, read events, reconnect.
  void WatchLoop();
  // One round over the master addresses: register, open Watch, read the
  // snapshot. On success the new session is installed.
  absl::StatusOr<std::unique_ptr<Session>> EstablishSession();
  void InstallSession(const Session& session,
                      const ::cellar::v1::ClusterSnapshot& snapshot);
  // Takes a snapshot of the master (at session start or mid-stream): the
  // client's snapshot becomes max(its own, the master's last tid), the
  // cache is cleared at it.
  void TakeSnapshot(const ::cellar::v1::ClusterSnapshot& snapshot);
  void HandleEvent(const ::cellar::v1::ClusterEvent& event);
  void RefreshTable();

  // Calls `call` on the storages with a readable cell of partition(id) in
  // turn, until one answers or an error is not worth another replica.
  absl::Status CallReadReplicas(
      uint64_t id, const std::string& what,
      const std::function<grpc::Status(ClusterView::StorageStub&, grpc::ClientContext*)>&
          call);
  absl::StatusOr<LoadResult> LoadFromStorage(
      uint64_t oid, const ::cellar::v1::LoadRequest& request);
  // One storage's share of LoadManyBefore: answers results[i] for each i
  // of `indexes` it served, and appends the others to `fallback`.
  void LoadManyFrom(uint32_t node_id, const std::vector<uint64_t>& oids,
                    const std::vector<size_t>& indexes, uint64_t before_tid,
                    std::vector<absl::StatusOr<LoadResult>>* results,
                    std::vector<size_t>* fallback);
  // A call to storage `node_id` failed with `status`: if it says the
  // storage is unreachable, tells the master (ClientOptions::
  // report_unreachable), asynchronously. Never blocks.
  void MaybeReportUnreachable(uint32_t node_id, const absl::Status& status);
  // Cancels the reports in flight and waits for their callbacks (Close).
  void EndReports();
  // Waits until snapshot_ >= tid or `timeout`.
  bool WaitForSnapshot(uint64_t tid, absl::Duration timeout);
  // Waits (at most rpc_timeout) until the current master has reported a
  // last tid >= `tid` or the cluster is RUNNING (see the file comment).
  // UNAVAILABLE after that, CANCELLED after Close().
  absl::Status AwaitMasterCaughtUp(uint64_t tid);
  // Waits (at most rpc_timeout) until a session with a master is open:
  // across a master restart or failover, master calls see latency rather
  // than an error. UNAVAILABLE (with the last connection error) after
  // that; CANCELLED once closed.
  absl::Status AwaitConnected();
  std::shared_ptr<MasterStub> master() const;
  uint64_t sessions() const;
  // A stub on a new channel to options_.master_addresses[index].
  std::shared_ptr<MasterStub> NewMasterStub(size_t index) const;

  const ClientOptions options_;
  const common::ChannelSecurity security_;
  // One stub per master address (same order as the options). Watch thread
  // only. Made anew after the session on it is lost, or a registration on
  // it fails (common::RedialAfter).
  std::vector<std::shared_ptr<MasterStub>> master_stubs_;
  ClusterView view_;
  common::FeatureFlags feature_flags_;
  ObjectCache cache_;

  mutable absl::Mutex mu_;
  std::shared_ptr<MasterStub> master_ ABSL_GUARDED_BY(mu_);
  uint32_t node_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snapshot_ ABSL_GUARDED_BY(mu_) = 0;
  // The highest last tid the current session's master reported (its
  // snapshot, then invalidations); may be below snapshot_ after a
  // reconnection.
  uint64_t master_last_tid_ ABSL_GUARDED_BY(mu_) = 0;
  // The master epoch of the current session.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sessions_ ABSL_GUARDED_BY(mu_) = 0;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  // A ttid the master handed out with a Finish answer, for the next commit
  // of session `session` only (docs/protocol.md, "Pre-allocated ttids").
  struct PreallocatedTtid {
    uint64_t ttid = 0;
    std::string token;
    uint64_t session = 0;
  };
  std::optional<PreallocatedTtid> preallocated_ ABSL_GUARDED_BY(mu_);
  // A Finish asking for one is in flight (one at a time: the master keeps
  // at most one open per client).
  bool preallocation_asked_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the first connection round fails for good.
  absl::Status fatal_error_ ABSL_GUARDED_BY(mu_);
  absl::Status last_connect_error_ ABSL_GUARDED_BY(mu_);
  // The open Watch call, to cancel it on Close.
  grpc::ClientContext* watch_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<const InvalidationListener> listener_ ABSL_GUARDED_BY(mu_);
  std::thread watch_thread_;

  absl::Mutex oid_mu_;
  uint64_t next_oid_ ABSL_GUARDED_BY(oid_mu_) = 0;
  uint64_t oids_left_ ABSL_GUARDED_BY(oid_mu_) = 0;
  // The master epoch the batch was allocated under.
  uint64_t oid_epoch_ ABSL_GUARDED_BY(oid_mu_) = 0;

  // Master.ReportUnreachable: when each storage was last reported, the
  // calls in flight (cancelled by Close).
  struct ReportCall;
  absl::Mutex report_mu_;
  absl::flat_hash_map<uint32_t, absl::Time> last_report_ ABSL_GUARDED_BY(report_mu_);
  absl::flat_hash_set<ReportCall*> report_calls_ ABSL_GUARDED_BY(report_mu_);
  bool reports_ended_ ABSL_GUARDED_BY(report_mu_) = false;
  std::atomic<uint64_t> unreachable_reports_{0};
  std::atomic<uint64_t> unreachable_reports_failed_{0};
  std::atomic<uint64_t> preallocated_ttids_used_{0};

  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> cache_misses_{0};
  std::atomic<uint64_t> checksum_failures_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> conflicts_{0};
  std::atomic<uint64_t> commit_failures_{0};
};

}  // namespace cellar::client

#endif  // CELLAR_CLIENT_CLIENT_H_
