#include "services/storage/storage_node.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/common/ttid_token.h"

namespace cellar::storage {

using ::cellar::common::ErrorReason;
using ::cellar::common::ErrorWithReason;
using ::cellar::common::NodeName;
using ::cellar::common::PartitionTable;
using ::cellar::common::TidHex;
using ::cellar::v1::ClusterState;

namespace {

constexpr char kNodeIdKey[] = "node_id";
constexpr char kNumPartitionsKey[] = "num_partitions";
constexpr char kNumReplicasKey[] = "num_replicas";
// The highest master epoch this node has seen (decimal).
constexpr char kMasterEpochKey[] = "master_epoch";
// The master's OID high-water mark (StorageNode::SaveMasterState).
constexpr char kOidHighWaterKey[] = "oid_high_water";
// The cluster token table (StorageNode::SaveTokenTable), base64 proto.
constexpr char kTokenTableKey[] = "token_table";

// At most this many stale votes go with one heartbeat (the rest with the
// next ones, as the first get settled).
constexpr size_t kMaxStaleVotesPerHeartbeat = 1000;

// The master refused this node for what it is (an operator must fix it),
// as opposed to a transient failure.
bool IsRefusal(const absl::Status& s) {
  const std::string reason = ErrorReason(s);
  return reason == common::kReasonWrongCluster ||
         reason == common::kReasonProtocolMismatch ||
         s.code() == absl::StatusCode::kInvalidArgument;
}

std::string ClusterStateName(ClusterState s) {
  return ::cellar::v1::ClusterState_Name(s);
}

}  // namespace

namespace {

// cellar_storage_pack_{tid,tid_seconds,pending_partitions} from `status`.
void SetPackGauges(StorageMetrics* metrics, const PackStatus& status) {
  if (metrics == nullptr) return;
  metrics->pack_tid->Set(static_cast<double>(status.pack_tid));
  metrics->pack_tid_seconds->Set(
      status.pack_tid == 0
          ? 0
          : absl::ToDoubleSeconds(common::TimeFromTid(status.pack_tid) - absl::UnixEpoch()));
  metrics->pack_pending_partitions->Set(static_cast<double>(status.pending_partitions.size()));
}

// Replication disabled (no peers factory).
class NoReplicationPeers final : public ReplicationPeers {
 public:
  absl::StatusOr<ReplicationTarget> Report(uint32_t, uint64_t) override {
    return absl::UnimplementedError("this storage node was built without replication");
  }
  absl::Status Fetch(const std::string&, const FetchRequest&,
                     const std::function<absl::Status(ReplicationChunk)>&) override {
    return absl::UnimplementedError("this storage node was built without replication");
  }
};

}  // namespace

// ---- Cells leaving and (re-)joining this node (docs/rebalancing.md) ----
namespace {

// How `next` changes the cells of `node_id` compared with `current`:
//  - `gone`: cells `current` has and `next` does not (DISCARDED): their
//    data goes once `next` is served;
//  - `fresh`: OUT_OF_DATE cells of `next` that `current` lacks or holds
//    CORRUPTED (a cell added, or re-added for repair): whatever this node
//    still has of the partition is from before, so it goes before `next`
//    is served and the cell replicates from tid 0 (the master expects
//    that: the cell's first progress report must be 0).
void ClassifyCellChanges(const PartitionTable& current, const PartitionTable& next,
                         uint32_t node_id, std::vector<uint32_t>* gone,
                         std::vector<uint32_t>* fresh) {
  if (node_id == 0 || current.num_partitions() != next.num_partitions()) return;
  for (uint32_t p = 0; p < next.num_partitions(); ++p) {
    const ::cellar::v1::CellState before = current.CellStateOf(p, node_id);
    const ::cellar::v1::CellState after = next.CellStateOf(p, node_id);
    if (before != ::cellar::v1::CELL_STATE_UNSPECIFIED &&
        after == ::cellar::v1::CELL_STATE_UNSPECIFIED) {
      gone->push_back(p);
    } else if (after == ::cellar::v1::CELL_OUT_OF_DATE &&
               (before == ::cellar::v1::CELL_STATE_UNSPECIFIED ||
                before == ::cellar::v1::CELL_CORRUPTED)) {
      fresh->push_back(p);
    }
  }
}

// Deletes the data of `partitions` and their replication progress (the
// replicator first, so that no round in progress writes after the
// deletion). Errors are logged: the cell's data stays, and a re-created
// cell is reset again when the master answers CELL_RECREATED.
void ResetCells(StorageBackend* backend, Replicator* replicator,
                const std::vector<uint32_t>& partitions, uint64_t ptid, const char* why) {
  for (uint32_t p : partitions) {
    absl::Status s = replicator->ForgetPartition(p);
    if (s.ok()) s = backend->DeletePartition(p);
    if (s.ok()) {
      CELLAR_LOG(INFO) << "partition " << p << ": cell " << why << " (ptid " << ptid
                       << "): its data and replication progress were deleted";
    } else {
      CELLAR_LOG(ERROR) << "partition " << p << ": cell " << why << " (ptid " << ptid
                        << "), but deleting its data failed: " << s.message();
    }
  }
}

}  // namespace

StorageNode::StorageNode(StorageNodeOptions options,
                         std::unique_ptr<StorageBackend> backend,
                         std::unique_ptr<MasterLink> master, common::Clock* clock,
                         StorageMetrics* metrics, const PeersFactory& make_peers)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      master_(std::move(master)),
      clock_(clock),
      metrics_(metrics),
      pt_(std::make_shared<const PartitionTable>()) {
  WriteBatcherOptions batcher_options;
  batcher_options.writer_threads = options_.writer_threads;
  if (metrics_ != nullptr) {
    prometheus::Histogram* histogram = metrics_->write_batch_size;
    batcher_options.on_batch = [histogram](size_t n) {
      histogram->Observe(static_cast<double>(n));
    };
  }
  batcher_ = std::make_unique<WriteBatcher>(backend_.get(), batcher_options);
  TransactionManagerOptions tm_options;
  tm_options.max_object_bytes = options_.max_object_bytes;
  tm_options.unvoted_timeout = options_.unvoted_timeout;
  transactions_ = std::make_unique<TransactionManager>(
      backend_.get(), &locks_, batcher_.get(), tm_options, clock_);
  if (make_peers) peers_ = make_peers(master_.get(), [this] { return node_id(); });
  if (peers_ == nullptr) peers_ = std::make_unique<NoReplicationPeers>();
  replicator_ = std::make_unique<Replicator>(
      backend_.get(), peers_.get(), options_.replication, metrics_,
      [this] { return client_activity_.load(std::memory_order_relaxed); });
  if (metrics_ != nullptr) metrics_->node_up->Set(1);
}

absl::StatusOr<std::unique_ptr<StorageNode>> StorageNode::Open(
    StorageNodeOptions options, std::unique_ptr<StorageBackend> backend,
    std::unique_ptr<MasterLink> master, common::Clock* clock,
    StorageMetrics* metrics, PeersFactory make_peers) {
  if (backend == nullptr) return absl::InvalidArgumentError("no storage backend");
  if (master == nullptr) return absl::InvalidArgumentError("no master link");
  // Every backend call is counted (backend errors, pool use).
  auto instrumented = std::make_unique<InstrumentedBackend>(std::move(backend), metrics);
  InstrumentedBackend* const counting = instrumented.get();
  std::unique_ptr<StorageNode> node(new StorageNode(std::move(options), std::move(instrumented),
                                                    std::move(master), clock, metrics,
                                                    make_peers));
  node->instrumented_ = counting;
  CELLAR_RETURN_IF_ERROR(node->LoadPersistedState());
  StorageNode* const self = node.get();
  StorageMetrics* const m = metrics;
  CELLAR_ASSIGN_OR_RETURN(
      node->packer_,
      Packer::Open(node->backend_.get(), node->options_.pack,
                   [self] { return self->CellsToPack(); },
                   [m](const PackChunk& chunk) {
                     if (m == nullptr) return;
                     m->pack_chunks->Increment();
                     m->pack_rows_removed->Increment(static_cast<double>(chunk.rows_removed));
                     m->pack_bytes_reclaimed->Increment(
                         static_cast<double>(chunk.bytes_removed));
                   }));
  // A cell whose data is deleted to be replicated again is packed again.
  Packer* const packer = node->packer_.get();
  node->replicator_->set_on_forget([packer](uint32_t p) { return packer->ForgetPartition(p); });
  // Tokens of the cluster table work before the master is reached.
  if (node->options_.cluster_tokens != nullptr) {
    absl::StatusOr<::cellar::v1::ClusterTokenTable> tokens = node->StoredTokenTable();
    if (tokens.ok() && common::ValidateTokenTable(*tokens).ok()) {
      node->options_.cluster_tokens->Replace(*tokens);
    } else {
      CELLAR_LOG(WARNING) << "the stored token table is not usable: "
                          << (tokens.ok() ? common::ValidateTokenTable(*tokens) : tokens.status());
    }
  }
  node->LoadStoredFeatureFlags();
  return node;
}

StorageNode::~StorageNode() {
  BeginShutdown();
  Close();
}

absl::Status StorageNode::LoadPersistedState() {
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> id, backend_->GetConfig(kNodeIdKey));
  uint32_t node_id = 0;
  if (id.has_value() && !absl::SimpleAtoi(*id, &node_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the database has a malformed node id \"", *id, "\""));
  }
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> e, backend_->GetConfig(kMasterEpochKey));
  uint64_t epoch = 0;
  if (e.has_value() && !absl::SimpleAtoi(*e, &epoch)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the database has a malformed master epoch \"", *e, "\""));
  }
  CELLAR_ASSIGN_OR_RETURN(PartitionTableRecord record, backend_->LoadPartitionTable());
  std::shared_ptr<const PartitionTable> table = std::make_shared<const PartitionTable>();
  if (record.ptid > 0) {
    CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> p,
                            backend_->GetConfig(kNumPartitionsKey));
    CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> r,
                            backend_->GetConfig(kNumReplicasKey));
    uint32_t num_partitions = 0, num_replicas = 0;
    if (!p.has_value() || !absl::SimpleAtoi(*p, &num_partitions) ||
        num_partitions == 0 || (r.has_value() && !absl::SimpleAtoi(*r, &num_replicas))) {
      CELLAR_LOG(WARNING) << "the persisted partition table (ptid " << record.ptid
                          << ") has no valid partition count: ignoring it";
    } else {
      ::cellar::v1::PartitionTable proto;
      proto.set_ptid(record.ptid);
      proto.set_num_partitions(num_partitions);
      proto.set_num_replicas(num_replicas);
      std::map<uint32_t, std::vector<const CellRecord*>> rows;
      for (const CellRecord& c : record.cells) rows[c.partition].push_back(&c);
      for (const auto& [partition, cells] : rows) {
        auto* row = proto.add_rows();
        row->set_partition(partition);
        for (const CellRecord* c : cells) {
          auto* cell = row->add_cells();
          cell->set_node_id(c->node_id);
          cell->set_state(static_cast<::cellar::v1::CellState>(c->state));
        }
      }
      auto parsed = PartitionTable::FromProto(proto);
      if (!parsed.ok()) {
        CELLAR_LOG(WARNING) << "the persisted partition table is malformed ("
                            << parsed.status().message() << "): ignoring it";
      } else {
        table = std::make_shared<const PartitionTable>(*std::move(parsed));
      }
    }
  }
  // In doubt: they hold their object locks again until the cluster
  // decides (lock or abort).
  CELLAR_ASSIGN_OR_RETURN(std::vector<VotedTransaction> voted, backend_->ListVotedObjects());
  transactions_->RecoverVoted(voted);
  {
    absl::MutexLock l(&mu_);
    node_id_ = node_id;
    epoch_ = persisted_epoch_ = epoch;
    pt_ = table;
    persisted_ptid_ = table->ptid();
  }
  if (metrics_ != nullptr) metrics_->ptid->Set(static_cast<double>(table->ptid()));
  CELLAR_LOG(INFO) << "storage node opened (" << backend_->Kind() << "): "
                   << (node_id != 0 ? NodeName(node_id) : std::string("no node id yet"))
                   << ", ptid " << table->ptid() << ", master epoch " << epoch << ", "
                   << voted.size() << " voted transaction(s) in doubt";
  return absl::OkStatus();
}

void StorageNode::SetServingCallback(std::function<void(bool)> callback) {
  InstallStateCallback(&serving_callback_, &last_serving_, std::move(callback));
}

void StorageNode::SetReadyCallback(std::function<void(bool)> callback) {
  InstallStateCallback(&ready_callback_, &last_ready_, std::move(callback));
}

void StorageNode::InstallStateCallback(std::function<void(bool)>* slot, const bool* last,
                                       std::function<void(bool)> callback) {
  absl::MutexLock c(&callback_mu_);
  bool now;
  {
    absl::MutexLock l(&mu_);
    *slot = callback;
    now = *last;
  }
  if (callback) callback(now);
}

void StorageNode::StartMasterLoop(const std::string& advertise_address) {
  advertise_address_ = advertise_address;
  master_thread_ = std::thread([this] { MasterLoop(); });
  stats_thread_ = std::thread([this] { StatsLoop(); });
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  replicator_->Start([this] { return CellsToReplicate(); });
  packer_->Start();
}

std::vector<uint32_t> StorageNode::CellsToPack() const {
  std::vector<uint32_t> out;
  absl::MutexLock l(&mu_);
  if (stopping_ || node_id_ == 0) return out;
  for (uint32_t p = 0; p < pt_->num_partitions(); ++p) {
    const ::cellar::v1::CellState state = pt_->CellStateOf(p, node_id_);
    if (state == ::cellar::v1::CELL_UP_TO_DATE || state == ::cellar::v1::CELL_FEEDING) {
      out.push_back(p);
    }
  }
  return out;
}

absl::StatusOr<LoadedObject> StorageNode::PackedAsNotFound(absl::StatusOr<LoadedObject> loaded,
                                                           uint32_t partition,
                                                           uint64_t tid) const {
  if (loaded.status().code() != absl::StatusCode::kNotFound ||
      common::ErrorReason(loaded.status()) == common::kReasonObjectDeleted) {
    return loaded;
  }
  const uint64_t packed = packer_->PackedTid(partition);
  if (packed == 0 || tid >= packed) return loaded;
  return ErrorWithReason(
      absl::StatusCode::kNotFound, common::kReasonRevisionPacked,
      absl::StrCat(loaded.status().message(), " (partition ", partition,
                   " is packed at tid ", TidHex(packed),
                   ": older revisions may have been removed)"));
}

absl::StatusOr<PackStatus> StorageNode::Pack(uint64_t epoch, uint64_t pack_tid) {
  if (epoch == 0) return absl::InvalidArgumentError("epoch: must not be 0");
  if (pack_tid > common::kMaxTid) {
    return absl::InvalidArgumentError(absl::StrCat("pack_tid ", pack_tid, " is not a valid tid"));
  }
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  if (pack_tid != 0) CELLAR_RETURN_IF_ERROR(packer_->Request(pack_tid));
  PackStatus status = packer_->Status();
  SetPackGauges(metrics_, status);
  return status;
}

std::vector<uint32_t> StorageNode::CellsToReplicate() const {
  std::vector<uint32_t> out;
  absl::MutexLock l(&mu_);
  if (stopping_ || link_state_ != LinkState::kRegistered || node_id_ == 0 ||
      cluster_state_ != ::cellar::v1::CLUSTER_RUNNING) {
    return out;
  }
  for (uint32_t p = 0; p < pt_->num_partitions(); ++p) {
    if (pt_->CellStateOf(p, node_id_) == ::cellar::v1::CELL_OUT_OF_DATE) out.push_back(p);
  }
  return out;
}

bool StorageNode::ServingLocked() const {
  return !stopping_ && link_state_ == LinkState::kRegistered && pt_->ptid() > 0 &&
         cluster_state_ == ::cellar::v1::CLUSTER_RUNNING;
}

bool StorageNode::ReadyLocked() const {
  if (!ServingLocked()) return false;
  for (uint32_t p = 0; p < pt_->num_partitions(); ++p) {
    if (pt_->CellStateOf(p, node_id_) == ::cellar::v1::CELL_OUT_OF_DATE) return false;
  }
  return true;
}

bool StorageNode::serving() const {
  absl::MutexLock l(&mu_);
  return ServingLocked();
}

absl::Status StorageNode::WaitUntilServing(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  if (mu_.AwaitWithTimeout(absl::Condition(this, &StorageNode::ServingLocked), timeout)) {
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "storage node not serving after ", absl::FormatDuration(timeout),
      ": master link ", link_message_, ", ptid ", pt_->ptid(), ", cluster ",
      ClusterStateName(cluster_state_)));
}

uint32_t StorageNode::node_id() const {
  absl::MutexLock l(&mu_);
  return node_id_;
}

uint64_t StorageNode::epoch() const {
  absl::MutexLock l(&mu_);
  return epoch_;
}

ClusterState StorageNode::cluster_state() const {
  absl::MutexLock l(&mu_);
  return cluster_state_;
}

std::shared_ptr<const PartitionTable> StorageNode::partition_table() const {
  absl::MutexLock l(&mu_);
  return pt_;
}

bool StorageNode::Stopping() const {
  absl::MutexLock l(&mu_);
  return stopping_;
}

// --- Data path ---

absl::StatusOr<CellView> StorageNode::View() const {
  absl::MutexLock l(&mu_);
  if (closed_) return absl::UnavailableError("storage node is shut down");
  if (pt_->ptid() == 0 || pt_->num_partitions() == 0 || node_id_ == 0) {
    return absl::UnavailableError(
        "this storage node has no partition table yet (the cluster has not "
        "started, or the node has not registered with the master)");
  }
  return CellView(node_id_, pt_);
}

namespace {

absl::Status StaleEpoch(uint64_t epoch, uint64_t seen) {
  return ErrorWithReason(
      absl::StatusCode::kFailedPrecondition, common::kReasonStaleEpoch,
      absl::StrCat("call carries master epoch ", epoch, " but this node has seen epoch ",
                   seen, " (a deposed primary?)"));
}

}  // namespace

absl::Status StorageNode::CheckEpoch(uint64_t epoch) {
  {
    absl::MutexLock l(&mu_);
    if (closed_) return absl::UnavailableError("storage node is shut down");
    if (epoch < epoch_) return StaleEpoch(epoch, epoch_);
    if (epoch <= persisted_epoch_) return absl::OkStatus();  // the usual case
  }
  return RaiseAndPersistEpoch(epoch, /*fence=*/true);
}

absl::Status StorageNode::RaiseAndPersistEpoch(uint64_t epoch, bool fence) {
  if (epoch > common::kMaxEpoch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "epoch: ", epoch, " is beyond any master epoch (at most ", common::kMaxEpoch, ")"));
  }
  absl::MutexLock w(&epoch_mu_);
  uint64_t target;
  {
    absl::MutexLock l(&mu_);
    if (fence && epoch < epoch_) return StaleEpoch(epoch, epoch_);
    epoch_ = std::max(epoch_, epoch);
    if (epoch_ <= persisted_epoch_) return absl::OkStatus();
    target = epoch_;
  }
  absl::Status s = backend_->SetConfig(kMasterEpochKey, absl::StrCat(target));
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot persist master epoch ", target, " (fencing must survive a restart): ",
        s.message()));
  }
  absl::MutexLock l(&mu_);
  persisted_epoch_ = std::max(persisted_epoch_, target);
  return absl::OkStatus();
}

void StorageNode::UpdateOpenGauge() {
  if (metrics_ != nullptr) {
    metrics_->open_transactions->Set(
        static_cast<double>(transactions_->open_transactions()));
  }
}

absl::Status StorageNode::Store(uint64_t ttid, uint32_t client_node_id,
                                std::vector<StoreObject> objects, bool vote,
                                const std::optional<TransactionMetadata>& metadata,
                                absl::Time lock_deadline, StoreReceipt* receipt) {
  NoteClientActivity();
  const absl::Time start = absl::Now();
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  const size_t count = objects.size();
  size_t bytes = 0;
  std::vector<uint32_t> partitions;
  for (const StoreObject& o : objects) {
    bytes += o.data.size();
    partitions.push_back(view.PartitionOf(o.oid));
  }
  absl::Status s = absl::OkStatus();
  if (count > 0 || !vote) {
    s = transactions_->Store(ttid, client_node_id, std::move(objects), view,
                             lock_deadline);
  }
  if (ErrorReason(s) == common::kReasonConflict) {
    // Judged on `view`: a cell dropped meanwhile may have answered from
    // data being deleted.
    for (uint32_t p : partitions) {
      absl::Status dropped = DroppedCellError(p, /*readable=*/false, "store");
      if (!dropped.ok()) {
        s = dropped;
        break;
      }
    }
  }
  if (metrics_ != nullptr) {
    if (s.ok()) {
      metrics_->stores->Increment(static_cast<double>(count));
      metrics_->store_bytes->Increment(static_cast<double>(bytes));
    } else if (ErrorReason(s) == common::kReasonConflict) {
      metrics_->conflicts->Increment();
    } else if (ErrorReason(s) == common::kReasonLockContention) {
      metrics_->lock_contention->Increment();
    }
  }
  if (s.ok() && vote) {
    s = transactions_->Vote(ttid, client_node_id, metadata, view);
    if (s.ok() && metrics_ != nullptr) metrics_->votes->Increment();
  }
  if (s.ok() && receipt != nullptr) {
    // TransactionManager::Store checked exactly the objects of `view`'s
    // readable cells.
    receipt->checked_ptid = view.ptid();
    std::sort(partitions.begin(), partitions.end());
    partitions.erase(std::unique(partitions.begin(), partitions.end()), partitions.end());
    for (uint32_t p : partitions) {
      if (view.Readable(p)) receipt->checked_partitions.push_back(p);
    }
  }
  UpdateOpenGauge();
  data_path_.RecordStore(s, absl::Now() - start);
  return s;
}

absl::Status StorageNode::Vote(uint64_t ttid, uint32_t client_node_id,
                               const std::optional<TransactionMetadata>& metadata) {
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  absl::Status s = transactions_->Vote(ttid, client_node_id, metadata, view);
  if (s.ok() && metrics_ != nullptr) metrics_->votes->Increment();
  UpdateOpenGauge();
  return s;
}

absl::Status StorageNode::Abort(uint64_t ttid, uint64_t epoch) {
  if (epoch != 0) {
    CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  } else {
    absl::MutexLock l(&mu_);
    if (closed_) return absl::UnavailableError("storage node is shut down");
  }
  const bool known = transactions_->StateOf(ttid).has_value();
  // Epoch 0 (a client): only a transaction not voted here.
  absl::Status s = transactions_->Abort(ttid, /*drop_voted=*/epoch != 0);
  if (s.ok() && known && metrics_ != nullptr) metrics_->aborts->Increment();
  UpdateOpenGauge();
  return s;
}

absl::Status StorageNode::Lock(uint64_t epoch, uint64_t ttid, uint64_t tid,
                               uint64_t min_ptid,
                               std::optional<std::vector<uint64_t>>* stored_oids,
                               const std::vector<uint32_t>& partitions) {
  std::vector<LockRequest> locks(1);
  locks[0].epoch = epoch;
  locks[0].ttid = ttid;
  locks[0].tid = tid;
  locks[0].min_ptid = min_ptid;
  locks[0].partitions = partitions;
  LockMany(locks);
  if (stored_oids != nullptr) *stored_oids = std::move(locks[0].stored_oids);
  return locks[0].result;
}

void StorageNode::LockMany(std::vector<LockRequest>& locks) {
  // Fencing first, each lock with its own epoch.
  uint64_t min_ptid = 0;
  for (LockRequest& lock : locks) {
    lock.stored_oids.reset();
    lock.result = CheckEpoch(lock.epoch);
    if (lock.result.ok()) min_ptid = std::max(min_ptid, lock.min_ptid);
  }
  absl::Status fetched;
  if (min_ptid > persisted_ptid()) {
    // A commit was decided on a newer table (cells that did not vote are
    // OUT_OF_DATE in it): hold it durably before the transaction is
    // committed here, so that a restarted master adopting the highest
    // table never shows such a cell readable.
    fetched = RefetchTable(/*only_newer=*/true);
  }
  const uint64_t persisted = persisted_ptid();
  const uint32_t num_partitions = partition_table()->num_partitions();
  std::vector<TransactionManager::LockItem> items;
  // items[i] locks locking[i].lock, whose state was locking[i].before.
  struct Locking {
    LockRequest* lock;
    std::optional<TransactionManager::State> before;
  };
  std::vector<Locking> locking;
  items.reserve(locks.size());
  locking.reserve(locks.size());
  for (LockRequest& lock : locks) {
    if (!lock.result.ok()) continue;
    if (lock.min_ptid > persisted) {
      lock.result = absl::UnavailableError(absl::StrCat(
          "this node's persisted partition table (ptid ", persisted,
          ") is older than the one the commit was decided on (ptid ", lock.min_ptid, ") and ",
          fetched.ok() ? std::string("the master did not provide it")
                       : absl::StrCat("re-fetching it failed: ", fetched.message())));
      continue;
    }
    if (num_partitions > 0 && lock.tid % num_partitions != lock.ttid % num_partitions) {
      // The transaction record lives in partition(ttid): its final tid must
      // map to the same partition (semantics.md, "Identifiers").
      lock.result = absl::InvalidArgumentError(absl::StrCat(
          "tid ", TidHex(lock.tid), " is not in the partition of ttid ", TidHex(lock.ttid),
          " (", num_partitions, " partitions)"));
      continue;
    }
    TransactionManager::LockItem& item = items.emplace_back();
    item.ttid = lock.ttid;
    item.tid = lock.tid;
    if (num_partitions > 0 && !lock.partitions.empty()) {
      item.scope.partitions = std::move(lock.partitions);
      item.scope.num_partitions = num_partitions;
    }
    locking.push_back(Locking{&lock, transactions_->StateOf(lock.ttid)});
  }
  if (items.empty()) return;
  transactions_->LockMany(items);
  for (size_t i = 0; i < items.size(); ++i) {
    LockRequest* lock = locking[i].lock;
    lock->result = std::move(items[i].result);
    lock->stored_oids = std::move(items[i].stored_oids);
    if (!lock->result.ok()) continue;
    if (metrics_ != nullptr && locking[i].before.has_value() &&
        *locking[i].before != TransactionManager::State::kLocked) {
      metrics_->commits->Increment();
    }
    DeleteLateLockedRecords(lock->ttid);
  }
}

absl::Status StorageNode::Unlock(uint64_t epoch, uint64_t ttid, uint64_t tid,
                                 bool forget_lock,
                                 const std::optional<std::vector<uint64_t>>& record_oids) {
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  TransactionManager::UnlockedRecord voted;
  absl::Status s = transactions_->Unlock(ttid, &voted);
  UpdateOpenGauge();
  if (s.ok() && record_oids.has_value() && tid != 0) {
    // Best effort, as the unlock: the commit stands either way.
    if (absl::Status c = CorrectRecordOids(tid, *record_oids, voted); !c.ok()) {
      CELLAR_LOG(WARNING) << "cannot correct the oids of transaction record "
                          << TidHex(tid) << ": " << c;
    }
  }
  if (s.ok() && forget_lock) {
    bool flush;
    {
      absl::MutexLock l(&forget_mu_);
      forget_.push_back(ttid);
      flush = forget_.size() >= 256;
    }
    if (flush) FlushForgottenLocks();
  }
  return s;
}

absl::Status StorageNode::CorrectRecordOids(uint64_t tid, std::vector<uint64_t> committed,
                                            const TransactionManager::UnlockedRecord& voted) {
  std::sort(committed.begin(), committed.end());
  committed.erase(std::unique(committed.begin(), committed.end()), committed.end());
  if (voted.known && !voted.oids.has_value()) return absl::OkStatus();  // no record here
  if (voted.known && *voted.oids == committed) return absl::OkStatus();  // the usual case
  std::optional<TransactionRecord> record;
  if (!voted.known) {
    // Unlocked already (a repeated unlock, or a release on registration),
    // or a vote recovered after a restart: the record itself says, if this
    // node holds it.
    CELLAR_ASSIGN_OR_RETURN(record, backend_->GetTransaction(tid));
    if (!record.has_value()) return absl::OkStatus();
    std::vector<uint64_t> listed = record->oids;
    std::sort(listed.begin(), listed.end());
    listed.erase(std::unique(listed.begin(), listed.end()), listed.end());
    if (listed == committed) return absl::OkStatus();
  }
  const uint32_t num_partitions = partition_table()->num_partitions();
  if (num_partitions == 0) return absl::OkStatus();
  const uint32_t partition =
      record.has_value() ? record->partition : static_cast<uint32_t>(tid % num_partitions);
  static common::LogRateLimit limit(absl::Seconds(10));
  if (uint64_t dropped = 0; limit.Allow(absl::Now(), &dropped)) {
    CELLAR_LOG(WARNING) << "transaction record " << TidHex(tid)
                        << " listed other oids than its commit committed (as its client sent "
                           "them): now lists the "
                        << committed.size() << " committed" << common::Dropped(dropped);
  }
  return backend_->SetTransactionOids(partition, tid, committed);
}

void StorageNode::FlushForgottenLocks() {
  std::vector<uint64_t> batch;
  {
    absl::MutexLock l(&forget_mu_);
    batch.swap(forget_);
  }
  if (batch.empty()) return;
  // Best effort: a record left behind costs a few bytes and is only read
  // by verification.
  absl::Status s = backend_->ForgetLocks(batch);
  if (!s.ok()) {
    CELLAR_LOG(WARNING) << "cannot drop " << batch.size() << " lock record(s): " << s;
  }
}

absl::StatusOr<TransactionManager::Known> StorageNode::TransactionOutcome(uint64_t ttid) {
  {
    absl::MutexLock l(&mu_);
    if (closed_) return absl::UnavailableError("storage node is shut down");
  }
  TransactionManager::Known known = transactions_->KnownState(ttid);
  if (known.kind != TransactionManager::Known::kNothing &&
      known.kind != TransactionManager::Known::kLocked) {
    return known;
  }
  // Locked: the lock record also tells which partitions it committed (a
  // later primary completes the commit with them).
  CELLAR_ASSIGN_OR_RETURN(LockRecord lock, backend_->GetLock(ttid));
  if (known.kind == TransactionManager::Known::kLocked) {
    if (lock.tid == known.tid) known.partitions = std::move(lock.partitions);
    return known;
  }
  uint64_t locked = lock.tid;
  if (locked == 0) {
    CELLAR_ASSIGN_OR_RETURN(locked, backend_->FindCommittedTid(ttid));
  } else {
    known.partitions = std::move(lock.partitions);
  }
  if (locked != 0) {
    known.kind = TransactionManager::Known::kLocked;
    known.tid = locked;
  }
  return known;
}

absl::StatusOr<std::vector<uint64_t>> StorageNode::CommittedOids(uint64_t tid) {
  const uint32_t num_partitions = partition_table()->num_partitions();
  if (num_partitions == 0 || tid == 0) return std::vector<uint64_t>{};
  CELLAR_ASSIGN_OR_RETURN(
      std::vector<TransactionRecord> records,
      backend_->ListTransactions(static_cast<uint32_t>(tid % num_partitions), tid, tid, 1));
  if (records.empty() || records.front().tid != tid) return std::vector<uint64_t>{};
  return std::move(records.front().oids);
}

absl::Status StorageNode::ServeReplication(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, const ChunkLimits& limits,
    const std::function<absl::Status(ReplicationChunk)>& emit) {
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  if (partition >= view.num_partitions()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: ", partition, " out of range (", view.num_partitions(), " partitions)"));
  }
  if (!view.Readable(partition)) {
    return ErrorWithReason(absl::StatusCode::kUnavailable, common::kReasonNotReadable,
                           view.NoCellMessage("readable", partition));
  }
  // Rule R11: an in-doubt vote may be a commit with a tid above its ttid
  // that this cell lacks; completeness is claimed only below it.
  if (const uint64_t v = transactions_->LowestInDoubtVote(partition, view.num_partitions());
      v != 0 && v <= max_tid) {
    if (v <= min_tid) {
      return ErrorWithReason(
          absl::StatusCode::kUnavailable, common::kReasonInDoubt,
          absl::StrCat("partition ", partition, " has a vote in doubt here (ttid ",
                       TidHex(v), ") until the master resolves it: use another source "
                       "or retry"));
    }
    max_tid = v - 1;
  }
  return StreamPartition(*backend_, partition, min_tid, max_tid, limits, emit);
}

absl::Status StorageNode::InDoubtError(uint64_t oid, uint64_t ttid) const {
  return ErrorWithReason(
      absl::StatusCode::kUnavailable, common::kReasonInDoubt,
      absl::StrCat("oid ", common::FormatOid(oid), " has a vote in doubt here (ttid ", TidHex(ttid),
                   ", it may have committed elsewhere) until the master resolves it: "
                   "read another replica or retry"));
}

absl::StatusOr<CellCheckResult> StorageNode::CheckCell(uint64_t epoch,
                                                       const CellCheckRequest& request) {
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  if (request.partition >= view.num_partitions()) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", request.partition,
                                                   " out of range (", view.num_partitions(),
                                                   " partitions)"));
  }
  if (!view.Readable(request.partition)) {
    return ErrorWithReason(absl::StatusCode::kUnavailable, common::kReasonNotReadable,
                           view.NoCellMessage("readable", request.partition));
  }
  return CellChecker(backend_.get()).Check(request);
}

absl::StatusOr<uint64_t> StorageNode::TruncateData(uint64_t epoch, uint64_t tid) {
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  const ClusterState state = cluster_state();
  if (state != ::cellar::v1::CLUSTER_RECOVERING) {
    return absl::FailedPreconditionError(
        absl::StrCat("cluster is ", ClusterStateName(state),
                     " on this node: truncate only applies while RECOVERING"));
  }
  const size_t forgotten = transactions_->ForgetAll();
  UpdateOpenGauge();
  // Before the data: a catch-up must not skip what is re-committed above.
  CELLAR_RETURN_IF_ERROR(
      replicator_->TruncateProgress(partition_table()->num_partitions(), tid));
  CELLAR_RETURN_IF_ERROR(backend_->Truncate(tid));
  CELLAR_ASSIGN_OR_RETURN(LastIds ids, backend_->GetLastIds());
  CELLAR_LOG(INFO) << "truncated after tid " << TidHex(tid) << " (" << forgotten
                   << " transaction(s) in commit forgotten); last tid now "
                   << TidHex(ids.last_tid);
  return ids.last_tid;
}

absl::Status StorageNode::SaveMasterState(uint64_t epoch, uint64_t oid_high_water) {
  if (epoch == 0) return absl::InvalidArgumentError("epoch: must not be 0");
  if (oid_high_water == 0) return absl::InvalidArgumentError("oid_high_water: must not be 0");
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  // One writer at a time, so that the mark only rises.
  absl::MutexLock l(&master_state_mu_);
  CELLAR_ASSIGN_OR_RETURN(uint64_t stored, OidHighWater());
  if (oid_high_water <= stored) return absl::OkStatus();
  return backend_->SetConfig(kOidHighWaterKey, absl::StrCat(oid_high_water));
}

absl::Status StorageNode::SaveTokenTable(uint64_t epoch,
                                         const ::cellar::v1::ClusterTokenTable& table) {
  if (epoch == 0) return absl::InvalidArgumentError("epoch: must not be 0");
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  return StoreTokenTable(table);
}

absl::Status StorageNode::StoreTokenTable(const ::cellar::v1::ClusterTokenTable& table) {
  if (table.version() == 0) return absl::InvalidArgumentError("table.version: must not be 0");
  CELLAR_RETURN_IF_ERROR(common::ValidateTokenTable(table));
  {
    // One writer at a time, so that the stored version only rises.
    absl::MutexLock l(&token_table_mu_);
    CELLAR_ASSIGN_OR_RETURN(::cellar::v1::ClusterTokenTable stored, StoredTokenTable());
    if (table.version() <= stored.version()) return absl::OkStatus();
    CELLAR_RETURN_IF_ERROR(backend_->SetConfig(kTokenTableKey, common::EncodeTokenTable(table)));
  }
  if (options_.cluster_tokens != nullptr) options_.cluster_tokens->Replace(table);
  CELLAR_LOG(INFO) << "cluster token table version " << table.version() << " ("
                   << table.tokens_size() << " token(s)) stored";
  return absl::OkStatus();
}

absl::StatusOr<::cellar::v1::ClusterTokenTable> StorageNode::StoredTokenTable() {
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> value, backend_->GetConfig(kTokenTableKey));
  if (!value.has_value()) return ::cellar::v1::ClusterTokenTable();
  return common::DecodeTokenTable(*value);
}

void StorageNode::FollowTokenTable() {
  absl::StatusOr<::cellar::v1::ClusterTokenTable> stored = StoredTokenTable();
  if (!stored.ok()) return;
  absl::StatusOr<::cellar::v1::GetTokenTableResponse> answer =
      master_->GetTokenTable(stored->version());
  if (!answer.ok() || !answer->changed()) return;
  if (absl::Status s = StoreTokenTable(answer->table()); !s.ok()) {
    CELLAR_LOG(WARNING) << "the master's token table (version " << answer->table().version()
                        << ") not stored: " << s;
  }
}

absl::StatusOr<uint64_t> StorageNode::OidHighWater() {
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          backend_->GetConfig(kOidHighWaterKey));
  uint64_t mark = 0;
  if (value.has_value() && !absl::SimpleAtoi(*value, &mark)) {
    return absl::DataLossError(
        absl::StrCat("config ", kOidHighWaterKey, " is not a number: \"", *value, "\""));
  }
  return mark;
}

absl::Status StorageNode::ReadableCell(const CellView& view, uint64_t oid,
                                       uint32_t* partition) const {
  *partition = view.PartitionOf(oid);
  if (!view.Readable(*partition)) {
    return ErrorWithReason(absl::StatusCode::kUnavailable, common::kReasonNotReadable,
                           view.NoCellMessage("readable", *partition));
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> StorageNode::CountLoad(absl::StatusOr<T> result, absl::Time start) {
  data_path_.RecordLoad(result.status(), absl::Now() - start);
  if (metrics_ == nullptr) return result;
  if (result.ok()) {
    metrics_->loads_ok->Increment();
  } else if (result.status().code() == absl::StatusCode::kNotFound) {
    metrics_->loads_not_found->Increment();
  } else if (result.status().code() == absl::StatusCode::kUnavailable) {
    metrics_->loads_unavailable->Increment();
  } else {
    metrics_->loads_error->Increment();
  }
  return result;
}

absl::Status StorageNode::MaybeInjectLoadFault(uint64_t oid) {
  const double ratio = options_.fault_load_error_ratio;
  if (ratio <= 0) return absl::OkStatus();
  {
    absl::MutexLock l(&fault_mu_);
    if (ratio < 1 && !absl::Bernoulli(fault_bits_, ratio)) return absl::OkStatus();
  }
  return ErrorWithReason(absl::StatusCode::kUnavailable, common::kReasonFaultInjected,
                         absl::StrCat("load of ", common::FormatOid(oid),
                                      " failed on purpose (fault injection: "
                                      "--fault_load_error_ratio=",
                                      ratio, "): try another replica"));
}

absl::Status StorageNode::DroppedCellError(uint32_t partition, bool readable,
                                           const char* what) const {
  absl::StatusOr<CellView> now = View();
  if (now.ok() && (readable ? now->Readable(partition) : now->Writable(partition))) {
    return absl::OkStatus();
  }
  return ErrorWithReason(absl::StatusCode::kUnavailable, common::kReasonNotReadable,
                         absl::StrCat("the cell of partition ", partition,
                                      " was dropped from this node during the ", what,
                                      ": use another cell"));
}

namespace {

// A deletion record (no data, after resolving undo back-pointers) is not
// an object: NOT_FOUND (OBJECT_DELETED), naming the deleting serial.
absl::StatusOr<LoadedObject> DeletionAsNotFound(absl::StatusOr<LoadedObject> loaded) {
  if (!loaded.ok() || !loaded->data.empty()) return loaded;
  return ErrorWithReason(absl::StatusCode::kNotFound, common::kReasonObjectDeleted,
                         absl::StrCat("object ", common::FormatOid(loaded->oid),
                                      " was deleted by transaction ", TidHex(loaded->serial)));
}

}  // namespace

absl::StatusOr<LoadedObject> StorageNode::LoadBefore(uint64_t oid, uint64_t before_tid) {
  NoteClientActivity();
  const absl::Time start = absl::Now();
  if (absl::Status fault = MaybeInjectLoadFault(oid); !fault.ok()) {
    return CountLoad<LoadedObject>(fault, start);
  }
  auto view = View();
  if (!view.ok()) return CountLoad<LoadedObject>(view.status(), start);
  uint32_t partition;
  absl::Status s = ReadableCell(*view, oid, &partition);
  if (!s.ok()) return CountLoad<LoadedObject>(s, start);
  if (const uint64_t v = transactions_->InDoubtVoteOn(oid); v != 0 && before_tid > v) {
    return CountLoad<LoadedObject>(InDoubtError(oid, v), start);
  }
  absl::StatusOr<LoadedObject> loaded = PackedAsNotFound(
      DeletionAsNotFound(backend_->LoadBefore(partition, oid, before_tid)), partition,
      before_tid == 0 ? 0 : before_tid - 1);
  if (loaded.status().code() == absl::StatusCode::kNotFound) {
    absl::Status dropped = DroppedCellError(partition, /*readable=*/true, "load");
    if (!dropped.ok()) loaded = dropped;
  }
  auto result = CountLoad(VerifyLoaded(std::move(loaded)), start);
  if (result.ok() && metrics_ != nullptr) {
    metrics_->load_bytes->Increment(static_cast<double>(result->data.size()));
  }
  return result;
}

std::vector<absl::StatusOr<LoadedObject>> StorageNode::LoadManyBefore(
    const std::vector<uint64_t>& oids, uint64_t before_tid, uint64_t max_bytes) {
  std::vector<absl::StatusOr<LoadedObject>> results;
  uint64_t bytes = 0;
  for (uint64_t oid : oids) {
    if (bytes >= max_bytes) break;
    results.push_back(LoadBefore(oid, before_tid));
    if (results.back().ok()) bytes += results.back()->data.size();
  }
  return results;
}

absl::StatusOr<LoadedObject> StorageNode::LoadSerial(uint64_t oid, uint64_t serial) {
  NoteClientActivity();
  const absl::Time start = absl::Now();
  if (absl::Status fault = MaybeInjectLoadFault(oid); !fault.ok()) {
    return CountLoad<LoadedObject>(fault, start);
  }
  auto view = View();
  if (!view.ok()) return CountLoad<LoadedObject>(view.status(), start);
  uint32_t partition;
  absl::Status s = ReadableCell(*view, oid, &partition);
  if (!s.ok()) return CountLoad<LoadedObject>(s, start);
  absl::StatusOr<LoadedObject> loaded = PackedAsNotFound(
      DeletionAsNotFound(backend_->LoadSerial(partition, oid, serial)), partition, serial);
  if (loaded.status().code() == absl::StatusCode::kNotFound) {
    absl::Status dropped = DroppedCellError(partition, /*readable=*/true, "load");
    if (!dropped.ok()) loaded = dropped;
  }
  if (loaded.status().code() == absl::StatusCode::kNotFound &&
      common::ErrorReason(loaded.status()) != common::kReasonObjectDeleted) {
    // The serial may be the tid an in-doubt vote committed with elsewhere.
    if (const uint64_t v = transactions_->InDoubtVoteOn(oid); v != 0 && serial > v) {
      loaded = InDoubtError(oid, v);
    }
  }
  auto result = CountLoad(VerifyLoaded(std::move(loaded)), start);
  if (result.ok() && metrics_ != nullptr) {
    metrics_->load_bytes->Increment(static_cast<double>(result->data.size()));
  }
  return result;
}

absl::StatusOr<std::vector<HistoryEntry>> StorageNode::History(uint64_t oid,
                                                               uint32_t limit) {
  NoteClientActivity();
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  uint32_t partition;
  CELLAR_RETURN_IF_ERROR(ReadableCell(view, oid, &partition));
  CELLAR_ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries,
                          backend_->History(partition, oid, limit));
  if (entries.empty()) {
    CELLAR_RETURN_IF_ERROR(DroppedCellError(partition, /*readable=*/true, "history read"));
    return ErrorWithReason(absl::StatusCode::kNotFound, common::kReasonNoSuchObject,
                           absl::StrCat("object ", common::FormatOid(oid),
                                        " has no committed revision"));
  }
  return entries;
}

absl::StatusOr<std::vector<TransactionRecord>> StorageNode::LastTransactions(
    uint32_t limit, uint64_t before_tid) {
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  CELLAR_ASSIGN_OR_RETURN(std::vector<TransactionRecord> records,
                          backend_->LastTransactions(limit, before_tid));
  records.erase(std::remove_if(records.begin(), records.end(),
                               [&](const TransactionRecord& r) {
                                 return !view.Readable(r.partition);
                               }),
                records.end());
  return records;
}

absl::StatusOr<TransactionRecord> StorageNode::GetTransaction(uint64_t tid) {
  NoteClientActivity();
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  // The record lives in partition(ttid), which is partition(tid): the
  // master gives every transaction a tid in its ttid's partition.
  uint32_t partition;
  CELLAR_RETURN_IF_ERROR(ReadableCell(view, tid, &partition));
  CELLAR_ASSIGN_OR_RETURN(std::optional<TransactionRecord> record,
                          backend_->GetTransaction(tid));
  if (record.has_value() && record->partition == partition) return *std::move(record);
  CELLAR_RETURN_IF_ERROR(DroppedCellError(partition, /*readable=*/true, "transaction read"));
  return ErrorWithReason(absl::StatusCode::kNotFound, common::kReasonNoSuchTransaction,
                         absl::StrCat("no committed transaction ", TidHex(tid),
                                      " (its record would be in partition ", partition,
                                      ", readable on node ", NodeName(view.node_id()), ")"));
}

absl::StatusOr<TransactionPage> StorageNode::ScanTransactions(
    const std::vector<uint32_t>& partitions, uint64_t min_tid, uint64_t max_tid,
    uint32_t limit) {
  NoteClientActivity();
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  std::vector<bool> asked(view.num_partitions(), false);
  for (uint32_t p : partitions) {
    if (p >= view.num_partitions()) {
      return absl::InvalidArgumentError(absl::StrCat("partitions: ", p, " is out of range (",
                                                     view.num_partitions(), " partitions)"));
    }
    if (!view.Readable(p)) {
      return ErrorWithReason(absl::StatusCode::kUnavailable, common::kReasonNotReadable,
                             view.NoCellMessage("readable", p));
    }
    asked[p] = true;
  }
  CELLAR_ASSIGN_OR_RETURN(std::vector<TransactionRecord> scanned,
                          backend_->ScanTransactions(min_tid, max_tid, limit));
  // A cell dropped while the page was read may have lost records of it.
  for (uint32_t p : partitions) {
    CELLAR_RETURN_IF_ERROR(DroppedCellError(p, /*readable=*/true, "transaction scan"));
  }
  TransactionPage page;
  if (scanned.size() >= limit && !scanned.empty() && scanned.back().tid < max_tid) {
    page.next_min_tid = scanned.back().tid + 1;
  }
  for (TransactionRecord& t : scanned) {
    if (t.partition < asked.size() && asked[t.partition]) {
      page.transactions.push_back(std::move(t));
    }
  }
  return page;
}

absl::StatusOr<NodeCellStats> StorageNode::CellStatsNow() {
  CELLAR_ASSIGN_OR_RETURN(CellView view, View());
  CELLAR_ASSIGN_OR_RETURN(std::vector<PartitionStats> stats, backend_->GetPartitionStats());
  NodeCellStats out;
  out.ptid = view.ptid();
  auto it = stats.begin();
  for (uint32_t p = 0; p < view.num_partitions(); ++p) {
    while (it != stats.end() && it->partition < p) ++it;
    if (view.StateOf(p) == ::cellar::v1::CELL_STATE_UNSPECIFIED) continue;
    CellStats cell;
    cell.partition = p;
    cell.readable = view.Readable(p);
    if (it != stats.end() && it->partition == p) {
      cell.objects = it->objects;
      cell.revisions = it->revisions;
      cell.bytes = it->bytes;
    }
    out.cells.push_back(cell);
  }
  return out;
}

absl::StatusOr<NodeStatus> StorageNode::Status(bool with_counts) {
  NodeStatus status;
  {
    absl::MutexLock l(&mu_);
    if (closed_) return absl::UnavailableError("storage node is shut down");
    status.node_id = node_id_;
    status.ptid = pt_->ptid();
    status.cluster_state = cluster_state_;
    switch (link_state_) {
      case LinkState::kRegistered:
        status.master_link = "registered";
        break;
      case LinkState::kConnecting:
        status.master_link = absl::StrCat("connecting (", link_message_, ")");
        break;
      case LinkState::kRefused:
        status.master_link = absl::StrCat("refused: ", link_message_);
        break;
    }
  }
  status.backend = backend_->Kind();
  BackendStats stats;
  if (with_counts) {
    CELLAR_ASSIGN_OR_RETURN(LastIds ids, backend_->GetLastIds());
    status.last_tid = ids.last_tid;
    status.last_oid = ids.last_oid;
    CELLAR_ASSIGN_OR_RETURN(stats, backend_->GetStats());
    status.object_count = stats.object_count;
    status.transaction_count = stats.transaction_count;
  }
  status.open_transactions =
      static_cast<uint32_t>(transactions_->open_transactions());
  status.replication = replicator_->Status();
  status.backend_errors_total = instrumented_ != nullptr ? instrumented_->errors_total() : 0;
  if (auto disk = backend_->GetDiskUsage(); disk.ok()) status.disk = *disk;
  status.now = clock_->Now();
  if (metrics_ != nullptr && with_counts) {
    metrics_->transactions->Set(static_cast<double>(stats.transaction_count));
    metrics_->data_bytes->Set(static_cast<double>(stats.data_bytes));
  }
  return status;
}

// --- Master loop ---

void StorageNode::SetLink(LinkState state, const std::string& message) {
  bool changed;
  {
    absl::MutexLock l(&mu_);
    changed = state != link_state_ || message != link_message_;
    link_state_ = state;
    link_message_ = message;
  }
  if (metrics_ != nullptr) {
    metrics_->master_connected->Set(state == LinkState::kRegistered ? 1 : 0);
  }
  if (changed) {
    // Logged once per change, not once per retry.
    switch (state) {
      case LinkState::kRegistered:
        CELLAR_LOG(INFO) << message;
        break;
      case LinkState::kConnecting:
        CELLAR_LOG(WARNING) << "master link: " << message << " (retrying)";
        break;
      case LinkState::kRefused:
        CELLAR_LOG(ERROR) << "the master refused this storage node: " << message
                          << " -- fix the configuration (--cluster_name, version); "
                             "retrying every "
                          << absl::FormatDuration(options_.refused_retry);
        break;
    }
  }
  UpdateServing();
}

void StorageNode::UpdateServing() {
  absl::MutexLock c(&callback_mu_);
  bool serving, ready, serving_changed, ready_changed;
  std::function<void(bool)> serving_callback, ready_callback;
  {
    absl::MutexLock l(&mu_);
    serving = ServingLocked();
    ready = ReadyLocked();
    serving_changed = serving != last_serving_;
    ready_changed = ready != last_ready_;
    last_serving_ = serving;
    last_ready_ = ready;
    serving_callback = serving_callback_;
    ready_callback = ready_callback_;
  }
  if (serving_changed) {
    CELLAR_LOG(INFO) << "storage node " << (serving ? "serving" : "not serving");
    if (serving_callback) serving_callback(serving);
  }
  if (ready_changed && ready_callback) ready_callback(ready);
}

absl::Status StorageNode::CheckTtidToken(uint64_t ttid,
                                         absl::string_view token) const {
  absl::MutexLock l(&mu_);
  return common::CheckTtidToken(ttid_key_, ttid, token);
}

absl::Status StorageNode::RaiseEpoch(uint64_t epoch) {
  absl::Status s = RaiseAndPersistEpoch(epoch, /*fence=*/false);
  if (!s.ok()) CELLAR_LOG(ERROR) << s.message();
  return s;
}

void StorageNode::SetClusterState(ClusterState state) {
  {
    absl::MutexLock l(&mu_);
    if (cluster_state_ == state) return;
    cluster_state_ = state;
  }
  CELLAR_LOG(INFO) << "cluster state " << ClusterStateName(state);
  UpdateServing();
  replicator_->Wake();
}

void StorageNode::WatchLateLocks(const std::vector<uint32_t>& gone_partitions) {
  if (gone_partitions.empty()) return;
  const std::vector<uint64_t> open = transactions_->OpenTransactionIds();
  absl::MutexLock l(&late_lock_mu_);
  for (uint32_t p : gone_partitions) {
    if (open.empty()) {
      late_locks_.erase(p);
    } else {
      late_locks_[p].insert(open.begin(), open.end());
    }
  }
}

void StorageNode::DeleteLateLockedRecords(uint64_t ttid) {
  std::vector<uint32_t> partitions;
  {
    absl::MutexLock l(&late_lock_mu_);
    if (late_locks_.empty()) return;
    for (auto it = late_locks_.begin(); it != late_locks_.end();) {
      auto& ttids = it->second;
      if (ttids.erase(ttid) > 0) partitions.push_back(it->first);
      // Transactions no longer in commit (aborted, forgotten) cannot lock.
      for (auto t = ttids.begin(); t != ttids.end();) {
        auto next = std::next(t);
        if (!transactions_->StateOf(*t).has_value()) ttids.erase(t);
        t = next;
      }
      if (ttids.empty()) {
        late_locks_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  if (partitions.empty()) return;
  // Under install_mu_: the table cannot give the cell back meanwhile.
  absl::MutexLock install(&install_mu_);
  const std::shared_ptr<const PartitionTable> pt = partition_table();
  const uint32_t me = node_id();
  for (uint32_t p : partitions) {
    if (pt->CellStateOf(p, me) != ::cellar::v1::CELL_STATE_UNSPECIFIED) continue;
    absl::Status s = backend_->DeletePartition(p);
    if (s.ok()) {
      CELLAR_LOG(INFO) << "partition " << p << ": deleted what transaction " << TidHex(ttid)
                       << " committed here after this node's cell was discarded";
    } else {
      CELLAR_LOG(ERROR) << "partition " << p << ": cannot delete what transaction "
                        << TidHex(ttid) << " committed after the cell was discarded: "
                        << s.message();
    }
  }
}

absl::Status StorageNode::InstallTable(PartitionTable table, bool only_newer) {
  // One install at a time (the watch thread and lock handlers may both
  // bring tables): the persisted table is always the one in memory.
  absl::MutexLock install(&install_mu_);
  if (only_newer && table.ptid() < partition_table()->ptid()) {
    return absl::OkStatus();  // raced a newer one
  }
  // Persist first: after a restart the node reports what it last served.
  absl::Status s = backend_->SetConfig(kNumPartitionsKey, absl::StrCat(table.num_partitions()));
  if (s.ok()) s = backend_->SetConfig(kNumReplicasKey, absl::StrCat(table.num_replicas()));
  if (s.ok()) {
    PartitionTableRecord record;
    record.ptid = table.ptid();
    for (uint32_t p = 0; p < table.num_partitions(); ++p) {
      for (const common::PtCell& c : table.Row(p)) {
        record.cells.push_back(CellRecord{p, c.node_id, static_cast<int>(c.state)});
      }
    }
    s = backend_->SavePartitionTable(record);
  }
  if (!s.ok()) {
    // Used anyway (its cell states decide what this node may serve), but
    // no lock relies on it until it is persisted (a restarted node would
    // report an older table than the one it locked transactions on).
    s = absl::UnavailableError(absl::StrCat("cannot persist partition table ",
                                            table.ptid(), ": ", s.message()));
    if (unpersisted_ptid_ != table.ptid()) {  // once per table, not per retry
      CELLAR_LOG(ERROR) << s.message() << " (retried by the heartbeat thread)";
    }
    unpersisted_ptid_ = table.ptid();
  }
  const uint64_t ptid = table.ptid();
  std::vector<uint32_t> gone, fresh;
  ClassifyCellChanges(*partition_table(), table, node_id(), &gone, &fresh);
  // Not served yet (the previous table lacks them or holds them CORRUPTED).
  ResetCells(backend_.get(), replicator_.get(), fresh, ptid, "created anew");
  {
    absl::MutexLock l(&mu_);
    pt_ = std::make_shared<const PartitionTable>(std::move(table));
    if (s.ok()) persisted_ptid_ = ptid;
  }
  // No longer served.
  WatchLateLocks(gone);
  ResetCells(backend_.get(), replicator_.get(), gone, ptid, "discarded");
  if (metrics_ != nullptr) metrics_->ptid->Set(static_cast<double>(ptid));
  UpdateServing();
  replicator_->Wake();
  return s;
}

uint64_t StorageNode::persisted_ptid() const {
  absl::MutexLock l(&mu_);
  return persisted_ptid_;
}

void StorageNode::RetryTablePersist() {
  const std::shared_ptr<const PartitionTable> current = partition_table();
  if (persisted_ptid() >= current->ptid()) return;
  if (InstallTable(*current, /*only_newer=*/true).ok()) {
    CELLAR_LOG(INFO) << "partition table " << current->ptid() << " persisted";
  }
}

absl::Status StorageNode::AdoptTable(const ::cellar::v1::PartitionTable& proto,
                                     const char* source, bool only_newer) {
  if (proto.ptid() == 0) return absl::OkStatus();  // the master has no table yet
  auto table = PartitionTable::FromProto(proto);
  if (!table.ok()) {
    CELLAR_LOG(ERROR) << "malformed partition table from the master (" << source
                      << "): " << table.status().message();
    return absl::OkStatus();
  }
  std::shared_ptr<const PartitionTable> current = partition_table();
  if (current->ptid() > 0 && current->num_partitions() != table->num_partitions()) {
    CELLAR_LOG(ERROR) << "the master's partition table has " << table->num_partitions()
                      << " partitions but this node's database was written with "
                      << current->num_partitions()
                      << ": refusing it (wrong database for this cluster?)";
    return absl::OkStatus();
  }
  if (table->ptid() < current->ptid() &&
      (only_newer || cluster_state() == ::cellar::v1::CLUSTER_RECOVERING)) {
    // During recovery the master adopts the highest table of all storages;
    // don't overwrite ours with an older one it may still show.
    return absl::OkStatus();
  }
  if (table->ptid() == current->ptid() &&
      table->ToProto().SerializeAsString() == current->ToProto().SerializeAsString() &&
      persisted_ptid() >= current->ptid()) {
    return absl::OkStatus();
  }
  CELLAR_LOG(INFO) << "partition table " << table->ptid() << " (" << source << ")";
  return InstallTable(*std::move(table), only_newer);
}

absl::Status StorageNode::RefetchTable(bool only_newer) {
  auto info = master_->GetClusterInfo();
  if (!info.ok()) {
    CELLAR_LOG(WARNING) << "cannot re-fetch the partition table: "
                        << info.status().message();
    return info.status();
  }
  (void)RaiseEpoch(info->epoch());  // logged; the table is needed anyway
  SetClusterState(info->cluster_state());
  return AdoptTable(info->partition_table(), "re-fetched", only_newer);
}

void StorageNode::HandleEvent(const ::cellar::v1::ClusterEvent& event) {
  switch (event.event_case()) {
    case ::cellar::v1::ClusterEvent::kSnapshot: {
      const auto& snapshot = event.snapshot();
      (void)RaiseEpoch(snapshot.epoch());  // logged; calls stay fenced in memory
      // Table before state: RUNNING with the right table, never the old one.
      (void)AdoptTable(snapshot.partition_table(), "snapshot");  // logged
      SetClusterState(snapshot.cluster_state());
      FollowFeatureFlags(snapshot.feature_flags());
      break;
    }
    case ::cellar::v1::ClusterEvent::kFeatureFlags:
      FollowFeatureFlags(event.feature_flags());
      break;
    case ::cellar::v1::ClusterEvent::kPartitionTableDelta: {
      const auto& delta = event.partition_table_delta();
      std::shared_ptr<const PartitionTable> current = partition_table();
      if (delta.ptid() <= current->ptid()) break;  // already have it
      PartitionTable next = *current;
      absl::Status s = next.ApplyDelta(delta);
      if (s.ok()) {
        // A cell of this node discarded and re-added by the same delta
        // (repair) must lose its data: install the table without it first.
        PartitionTable without = next;
        bool split = false;
        for (const auto& c : delta.changes()) {
          if (c.node_id() == node_id() && c.state() == ::cellar::v1::CELL_DISCARDED &&
              next.CellStateOf(c.partition(), c.node_id()) !=
                  ::cellar::v1::CELL_STATE_UNSPECIFIED) {
            without.SetCell(c.partition(), c.node_id(), ::cellar::v1::CELL_DISCARDED);
            split = true;
          }
        }
        // A failed persist is logged and retried (RetryTablePersist).
        if (split) (void)InstallTable(std::move(without), /*only_newer=*/true);
        (void)InstallTable(std::move(next), /*only_newer=*/true);
      } else {
        CELLAR_LOG(WARNING) << "partition table delta " << delta.ptid()
                            << " not applicable (" << s.message()
                            << "): fetching the whole table";
        (void)RefetchTable();
      }
      break;
    }
    case ::cellar::v1::ClusterEvent::kPartitionTable:
      (void)AdoptTable(event.partition_table(), "update");
      break;
    case ::cellar::v1::ClusterEvent::kClusterState:
      SetClusterState(event.cluster_state());
      break;
    default:
      break;  // node changes and invalidations: nothing to do here
  }
}

absl::Status StorageNode::RegisterAndWatch() {
  ::cellar::v1::RegisterNodeRequest request;
  request.set_cluster_name(options_.cluster_name);
  request.set_protocol_version(::cellar::v1::PROTOCOL_VERSION_1);
  request.set_role(::cellar::v1::NODE_ROLE_STORAGE);
  request.set_address(advertise_address_);
  request.set_version(options_.version);
  request.set_build_id(options_.build_id);
  request.set_track(options_.track);
  request.set_label(options_.label);
  uint32_t old_id;
  {
    absl::MutexLock l(&mu_);
    old_id = node_id_;
    *request.mutable_partition_table() = pt_->ToProto();
    request.set_highest_epoch(epoch_);
  }
  request.set_node_id(old_id);
  CELLAR_ASSIGN_OR_RETURN(LastIds ids, backend_->GetLastIds());
  request.set_last_tid(ids.last_tid);
  request.set_last_oid(ids.last_oid);
  CELLAR_ASSIGN_OR_RETURN(uint64_t oid_high_water, OidHighWater());
  request.set_oid_high_water(oid_high_water);
  CELLAR_ASSIGN_OR_RETURN(*request.mutable_token_table(), StoredTokenTable());
  CELLAR_ASSIGN_OR_RETURN(*request.mutable_feature_flags(), StoredFeatureFlags());
  CELLAR_ASSIGN_OR_RETURN(std::vector<uint64_t> voted, backend_->ListVotedTransactions());
  for (uint64_t ttid : voted) request.add_voted_ttids(ttid);
  // A new master session decides these votes (rule R11): until then they
  // are in doubt here.
  if (const size_t in_doubt = transactions_->MarkVotesInDoubt(); in_doubt > 0) {
    CELLAR_LOG(INFO) << in_doubt << " vote(s) in doubt until the master resolves them: "
                     << "no read past them of their objects or partitions";
  }

  CELLAR_ASSIGN_OR_RETURN(::cellar::v1::RegisterNodeResponse response,
                          master_->RegisterNode(request));
  if (response.node_id() == 0) {
    return absl::InternalError("the master returned node id 0");
  }
  if (response.node_id() != old_id) {
    CELLAR_RETURN_IF_ERROR(
        backend_->SetConfig(kNodeIdKey, absl::StrCat(response.node_id())));
    absl::MutexLock l(&mu_);
    node_id_ = response.node_id();
  }
  {
    // A new term's key: tokens of the previous one no longer pass. A
    // deposed primary (older epoch) does not replace it.
    absl::MutexLock l(&mu_);
    if (response.epoch() >= epoch_) ttid_key_ = response.ttid_key();
  }
  // A failed persist is logged; fenced calls carrying the epoch fail until
  // it is persisted (they try again, so does the heartbeat thread).
  (void)RaiseEpoch(response.epoch());
  // A new master session: Unlocks of the old one may never come.
  if (const size_t released = transactions_->ReleaseLocked(); released > 0) {
    CELLAR_LOG(INFO) << "released the object locks of " << released
                     << " locked transaction(s) left by the previous master session";
  }
  (void)AdoptTable(response.partition_table(), "registration");  // logged
  SetClusterState(response.cluster_state());
  SetLink(LinkState::kRegistered,
          absl::StrCat("registered as ", NodeName(response.node_id()),
                       " (master epoch ", response.epoch(), ", cluster ",
                       ClusterStateName(response.cluster_state()), ")"));
  absl::Status s = master_->Watch(response.node_id(), [this](const auto& event) {
    HandleEvent(event);
  });
  if (s.ok()) s = absl::UnavailableError("the master closed the watch stream");
  return s;
}

void StorageNode::MasterLoop() {
  absl::Duration backoff = options_.retry_min;
  while (!Stopping()) {
    absl::Status s = RegisterAndWatch();
    bool was_registered;
    {
      absl::MutexLock l(&mu_);
      was_registered = link_state_ == LinkState::kRegistered;
    }
    if (Stopping()) break;
    absl::Duration delay;
    if (IsRefusal(s) && !was_registered) {
      SetLink(LinkState::kRefused, std::string(s.message()));
      delay = options_.refused_retry;
    } else {
      SetLink(LinkState::kConnecting, std::string(s.message()));
      if (was_registered) backoff = options_.retry_min;
      delay = backoff;
      backoff = std::min(backoff * 2, options_.retry_max);
    }
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
  }
}

void StorageNode::RefreshStats() {
  if (metrics_ != nullptr) SetPackGauges(metrics_, packer_->Status());
  // Cheap (kept by the backend on every write): per cell sizes.
  if (auto cells = CellStatsNow(); cells.ok() && metrics_ != nullptr) {
    std::vector<PartitionSizes> sizes;
    for (const CellStats& c : cells->cells) {
      sizes.push_back(PartitionSizes{c.partition, c.objects, c.revisions, c.bytes});
    }
    metrics_->SetPartitionSizes(sizes);
  }
  auto stats = backend_->GetStats();
  if (stats.ok() && metrics_ != nullptr) {
    metrics_->transactions->Set(static_cast<double>(stats->transaction_count));
    metrics_->data_bytes->Set(static_cast<double>(stats->data_bytes));
  }
  UpdateOpenGauge();
}

void StorageNode::StatsLoop() {
  if (metrics_ == nullptr) return;
  while (true) {
    RefreshStats();
    absl::MutexLock l(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.stats_interval)) {
      return;
    }
  }
}

void StorageNode::HeartbeatLoop() {
  absl::Status last = absl::OkStatus();
  while (true) {
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.heartbeat_interval)) {
        return;
      }
    }
    FlushForgottenLocks();
    ExpireUnvoted();
    RetryTablePersist();
    (void)RaiseAndPersistEpoch(epoch(), /*fence=*/false);  // a failed persist again
    const uint32_t id = node_id();
    if (id == 0) continue;
    // Votes whose outcome never came (e.g. one that landed after this node
    // registered again): the master resolves them.
    const std::vector<uint64_t> stale =
        transactions_->StaleVotes(options_.report_votes_after, kMaxStaleVotesPerHeartbeat);
    absl::Status s = master_->Heartbeat(id, stale, data_path_.Snapshot());
    if (s.ok()) FollowTokenTable();
    if (s.ok() != last.ok() || (!s.ok() && s.code() != last.code())) {
      if (s.ok()) {
        CELLAR_LOG(INFO) << "heartbeats to the master go through again";
      } else if (s.code() != absl::StatusCode::kUnimplemented) {
        // NOT_FOUND: the master counts this node as gone and ends its watch
        // stream; the master loop registers again.
        CELLAR_LOG(WARNING) << "heartbeat: " << s;
      }
    }
    last = s;
  }
}

size_t StorageNode::ExpireUnvoted() {
  const std::vector<uint64_t> expired = transactions_->ExpireUnvoted();
  for (uint64_t ttid : expired) {
    CELLAR_LOG(WARNING) << "transaction " << TidHex(ttid) << " stored here but did not vote for "
                        << absl::FormatDuration(options_.unvoted_timeout)
                        << ": aborted (its object locks are released)";
  }
  if (!expired.empty()) {
    if (metrics_ != nullptr) {
      metrics_->unvoted_expired->Increment(static_cast<double>(expired.size()));
    }
    UpdateOpenGauge();
  }
  return expired.size();
}

void StorageNode::BeginShutdown() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  master_->Cancel();
  replicator_->Stop();
  packer_->Stop();
  if (master_thread_.joinable()) master_thread_.join();
  if (stats_thread_.joinable()) stats_thread_.join();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  locks_.Shutdown();
  UpdateServing();
  if (metrics_ != nullptr) {
    metrics_->master_connected->Set(0);
    metrics_->node_up->Set(0);
  }
}

void StorageNode::Close() {
  BeginShutdown();
  {
    absl::MutexLock l(&mu_);
    if (closed_) return;
    closed_ = true;
  }
  batcher_->Shutdown();
  FlushForgottenLocks();
  backend_.reset();
  CELLAR_LOG(INFO) << "storage node closed";
}

}  // namespace cellar::storage
