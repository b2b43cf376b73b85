// Live partition-table operations, end to end on an in-process cluster (1
// master, 2 storages, replicas = 1, 6 partitions, then a third storage) with
// the real client library, on SQLite and on PostgreSQL:
//  - a storage started while RUNNING joins PENDING; Master.ChangePartitionTable
//    PT_ADD (after a dry run that changes nothing) gives it its share; data
//    moves through FEEDING cells, every cell ends UP_TO_DATE with no FEEDING
//    left, each node holds the same number of cells within one, every object
//    loads through a client, and the old nodes deleted the data of the cells
//    they gave away (object counts, and direct loads answer NOT_READABLE);
//  - PT_SET_REPLICAS up: the new cells catch up and every node holds every
//    partition's data;
//  - Master.KillNode (stop) then PT_DROP of that storage: the table no longer
//    mentions it, the cluster stays RUNNING and every object still loads;
//  - bad requests (INVALID_ARGUMENT, NOT_FOUND), and SetClusterState
//    STOPPING: new transactions and table changes are refused.
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/clock.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/backend_uri.h"
#include "services/storage/storage_server.h"
#include "tests/integration/cluster_helpers.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using common::IsOk;
using ::testing::HasSubstr;
namespace v1 = ::cellar::v1;

constexpr int kInitialStorages = 2;
constexpr int kMaxStorages = 3;
constexpr uint32_t kPartitions = 6;
constexpr char kCluster[] = "rebalance";
// Bound of every wait for the cluster to settle (replication included).
constexpr absl::Duration kSettle = absl::Seconds(90);

using testing_support::WaitFor;

class RebalanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kWarning); }

  void SetUp() override {
    backends_ = testing_support::MakeTestBackends(GetParam(), kMaxStorages);
    ASSERT_TRUE(backends_.ok()) << backends_.status();
    tools::LocalClusterOptions options;
    options.storages = kInitialStorages;
    options.replicas = 1;
    options.partitions = kPartitions;
    options.cluster_name = kCluster;
    options.storage_backends = {(*backends_)->uris()[0], (*backends_)->uris()[1]};
    options.storage_options = [](int, storage::StorageServerOptions* o) { Tune(o); };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    master_ = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
    for (int i = 0; i < kInitialStorages; ++i) {
      AddNode(cluster_->storage_node_id(i), cluster_->storage_address(i));
    }
    client_ = Connect();
    ASSERT_NE(client_, nullptr);
  }

  void TearDown() override {
    client_.reset();
    if (extra_) extra_->Shutdown();
    if (cluster_) cluster_->Shutdown();
  }

  static void Tune(storage::StorageServerOptions* o) {
    o->heartbeat_interval = absl::Milliseconds(500);
    o->replication.retry_delay = absl::Milliseconds(50);
    o->replication.poll_interval = absl::Milliseconds(200);
    o->replication.chunk_records = 7;  // several chunks per cell
  }

  void AddNode(uint32_t id, const std::string& address) {
    node_ids_.push_back(id);
    stubs_[id] = v1::Storage::NewStub(common::MakeChannel(address));
  }

  // Starts the third storage (not part of the initial table): it joins
  // PENDING.
  void StartThirdStorage() {
    auto backend = storage::OpenBackendFromUri((*backends_)->uris()[2]);
    ASSERT_THAT(backend, IsOk());
    storage::StorageServerOptions options;
    options.master_addresses = {cluster_->master_address()};
    options.cluster_name = kCluster;
    Tune(&options);
    auto server = storage::StorageServer::Start(std::move(options), *std::move(backend),
                                                common::RealClock::Get(), nullptr);
    ASSERT_THAT(server, IsOk());
    extra_ = *std::move(server);
    ASSERT_THAT(extra_->WaitUntilServing(absl::Seconds(30)), IsOk());
    const uint32_t id = extra_->node_id();
    ASSERT_NE(id, 0u);
    AddNode(id, extra_->address());
    ASSERT_TRUE(WaitFor([&] { return NodeState(id) == v1::NODE_PENDING; }, absl::Seconds(30)))
        << common::NodeName(id) << " is " << v1::NodeState_Name(NodeState(id));
  }

  std::unique_ptr<client::Client> Connect() {
    return testing_support::ConnectClient(cluster_->master_address(), kCluster);
  }

  v1::GetClusterInfoResponse Info() { return testing_support::ClusterInfo(*master_); }

  common::PartitionTable Pt() {
    auto pt = common::PartitionTable::FromProto(Info().partition_table());
    EXPECT_TRUE(pt.ok()) << pt.status();
    return pt.ok() ? *pt : common::PartitionTable();
  }

  v1::NodeState NodeState(uint32_t id) {
    const v1::GetClusterInfoResponse info = Info();
    for (const auto& n : info.nodes()) {
      if (n.node_id() == id) return n.state();
    }
    return v1::NODE_STATE_UNSPECIFIED;
  }

  absl::StatusOr<v1::ChangePartitionTableResponse> Change(
      v1::PartitionTableOperation op, std::vector<uint32_t> ids,
      std::optional<uint32_t> replicas = std::nullopt, bool dry_run = false) {
    return testing_support::ChangePartitionTable(*master_, op, ids, replicas, dry_run);
  }

  v1::GetNodeStatusResponse NodeStatus(uint32_t id) {
    v1::GetNodeStatusResponse status;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::Status s = stubs_[id]->GetNodeStatus(&context, v1::GetNodeStatusRequest(), &status);
    EXPECT_TRUE(s.ok()) << common::NodeName(id) << ": " << s.error_message();
    return status;
  }

  // Commits `n` transactions of two new objects each (every third also
  // updates an earlier object); all must succeed.
  void Commit(int n) {
    for (int i = 0; i < n; ++i) {
      auto a = client_->NewOid();
      auto b = client_->NewOid();
      ASSERT_THAT(a, IsOk());
      ASSERT_THAT(b, IsOk());
      std::map<uint64_t, std::string> writes = {{*a, absl::StrCat("a-", *a, "-", i)},
                                                {*b, absl::StrCat("b-", *b, "-", i)}};
      std::map<uint64_t, uint64_t> bases;
      if (i % 3 == 0 && !latest_.empty()) {
        auto it = latest_.begin();
        std::advance(it, (i * 7) % latest_.size());
        writes[it->first] = absl::StrCat("u-", it->first, "-", i);
        bases[it->first] = it->second.first;
      }
      absl::StatusOr<uint64_t> tid;
      for (int attempt = 1;; ++attempt) {
        auto txn = client_->NewTransaction();
        for (const auto& [oid, data] : writes) txn->Store(oid, bases[oid], data);
        tid = txn->Commit();
        // Right after a table change a storage may not know a cell the
        // client already writes to, and refuse the store (UNAVAILABLE,
        // nothing committed): retry once the storages caught up.
        if (tid.ok() || tid.status().code() != absl::StatusCode::kUnavailable ||
            attempt == 5) {
          break;
        }
        WaitForStoragesToHoldTheTable();
      }
      ASSERT_THAT(tid, IsOk());
      for (const auto& [oid, data] : writes) {
        latest_[oid] = {*tid, data};
        ++revisions_per_partition_[oid % kPartitions];
      }
    }
  }

  // Bounded; no failure of its own (the caller's next step says what).
  void WaitForStoragesToHoldTheTable() {
    WaitFor(
        [&] {
          const v1::GetClusterInfoResponse info = Info();
          for (const auto& row : info.partition_table().rows()) {
            for (const auto& cell : row.cells()) {
              if (NodeStatus(cell.node_id()).ptid() < info.partition_table().ptid()) {
                return false;
              }
            }
          }
          return true;
        },
        absl::Seconds(10));
  }

  // Every cell UP_TO_DATE (so no FEEDING left) and every storage holding
  // the master's table (so its deletions are done).
  bool Settled() {
    const v1::GetClusterInfoResponse info = Info();
    if (info.cluster_state() != v1::CLUSTER_RUNNING) return false;
    for (const auto& row : info.partition_table().rows()) {
      for (const auto& cell : row.cells()) {
        if (cell.state() != v1::CELL_UP_TO_DATE) return false;
      }
    }
    for (const auto& row : info.partition_table().rows()) {
      for (const auto& cell : row.cells()) {
        if (NodeStatus(cell.node_id()).ptid() < info.partition_table().ptid()) return false;
      }
    }
    return true;
  }

  void WaitSettled(const std::string& what) {
    ASSERT_TRUE(WaitFor([&] { return Settled(); }, kSettle))
        << what << ": not every cell is UP_TO_DATE (or a storage lags) after "
        << absl::FormatDuration(kSettle) << ":\n"
        << Pt().ToGrid();
  }

  // Cells per node in the master's table.
  std::map<uint32_t, int> CellCounts() {
    std::map<uint32_t, int> counts;
    const common::PartitionTable pt = Pt();
    for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
      for (const common::PtCell& c : pt.Row(p)) ++counts[c.node_id];
    }
    return counts;
  }

  // Every object loads its latest revision through a fresh client.
  void CheckLoads() {
    auto reader = Connect();
    ASSERT_NE(reader, nullptr);
    ASSERT_FALSE(latest_.empty());
    for (const auto& [oid, revision] : latest_) {
      auto r = reader->Load(oid);
      ASSERT_THAT(r, IsOk()) << "oid " << oid;
      EXPECT_EQ(r->serial, revision.first) << "oid " << oid;
      EXPECT_EQ(r->data, revision.second) << "oid " << oid;
    }
  }

  // Each storage holds exactly the object revisions of its cells' partitions
  // (dropped cells' data was deleted, new cells' data copied).
  // A storage swaps tables before it deletes what it gave away: wait
  // (bounded) for the counts.
  void CheckObjectCounts() {
    const common::PartitionTable pt = Pt();
    for (uint32_t id : node_ids_) {
      if (!pt.NodeIds().contains(id)) continue;
      uint64_t expected = 0;
      for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
        if (pt.CellStateOf(p, id) != v1::CELL_STATE_UNSPECIFIED) {
          expected += revisions_per_partition_[p];
        }
      }
      EXPECT_TRUE(WaitFor([&] { return NodeStatus(id).object_count() == expected; },
                          absl::Seconds(30)))
          << common::NodeName(id) << " holds " << NodeStatus(id).object_count()
          << " object revisions, expected " << expected << " (its cells' partitions)";
    }
  }

  // A load straight from storage `id` of an object of a partition it holds
  // no cell of: refused as not readable.
  void CheckNotReadable(uint32_t id, uint32_t partition) {
    for (const auto& [oid, revision] : latest_) {
      if (oid % kPartitions != partition) continue;
      v1::LoadRequest request;
      request.set_oid(oid);
      request.set_before_tid(common::kMaxTid);  // the latest revision
      v1::LoadResponse response;
      grpc::ClientContext context;
      common::SetDeadline(&context, absl::Seconds(10));
      grpc::Status s = stubs_[id]->Load(&context, request, &response);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
          << common::NodeName(id) << " partition " << partition << ": " << s.error_message();
      EXPECT_EQ(common::ErrorReason(common::FromGrpcStatus(s)), common::kReasonNotReadable);
      return;
    }
    ADD_FAILURE() << "no object in partition " << partition;
  }

  // Adds the third storage with PT_ADD (after a dry run) and waits until
  // the data moved.
  void AddThirdStorage() {
    ASSERT_NO_FATAL_FAILURE(StartThirdStorage());
    const uint32_t s3 = node_ids_.back();
    const common::PartitionTable before = Pt();

    auto dry = Change(v1::PT_ADD, {s3}, 0, /*dry_run=*/true);
    ASSERT_THAT(dry, IsOk());
    EXPECT_FALSE(dry->applied());
    EXPECT_EQ(dry->ptid(), before.ptid());
    EXPECT_THAT(dry->plan(), HasSubstr(absl::StrCat("add ", common::NodeName(s3))));
    EXPECT_THAT(dry->plan(), HasSubstr("dry run"));
    EXPECT_EQ(Pt().ptid(), before.ptid()) << "a dry run changed the table";
    EXPECT_EQ(NodeState(s3), v1::NODE_PENDING);

    auto added = Change(v1::PT_ADD, {s3});
    ASSERT_THAT(added, IsOk());
    EXPECT_TRUE(added->applied());
    EXPECT_EQ(added->ptid_before(), before.ptid());
    EXPECT_EQ(added->ptid(), before.ptid() + 1);
    EXPECT_EQ(added->changes_size(), dry->changes_size());
    EXPECT_EQ(NodeState(s3), v1::NODE_RUNNING);
    // Commits go on while data moves (new cells get them directly).
    ASSERT_NO_FATAL_FAILURE(Commit(10));
    ASSERT_NO_FATAL_FAILURE(WaitSettled("after add"));

    // Balanced: 12 cells over 3 nodes.
    const std::map<uint32_t, int> counts = CellCounts();
    ASSERT_EQ(counts.size(), 3u);
    for (const auto& [id, n] : counts) EXPECT_EQ(n, 4) << common::NodeName(id);
    // What the old nodes gave away is gone from them.
    const common::PartitionTable after = Pt();
    int given_away = 0;
    for (uint32_t id : {node_ids_[0], node_ids_[1]}) {
      for (uint32_t p = 0; p < kPartitions; ++p) {
        if (before.CellStateOf(p, id) != v1::CELL_STATE_UNSPECIFIED &&
            after.CellStateOf(p, id) == v1::CELL_STATE_UNSPECIFIED) {
          ++given_away;
          CheckNotReadable(id, p);
        }
      }
    }
    EXPECT_EQ(given_away, 4);
  }

  absl::StatusOr<std::unique_ptr<testing_support::TestBackends>> backends_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<storage::StorageServer> extra_;
  std::unique_ptr<v1::Master::Stub> master_;
  std::vector<uint32_t> node_ids_;
  std::map<uint32_t, std::unique_ptr<v1::Storage::Stub>> stubs_;
  std::unique_ptr<client::Client> client_;
  // oid -> (serial, data) of its latest revision.
  std::map<uint64_t, std::pair<uint64_t, std::string>> latest_;
  // Object revisions committed per partition.
  std::map<uint32_t, uint64_t> revisions_per_partition_;
};

TEST_P(RebalanceTest, AddingAStorageMovesItsShareAndDeletesItOnTheOldNodes) {
  ASSERT_NO_FATAL_FAILURE(Commit(30));
  ASSERT_NO_FATAL_FAILURE(AddThirdStorage());
  CheckLoads();
  CheckObjectCounts();
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);
}

TEST_P(RebalanceTest, SetReplicasThenKillAndDropAStorage) {
  ASSERT_NO_FATAL_FAILURE(Commit(20));
  ASSERT_NO_FATAL_FAILURE(AddThirdStorage());
  const uint32_t s3 = node_ids_.back();

  // R 1 -> 2: every node gets every partition.
  auto r = Change(v1::PT_SET_REPLICAS, {}, 2);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->applied());
  EXPECT_EQ(r->num_replicas(), 2u);
  ASSERT_NO_FATAL_FAILURE(Commit(5));
  ASSERT_NO_FATAL_FAILURE(WaitSettled("after set replicas 2"));
  EXPECT_EQ(Pt().num_replicas(), 2u);
  for (const auto& [id, n] : CellCounts()) {
    EXPECT_EQ(n, static_cast<int>(kPartitions)) << common::NodeName(id);
  }
  CheckObjectCounts();

  // Kill S3 (and stop it), then drop it for good.
  v1::KillNodeRequest kill;
  kill.set_node_id(s3);
  kill.set_stop(true);
  v1::KillNodeResponse killed;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(30));
    grpc::Status s = master_->KillNode(&context, kill, &killed);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(killed.node().node_id(), s3);
  EXPECT_TRUE(killed.stopped()) << "Storage.Shutdown names the node it stops";
  // Storage.Shutdown may not stop an in-process server at once (or not be
  // there): make sure it is gone before dropping it.
  extra_->Shutdown();
  ASSERT_TRUE(WaitFor([&] { return NodeState(s3) == v1::NODE_DOWN; }, absl::Seconds(30)))
      << common::NodeName(s3) << " is " << v1::NodeState_Name(NodeState(s3));
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);

  auto dropped = Change(v1::PT_DROP, {s3});
  ASSERT_THAT(dropped, IsOk());
  EXPECT_TRUE(dropped->applied());
  // Two nodes cannot hold 3 cells per partition: the plan says so.
  EXPECT_FALSE(dropped->warnings().empty());
  EXPECT_FALSE(Pt().NodeIds().contains(s3));
  EXPECT_EQ(NodeState(s3), v1::NODE_STATE_UNSPECIFIED) << "the dropped node is forgotten";
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);
  node_ids_.pop_back();
  ASSERT_NO_FATAL_FAILURE(Commit(5));
  ASSERT_NO_FATAL_FAILURE(WaitSettled("after drop"));
  for (const auto& [id, n] : CellCounts()) {
    EXPECT_EQ(n, static_cast<int>(kPartitions)) << common::NodeName(id);
  }
  CheckLoads();
  CheckObjectCounts();

  // A RUNNING storage cannot be dropped.
  auto refused = Change(v1::PT_DROP, {node_ids_[0]});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("RUNNING"));
}

TEST_P(RebalanceTest, BadRequestsAndStopping) {
  ASSERT_NO_FATAL_FAILURE(Commit(2));
  EXPECT_EQ(Change(v1::PARTITION_TABLE_OPERATION_UNSPECIFIED, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto zero = Change(v1::PT_ADD, {0});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("node_ids"));
  EXPECT_EQ(Change(v1::PT_DROP, {node_ids_[0], node_ids_[1]}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An empty SetReplicas is not "R = 0" (every copy but one dropped).
  const uint32_t replicas_before = Info().partition_table().num_replicas();
  auto empty = Change(v1::PT_SET_REPLICAS, {});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("replicas: required"));
  EXPECT_EQ(Info().partition_table().num_replicas(), replicas_before);
  auto tweak = Change(v1::PT_TWEAK, {});
  ASSERT_THAT(tweak, IsOk());
  EXPECT_FALSE(tweak->applied()) << "a balanced table needs no change:\n" << tweak->plan();
  {
    v1::KillNodeRequest kill;
    kill.set_node_id(common::MakeNodeId(common::NodeKind::kStorage, 77));
    v1::KillNodeResponse killed;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    EXPECT_EQ(master_->KillNode(&context, kill, &killed).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  auto set_state = [&](v1::ClusterState state) {
    v1::SetClusterStateRequest request;
    request.set_state(state);
    v1::SetClusterStateResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    return master_->SetClusterState(&context, request, &response);
  };
  EXPECT_EQ(set_state(v1::CLUSTER_STATE_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(set_state(v1::CLUSTER_VERIFYING).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(set_state(v1::CLUSTER_STOPPING).ok());
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_STOPPING);
  // New transactions are refused.
  auto txn = client_->NewTransaction();
  txn->Store(latest_.begin()->first, latest_.begin()->second.first, "after stop");
  absl::StatusOr<uint64_t> tid = txn->Commit();
  EXPECT_EQ(tid.status().code(), absl::StatusCode::kFailedPrecondition) << tid.status();
  // Table changes are refused while stopping.
  EXPECT_EQ(Change(v1::PT_TWEAK, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  // An operator resumes: the cluster goes back to RUNNING through recovery
  // and verification, and commits are accepted again.
  ASSERT_TRUE(set_state(v1::CLUSTER_RUNNING).ok());
  ASSERT_TRUE(WaitFor([&] { return Info().cluster_state() == v1::CLUSTER_RUNNING; },
                      absl::Seconds(30)))
      << "the cluster did not come back to RUNNING after a resume; it is "
      << v1::ClusterState_Name(Info().cluster_state());
  auto again = client_->NewTransaction();
  again->Store(latest_.begin()->first, latest_.begin()->second.first, "after resume");
  absl::StatusOr<uint64_t> resumed = absl::UnavailableError("not committed");
  ASSERT_TRUE(WaitFor(
      [&] {
        resumed = again->Commit();
        if (resumed.ok()) return true;
        again = client_->NewTransaction();
        again->Store(latest_.begin()->first, latest_.begin()->second.first, "after resume");
        return false;
      },
      absl::Seconds(30)))
      << "no commit succeeded after the resume: " << resumed.status();
}

INSTANTIATE_TEST_SUITE_P(Backends, RebalanceTest,
                         ::testing::ValuesIn(testing_support::TestBackendKinds()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace cellar
