// Cluster lifecycle, end to end on an in-process cluster (1 master, 3
// storages, replicas = 1, 6 partitions) with the real client library, on
// SQLite and on PostgreSQL:
//  - a storage stopped during a stream of commits: the cluster keeps
//    committing, its cells go OUT_OF_DATE; restarted, it catches up by
//    replication and its cells become UP_TO_DATE; then every acknowledged
//    commit is read back from every cell, directly from each storage;
//  - a storage stopped in the middle of replication resumes from its
//    stored progress (tiny chunks and a pause hook);
//  - a storage that stops sending heartbeats (connections open, like a
//    SIGSTOPped process) is treated as gone after the heartbeat timeout;
//  - verification after a crash commits a transaction that one storage had
//    locked on every storage that voted it, and drops one nobody locked.
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/checksum.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/master/master_server.h"
#include "tests/integration/cluster_helpers.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using common::IsOk;
namespace v1 = ::cellar::v1;

constexpr int kStorages = 3;
constexpr uint32_t kPartitions = 6;
constexpr char kCluster[] = "rtest";

using testing_support::WaitFor;

// What a writer got acknowledged.
struct Ledger {
  struct Revision {
    uint64_t oid;
    uint64_t serial;
    std::string data;
  };
  absl::Mutex mu;
  std::vector<Revision> revisions ABSL_GUARDED_BY(mu);
  // oid -> latest acknowledged revision, for oids never touched by a commit
  // whose outcome is unknown.
  std::map<uint64_t, Revision> latest ABSL_GUARDED_BY(mu);
  std::set<uint64_t> uncertain ABSL_GUARDED_BY(mu);
  uint64_t last_tid ABSL_GUARDED_BY(mu) = 0;
  size_t acked ABSL_GUARDED_BY(mu) = 0;
  size_t failed ABSL_GUARDED_BY(mu) = 0;

  size_t Acked() {
    absl::MutexLock l(&mu);
    return acked;
  }
};

// Follows the master's event stream as a client would, keeping every
// partition-table delta (to see changes however briefly they last).
class DeltaRecorder {
 public:
  DeltaRecorder(const std::string& master_address, const std::string& cluster) {
    stub_ = v1::Master::NewStub(common::MakeChannel(master_address));
    v1::RegisterNodeRequest reg;
    reg.set_cluster_name(cluster);
    reg.set_protocol_version(v1::PROTOCOL_VERSION_1);
    reg.set_role(v1::NODE_ROLE_CLIENT);
    v1::RegisterNodeResponse registered;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    EXPECT_TRUE(stub_->RegisterNode(&context, reg, &registered).ok());
    thread_ = std::thread([this, id = registered.node_id()] {
      v1::WatchRequest request;
      request.set_node_id(id);
      auto reader = stub_->Watch(&context_, request);
      v1::ClusterEvent event;
      while (reader->Read(&event)) {
        if (!event.has_partition_table_delta()) continue;
        absl::MutexLock l(&mu_);
        deltas_.push_back(event.partition_table_delta());
      }
      reader->Finish().IgnoreError();
    });
  }
  ~DeltaRecorder() {
    context_.TryCancel();
    thread_.join();
  }
  // True once some delta set every cell of `node_id` to `state`.
  bool SawAllCells(uint32_t node_id, v1::CellState state, size_t cells) {
    absl::MutexLock l(&mu_);
    for (const auto& d : deltas_) {
      size_t n = 0;
      for (const auto& c : d.changes()) n += c.node_id() == node_id && c.state() == state;
      if (n == cells) return true;
    }
    return false;
  }

 private:
  std::unique_ptr<v1::Master::Stub> stub_;
  grpc::ClientContext context_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::PartitionTableDelta> deltas_ ABSL_GUARDED_BY(mu_);
};

class ReplicationTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kWarning); }

  void SetUp() override {
    backends_ = testing_support::MakeTestBackends(GetParam(), kStorages);
    ASSERT_TRUE(backends_.ok()) << backends_.status();
    ASSERT_NO_FATAL_FAILURE(StartCluster());
  }

  void TearDown() override {
    StopWriter();
    client_.reset();
    if (cluster_) cluster_->Shutdown();
  }

  void StartCluster() {
    tools::LocalClusterOptions options;
    options.storages = kStorages;
    options.replicas = 1;
    options.partitions = kPartitions;
    options.cluster_name = kCluster;
    options.storage_backends = (*backends_)->uris();
    options.master_options = [this](master::MasterServerOptions* o) {
      o->cluster.heartbeat_timeout = heartbeat_timeout_;
    };
    options.storage_options = [this](int i, storage::StorageServerOptions* o) {
      o->heartbeat_interval = absl::Milliseconds(500);
      if (i == 0 && silent_) o->heartbeat_interval = absl::Hours(1);
      o->replication.retry_delay = absl::Milliseconds(50);
      o->replication.chunk_records = chunk_records_;
      if (i == 0) o->replication.pause_after_chunks = pause_after_chunks_;
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    master_ = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
    for (int i = 0; i < kStorages; ++i) {
      node_ids_[i] = cluster_->storage_node_id(i);
      storage_stubs_[i] = v1::Storage::NewStub(common::MakeChannel(cluster_->storage_address(i)));
    }
  }

  std::unique_ptr<client::Client> Connect() {
    return testing_support::ConnectClient(cluster_->master_address(), kCluster);
  }

  v1::GetClusterInfoResponse Info() { return testing_support::ClusterInfo(*master_); }

  // The state of every cell of storage `node_id` (partition -> state).
  std::map<uint32_t, v1::CellState> CellsOf(uint32_t node_id) {
    std::map<uint32_t, v1::CellState> cells;
    const v1::GetClusterInfoResponse info = Info();
    for (const auto& row : info.partition_table().rows()) {
      for (const auto& cell : row.cells()) {
        if (cell.node_id() == node_id) cells[row.partition()] = cell.state();
      }
    }
    return cells;
  }

  bool AllCellsOf(uint32_t node_id, v1::CellState state) {
    auto cells = CellsOf(node_id);
    if (cells.empty()) return false;
    for (const auto& [p, s] : cells) {
      if (s != state) return false;
    }
    return true;
  }

  bool EveryCellUpToDate() {
    const v1::GetClusterInfoResponse info = Info();
    for (const auto& row : info.partition_table().rows()) {
      for (const auto& cell : row.cells()) {
        if (cell.state() != v1::CELL_UP_TO_DATE) return false;
      }
    }
    return true;
  }

  v1::GetNodeStatusResponse NodeStatus(int i) {
    v1::GetNodeStatusResponse status;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    storage_stubs_[i]->GetNodeStatus(&context, v1::GetNodeStatusRequest(), &status);
    return status;
  }

  // One commit of two new objects, plus (every third) a new revision of an
  // object written before; recorded in `ledger` if acknowledged.
  void CommitOne(client::Client& c, Ledger& ledger, int n) {
    auto a = c.NewOid();
    auto b = c.NewOid();
    if (!a.ok() || !b.ok()) {
      absl::MutexLock l(&ledger.mu);
      ++ledger.failed;
      return;
    }
    std::vector<Ledger::Revision> writes = {{*a, 0, absl::StrCat("new-", *a, "-", n)},
                                            {*b, 0, absl::StrCat("new-", *b, "-", n)}};
    std::map<uint64_t, uint64_t> bases;
    {
      absl::MutexLock l(&ledger.mu);
      if (n % 3 == 0 && !ledger.latest.empty()) {
        auto it = ledger.latest.begin();
        std::advance(it, n % ledger.latest.size());
        writes.push_back({it->first, 0, absl::StrCat("update-", it->first, "-", n)});
        bases[it->first] = it->second.serial;
      }
    }
    auto txn = c.NewTransaction();
    for (const auto& w : writes) txn->Store(w.oid, bases[w.oid], w.data);
    absl::StatusOr<uint64_t> tid = txn->Commit();
    absl::MutexLock l(&ledger.mu);
    if (!tid.ok()) {
      ++ledger.failed;
      // Maybe committed, maybe not: never compare these objects' latest.
      for (const auto& w : writes) {
        ledger.uncertain.insert(w.oid);
        ledger.latest.erase(w.oid);
      }
      return;
    }
    ++ledger.acked;
    ledger.last_tid = std::max(ledger.last_tid, *tid);
    for (auto w : writes) {
      w.serial = *tid;
      ledger.revisions.push_back(w);
      if (!ledger.uncertain.count(w.oid)) ledger.latest[w.oid] = w;
    }
  }

  void StartWriter() {
    writer_client_ = Connect();
    ASSERT_NE(writer_client_, nullptr);
    stop_writer_ = false;
    writer_ = std::thread([this] {
      for (int n = 0; !stop_writer_; ++n) {
        CommitOne(*writer_client_, ledger_, n);
        absl::SleepFor(absl::Milliseconds(5));
      }
    });
  }

  void StopWriter() {
    stop_writer_ = true;
    if (writer_.joinable()) writer_.join();
    writer_client_.reset();
  }

  // Every acknowledged revision is readable, with the same bytes, from
  // every cell of its partition (read directly from each storage); the
  // latest revisions and histories agree across replicas.
  void CheckReplicas() {
    // A commit that missed a just-restarted storage (its clients were still
    // reconnecting) correctly marks its cells OUT_OF_DATE again; with the
    // writer stopped, replication brings them back.
    ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(90)))
        << "compare replicas once every cell is UP_TO_DATE";
    const auto pt = common::PartitionTable::FromProto(Info().partition_table());
    ASSERT_TRUE(pt.ok());
    // Storages apply table changes a moment after the master makes them
    // (a storage still seeing its cell OUT_OF_DATE refuses reads: clients
    // then try another replica). Read once every storage has the table.
    for (int i = 0; i < kStorages; ++i) {
      ASSERT_TRUE(WaitFor([&] { return NodeStatus(i).ptid() >= pt->ptid(); },
                          absl::Seconds(30)))
          << "storage " << i << " still has ptid " << NodeStatus(i).ptid() << " < "
          << pt->ptid();
    }
    std::map<uint32_t, int> index_of;
    for (int i = 0; i < kStorages; ++i) index_of[node_ids_[i]] = i;
    std::vector<Ledger::Revision> revisions;
    std::map<uint64_t, Ledger::Revision> latest;
    {
      absl::MutexLock l(&ledger_.mu);
      revisions = ledger_.revisions;
      latest = ledger_.latest;
    }
    ASSERT_FALSE(revisions.empty());
    int loads = 0;
    for (const auto& r : revisions) {
      const uint32_t p = pt->PartitionOf(r.oid);
      ASSERT_EQ(pt->Row(p).size(), 2u) << "partition " << p;
      for (const common::PtCell& cell : pt->Row(p)) {
        const int i = index_of[cell.node_id];
        v1::LoadRequest request;
        request.set_oid(r.oid);
        request.set_serial(r.serial);
        v1::LoadResponse response;
        grpc::ClientContext context;
        common::SetDeadline(&context, absl::Seconds(10));
        grpc::Status s = storage_stubs_[i]->Load(&context, request, &response);
        ASSERT_TRUE(s.ok()) << "oid " << r.oid << " serial " << common::TidHex(r.serial)
                            << " missing on " << common::NodeName(cell.node_id) << ": "
                            << s.error_message();
        EXPECT_EQ(response.data(), r.data);
        EXPECT_TRUE(common::ChecksumMatches(response.data(), response.checksum()));
        ++loads;
      }
    }
    for (const auto& [oid, r] : latest) {
      const uint32_t p = pt->PartitionOf(oid);
      std::vector<std::string> histories;
      for (const common::PtCell& cell : pt->Row(p)) {
        const int i = index_of[cell.node_id];
        v1::LoadRequest request;
        request.set_oid(oid);
        request.set_before_tid(common::kMaxTid);
        v1::LoadResponse response;
        {
          grpc::ClientContext context;
          common::SetDeadline(&context, absl::Seconds(10));
          ASSERT_TRUE(storage_stubs_[i]->Load(&context, request, &response).ok());
        }
        EXPECT_EQ(response.serial(), r.serial) << "oid " << oid << " on "
                                               << common::NodeName(cell.node_id);
        EXPECT_EQ(response.data(), r.data);
        v1::HistoryRequest hr;
        hr.set_oid(oid);
        v1::HistoryResponse history;
        grpc::ClientContext context;
        common::SetDeadline(&context, absl::Seconds(10));
        ASSERT_TRUE(storage_stubs_[i]->History(&context, hr, &history).ok());
        histories.push_back(history.SerializeAsString());
      }
      EXPECT_EQ(histories[0], histories[1]) << "histories of oid " << oid << " differ";
    }
    // Every cell of partition(ttid) holds each acknowledged transaction's
    // record with its total size, replicated records included.
    std::map<uint64_t, uint64_t> expected_size;  // tid -> bytes
    for (const auto& r : revisions) expected_size[r.serial] += r.data.size();
    std::vector<std::map<uint64_t, v1::TransactionInfo>> records(kStorages);
    for (int i = 0; i < kStorages; ++i) {
      uint64_t before = 0;
      while (true) {
        v1::LastTransactionsRequest request;
        request.set_limit(1000);
        request.set_before_tid(before);
        v1::LastTransactionsResponse response;
        grpc::ClientContext context;
        common::SetDeadline(&context, absl::Seconds(10));
        ASSERT_TRUE(storage_stubs_[i]->LastTransactions(&context, request, &response).ok());
        if (response.transactions().empty()) break;
        for (const auto& t : response.transactions()) records[i][t.tid()] = t;
        before = response.transactions(response.transactions_size() - 1).tid();
      }
    }
    for (const auto& [tid, size] : expected_size) {
      uint64_t ttid = 0;
      for (const auto& by_tid : records) {
        auto it = by_tid.find(tid);
        if (it != by_tid.end()) ttid = it->second.ttid();
      }
      ASSERT_NE(ttid, 0u) << "no record of transaction " << common::TidHex(tid);
      for (const common::PtCell& cell : pt->Row(pt->PartitionOf(ttid))) {
        const auto& by_tid = records[index_of[cell.node_id]];
        auto it = by_tid.find(tid);
        ASSERT_NE(it, by_tid.end()) << "transaction " << common::TidHex(tid) << " missing on "
                                    << common::NodeName(cell.node_id);
        EXPECT_EQ(it->second.size_bytes(), size)
            << "transaction " << common::TidHex(tid) << " on " << common::NodeName(cell.node_id);
      }
    }
    std::cerr << "compared " << revisions.size() << " acknowledged revisions (" << loads
              << " loads) and " << latest.size() << " latest revisions across replicas\n";
  }

  int chunk_records_ = 1000;
  int pause_after_chunks_ = 0;
  absl::Duration heartbeat_timeout_ = absl::Seconds(10);
  bool silent_ = false;  // storage 0 sends no heartbeats
  absl::StatusOr<std::unique_ptr<testing_support::TestBackends>> backends_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Master::Stub> master_;
  uint32_t node_ids_[kStorages] = {};
  std::unique_ptr<v1::Storage::Stub> storage_stubs_[kStorages];
  std::unique_ptr<client::Client> client_;
  std::unique_ptr<client::Client> writer_client_;
  Ledger ledger_;
  std::atomic<bool> stop_writer_{false};
  std::thread writer_;
};

TEST_P(ReplicationTest, StoppedStorageCatchesUpAndReplicasMatch) {
  const uint32_t s1 = node_ids_[0];
  ASSERT_NO_FATAL_FAILURE(StartWriter());
  ASSERT_TRUE(WaitFor([&] { return ledger_.Acked() >= 20; }, absl::Seconds(60)))
      << "the writer did not get 20 commits through";

  cluster_->StopStorage(0);
  ASSERT_TRUE(WaitFor([&] { return AllCellsOf(s1, v1::CELL_OUT_OF_DATE); },
                      absl::Seconds(30)))
      << "S1's cells did not become OUT_OF_DATE";
  auto info = Info();
  EXPECT_EQ(info.cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_TRUE(info.operational());
  // The cluster keeps committing without S1.
  const size_t acked_without = ledger_.Acked();
  ASSERT_TRUE(WaitFor([&] { return ledger_.Acked() >= acked_without + 30; },
                      absl::Seconds(60)))
      << "commits did not continue while S1 was down";

  ASSERT_THAT(cluster_->RestartStorage(0), IsOk());
  ASSERT_TRUE(WaitFor([&] { return AllCellsOf(s1, v1::CELL_UP_TO_DATE); },
                      absl::Seconds(90)))
      << "S1 did not catch up; its replication status: "
      << NodeStatus(0).ShortDebugString();
  // Still committing while and after it caught up.
  const size_t acked_after = ledger_.Acked();
  ASSERT_TRUE(WaitFor([&] { return ledger_.Acked() >= acked_after + 10; },
                      absl::Seconds(60)));
  StopWriter();

  const v1::GetNodeStatusResponse status = NodeStatus(0);
  uint64_t chunks = 0;
  for (const auto& r : status.replication()) chunks += r.chunks();
  EXPECT_GT(chunks, 0u) << "S1 caught up without replicating? " << status.ShortDebugString();
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);
  ASSERT_NO_FATAL_FAILURE(CheckReplicas());
}

TEST_P(ReplicationTest, StorageStoppedMidReplicationResumesFromItsProgress) {
  const uint32_t s1 = node_ids_[0];
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (int n = 0; n < 10; ++n) CommitOne(*c, ledger_, n);
  cluster_->StopStorage(0);
  ASSERT_TRUE(WaitFor([&] { return AllCellsOf(s1, v1::CELL_OUT_OF_DATE); },
                      absl::Seconds(30)));
  uint64_t last_before = 0;
  {
    absl::MutexLock l(&ledger_.mu);
    last_before = ledger_.last_tid;
  }
  for (int n = 10; n < 50; ++n) CommitOne(*c, ledger_, n);
  ASSERT_GE(ledger_.Acked(), 45u);

  // One record per chunk; S1 stops making progress after 5 chunks.
  chunk_records_ = 1;
  pause_after_chunks_ = 5;
  ASSERT_THAT(cluster_->RestartStorage(0), IsOk());
  std::map<uint32_t, uint64_t> progress;
  ASSERT_TRUE(WaitFor(
      [&] {
        uint64_t chunks = 0;
        const v1::GetNodeStatusResponse status = NodeStatus(0);
        for (const auto& r : status.replication()) chunks += r.chunks();
        return chunks >= 5;
      },
      absl::Seconds(60)))
      << "replication never reached the pause";
  const v1::GetNodeStatusResponse paused = NodeStatus(0);
  for (const auto& r : paused.replication()) {
    if (r.chunks() > 0) progress[r.partition()] = r.replicated_tid();
  }
  ASSERT_FALSE(progress.empty());
  bool past_the_stop = false;
  for (const auto& [p, tid] : progress) past_the_stop |= tid > last_before;
  EXPECT_TRUE(past_the_stop) << "the chunks copied did not advance the stored progress";
  EXPECT_TRUE(AllCellsOf(s1, v1::CELL_OUT_OF_DATE) || !CellsOf(s1).empty());

  // Stopped in the middle, restarted without the pause: it resumes.
  cluster_->StopStorage(0);
  pause_after_chunks_ = 0;
  ASSERT_THAT(cluster_->RestartStorage(0), IsOk());
  ASSERT_TRUE(WaitFor([&] { return AllCellsOf(s1, v1::CELL_UP_TO_DATE); },
                      absl::Seconds(90)))
      << "S1 did not catch up: " << NodeStatus(0).ShortDebugString();
  const v1::GetNodeStatusResponse resumed = NodeStatus(0);
  for (const auto& r : resumed.replication()) {
    auto it = progress.find(r.partition());
    if (it == progress.end()) continue;
    EXPECT_EQ(r.started_from_tid(), it->second)
        << "partition " << r.partition() << " did not resume from its stored progress";
  }
  ASSERT_NO_FATAL_FAILURE(CheckReplicas());
}

TEST_P(ReplicationTest, StorageThatStopsSendingHeartbeatsIsTreatedAsGone) {
  // Like a SIGSTOPped process: its connections stay open, it just says
  // nothing. The master's timeout is 3 s here (10 s by default).
  cluster_->Shutdown();
  cluster_.reset();
  heartbeat_timeout_ = absl::Seconds(3);
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint32_t s1 = node_ids_[0];
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (int n = 0; n < 5; ++n) CommitOne(*c, ledger_, n);
  const size_t s1_cells = CellsOf(s1).size();
  silent_ = true;
  ASSERT_THAT(cluster_->RestartStorage(0), IsOk());
  const absl::Time silent_since = absl::Now();
  // The restart itself made its cells stale for a moment; it catches up
  // (before the heartbeat timeout) and then goes silent.
  ASSERT_TRUE(WaitFor([&] { return AllCellsOf(s1, v1::CELL_UP_TO_DATE); }, absl::Seconds(30)))
      << NodeStatus(0).ShortDebugString();
  // Once declared gone it registers again and, having missed nothing, is
  // soon UP_TO_DATE again: watch the deltas rather than poll the table.
  DeltaRecorder deltas(cluster_->master_address(), kCluster);
  ASSERT_TRUE(WaitFor([&] { return deltas.SawAllCells(s1, v1::CELL_OUT_OF_DATE, s1_cells); },
                      absl::Seconds(30)))
      << "the silent storage's cells did not go OUT_OF_DATE";
  const absl::Duration detection = absl::Now() - silent_since;
  EXPECT_GE(detection, absl::Seconds(2));
  EXPECT_LE(detection, absl::Seconds(15));
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);
  for (int n = 5; n < 15; ++n) CommitOne(*c, ledger_, n);
  // Heartbeats again: it catches up.
  silent_ = false;
  ASSERT_THAT(cluster_->RestartStorage(0), IsOk());
  ASSERT_TRUE(WaitFor([&] { return AllCellsOf(s1, v1::CELL_UP_TO_DATE); },
                      absl::Seconds(60)))
      << NodeStatus(0).ShortDebugString();
  ASSERT_NO_FATAL_FAILURE(CheckReplicas());
}

TEST_P(ReplicationTest, VerificationCommitsWhatOneStorageLockedAndDropsTheRest) {
  // A client session of our own, to drive the commit by hand.
  v1::RegisterNodeRequest reg;
  reg.set_cluster_name(kCluster);
  reg.set_protocol_version(v1::PROTOCOL_VERSION_1);
  reg.set_role(v1::NODE_ROLE_CLIENT);
  v1::RegisterNodeResponse registered;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    ASSERT_TRUE(master_->RegisterNode(&context, reg, &registered).ok());
  }
  std::map<uint64_t, std::string> tokens;  // ttid -> BeginResponse.ttid_token
  auto begin = [&]() -> uint64_t {
    v1::BeginRequest request;
    request.set_node_id(registered.node_id());
    v1::BeginResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    EXPECT_TRUE(master_->Begin(&context, request, &response).ok());
    tokens[response.ttid()] = response.ttid_token();
    return response.ttid();
  };
  v1::AllocateOidsRequest alloc;
  alloc.set_count(10);
  v1::AllocateOidsResponse oids;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    ASSERT_TRUE(master_->AllocateOids(&context, alloc, &oids).ok());
  }
  const auto pt = *common::PartitionTable::FromProto(Info().partition_table());
  std::map<uint32_t, int> index_of;
  for (int i = 0; i < kStorages; ++i) index_of[node_ids_[i]] = i;

  // Stores + votes `oid` = data on every cell of partition(oid) and the
  // transaction record on every cell of partition(ttid).
  auto vote_everywhere = [&](uint64_t ttid, uint64_t oid, const std::string& data) {
    std::map<int, v1::StoreRequest> requests;
    for (const common::PtCell& cell : pt.Row(pt.PartitionOf(oid))) {
      auto& r = requests[index_of[cell.node_id]];
      auto* o = r.add_objects();
      o->set_oid(oid);
      o->set_data(data);
      o->set_checksum(common::Checksum(data));
    }
    for (const common::PtCell& cell : pt.Row(pt.PartitionOf(ttid))) {
      auto& r = requests[index_of[cell.node_id]];
      r.mutable_metadata()->set_user("verifier");
      r.mutable_metadata()->add_oids(oid);
    }
    for (auto& [i, r] : requests) {
      r.set_ttid(ttid);
      r.set_ttid_token(tokens[ttid]);
      r.set_vote(true);
      r.set_client_node_id(registered.node_id());
      v1::StoreResponse response;
      grpc::ClientContext context;
      common::SetDeadline(&context, absl::Seconds(10));
      grpc::Status s = storage_stubs_[i]->Store(&context, r, &response);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  };

  const uint64_t oid_locked = oids.first_oid();
  const uint64_t oid_dropped = oids.first_oid() + 1;
  const uint64_t t_locked = begin();
  const uint64_t t_dropped = begin();
  ASSERT_NO_FATAL_FAILURE(vote_everywhere(t_locked, oid_locked, "locked somewhere"));
  ASSERT_NO_FATAL_FAILURE(vote_everywhere(t_dropped, oid_dropped, "locked nowhere"));
  // The master "crashes" after one storage locked t_locked: only a cell of
  // partition(oid) (it may hold no transaction record) has it.
  const uint64_t tid = t_locked + kPartitions * 1000;  // tid % P == ttid % P
  const int locker = index_of[pt.Row(pt.PartitionOf(oid_locked))[0].node_id];
  {
    v1::LockTransactionRequest lock;
    lock.set_epoch(Info().epoch());
    lock.set_ttid(t_locked);
    lock.set_tid(tid);
    v1::LockTransactionResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::Status s = storage_stubs_[locker]->LockTransaction(&context, lock, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  cluster_->Shutdown();
  cluster_.reset();
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  ASSERT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);

  // t_locked is committed with the locker's tid on every cell...
  for (const common::PtCell& cell : pt.Row(pt.PartitionOf(oid_locked))) {
    v1::LoadRequest request;
    request.set_oid(oid_locked);
    request.set_serial(tid);
    v1::LoadResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::Status s = storage_stubs_[index_of[cell.node_id]]->Load(&context, request, &response);
    ASSERT_TRUE(s.ok()) << common::NodeName(cell.node_id) << ": " << s.error_message();
    EXPECT_EQ(response.data(), "locked somewhere");
  }
  for (const common::PtCell& cell : pt.Row(pt.PartitionOf(t_locked))) {
    v1::LastTransactionsRequest request;
    request.set_limit(10);
    v1::LastTransactionsResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    ASSERT_TRUE(
        storage_stubs_[index_of[cell.node_id]]->LastTransactions(&context, request, &response)
            .ok());
    bool found = false;
    for (const auto& t : response.transactions()) {
      found |= t.ttid() == t_locked && t.tid() == tid;
    }
    EXPECT_TRUE(found) << "no record of the transaction on " << common::NodeName(cell.node_id);
  }
  // ...and readable through a client; t_dropped left nothing anywhere.
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto loaded = c->Load(oid_locked);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->serial, tid);
  EXPECT_EQ(c->Load(oid_dropped).status().code(), absl::StatusCode::kNotFound);
  for (int i = 0; i < kStorages; ++i) {
    EXPECT_EQ(NodeStatus(i).open_transactions(), 0u) << "storage " << i;
    v1::GetTransactionOutcomeRequest request;
    request.set_ttid(t_dropped);
    v1::GetTransactionOutcomeResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    ASSERT_TRUE(storage_stubs_[i]->GetTransactionOutcome(&context, request, &response).ok());
    EXPECT_NE(response.state(), v1::STORAGE_TRANSACTION_VOTED);
    EXPECT_NE(response.state(), v1::STORAGE_TRANSACTION_LOCKED);
  }
  // New transactions get tids after the recovered one.
  auto txn = c->NewTransaction();
  txn->Store(oids.first_oid() + 2, 0, "after");
  auto after = txn->Commit();
  ASSERT_THAT(after, IsOk());
  EXPECT_GT(*after, tid);
}

INSTANTIATE_TEST_SUITE_P(Backends, ReplicationTest,
                         ::testing::ValuesIn(testing_support::TestBackendKinds()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace cellar
