#ifndef CELLAR_SERVICES_STORAGE_STORAGE_NODE_H_
#define CELLAR_SERVICES_STORAGE_STORAGE_NODE_H_

// The storage node's domain: owns the backend, the write batcher, the lock
// and transaction managers and this node's view of the cluster (node id,
// partition table, cluster state, highest master epoch), and runs the
// master loop:
//
//   register (RegisterNode with the persisted table, last ids and voted
//   ttids) -> persist the node id -> Watch: snapshot, then table deltas /
//   tables / cluster states -> on end or failure, retry with backoff
//   (100 ms doubling to 500 ms; 5 s after a refusal such as a wrong cluster
//   name, which an operator must fix) until shutdown.
//
// Every table change is persisted (SavePartitionTable + config keys
// "num_partitions" / "num_replicas") before it is used. A table that
// cannot be persisted (a full disk) is still used, since its cell states
// decide what this node may serve, and the heartbeat thread retries the
// persist; a Lock that needs it (min_ptid) is UNAVAILABLE until then.
// While the master is unreachable the node keeps serving reads of its
// readable cells with the last table.
//
// Data path rules: loads need a READABLE cell of partition(oid), stores a
// WRITABLE one (else UNAVAILABLE, reason NOT_READABLE); with no table yet
// every data-path call is UNAVAILABLE. Lock/Unlock/Abort/CheckCell/
// TruncateData carry the master's epoch: one below the highest seen is
// FAILED_PRECONDITION, reason STALE_EPOCH. The highest epoch is persisted
// (config key "master_epoch") whenever it rises, before the call that
// raised it is acted on (UNAVAILABLE if it cannot be written), loaded at
// Open and reported at registration (highest_epoch): a restart does not
// let a deposed primary back in.
//
// Restarts: the voted transactions come back with their object locks
// (TransactionManager::RecoverVoted); transactions still storing, with no
// store for unvoted_timeout, are aborted by the node (ExpireUnvoted, run
// by the heartbeat thread).
//
// Liveness: a heartbeat thread calls Master.Heartbeat every
// heartbeat_interval (the master treats a silent node as gone). It also
// flushes the lock records the master said can be forgotten
// (UnlockTransaction forget_lock).
//
// Replication: a Replicator (replicator.h) catches this node's OUT_OF_DATE
// cells up from readable cells while the node is registered and the
// cluster RUNNING; ServeReplication is the source side (Storage.Replicate).
// Lock carries the table version the commit was decided on: an older
// local table is re-fetched (and persisted) first.
//
// Lifecycle: Open() (reads persisted state) -> StartMasterLoop() -> ...
// -> BeginShutdown() (stops the loop, fails lock waits) -> [the gRPC server
// stops] -> Close() (drains the writers, closes the backend).
//
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/clock.h"
#include "services/common/feature_flags.h"
#include "services/common/partition_table.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/cell_checker.h"
#include "services/storage/cell_view.h"
#include "services/storage/instrumented_backend.h"
#include "services/storage/lock_manager.h"
#include "services/common/cluster_tokens.h"
#include "services/storage/master_link.h"
#include "services/storage/packer.h"
#include "services/storage/replication_source.h"
#include "services/storage/replicator.h"
#include "services/storage/data_path_recorder.h"
#include "services/storage/storage_metrics.h"
#include "services/storage/transaction_manager.h"
#include "services/storage/write_batcher.h"

namespace cellar::storage {

struct StorageNodeOptions {
  // Must equal the master's cluster name. Default "cellar".
  std::string cluster_name = "cellar";
  // Identity for canary analysis. Defaults "0.1.0", "dev", "stable", "".
  std::string version = "0.1.0";
  std::string build_id = "dev";
  std::string track = "stable";
  std::string label;
  // Largest object accepted, bytes. Default 16 MiB.
  size_t max_object_bytes = 16 << 20;
  // Group-commit writer threads. Default 1.
  int writer_threads = 1;
  // Master-loop retry backoff: first and longest delay. Default 100 ms,
  // 500 ms (a restarted master is found within half a second: a planned
  // master restart should cost at most about a second of commits).
  absl::Duration retry_min = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Milliseconds(500);
  // Retry delay after the master refused this node (WRONG_CLUSTER,
  // PROTOCOL_MISMATCH or INVALID_ARGUMENT). Default 5 s.
  absl::Duration refused_retry = absl::Seconds(5);
  // How often the object/transaction gauges are refreshed. Default 15 s.
  absl::Duration stats_interval = absl::Seconds(15);
  // How often the node sends Master.Heartbeat (keep it well below the
  // master's heartbeat timeout, default 10 s). Default 2 s. The same
  // thread expires unvoted transactions, at this period.
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // A transaction still storing (no vote) with no store for this long is
  // aborted by the node, by `clock`. Zero or less: never. Default 60 s.
  absl::Duration unvoted_timeout = absl::Seconds(60);
  // A vote neither locked nor aborted this long after it was made (or
  // after the node restarted with it) is reported in every heartbeat until
  // settled, and the master resolves it. Default 30 s.
  absl::Duration report_votes_after = absl::Seconds(30);
  // Replication of OUT_OF_DATE cells (chunk sizes, rates, test hooks).
  ReplicatorOptions replication;
  // The background pack (chunk size, pause between chunks).
  PackerOptions pack;
  // Where the cluster token table this node persists and follows is
  // applied (the server's Authenticator::cluster_tokens()); null: the
  // node keeps and reports the table but no one applies it. Default null.
  std::shared_ptr<common::ClusterTokens> cluster_tokens;
  // Fault injection (docs/rollouts.md, "A bad canary on purpose"): this
  // share (0..1) of object loads fails with UNAVAILABLE FAULT_INJECTED.
  // Default 0: never. For tests and demonstrations only.
  double fault_load_error_ratio = 0;
};

// What one cell of this node holds (GetPartitionStats).
struct CellStats {
  uint32_t partition = 0;
  // UP_TO_DATE or FEEDING: the counts are the whole partition's.
  bool readable = false;
  uint64_t objects = 0;
  uint64_t revisions = 0;
  uint64_t bytes = 0;
};

// One page of ScanTransactions.
struct TransactionPage {
  // Ascending tid.
  std::vector<TransactionRecord> transactions;
  // Where the next page starts, 0 when the range is done.
  uint64_t next_min_tid = 0;
};

// The cells of this node in one partition table, ascending partition.
struct NodeCellStats {
  uint64_t ptid = 0;
  std::vector<CellStats> cells;
};

// What GetNodeStatus reports.
struct NodeStatus {
  uint32_t node_id = 0;
  uint64_t ptid = 0;
  uint64_t last_tid = 0;
  uint64_t last_oid = 0;
  std::string backend;
  uint64_t object_count = 0;
  uint64_t transaction_count = 0;
  uint32_t open_transactions = 0;
  ::cellar::v1::ClusterState cluster_state = ::cellar::v1::CLUSTER_STATE_UNSPECIFIED;
  // "registered", "connecting (<last error>)" or "refused: <error>".
  std::string master_link;
  // Cells the replicator worked on since start.
  std::vector<CellReplicationStatus> replication;
  // Health inputs of the admin's alerts: failed backend operations since
  // start, the data volume (nullopt when the backend cannot know it), and
  // the node's clock when answering.
  uint64_t backend_errors_total = 0;
  std::optional<DiskUsage> disk;
  absl::Time now;
};

class StorageNode {
 public:
  // Makes how the replicator reaches the master and other storages, given
  // the node's master link and a function returning its node id.
  using PeersFactory = std::function<std::unique_ptr<ReplicationPeers>(
      MasterLink* master, std::function<uint32_t()> node_id)>;

  // Reads the persisted node id, partition table and voted transactions.
  // `metrics` may be null; `clock` and `metrics` must outlive the node.
  // Without `make_peers` the node does not replicate (every round fails
  // with UNIMPLEMENTED).
  static absl::StatusOr<std::unique_ptr<StorageNode>> Open(
      StorageNodeOptions options, std::unique_ptr<StorageBackend> backend,
      std::unique_ptr<MasterLink> master, common::Clock* clock,
      StorageMetrics* metrics, PeersFactory make_peers = nullptr);

  ~StorageNode();  // BeginShutdown() + Close()

  StorageNode(const StorageNode&) = delete;
  StorageNode& operator=(const StorageNode&) = delete;

  // Starts the master loop (and the stats refresher) in the background;
  // the node registers as serving at `advertise_address` (host:port).
  // Call once.
  void StartMasterLoop(const std::string& advertise_address);

  // Called with true/false whenever serving() changes (and once at once
  // with the current value). Set before StartMasterLoop().
  void SetServingCallback(std::function<void(bool)> callback);
  // The same for ready(): serving, and none of this node's cells
  // OUT_OF_DATE (caught up). A rolling update (a StatefulSet's readiness
  // probe) must wait for it before restarting the next storage, or it can
  // take away the last readable cell of a partition.
  void SetReadyCallback(std::function<void(bool)> callback);

  // Registered with the master, holding a partition table, cluster RUNNING.
  bool serving() const;
  // Blocks until serving() or `timeout` (DEADLINE_EXCEEDED, saying why).
  absl::Status WaitUntilServing(absl::Duration timeout);

  uint32_t node_id() const;
  uint64_t epoch() const;
  ::cellar::v1::ClusterState cluster_state() const;
  // The current table (empty, ptid 0, before the first one).
  std::shared_ptr<const common::PartitionTable> partition_table() const;

  // --- Data path (see TransactionManager for the commit rules) ---

  // What a successful Store checked (StoreResponse.checked_ptid and
  // checked_partitions): the table version it used and the partitions of
  // its objects whose cells here are readable in it (their base serials
  // were checked for conflicts). The master requires such a check for
  // every partition a transaction stores in (semantics rule 2).
  struct StoreReceipt {
    uint64_t checked_ptid = 0;
    std::vector<uint32_t> checked_partitions;
  };
  // Stores objects; with `vote`, also votes with `metadata`. On success,
  // fills `receipt` if given.
  absl::Status Store(uint64_t ttid, uint32_t client_node_id,
                     std::vector<StoreObject> objects, bool vote,
                     const std::optional<TransactionMetadata>& metadata,
                     absl::Time lock_deadline, StoreReceipt* receipt = nullptr);
  absl::Status Vote(uint64_t ttid, uint32_t client_node_id,
                    const std::optional<TransactionMetadata>& metadata);
  // `epoch` 0: a client's own abort, not fenced, of a transaction not
  // voted here (a voted one: FAILED_PRECONDITION, it is aborted through
  // the master); otherwise FAILED_PRECONDITION (STALE_EPOCH) below the
  // highest epoch seen.
  absl::Status Abort(uint64_t ttid, uint64_t epoch = 0);
  // Whether `token` proves that the primary master this node registered
  // with issued `ttid` (common::CheckTtidToken with the key of its term,
  // RegisterNodeResponse.ttid_key): PERMISSION_DENIED (BAD_TTID_TOKEN) if
  // not, UNAVAILABLE before the first registration. The adapter checks it
  // before Store, Vote and an unfenced (epoch 0) Abort.
  absl::Status CheckTtidToken(uint64_t ttid, absl::string_view token) const;
  // `min_ptid`: the table version the commit was decided on (0 = any).
  // UNAVAILABLE if this node cannot get that table from the master, or
  // cannot persist it. `stored_oids`: as TransactionManager::Lock;
  // `partitions`: the commit's (LockTransactionRequest.partitions).
  absl::Status Lock(uint64_t epoch, uint64_t ttid, uint64_t tid, uint64_t min_ptid = 0,
                    std::optional<std::vector<uint64_t>>* stored_oids = nullptr,
                    const std::vector<uint32_t>& partitions = {});
  // One lock of LockMany: Lock's arguments in (partitions are consumed),
  // its result and stored_oids out.
  struct LockRequest {
    uint64_t epoch = 0;
    uint64_t ttid = 0;
    uint64_t tid = 0;
    uint64_t min_ptid = 0;
    std::vector<uint32_t> partitions;
    std::optional<std::vector<uint64_t>> stored_oids;
    absl::Status result;
  };
  // Storage.LockTransactions: each lock exactly as Lock would do it alone
  // (its own result), the table re-fetched at most once, and the lock
  // records written in one group-commit batch
  // (TransactionManager::LockMany).
  void LockMany(std::vector<LockRequest>& locks);
  // `forget_lock`: every voter locked it, the ttid -> tid record can go.
  // `record_oids` (UnlockTransactionRequest.record_oids): what the commit
  // committed; the transaction record with `tid`, if this node holds it,
  // is rewritten to list them when it lists others (as its client sent).
  absl::Status Unlock(uint64_t epoch, uint64_t ttid, uint64_t tid, bool forget_lock = false,
                      const std::optional<std::vector<uint64_t>>& record_oids = std::nullopt);

  // Unlock's correction of the record (see Unlock).
  absl::Status CorrectRecordOids(uint64_t tid, std::vector<uint64_t> committed,
                                 const TransactionManager::UnlockedRecord& voted);

  // What this node knows of a transaction (memory first, then the lock
  // record and the transaction record in the database).
  absl::StatusOr<TransactionManager::Known> TransactionOutcome(uint64_t ttid);
  // The oids of the committed transaction `tid` as its transaction record
  // on this node lists them (empty if this node holds no such record).
  absl::StatusOr<std::vector<uint64_t>> CommittedOids(uint64_t tid);

  // Source side of replication: streams `partition` over [min_tid,
  // max_tid] (replication_source.h). UNAVAILABLE (NOT_READABLE) unless
  // this node holds a readable cell of it. Completeness stops below the
  // lowest in-doubt vote of the partition (TransactionManager, rule R11):
  // the stream then ends before max_tid, or, if that is below min_tid,
  // UNAVAILABLE (IN_DOUBT).
  absl::Status ServeReplication(uint32_t partition, uint64_t min_tid, uint64_t max_tid,
                                const ChunkLimits& limits,
                                const std::function<absl::Status(ReplicationChunk)>& emit);

  // The replicator (tests, status).
  Replicator& replicator() { return *replicator_; }

  // --- Operator actions (check, truncate) ---

  // Counts and hashes of `request.partition` (cell_checker.h) for the
  // master's replica check. FAILED_PRECONDITION (STALE_EPOCH) on an old
  // epoch; INVALID_ARGUMENT for a partition out of range or a bad range;
  // UNAVAILABLE (NOT_READABLE) unless this node holds a readable cell of it.
  absl::StatusOr<CellCheckResult> CheckCell(uint64_t epoch,
                                            const CellCheckRequest& request);

  // Truncate: forgets every transaction in commit here (their temporary
  // records and object locks), lowers the replication progress of cells
  // above `tid` to `tid`, then deletes every committed record with a tid
  // above `tid` (backend Truncate, durable). Returns the node's last
  // committed tid afterwards. Only while the cluster is RECOVERING
  // (FAILED_PRECONDITION otherwise); STALE_EPOCH as for Lock.
  absl::StatusOr<uint64_t> TruncateData(uint64_t epoch, uint64_t tid);
  // Storage.Pack (docs/lifecycle.md): with a pack_tid, asks the background
  // packer for a pack at it (persisted; a tid at or below the one already
  // asked changes nothing); pack_tid 0 only reads the progress. Fenced by
  // epoch like the master's other calls (0: INVALID_ARGUMENT).
  absl::StatusOr<PackStatus> Pack(uint64_t epoch, uint64_t pack_tid);

  // Master only (Storage.SaveMasterState): stores the master's OID
  // high-water mark durably in the backend config, only ever raising it;
  // reported at registration (RegisterNodeRequest.oid_high_water).
  // STALE_EPOCH as for Lock; INVALID_ARGUMENT for epoch 0 or mark 0;
  // the backend's error if it could not be written.
  absl::Status SaveMasterState(uint64_t epoch, uint64_t oid_high_water);
  // The stored mark (0 if none).
  absl::StatusOr<uint64_t> OidHighWater();

  // Master only (Storage.SaveTokenTable): stores the cluster token table
  // durably in the backend config if its version is above the stored one,
  // and applies it (options.cluster_tokens). STALE_EPOCH as for Lock;
  // INVALID_ARGUMENT for epoch 0, version 0 or a malformed table; the
  // backend's error if it could not be written. The heartbeat thread also
  // follows the master's table (Master.GetTokenTable) the same way.
  absl::Status SaveTokenTable(uint64_t epoch, const ::cellar::v1::ClusterTokenTable& table);
  // The stored table (version 0 if none).
  absl::StatusOr<::cellar::v1::ClusterTokenTable> StoredTokenTable();

  // Master only (Storage.SaveFeatureFlags): stores the feature flag table
  // durably in the backend config if its version is above the stored one,
  // and applies it (feature_flags()). STALE_EPOCH as for Lock;
  // INVALID_ARGUMENT for epoch 0, version 0 or a malformed table; the
  // backend's error if it could not be written. Tables pushed over Watch
  // (snapshot, ClusterEvent.feature_flags) are stored and applied the same
  // way (storage_node_flags.cc).
  absl::Status SaveFeatureFlags(uint64_t epoch, const ::cellar::v1::FeatureFlagTable& table);
  // The stored table (version 0 if none).
  absl::StatusOr<::cellar::v1::FeatureFlagTable> StoredFeatureFlags();
  // The flags in force on this node (docs/rollouts.md): the stored table
  // from start, then every newer one the master sends.
  const common::FeatureFlags& feature_flags() const { return feature_flags_; }
  // The cumulative data-path counters this node reports to the master.
  common::DataPathSample data_path() const { return data_path_.Snapshot(); }

  // UNAVAILABLE (IN_DOUBT) for an object held by an in-doubt vote whose
  // commit the read could include (rule R11): a snapshot past its ttid, or
  // a serial this node lacks above it.
  absl::StatusOr<LoadedObject> LoadBefore(uint64_t oid, uint64_t before_tid);
  absl::StatusOr<LoadedObject> LoadSerial(uint64_t oid, uint64_t serial);
  // LoadBefore of each oid in order, stopping after the first result that
  // brings the data loaded to `max_bytes` or more (so at least one result,
  // and fewer than oids.size() when the budget ran out).
  std::vector<absl::StatusOr<LoadedObject>> LoadManyBefore(
      const std::vector<uint64_t>& oids, uint64_t before_tid, uint64_t max_bytes);
  // NOT_FOUND (NO_SUCH_OBJECT) if the object has no revision.
  absl::StatusOr<std::vector<HistoryEntry>> History(uint64_t oid, uint32_t limit);
  // Records of partitions readable here, newest first (may return fewer
  // than `limit` when some cells are not readable).
  absl::StatusOr<std::vector<TransactionRecord>> LastTransactions(
      uint32_t limit, uint64_t before_tid);
  // The committed record of transaction `tid` if a readable cell of this
  // node holds it; NOT_FOUND (NO_SUCH_TRANSACTION) otherwise (the record
  // lives in partition(ttid): another storage may hold it).
  absl::StatusOr<TransactionRecord> GetTransaction(uint64_t tid);
  // The committed records of `partitions` (INVALID_ARGUMENT if one is out
  // of range; each must be readable here, UNAVAILABLE NOT_READABLE
  // otherwise) with min_tid <= tid <= max_tid, ascending. Reads at most
  // `limit` records of this node, whatever their partition, so a page may
  // hold fewer and not be the last (next_min_tid).
  absl::StatusOr<TransactionPage> ScanTransactions(const std::vector<uint32_t>& partitions,
                                                   uint64_t min_tid, uint64_t max_tid,
                                                   uint32_t limit);
  // Counts of every cell this node is assigned in its partition table (0
  // for a cell holding nothing yet). UNAVAILABLE without a table.
  absl::StatusOr<NodeCellStats> CellStatsNow();
  // `with_counts` false: last ids and object/transaction counts are left 0
  // (they scan the database), for frequent health polls.
  absl::StatusOr<NodeStatus> Status(bool with_counts = true);

  // Aborts the transactions still storing with no store for
  // unvoted_timeout (TransactionManager::ExpireUnvoted); logged and
  // counted. Returns how many. The heartbeat thread calls it.
  size_t ExpireUnvoted();

  // Stops the master loop and the stats refresher, fails lock waits and
  // marks the node not serving. Idempotent.
  void BeginShutdown();
  // BeginShutdown() if not done yet, then drains the write batcher and
  // closes the backend. Call after the gRPC server stopped. Idempotent.
  void Close();

 private:
  enum class LinkState { kConnecting, kRegistered, kRefused };

  StorageNode(StorageNodeOptions options, std::unique_ptr<StorageBackend> backend,
              std::unique_ptr<MasterLink> master, common::Clock* clock,
              StorageMetrics* metrics, const PeersFactory& make_peers);
  absl::Status LoadPersistedState();
  // Validates, persists (if above the stored version) and applies `table`.
  absl::Status StoreTokenTable(const ::cellar::v1::ClusterTokenTable& table);
  // Heartbeat thread: adopts the master's token table if it changed.
  void FollowTokenTable();
  // Stores (if newer) and applies a flag table from the master.
  absl::Status StoreFeatureFlags(const ::cellar::v1::FeatureFlagTable& table);
  // StoreFeatureFlags for a table pushed over Watch; failures are logged.
  void FollowFeatureFlags(const ::cellar::v1::FeatureFlagTable& table);
  // Applies the stored table at start (logged if unusable).
  void LoadStoredFeatureFlags();
  // With the flag storage.verify_checksum_on_load: DATA_LOSS instead of a
  // revision whose data does not match its checksum. `loaded` otherwise.
  absl::StatusOr<LoadedObject> VerifyLoaded(absl::StatusOr<LoadedObject> loaded) const;

  // The current cells, or UNAVAILABLE without a table.
  absl::StatusOr<CellView> View() const;
  absl::Status CheckEpoch(uint64_t epoch);
  // Raises the highest epoch seen to `epoch` and persists it if it is
  // above the persisted one (UNAVAILABLE if that fails; the epoch in
  // memory is raised anyway). With `fence`, STALE_EPOCH if a higher one
  // was seen meanwhile.
  absl::Status RaiseAndPersistEpoch(uint64_t epoch, bool fence);
  // OK while this node still holds a readable (or, for stores, writable)
  // cell of `partition`; else UNAVAILABLE (NOT_READABLE). A NOT_FOUND or a
  // conflict judged on a table whose cell was dropped meanwhile (its data
  // is deleted once the new table is in use) is no verdict.
  // UNAVAILABLE, reason IN_DOUBT: `oid` is held by in-doubt vote `ttid`.
  absl::Status InDoubtError(uint64_t oid, uint64_t ttid) const;
  absl::Status DroppedCellError(uint32_t partition, bool readable, const char* what) const;
  absl::Status ReadableCell(const CellView& view, uint64_t oid,
                            uint32_t* partition) const;
  template <typename T>
  absl::StatusOr<T> CountLoad(absl::StatusOr<T> result, absl::Time start);
  // UNAVAILABLE FAULT_INJECTED for options_.fault_load_error_ratio of the
  // calls, OK otherwise.
  absl::Status MaybeInjectLoadFault(uint64_t oid);

  // Master loop.
  void MasterLoop();
  void StatsLoop();
  void HeartbeatLoop();
  // This node's OUT_OF_DATE partitions while registered and RUNNING.
  std::vector<uint32_t> CellsToReplicate() const;
  // This node's readable cells (the packer's work), registered or not.
  std::vector<uint32_t> CellsToPack() const;
  // A NOT_FOUND load at or below the tid its partition was packed at says
  // REVISION_PACKED (the revision may have been removed).
  absl::StatusOr<LoadedObject> PackedAsNotFound(absl::StatusOr<LoadedObject> loaded,
                                                uint32_t partition, uint64_t tid) const;
  void FlushForgottenLocks();
  void NoteClientActivity() { client_activity_.fetch_add(1, std::memory_order_relaxed); }
  absl::Status RegisterAndWatch();
  void HandleEvent(const ::cellar::v1::ClusterEvent& event);
  // Adopts a full table from the master (persists it if it changed).
  // `only_newer`: ignore a table older than the current one (a fetch that
  // raced a newer delta). The same table again is persisted again if it
  // was not. The error if it could not be persisted (logged).
  absl::Status AdoptTable(const ::cellar::v1::PartitionTable& proto, const char* source,
                          bool only_newer = false);
  // Persists and installs `table`; with `only_newer`, not if a newer
  // table got installed meanwhile. Installed even if it cannot be
  // persisted (UNAVAILABLE returned and logged; persisted_ptid_ stays).
  absl::Status InstallTable(common::PartitionTable table, bool only_newer = false);
  // The ptid of the last table persisted (<= the current one).
  uint64_t persisted_ptid() const;
  // Persists the current table again if that failed before (heartbeat).
  void RetryTablePersist();
  absl::Status RefetchTable(bool only_newer = false);
  void SetClusterState(::cellar::v1::ClusterState state);
  // RaiseAndPersistEpoch without fencing (an epoch from the master);
  // a failed persist is logged (the heartbeat thread retries it).
  absl::Status RaiseEpoch(uint64_t epoch);
  void SetLink(LinkState state, const std::string& message);
  void UpdateServing() ABSL_LOCKS_EXCLUDED(mu_);
  // Sets `*slot` (serving_callback_ or ready_callback_) and calls it with
  // `*last`, the state it follows.
  void InstallStateCallback(std::function<void(bool)>* slot, const bool* last,
                            std::function<void(bool)> callback);
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ServingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Stopping() const;
  void RefreshStats();
  void UpdateOpenGauge();
  // Cells this node lost (storage_node.cc, "Cells leaving"): a transaction
  // in commit when its cell of `partition` was discarded may still lock
  // (write its records) afterwards; remember it so the records go too.
  void WatchLateLocks(const std::vector<uint32_t>& gone_partitions);
  // After `ttid` locked: deletes again the data of watched partitions this
  // node still holds no cell of.
  void DeleteLateLockedRecords(uint64_t ttid);

  const StorageNodeOptions options_;
  std::string advertise_address_;  // set once, before the master loop starts
  std::unique_ptr<StorageBackend> backend_;
  // backend_ itself (Open wraps every backend): counts its errors.
  InstrumentedBackend* instrumented_ = nullptr;
  std::unique_ptr<MasterLink> master_;
  common::Clock* const clock_;
  StorageMetrics* const metrics_;
  LockManager locks_;
  std::unique_ptr<WriteBatcher> batcher_;
  std::unique_ptr<TransactionManager> transactions_;
  std::unique_ptr<ReplicationPeers> peers_;
  std::unique_ptr<Replicator> replicator_;
  std::unique_ptr<Packer> packer_;
  std::atomic<uint64_t> client_activity_{0};
  absl::Mutex forget_mu_;
  std::vector<uint64_t> forget_ ABSL_GUARDED_BY(forget_mu_);

  mutable absl::Mutex mu_;
  uint32_t node_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Highest master epoch seen, and the highest one persisted (<= epoch_).
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t persisted_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t persisted_ptid_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex epoch_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serializes epoch writes
  // The ttid key of the master term this node registered with (never
  // persisted, logged or shown); replaced at each registration.
  std::string ttid_key_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ClusterState cluster_state_ ABSL_GUARDED_BY(mu_) =
      ::cellar::v1::CLUSTER_STATE_UNSPECIFIED;
  std::shared_ptr<const common::PartitionTable> pt_ ABSL_GUARDED_BY(mu_);
  LinkState link_state_ ABSL_GUARDED_BY(mu_) = LinkState::kConnecting;
  std::string link_message_ ABSL_GUARDED_BY(mu_) = "not connected yet";
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool last_serving_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> serving_callback_ ABSL_GUARDED_BY(mu_);
  bool last_ready_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> ready_callback_ ABSL_GUARDED_BY(mu_);
  absl::Mutex callback_mu_;  // serializes serving callbacks, in order
  absl::Mutex install_mu_;   // serializes InstallTable (persist + swap)
  absl::Mutex master_state_mu_;  // serializes SaveMasterState (the mark only rises)
  absl::Mutex token_table_mu_;   // serializes StoreTokenTable (the version only rises)
  absl::Mutex flags_mu_;         // serializes StoreFeatureFlags (the version only rises)
  common::FeatureFlags feature_flags_;
  // What the data path served (sent with every heartbeat).
  DataPathRecorder data_path_;
  absl::Mutex fault_mu_;
  absl::BitGen fault_bits_ ABSL_GUARDED_BY(fault_mu_);
  // The last table whose persist failed (logged once).
  uint64_t unpersisted_ptid_ ABSL_GUARDED_BY(install_mu_) = 0;
  // Partition -> ttids in commit when this node's cell of it was discarded.
  absl::Mutex late_lock_mu_;
  std::map<uint32_t, absl::flat_hash_set<uint64_t>> late_locks_
      ABSL_GUARDED_BY(late_lock_mu_);

  std::thread master_thread_;
  std::thread stats_thread_;
  std::thread heartbeat_thread_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_STORAGE_NODE_H_
