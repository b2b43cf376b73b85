#ifndef CELLAR_SERVICES_MASTER_CLUSTER_MANAGER_H_
#define CELLAR_SERVICES_MASTER_CLUSTER_MANAGER_H_

// The primary master's view of the cluster: node registry, partition
// table, cluster state machine and OID allocation. Masters keep no
// precious state: the partition table, last ids, OID high-water mark and
// (without a durable election epoch) the epoch floor are recovered from the
// storage nodes as they register.
//
// State machine: RECOVERING -> VERIFYING -> RUNNING; STOPPING from any
// state; anything else is refused with FAILED_PRECONDITION.
//  - A new cluster (no storage has a table) leaves RECOVERING when
//    `autostart` storages are connected, or when an operator calls Start:
//    the table is created balanced over the connected storages.
//  - A known cluster adopts the highest ptid the storages report and
//    leaves RECOVERING only once every node holding a readable cell is
//    connected (no split brain), or when an operator calls Start and the
//    connected nodes make the table operational.
//  - VERIFYING resolves transactions left voted-but-unlocked by a crash
//    (see on_verify) and rebuilds the last tid/oid, then RUNNING.
//  - A RUNNING cluster whose table stops being operational (a storage with
//    the last readable cell of a partition went away) goes back to
//    RECOVERING; clients then get UNAVAILABLE.
//
// Liveness and cell states (docs/design.md, "Replication"):
//  - A storage is gone when its Watch stream ends, when it misses
//    heartbeats for `heartbeat_timeout` (a SIGSTOPped process keeps its
//    connections open), or when it fails to lock a transaction that other
//    storages locked (LockFailed). Its readable cells become OUT_OF_DATE,
//    except a cell that is the last readable one of its partition on a
//    connected storage, which stays (the table is then not operational:
//    back to RECOVERING). Every change is one PartitionTableDelta, ptid+1.
//  - PrepareCommit (Finish) marks OUT_OF_DATE every writable cell of a
//    touched partition that did not vote, before the commit can complete
//    (semantics rule 8), and refuses a commit that would leave a touched
//    partition without a readable cell that voted.
//  - Each OUT_OF_DATE cell has a catch-up requirement: `needed_tid`, the
//    highest tid of a transaction the cell may have missed (raised by
//    every commit it does not vote for, or fails to lock), and
//    `known_tid`, below which it is known to be complete. ReportReplication
//    marks it UP_TO_DATE once the storage proves it holds everything up to
//    needed_tid; since rule 8 runs under the same mutex, a transaction
//    that misses the cell later re-marks it OUT_OF_DATE.
//
// Thread-safe. Lock order: ClusterManager::mu_ before EventHub's.

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/clock.h"
#include "services/common/partition_table.h"
#include "services/master/event_hub.h"
#include "services/master/pt_planner.h"
#include "services/master/storage_caller.h"
#include "services/master/flag_registry.h"
#include "services/master/token_registry.h"
#include "services/master/version_registry.h"

namespace cellar::master {

struct ClusterOptions {
  // Must match every node's --cluster_name. Default "cellar".
  std::string cluster_name = "cellar";
  // P for a new cluster (a known cluster keeps its own). Default 12.
  uint32_t num_partitions = 12;
  // R for a new cluster. Default 1 (two copies of every partition).
  uint32_t num_replicas = 1;
  // Start a new cluster once this many storages are connected; 0 = wait
  // for an operator's Start. Default 0.
  uint32_t autostart = 0;
  // This primary's epoch, or its provisional epoch (see
  // `epoch_is_durable`); storages refuse calls with an older one. Default
  // 1; servers pass something that grows across restarts.
  uint64_t epoch = 1;
  // True when `epoch` comes from durable, monotonic state (the election's
  // lease): it is the term's epoch as is, and a storage reporting a higher
  // one at registration (RegisterNodeRequest.highest_epoch) is refused
  // (FAILED_PRECONDITION, STALE_EPOCH, logged naming the node): this master
  // cannot fence it. False (default; a single master, whose `epoch` is only
  // its start time): `epoch` is provisional and the term's epoch becomes
  // max(epoch, highest epoch any storage reported + 1), fixed when the
  // cluster leaves RECOVERING the first time (before any epoch-fenced call).
  bool epoch_is_durable = false;
  // The master's own node id (M1). Default MakeNodeId(kMaster, 1).
  uint32_t master_node_id = 0x01000001;
  // Software version/track of this master (for NodeInfo; the version
  // registry never quarantines it).
  std::string version = "0.1.0";
  std::string track = "stable";
  // When health signals quarantine a version (version_registry.h).
  QuarantineThresholds quarantine;
  // A connected storage that sends no Heartbeat (nor registers) for this
  // long is treated as gone. Zero disables the check. Default 10 s.
  absl::Duration heartbeat_timeout = absl::Seconds(10);
  // The secret key of this term's ttid tokens (common/ttid_token.h), given
  // to storages at registration (never to other roles). Default empty: a
  // new random key when the manager (the primary's term) is created.
  std::string ttid_key;
};

// A storage's conflict check of one partition's stores in a transaction
// (StoreResponse.checked_ptid / checked_partitions, as the client reports
// them with Finish).
struct ConflictCheckReport {
  uint32_t partition = 0;
  uint32_t node_id = 0;
  // The table version the storage checked with.
  uint64_t ptid = 0;
};

// What a client says of its transaction when it asks to finish it.
struct CommitVotes {
  // Every oid the transaction stored (for invalidations).
  std::vector<uint64_t> oids;
  // Partition -> the storages that received that partition's part of the
  // transaction (objects; the record for partition(ttid)) and voted. A
  // vote counts only for the partitions it is listed under.
  absl::btree_map<uint32_t, std::vector<uint32_t>> voters;
  // The conflict checks the stores reported.
  std::vector<ConflictCheckReport> conflict_checks;
  // The table version the client planned its stores with (0 = unknown).
  uint64_t client_ptid = 0;
};

// What PrepareCommit decided for one Finish.
struct CommitPlan {
  // Voters with a readable cell among the partitions they voted for
  // (connected): they lock first, and the commit counts once every touched
  // partition has one of its readable cells locked (semantics rule 1).
  std::vector<StorageTarget> readable_voters;
  // The other voters (OUT_OF_DATE cells catching up), locked after.
  std::vector<StorageTarget> other_voters;
  // Touched partition -> ids of its readable cells that voted.
  absl::btree_map<uint32_t, std::vector<uint32_t>> readable_by_partition;
  // Touched partition -> ids of every connected voter of it.
  absl::btree_map<uint32_t, std::vector<uint32_t>> voters_by_partition;
  // Connected storages with a writable cell of a touched partition that did
  // not vote (their cells are now OUT_OF_DATE); they may hold temporary
  // records of the transaction to abort.
  std::vector<StorageTarget> non_voters;
  // The table version that includes those changes: storages lock only
  // once they hold it (LockTransactionRequest.min_ptid).
  uint64_t ptid = 0;
};

// What ChangePartitionTable planned and did.
struct PtChangeResult {
  // The plan (Plan::ToString() is the operator's report).
  Plan plan;
  // False for a dry run or an empty plan.
  bool applied = false;
  // The table version before, and after (= before unless applied).
  uint64_t ptid_before = 0;
  uint64_t ptid = 0;
  // R after the change.
  uint32_t num_replicas = 0;
};

// A node KillNode treated as gone.
struct KilledNode {
  // The node as the master now shows it.
  cellar::v1::NodeInfo node;
  // Storages: where to send Storage.Shutdown (empty address otherwise).
  StorageTarget target;
};

// A version decision as the rpcs show it and the flag table persists it.
cellar::v1::VersionDecisionRecord DecisionRecord(const VersionDecision& decision);

class ClusterManager {
 public:
  // Called (outside the manager's mutex) with the id of a client that
  // disconnected: its unfinished transactions must be aborted.
  using ClientGoneCallback = std::function<void(uint32_t node_id)>;
  // Called (outside the mutex) in VERIFYING with the ttids storages hold
  // voted but not locked, and the storages to resolve them on; then with
  // the recovered last tid. Returns when they are resolved (or left to
  // retries). Also called when a storage registers while RUNNING with
  // voted ttids and no InDoubtCallback is set: then with that storage
  // only and last_tid 0.
  using VerifyCallback = std::function<void(const std::vector<uint64_t>& in_doubt,
                                            const std::vector<StorageTarget>& storages,
                                            uint64_t last_tid)>;
  // Called (outside the mutex, on the registering rpc's thread) when a
  // storage registers while RUNNING with voted ttids (a node that was
  // gone, or failed a lock). Must not block: it queues the resolution
  // (TransactionCoordinator::ResolveInBackground).
  using InDoubtCallback =
      std::function<void(const std::vector<uint64_t>& in_doubt, const StorageTarget& storage)>;

  ClusterManager(ClusterOptions options, const common::Clock* clock, EventHub* hub);

  void set_on_client_gone(ClientGoneCallback cb) { on_client_gone_ = std::move(cb); }
  void set_on_verify(VerifyCallback cb) { on_verify_ = std::move(cb); }
  void set_on_in_doubt(InDoubtCallback cb) { on_in_doubt_ = std::move(cb); }
  // How AllocateOids persists the OID high-water mark on the storages
  // (not owned; set before the cluster runs). Without one, AllocateOids
  // answers UNAVAILABLE.
  void set_storage_caller(StorageCaller* storages) { storages_ = storages; }

  // The cluster token table (docs/security.md, "Cluster tokens"): storages'
  // reports are merged into it at registration; changes are persisted with
  // PersistTokenTable.
  TokenRegistry& tokens() { return tokens_; }
  // Called with the new table after every change of tokens() (e.g. to feed
  // this master's Authenticator). Set before the cluster runs.
  void set_token_listener(TokenRegistry::OnChange listener) {
    token_listener_ = std::move(listener);
  }
  // Writes `table` on every connected storage (Storage.SaveTokenTable, in
  // parallel, outside the mutex). OK once at least one storage holds it
  // (the others catch up: they follow the master's table); UNAVAILABLE if
  // none could; FAILED_PRECONDITION if no storage is connected.
  absl::Status PersistTokenTable(const cellar::v1::ClusterTokenTable& table);

  // The cluster's feature flags (docs/rollouts.md, "Feature flags"):
  // storages' tables are adopted at registration (highest version); every
  // change is persisted on the connected storages (as PersistTokenTable)
  // and then pushed to every Watch stream (ClusterEvent.feature_flags).
  // Contracts of FlagRegistry::Set / Delete / SeedAbsent.
  absl::StatusOr<FlagRegistry::SetResult> SetFeatureFlag(
      const cellar::v1::SetFeatureFlagRequest& request);
  absl::StatusOr<cellar::v1::DeleteFeatureFlagResponse> DeleteFeatureFlag(
      absl::string_view name);
  absl::Status SeedFeatureFlags(const std::vector<cellar::v1::FeatureFlag>& initial);
  cellar::v1::FeatureFlagTable FeatureFlags() const { return flags_.Table(); }

  // Registers a node. FAILED_PRECONDITION (WRONG_CLUSTER,
  // PROTOCOL_MISMATCH) or INVALID_ARGUMENT on a bad request.
  absl::StatusOr<cellar::v1::RegisterNodeResponse> RegisterNode(
      const cellar::v1::RegisterNodeRequest& request);

  // Opens the event stream of a registered node: the first event is a
  // snapshot. NOT_FOUND for an unknown node id.
  absl::StatusOr<std::shared_ptr<EventHub::Subscriber>> Watch(uint32_t node_id);

  // The node's stream ended: storages go DOWN (cells as in the class
  // comment), clients are forgotten and their transactions aborted. A
  // stream replaced by a newer registration of the node changes nothing.
  void WatchEnded(uint32_t node_id, const std::shared_ptr<EventHub::Subscriber>& sub);

  // The master is shutting down: streams that end from now on say nothing
  // about the nodes (their cells keep their states; the next primary
  // recovers them), and silent nodes are no longer expired. Irreversible.
  void BeginShutdown();

  // A storage's heartbeat. NOT_FOUND unless the node is connected.
  // `stale_votes`: ttids the storage voted long ago and still holds in
  // doubt; while RUNNING they go to the in-doubt callback (resolved in the
  // background), as at a registration.
  absl::Status Heartbeat(uint32_t node_id, const std::vector<uint64_t>& stale_votes = {});
  // Treats connected storages silent for longer than heartbeat_timeout as
  // gone. Cheap; called often (every Watch stream polls it). If the checks
  // themselves stopped for longer than the timeout (the master was
  // paused), every storage gets a new timeout instead. A client or admin
  // that registered but opened no Watch within the timeout is forgotten
  // (a client's open transactions are aborted, as when its stream ends).
  void ExpireSilentNodes();

  // Rule 8 for a transaction that got final tid `tid`: see the class
  // comment. FAILED_PRECONDITION (CLUSTER_NOT_RUNNING) unless RUNNING;
  // INVALID_ARGUMENT for an unknown voter or partition; UNAVAILABLE if a
  // touched partition has no readable cell among the connected voters.
  // `client_ptid`: the table version the client stored with (0 = unknown):
  // cells created by a later table change missed the transaction even
  // where their node voted.
  //
  // Votes count per partition (CommitVotes::voters), never per node: a
  // node's vote for one partition says nothing of its cells of another.
  // Every partition holding a stored object also needs a conflict check
  // (semantics rule 2) reported by a voter whose cell of it is readable
  // now and has been readable without interruption since the table
  // version the check used; otherwise ABORTED, reason NOT_CHECKED (the
  // client retries the transaction with fresh stores).
  absl::StatusOr<CommitPlan> PrepareCommit(uint64_t tid, const CommitVotes& votes,
                                           const std::vector<uint32_t>& partitions);
  // Voters in `failed` could not lock transaction `tid` while `locked`
  // did: their cells of the partitions in `voted` (partition -> voters)
  // miss it. Where a cell of that partition in `locked` is still readable
  // on a connected node, the failed cells go OUT_OF_DATE (they serve no
  // read until replication brings the transaction, semantics rule 3) and
  // must catch up past `tid`. Where none is left (the locker went away
  // meanwhile), the failed cells keep their state, since marking them
  // could leave the partition with no readable cell at all, and the
  // partition is returned: the commit must then not be published until
  // resolution completes it. Each failed node is treated as gone (it
  // registers again and its vote is resolved then). Called before the
  // commit is published.
  // A commit (`tid`) is locked somewhere but not published, since no
  // readable cell of some partition holds it: until ReleaseHold(tid), no
  // cell of `partitions` becomes UP_TO_DATE by replication (its sources may
  // lack the commit; resolution completes it first).
  // While held, the partitions' completeness (CompleteTidLocked) stops
  // below `tid`: no cell is told, or claims, that it holds it.
  void HoldPartitions(uint64_t tid, const std::vector<uint32_t>& partitions);
  void ReleaseHold(uint64_t tid);

  std::vector<uint32_t> LockFailed(uint64_t tid, const std::vector<uint32_t>& failed,
                                   const absl::btree_map<uint32_t, std::vector<uint32_t>>& voted,
                                   const std::vector<uint32_t>& locked = {});

  // A storage reports replication progress of one of its cells (see
  // master.proto).
  absl::StatusOr<cellar::v1::ReportReplicationResponse> ReportReplication(
      const cellar::v1::ReportReplicationRequest& request);

  // True if `node_id` is registered and connected.
  bool IsConnected(uint32_t node_id) const;

  // A storage someone reported unreachable (Master.ReportUnreachable;
  // unreachable_prober.h), as the master should probe it.
  struct ProbeTarget {
    StorageTarget target;
    // The registration probed: a storage that registers again meanwhile
    // is not taken down by the old probe's failure.
    uint64_t generation = 0;
    // Already DOWN (or in the table and never registered): nothing to do.
    bool down = false;
  };
  // INVALID_ARGUMENT for node id 0 or an id that is not a storage's;
  // NOT_FOUND for a storage neither registered nor in the table;
  // FAILED_PRECONDITION (CLUSTER_NOT_RUNNING) unless RUNNING.
  absl::StatusOr<ProbeTarget> UnreachableTarget(uint32_t node_id) const;
  // The master's own probe of `node_id` failed (`why`): the storage is
  // treated exactly as one that missed its heartbeats (NodesLostLocked),
  // unless it is no longer connected or registered again since
  // `generation`, or sent a heartbeat after `probe_started` (it is
  // talking to the master: slow to answer the probe, not gone; only the
  // heartbeat timeout takes such a node down). Returns whether it was
  // taken down.
  bool ProbeFailed(uint32_t node_id, uint64_t generation, absl::Time probe_started,
                   const std::string& why);

  // Operator start (see class comment).
  absl::StatusOr<cellar::v1::ClusterState> Start();

  // OIDs [first, first + count). Never hands out an OID twice, across
  // restarts too (semantics rule 7): OIDs are handed out only below a
  // high-water mark persisted first on every connected storage
  // (Storage.SaveMasterState, outside the mutex; the mark is set
  // kOidReserve past the batch, so most batches need no round trip), and
  // recovery continues at max(highest stored oid, highest reported mark -
  // 1) + 1. FAILED_PRECONDITION unless RUNNING; INVALID_ARGUMENT for a bad
  // count; UNAVAILABLE (nothing handed out) if a storage could not persist
  // the mark.
  absl::StatusOr<uint64_t> AllocateOids(uint32_t count);

  // A restore (TransactionCoordinator::Begin with a tid) wrote `oid`, which
  // this master never handed out: later batches start above it (recovery
  // learns it from the storages' highest stored oid).
  void AdvanceOidsPast(uint64_t oid);

  // OK when RUNNING; FAILED_PRECONDITION (CLUSTER_NOT_RUNNING) otherwise.
  absl::Status CheckRunning() const;

  // How AwaitRunning ended.
  enum class Readiness {
    kRunning,       // the cluster is RUNNING
    kNotOnTheWay,   // a state that does not lead to RUNNING by itself (STOPPING...)
    kTimedOut,      // `until` passed while RECOVERING or VERIFYING
    kStopped,       // `stop()` turned true
    kShuttingDown,  // BeginShutdown() was called
  };
  // Waits while the cluster is RECOVERING or VERIFYING (on its way to
  // RUNNING), at most until `until` (real time). `stop` is polled every
  // 100 ms (a cancelled call); state changes and BeginShutdown() wake the
  // wait at once. Delayed acceptance (call_holder.h): whoever waits still
  // serves through the usual checks (CheckRunning), which may refuse again.
  Readiness AwaitRunning(absl::Time until, const std::function<bool()>& stop) const;
  // OK if `node_id` is a registered client.
  absl::Status CheckClient(uint32_t node_id) const;

  // Addresses of storages by id. UNAVAILABLE for a storage that is not
  // connected; NOT_FOUND for an unknown one.
  absl::StatusOr<std::vector<StorageTarget>> Targets(
      const std::vector<uint32_t>& node_ids) const;
  // Every connected storage.
  std::vector<StorageTarget> RunningStorages() const;
  // Every storage holding a cell (any state) of `partition` in the
  // current table, connected or not; empty for a partition out of range.
  std::vector<uint32_t> NodesWithCellOf(uint32_t partition) const;

  uint32_t num_partitions() const;
  // The term's epoch: what registrations, Watch snapshots, GetClusterInfo
  // and every epoch-fenced storage call carry. Without a durable epoch it
  // may still rise while RECOVERING (see ClusterOptions::epoch_is_durable)
  // and is fixed from the first VERIFYING on.
  uint64_t epoch() const;
  // The key of this term's ttid tokens (ClusterOptions::ttid_key).
  const std::string& ttid_key() const { return options_.ttid_key; }

  cellar::v1::GetClusterInfoResponse Info() const;

  // ---- Operator actions (docs/rebalancing.md, docs/operations.md) ----

  // STOPPING from any state (Begin and AllocateOids are refused from then
  // on; a Finish already asked for still completes); RUNNING from
  // RECOVERING (= Start; RUNNING when already RUNNING is a no-op).
  // Returns the state after the call. INVALID_ARGUMENT for an unspecified
  // or unknown state; FAILED_PRECONDITION for any other transition (the
  // message gives the legal ones) or when Start refuses.
  absl::StatusOr<cellar::v1::ClusterState> SetClusterState(cellar::v1::ClusterState state);

  // Plans `operation` with PtPlanner over the registered storages (their
  // state and label; storages in the table the master never saw count as
  // DOWN) and, unless `dry_run` or the plan is empty, applies it under the
  // mutex: ptid + 1, one PartitionTableDelta (the whole table when R
  // changes). New OUT_OF_DATE cells must catch up from scratch (known tid
  // 0) to everything committed or being committed; their storages then
  // replicate them (ReportReplication), and once a partition has R+1
  // UP_TO_DATE cells its FEEDING cells are dropped (another delta).
  // PENDING storages given cells become RUNNING. If the new table lets
  // FEEDING cells go, that follows at once (a second delta). PT_DROP also
  // forgets the
  // dropped storage: it is published as NODE_UNKNOWN and removed from the
  // registry (if it comes back it registers as a new, PENDING storage and
  // deletes the data of the cells it lost).
  // `node_ids`: PT_ADD the storages to add (at least one), PT_DROP exactly
  // one, none otherwise; `replicas`: the new R for PT_SET_REPLICAS.
  // FAILED_PRECONDITION unless RUNNING or when a planner rule forbids the
  // change (the message says why); INVALID_ARGUMENT for a bad request.
  absl::StatusOr<PtChangeResult> ChangePartitionTable(
      cellar::v1::PartitionTableOperation operation, const std::vector<uint32_t>& node_ids,
      uint32_t replicas, bool dry_run);

  // Treats `node_id` as gone now, "killed by an operator": a storage as
  // when it misses its heartbeats (NodesLostLocked), a client or admin as
  // when its stream ends (its transactions are aborted). A storage that
  // is already DOWN is left as is. NOT_FOUND for an unknown node;
  // FAILED_PRECONDITION for the master itself.
  absl::StatusOr<KilledNode> KillNode(uint32_t node_id);

  // ---- Version registry and quarantine (docs/rollouts.md) ----

  // Every (version, track) seen in this term, with the decision history.
  struct Versions {
    std::vector<VersionStatus> versions;
    std::vector<VersionDecision> history;
  };
  Versions ListVersions() const;
  // VersionRegistry::Quarantine / Unquarantine; the nodes of the version
  // are published again with NodeInfo.quarantined changed.
  absl::StatusOr<bool> QuarantineVersion(const VersionKey& key, const std::string& by,
                                         const std::string& reason);
  absl::StatusOr<bool> UnquarantineVersion(const VersionKey& key, const std::string& by,
                                           const std::string& reason);
  const QuarantineThresholds& quarantine_thresholds() const { return options_.quarantine; }
  // Persists the quarantined versions with the feature flags (on every
  // connected storage, outside the mutex) when they changed since the last
  // success; a new primary restores them from the table the storages
  // report at registration. Quarantine/UnquarantineVersion call it before
  // they answer; the Watch loops call it for automatic decisions (a failure
  // is retried at most once a second). OK when nothing is to persist.
  absl::Status PersistQuarantines();
  // The (version, track) `node_id` registered with (false if unknown).
  bool VersionOf(uint32_t node_id, VersionKey* key) const;
  bool IsVersionQuarantined(const VersionKey& key) const;

  // ---- Replica repair and truncate (operator actions, docs/operations.md) ----

  // Repairs `node_id`'s cell of `partition` from `source_node_id`: one
  // delta drops the cell (the storage deletes its data), the next re-adds
  // it OUT_OF_DATE with a catch-up from tid 0, and until it is UP_TO_DATE
  // ReportReplication offers only `source_node_id` as source. Returns the
  // ptid with the cell OUT_OF_DATE. INVALID_ARGUMENT for a partition out
  // of range, a non-storage id or source == target; FAILED_PRECONDITION
  // unless RUNNING, if the source holds no readable cell of the partition
  // or is not connected, if the target holds no cell of it, or if the
  // target's cell is the last readable one.
  absl::StatusOr<uint64_t> RepairCell(uint32_t partition, uint32_t node_id,
                                      uint32_t source_node_id);

  // Truncate, first step: checks the request and moves the cluster to
  // RECOVERING (clients are refused from then on); returns the storages
  // holding cells, to truncate. INVALID_ARGUMENT for tid 0;
  // FAILED_PRECONDITION if tid is after the last committed tid, if a
  // storage holding cells is not connected (named), while another truncate
  // runs, or unless RUNNING (or RECOVERING after a truncate that did not
  // finish: it may be retried). Until FinishTruncate the cluster does not
  // leave RECOVERING (Start is refused).
  absl::StatusOr<std::vector<StorageTarget>> BeginTruncate(uint64_t tid);
  // Truncate, last step (every storage truncated): the last tid becomes
  // `tid`, in-doubt votes and catch-up requirements above it are
  // forgotten, clients' streams are closed (they register again and drop
  // their caches), then VERIFYING -> RUNNING. Returns the state reached.
  cellar::v1::ClusterState FinishTruncate(uint64_t tid);
  // Truncate failed after BeginTruncate: the cluster stays RECOVERING and
  // Truncate may be retried.
  void AbandonTruncate();

 private:
  struct Node {
    cellar::v1::NodeInfo info;
    bool connected = false;
    // Storages: what they reported at registration.
    std::vector<uint64_t> voted_ttids;
    // The Watch stream of the current registration (null before Watch).
    std::shared_ptr<EventHub::Subscriber> subscriber;
    // Last heartbeat (or registration).
    absl::Time last_heartbeat;
    // Which registration this is (ProbeTarget::generation).
    uint64_t generation = 0;
  };
  // Catch-up requirement of one OUT_OF_DATE cell (class comment).
  struct CatchUp {
    uint64_t needed_tid = 0;
    uint64_t known_tid = 0;
    // Created by a partition-table change: progress reports count only
    // once the storage reported 0 (it reset the cell); a higher one comes
    // from a replication round of an earlier cell of the same partition.
    bool fresh = false;
    // Non-zero for a cell created by a partition-table change (until
    // UP_TO_DATE): the ptid that created it. A client whose table predates
    // it stores nothing on the cell, yet its node may vote for the
    // transaction's other objects: such a commit raises needed_tid, voter
    // or not. Clients that know the cell write to it.
    uint64_t created_ptid = 0;
  };
  using CellKey = std::pair<uint32_t, uint32_t>;  // (partition, node id)
  using NodeMap = absl::btree_map<uint32_t, Node>;
  // A client or admin leaves the registry: published as DOWN, erased.
  // Returns the next entry.
  NodeMap::iterator ForgetNodeLocked(NodeMap::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  cellar::v1::ClusterSnapshot SnapshotLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::flat_hash_set<uint32_t> ConnectedStoragesLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<StorageTarget> RunningStoragesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateLocked(cellar::v1::ClusterState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishNodeLocked(const Node& node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Decides whether recovery can end; if so moves to VERIFYING and returns
  // the work to do outside the lock.
  // True if an unpublished commit holds `partition` (HoldPartitions).
  bool HeldLocked(uint32_t partition) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The tid through which every readable cell of `partition` holds every
  // commit: the last published tid, but below the lowest commit of the
  // partition held unpublished (its readable cells may lack it; a later,
  // published tid does not mean they hold it).
  uint64_t CompleteTidLocked(uint32_t partition) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MaybeLeaveRecoveryLocked(bool operator_start) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs verification outside the lock, then moves to RUNNING.
  void Verify();
  void RefreshStorageStatesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks `ids` gone (DOWN, stream closed) and, when RUNNING, their cells
  // as in the class comment; may go back to RECOVERING. `cause` feeds the
  // version registry's health signals.
  void NodesLostLocked(const std::vector<uint32_t>& ids, const std::string& why,
                       DownCause cause) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets NodeInfo.quarantined on every node of `key` as the version
  // registry says and publishes the storages that changed.
  void RefreshQuarantineLocked(const VersionKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The versions of the storages holding a readable cell (any partition).
  std::set<VersionKey> ReadableVersionsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Readable cells of nodes that are not connected become OUT_OF_DATE
  // where another readable cell of the partition is on a connected node.
  // Adds the changes to `delta`.
  void MarkDisconnectedCellsLocked(cellar::v1::PartitionTableDelta* delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets a cell's state in pt_ and records the change in `delta`.
  void SetCellLocked(uint32_t partition, uint32_t node_id, common::CellState state,
                     cellar::v1::PartitionTableDelta* delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bumps the ptid and broadcasts `delta` if it has changes.
  void PublishDeltaLocked(cellar::v1::PartitionTableDelta* delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The catch-up entry of a cell, created if missing (needed = last tid).
  CatchUp& CatchUpLocked(uint32_t partition, uint32_t node_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasOtherConnectedReadableLocked(uint32_t partition, uint32_t node_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Partition-table operations ----
  // The storages as PtPlanner sees them (every node of the table included).
  std::vector<StorageNode> PlannerNodesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies `plan` to pt_ (ptid + 1), resets the catch-up entries of the
  // cells it touches, publishes it (delta, or the whole table when R
  // changes) and refreshes the storages' states.
  absl::Status ApplyPlanLocked(const Plan& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the FEEDING cells whose replacements are UP_TO_DATE, if any.
  void FinishFeedingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClusterOptions options_;
  const common::Clock* clock_;
  EventHub* hub_;
  ClientGoneCallback on_client_gone_;
  VerifyCallback on_verify_;
  InDoubtCallback on_in_doubt_;
  StorageCaller* storages_ = nullptr;
  TokenRegistry::OnChange token_listener_;
  TokenRegistry tokens_{clock_, [this](const cellar::v1::ClusterTokenTable& table) {
                          if (token_listener_) token_listener_(table);
                        }};

  FlagRegistry flags_{clock_};

  // Writes on every connected storage with `save` (in parallel, outside
  // the mutex): PersistTokenTable's contract, `what` naming the data.
  absl::Status PersistOnStorages(
      absl::string_view what, uint64_t version,
      const std::function<std::vector<absl::Status>(const std::vector<StorageTarget>&,
                                                    uint64_t epoch)>& save);
  absl::Status PersistFeatureFlags(const cellar::v1::FeatureFlagTable& table);
  // Sends the current flag table to every Watch stream.
  void PublishFeatureFlags();
  void PublishFeatureFlagsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Quarantines the versions the flag table lists (VersionRegistry::Restore)
  // and marks their nodes.
  void RestoreQuarantinesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // versions_.generation() last persisted; when to retry after a failure.
  uint64_t persisted_quarantines_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time retry_quarantines_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // One PersistQuarantines at a time (the Watch loops all call it).
  absl::Mutex persist_quarantines_mu_;

  mutable absl::Mutex mu_;
  cellar::v1::ClusterState state_ ABSL_GUARDED_BY(mu_) = cellar::v1::CLUSTER_RECOVERING;
  common::PartitionTable pt_ ABSL_GUARDED_BY(mu_);
  // Keyed by node id (role in the top byte).
  NodeMap nodes_ ABSL_GUARDED_BY(mu_);
  uint32_t next_storage_index_ ABSL_GUARDED_BY(mu_) = 1;
  uint32_t next_client_index_ ABSL_GUARDED_BY(mu_) = 1;
  uint32_t next_admin_index_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t last_oid_ ABSL_GUARDED_BY(mu_) = 0;
  // OIDs below this may have been handed out (the highest mark persisted
  // or reported); the storages in oid_mark_on_ hold it.
  uint64_t oid_high_water_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<uint32_t> oid_mark_on_ ABSL_GUARDED_BY(mu_);
  // An AllocateOids is persisting a new mark (others wait for it).
  bool saving_oid_mark_ ABSL_GUARDED_BY(mu_) = false;
  // Highest tid storages reported (recovery).
  uint64_t recovered_last_tid_ ABSL_GUARDED_BY(mu_) = 0;
  bool verifying_ ABSL_GUARDED_BY(mu_) = false;
  absl::btree_map<CellKey, CatchUp> catch_up_ ABSL_GUARDED_BY(mu_);
  absl::Time last_expiry_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // RepairCell: cells that must replicate from one named source only.
  absl::btree_map<CellKey, uint32_t> repair_sources_ ABSL_GUARDED_BY(mu_);
  // Truncate: the tid of a truncation begun and not finished (0 = none),
  // and whether one is running now.
  uint64_t truncate_tid_ ABSL_GUARDED_BY(mu_) = 0;
  bool truncating_ ABSL_GUARDED_BY(mu_) = false;
  // Highest tid PrepareCommit accepted: a cell created now may miss every
  // transaction up to it.
  uint64_t max_prepared_tid_ ABSL_GUARDED_BY(mu_) = 0;
  // Conflict checks (PrepareCommit): the table version since which a cell
  // has been readable without interruption. Cells not listed have been
  // readable since `readable_base_ptid_` (the table version this master
  // started serving with: it cannot vouch for anything older).
  absl::btree_map<CellKey, uint64_t> readable_since_ ABSL_GUARDED_BY(mu_);
  uint64_t readable_base_ptid_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // HoldPartitions: tid -> partitions whose cells may not become UP_TO_DATE.
  absl::btree_map<uint64_t, std::vector<uint32_t>> holds_ ABSL_GUARDED_BY(mu_);
  // Only used under mu_ (its callback reads pt_ and nodes_).
  VersionRegistry versions_ ABSL_GUARDED_BY(mu_);
  // The term's epoch (epoch()); fixed once `epoch_fixed_`.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_);
  bool epoch_fixed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_CLUSTER_MANAGER_H_
