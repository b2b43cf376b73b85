#include "services/master/cluster_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/ttid_token.h"

namespace cellar::master {

using ::cellar::v1::ClusterState;
using common::NodeKind;

namespace {

constexpr uint32_t kMaxOidBatch = 1000;
// OIDs stay below 2^63 (stored as signed 64-bit values); a batch past it
// is refused, never wrapped onto OID 0 and the existing objects.
constexpr uint64_t kMaxOid = (uint64_t{1} << 63) - 1;
// How far past a batch the persisted OID high-water mark is set, so that
// most batches need no round trip to the storages.
constexpr uint64_t kOidReserve = 10000;
// Longest string field of a registration (names, addresses, versions).
constexpr size_t kMaxRegistrationString = 256;
// How far ahead of the master's clock a tid a storage reports may be.
constexpr absl::Duration kTidHorizon = absl::Hours(24 * 366);

const char* StateName(ClusterState s) {
  return cellar::v1::ClusterState_Name(s).c_str();
}

bool ValidHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= address.size()) {
    return false;
  }
  int port = 0;
  return absl::SimpleAtoi(address.substr(colon + 1), &port) && port > 0 &&
         port < 65536;
}

// A term's options with its ttid key: a new random one unless given.
ClusterOptions WithTtidKey(ClusterOptions options) {
  if (options.ttid_key.empty()) options.ttid_key = common::NewTtidKey();
  return options;
}

}  // namespace

ClusterManager::ClusterManager(ClusterOptions options, const common::Clock* clock,
                               EventHub* hub)
    : options_(WithTtidKey(std::move(options))),
      clock_(clock),
      hub_(hub),
      versions_(clock, options_.quarantine, VersionKey{options_.version, options_.track},
                [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                  mu_.AssertHeld();  // the registry is only called under mu_
                  return ReadableVersionsLocked();
                }),
      epoch_(options_.epoch) {}

uint64_t ClusterManager::epoch() const {
  absl::MutexLock l(&mu_);
  return epoch_;
}

absl::StatusOr<cellar::v1::RegisterNodeResponse> ClusterManager::RegisterNode(
    const cellar::v1::RegisterNodeRequest& request) {
  // Bounded before anything echoes or keeps them (a 40 MB version string
  // once broke the cluster info, Watch and the admin).
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"cluster_name", &request.cluster_name()},
        {"address", &request.address()},
        {"version", &request.version()},
        {"build_id", &request.build_id()},
        {"track", &request.track()},
        {"label", &request.label()}}) {
    if (value->size() > kMaxRegistrationString) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": at most ",
                                                     kMaxRegistrationString, " bytes, got ",
                                                     value->size()));
    }
  }
  if (request.cluster_name() != options_.cluster_name) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonWrongCluster,
        absl::StrCat("wrong cluster name \"", request.cluster_name(),
                     "\": this master serves \"", options_.cluster_name, "\""));
  }
  if (request.protocol_version() != cellar::v1::PROTOCOL_VERSION_1) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonProtocolMismatch,
        absl::StrCat("protocol version ", request.protocol_version(),
                     " is not supported: this master speaks version 1"));
  }
  NodeKind kind;
  switch (request.role()) {
    case cellar::v1::NODE_ROLE_STORAGE:
      kind = NodeKind::kStorage;
      break;
    case cellar::v1::NODE_ROLE_CLIENT:
      kind = NodeKind::kClient;
      break;
    case cellar::v1::NODE_ROLE_ADMIN:
      kind = NodeKind::kAdmin;
      break;
    default:
      return absl::InvalidArgumentError(
          "role: must be NODE_ROLE_STORAGE, NODE_ROLE_CLIENT or NODE_ROLE_ADMIN");
  }
  if (kind == NodeKind::kStorage && !ValidHostPort(request.address())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address: a storage must give the host:port it serves on, got \"",
        request.address(), "\""));
  }
  {
    // TIDs come from clocks: one far ahead of this master's clock is a bug
    // or a forgery, and adopting it would push the TID allocator towards
    // the end of TID space (every later commit refused, across restarts).
    const uint64_t horizon = common::TidFromTime(clock_->Now() + kTidHorizon);
    auto too_far = [&](const char* field, uint64_t tid) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": ", common::TidHex(tid), " is more than ",
          absl::FormatDuration(kTidHorizon), " ahead of this master's clock (",
          common::TidHex(horizon), " at most); refused (a forged registration, or a clock "
          "far off)"));
    };
    if (request.last_tid() > horizon) return too_far("last_tid", request.last_tid());
    for (uint64_t ttid : request.voted_ttids()) {
      if (ttid > horizon) return too_far("voted_ttids", ttid);
    }
  }
  if (request.highest_epoch() > common::kMaxEpoch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "highest_epoch: ", request.highest_epoch(), " is beyond any master epoch (at most ",
        common::kMaxEpoch, ")"));
  }
  if (request.node_id() != 0 && common::NodeKindOf(request.node_id()) != kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node_id: ", request.node_id(), " is not an id of this node's role"));
  }
  const std::string track = request.track().empty() ? "stable" : request.track();
  if (track != "stable" && track != "canary" && track != "shadow") {
    return absl::InvalidArgumentError(
        absl::StrCat("track: must be stable, canary or shadow, got \"", track, "\""));
  }
  if (request.has_partition_table() && request.partition_table().ptid() != 0) {
    absl::StatusOr<common::PartitionTable> reported =
        common::PartitionTable::FromProto(request.partition_table());
    if (!reported.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition_table: ", reported.status().message()));
    }
  }

  bool verify = false;
  std::vector<uint64_t> resolve_now;
  StorageTarget resolve_on;
  cellar::v1::RegisterNodeResponse response;
  {
    absl::MutexLock l(&mu_);
    uint32_t id = request.node_id();
    if (id != 0) {
      auto it = nodes_.find(id);
      if (it != nodes_.end() && it->second.connected &&
          it->second.info.address() != request.address()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "node id ", common::NodeName(id), " is already connected from ",
            it->second.info.address(), "; is another node using the same database?"));
      }
    } else {
      uint32_t& next = kind == NodeKind::kStorage  ? next_storage_index_
                       : kind == NodeKind::kClient ? next_client_index_
                                                   : next_admin_index_;
      // Skip indexes the partition table already uses (storages that have
      // not come back yet).
      while (nodes_.contains(common::MakeNodeId(kind, next)) ||
             (kind == NodeKind::kStorage &&
              pt_.NodeIds().contains(common::MakeNodeId(kind, next)))) {
        ++next;
      }
      id = common::MakeNodeId(kind, next++);
    }
    if (kind == NodeKind::kStorage) {
      next_storage_index_ = std::max(next_storage_index_, common::NodeIndex(id) + 1);
    }

    if (kind == NodeKind::kStorage && request.highest_epoch() > epoch_) {
      if (options_.epoch_is_durable || epoch_fixed_) {
        // Its fencing would refuse every call of this term: never use it.
        CELLAR_LOG(ERROR) << "storage " << common::NodeName(id) << " at "
                          << request.address() << " has seen master epoch "
                          << request.highest_epoch() << ", above this master's epoch "
                          << epoch_ << ": refused (another primary, or an election "
                          << "database that lost its lease row? docs/failover.md)";
        return common::ErrorWithReason(
            absl::StatusCode::kFailedPrecondition, common::kReasonStaleEpoch,
            absl::StrCat("storage ", common::NodeName(id), " has seen master epoch ",
                         request.highest_epoch(), ", above this master's epoch ", epoch_,
                         ": it would refuse this master's calls (docs/failover.md)"));
      }
      // Provisional epoch: rise above everything a storage has seen.
      epoch_ = request.highest_epoch() + 1;
      CELLAR_LOG(INFO) << "epoch raised to " << epoch_ << " above the epoch "
                       << request.highest_epoch() << " " << common::NodeName(id)
                       << " has seen";
    }

    Node& node = nodes_[id];
    if (node.subscriber != nullptr) {
      // A new registration replaces the old stream (the node saw it end,
      // even if we did not): end it, and make its WatchEnded a no-op.
      hub_->Close(id);
      node.subscriber.reset();
    }
    node.connected = true;
    node.last_heartbeat = clock_->Now();
    node.generation = next_generation_++;
    node.info.set_node_id(id);
    node.info.set_role(request.role());
    node.info.set_address(request.address());
    node.info.set_version(request.version());
    node.info.set_build_id(request.build_id());
    node.info.set_track(track);
    node.info.set_label(request.label());
    node.info.set_registered_unix_ms(absl::ToUnixMillis(clock_->Now()));
    node.info.set_state(cellar::v1::NODE_RUNNING);
    {
      const VersionKey key{request.version(), track};
      const bool quarantined_now = versions_.NodeRegistered(id, key);
      node.info.set_quarantined(versions_.IsQuarantined(key));
      if (quarantined_now) RefreshQuarantineLocked(key);
    }

    if (kind == NodeKind::kStorage) {
      node.voted_ttids.assign(request.voted_ttids().begin(),
                              request.voted_ttids().end());
      recovered_last_tid_ = std::max(recovered_last_tid_, request.last_tid());
      for (uint64_t ttid : request.voted_ttids()) {
        recovered_last_tid_ = std::max(recovered_last_tid_, ttid);
      }
      last_oid_ = std::max(last_oid_, request.last_oid());
      // OIDs below its mark may have been handed out by an earlier master.
      if (request.oid_high_water() > 0) {
        last_oid_ = std::max(last_oid_, request.oid_high_water() - 1);
      }
      if (request.has_token_table()) {
        // Never refuse a storage for it: the table is the nodes' to keep.
        if (absl::Status merged = tokens_.MergeReported(request.token_table()); !merged.ok()) {
          CELLAR_LOG(WARNING) << "token table reported by " << common::NodeName(id)
                              << " ignored: " << merged;
        }
      }
      if (request.has_feature_flags()) {
        // As the token table: never refuse a storage for it.
        absl::StatusOr<bool> adopted = flags_.MergeReported(request.feature_flags());
        if (!adopted.ok()) {
          CELLAR_LOG(WARNING) << "feature flags reported by " << common::NodeName(id)
                              << " ignored: " << adopted.status();
        } else if (*adopted) {
          PublishFeatureFlagsLocked();
          RestoreQuarantinesLocked();  // as an earlier primary persisted them
        }
      }
      if (request.oid_high_water() > oid_high_water_) {
        oid_high_water_ = request.oid_high_water();
        oid_mark_on_.clear();  // the others hold a lower one
      }
      if (oid_high_water_ > 0 && request.oid_high_water() == oid_high_water_) {
        oid_mark_on_.insert(id);
      } else {
        oid_mark_on_.erase(id);
      }
      if (state_ == cellar::v1::CLUSTER_RECOVERING && request.has_partition_table() &&
          request.partition_table().ptid() > pt_.ptid()) {
        // Validated above.
        pt_ = *common::PartitionTable::FromProto(request.partition_table());
        CELLAR_LOG(INFO) << "adopted partition table ptid " << pt_.ptid() << " from "
                         << common::NodeName(id);
        cellar::v1::ClusterEvent event;
        *event.mutable_partition_table() = pt_.ToProto();
        hub_->Publish(event);
      }
      RefreshStorageStatesLocked();
      PublishNodeLocked(node);
      verify = MaybeLeaveRecoveryLocked(/*operator_start=*/false);
      if (!verify && state_ == cellar::v1::CLUSTER_RUNNING && !node.voted_ttids.empty()) {
        // A storage back while RUNNING (restarted, or treated as gone after
        // a failed lock) with votes in doubt: resolve them now, or they
        // would hold object locks forever.
        resolve_now = std::move(node.voted_ttids);
        node.voted_ttids.clear();
        resolve_on = {id, request.address()};
      }
    }
    CELLAR_LOG(INFO) << common::NodeName(id) << " registered"
                     << (request.address().empty() ? "" : " from " + request.address());

    response.set_node_id(id);
    response.set_epoch(epoch_);
    response.set_cluster_state(state_);
    *response.mutable_partition_table() = pt_.ToProto();
    response.set_master_node_id(options_.master_node_id);
    // Storages verify the ttid tokens of Store/Vote/Abort with it.
    if (kind == NodeKind::kStorage) response.set_ttid_key(options_.ttid_key);
  }
  if (kind == NodeKind::kStorage && storages_ != nullptr && !request.address().empty()) {
    storages_->Reconnect(request.address());
  }
  if (verify) Verify();
  if (!resolve_now.empty()) {
    CELLAR_LOG(INFO) << common::NodeName(resolve_on.node_id) << " registered with "
                     << resolve_now.size() << " voted transaction(s) in doubt: resolving";
    if (on_in_doubt_) {
      on_in_doubt_(resolve_now, resolve_on);
    } else if (on_verify_) {
      on_verify_(resolve_now, {resolve_on}, /*last_tid=*/0);
    }
  }
  return response;
}

absl::StatusOr<std::shared_ptr<EventHub::Subscriber>> ClusterManager::Watch(
    uint32_t node_id) {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || !it->second.connected) {
    return absl::NotFoundError(absl::StrCat(
        "node ", common::NodeName(node_id), " is not registered: call RegisterNode first"));
  }
  // Built under mu_ so that no PT change falls between the snapshot and
  // the subscription.
  if (it->second.subscriber != nullptr) {
    hub_->Close(node_id);  // one stream per registration: the newest wins
  }
  std::shared_ptr<EventHub::Subscriber> sub = hub_->Subscribe(
      node_id, common::NodeKindOf(node_id) == NodeKind::kClient, SnapshotLocked());
  it->second.subscriber = sub;
  return sub;
}

void ClusterManager::WatchEnded(uint32_t node_id,
                                const std::shared_ptr<EventHub::Subscriber>& sub) {
  hub_->Unsubscribe(sub);
  bool client_gone = false;
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_) return;
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return;
    const NodeKind kind = common::NodeKindOf(node_id);
    if (kind == NodeKind::kStorage) {
      // A stream the node replaced (it registered again) says nothing.
      if (it->second.subscriber != sub) return;
      NodesLostLocked({node_id}, "its watch stream ended", DownCause::kStreamEnded);
    } else {
      ForgetNodeLocked(it);
      client_gone = kind == NodeKind::kClient;
    }
  }
  if (client_gone && on_client_gone_) on_client_gone_(node_id);
}

void ClusterManager::BeginShutdown() {
  absl::MutexLock l(&mu_);
  shutting_down_ = true;
}

absl::StatusOr<ClusterState> ClusterManager::Start() {
  bool verify = false;
  {
    absl::MutexLock l(&mu_);
    if (state_ != cellar::v1::CLUSTER_RECOVERING) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cluster is ", StateName(state_), ": start only applies while RECOVERING"));
    }
    if (truncate_tid_ != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "a truncate to tid ", common::TidHex(truncate_tid_),
          " did not finish: call Truncate again (the cluster must not run on partly "
          "truncated data)"));
    }
    if (ConnectedStoragesLocked().empty()) {
      return absl::FailedPreconditionError(
          "no storage node is connected: start at least one cellar-storage first");
    }
    if (!pt_.empty() && !pt_.IsOperational(ConnectedStoragesLocked())) {
      return absl::FailedPreconditionError(
          "the connected storages do not hold a readable cell of every partition: "
          "bring the missing storages back");
    }
    verify = MaybeLeaveRecoveryLocked(/*operator_start=*/true);
  }
  if (verify) Verify();
  absl::MutexLock l(&mu_);
  return state_;
}

bool ClusterManager::MaybeLeaveRecoveryLocked(bool operator_start) {
  if (state_ != cellar::v1::CLUSTER_RECOVERING || verifying_) return false;
  if (truncate_tid_ != 0) return false;  // a truncate decides when (FinishTruncate)
  const absl::flat_hash_set<uint32_t> connected = ConnectedStoragesLocked();
  if (pt_.empty()) {
    if (!operator_start &&
        (options_.autostart == 0 || connected.size() < options_.autostart)) {
      return false;
    }
    // Canary storages hold extra cells only: they stay PENDING until an
    // operator adds them (docs/rollouts.md, "Canary storages").
    std::vector<uint32_t> ids;
    for (uint32_t id : connected) {
      auto it = nodes_.find(id);
      if (it != nodes_.end() && it->second.info.track() == "stable") ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    absl::StatusOr<common::PartitionTable> pt = common::PartitionTable::MakeBalanced(
        options_.num_partitions, options_.num_replicas, ids);
    if (!pt.ok()) return false;
    pt_ = *std::move(pt);
    CELLAR_LOG(INFO) << "new cluster \"" << options_.cluster_name << "\": "
                     << pt_.num_partitions() << " partitions, " << pt_.num_replicas()
                     << " replicas over " << ids.size() << " storages";
    cellar::v1::ClusterEvent event;
    *event.mutable_partition_table() = pt_.ToProto();
    hub_->Publish(event);
  } else {
    // No split brain: every node holding a readable cell must be back,
    // unless an operator decided the connected ones are enough.
    bool all_back = true;
    for (uint32_t p = 0; p < pt_.num_partitions(); ++p) {
      for (uint32_t id : pt_.ReadableNodes(p)) {
        if (!connected.contains(id)) all_back = false;
      }
    }
    if (!all_back && !operator_start) return false;
    if (!pt_.IsOperational(connected)) return false;
  }
  verifying_ = true;
  // From here on calls carry the epoch: it must not change any more.
  epoch_fixed_ = true;
  SetStateLocked(cellar::v1::CLUSTER_VERIFYING);
  return true;
}

void ClusterManager::Verify() {
  std::vector<uint64_t> in_doubt;
  std::vector<StorageTarget> storages;
  uint64_t last_tid;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, node] : nodes_) {
      if (!node.connected || common::NodeKindOf(id) != NodeKind::kStorage) continue;
      in_doubt.insert(in_doubt.end(), node.voted_ttids.begin(), node.voted_ttids.end());
      node.voted_ttids.clear();
      storages.push_back({id, node.info.address()});
    }
    std::sort(in_doubt.begin(), in_doubt.end());
    in_doubt.erase(std::unique(in_doubt.begin(), in_doubt.end()), in_doubt.end());
    last_tid = recovered_last_tid_;
  }
  if (on_verify_) on_verify_(in_doubt, storages, last_tid);
  absl::MutexLock l(&mu_);
  verifying_ = false;
  if (state_ != cellar::v1::CLUSTER_VERIFYING) return;
  if (!pt_.IsOperational(ConnectedStoragesLocked())) {
    SetStateLocked(cellar::v1::CLUSTER_RECOVERING);
    return;
  }
  // Cells of storages still missing (an operator started without them)
  // stop being readable; every OUT_OF_DATE cell must catch up at least to
  // what the cluster holds now (the master forgot finer requirements if
  // it restarted).
  cellar::v1::PartitionTableDelta delta;
  MarkDisconnectedCellsLocked(&delta);
  for (uint32_t p = 0; p < pt_.num_partitions(); ++p) {
    for (const common::PtCell& cell : pt_.Row(p)) {
      if (cell.state == cellar::v1::CELL_OUT_OF_DATE) {
        CatchUp& c = CatchUpLocked(p, cell.node_id);
        c.needed_tid = std::max(c.needed_tid, hub_->last_tid());
      }
    }
  }
  PublishDeltaLocked(&delta);
  SetStateLocked(cellar::v1::CLUSTER_RUNNING);
  RefreshStorageStatesLocked();
  for (auto& [id, node] : nodes_) {
    if (common::NodeKindOf(id) == NodeKind::kStorage) PublishNodeLocked(node);
  }
}

void ClusterManager::RefreshStorageStatesLocked() {
  const absl::flat_hash_set<uint32_t> in_pt = pt_.NodeIds();
  for (auto& [id, node] : nodes_) {
    if (common::NodeKindOf(id) != NodeKind::kStorage) continue;
    if (!node.connected) {
      node.info.set_state(cellar::v1::NODE_DOWN);
    } else if (state_ != cellar::v1::CLUSTER_RUNNING || !in_pt.contains(id)) {
      node.info.set_state(cellar::v1::NODE_PENDING);
    } else {
      node.info.set_state(cellar::v1::NODE_RUNNING);
    }
  }
}

void ClusterManager::NodesLostLocked(const std::vector<uint32_t>& ids,
                                     const std::string& why, DownCause cause) {
  std::vector<uint32_t> lost;
  for (uint32_t id : ids) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || !it->second.connected) continue;
    Node& node = it->second;
    node.connected = false;
    node.info.set_state(cellar::v1::NODE_DOWN);
    if (node.subscriber != nullptr) {
      hub_->Close(id);  // its Watch stream ends; it must register again
      node.subscriber.reset();
    }
    lost.push_back(id);
    CELLAR_LOG(WARNING) << common::NodeName(id) << " is gone: " << why;
  }
  if (lost.empty()) return;
  for (uint32_t id : lost) {
    VersionKey key;
    if (versions_.NodeDown(id, cause) && versions_.KeyOf(id, &key)) {
      RefreshQuarantineLocked(key);
    }
  }
  for (uint32_t id : lost) PublishNodeLocked(nodes_[id]);
  if (state_ != cellar::v1::CLUSTER_RUNNING) return;
  cellar::v1::PartitionTableDelta delta;
  MarkDisconnectedCellsLocked(&delta);
  PublishDeltaLocked(&delta);
  if (!pt_.IsOperational(ConnectedStoragesLocked())) {
    CELLAR_LOG(WARNING) << "partition table no longer operational: back to RECOVERING";
    SetStateLocked(cellar::v1::CLUSTER_RECOVERING);
  }
}

bool ClusterManager::HasOtherConnectedReadableLocked(uint32_t partition,
                                                     uint32_t node_id) const {
  for (const common::PtCell& c : pt_.Row(partition)) {
    if (c.node_id == node_id || !common::IsReadable(c.state)) continue;
    auto it = nodes_.find(c.node_id);
    if (it != nodes_.end() && it->second.connected) return true;
  }
  return false;
}

void ClusterManager::MarkDisconnectedCellsLocked(cellar::v1::PartitionTableDelta* delta) {
  for (uint32_t p = 0; p < pt_.num_partitions(); ++p) {
    const std::vector<common::PtCell> row = pt_.Row(p);  // SetCell edits it
    for (const common::PtCell& cell : row) {
      if (!common::IsReadable(cell.state)) continue;
      auto it = nodes_.find(cell.node_id);
      if (it != nodes_.end() && it->second.connected) continue;
      if (!HasOtherConnectedReadableLocked(p, cell.node_id)) continue;  // the last one stays
      SetCellLocked(p, cell.node_id, cellar::v1::CELL_OUT_OF_DATE, delta);
      // It was readable: it holds every transaction that completed so far.
      CatchUp& c = CatchUpLocked(p, cell.node_id);
      c.known_tid = std::max(c.known_tid, CompleteTidLocked(p));
      c.needed_tid = std::max(c.needed_tid, hub_->last_tid());
    }
  }
}

void ClusterManager::SetCellLocked(uint32_t partition, uint32_t node_id,
                                   common::CellState state,
                                   cellar::v1::PartitionTableDelta* delta) {
  if (common::IsReadable(state) && !common::IsReadable(pt_.CellStateOf(partition, node_id))) {
    // Readable from the delta's version on (PublishDeltaLocked: ptid + 1).
    readable_since_[CellKey{partition, node_id}] = pt_.ptid() + 1;
  }
  pt_.SetCell(partition, node_id, state);
  cellar::v1::CellChange* change = delta->add_changes();
  change->set_partition(partition);
  change->set_node_id(node_id);
  change->set_state(state);
}

void ClusterManager::PublishDeltaLocked(cellar::v1::PartitionTableDelta* delta) {
  if (delta->changes().empty()) return;
  pt_.set_ptid(pt_.ptid() + 1);
  delta->set_ptid(pt_.ptid());
  std::vector<std::string> changes;
  for (const auto& c : delta->changes()) {
    changes.push_back(absl::StrCat(common::NodeName(c.node_id()), "/", c.partition(), "=",
                                   std::string(1, common::CellStateLetter(c.state()))));
  }
  CELLAR_LOG(INFO) << "partition table " << pt_.ptid() << ": "
                   << absl::StrJoin(changes, " ");
  cellar::v1::ClusterEvent event;
  *event.mutable_partition_table_delta() = *delta;
  hub_->Publish(event);
}

ClusterManager::CatchUp& ClusterManager::CatchUpLocked(uint32_t partition,
                                                       uint32_t node_id) {
  auto [it, inserted] = catch_up_.try_emplace(CellKey{partition, node_id});
  if (inserted) it->second.needed_tid = hub_->last_tid();
  return it->second;
}

absl::Status ClusterManager::Heartbeat(uint32_t node_id,
                                       const std::vector<uint64_t>& stale_votes) {
  StorageTarget target;
  {
    absl::MutexLock l(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end() || !it->second.connected) {
      return absl::NotFoundError(absl::StrCat("node ", common::NodeName(node_id),
                                              " is not connected: register again"));
    }
    it->second.last_heartbeat = clock_->Now();
    if (stale_votes.empty() || state_ != cellar::v1::CLUSTER_RUNNING ||
        common::NodeKindOf(node_id) != NodeKind::kStorage) {
      return absl::OkStatus();
    }
    target = {node_id, it->second.info.address()};
  }
  CELLAR_LOG(INFO) << common::NodeName(node_id) << " reports " << stale_votes.size()
                   << " vote(s) still in doubt: resolving";
  if (on_in_doubt_) on_in_doubt_(stale_votes, target);
  return absl::OkStatus();
}

void ClusterManager::ExpireSilentNodes() {
  if (options_.heartbeat_timeout <= absl::ZeroDuration()) return;
  std::vector<uint32_t> gone_clients;
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_) return;
    const absl::Time now = clock_->Now();
    if (now - last_expiry_check_ < absl::Milliseconds(100)) return;
    const absl::Time previous = last_expiry_check_;
    last_expiry_check_ = now;
    if (previous != absl::InfinitePast() && now - previous > options_.heartbeat_timeout) {
      // The checks themselves stalled (this process was paused, or nothing
      // watched): heartbeats may be waiting to be processed. Start over
      // rather than declare every storage gone at once.
      CELLAR_LOG(WARNING) << "no heartbeat check for " << absl::FormatDuration(now - previous)
                          << ": giving every storage a new heartbeat timeout";
      for (auto& [id, node] : nodes_) {
        if (node.connected) node.last_heartbeat = now;
      }
      return;
    }
    std::vector<uint32_t> silent;
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      const uint32_t id = it->first;
      Node& node = it->second;
      const bool late = now - node.last_heartbeat > options_.heartbeat_timeout;
      if (node.connected && common::NodeKindOf(id) == NodeKind::kStorage && late) {
        silent.push_back(id);
      } else if (common::NodeKindOf(id) != NodeKind::kStorage && node.subscriber == nullptr &&
                 late) {
        // A client or admin that registered but never watched within the
        // heartbeat timeout: forgotten (it registers again), so that
        // registrations alone cannot grow the node list without bound.
        CELLAR_LOG(INFO) << common::NodeName(id) << " registered but did not watch within "
                         << absl::FormatDuration(options_.heartbeat_timeout)
                         << ": forgotten";
        if (common::NodeKindOf(id) == NodeKind::kClient) gone_clients.push_back(id);
        it = ForgetNodeLocked(it);
        continue;
      }
      ++it;
    }
    if (!silent.empty()) {
      NodesLostLocked(silent,
                      absl::StrCat("no heartbeat for more than ",
                                   absl::FormatDuration(options_.heartbeat_timeout)),
                      DownCause::kMissedHeartbeats);
    }
  }
  if (on_client_gone_) {
    for (uint32_t id : gone_clients) on_client_gone_(id);
  }
}

ClusterManager::NodeMap::iterator ClusterManager::ForgetNodeLocked(NodeMap::iterator it) {
  versions_.NodeForgotten(it->first);
  it->second.info.set_state(cellar::v1::NODE_DOWN);
  PublishNodeLocked(it->second);
  return nodes_.erase(it);
}

absl::StatusOr<ClusterManager::ProbeTarget> ClusterManager::UnreachableTarget(
    uint32_t node_id) const {
  if (node_id == 0) return absl::InvalidArgumentError("node_id: required");
  if (common::NodeKindOf(node_id) != NodeKind::kStorage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node_id: ", common::NodeName(node_id),
        " is not a storage (only storages are probed when reported unreachable)"));
  }
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() && !pt_.NodeIds().contains(node_id)) {
    return absl::NotFoundError(
        absl::StrCat("node_id: ", common::NodeName(node_id), " is not a known storage"));
  }
  if (state_ != cellar::v1::CLUSTER_RUNNING) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
        absl::StrCat("cluster is ", StateName(state_),
                     ": unreachable storages are probed only while RUNNING"));
  }
  ProbeTarget probe;
  probe.target.node_id = node_id;
  if (it == nodes_.end() || !it->second.connected) {
    probe.down = true;
    return probe;
  }
  probe.target.address = it->second.info.address();
  probe.generation = it->second.generation;
  return probe;
}

bool ClusterManager::ProbeFailed(uint32_t node_id, uint64_t generation,
                                 absl::Time probe_started, const std::string& why) {
  absl::MutexLock l(&mu_);
  if (shutting_down_) return false;
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || !it->second.connected || it->second.generation != generation ||
      it->second.last_heartbeat > probe_started) {
    return false;
  }
  NodesLostLocked({node_id}, why, DownCause::kUnreachable);
  return true;
}

bool ClusterManager::IsConnected(uint32_t node_id) const {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  return it != nodes_.end() && it->second.connected;
}

absl::StatusOr<CommitPlan> ClusterManager::PrepareCommit(
    uint64_t tid, const CommitVotes& votes, const std::vector<uint32_t>& partitions) {
  absl::MutexLock l(&mu_);
  // STOPPING: transactions already in Finish complete (new ones cannot
  // Begin).
  if (state_ != cellar::v1::CLUSTER_RUNNING && state_ != cellar::v1::CLUSTER_STOPPING) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
        absl::StrCat("cluster is ", StateName(state_), ", not RUNNING"));
  }
  for (uint32_t p : partitions) {
    if (p >= pt_.num_partitions()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partition ", p, " out of range (", pt_.num_partitions(), " partitions)"));
    }
  }
  // Voters per partition: connected storages with a writable cell of it (a
  // voter that is gone now is a non-voter: its lock would fail anyway).
  CommitPlan plan;
  absl::flat_hash_set<uint32_t> voting_nodes, readable_nodes;
  for (const auto& [p, ids] : votes.voters) {
    if (p >= pt_.num_partitions()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partition_voters: partition ", p, " out of range (", pt_.num_partitions(),
          " partitions)"));
    }
    for (uint32_t id : ids) {
      auto it = nodes_.find(id);
      if (it == nodes_.end() || common::NodeKindOf(id) != NodeKind::kStorage) {
        return absl::InvalidArgumentError(
            absl::StrCat("node ", id, " is not a known storage node"));
      }
      const common::CellState state = pt_.CellStateOf(p, id);
      if (!it->second.connected || !common::IsWritable(state)) continue;
      std::vector<uint32_t>& voters = plan.voters_by_partition[p];
      if (std::find(voters.begin(), voters.end(), id) != voters.end()) continue;
      voters.push_back(id);
      voting_nodes.insert(id);
      if (common::IsReadable(state)) {
        plan.readable_by_partition[p].push_back(id);
        readable_nodes.insert(id);
      }
    }
  }
  for (uint32_t p : partitions) {
    if (plan.readable_by_partition[p].empty()) {
      std::vector<std::string> names;
      for (uint32_t id : pt_.ReadableNodes(p)) names.push_back(common::NodeName(id));
      return absl::UnavailableError(absl::StrCat(
          "partition ", p, ": none of its readable cells (",
          names.empty() ? "none" : absl::StrJoin(names, ", "),
          ") voted for it on a connected storage: committing would leave it stale"));
    }
  }
  // Rule 2: every partition holding a stored object was checked for
  // conflicts by a cell readable at the checked table version and ever
  // since (a storage with a stale table may have skipped the check).
  absl::flat_hash_set<uint32_t> object_partitions;
  for (uint64_t oid : votes.oids) {
    object_partitions.insert(static_cast<uint32_t>(oid % pt_.num_partitions()));
  }
  for (uint32_t p : object_partitions) {
    const std::vector<uint32_t>& readable = plan.readable_by_partition[p];
    const bool checked = std::any_of(
        votes.conflict_checks.begin(), votes.conflict_checks.end(),
        [&](const ConflictCheckReport& c) {
          if (c.partition != p || c.ptid > pt_.ptid()) return false;
          if (std::find(readable.begin(), readable.end(), c.node_id) == readable.end()) {
            return false;
          }
          auto since = readable_since_.find(CellKey{p, c.node_id});
          const uint64_t from = std::max(
              readable_base_ptid_, since == readable_since_.end() ? 0 : since->second);
          return c.ptid >= from;
        });
    if (!checked) {
      return common::ErrorWithReason(
          absl::StatusCode::kAborted, common::kReasonNotChecked,
          absl::StrCat("partition ", p,
                       ": no readable cell checked this transaction's stores for "
                       "conflicts at a table version still valid (ptid ",
                       pt_.ptid(), "): retry the transaction"));
    }
  }
  max_prepared_tid_ = std::max(max_prepared_tid_, tid);
  // Rule 8: a writable cell that did not vote for its partition misses
  // this commit.
  cellar::v1::PartitionTableDelta delta;
  absl::flat_hash_set<uint32_t> non_voters;
  for (uint32_t p : partitions) {
    const std::vector<uint32_t>& voters = plan.voters_by_partition[p];
    const std::vector<common::PtCell> row = pt_.Row(p);
    for (const common::PtCell& cell : row) {
      if (!common::IsWritable(cell.state)) continue;
      if (std::find(voters.begin(), voters.end(), cell.node_id) != voters.end()) {
        auto created = catch_up_.find(CellKey{p, cell.node_id});
        if (created != catch_up_.end() && created->second.created_ptid > votes.client_ptid) {
          created->second.needed_tid = std::max(created->second.needed_tid, tid);
        }
        continue;
      }
      CatchUp& c = CatchUpLocked(p, cell.node_id);
      c.needed_tid = std::max(c.needed_tid, tid);
      if (common::IsReadable(cell.state)) {
        c.known_tid = std::max(c.known_tid, CompleteTidLocked(p));
        SetCellLocked(p, cell.node_id, cellar::v1::CELL_OUT_OF_DATE, &delta);
      }
      if (!voting_nodes.contains(cell.node_id)) non_voters.insert(cell.node_id);
    }
  }
  PublishDeltaLocked(&delta);
  plan.ptid = pt_.ptid();
  std::vector<uint32_t> ordered(voting_nodes.begin(), voting_nodes.end());
  std::sort(ordered.begin(), ordered.end());
  for (uint32_t id : ordered) {
    const StorageTarget target{id, nodes_[id].info.address()};
    (readable_nodes.contains(id) ? plan.readable_voters : plan.other_voters).push_back(target);
  }
  ordered.assign(non_voters.begin(), non_voters.end());
  std::sort(ordered.begin(), ordered.end());
  for (uint32_t id : ordered) {
    auto it = nodes_.find(id);
    if (it != nodes_.end() && it->second.connected) {
      plan.non_voters.push_back({id, it->second.info.address()});
    }
  }
  return plan;
}

void ClusterManager::HoldPartitions(uint64_t tid, const std::vector<uint32_t>& partitions) {
  absl::MutexLock l(&mu_);
  holds_[tid] = partitions;
}

void ClusterManager::ReleaseHold(uint64_t tid) {
  absl::MutexLock l(&mu_);
  holds_.erase(tid);
}

bool ClusterManager::HeldLocked(uint32_t partition) const {
  return std::any_of(holds_.begin(), holds_.end(), [&](const auto& hold) {
    return std::find(hold.second.begin(), hold.second.end(), partition) != hold.second.end();
  });
}

uint64_t ClusterManager::CompleteTidLocked(uint32_t partition) const {
  uint64_t complete = hub_->last_tid();
  for (const auto& [tid, partitions] : holds_) {  // ascending tids
    if (tid <= complete &&
        std::find(partitions.begin(), partitions.end(), partition) != partitions.end()) {
      return tid - 1;
    }
  }
  return complete;
}

std::vector<uint32_t> ClusterManager::LockFailed(
    uint64_t tid, const std::vector<uint32_t>& failed,
    const absl::btree_map<uint32_t, std::vector<uint32_t>>& voted,
    const std::vector<uint32_t>& locked) {
  absl::MutexLock l(&mu_);
  cellar::v1::PartitionTableDelta delta;
  std::vector<uint32_t> unheld;
  for (const auto& [p, voters] : voted) {
    if (p >= pt_.num_partitions()) continue;
    // A readable cell, on a connected node, that holds the commit. (p is
    // captured by copy: C++17 lambdas cannot capture a structured binding,
    // which clang enforces.)
    const bool held = std::any_of(locked.begin(), locked.end(), [&, p = p](uint32_t id) {
      auto node = nodes_.find(id);
      return node != nodes_.end() && node->second.connected &&
             common::IsReadable(pt_.CellStateOf(p, id));
    });
    bool missed = false;
    for (uint32_t id : failed) {
      if (std::find(voters.begin(), voters.end(), id) == voters.end()) continue;
      const common::CellState state = pt_.CellStateOf(p, id);
      if (!common::IsWritable(state)) continue;
      missed = true;
      CatchUp& c = CatchUpLocked(p, id);
      c.needed_tid = std::max(c.needed_tid, tid);
      if (common::IsReadable(state) && held) {
        // It held everything that completed before this commit.
        c.known_tid = std::max(c.known_tid, CompleteTidLocked(p));
        SetCellLocked(p, id, cellar::v1::CELL_OUT_OF_DATE, &delta);
      }
    }
    if (missed && !held) unheld.push_back(p);
  }
  PublishDeltaLocked(&delta);
  NodesLostLocked(failed,
                  absl::StrCat("it could not lock tid ", common::TidHex(tid),
                               " that other storages locked"),
                  DownCause::kLockFailed);
  return unheld;
}

absl::StatusOr<cellar::v1::ReportReplicationResponse> ClusterManager::ReportReplication(
    const cellar::v1::ReportReplicationRequest& request) {
  absl::MutexLock l(&mu_);
  if (state_ != cellar::v1::CLUSTER_RUNNING) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
        absl::StrCat("cluster is ", StateName(state_), ": replication waits for RUNNING"));
  }
  const uint32_t id = request.node_id();
  auto node = nodes_.find(id);
  if (node == nodes_.end() || !node->second.connected ||
      common::NodeKindOf(id) != NodeKind::kStorage) {
    return absl::NotFoundError(absl::StrCat("storage ", common::NodeName(id),
                                            " is not connected: register again"));
  }
  const uint32_t p = request.partition();
  if (p >= pt_.num_partitions()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: ", p, " out of range (", pt_.num_partitions(), " partitions)"));
  }
  cellar::v1::ReportReplicationResponse response;
  const common::CellState state = pt_.CellStateOf(p, id);
  if (common::IsReadable(state)) {
    response.set_up_to_date(true);
    return response;
  }
  if (state != cellar::v1::CELL_OUT_OF_DATE) {
    return absl::FailedPreconditionError(absl::StrCat(
        common::NodeName(id), " holds no OUT_OF_DATE cell of partition ", p, " (ptid ",
        pt_.ptid(), ")"));
  }
  // Commits held unpublished in this partition are not complete anywhere
  // yet: neither a claim nor a replication target goes past them.
  const uint64_t complete = CompleteTidLocked(p);
  CatchUp& c = CatchUpLocked(p, id);
  if (c.fresh && request.tid() != 0) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonCellRecreated,
        absl::StrCat("the cell of ", common::NodeName(id), " of partition ", p,
                     " was created anew at ptid <= ", pt_.ptid(),
                     ": drop its data and replicate from tid 0"));
  }
  c.fresh = false;
  // Claims past the last completed tid cannot be checked (transactions
  // below them may still be locking): count only up to it.
  const uint64_t reached = std::max(std::min(request.tid(), complete), c.known_tid);
  if (reached >= c.needed_tid && !HeldLocked(p)) {
    cellar::v1::PartitionTableDelta delta;
    SetCellLocked(p, id, cellar::v1::CELL_UP_TO_DATE, &delta);
    catch_up_.erase(CellKey{p, id});
    repair_sources_.erase(CellKey{p, id});
    CELLAR_LOG(INFO) << common::NodeName(id) << " caught up on partition " << p
                     << " (up to " << common::TidHex(reached) << ")";
    PublishDeltaLocked(&delta);
    FinishFeedingLocked();  // the cell may complete a data move
    response.set_up_to_date(true);
    return response;
  }
  response.set_min_tid(std::min(c.known_tid, complete));
  response.set_max_tid(complete);
  for (const common::PtCell& cell : pt_.Row(p)) {
    if (cell.node_id == id || !common::IsReadable(cell.state)) continue;
    auto repair = repair_sources_.find(CellKey{p, id});  // RepairCell: that source only
    if (repair != repair_sources_.end() && repair->second != cell.node_id) continue;
    auto it = nodes_.find(cell.node_id);
    if (it != nodes_.end() && it->second.connected) *response.add_sources() = it->second.info;
  }
  return response;
}

void ClusterManager::SetStateLocked(ClusterState state) {
  if (state_ == state) return;
  CELLAR_LOG(INFO) << "cluster state " << StateName(state_) << " -> " << StateName(state);
  state_ = state;
  if (state == cellar::v1::CLUSTER_RUNNING) {
    // Conflict checks count from the table this run starts with.
    readable_base_ptid_ = pt_.ptid();
    readable_since_.clear();
  }
  RefreshStorageStatesLocked();
  cellar::v1::ClusterEvent event;
  event.set_cluster_state(state);
  hub_->Publish(event);
}

void ClusterManager::PublishNodeLocked(const Node& node) {
  cellar::v1::ClusterEvent event;
  *event.mutable_node() = node.info;
  hub_->Publish(event);
}

absl::flat_hash_set<uint32_t> ClusterManager::ConnectedStoragesLocked() const {
  absl::flat_hash_set<uint32_t> ids;
  for (const auto& [id, node] : nodes_) {
    if (node.connected && common::NodeKindOf(id) == NodeKind::kStorage) ids.insert(id);
  }
  return ids;
}

cellar::v1::ClusterSnapshot ClusterManager::SnapshotLocked() const {
  cellar::v1::ClusterSnapshot snapshot;
  snapshot.set_cluster_state(state_);
  *snapshot.mutable_partition_table() = pt_.ToProto();
  for (const auto& [id, node] : nodes_) *snapshot.add_nodes() = node.info;
  snapshot.set_epoch(epoch_);
  *snapshot.mutable_feature_flags() = flags_.Table();
  return snapshot;
}

void ClusterManager::AdvanceOidsPast(uint64_t oid) {
  absl::MutexLock l(&mu_);
  last_oid_ = std::max(last_oid_, oid);
}

absl::StatusOr<uint64_t> ClusterManager::AllocateOids(uint32_t count) {
  if (count == 0 || count > kMaxOidBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("count: must be in [1, ", kMaxOidBatch, "], got ", count));
  }
  // A few rounds: a storage that connects while a mark is being saved
  // needs it too.
  for (int round = 0; round < 3; ++round) {
    std::vector<StorageTarget> targets;
    uint64_t mark;
    uint64_t epoch;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](bool* saving) { return !*saving; }, &saving_oid_mark_));
      if (state_ != cellar::v1::CLUSTER_RUNNING) {
        return common::ErrorWithReason(
            absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
            absl::StrCat("cluster is ", StateName(state_), ", not RUNNING"));
      }
      if (last_oid_ >= kMaxOid - count) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the OID space is exhausted: the last OID is ", last_oid_,
            " (a storage reported it or an OID mark that high); no OID above ", kMaxOid,
            " is handed out"));
      }
      const uint64_t first = last_oid_ + 1;
      bool everywhere = true;
      for (const auto& [id, node] : nodes_) {
        if (node.connected && common::NodeKindOf(id) == NodeKind::kStorage &&
            !oid_mark_on_.contains(id)) {
          everywhere = false;
          targets.push_back({id, node.info.address()});
        }
      }
      if (everywhere && first + count <= oid_high_water_) {
        last_oid_ += count;
        return first;
      }
      // Persist a new mark first (on every connected storage when it
      // rises, else on those that lack it).
      mark = first + count <= oid_high_water_ ? oid_high_water_ : first + count + kOidReserve;
      if (mark > oid_high_water_) targets = RunningStoragesLocked();
      if (targets.empty()) {
        return absl::UnavailableError("no storage is connected to persist the OID high-water mark");
      }
      if (storages_ == nullptr) {
        return absl::UnavailableError("this master cannot persist the OID high-water mark");
      }
      epoch = epoch_;
      saving_oid_mark_ = true;
    }
    const std::vector<absl::Status> results =
        storages_->SaveMasterStateAll(targets, epoch, mark);
    absl::MutexLock l(&mu_);
    saving_oid_mark_ = false;
    for (const absl::Status& s : results) {
      if (!s.ok()) {
        CELLAR_LOG(WARNING) << "OID high-water mark " << mark << " not persisted: " << s;
        return absl::UnavailableError(absl::StrCat(
            "cannot persist the OID high-water mark, no OID handed out (retry): ", s.message()));
      }
    }
    if (mark > oid_high_water_) {
      oid_high_water_ = mark;
      oid_mark_on_.clear();
    }
    for (const StorageTarget& t : targets) oid_mark_on_.insert(t.node_id);
  }
  return absl::UnavailableError("the storages changed while persisting the OID high-water mark: retry");
}

absl::Status ClusterManager::CheckRunning() const {
  absl::MutexLock l(&mu_);
  if (state_ == cellar::v1::CLUSTER_RUNNING) return absl::OkStatus();
  return common::ErrorWithReason(
      absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
      absl::StrCat("cluster is ", StateName(state_), ", not RUNNING"));
}

ClusterManager::Readiness ClusterManager::AwaitRunning(
    absl::Time until, const std::function<bool()>& stop) const {
  constexpr absl::Duration kStopPoll = absl::Milliseconds(100);
  absl::MutexLock l(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutting_down_ || (state_ != cellar::v1::CLUSTER_RECOVERING &&
                              state_ != cellar::v1::CLUSTER_VERIFYING);
  };
  while (!settled()) {
    const absl::Time now = absl::Now();
    if (now >= until) return Readiness::kTimedOut;
    if (stop && stop()) return Readiness::kStopped;
    mu_.AwaitWithDeadline(absl::Condition(&settled), std::min(until, now + kStopPoll));
  }
  if (shutting_down_) return Readiness::kShuttingDown;
  return state_ == cellar::v1::CLUSTER_RUNNING ? Readiness::kRunning : Readiness::kNotOnTheWay;
}

absl::Status ClusterManager::CheckClient(uint32_t node_id) const {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || common::NodeKindOf(node_id) != NodeKind::kClient) {
    return absl::NotFoundError(absl::StrCat(
        "node_id: ", node_id, " is not a registered client (register again)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StorageTarget>> ClusterManager::Targets(
    const std::vector<uint32_t>& node_ids) const {
  absl::MutexLock l(&mu_);
  std::vector<StorageTarget> targets;
  for (uint32_t id : node_ids) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || common::NodeKindOf(id) != NodeKind::kStorage) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", id, " is not a known storage node"));
    }
    if (!it->second.connected) {
      return absl::UnavailableError(
          absl::StrCat("storage ", common::NodeName(id), " is not connected"));
    }
    targets.push_back({id, it->second.info.address()});
  }
  return targets;
}

std::vector<StorageTarget> ClusterManager::RunningStorages() const {
  absl::MutexLock l(&mu_);
  return RunningStoragesLocked();
}

absl::Status ClusterManager::PersistTokenTable(const cellar::v1::ClusterTokenTable& table) {
  return PersistOnStorages("the token table", table.version(),
                           [&](const std::vector<StorageTarget>& targets, uint64_t epoch) {
                             return storages_->SaveTokenTableAll(targets, epoch, table);
                           });
}

absl::Status ClusterManager::PersistFeatureFlags(const cellar::v1::FeatureFlagTable& table) {
  return PersistOnStorages("the feature flag table", table.version(),
                           [&](const std::vector<StorageTarget>& targets, uint64_t epoch) {
                             return storages_->SaveFeatureFlagsAll(targets, epoch, table);
                           });
}

absl::Status ClusterManager::PersistOnStorages(
    absl::string_view what, uint64_t version,
    const std::function<std::vector<absl::Status>(const std::vector<StorageTarget>&,
                                                  uint64_t epoch)>& save) {
  std::vector<StorageTarget> targets;
  uint64_t epoch;
  {
    absl::MutexLock l(&mu_);
    targets = RunningStoragesLocked();
    epoch = epoch_;
  }
  if (targets.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no storage is connected: ", what, " cannot be persisted (start a storage, then retry)"));
  }
  if (storages_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("this master cannot persist ", what));
  }
  const std::vector<absl::Status> results = save(targets, epoch);
  absl::Status first_error = absl::OkStatus();
  size_t saved = 0;
  for (const absl::Status& s : results) {
    if (s.ok()) {
      ++saved;
    } else if (first_error.ok()) {
      first_error = s;
    }
  }
  if (saved == 0) {
    return absl::UnavailableError(absl::StrCat("no storage could persist ", what,
                                               ", nothing changed (retry): ",
                                               first_error.message()));
  }
  if (!first_error.ok()) {
    CELLAR_LOG(WARNING) << what << " version " << version << " persisted on " << saved << " of "
                        << results.size() << " storage(s); the others catch up: "
                        << first_error;
  }
  return absl::OkStatus();
}

absl::StatusOr<FlagRegistry::SetResult> ClusterManager::SetFeatureFlag(
    const cellar::v1::SetFeatureFlagRequest& request) {
  absl::StatusOr<FlagRegistry::SetResult> result = flags_.Set(
      request, [this](const cellar::v1::FeatureFlagTable& t) { return PersistFeatureFlags(t); });
  if (result.ok()) PublishFeatureFlags();
  return result;
}

absl::StatusOr<cellar::v1::DeleteFeatureFlagResponse> ClusterManager::DeleteFeatureFlag(
    absl::string_view name) {
  absl::StatusOr<cellar::v1::DeleteFeatureFlagResponse> result = flags_.Delete(
      name, [this](const cellar::v1::FeatureFlagTable& t) { return PersistFeatureFlags(t); });
  if (result.ok()) PublishFeatureFlags();
  return result;
}

absl::Status ClusterManager::SeedFeatureFlags(
    const std::vector<cellar::v1::FeatureFlag>& initial) {
  absl::Status s = flags_.SeedAbsent(
      initial, [this](const cellar::v1::FeatureFlagTable& t) { return PersistFeatureFlags(t); });
  if (s.ok()) PublishFeatureFlags();
  return s;
}

void ClusterManager::PublishFeatureFlags() {
  // Under mu_: a Watch that subscribes concurrently (snapshot and
  // subscription under mu_) sees the new table either way.
  absl::MutexLock l(&mu_);
  PublishFeatureFlagsLocked();
}

void ClusterManager::PublishFeatureFlagsLocked() {
  cellar::v1::ClusterEvent event;
  *event.mutable_feature_flags() = flags_.Table();
  hub_->Publish(event);
}

std::vector<StorageTarget> ClusterManager::RunningStoragesLocked() const {
  std::vector<StorageTarget> targets;
  for (const auto& [id, node] : nodes_) {
    if (node.connected && common::NodeKindOf(id) == NodeKind::kStorage) {
      targets.push_back({id, node.info.address()});
    }
  }
  return targets;
}

std::vector<uint32_t> ClusterManager::NodesWithCellOf(uint32_t partition) const {
  absl::MutexLock l(&mu_);
  std::vector<uint32_t> ids;
  if (partition >= pt_.num_partitions()) return ids;
  for (const common::PtCell& cell : pt_.Row(partition)) ids.push_back(cell.node_id);
  return ids;
}

uint32_t ClusterManager::num_partitions() const {
  absl::MutexLock l(&mu_);
  return pt_.num_partitions();
}

cellar::v1::GetClusterInfoResponse ClusterManager::Info() const {
  absl::MutexLock l(&mu_);
  cellar::v1::GetClusterInfoResponse info;
  info.set_cluster_name(options_.cluster_name);
  info.set_cluster_state(state_);
  *info.mutable_partition_table() = pt_.ToProto();
  for (const auto& [id, node] : nodes_) *info.add_nodes() = node.info;
  info.set_last_tid(hub_->last_tid());
  info.set_last_oid(last_oid_);
  info.set_epoch(epoch_);
  info.set_master_node_id(options_.master_node_id);
  info.set_operational(pt_.IsOperational(ConnectedStoragesLocked()));
  info.set_unix_time_ms(absl::ToUnixMillis(clock_->Now()));  // admin's clock-skew check
  return info;
}

// ---- Operator actions ----

absl::StatusOr<ClusterState> ClusterManager::SetClusterState(ClusterState state) {
  if (state == cellar::v1::CLUSTER_STATE_UNSPECIFIED ||
      !cellar::v1::ClusterState_IsValid(state)) {
    return absl::InvalidArgumentError(
        absl::StrCat("state: must be CLUSTER_STOPPING or CLUSTER_RUNNING, got ",
                     static_cast<int>(state)));
  }
  {
    absl::MutexLock l(&mu_);
    if (state == cellar::v1::CLUSTER_STOPPING) {
      SetStateLocked(cellar::v1::CLUSTER_STOPPING);
      return state_;
    }
    if (state == cellar::v1::CLUSTER_RUNNING && state_ == cellar::v1::CLUSTER_RUNNING) {
      return state_;
    }
    if (state == cellar::v1::CLUSTER_RUNNING && state_ == cellar::v1::CLUSTER_STOPPING) {
      // Resuming a stop: while STOPPING the table was not kept up to date
      // with departing storages, so the way back is the one a restarted
      // master takes: RECOVERING, then verification, then RUNNING.
      if (pt_.empty() || !pt_.IsOperational(ConnectedStoragesLocked())) {
        return absl::FailedPreconditionError(
            "cluster stays STOPPING: the connected storages do not hold a readable cell "
            "of every partition; bring the missing storages back, then ask for RUNNING");
      }
      CELLAR_LOG(WARNING) << "operator resumes a STOPPING cluster: recovering";
      SetStateLocked(cellar::v1::CLUSTER_RECOVERING);
    }
    if (state != cellar::v1::CLUSTER_RUNNING || state_ != cellar::v1::CLUSTER_RECOVERING) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cluster is ", StateName(state_), ": cannot go to ", StateName(state),
          " (an operator may ask for STOPPING from any state, and RUNNING from "
          "RECOVERING or STOPPING)"));
    }
  }
  return Start();  // RECOVERING -> RUNNING; re-checks the state
}

absl::StatusOr<PtChangeResult> ClusterManager::ChangePartitionTable(
    cellar::v1::PartitionTableOperation operation, const std::vector<uint32_t>& node_ids,
    uint32_t replicas, bool dry_run) {
  switch (operation) {
    case cellar::v1::PT_TWEAK:
    case cellar::v1::PT_SET_REPLICAS:
      if (!node_ids.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node_ids: ", cellar::v1::PartitionTableOperation_Name(operation),
            " takes no node"));
      }
      break;
    case cellar::v1::PT_ADD:
      if (node_ids.empty()) {
        return absl::InvalidArgumentError("node_ids: name at least one storage to add");
      }
      break;
    case cellar::v1::PT_DROP:
      if (node_ids.size() != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("node_ids: drop takes exactly one storage, got ", node_ids.size()));
      }
      break;
    default:
      return absl::InvalidArgumentError(
          "operation: must be PT_TWEAK, PT_ADD, PT_DROP or PT_SET_REPLICAS");
  }
  if (operation != cellar::v1::PT_SET_REPLICAS && replicas != 0) {
    return absl::InvalidArgumentError("replicas: only for PT_SET_REPLICAS");
  }
  for (uint32_t id : node_ids) {
    if (common::NodeKindOf(id) != NodeKind::kStorage) {
      return absl::InvalidArgumentError(
          absl::StrCat("node_ids: ", id, " is not a storage node id"));
    }
  }

  absl::MutexLock l(&mu_);
  if (state_ != cellar::v1::CLUSTER_RUNNING) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
        absl::StrCat("cluster is ", StateName(state_),
                     ": the partition table changes only while RUNNING"));
  }
  const std::vector<StorageNode> nodes = PlannerNodesLocked();
  PlanOptions options;
  options.dry_run = dry_run;
  PtPlanner planner;
  absl::StatusOr<Plan> plan;
  switch (operation) {
    case cellar::v1::PT_TWEAK:
      plan = planner.Tweak(pt_, nodes, options);
      break;
    case cellar::v1::PT_ADD:
      plan = planner.Add(pt_, nodes, node_ids, options);
      break;
    case cellar::v1::PT_DROP:
      plan = planner.Drop(pt_, nodes, node_ids[0], options);
      break;
    default:
      plan = planner.SetReplicas(pt_, nodes, replicas, options);
      break;
  }
  if (!plan.ok()) return plan.status();

  PtChangeResult result;
  result.ptid_before = pt_.ptid();
  result.plan = *std::move(plan);
  if (!dry_run && !result.plan.empty()) {
    if (absl::Status s = ApplyPlanLocked(result.plan); !s.ok()) return s;
    result.applied = true;
    FinishFeedingLocked();  // a plan may complete moves (e.g. fewer replicas)
  }
  if (!dry_run && operation == cellar::v1::PT_DROP) {
    // The dropped storage leaves the registry for good (see the header).
    auto it = nodes_.find(node_ids[0]);
    if (it != nodes_.end()) {
      it->second.info.set_state(cellar::v1::NODE_UNKNOWN);
      PublishNodeLocked(it->second);
      if (it->second.subscriber != nullptr) hub_->Close(node_ids[0]);
      versions_.NodeForgotten(node_ids[0]);
      nodes_.erase(it);
    }
    CELLAR_LOG(INFO) << common::NodeName(node_ids[0])
                     << " dropped by an operator: forgotten";
  }
  result.ptid = pt_.ptid();
  result.num_replicas = pt_.num_replicas();
  return result;
}

std::vector<StorageNode> ClusterManager::PlannerNodesLocked() const {
  std::vector<StorageNode> nodes;
  absl::flat_hash_set<uint32_t> listed;
  for (const auto& [id, node] : nodes_) {
    if (common::NodeKindOf(id) != NodeKind::kStorage) continue;
    StorageNode n;
    n.node_id = id;
    // RefreshStorageStatesLocked keeps it RUNNING/PENDING/DOWN.
    n.state = node.info.state();
    n.label = node.info.label();
    n.quarantined = node.info.quarantined();
    // Canary and shadow storages hold extra cells only (docs/rollouts.md).
    n.canary = node.info.track() != "stable";
    nodes.push_back(std::move(n));
    listed.insert(id);
  }
  for (uint32_t id : pt_.NodeIds()) {
    if (listed.contains(id)) continue;
    StorageNode n;  // in the table, never seen by this master
    n.node_id = id;
    n.state = cellar::v1::NODE_DOWN;
    nodes.push_back(std::move(n));
  }
  return nodes;
}

absl::Status ClusterManager::ApplyPlanLocked(const Plan& plan) {
  absl::StatusOr<common::PartitionTable> next = ApplyPlan(pt_, plan);
  if (!next.ok()) return next.status();
  // A new cell may miss every transaction committed or being committed.
  const uint64_t needed = std::max(hub_->last_tid(), max_prepared_tid_);
  for (const PlannedChange& c : plan.changes) {
    catch_up_.erase(CellKey{c.partition, c.node_id});
    if (!common::IsReadable(c.state)) {
      readable_since_.erase(CellKey{c.partition, c.node_id});
    } else if (!common::IsReadable(c.previous)) {
      readable_since_[CellKey{c.partition, c.node_id}] = next->ptid();
    }
    if (c.state != cellar::v1::CELL_OUT_OF_DATE) continue;
    CatchUp& entry = CatchUpLocked(c.partition, c.node_id);
    entry.needed_tid = needed;
    if (c.previous == cellar::v1::CELL_STATE_UNSPECIFIED ||
        c.previous == cellar::v1::CELL_CORRUPTED) {
      entry.known_tid = 0;  // a new (or re-added) cell starts from nothing
      entry.fresh = true;   // and the storage resets it (storage_node.cc)
      entry.created_ptid = next->ptid();
    } else {
      entry.known_tid = CompleteTidLocked(c.partition);  // it was readable until now
    }
  }
  const bool whole_table = next->num_replicas() != pt_.num_replicas();
  pt_ = *std::move(next);
  CELLAR_LOG(INFO) << "partition table " << pt_.ptid() << ": " << plan.operation << ", "
                   << plan.changes.size() << " cell change(s)"
                   << (whole_table ? absl::StrCat(", replicas ", pt_.num_replicas()) : "");
  cellar::v1::ClusterEvent event;
  if (whole_table) {
    // PartitionTableDelta has no field for R.
    *event.mutable_partition_table() = pt_.ToProto();
  } else {
    *event.mutable_partition_table_delta() = plan.ToDelta(pt_.ptid());
  }
  hub_->Publish(event);
  std::vector<std::pair<uint32_t, cellar::v1::NodeState>> before;
  for (const auto& [id, node] : nodes_) before.emplace_back(id, node.info.state());
  RefreshStorageStatesLocked();
  for (const auto& [id, state] : before) {
    const Node& node = nodes_[id];
    if (node.info.state() != state) PublishNodeLocked(node);
  }
  return absl::OkStatus();
}

void ClusterManager::FinishFeedingLocked() {
  absl::StatusOr<Plan> plan = PtPlanner().FinishFeeding(pt_, PlannerNodesLocked());
  if (!plan.ok()) {
    CELLAR_LOG(WARNING) << "cannot finish feeding cells: " << plan.status().message();
    return;
  }
  if (plan->empty()) return;
  if (absl::Status s = ApplyPlanLocked(*plan); !s.ok()) {
    CELLAR_LOG(WARNING) << "cannot finish feeding cells: " << s.message();
  }
}

absl::StatusOr<KilledNode> ClusterManager::KillNode(uint32_t node_id) {
  if (node_id == options_.master_node_id ||
      (node_id != 0 && common::NodeKindOf(node_id) == NodeKind::kMaster)) {
    return absl::FailedPreconditionError(
        "node_id: a master cannot be killed through the primary (stop its process)");
  }
  KilledNode killed;
  bool client_gone = false;
  {
    absl::MutexLock l(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) {
      return absl::NotFoundError(
          absl::StrCat("node_id: ", common::NodeName(node_id), " is not a known node"));
    }
    const NodeKind kind = common::NodeKindOf(node_id);
    if (kind == NodeKind::kStorage) {
      NodesLostLocked({node_id}, "killed by an operator", DownCause::kOperator);
      killed.target = {node_id, it->second.info.address()};
      killed.node = it->second.info;
    } else {
      // As when its stream ends (WatchEnded); that call becomes a no-op.
      CELLAR_LOG(WARNING) << common::NodeName(node_id) << " is gone: killed by an operator";
      it->second.info.set_state(cellar::v1::NODE_DOWN);
      PublishNodeLocked(it->second);
      if (it->second.subscriber != nullptr) hub_->Close(node_id);
      killed.node = it->second.info;
      versions_.NodeForgotten(node_id);
      nodes_.erase(it);
      client_gone = kind == NodeKind::kClient;
    }
  }
  if (client_gone && on_client_gone_) on_client_gone_(node_id);
  return killed;
}

// ---- Version registry and quarantine ----

cellar::v1::VersionDecisionRecord DecisionRecord(const VersionDecision& decision) {
  cellar::v1::VersionDecisionRecord r;
  r.set_unix_ms(absl::ToUnixMillis(decision.at));
  r.set_version(decision.key.version);
  r.set_track(decision.key.track);
  r.set_action(ActionName(decision.action));
  r.set_by(decision.by);
  r.set_reason(decision.reason);
  return r;
}

void ClusterManager::RestoreQuarantinesLocked() {
  std::vector<VersionDecision> persisted;
  const cellar::v1::FeatureFlagTable table = flags_.Table();
  for (const cellar::v1::VersionDecisionRecord& r : table.quarantines()) {
    persisted.push_back({absl::FromUnixMillis(r.unix_ms()), {r.version(), r.track()},
                         VersionDecision::Action::kQuarantine, r.by(), r.reason()});
  }
  for (const VersionKey& key : versions_.Restore(persisted)) RefreshQuarantineLocked(key);
}

absl::Status ClusterManager::PersistQuarantines() {
  absl::MutexLock one(&persist_quarantines_mu_);
  std::vector<cellar::v1::VersionDecisionRecord> records;
  uint64_t generation;
  {
    absl::MutexLock l(&mu_);
    generation = versions_.generation();
    if (generation == persisted_quarantines_ || clock_->Now() < retry_quarantines_at_) {
      return absl::OkStatus();
    }
    for (const VersionDecision& d : versions_.Quarantined()) records.push_back(DecisionRecord(d));
  }
  const uint64_t version_before = flags_.Table().version();
  absl::Status s = flags_.SetQuarantines(
      records, [this](const cellar::v1::FeatureFlagTable& t) { return PersistFeatureFlags(t); });
  {
    absl::MutexLock l(&mu_);
    if (s.ok()) {
      persisted_quarantines_ = std::max(persisted_quarantines_, generation);
      retry_quarantines_at_ = absl::InfinitePast();
      if (flags_.Table().version() != version_before) PublishFeatureFlagsLocked();
    } else {
      retry_quarantines_at_ = clock_->Now() + absl::Seconds(1);
    }
  }
  if (!s.ok()) {
    CELLAR_LOG(WARNING) << "quarantined versions not persisted (in force here; retried): " << s;
  }
  return s;
}

std::set<VersionKey> ClusterManager::ReadableVersionsLocked() const {
  std::set<VersionKey> out;
  for (uint32_t p = 0; p < pt_.num_partitions(); ++p) {
    for (const common::PtCell& cell : pt_.Row(p)) {
      if (!common::IsReadable(cell.state)) continue;
      auto it = nodes_.find(cell.node_id);
      if (it == nodes_.end()) continue;  // never registered in this term: unknown
      out.insert({it->second.info.version(), it->second.info.track()});
    }
  }
  return out;
}

void ClusterManager::RefreshQuarantineLocked(const VersionKey& key) {
  const bool quarantined = versions_.IsQuarantined(key);
  for (auto& [id, node] : nodes_) {
    if (node.info.version() != key.version || node.info.track() != key.track ||
        node.info.quarantined() == quarantined) {
      continue;
    }
    node.info.set_quarantined(quarantined);
    if (common::NodeKindOf(id) == NodeKind::kStorage) PublishNodeLocked(node);
  }
}

ClusterManager::Versions ClusterManager::ListVersions() const {
  absl::MutexLock l(&mu_);
  return {versions_.List(), versions_.History()};
}

bool ClusterManager::VersionOf(uint32_t node_id, VersionKey* key) const {
  absl::MutexLock l(&mu_);
  return versions_.KeyOf(node_id, key);
}

bool ClusterManager::IsVersionQuarantined(const VersionKey& key) const {
  absl::MutexLock l(&mu_);
  return versions_.IsQuarantined(key);
}

absl::StatusOr<bool> ClusterManager::QuarantineVersion(const VersionKey& key,
                                                       const std::string& by,
                                                       const std::string& reason) {
  absl::StatusOr<bool> changed;
  {
    absl::MutexLock l(&mu_);
    changed = versions_.Quarantine(key, by, reason);
    if (changed.ok() && *changed) RefreshQuarantineLocked(key);
  }
  // In force either way; a failure to persist is logged and retried.
  if (changed.ok() && *changed) PersistQuarantines().IgnoreError();
  return changed;
}

absl::StatusOr<bool> ClusterManager::UnquarantineVersion(const VersionKey& key,
                                                         const std::string& by,
                                                         const std::string& reason) {
  absl::StatusOr<bool> changed;
  {
    absl::MutexLock l(&mu_);
    changed = versions_.Unquarantine(key, by, reason);
    if (changed.ok() && *changed) RefreshQuarantineLocked(key);
  }
  if (changed.ok() && *changed) PersistQuarantines().IgnoreError();
  return changed;
}

// ---- Replica repair and truncate ----

absl::StatusOr<uint64_t> ClusterManager::RepairCell(uint32_t partition, uint32_t node_id,
                                                    uint32_t source_node_id) {
  absl::MutexLock l(&mu_);
  if (state_ != cellar::v1::CLUSTER_RUNNING) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
        absl::StrCat("cluster is ", StateName(state_), ": repair needs RUNNING"));
  }
  if (partition >= pt_.num_partitions()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition: ", partition, " out of range (", pt_.num_partitions(), " partitions)"));
  }
  for (uint32_t id : {node_id, source_node_id}) {
    if (id == 0 || common::NodeKindOf(id) != NodeKind::kStorage) {
      return absl::InvalidArgumentError(absl::StrCat(id, " is not a storage node id"));
    }
  }
  if (node_id == source_node_id) {
    return absl::InvalidArgumentError("source_node_id: must differ from node_id");
  }
  auto source = nodes_.find(source_node_id);
  if (!common::IsReadable(pt_.CellStateOf(partition, source_node_id)) ||
      source == nodes_.end() || !source->second.connected) {
    return absl::FailedPreconditionError(absl::StrCat(
        common::NodeName(source_node_id), " holds no readable cell of partition ", partition,
        " on a connected node: choose another source"));
  }
  const common::CellState target = pt_.CellStateOf(partition, node_id);
  if (target == cellar::v1::CELL_STATE_UNSPECIFIED || target == cellar::v1::CELL_DISCARDED) {
    return absl::FailedPreconditionError(absl::StrCat(
        common::NodeName(node_id), " holds no cell of partition ", partition));
  }
  if (common::IsReadable(target) && !HasOtherConnectedReadableLocked(partition, node_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the cell of ", common::NodeName(node_id), " is the last readable one of "
                     "partition ", partition));
  }
  // Drop (the storage deletes the cell's data), then re-add from nothing:
  // two deltas under one lock, so no commit sees the table in between.
  cellar::v1::PartitionTableDelta drop;
  SetCellLocked(partition, node_id, cellar::v1::CELL_DISCARDED, &drop);
  PublishDeltaLocked(&drop);
  cellar::v1::PartitionTableDelta add;
  SetCellLocked(partition, node_id, cellar::v1::CELL_OUT_OF_DATE, &add);
  const CellKey key{partition, node_id};
  catch_up_.erase(key);
  CatchUp& c = CatchUpLocked(partition, node_id);
  c.known_tid = 0;
  c.needed_tid = std::max(hub_->last_tid(), max_prepared_tid_);
  // A storage that did not see the drop (it got a whole table) still has
  // the damaged data: its first report above 0 gets CELL_RECREATED.
  c.fresh = true;
  repair_sources_[key] = source_node_id;
  PublishDeltaLocked(&add);
  // Clients still on an older table may vote on this node without
  // writing to the (reset) cell.
  c.created_ptid = pt_.ptid();
  CELLAR_LOG(WARNING) << "repair: the cell of " << common::NodeName(node_id) << " of partition "
                      << partition << " is copied again from "
                      << common::NodeName(source_node_id) << " (ptid " << pt_.ptid() << ")";
  return pt_.ptid();
}

absl::StatusOr<std::vector<StorageTarget>> ClusterManager::BeginTruncate(uint64_t tid) {
  if (tid == 0) return absl::InvalidArgumentError("tid: must not be 0");
  absl::MutexLock l(&mu_);
  if (truncating_) {
    return absl::FailedPreconditionError("another truncate is running");
  }
  const bool retry = state_ == cellar::v1::CLUSTER_RECOVERING && truncate_tid_ != 0;
  if (state_ != cellar::v1::CLUSTER_RUNNING && !retry) {
    return common::ErrorWithReason(
        absl::StatusCode::kFailedPrecondition, common::kReasonClusterNotRunning,
        absl::StrCat("cluster is ", StateName(state_), ": truncate needs RUNNING"));
  }
  const uint64_t last_tid = hub_->last_tid();
  if (tid > last_tid) {
    return absl::FailedPreconditionError(absl::StrCat("tid ", common::TidHex(tid),
                                                      " is after the last committed tid ",
                                                      common::TidHex(last_tid)));
  }
  std::vector<StorageTarget> targets;
  for (uint32_t id : pt_.NodeIds()) {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || !it->second.connected) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage ", common::NodeName(id),
          " holds cells and is not connected: every such storage must truncate"));
    }
    targets.push_back({id, it->second.info.address()});
  }
  std::sort(targets.begin(), targets.end(),
            [](const StorageTarget& a, const StorageTarget& b) { return a.node_id < b.node_id; });
  truncating_ = true;
  truncate_tid_ = tid;
  CELLAR_LOG(WARNING) << "truncate: deleting every transaction after "
                      << common::TidHex(tid) << " (last " << common::TidHex(last_tid)
                      << "), cluster back to RECOVERING";
  SetStateLocked(cellar::v1::CLUSTER_RECOVERING);
  return targets;
}

cellar::v1::ClusterState ClusterManager::FinishTruncate(uint64_t tid) {
  bool verify = false;
  {
    absl::MutexLock l(&mu_);
    truncating_ = false;
    truncate_tid_ = 0;
    hub_->ResetLastTid(tid);
    recovered_last_tid_ = tid;
    for (auto& [key, c] : catch_up_) {
      c.needed_tid = std::min(c.needed_tid, tid);
      c.known_tid = std::min(c.known_tid, tid);
    }
    max_prepared_tid_ = std::min(max_prepared_tid_, tid);
    for (auto& [id, node] : nodes_) {
      // Their temporary records are gone (TruncateData dropped them).
      node.voted_ttids.clear();
      // Clients register again and get a snapshot at `tid`: their caches
      // may hold revisions that no longer exist.
      if (common::NodeKindOf(id) == NodeKind::kClient) hub_->Close(id);
    }
    CELLAR_LOG(WARNING) << "truncate: the last tid is now " << common::TidHex(tid);
    verify = MaybeLeaveRecoveryLocked(/*operator_start=*/true);
  }
  if (verify) Verify();
  absl::MutexLock l(&mu_);
  return state_;
}

void ClusterManager::AbandonTruncate() {
  absl::MutexLock l(&mu_);
  truncating_ = false;  // truncate_tid_ stays: the cluster stays RECOVERING
}

}  // namespace cellar::master
