// ClusterManager + TransactionCoordinator + EventHub, with a fake
// StorageCaller: registration rules, cluster start, recovery, commit order,
// invalidations, aborts.
#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "services/common/errors.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/transaction_coordinator.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Records calls; a lock of `blocked_ttid` waits for `release`. Lock
// results are `lock_result`, or per node from `lock_results`; outcomes
// (GetTransactionOutcome) come from `outcomes`, UNKNOWN by default.
class FakeStorageCaller : public StorageCaller {
 public:
  struct LockCall {
    uint64_t ttid, tid, min_ptid;
    std::vector<uint32_t> nodes;
    uint64_t epoch;
    std::vector<uint32_t> partitions;
  };
  struct UnlockCall {
    uint64_t ttid;
    std::vector<uint32_t> nodes;
    bool forget;
    // The nodes told the record's oids, and those oids.
    std::vector<uint32_t> record_holders;
    std::vector<uint64_t> record_oids;
  };

  std::vector<absl::StatusOr<LockedOids>> LockAll(const std::vector<StorageTarget>& targets,
                                                  uint64_t epoch, uint64_t ttid, uint64_t tid,
                                                  uint64_t min_ptid,
                                                  const std::vector<uint32_t>& partitions) override {
    std::vector<absl::StatusOr<LockedOids>> out;
    {
      absl::MutexLock l(&mu_);
      locks_.push_back({ttid, tid, min_ptid, Ids(targets), epoch, partitions});
      for (const StorageTarget& t : targets) {
        auto it = lock_results_.find(t.node_id);
        const absl::Status s = FailingLocked(t.node_id) ? absl::UnavailableError("injected")
                               : it != lock_results_.end() ? it->second
                                                           : lock_result;
        auto stored = stored_oids_.find(t.node_id);
        if (!s.ok()) {
          out.push_back(s);
        } else if (stored != stored_oids_.end()) {
          out.push_back(LockedOids{true, stored->second});
        } else {
          out.push_back(LockedOids{});
        }
      }
    }
    if (ttid == blocked_ttid) {
      entered.Notify();
      release.WaitForNotification();
    }
    if (ttid == notify_ttid) locked.Notify();
    if (on_lock) on_lock(ttid);
    return out;
  }
  void UnlockAsync(const std::vector<StorageTarget>& targets, uint64_t, uint64_t ttid,
                   uint64_t, bool forget, const RecordOids* record) override {
    absl::MutexLock l(&mu_);
    unlocks_.push_back(ttid);
    UnlockCall call{ttid, Ids(targets), forget, {}, {}};
    if (record != nullptr) {
      for (uint32_t id : call.nodes) {
        if (std::count(record->holders.begin(), record->holders.end(), id) > 0) {
          call.record_holders.push_back(id);
        }
      }
      call.record_oids = record->oids;
    }
    unlock_calls_.push_back(std::move(call));
  }
  std::vector<absl::Status> AbortAll(const std::vector<StorageTarget>& targets, uint64_t,
                                     uint64_t ttid) override {
    absl::MutexLock l(&mu_);
    aborts_.push_back(ttid);
    for (const StorageTarget& t : targets) aborted_on_[ttid].push_back(t.node_id);
    return std::vector<absl::Status>(targets.size(), absl::OkStatus());
  }
  void AbortAsync(const std::vector<StorageTarget>& targets, uint64_t,
                  uint64_t ttid) override {
    absl::MutexLock l(&mu_);
    for (const StorageTarget& t : targets) async_aborted_on_[ttid].push_back(t.node_id);
  }
  std::vector<absl::StatusOr<StorageOutcome>> OutcomeAll(
      const std::vector<StorageTarget>& targets, uint64_t ttid) override {
    absl::MutexLock l(&mu_);
    ++outcome_calls_[ttid];
    std::vector<absl::StatusOr<StorageOutcome>> out;
    for (const StorageTarget& t : targets) {
      if (unreachable_.count(t.node_id)) {
        out.push_back(absl::UnavailableError("connection refused"));
        continue;
      }
      auto it = outcomes_.find({t.node_id, ttid});
      if (FailingLocked(t.node_id)) {
        out.push_back(absl::UnavailableError("injected: channel reconnecting"));
      } else {
        out.push_back(it != outcomes_.end() ? it->second : StorageOutcome{});
      }
    }
    return out;
  }
  // The next `n` calls (outcome or lock) to `node_id` fail with UNAVAILABLE.
  void FailCalls(uint32_t node_id, int n) {
    absl::MutexLock l(&mu_);
    failing_[node_id] = n;
  }
  // Waits (bounded) until OutcomeAll was called `n` times for `ttid`.
  bool AwaitOutcomeCalls(uint64_t ttid, int n) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return outcome_calls_[ttid] >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }

  std::vector<absl::Status> SaveMasterStateAll(const std::vector<StorageTarget>& targets,
                                               uint64_t epoch, uint64_t mark) override {
    absl::MutexLock l(&mu_);
    std::vector<absl::Status> out;
    for (const StorageTarget& t : targets) {
      if (save_failures_ > 0) {
        --save_failures_;
        out.push_back(absl::UnavailableError("injected"));
        continue;
      }
      oid_marks_[t.node_id] = std::max(oid_marks_[t.node_id], mark);
      ++saves_;
      out.push_back(absl::OkStatus());
    }
    return out;
  }
  // The OID high-water mark each storage holds (0 if none).
  uint64_t oid_mark(uint32_t node_id) {
    absl::MutexLock l(&mu_);
    return oid_marks_[node_id];
  }
  int saves() {
    absl::MutexLock l(&mu_);
    return saves_;
  }
  void FailSaves(int n) {
    absl::MutexLock l(&mu_);
    save_failures_ = n;
  }

  absl::Status Shutdown(const StorageTarget& target, const std::string&) override {
    absl::MutexLock l(&mu_);
    shutdowns_.push_back(target.node_id);
    return absl::OkStatus();
  }
  std::vector<uint32_t> shutdowns() {
    absl::MutexLock l(&mu_);
    return shutdowns_;
  }

  // Node `node_id` answers its locks with these stored oids (known); by
  // default a lock answer does not tell (as a storage of an older version).
  void SetStoredOids(uint32_t node_id, std::vector<uint64_t> oids) {
    absl::MutexLock l(&mu_);
    stored_oids_[node_id] = std::move(oids);
  }
  void ClearStoredOids(uint32_t node_id) {
    absl::MutexLock l(&mu_);
    stored_oids_.erase(node_id);
  }
  void SetLockResult(uint32_t node_id, absl::Status status) {
    absl::MutexLock l(&mu_);
    lock_results_[node_id] = std::move(status);
  }
  // GetTransactionOutcome calls to `node_id` fail (UNAVAILABLE).
  void SetUnreachable(uint32_t node_id) {
    absl::MutexLock l(&mu_);
    unreachable_.insert(node_id);
  }
  void SetOutcome(uint32_t node_id, uint64_t ttid, StorageOutcome::State state,
                  uint64_t tid = 0, std::vector<uint64_t> oids = {},
                  std::vector<uint32_t> partitions = {}) {
    absl::MutexLock l(&mu_);
    outcomes_[{node_id, ttid}] =
        StorageOutcome{state, tid, std::move(oids), std::move(partitions)};
  }
  std::vector<uint64_t> aborts() {
    absl::MutexLock l(&mu_);
    return aborts_;
  }
  std::vector<uint32_t> aborted_on(uint64_t ttid) {
    absl::MutexLock l(&mu_);
    return aborted_on_[ttid];
  }
  std::vector<uint32_t> async_aborted_on(uint64_t ttid) {
    absl::MutexLock l(&mu_);
    return async_aborted_on_[ttid];
  }
  std::vector<uint64_t> unlocks() {
    absl::MutexLock l(&mu_);
    return unlocks_;
  }
  std::vector<UnlockCall> unlock_calls() {
    absl::MutexLock l(&mu_);
    return unlock_calls_;
  }
  std::vector<LockCall> locks() {
    absl::MutexLock l(&mu_);
    return locks_;
  }

  absl::Status lock_result;
  uint64_t blocked_ttid = 0;
  uint64_t notify_ttid = 0;
  absl::Notification entered;  // the blocked lock was asked for
  absl::Notification release;
  absl::Notification locked;
  // Called (outside the fake's mutex) after each LockAll.
  std::function<void(uint64_t ttid)> on_lock;

 private:
  static std::vector<uint32_t> Ids(const std::vector<StorageTarget>& targets) {
    std::vector<uint32_t> ids;
    for (const StorageTarget& t : targets) ids.push_back(t.node_id);
    return ids;
  }

  bool FailingLocked(uint32_t node_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = failing_.find(node_id);
    if (it == failing_.end() || it->second <= 0) return false;
    --it->second;
    return true;
  }

  absl::Mutex mu_;
  std::map<uint32_t, int> failing_;
  std::map<uint64_t, int> outcome_calls_;
  std::map<uint32_t, absl::Status> lock_results_;
  std::map<uint32_t, std::vector<uint64_t>> stored_oids_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> unreachable_;
  std::map<std::pair<uint32_t, uint64_t>, StorageOutcome> outcomes_;
  std::vector<LockCall> locks_;
  std::vector<uint64_t> unlocks_;
  std::vector<UnlockCall> unlock_calls_;
  std::vector<uint64_t> aborts_;
  std::vector<uint32_t> shutdowns_;
  std::map<uint64_t, std::vector<uint32_t>> aborted_on_;
  std::map<uint64_t, std::vector<uint32_t>> async_aborted_on_;
  std::map<uint32_t, uint64_t> oid_marks_;
  int saves_ = 0;
  int save_failures_ = 0;
};

class MasterDomainTest : public ::testing::Test {
 protected:
  // ClusterOptions::epoch and epoch_is_durable for Init.
  uint64_t epoch_ = 1;
  bool durable_epoch_ = false;

  void Init(uint32_t autostart, uint32_t partitions = 4, uint32_t replicas = 1) {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = partitions;
    options.num_replicas = replicas;
    options.autostart = autostart;
    options.epoch = epoch_;
    options.epoch_is_durable = durable_epoch_;
    cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
    cluster_->set_storage_caller(&caller_);
    // Quick retries: tests wait for them (AwaitResolved).
    coordinator_options_.resolve_initial_backoff = absl::Milliseconds(1);
    coordinator_options_.resolve_max_backoff = absl::Milliseconds(20);
    coordinator_ = std::make_unique<TransactionCoordinator>(
        &clock_, cluster_.get(), &caller_, &hub_, coordinator_options_);
    cluster_->set_on_client_gone(
        [this](uint32_t id) { coordinator_->AbortClientTransactions(id); });
    cluster_->set_on_verify([this](const std::vector<uint64_t>& in_doubt,
                                   const std::vector<StorageTarget>& storages,
                                   uint64_t last_tid) {
      coordinator_->Recover(in_doubt, storages, last_tid);
    });
    cluster_->set_on_in_doubt(
        [this](const std::vector<uint64_t>& in_doubt, const StorageTarget& storage) {
          coordinator_->ResolveInBackground(in_doubt, {storage});
        });
  }

  // What an up-to-date client reports at Finish: each of `nodes` voted for
  // every touched partition (the ttid's and the oids') it holds a writable
  // cell of, and its readable cells of the oids' partitions checked their
  // stores at the current table. A node with no such cell is listed under
  // partition(ttid) (the master ignores it, or refuses an unknown one).
  CommitVotes Votes(uint64_t ttid, const std::vector<uint32_t>& nodes,
                    const std::vector<uint64_t>& oids) {
    const common::PartitionTable pt = Pt();
    const uint32_t n = std::max<uint32_t>(pt.num_partitions(), 1);
    CommitVotes votes;
    votes.oids = oids;
    votes.client_ptid = pt.ptid();
    std::set<uint32_t> object_partitions;
    for (uint64_t oid : oids) object_partitions.insert(static_cast<uint32_t>(oid % n));
    std::set<uint32_t> touched = object_partitions;
    touched.insert(static_cast<uint32_t>(ttid % n));
    for (uint32_t node : nodes) {
      bool listed = false;
      for (uint32_t p : touched) {
        const common::CellState state = pt.CellStateOf(p, node);
        if (!common::IsWritable(state)) continue;
        votes.voters[p].push_back(node);
        listed = true;
        if (common::IsReadable(state) && object_partitions.count(p)) {
          votes.conflict_checks.push_back({p, node, pt.ptid()});
        }
      }
      if (!listed) votes.voters[static_cast<uint32_t>(ttid % n)].push_back(node);
    }
    return votes;
  }

  // The storages among `nodes` that Votes() lists as voters (a writable
  // cell of a touched partition), by id.
  std::vector<uint32_t> VotingNodes(uint64_t ttid, const std::vector<uint32_t>& nodes,
                                    const std::vector<uint64_t>& oids) {
    const CommitVotes votes = Votes(ttid, nodes, oids);
    const common::PartitionTable pt = Pt();
    std::set<uint32_t> out;
    for (const auto& [p, ids] : votes.voters) {
      for (uint32_t id : ids) {
        if (common::IsWritable(pt.CellStateOf(p, id))) out.insert(id);
      }
    }
    return std::vector<uint32_t>(out.begin(), out.end());
  }

  // Begins transactions of `client` until one's record falls in
  // `partition` (of `partitions`).
  uint64_t BeginIn(uint32_t client, uint32_t partition, uint32_t partitions) {
    for (int i = 0; i < 1000; ++i) {
      absl::StatusOr<uint64_t> ttid = coordinator_->Begin(client);
      EXPECT_THAT(ttid, IsOk());
      if (!ttid.ok() || *ttid % partitions == partition) return ttid.ok() ? *ttid : 0;
    }
    ADD_FAILURE() << "no ttid in partition " << partition;
    return 0;
  }

  cellar::v1::RegisterNodeRequest Request(cellar::v1::NodeRole role, uint32_t id = 0,
                                          int port = 0) {
    cellar::v1::RegisterNodeRequest r;
    r.set_cluster_name("test");
    r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    r.set_role(role);
    r.set_node_id(id);
    if (port) r.set_address(absl::StrCat("127.0.0.1:", port));
    return r;
  }

  uint32_t AddStorage(int port, uint32_t id = 0) {
    auto r = cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_STORAGE, id, port));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->node_id() : 0;
  }

  uint32_t AddClient() {
    auto r = cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_CLIENT));
    EXPECT_TRUE(r.ok()) << r.status();
    return r->node_id();
  }

  // Two storages holding every one of 7 partitions, a client that writes,
  // and the event stream of another client (past its snapshot).
  struct TwoStorages {
    uint32_t s1 = 0, s2 = 0, c1 = 0;
    std::shared_ptr<EventHub::Subscriber> watcher;
  };
  TwoStorages StartTwoAndWatch() {
    Init(2, /*partitions=*/7);
    TwoStorages out;
    out.s1 = AddStorage(7200);
    out.s2 = AddStorage(7201);
    out.c1 = AddClient();
    auto watcher = cluster_->Watch(AddClient());
    EXPECT_THAT(watcher, IsOk());
    if (watcher.ok()) {
      out.watcher = *watcher;
      Drain(*out.watcher);
    }
    return out;
  }

  // 3 storages (S1..S3, each watching), `partitions` partitions, 1 replica,
  // RUNNING.
  void StartThree(uint32_t partitions = 6) {
    Init(/*autostart=*/3, partitions, /*replicas=*/1);
    for (int i = 0; i < 3; ++i) {
      const uint32_t id = AddStorage(7200 + i);
      storages_.push_back(id);
      auto sub = cluster_->Watch(id);
      ASSERT_TRUE(sub.ok()) << sub.status();
      subs_[id] = *sub;
    }
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  }

  // The table of a known cluster to recover: 4 partitions on S1 and S2
  // (1 replica), ptid 5.
  absl::StatusOr<common::PartitionTable> KnownTable() {
    auto pt = common::PartitionTable::MakeBalanced(4, 1, {1, 2});
    if (pt.ok()) pt->set_ptid(5);
    return pt;
  }

  // The storage's watch stream ends.
  void Lose(uint32_t id) { cluster_->WatchEnded(id, subs_[id]); }

  // Registers `id` again (same address) with `voted` ttids, and watches.
  void Return(uint32_t id, int port, std::vector<uint64_t> voted = {}) {
    auto r = Request(cellar::v1::NODE_ROLE_STORAGE, id, port);
    for (uint64_t ttid : voted) r.add_voted_ttids(ttid);
    ASSERT_TRUE(cluster_->RegisterNode(r).ok());
    auto sub = cluster_->Watch(id);
    ASSERT_TRUE(sub.ok()) << sub.status();
    subs_[id] = *sub;
  }

  common::PartitionTable Pt() {
    auto pt = common::PartitionTable::FromProto(cluster_->Info().partition_table());
    EXPECT_TRUE(pt.ok()) << pt.status();
    return *pt;
  }

  common::CellState StateOf(uint32_t partition, uint32_t node) {
    return Pt().CellStateOf(partition, node);
  }

  // The first partition whose cells are exactly {a, b} (or, with b == 0,
  // that has no cell on `a`).
  uint32_t PartitionWith(uint32_t a, uint32_t b) {
    const common::PartitionTable pt = Pt();
    for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
      const bool has_a = pt.CellStateOf(p, a) != cellar::v1::CELL_STATE_UNSPECIFIED;
      if (b == 0 && !has_a) return p;
      if (b != 0 && has_a && pt.CellStateOf(p, b) != cellar::v1::CELL_STATE_UNSPECIFIED) {
        return p;
      }
    }
    ADD_FAILURE() << "no such partition";
    return 0;
  }

  cellar::v1::NodeState NodeStateOf(uint32_t id) {
    const cellar::v1::GetClusterInfoResponse info = cluster_->Info();
    for (const auto& n : info.nodes()) {
      if (n.node_id() == id) return n.state();
    }
    return cellar::v1::NODE_STATE_UNSPECIFIED;
  }

  absl::StatusOr<cellar::v1::ReportReplicationResponse> Report(uint32_t node,
                                                               uint32_t partition,
                                                               uint64_t tid) {
    cellar::v1::ReportReplicationRequest r;
    r.set_node_id(node);
    r.set_partition(partition);
    r.set_tid(tid);
    return cluster_->ReportReplication(r);
  }

  // Events queued for `sub`, without waiting.
  std::vector<cellar::v1::ClusterEvent> Drain(EventHub::Subscriber& sub) {
    std::vector<cellar::v1::ClusterEvent> out;
    cellar::v1::ClusterEvent e;
    while (hub_.Next(sub, &e, absl::ZeroDuration())) out.push_back(e);
    return out;
  }

  common::FakeClock clock_;
  EventHub hub_;
  FakeStorageCaller caller_;
  CoordinatorOptions coordinator_options_;
  std::vector<uint32_t> storages_;
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs_;
  std::unique_ptr<ClusterManager> cluster_;
  std::unique_ptr<TransactionCoordinator> coordinator_;
};

TEST_F(MasterDomainTest, RefusesWrongClusterProtocolAndRole) {
  Init(0);
  auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_cluster_name("other");
  auto res = cluster_->RegisterNode(r);
  EXPECT_THAT(res, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(res.status()), "WRONG_CLUSTER");

  r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_UNSPECIFIED);
  res = cluster_->RegisterNode(r);
  EXPECT_THAT(res, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(res.status()), "PROTOCOL_MISMATCH");

  EXPECT_THAT(cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_MASTER)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_STORAGE)),
              StatusIs(absl::StatusCode::kInvalidArgument));  // no address
  r = Request(cellar::v1::NODE_ROLE_CLIENT);
  r.set_track("beta");
  EXPECT_THAT(cluster_->RegisterNode(r), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(MasterDomainTest, NodeIdsCarryTheirRole) {
  Init(0);
  const uint32_t s = AddStorage(7200);
  const uint32_t c = AddClient();
  EXPECT_EQ(common::NodeName(s), "S1");
  EXPECT_EQ(common::NodeName(c), "C1");
  EXPECT_NE(s, c);
}

// Ttid tokens: the term's key goes to storages only (they verify the
// tokens of Begin), never to clients or admins nor into snapshots or
// cluster info; each term (manager) has its own random key.
TEST_F(MasterDomainTest, TtidKeyGoesToStoragesOnlyAndIsNewEveryTerm) {
  Init(0);
  const std::string key = cluster_->ttid_key();
  EXPECT_EQ(key.size(), 32u);
  auto storage = cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200));
  ASSERT_TRUE(storage.ok()) << storage.status();
  EXPECT_EQ(storage->ttid_key(), key);
  for (auto role : {cellar::v1::NODE_ROLE_CLIENT, cellar::v1::NODE_ROLE_ADMIN}) {
    auto other = cluster_->RegisterNode(Request(role));
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_TRUE(other->ttid_key().empty()) << cellar::v1::NodeRole_Name(role);
    auto sub = cluster_->Watch(other->node_id());
    ASSERT_TRUE(sub.ok()) << sub.status();
    cellar::v1::ClusterEvent first;
    ASSERT_TRUE(hub_.Next(**sub, &first, absl::Seconds(1)));
    EXPECT_FALSE(absl::StrContains(first.SerializeAsString(), key));
  }
  EXPECT_FALSE(absl::StrContains(cluster_->Info().SerializeAsString(), key));

  ClusterOptions options;
  options.cluster_name = "test";
  ClusterManager next_term(options, &clock_, &hub_);
  EXPECT_EQ(next_term.ttid_key().size(), 32u);
  EXPECT_NE(next_term.ttid_key(), key);
}

TEST_F(MasterDomainTest, NewClusterWaitsForOperatorOrAutostart) {
  Init(/*autostart=*/0);
  EXPECT_THAT(cluster_->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
  AddStorage(7200);
  AddStorage(7201);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_THAT(cluster_->CheckRunning(), StatusIs(absl::StatusCode::kFailedPrecondition));
  auto state = cluster_->Start();
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(*state, cellar::v1::CLUSTER_RUNNING);
  const auto info = cluster_->Info();
  EXPECT_EQ(info.partition_table().ptid(), 1u);
  EXPECT_EQ(info.partition_table().num_partitions(), 4u);
  EXPECT_TRUE(info.operational());
  EXPECT_THAT(cluster_->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MasterDomainTest, AutostartAfterNStorages) {
  Init(/*autostart=*/3);
  AddStorage(7200);
  AddStorage(7201);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  AddStorage(7202);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  const auto info = cluster_->Info();
  for (const auto& node : info.nodes()) {
    EXPECT_EQ(node.state(), cellar::v1::NODE_RUNNING);
  }
}

TEST_F(MasterDomainTest, OidBatches) {
  Init(1);
  EXPECT_THAT(cluster_->AllocateOids(10), StatusIs(absl::StatusCode::kFailedPrecondition));
  AddStorage(7200);
  EXPECT_THAT(cluster_->AllocateOids(0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->AllocateOids(1001), StatusIs(absl::StatusCode::kInvalidArgument));
  auto a = cluster_->AllocateOids(100);
  auto b = cluster_->AllocateOids(5);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(*a, 1u);
  EXPECT_EQ(*b, 101u);
}

TEST_F(MasterDomainTest, CommitPicksTidInTtidPartitionAndInvalidatesInOrder) {
  const auto [s1, s2, c1, watcher] = StartTwoAndWatch();
  ASSERT_NE(watcher, nullptr);

  EXPECT_THAT(coordinator_->Begin(12345), StatusIs(absl::StatusCode::kNotFound));
  auto ttid = coordinator_->Begin(c1);
  ASSERT_THAT(ttid, IsOk());
  auto tid = coordinator_->Finish(c1, *ttid, Votes(*ttid, {s1, s2}, {3, 4}));
  ASSERT_THAT(tid, IsOk());
  EXPECT_GT(*tid, *ttid);
  EXPECT_EQ(*tid % 7, *ttid % 7);
  EXPECT_THAT(caller_.unlocks(), ElementsAre(*ttid));
  EXPECT_EQ(cluster_->Info().last_tid(), *tid);

  const auto events = Drain(*watcher);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].invalidation().tid(), *tid);
  EXPECT_THAT(events[0].invalidation().oids(), ElementsAre(3, 4));

  const auto status = coordinator_->Status(*ttid);
  EXPECT_EQ(status.outcome(), cellar::v1::TRANSACTION_COMMITTED);
  EXPECT_EQ(status.tid(), *tid);
  EXPECT_THAT(coordinator_->Finish(c1, *ttid, Votes(*ttid, {s1}, {})),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(coordinator_->Abort(c1, *ttid, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// A client that leaves an oid out of its Finish must not leave the other
// clients' caches stale: the invalidation lists what the storages that
// locked the commit stored; the client's list counts only for a partition
// none of whose lockers could tell (a storage of an older version).
TEST_F(MasterDomainTest, TheInvalidationListsWhatTheLockersStoredNotWhatTheClientSaid) {
  const auto [s1, s2, c1, watcher] = StartTwoAndWatch();
  ASSERT_NE(watcher, nullptr);

  // Partition 3: both storages stored 3 and 10, the client names only 3.
  caller_.SetStoredOids(s1, {3, 10});
  caller_.SetStoredOids(s2, {3, 10});
  auto ttid = coordinator_->Begin(c1);
  ASSERT_THAT(ttid, IsOk());
  auto tid = coordinator_->Finish(c1, *ttid, Votes(*ttid, {s1, s2}, {3}));
  ASSERT_THAT(tid, IsOk());
  auto events = Drain(*watcher);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].invalidation().tid(), *tid);
  EXPECT_THAT(events[0].invalidation().oids(), ElementsAre(3, 10));
  // The storages are told which partitions the commit touches (they commit
  // nothing else).
  ASSERT_FALSE(caller_.locks().empty());
  EXPECT_THAT(caller_.locks().back().partitions,
              UnorderedElementsAre(3u, static_cast<uint32_t>(*ttid % 7)));
  // The transaction record's holders (both: 2 storages hold every
  // partition) are told the committed oids, not the client's list.
  ASSERT_FALSE(caller_.unlock_calls().empty());
  EXPECT_THAT(caller_.unlock_calls().back().record_holders, UnorderedElementsAre(s1, s2));
  EXPECT_THAT(caller_.unlock_calls().back().record_oids, ElementsAre(3, 10));

  // One locker of the partition cannot tell, the other can: the one that
  // can is believed (the client's 24 is not in it).
  caller_.SetStoredOids(s1, {3, 17});
  ttid = coordinator_->Begin(c1);
  ASSERT_THAT(ttid, IsOk());
  caller_.ClearStoredOids(s2);
  tid = coordinator_->Finish(c1, *ttid, Votes(*ttid, {s1, s2}, {3, 24}));
  ASSERT_THAT(tid, IsOk());
  events = Drain(*watcher);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].invalidation().oids(), ElementsAre(3, 17));

  // Nobody can tell: the client's list.
  caller_.ClearStoredOids(s1);
  ttid = coordinator_->Begin(c1);
  ASSERT_THAT(ttid, IsOk());
  tid = coordinator_->Finish(c1, *ttid, Votes(*ttid, {s1, s2}, {3, 24}));
  ASSERT_THAT(tid, IsOk());
  events = Drain(*watcher);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].invalidation().oids(), ElementsAre(3, 24));
}

TEST_F(MasterDomainTest, CommitsCompleteInTidOrder) {
  Init(1);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t c1 = AddClient();
  auto watcher = cluster_->Watch(c1);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);

  const uint64_t t1 = *coordinator_->Begin(c1);
  const uint64_t t2 = *coordinator_->Begin(c1);
  caller_.blocked_ttid = t1;   // T1's lock answers late
  caller_.notify_ttid = t2;
  absl::StatusOr<uint64_t> tid1, tid2;
  std::thread a([&] { tid1 = coordinator_->Finish(c1, t1, Votes(t1, {s1}, {1})); });
  // T1 has its tid (it is locking) before T2 asks for one.
  ASSERT_TRUE(caller_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "T1 never reached lock";
  std::thread b([&] { tid2 = coordinator_->Finish(c1, t2, Votes(t2, {s1}, {2})); });
  ASSERT_TRUE(caller_.locked.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "T2 never locked";
  // T2 is locked but must wait for T1: nothing is published yet.
  EXPECT_TRUE(Drain(**watcher).empty());
  caller_.release.Notify();
  a.join();
  b.join();
  ASSERT_THAT(tid1, IsOk());
  ASSERT_THAT(tid2, IsOk());
  const auto events = Drain(**watcher);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_LT(events[0].invalidation().tid(), events[1].invalidation().tid());
  EXPECT_EQ(events[1].invalidation().tid(), std::max(*tid1, *tid2));
}

// Restore (BeginRequest.tid, zodbconvert): the caller's tid becomes the
// ttid and the final tid; it must be above everything handed out and not
// far ahead of the clock, and a refused request changes nothing.
TEST_F(MasterDomainTest, RestoreCommitsWithTheRequestedTidInOrder) {
  const auto [s1, s2, c1, watcher] = StartTwoAndWatch();
  ASSERT_NE(watcher, nullptr);
  const uint64_t now = common::TidFromTime(clock_.Now());

  // A normal commit, then restores in increasing order, past and future.
  const uint64_t t0 = *coordinator_->Begin(c1);
  const uint64_t tid0 = *coordinator_->Finish(c1, t0, Votes(t0, {s1, s2}, {3}));
  for (uint64_t want : {tid0 + 1, tid0 + 100, now + 1000}) {
    auto ttid = coordinator_->Begin(c1, want);
    ASSERT_THAT(ttid, IsOk());
    EXPECT_EQ(*ttid, want);
    auto tid = coordinator_->Finish(c1, *ttid, Votes(*ttid, {s1, s2}, {3, 4}));
    ASSERT_THAT(tid, IsOk());
    EXPECT_EQ(*tid, want);
    EXPECT_EQ(cluster_->Info().last_tid(), want);
  }
  auto events = Drain(*watcher);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].invalidation().tid(), tid0 + 1);
  EXPECT_EQ(events[3].invalidation().tid(), now + 1000);
  const uint64_t last = now + 1000;

  // At or below the last tid: FAILED_PRECONDITION. Past the horizon, or
  // past the end of TID space: INVALID_ARGUMENT. Nothing moved.
  EXPECT_THAT(coordinator_->Begin(c1, last), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(coordinator_->Begin(c1, tid0), StatusIs(absl::StatusCode::kFailedPrecondition));
  const uint64_t horizon =
      common::TidFromTime(clock_.Now() + TransactionCoordinator::kRestoreHorizon);
  EXPECT_THAT(coordinator_->Begin(c1, horizon + 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(coordinator_->Begin(c1, common::kMaxTid),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(coordinator_->Begin(c1, ~uint64_t{0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(coordinator_->stats().active, 0u);
  const uint64_t next = *coordinator_->Begin(c1);
  EXPECT_EQ(next, last + 1) << "a refused restore moved the TID allocator";
  const uint64_t next_tid = *coordinator_->Finish(c1, next, Votes(next, {s1, s2}, {3}));
  EXPECT_GT(next_tid, next);
  EXPECT_EQ(Drain(*watcher).size(), 1u);

  // A restore writes oids nobody allocated: later batches start above them.
  // An oid past 2^62 is refused (the allocator would near the end of OID
  // space) and the transaction can still be aborted.
  const uint64_t r = *coordinator_->Begin(c1, next_tid + 1);
  EXPECT_THAT(coordinator_->Finish(c1, r, Votes(r, {s1, s2}, {(uint64_t{1} << 62) + 1})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(coordinator_->Finish(c1, r, Votes(r, {s1, s2}, {5000, 4})), IsOk());
  auto first = cluster_->AllocateOids(1);
  ASSERT_THAT(first, IsOk());
  EXPECT_GT(*first, 5000u);
}

// A restore overtaken by a normal commit between its Begin and Finish is
// aborted: committing at its tid would publish out of tid order.
TEST_F(MasterDomainTest, ARestoreOvertakenByALaterCommitIsAborted) {
  const auto [s1, s2, c1, watcher] = StartTwoAndWatch();
  ASSERT_NE(watcher, nullptr);
  const uint64_t want = common::TidFromTime(clock_.Now()) + 10;
  const uint64_t restore = *coordinator_->Begin(c1, want);
  const uint64_t other = *coordinator_->Begin(c1);
  EXPECT_GT(other, restore);
  const uint64_t other_tid = *coordinator_->Finish(c1, other, Votes(other, {s1, s2}, {3}));
  EXPECT_GT(other_tid, restore);
  EXPECT_THAT(coordinator_->Finish(c1, restore, Votes(restore, {s1, s2}, {4})),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(coordinator_->Status(restore).outcome(), cellar::v1::TRANSACTION_ABORTED);
  const auto events = Drain(*watcher);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].invalidation().tid(), other_tid);
}

TEST_F(MasterDomainTest, LockFailureEverywhereAbortsWithUnavailable) {
  Init(1);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t c1 = AddClient();
  caller_.lock_result = absl::UnavailableError("disk full");
  const uint64_t ttid = *coordinator_->Begin(c1);
  EXPECT_THAT(coordinator_->Finish(c1, ttid, Votes(ttid, {s1}, {1})),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(caller_.aborts(), ElementsAre(ttid));
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  // The next transaction is not stuck behind the failed one.
  caller_.lock_result = absl::OkStatus();
  const uint64_t next = *coordinator_->Begin(c1);
  EXPECT_THAT(coordinator_->Finish(c1, next, Votes(next, {s1}, {1})), IsOk());
}

TEST_F(MasterDomainTest, DepartedClientHasItsTransactionsAborted) {
  Init(1);
  AddStorage(7200);
  const uint32_t c1 = AddClient();
  auto watcher = cluster_->Watch(c1);
  ASSERT_THAT(watcher, IsOk());
  const uint64_t ttid = *coordinator_->Begin(c1);
  cluster_->WatchEnded(c1, *watcher);
  EXPECT_THAT(caller_.aborts(), ElementsAre(ttid));
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  EXPECT_THAT(coordinator_->Begin(c1), StatusIs(absl::StatusCode::kNotFound));
}

// A ttid handed out with a Finish answer (FinishRequest.want_next_ttid) is
// begun like Begin's, but a client holds at most one open at a time (the
// master's state per client stays bounded), and it ends with the session.
TEST_F(MasterDomainTest, APreallocatedTtidIsOnePerClientAndEndsWithItsSession) {
  Init(1);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t c1 = AddClient();
  const uint32_t c2 = AddClient();
  auto watcher = cluster_->Watch(c1);
  ASSERT_THAT(watcher, IsOk());
  EXPECT_EQ(coordinator_->BeginPreallocated(12345), 0u);

  const uint64_t p1 = coordinator_->BeginPreallocated(c1);
  ASSERT_NE(p1, 0u);
  // Open (unused or in use): no second one for c1; another client gets its own.
  EXPECT_EQ(coordinator_->BeginPreallocated(c1), 0u);
  const uint64_t other = coordinator_->BeginPreallocated(c2);
  EXPECT_NE(other, 0u);
  EXPECT_NE(other, p1);
  // It is an ordinary open transaction of c1 only.
  EXPECT_EQ(coordinator_->Status(p1).outcome(), cellar::v1::TRANSACTION_ACTIVE);
  EXPECT_THAT(coordinator_->Finish(c2, p1, Votes(p1, {s1}, {1})),
              StatusIs(absl::StatusCode::kNotFound));
  auto tid = coordinator_->Finish(c1, p1, Votes(p1, {s1}, {1}));
  ASSERT_THAT(tid, IsOk());

  // Finished: the next one is begun after that commit, as a Begin would be.
  const uint64_t p2 = coordinator_->BeginPreallocated(c1);
  EXPECT_GT(p2, *tid);
  ASSERT_THAT(coordinator_->Abort(c1, p2, {s1}), IsOk());
  const uint64_t p3 = coordinator_->BeginPreallocated(c1);
  ASSERT_NE(p3, 0u);

  // The session ends: the unused one is aborted like any begun ttid, and
  // the client's id gets nothing more.
  cluster_->WatchEnded(c1, *watcher);
  EXPECT_EQ(coordinator_->Status(p3).outcome(), cellar::v1::TRANSACTION_ABORTED);
  EXPECT_THAT(caller_.aborts(), Contains(p3));
  EXPECT_EQ(coordinator_->BeginPreallocated(c1), 0u);
}

TEST_F(MasterDomainTest, RestartAdoptsHighestTableAndWaitsForEveryReadableNode) {
  Init(0);
  auto pt = common::PartitionTable::MakeBalanced(4, 1, {1, 2});
  ASSERT_THAT(pt, IsOk());
  pt->set_ptid(5);
  auto r1 = Request(cellar::v1::NODE_ROLE_STORAGE, 1, 7200);
  *r1.mutable_partition_table() = pt->ToProto();
  const uint64_t old_tid = common::TidFromTime(clock_.Now() + absl::Hours(1));
  r1.set_last_tid(old_tid);
  r1.set_last_oid(41);
  r1.add_voted_ttids(old_tid - 5);
  ASSERT_THAT(cluster_->RegisterNode(r1), IsOk());
  // S2 holds readable cells too: no start without it.
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_EQ(cluster_->Info().partition_table().ptid(), 5u);

  auto stale = pt->ToProto();
  stale.set_ptid(3);
  auto r2 = Request(cellar::v1::NODE_ROLE_STORAGE, 2, 7201);
  *r2.mutable_partition_table() = stale;
  ASSERT_THAT(cluster_->RegisterNode(r2), IsOk());
  const auto info = cluster_->Info();
  EXPECT_EQ(info.cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(info.partition_table().ptid(), 5u);
  EXPECT_EQ(info.last_tid(), old_tid);
  // The in-doubt transaction was dropped, and tids continue after old ones.
  EXPECT_THAT(caller_.aborts(), ElementsAre(old_tid - 5));
  EXPECT_EQ(*cluster_->AllocateOids(1), 42u);
  const uint32_t c = AddClient();
  EXPECT_GT(*coordinator_->Begin(c), old_tid);
}

TEST_F(MasterDomainTest, LosingTheLastReadableCellGoesBackToRecovering) {
  Init(2, 4, /*replicas=*/0);
  const uint32_t s1 = AddStorage(7200);
  AddStorage(7201);
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  auto sub = cluster_->Watch(s1);
  ASSERT_THAT(sub, IsOk());
  cluster_->WatchEnded(s1, *sub);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_FALSE(cluster_->Info().operational());
  // It comes back: the cluster runs again.
  AddStorage(7200, s1);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
}

// --- Liveness and cell states (issue "Cluster lifecycle") ---

TEST_F(MasterDomainTest, NodeLossMarksItsCellsOutOfDateExceptTheLastReadable) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  auto watcher = cluster_->Watch(c);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);
  const uint64_t ptid = Pt().ptid();

  Lose(s1);
  EXPECT_TRUE(subs_[s1]->closed());
  auto info = cluster_->Info();
  EXPECT_EQ(info.cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_TRUE(info.operational());
  EXPECT_EQ(NodeStateOf(s1), cellar::v1::NODE_DOWN);
  common::PartitionTable pt = Pt();
  EXPECT_EQ(pt.ptid(), ptid + 1);  // one change, one version
  int s1_cells = 0;
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    for (const common::PtCell& cell : pt.Row(p)) {
      if (cell.node_id == s1) {
        ++s1_cells;
        EXPECT_EQ(cell.state, cellar::v1::CELL_OUT_OF_DATE) << "partition " << p;
      } else {
        EXPECT_EQ(cell.state, cellar::v1::CELL_UP_TO_DATE) << "partition " << p;
      }
    }
  }
  // Clients learn it as one delta with ptid + 1.
  int deltas = 0;
  for (const auto& e : Drain(**watcher)) {
    if (e.has_partition_table_delta()) {
      ++deltas;
      EXPECT_EQ(e.partition_table_delta().ptid(), ptid + 1);
      EXPECT_EQ(e.partition_table_delta().changes_size(), s1_cells);
    }
  }
  EXPECT_EQ(deltas, 1);

  // Then S2: where S1's copy is stale, S2's is the last readable one and
  // stays; the table is no longer operational.
  const uint32_t shared = PartitionWith(s1, s2);
  const uint32_t with_s3 = PartitionWith(s2, s3);
  Lose(s2);
  EXPECT_EQ(StateOf(shared, s2), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(StateOf(with_s3, s2), cellar::v1::CELL_OUT_OF_DATE);
  info = cluster_->Info();
  EXPECT_FALSE(info.operational());
  EXPECT_EQ(info.cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_THAT(coordinator_->Begin(c), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MasterDomainTest, AStreamReplacedByANewRegistrationChangesNothingWhenItEnds) {
  StartThree();
  const uint32_t s1 = storages_[0];
  const auto old_sub = subs_[s1];
  Return(s1, 7200);
  EXPECT_TRUE(old_sub->closed());
  const uint64_t ptid = Pt().ptid();
  cluster_->WatchEnded(s1, old_sub);
  EXPECT_EQ(NodeStateOf(s1), cellar::v1::NODE_RUNNING);
  EXPECT_EQ(Pt().ptid(), ptid);
  EXPECT_TRUE(cluster_->IsConnected(s1));
}

// A master shutting down closes every stream: that says nothing about the
// storages, whose cells must keep their states for the next primary.
TEST_F(MasterDomainTest, StreamsEndingDuringShutdownChangeNoCell) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1];
  const uint64_t ptid = Pt().ptid();
  cluster_->BeginShutdown();
  Lose(s1);
  Lose(s2);
  clock_.Advance(absl::Seconds(30));
  cluster_->ExpireSilentNodes();
  EXPECT_EQ(Pt().ptid(), ptid);
  EXPECT_EQ(StateOf(PartitionWith(s1, s2), s1), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(StateOf(PartitionWith(s1, s2), s2), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
}

TEST_F(MasterDomainTest, SilentStorageIsTreatedAsGoneAfterTheHeartbeatTimeout) {
  StartThree();  // heartbeat_timeout: default 10 s
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  clock_.Advance(absl::Seconds(6));
  ASSERT_THAT(cluster_->Heartbeat(s2), IsOk());
  ASSERT_THAT(cluster_->Heartbeat(s3), IsOk());
  cluster_->ExpireSilentNodes();
  EXPECT_TRUE(cluster_->IsConnected(s1));  // 6 s < 10 s
  clock_.Advance(absl::Seconds(5));  // S1 silent for 11 s, the others 5 s
  cluster_->ExpireSilentNodes();
  EXPECT_FALSE(cluster_->IsConnected(s1));
  EXPECT_TRUE(subs_[s1]->closed());  // its stream ends: it registers again
  EXPECT_EQ(NodeStateOf(s1), cellar::v1::NODE_DOWN);
  EXPECT_TRUE(cluster_->IsConnected(s2));
  EXPECT_TRUE(cluster_->IsConnected(s3));
  EXPECT_EQ(StateOf(PartitionWith(s1, s2), s1), cellar::v1::CELL_OUT_OF_DATE);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_THAT(cluster_->Heartbeat(s1), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MasterDomainTest, APausedMasterDoesNotDeclareEveryStorageGone) {
  StartThree();
  cluster_->ExpireSilentNodes();
  clock_.Advance(absl::Seconds(30));  // the master itself did not run
  cluster_->ExpireSilentNodes();
  for (uint32_t id : storages_) EXPECT_TRUE(cluster_->IsConnected(id));
  clock_.Advance(absl::Seconds(6));
  ASSERT_THAT(cluster_->Heartbeat(storages_[1]), IsOk());
  ASSERT_THAT(cluster_->Heartbeat(storages_[2]), IsOk());
  cluster_->ExpireSilentNodes();
  clock_.Advance(absl::Seconds(5));
  cluster_->ExpireSilentNodes();  // S1 silent for 11 s of running checks
  EXPECT_FALSE(cluster_->IsConnected(storages_[0]));
  EXPECT_TRUE(cluster_->IsConnected(storages_[1]));
}

TEST_F(MasterDomainTest, FinishMarksCellsThatDidNotVoteOutOfDateBeforeItCompletes) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  auto watcher = cluster_->Watch(c);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);
  const uint64_t ptid = Pt().ptid();
  const uint32_t p = PartitionWith(s1, s2);
  const uint64_t oid = p;  // partition(oid) = oid % 6
  const uint64_t ttid = *coordinator_->Begin(c);
  const uint32_t ttid_partition = ttid % 6;

  // S1 did not vote (the client could not reach it).
  auto tid = coordinator_->Finish(c, ttid, Votes(ttid, {s2, s3}, {oid}));
  ASSERT_THAT(tid, IsOk());
  common::PartitionTable pt = Pt();
  EXPECT_EQ(pt.ptid(), ptid + 1);
  for (uint32_t q = 0; q < 6; ++q) {
    const bool touched = q == p || q == ttid_partition;
    const common::CellState state = pt.CellStateOf(q, s1);
    if (state == cellar::v1::CELL_STATE_UNSPECIFIED) continue;
    EXPECT_EQ(state, touched ? cellar::v1::CELL_OUT_OF_DATE : cellar::v1::CELL_UP_TO_DATE)
        << "partition " << q;
  }
  // The delta reaches clients before the commit's invalidation.
  const auto events = Drain(**watcher);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].partition_table_delta().ptid(), ptid + 1);
  EXPECT_EQ(events[1].invalidation().tid(), *tid);
  // Locked on the voters once they hold that table; the non-voter drops
  // whatever it may hold; every voter locked: lock records may go.
  // (Votes count per partition: S3 votes only if it holds a cell of p or
  // of the ttid's partition.)
  const std::vector<uint32_t> voters = VotingNodes(ttid, {s2, s3}, {oid});
  const auto locks = caller_.locks();
  ASSERT_EQ(locks.size(), 1u);
  EXPECT_THAT(locks[0].nodes, ::testing::ElementsAreArray(voters));
  EXPECT_EQ(locks[0].min_ptid, ptid + 1);
  EXPECT_THAT(caller_.async_aborted_on(ttid), ElementsAre(s1));
  const auto unlocks = caller_.unlock_calls();
  ASSERT_EQ(unlocks.size(), 1u);
  EXPECT_TRUE(unlocks[0].forget);
  EXPECT_THAT(unlocks[0].nodes, ::testing::ElementsAreArray(voters));
}

TEST_F(MasterDomainTest, FinishIsRefusedWhenATouchedPartitionKeepsNoReadableVoter) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  const uint64_t ptid = Pt().ptid();
  // Only S1 voted, for an object of a partition S1 has no cell of.
  const uint64_t oid = PartitionWith(s1, 0);
  uint64_t ttid = *coordinator_->Begin(c);
  EXPECT_THAT(coordinator_->Finish(c, ttid, Votes(ttid, {s1}, {oid})),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  EXPECT_TRUE(caller_.locks().empty());
  EXPECT_EQ(Pt().ptid(), ptid);

  // Only an OUT_OF_DATE cell voted for the object's partition: its readable
  // cell would miss the commit.
  Lose(s1);
  Return(s1, 7200);
  const uint32_t p = PartitionWith(s1, s2);
  ASSERT_EQ(StateOf(p, s1), cellar::v1::CELL_OUT_OF_DATE);
  ttid = *coordinator_->Begin(c);
  EXPECT_THAT(coordinator_->Finish(c, ttid, Votes(ttid, {s1, s3}, {p})),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(caller_.locks().empty());
  // An unknown voter is a bad request.
  ttid = *coordinator_->Begin(c);
  EXPECT_THAT(coordinator_->Finish(c, ttid, Votes(ttid, {s2, 12345}, {p})),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(MasterDomainTest, AVoterThatIsGoneCountsAsANonVoter) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  Lose(s1);
  const uint64_t ttid = *coordinator_->Begin(c);
  ASSERT_THAT(coordinator_->Finish(c, ttid, Votes(ttid, {s1, s2, s3}, {0, 1, 2, 3, 4, 5})), IsOk());
  const auto locks = caller_.locks();
  ASSERT_EQ(locks.size(), 1u);
  EXPECT_THAT(locks[0].nodes, ElementsAre(s2, s3));
}

TEST_F(MasterDomainTest, CellBecomesUpToDateOnceReplicationCoversWhatItMissed) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  const uint64_t t0 = *coordinator_->Begin(c);
  const uint64_t tid0 = *coordinator_->Finish(c, t0, Votes(t0, {s1, s2, s3}, {0}));
  const uint32_t p = PartitionWith(s1, s2);
  const uint32_t other = PartitionWith(s1, s3);

  Lose(s1);  // S1 held everything up to tid0
  // T1 touches p without S1.
  const uint64_t t1 = *coordinator_->Begin(c);
  const uint64_t tid1 = *coordinator_->Finish(c, t1, Votes(t1, {s2, s3}, {p}));
  Return(s1, 7200);
  ASSERT_EQ(StateOf(p, s1), cellar::v1::CELL_OUT_OF_DATE);

  // Not caught up: copy (tid0, tid1] from S2.
  auto r = Report(s1, p, 0);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date());
  EXPECT_EQ(r->min_tid(), tid0);
  EXPECT_EQ(r->max_tid(), tid1);
  ASSERT_EQ(r->sources_size(), 1);
  EXPECT_EQ(r->sources(0).node_id(), s2);
  EXPECT_EQ(r->sources(0).address(), "127.0.0.1:7201");
  r = Report(s1, p, tid1 - 1);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date());

  const uint64_t ptid = Pt().ptid();
  r = Report(s1, p, tid1);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());
  EXPECT_EQ(StateOf(p, s1), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(Pt().ptid(), ptid + 1);
  // Asking again is harmless.
  r = Report(s1, p, 0);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());

  // A cell nothing was committed to while S1 was away (unless T1's record
  // went there) is complete at once: S1 held everything up to tid0.
  if (other != t1 % 6) {
    r = Report(s1, other, 0);
    ASSERT_THAT(r, IsOk());
    EXPECT_TRUE(r->up_to_date());
  }
  // Not for cells that are not OUT_OF_DATE, partitions out of range,
  // nodes that are gone.
  EXPECT_THAT(Report(s1, PartitionWith(s2, s3), 0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Report(s1, 99, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(12345, p, 0), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MasterDomainTest, ATransactionInFlightThatMissesTheCellDelaysUpToDate) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  const uint32_t p = PartitionWith(s1, s2);
  Lose(s1);
  Return(s1, 7200);  // OUT_OF_DATE, nothing missed yet

  // T2 is past rule 8 (S1 did not vote) and locking when S1 reports.
  const uint64_t t2 = *coordinator_->Begin(c);
  caller_.blocked_ttid = t2;
  absl::StatusOr<uint64_t> tid2;
  std::thread finish([&] { tid2 = coordinator_->Finish(c, t2, Votes(t2, {s2, s3}, {p})); });
  ASSERT_TRUE(caller_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "T2 never reached lock";
  const uint64_t last = cluster_->Info().last_tid();
  auto r = Report(s1, p, last);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date()) << "T2 may be missing on S1";
  EXPECT_EQ(r->max_tid(), last);  // T2 has not completed: not copyable yet
  // A claim beyond the last completed tid does not count.
  r = Report(s1, p, common::kMaxTid);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date());
  EXPECT_EQ(StateOf(p, s1), cellar::v1::CELL_OUT_OF_DATE);

  caller_.release.Notify();
  finish.join();
  ASSERT_THAT(tid2, IsOk());
  r = Report(s1, p, *tid2);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());

  // Once readable again, a commit that misses it marks it stale again.
  caller_.blocked_ttid = 0;
  const uint64_t t3 = *coordinator_->Begin(c);
  ASSERT_THAT(coordinator_->Finish(c, t3, Votes(t3, {s2, s3}, {p})), IsOk());
  EXPECT_EQ(StateOf(p, s1), cellar::v1::CELL_OUT_OF_DATE);
}

TEST_F(MasterDomainTest, VoterThatFailsToLockIsTreatedAsGoneAndResolvedWhenBack) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  caller_.SetLockResult(s1, absl::UnavailableError("disk trouble"));
  const uint64_t ttid = *coordinator_->Begin(c);
  auto tid = coordinator_->Finish(c, ttid, Votes(ttid, {s1, s2, s3}, {0, 1, 2, 3, 4, 5}));
  ASSERT_THAT(tid, IsOk());  // S2 and S3 locked it: committed
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_COMMITTED);
  EXPECT_EQ(coordinator_->stats().partial_lock_failures, 1u);
  // S1 was retried, then treated as gone: it may miss the commit.
  const auto locks = caller_.locks();
  ASSERT_GE(locks.size(), 2u);
  EXPECT_THAT(locks[0].nodes, ElementsAre(s1, s2, s3));
  EXPECT_THAT(locks[1].nodes, ElementsAre(s1));
  EXPECT_FALSE(cluster_->IsConnected(s1));
  EXPECT_TRUE(subs_[s1]->closed());
  const common::PartitionTable pt = Pt();
  for (uint32_t p = 0; p < 6; ++p) {
    const common::CellState state = pt.CellStateOf(p, s1);
    if (state != cellar::v1::CELL_STATE_UNSPECIFIED) {
      EXPECT_EQ(state, cellar::v1::CELL_OUT_OF_DATE) << "partition " << p;
    }
  }
  // Not every voter locked: the lock records stay. S1 is asked to unlock
  // too, in case its lock went through but the answer did not.
  const auto unlocks = caller_.unlock_calls();
  ASSERT_EQ(unlocks.size(), 2u);
  EXPECT_FALSE(unlocks[0].forget);
  EXPECT_THAT(unlocks[0].nodes, ElementsAre(s2, s3));
  EXPECT_THAT(unlocks[1].nodes, ElementsAre(s1));

  // S1 registers again with its vote in doubt: it is locked with the tid.
  caller_.SetLockResult(s1, absl::OkStatus());
  caller_.SetOutcome(s1, ttid, StorageOutcome::State::kVoted);
  caller_.SetOutcome(s2, ttid, StorageOutcome::State::kLocked, *tid);
  Return(s1, 7200, {ttid});
  ASSERT_THAT(coordinator_->AwaitResolved(absl::Seconds(30)), IsOk());
  const auto after = caller_.locks();
  ASSERT_EQ(after.size(), locks.size() + 1);
  EXPECT_EQ(after.back().ttid, ttid);
  EXPECT_EQ(after.back().tid, *tid);
  EXPECT_THAT(after.back().nodes, ElementsAre(s1));
  // Its cells stay OUT_OF_DATE until replication says otherwise.
  EXPECT_EQ(StateOf(PartitionWith(s1, s2), s1), cellar::v1::CELL_OUT_OF_DATE);
}

TEST_F(MasterDomainTest, LastReadableVoterFailingToLockGoesThroughVerification) {
  coordinator_options_.partial_lock_retry = absl::Milliseconds(100);
  Init(/*autostart=*/2, /*partitions=*/4, /*replicas=*/0);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t s2 = AddStorage(7201);
  subs_[s1] = *cluster_->Watch(s1);
  subs_[s2] = *cluster_->Watch(s2);
  const uint32_t c = AddClient();
  caller_.SetLockResult(s1, absl::UnavailableError("disk trouble"));
  const uint64_t ttid = *coordinator_->Begin(c);
  auto finish = coordinator_->Finish(c, ttid, Votes(ttid, {s1, s2}, {0, 1, 2, 3}));
  // Locked on S2 (committed) but on no readable cell of S1's partitions:
  // not visible, and the client is told so.
  EXPECT_THAT(finish, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(common::ErrorReason(finish.status()), common::kReasonOutcomeUnknown);
  // Not an outcome to act on before it is visible (semantics rule 8).
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ACTIVE);
  uint64_t committed_tid = 0;
  for (const auto& call : caller_.locks()) {
    if (call.ttid == ttid) committed_tid = call.tid;
  }
  ASSERT_NE(committed_tid, 0u);
  const uint64_t* tid = &committed_tid;
  // S1 holds the only copy of its partitions: they stay readable, and the
  // cluster waits for S1 (no commit can miss them meanwhile).
  EXPECT_EQ(StateOf(PartitionWith(s1, s1), s1), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  // Back with the vote in doubt: verification locks it, then RUNNING.
  caller_.SetLockResult(s1, absl::OkStatus());
  caller_.SetOutcome(s1, ttid, StorageOutcome::State::kVoted);
  Return(s1, 7200, {ttid});
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  const auto locks = caller_.locks();
  EXPECT_EQ(locks.back().ttid, ttid);
  EXPECT_EQ(locks.back().tid, *tid);
  EXPECT_THAT(locks.back().nodes, ElementsAre(s1));
  EXPECT_EQ(coordinator_->stats().recovered_committed, 1u);
}

TEST_F(MasterDomainTest, VerificationCommitsWhatSomeStorageLockedAndDropsTheRest) {
  Init(0);
  auto pt = common::PartitionTable::MakeBalanced(4, 1, {1, 2});
  ASSERT_THAT(pt, IsOk());
  pt->set_ptid(5);
  const uint64_t base = common::TidFromTime(clock_.Now() + absl::Hours(1));
  const uint64_t t_locked = base + 4;       // locked on S2 only (crash mid-lock)
  const uint64_t tid_locked = base + 8;     // same partition as t_locked (mod 4)
  const uint64_t t_dropped = base + 5;      // nobody locked it
  caller_.SetOutcome(1, t_locked, StorageOutcome::State::kVoted);
  // S2's lock record: the partitions the commit was decided with.
  const std::vector<uint32_t> decided = {static_cast<uint32_t>(t_locked % 4),
                                         static_cast<uint32_t>((t_locked + 1) % 4)};
  caller_.SetOutcome(2, t_locked, StorageOutcome::State::kLocked, tid_locked, {}, decided);
  caller_.SetOutcome(1, t_dropped, StorageOutcome::State::kVoted);
  caller_.SetOutcome(2, t_dropped, StorageOutcome::State::kVoted);
  auto r1 = Request(cellar::v1::NODE_ROLE_STORAGE, 1, 7200);
  *r1.mutable_partition_table() = pt->ToProto();
  r1.set_last_tid(base);
  r1.add_voted_ttids(t_locked);
  r1.add_voted_ttids(t_dropped);
  ASSERT_THAT(cluster_->RegisterNode(r1), IsOk());
  auto r2 = Request(cellar::v1::NODE_ROLE_STORAGE, 2, 7201);
  *r2.mutable_partition_table() = pt->ToProto();
  r2.set_last_tid(tid_locked);  // objects moved into place at lock
  r2.add_voted_ttids(t_dropped);
  ASSERT_THAT(cluster_->RegisterNode(r2), IsOk());
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);

  // The transaction S2 locked is committed on S1 with S2's tid...
  const auto locks = caller_.locks();
  ASSERT_EQ(locks.size(), 1u);
  EXPECT_EQ(locks[0].ttid, t_locked);
  EXPECT_EQ(locks[0].tid, tid_locked);
  EXPECT_THAT(locks[0].nodes, ElementsAre(1));
  // ...with the partitions it was decided with: what S1 holds of others
  // (a client's stores for partitions its Finish left out) is dropped.
  EXPECT_EQ(locks[0].partitions, decided);
  const auto unlocks = caller_.unlock_calls();
  ASSERT_EQ(unlocks.size(), 1u);
  EXPECT_THAT(unlocks[0].nodes, UnorderedElementsAre(1, 2));
  EXPECT_TRUE(unlocks[0].forget);
  EXPECT_EQ(coordinator_->Status(t_locked).outcome(), cellar::v1::TRANSACTION_COMMITTED);
  EXPECT_EQ(coordinator_->Status(t_locked).tid(), tid_locked);
  // ...the other is dropped everywhere.
  EXPECT_THAT(caller_.aborts(), ElementsAre(t_dropped));
  EXPECT_THAT(caller_.aborted_on(t_dropped), UnorderedElementsAre(1, 2));
  EXPECT_EQ(coordinator_->Status(t_dropped).outcome(), cellar::v1::TRANSACTION_ABORTED);
  EXPECT_EQ(cluster_->Info().last_tid(), tid_locked);
  const uint32_t c = AddClient();
  EXPECT_GT(*coordinator_->Begin(c), tid_locked);
}

TEST_F(MasterDomainTest, StatusOfAnUnknownTtidAsksTheStoragesWhenRunning) {
  Init(/*autostart=*/0);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t s2 = AddStorage(7201);
  const uint64_t base = common::TidFromTime(clock_.Now() + absl::Hours(1));
  const uint64_t t_locked = base + 4;    // begun under a previous primary
  const uint64_t tid_locked = base + 8;
  const uint64_t t_voted = base + 5;     // voted, nobody here locked it
  const uint64_t t_nowhere = base + 6;   // known to no storage
  caller_.SetOutcome(s1, t_locked, StorageOutcome::State::kVoted);
  caller_.SetOutcome(s2, t_locked, StorageOutcome::State::kLocked, tid_locked);
  caller_.SetOutcome(s1, t_voted, StorageOutcome::State::kVoted);
  caller_.SetOutcome(s2, t_voted, StorageOutcome::State::kAborted);

  // Before RUNNING the storages are not asked.
  EXPECT_EQ(coordinator_->Status(t_locked).outcome(), cellar::v1::TRANSACTION_UNKNOWN);
  ASSERT_THAT(cluster_->Start(), IsOk());
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);

  const auto locked = coordinator_->Status(t_locked);
  EXPECT_EQ(locked.outcome(), cellar::v1::TRANSACTION_COMMITTED);
  EXPECT_EQ(locked.tid(), tid_locked);
  // Nobody holding the lock proves nothing (a holder may be down).
  EXPECT_EQ(coordinator_->Status(t_voted).outcome(), cellar::v1::TRANSACTION_UNKNOWN);
  EXPECT_EQ(coordinator_->Status(t_nowhere).outcome(), cellar::v1::TRANSACTION_UNKNOWN);
  EXPECT_EQ(coordinator_->Status(t_nowhere).tid(), 0u);
  // Asking changes nothing on the storages.
  EXPECT_TRUE(caller_.locks().empty());
  EXPECT_TRUE(caller_.aborts().empty());
}

TEST_F(MasterDomainTest, OperatorStartWithoutAStorageMarksItsCellsOutOfDate) {
  Init(0);
  auto pt = common::PartitionTable::MakeBalanced(6, 1, {1, 2, 3});
  ASSERT_THAT(pt, IsOk());
  pt->set_ptid(3);
  for (uint32_t id : {1u, 2u}) {
    auto r = Request(cellar::v1::NODE_ROLE_STORAGE, id, 7199 + id);
    *r.mutable_partition_table() = pt->ToProto();
    ASSERT_THAT(cluster_->RegisterNode(r), IsOk());
  }
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  ASSERT_THAT(cluster_->Start(), IsOk());
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  const common::PartitionTable now = Pt();
  EXPECT_EQ(now.ptid(), 4u);
  for (uint32_t p = 0; p < 6; ++p) {
    const common::CellState state = now.CellStateOf(p, 3);
    if (state != cellar::v1::CELL_STATE_UNSPECIFIED) {
      EXPECT_EQ(state, cellar::v1::CELL_OUT_OF_DATE) << "partition " << p;
    }
  }
}

// --- Restart safety: in-doubt transactions (semantics rules 4 and 6) ---

TEST_F(MasterDomainTest, VerificationPublishesResolvedCommitsWithTheirOidsBeforeTheLastTid) {
  Init(0);
  auto pt = KnownTable();
  ASSERT_THAT(pt, IsOk());
  const uint64_t base = common::TidFromTime(clock_.Now() + absl::Hours(1));
  const uint64_t t_locked = base + 4;    // locked on S2 only (crash mid-lock)
  const uint64_t tid_locked = base + 8;  // same partition as t_locked (mod 4)
  caller_.SetOutcome(1, t_locked, StorageOutcome::State::kVoted);
  caller_.SetOutcome(2, t_locked, StorageOutcome::State::kLocked, tid_locked, {9, 7});
  // A client connected while the master recovers...
  const uint32_t c = AddClient();
  auto watcher = cluster_->Watch(c);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);
  // ...and one that connects while the in-doubt commit is being resolved:
  // its snapshot must not include the commit yet.
  uint64_t snapshot_during_resolution = 0;
  caller_.on_lock = [&](uint64_t ttid) {
    if (ttid != t_locked) return;
    auto sub = hub_.Subscribe(99, true, {});
    cellar::v1::ClusterEvent first;
    ASSERT_TRUE(hub_.Next(*sub, &first, absl::ZeroDuration()));
    snapshot_during_resolution = first.snapshot().last_tid();
    hub_.Unsubscribe(sub);
  };
  auto r1 = Request(cellar::v1::NODE_ROLE_STORAGE, 1, 7200);
  *r1.mutable_partition_table() = pt->ToProto();
  r1.set_last_tid(base);
  r1.add_voted_ttids(t_locked);
  ASSERT_THAT(cluster_->RegisterNode(r1), IsOk());
  auto r2 = Request(cellar::v1::NODE_ROLE_STORAGE, 2, 7201);
  *r2.mutable_partition_table() = pt->ToProto();
  r2.set_last_tid(tid_locked);  // objects moved into place at lock
  ASSERT_THAT(cluster_->RegisterNode(r2), IsOk());
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  caller_.on_lock = nullptr;

  EXPECT_LT(snapshot_during_resolution, tid_locked);
  // The early client is told which objects the resolved commit changed.
  std::vector<cellar::v1::Invalidation> invalidations;
  for (const auto& e : Drain(**watcher)) {
    if (e.has_invalidation()) invalidations.push_back(e.invalidation());
  }
  ASSERT_FALSE(invalidations.empty());
  EXPECT_EQ(invalidations[0].tid(), tid_locked);
  EXPECT_THAT(invalidations[0].oids(), ElementsAre(7, 9));
  EXPECT_EQ(cluster_->Info().last_tid(), tid_locked);
}

TEST_F(MasterDomainTest, AReturningStorageVoteIsResolvedWithRetriesAndReleased) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t c = AddClient();
  caller_.SetLockResult(s1, absl::UnavailableError("killed"));
  const uint64_t ttid = *coordinator_->Begin(c);
  auto tid = coordinator_->Finish(c, ttid, Votes(ttid, {s1, s2, s3}, {0, 1, 2, 3, 4, 5}));
  ASSERT_THAT(tid, IsOk());
  ASSERT_FALSE(cluster_->IsConnected(s1));
  caller_.SetLockResult(s1, absl::OkStatus());
  caller_.SetOutcome(s1, ttid, StorageOutcome::State::kVoted);
  caller_.SetOutcome(s2, ttid, StorageOutcome::State::kLocked, *tid);
  // S1 restarted: the master's channel to it is still reconnecting, the
  // first calls fail at once.
  caller_.FailCalls(s1, 3);
  Return(s1, 7200, {ttid});
  ASSERT_THAT(coordinator_->AwaitResolved(absl::Seconds(30)), IsOk());
  const auto locks = caller_.locks();
  ASSERT_FALSE(locks.empty());
  EXPECT_EQ(locks.back().ttid, ttid);
  EXPECT_EQ(locks.back().tid, *tid);
  EXPECT_THAT(locks.back().nodes, ElementsAre(s1));
  // Its object locks are released.
  const auto unlocks = caller_.unlock_calls();
  ASSERT_FALSE(unlocks.empty());
  EXPECT_EQ(unlocks.back().ttid, ttid);
  EXPECT_THAT(unlocks.back().nodes, ::testing::Contains(s1));
  EXPECT_TRUE(caller_.aborted_on(ttid).empty());
}

TEST_F(MasterDomainTest, AVoteIsNotDroppedWhileAStorageThatMayHaveLockedItIsDown) {
  StartThree();
  const uint32_t s1 = storages_[0], s2 = storages_[1], s3 = storages_[2];
  const uint32_t p = PartitionWith(s2, s3);
  // Begun under an earlier primary, in partition p: S3 (DOWN) may have
  // locked it.
  uint64_t ttid = common::TidFromTime(clock_.Now() + absl::Hours(1));
  while (ttid % 6 != p) ++ttid;
  const uint64_t tid = ttid + 6;
  Lose(s3);
  caller_.SetOutcome(s1, ttid, StorageOutcome::State::kVoted);
  Return(s1, 7200, {ttid});
  ASSERT_TRUE(caller_.AwaitOutcomeCalls(ttid, 3)) << "the resolution was not retried";
  EXPECT_TRUE(caller_.aborted_on(ttid).empty());
  EXPECT_TRUE(caller_.async_aborted_on(ttid).empty());
  EXPECT_NE(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  // S3 is back: it had locked it. S1 locks it too.
  caller_.SetOutcome(s3, ttid, StorageOutcome::State::kLocked, tid);
  Return(s3, 7202);
  ASSERT_THAT(coordinator_->AwaitResolved(absl::Seconds(30)), IsOk());
  const auto locks = caller_.locks();
  ASSERT_FALSE(locks.empty());
  EXPECT_EQ(locks.back().ttid, ttid);
  EXPECT_EQ(locks.back().tid, tid);
  EXPECT_THAT(locks.back().nodes, ElementsAre(s1));
  EXPECT_TRUE(caller_.aborted_on(ttid).empty());
}

TEST_F(MasterDomainTest, AbortOfAnUnknownTtidAsksTheStoragesAndNeverDropsACommit) {
  Init(/*autostart=*/0);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t s2 = AddStorage(7201);
  const uint32_t c = AddClient();
  const uint64_t base = common::TidFromTime(clock_.Now() + absl::Hours(1));
  const uint64_t t_locked = base + 4;  // begun under an earlier primary
  const uint64_t tid_locked = base + 8;
  caller_.SetOutcome(s1, t_locked, StorageOutcome::State::kLocked, tid_locked);
  caller_.SetOutcome(s2, t_locked, StorageOutcome::State::kVoted);
  // Not RUNNING: the storages cannot all be asked.
  EXPECT_THAT(coordinator_->Abort(c, t_locked, {}), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(cluster_->Start(), IsOk());
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  // S1 locked it: committed, the abort is refused and S2 keeps its vote.
  auto refused = coordinator_->Abort(c, t_locked, {s2});
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr(common::TidHex(tid_locked)));
  EXPECT_TRUE(caller_.aborted_on(t_locked).empty());
  // Locked nowhere, every storage answered: aborted.
  const uint64_t t_voted = base + 5;
  caller_.SetOutcome(s2, t_voted, StorageOutcome::State::kVoted);
  EXPECT_THAT(coordinator_->Abort(c, t_voted, {}), IsOk());
  EXPECT_THAT(caller_.aborted_on(t_voted), UnorderedElementsAre(s1, s2));
  // A storage that may have locked it does not answer: retry later.
  const uint64_t t_unsure = base + 6;
  caller_.FailCalls(s1, 1);
  EXPECT_THAT(coordinator_->Abort(c, t_unsure, {}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(caller_.aborted_on(t_unsure).empty());
}

// --- Restart safety: OIDs (semantics rule 7) ---

TEST_F(MasterDomainTest, OidsAreNotHandedOutTwiceAfterAMasterRestart) {
  Init(/*autostart=*/2);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t s2 = AddStorage(7201);
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  auto first = cluster_->AllocateOids(100);
  ASSERT_THAT(first, IsOk());
  auto second = cluster_->AllocateOids(100);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*second, *first + 100);
  // The mark was persisted on both before the first batch left, once.
  EXPECT_GT(caller_.oid_mark(s1), *second + 99);
  EXPECT_EQ(caller_.oid_mark(s1), caller_.oid_mark(s2));
  EXPECT_EQ(caller_.saves(), 2);

  // A new master recovers from the same storages, none of whose OIDs
  // were stored: it continues above everything handed out.
  auto pt = cluster_->Info().partition_table();
  const uint64_t mark = caller_.oid_mark(s1);
  EventHub hub2;
  ClusterOptions options;
  options.cluster_name = "test";
  ClusterManager restarted(options, &clock_, &hub2);
  restarted.set_storage_caller(&caller_);
  for (uint32_t id : {s1, s2}) {
    auto r = Request(cellar::v1::NODE_ROLE_STORAGE, id, id == s1 ? 7200 : 7201);
    *r.mutable_partition_table() = pt;
    r.set_oid_high_water(mark);
    ASSERT_THAT(restarted.RegisterNode(r), IsOk());
  }
  ASSERT_EQ(restarted.Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  auto again = restarted.AllocateOids(100);
  ASSERT_THAT(again, IsOk());
  EXPECT_GT(*again, *second + 99);
  EXPECT_GT(caller_.oid_mark(s1), *again + 99);
}

TEST_F(MasterDomainTest, NoOidIsHandedOutUnlessEveryStoragePersistedTheMark) {
  Init(/*autostart=*/2);
  const uint32_t s1 = AddStorage(7200);
  AddStorage(7201);
  caller_.FailSaves(1);
  EXPECT_THAT(cluster_->AllocateOids(10), StatusIs(absl::StatusCode::kUnavailable));
  auto a = cluster_->AllocateOids(10);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(*a, 1u);
  // A storage that joins later gets the mark before the next batch.
  const int saves = caller_.saves();
  const uint32_t s3 = AddStorage(7202);
  ASSERT_THAT(cluster_->AllocateOids(10), IsOk());
  EXPECT_EQ(caller_.saves(), saves + 1);
  EXPECT_EQ(caller_.oid_mark(s3), caller_.oid_mark(s1));
}

// --- Restart safety: epochs (semantics rule 5) ---

TEST_F(MasterDomainTest, AProvisionalEpochRisesAboveTheEpochsStoragesReport) {
  epoch_ = 1000;  // a single master whose clock went back
  Init(/*autostart=*/2);
  auto r1 = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r1.set_highest_epoch(5000);
  ASSERT_THAT(cluster_->RegisterNode(r1), IsOk());
  auto r2 = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7201);
  r2.set_highest_epoch(7000);
  auto registered = cluster_->RegisterNode(r2);
  ASSERT_THAT(registered, IsOk());
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(cluster_->epoch(), 7001u);
  EXPECT_EQ(registered->epoch(), 7001u);
  EXPECT_EQ(cluster_->Info().epoch(), 7001u);
  const uint32_t c = AddClient();
  auto watcher = cluster_->Watch(c);
  ASSERT_THAT(watcher, IsOk());
  const auto events = Drain(**watcher);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].snapshot().epoch(), 7001u);
  // Every fenced call carries it.
  const uint64_t ttid = *coordinator_->Begin(c);
  ASSERT_THAT(coordinator_->Finish(c, ttid, Votes(ttid, {registered->node_id()}, {1})), IsOk());
  ASSERT_FALSE(caller_.locks().empty());
  for (const auto& lock : caller_.locks()) EXPECT_EQ(lock.epoch, 7001u);

  // Fixed from now on: a storage that saw a newer epoch is refused, one
  // that saw this term's is welcome.
  auto newer = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7202);
  newer.set_highest_epoch(9000);
  auto refused = cluster_->RegisterNode(newer);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(refused.status()), "STALE_EPOCH");
  EXPECT_EQ(cluster_->epoch(), 7001u);
  auto same = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7203);
  same.set_highest_epoch(7001);
  EXPECT_THAT(cluster_->RegisterNode(same), IsOk());
}

TEST_F(MasterDomainTest, ADurableEpochIsKeptAndAStorageThatSawAHigherOneIsRefused) {
  epoch_ = 1000;  // the lease's
  durable_epoch_ = true;
  Init(/*autostart=*/1);
  auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_highest_epoch(1500);
  auto refused = cluster_->RegisterNode(r);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(refused.status()), "STALE_EPOCH");
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  r.set_highest_epoch(999);
  auto ok = cluster_->RegisterNode(r);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->epoch(), 1000u);
  EXPECT_EQ(cluster_->epoch(), 1000u);
}

TEST_F(MasterDomainTest, WatchOfUnknownNodeIsNotFound) {
  Init(0);
  EXPECT_THAT(cluster_->Watch(99), StatusIs(absl::StatusCode::kNotFound));
}

// ---- The commit point (semantics rules 1-3) ----

// Two storages, two partitions, no replica: S1 holds partition 0, S2
// partition 1 (or the other way round: `OwnerOf`).
class CommitPointTest : public MasterDomainTest {
 protected:
  void SetUp() override {
    coordinator_options_.partial_lock_retry = absl::Milliseconds(100);
  }
  uint32_t OwnerOf(uint32_t partition) {
    for (uint32_t id : storages_) {
      if (Pt().CellStateOf(partition, id) != cellar::v1::CELL_STATE_UNSPECIFIED) return id;
    }
    ADD_FAILURE() << "partition " << partition << " has no cell";
    return 0;
  }
  // An oid of `partition` (of `partitions`).
  static uint64_t OidIn(uint32_t partition, uint32_t partitions) {
    return 100 * partitions + partition;
  }
};

// Rule 5 of the review: a node's vote for one partition is no vote for
// another. The node's cell of a partition whose objects it never got must
// go OUT_OF_DATE, whatever else that node voted for.
TEST_F(MasterDomainTest, VotesCountPerPartitionNotPerNode) {
  StartThree(6);
  const uint32_t c = AddClient();
  const uint64_t ttid = *coordinator_->Begin(c);
  const common::PartitionTable pt = Pt();
  const uint32_t tp = static_cast<uint32_t>(ttid % 6);
  const std::vector<uint32_t> record_cells = pt.WritableNodes(tp);
  ASSERT_EQ(record_cells.size(), 2u);
  const uint32_t a = record_cells[0];
  // A partition with a cell on `a` and one on another node `x`.
  uint32_t p = 0, x = 0;
  for (; p < 6; ++p) {
    if (p == tp || !common::IsReadable(pt.CellStateOf(p, a))) continue;
    for (uint32_t id : pt.WritableNodes(p)) {
      if (id != a) x = id;
    }
    if (x != 0) break;
  }
  ASSERT_LT(p, 6u);
  const uint64_t oid = 6 * 10 + p;
  // The client's (older) table had p on `x` only: `a` got the record, not
  // the object.
  CommitVotes votes;
  votes.oids = {oid};
  votes.voters[tp] = record_cells;
  votes.voters[p] = {x};
  votes.conflict_checks.push_back({p, x, pt.ptid()});
  ASSERT_THAT(coordinator_->Finish(c, ttid, votes), IsOk());
  EXPECT_EQ(StateOf(p, a), cellar::v1::CELL_OUT_OF_DATE)
      << "S" << (a & 0xffffff) << " voted for partition " << tp << " only";
  EXPECT_EQ(StateOf(p, x), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(StateOf(tp, a), cellar::v1::CELL_UP_TO_DATE);
}

// Rule 2: a partition's stores must have been checked for conflicts by a
// cell readable at the checked table version and ever since.
TEST_F(MasterDomainTest, FinishWithoutAValidConflictCheckIsAborted) {
  StartThree(6);
  const uint32_t c = AddClient();
  const uint64_t oid = 6 * 10 + 1;
  const uint32_t p = 1;

  // No check at all.
  uint64_t ttid = *coordinator_->Begin(c);
  CommitVotes votes = Votes(ttid, storages_, {oid});
  votes.conflict_checks.clear();
  absl::StatusOr<uint64_t> tid = coordinator_->Finish(c, ttid, votes);
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(common::ErrorReason(tid.status()), common::kReasonNotChecked);
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);

  // A check by a cell that stopped being readable after it checked, then
  // became readable again: it may have missed a commit in between.
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  const uint32_t gone = cells[0];
  const uint64_t old_ptid = Pt().ptid();
  Lose(gone);
  ASSERT_EQ(StateOf(p, gone), cellar::v1::CELL_OUT_OF_DATE);
  Return(gone, 7200 + static_cast<int>(std::find(storages_.begin(), storages_.end(), gone) -
                                       storages_.begin()));
  for (uint32_t q = 0; q < 6; ++q) {
    if (StateOf(q, gone) == cellar::v1::CELL_OUT_OF_DATE) {
      ASSERT_THAT(Report(gone, q, 0), IsOk());
    }
  }
  ASSERT_EQ(StateOf(p, gone), cellar::v1::CELL_UP_TO_DATE);
  ttid = *coordinator_->Begin(c);
  votes = Votes(ttid, storages_, {oid});
  votes.conflict_checks = {{p, gone, old_ptid}};
  EXPECT_THAT(coordinator_->Finish(c, ttid, votes), StatusIs(absl::StatusCode::kAborted));

  // A check by a cell that does not exist, or a table version from the
  // future, counts for nothing either.
  ttid = *coordinator_->Begin(c);
  votes = Votes(ttid, storages_, {oid});
  votes.conflict_checks = {{p, cells[1], Pt().ptid() + 1}};
  EXPECT_THAT(coordinator_->Finish(c, ttid, votes), StatusIs(absl::StatusCode::kAborted));

  // A check at the current table by a readable voter: committed.
  ttid = *coordinator_->Begin(c);
  votes = Votes(ttid, storages_, {oid});
  votes.conflict_checks = {{p, gone, Pt().ptid()}};
  EXPECT_THAT(coordinator_->Finish(c, ttid, votes), IsOk());
}

// Rule 1: readable cells lock first, and a lock by an OUT_OF_DATE cell is
// no commit point: when the readable cells cannot lock, the transaction is
// aborted and nothing was locked anywhere.
TEST_F(MasterDomainTest, OutOfDateLockerIsNoCommitPoint) {
  StartThree(6);
  const uint32_t c = AddClient();
  const uint32_t p = 1;
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  // `stale` has an OUT_OF_DATE cell of p (it was gone for a while).
  const uint32_t stale = cells[0], good = cells[1];
  Lose(stale);
  Return(stale, 7200 + static_cast<int>(std::find(storages_.begin(), storages_.end(), stale) -
                                        storages_.begin()));
  ASSERT_EQ(StateOf(p, stale), cellar::v1::CELL_OUT_OF_DATE);
  caller_.SetLockResult(good, absl::ResourceExhaustedError("disk full"));
  const uint64_t ttid = BeginIn(c, p, 6);
  const uint64_t oid = 6 * 10 + p;
  CommitVotes votes = Votes(ttid, {stale, good}, {oid});
  EXPECT_THAT(coordinator_->Finish(c, ttid, votes), StatusIs(absl::StatusCode::kUnavailable));
  for (const auto& call : caller_.locks()) {
    if (call.ttid != ttid) continue;
    EXPECT_THAT(call.nodes, ::testing::Not(::testing::Contains(stale)))
        << "an OUT_OF_DATE cell was asked to lock before the readable ones did";
  }
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  EXPECT_THAT(caller_.aborted_on(ttid), ::testing::Contains(stale));
}

// Rule 3: a readable cell that fails to lock a committed transaction is
// OUT_OF_DATE before anyone can see the commit (its delta precedes the
// invalidation on every stream).
TEST_F(MasterDomainTest, ReadableCellThatMissedTheLockServesNoReads) {
  StartThree(6);
  const uint32_t c = AddClient();
  auto watcher = cluster_->Watch(c);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);
  const uint32_t p = 1;
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  caller_.SetLockResult(cells[1], absl::ResourceExhaustedError("disk full"));
  const uint64_t ttid = BeginIn(c, p, 6);
  auto tid = coordinator_->Finish(c, ttid, Votes(ttid, cells, {6 * 10 + p}));
  ASSERT_THAT(tid, IsOk());
  EXPECT_EQ(StateOf(p, cells[1]), cellar::v1::CELL_OUT_OF_DATE);
  bool stale_marked = false, published = false;
  for (const auto& e : Drain(**watcher)) {
    if (e.has_partition_table_delta()) {
      for (const auto& change : e.partition_table_delta().changes()) {
        if (change.partition() == p && change.node_id() == cells[1] &&
            change.state() == cellar::v1::CELL_OUT_OF_DATE) {
          EXPECT_FALSE(published) << "the commit was visible before the stale cell went";
          stale_marked = true;
        }
      }
    }
    if (e.has_invalidation() && e.invalidation().tid() == *tid) published = true;
  }
  EXPECT_TRUE(stale_marked);
  EXPECT_TRUE(published);
}

// Rule 1, the partial case: locked on partition 0's only cell, not on
// partition 1's. It is committed (locked somewhere) but must not become
// visible: no invalidation, and the client is told the outcome is not
// known yet rather than "committed" or "aborted".
TEST_F(CommitPointTest, CommitWithoutAReadableLockerInEveryPartitionIsNotPublished) {
  Init(/*autostart=*/2, /*partitions=*/2, /*replicas=*/0);
  for (int i = 0; i < 2; ++i) {
    const uint32_t id = AddStorage(7200 + i);
    storages_.push_back(id);
    subs_[id] = *cluster_->Watch(id);
  }
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  const uint32_t c = AddClient();
  auto watcher = cluster_->Watch(c);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);
  caller_.SetLockResult(OwnerOf(1), absl::ResourceExhaustedError("disk full"));
  const uint64_t ttid = *coordinator_->Begin(c);
  auto tid = coordinator_->Finish(c, ttid, Votes(ttid, storages_, {OidIn(0, 2), OidIn(1, 2)}));
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(common::ErrorReason(tid.status()), common::kReasonOutcomeUnknown);
  for (const auto& e : Drain(**watcher)) {
    EXPECT_FALSE(e.has_invalidation()) << "published without a readable locker of partition 1";
  }
  // Locked somewhere but not visible: not reported committed (a client
  // would acknowledge it) before resolution completes and publishes it.
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ACTIVE);
  EXPECT_THAT(caller_.aborts(), ::testing::Not(::testing::Contains(ttid)));
}

// While a commit is unpublished, no cell of its partitions becomes
// UP_TO_DATE by replication: its sources may lack the commit. (Seen in a
// 20-cycle history check: a cell caught up past an unpublished commit from
// a source without it, and an acknowledged commit was lost.)
TEST_F(MasterDomainTest, NoCellOfAPartitionWithAnUnpublishedCommitCatchesUp) {
  StartThree(6);
  const uint32_t p = 1;
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  const uint32_t back = cells[0];
  Lose(back);
  Return(back, 7200 + static_cast<int>(std::find(storages_.begin(), storages_.end(), back) -
                                       storages_.begin()));
  ASSERT_EQ(StateOf(p, back), cellar::v1::CELL_OUT_OF_DATE);
  cluster_->HoldPartitions(5000, {p});
  auto r = Report(back, p, 0);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date()) << "caught up while a commit of its partition is unpublished";
  EXPECT_EQ(StateOf(p, back), cellar::v1::CELL_OUT_OF_DATE);
  cluster_->ReleaseHold(5000);
  r = Report(back, p, 0);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());
}

// Later commits can be published while an earlier one is held
// unpublished: the partition is complete only below the held one. A cell
// going OUT_OF_DATE then is not told it holds everything up to the last
// published tid (it may lack the held commit), and replication targets
// stop below it. (Seen in the short history check: a cell's progress
// jumped past an unpublished commit it lacked.)
TEST_F(MasterDomainTest, AHeldCommitBoundsWhatCatchUpMayClaim) {
  StartThree(6);
  const uint32_t p = 1;
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  cluster_->HoldPartitions(5000, {p});
  hub_.SetLastTid(9000);  // published after the held commit
  const uint32_t back = cells[0];
  Lose(back);
  Return(back, 7200 + static_cast<int>(std::find(storages_.begin(), storages_.end(), back) -
                                       storages_.begin()));
  ASSERT_EQ(StateOf(p, back), cellar::v1::CELL_OUT_OF_DATE);
  auto r = Report(back, p, 0);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date());
  EXPECT_LT(r->min_tid(), 5000u) << "the cell was told it holds the held commit";
  EXPECT_LT(r->max_tid(), 5000u) << "replication would claim past the held commit";
  // A claim past it does not count either.
  r = Report(back, p, 9000);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date());
  cluster_->ReleaseHold(5000);
  r = Report(back, p, 9000);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());
}

// A lock whose answer was lost may have succeeded: with nobody confirming
// a lock and a storage that cannot tell, nothing is aborted and the
// outcome is unknown (never "aborted": that storage may hold it locked).
TEST_F(CommitPointTest, UnconfirmedLockLeavesTheOutcomeUnknown) {
  Init(/*autostart=*/1, /*partitions=*/2, /*replicas=*/0);
  const uint32_t s1 = AddStorage(7200);
  storages_.push_back(s1);
  subs_[s1] = *cluster_->Watch(s1);
  const uint32_t c = AddClient();
  caller_.SetLockResult(s1, absl::DeadlineExceededError("no answer"));
  caller_.SetUnreachable(s1);
  const uint64_t ttid = *coordinator_->Begin(c);
  auto tid = coordinator_->Finish(c, ttid, Votes(ttid, {s1}, {OidIn(0, 2)}));
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(common::ErrorReason(tid.status()), common::kReasonOutcomeUnknown);
  EXPECT_THAT(caller_.aborts(), ::testing::Not(::testing::Contains(ttid)));
  EXPECT_THAT(coordinator_->Abort(c, ttid, {}), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
}

// A vote whose outcome never reached its storage (here: of a transaction
// the master aborted while the node could not hear it) is reported in the
// node's heartbeats, and the master settles it: its object locks go.
TEST_F(MasterDomainTest, StaleVotesReportedInHeartbeatsAreResolved) {
  StartThree();
  const uint32_t s1 = storages_[0];
  const uint32_t c = AddClient();
  const uint64_t ttid = *coordinator_->Begin(c);
  ASSERT_THAT(coordinator_->Abort(c, ttid, {}), IsOk());
  caller_.SetOutcome(s1, ttid, StorageOutcome::State::kVoted);
  const size_t aborts_before = caller_.aborted_on(ttid).size();
  ASSERT_THAT(cluster_->Heartbeat(s1, {ttid}), IsOk());
  ASSERT_THAT(coordinator_->AwaitResolved(absl::Seconds(30)), IsOk());
  const std::vector<uint32_t> aborted = caller_.aborted_on(ttid);
  ASSERT_GT(aborted.size(), aborts_before);
  EXPECT_THAT(aborted, ::testing::Contains(s1));
  // Unknown nodes still get NOT_FOUND; stale votes change nothing there.
  EXPECT_THAT(cluster_->Heartbeat(12345, {ttid}), StatusIs(absl::StatusCode::kNotFound));
}

// Rule 3: a voter that failed to lock goes OUT_OF_DATE while a readable
// cell that locked is still there (the commit can be published).
TEST_F(MasterDomainTest, AFailedLockerGoesOutOfDateWhileTheLockerIsReadable) {
  StartThree(6);
  const uint32_t p = 1;
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_THAT(cluster_->LockFailed(1000, {cells[1]}, {{p, cells}}, {cells[0]}),
              ::testing::IsEmpty());
  EXPECT_EQ(StateOf(p, cells[1]), cellar::v1::CELL_OUT_OF_DATE);
}

// ... but not once the locker went away meanwhile: the failed cell is then
// the partition's last readable one. It keeps its state (the cluster waits
// for the nodes rather than lose the partition for good) and the commit is
// reported unpublishable. (Seen in a rolling restart: marking it left a
// partition with no readable cell, and the cluster stuck in RECOVERING.)
TEST_F(MasterDomainTest, AFailedLockerStaysReadableWhenTheLockerIsGone) {
  StartThree(6);
  const uint32_t p = 1;
  const std::vector<uint32_t> cells = Pt().ReadableNodes(p);
  ASSERT_EQ(cells.size(), 2u);
  Lose(cells[0]);  // the locker's node goes away before the failure is handled
  ASSERT_EQ(StateOf(p, cells[0]), cellar::v1::CELL_OUT_OF_DATE);
  EXPECT_THAT(cluster_->LockFailed(2000, {cells[1]}, {{p, cells}}, {cells[0]}),
              ElementsAre(p));
  EXPECT_EQ(StateOf(p, cells[1]), cellar::v1::CELL_UP_TO_DATE)
      << "the partition's last readable cell was marked stale";
}

// A storage that reports a huge OID mark (a bug, or a stranger, until
// authentication) must not make OID allocation wrap onto OID 0 and the
// existing objects: the batch is refused.
TEST_F(MasterDomainTest, AHugeReportedOidMarkIsRefusedNotWrapped) {
  Init(/*autostart=*/1);
  auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_oid_high_water(std::numeric_limits<uint64_t>::max());
  ASSERT_THAT(cluster_->RegisterNode(r), IsOk());
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_THAT(cluster_->AllocateOids(10), StatusIs(absl::StatusCode::kFailedPrecondition));
}


// A storage reporting a huge highest epoch (a bug, or a stranger) must not
// make a lone master's provisional epoch wrap to 0 (highest + 1): every
// storage would then refuse it as stale. Refused, and the epoch is kept.
TEST_F(MasterDomainTest, AHugeReportedEpochIsRefusedNotWrapped) {
  Init(/*autostart=*/1);
  const uint64_t before = cluster_->epoch();
  for (uint64_t huge : {std::numeric_limits<uint64_t>::max(), common::kMaxEpoch + 1}) {
    auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
    r.set_highest_epoch(huge);
    EXPECT_THAT(cluster_->RegisterNode(r), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(cluster_->epoch(), before);
  }
  auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_highest_epoch(before + 10);
  ASSERT_THAT(cluster_->RegisterNode(r), IsOk());
  EXPECT_GT(cluster_->epoch(), before + 10);
}


// A registration reporting a tid far ahead of the master's clock (a bug,
// or a forgery) must not push the TID allocator to the end of TID space:
// refused, nothing adopted.
TEST_F(MasterDomainTest, ATidFarAheadOfTheClockIsRefusedAtRegistration) {
  Init(/*autostart=*/1);
  const uint64_t far = common::TidFromTime(clock_.Now() + absl::Hours(24 * 400));
  for (int field = 0; field < 2; ++field) {
    auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
    if (field == 0) r.set_last_tid(far);
    if (field == 1) r.add_voted_ttids(common::kMaxTid - 1);
    absl::StatusOr<cellar::v1::RegisterNodeResponse> refused = cluster_->RegisterNode(r);
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(refused.status().message(),
                ::testing::HasSubstr(field == 0 ? "last_tid" : "voted_ttids"));
  }
  EXPECT_NE(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING)
      << "a refused registration must not count";
  // A tid a day ahead (a clock somewhat off) is accepted.
  auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_last_tid(common::TidFromTime(clock_.Now() + absl::Hours(24)));
  ASSERT_THAT(cluster_->RegisterNode(r), IsOk());
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
}


// Registrations alone must not grow the node list without bound (a probe
// registered clients that never watched until the cluster info was 3 MB):
// a client or admin without a Watch is forgotten after the heartbeat
// timeout; one that watches stays.
TEST_F(MasterDomainTest, AClientThatNeverWatchesIsForgotten) {
  StartThree();  // heartbeat_timeout: default 10 s
  const uint32_t idle = AddClient();
  const uint32_t watching = AddClient();
  auto sub = cluster_->Watch(watching);
  ASSERT_THAT(sub, IsOk());
  const int nodes = cluster_->Info().nodes_size();
  cluster_->ExpireSilentNodes();
  clock_.Advance(absl::Seconds(6));
  for (uint32_t id : storages_) ASSERT_THAT(cluster_->Heartbeat(id), IsOk());
  cluster_->ExpireSilentNodes();
  EXPECT_THAT(cluster_->CheckClient(idle), IsOk()) << "6 s < 10 s";
  clock_.Advance(absl::Seconds(5));
  for (uint32_t id : storages_) ASSERT_THAT(cluster_->Heartbeat(id), IsOk());
  cluster_->ExpireSilentNodes();
  EXPECT_FALSE(cluster_->CheckClient(idle).ok());
  EXPECT_THAT(cluster_->CheckClient(watching), IsOk());
  EXPECT_EQ(cluster_->Info().nodes_size(), nodes - 1);
  for (uint32_t id : storages_) EXPECT_TRUE(cluster_->IsConnected(id));
}


TEST_F(MasterDomainTest, OversizedRegistrationStringsAreRefused) {
  Init(/*autostart=*/1);
  for (int field = 0; field < 3; ++field) {
    auto r = Request(cellar::v1::NODE_ROLE_CLIENT);
    const std::string big(257, 'x');
    if (field == 0) r.set_version(big);
    if (field == 1) r.set_label(big);
    if (field == 2) r.set_cluster_name(big);
    absl::StatusOr<cellar::v1::RegisterNodeResponse> refused = cluster_->RegisterNode(r);
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("at most 256 bytes"));
    EXPECT_LT(refused.status().message().size(), 200u) << "the value was echoed";
  }
  auto r = Request(cellar::v1::NODE_ROLE_CLIENT);
  r.set_version(std::string(256, 'v'));
  EXPECT_THAT(cluster_->RegisterNode(r), IsOk());
}

}  // namespace
}  // namespace cellar::master
