// Pack on an in-process cluster (1 master, 2 storages, replicas = 1, so
// every partition has a cell on each storage, and the admin node), with
// the real client library, on SQLite and on PostgreSQL: many revisions,
// then Admin.Pack at a middle tid while a writer keeps committing. After
// it: every load at a tid above the pack tid answers what it answered
// before, on both storages; the revisions it removed are NOT_FOUND
// (REVISION_PACKED); the per-partition counts are exactly those of the
// revisions kept; old transactions say packed; the replica check (with
// data) finds no difference.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using common::IsOk;
namespace v1 = ::cellar::v1;
using testing_support::WaitFor;

constexpr int kStorages = 2;
constexpr uint32_t kPartitions = 4;
constexpr char kCluster[] = "packtest";

class PackTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kWarning); }

  void SetUp() override {
    backends_ = testing_support::MakeTestBackends(GetParam(), kStorages);
    ASSERT_TRUE(backends_.ok()) << backends_.status();
    tools::LocalClusterOptions options = testing_support::ReplicatedClusterOptions(
        **backends_, kStorages, kPartitions, kCluster);
    options.storage_options = [fast = options.storage_options](int i,
                                                               storage::StorageServerOptions* o) {
      fast(i, o);
      // Small chunks, little pause: many chunks, interleaved with commits.
      // Storage 1 packs slowly: a pack stays in progress there for
      // seconds (the replica check must wait for it).
      o->pack.chunk_items = 3;
      o->pack.pause = i == 1 ? absl::Milliseconds(150) : absl::Milliseconds(2);
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    master_ = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
    admin_ = v1::Admin::NewStub(common::MakeChannel(cluster_->admin_address()));
    for (int i = 0; i < kStorages; ++i) {
      storages_[i] = v1::Storage::NewStub(common::MakeChannel(cluster_->storage_address(i)));
    }
    client_ = testing_support::ConnectClient(cluster_->master_address(), kCluster);
    ASSERT_NE(client_, nullptr);
  }

  void TearDown() override {
    client_.reset();
    if (cluster_) cluster_->Shutdown();
  }

  // Commits `writes`; records each revision in revisions_.
  uint64_t Commit(client::Client& c, const std::map<uint64_t, std::string>& writes) {
    auto txn = c.NewTransaction();
    {
      absl::MutexLock l(&mu_);
      for (const auto& [oid, data] : writes) {
        txn->Store(oid, revisions_[oid].empty() ? 0 : revisions_[oid].rbegin()->first, data);
      }
    }
    absl::StatusOr<uint64_t> tid = txn->Commit();
    EXPECT_THAT(tid.status(), IsOk());
    if (!tid.ok()) return 0;
    absl::MutexLock l(&mu_);
    for (const auto& [oid, data] : writes) revisions_[oid][*tid] = data;
    return *tid;
  }

  // What storage `i` answers to LoadBefore(oid, before): one line.
  std::string LoadBefore(int i, uint64_t oid, uint64_t before) {
    v1::LoadRequest request;
    request.set_oid(oid);
    request.set_before_tid(before);
    v1::LoadResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::Status s = storages_[i]->Load(&context, request, &response);
    if (!s.ok()) return absl::StrCat("error ", s.error_code());
    return absl::StrCat(response.serial(), " ", response.next_serial(), " ", response.data());
  }

  absl::Status LoadSerial(int i, uint64_t oid, uint64_t serial) {
    v1::LoadRequest request;
    request.set_oid(oid);
    request.set_serial(serial);
    v1::LoadResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    return common::FromGrpcStatus(storages_[i]->Load(&context, request, &response));
  }

  grpc::Status Pack(uint64_t pack_tid, v1::AdminPackResponse* response) {
    v1::AdminPackRequest request;
    request.set_pack_tid(pack_tid);
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(30));
    return admin_->Pack(&context, request, response);
  }

  v1::PackStatus PackStatus() {
    v1::AdminGetPackStatusResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(30));
    grpc::Status s = admin_->GetPackStatus(&context, {}, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  bool EveryCellUpToDate() {
    auto info = testing_support::ClusterInfo(*master_);
    for (const auto& row : info.partition_table().rows()) {
      for (const auto& cell : row.cells()) {
        if (cell.state() != v1::CELL_UP_TO_DATE) return false;
      }
    }
    return info.cluster_state() == v1::CLUSTER_RUNNING;
  }

  grpc::Status StartCheck(v1::CheckReplicasResponse* started) {
    v1::CheckReplicasRequest check;
    check.set_with_data(true);
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(30));
    return master_->CheckReplicas(&context, check, started);
  }

  // A replica check with data, to its end (bounded).
  v1::GetCheckStatusResponse RunCheck() {
    v1::CheckReplicasResponse started;
    grpc::Status cs = StartCheck(&started);
    EXPECT_TRUE(cs.ok()) << cs.error_message();
    v1::GetCheckStatusResponse result;
    if (!cs.ok()) return result;
    EXPECT_TRUE(WaitFor(
        [&] {
          grpc::ClientContext context;
          common::SetDeadline(&context, absl::Seconds(10));
          v1::GetCheckStatusRequest get;
          get.set_check_id(started.check_id());
          return master_->GetCheckStatus(&context, get, &result).ok() && !result.running();
        },
        absl::Seconds(60)))
        << "check still running after 60 s";
    EXPECT_EQ(result.error(), "") << result.DebugString();
    return result;
  }

  absl::StatusOr<std::unique_ptr<testing_support::TestBackends>> backends_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Master::Stub> master_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::unique_ptr<v1::Storage::Stub> storages_[kStorages];
  std::unique_ptr<client::Client> client_;
  absl::Mutex mu_;
  std::map<uint64_t, std::map<uint64_t, std::string>> revisions_ ABSL_GUARDED_BY(mu_);
};

TEST_P(PackTest, PackKeepsLaterLoadsCountsAndReplicasWhileWritesGoOn) {
  std::vector<uint64_t> oids;
  for (int i = 0; i < 10; ++i) {
    auto oid = client_->NewOid();
    ASSERT_THAT(oid.status(), IsOk());
    oids.push_back(*oid);
  }
  std::vector<uint64_t> tids;
  for (int round = 0; round < 16; ++round) {
    std::map<uint64_t, std::string> writes;
    for (size_t k = 0; k < oids.size(); ++k) {
      if ((k + round) % 3 != 0 || round == 0) {
        writes[oids[k]] = absl::StrCat("oid ", oids[k], " round ", round,
                                       std::string(round * 7 % 40, 'x'));
      }
    }
    const uint64_t tid = Commit(*client_, writes);
    ASSERT_NE(tid, 0u);
    tids.push_back(tid);
  }
  ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(30)));
  const uint64_t pack_tid = tids[8] + 1;
  const uint64_t last = tids.back();
  auto answers = [&](int storage) {
    std::vector<std::string> out;
    for (uint64_t oid : oids) {
      for (uint64_t tid : tids) {
        if (tid + 1 <= pack_tid) continue;
        for (uint64_t before : {tid, tid + 1}) {
          if (before <= pack_tid) continue;
          out.push_back(absl::StrCat(oid, "@", before, ": ", LoadBefore(storage, oid, before)));
        }
      }
    }
    return out;
  };
  const std::vector<std::string> before0 = answers(0);
  ASSERT_EQ(before0, answers(1));

  // Refusals: nothing asked, beyond the last commit.
  v1::AdminPackResponse response;
  EXPECT_EQ(Pack(0, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Pack(last + 1000000, &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // A writer keeps committing (objects of its own) during the pack.
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    auto c = testing_support::ConnectClient(cluster_->master_address(), kCluster);
    if (c == nullptr) return;
    auto oid = c->NewOid();
    if (!oid.ok()) return;
    while (!stop.load()) {
      if (Commit(*c, {{*oid, absl::StrCat("w", written.load())}}) != 0) ++written;
    }
  });
  grpc::Status s = Pack(pack_tid, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.status().pack_tid(), pack_tid);
  EXPECT_EQ(response.status().storages_size(), kStorages);
  v1::PackStatus status;
  const bool done = WaitFor(
      [&] {
        status = PackStatus();
        return status.done();
      },
      absl::Seconds(60));
  stop = true;
  writer.join();
  ASSERT_TRUE(done) << "pack not done after 60 s: " << status.DebugString();
  EXPECT_GT(written.load(), 0) << "the writer committed nothing during the pack";
  uint64_t rows_removed = 0;
  for (const auto& p : status.storages()) rows_removed += p.rows_removed();

  // Later loads answer as before, on both storages.
  EXPECT_EQ(answers(0), before0);
  EXPECT_EQ(answers(1), before0);

  // The removed revisions say so; the expected counts are those of the
  // kept revisions (the current one at pack_tid and later).
  std::map<uint32_t, v1::PartitionStats> expected;
  uint64_t expected_removed = 0;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [oid, revs] : revisions_) {
      uint64_t current = 0;
      for (const auto& [tid, data] : revs) {
        if (tid <= pack_tid) current = tid;
      }
      v1::PartitionStats& e = expected[oid % kPartitions];
      e.set_objects(e.objects() + 1);
      for (const auto& [tid, data] : revs) {
        if (tid < current) {
          ++expected_removed;
          for (int i = 0; i < kStorages; ++i) {
            absl::Status gone = LoadSerial(i, oid, tid);
            EXPECT_EQ(common::ErrorReason(gone), "REVISION_PACKED")
                << "storage " << i << " oid " << oid << " tid " << tid << ": " << gone;
          }
          continue;
        }
        e.set_revisions(e.revisions() + 1);
        e.set_bytes(e.bytes() + data.size());
        EXPECT_THAT(LoadSerial(0, oid, tid), IsOk());
      }
    }
  }
  EXPECT_EQ(rows_removed, expected_removed * kStorages);
  for (int i = 0; i < kStorages; ++i) {
    v1::GetPartitionStatsResponse stats;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    ASSERT_TRUE(storages_[i]->GetPartitionStats(&context, {}, &stats).ok());
    for (const v1::PartitionStats& p : stats.partitions()) {
      const v1::PartitionStats& e = expected[p.partition()];
      EXPECT_EQ(p.objects(), e.objects()) << "storage " << i << " partition " << p.partition();
      EXPECT_EQ(p.revisions(), e.revisions())
          << "storage " << i << " partition " << p.partition();
      EXPECT_EQ(p.bytes(), e.bytes()) << "storage " << i << " partition " << p.partition();
    }
  }
  // The admin status shows the same: per storage (every partition has a
  // cell on each) and for the cluster, each partition counted once.
  v1::PartitionStats all;
  for (const auto& [partition, e] : expected) {
    all.set_objects(all.objects() + e.objects());
    all.set_revisions(all.revisions() + e.revisions());
    all.set_bytes(all.bytes() + e.bytes());
  }
  ASSERT_GT(all.revisions(), all.objects()) << "some objects keep several revisions";
  {
    v1::GetClusterStatusResponse status;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    ASSERT_TRUE(admin_->GetClusterStatus(&context, {}, &status).ok());
    EXPECT_EQ(status.total_objects(), all.objects());
    EXPECT_EQ(status.total_revisions(), all.revisions());
    EXPECT_EQ(status.total_bytes(), all.bytes());
    EXPECT_EQ(status.size_partitions_counted(), kPartitions);
    ASSERT_EQ(status.storage_sizes_size(), kStorages);
    for (const v1::StorageNodeSize& n : status.storage_sizes()) {
      EXPECT_EQ(n.error(), "") << n.name();
      EXPECT_EQ(n.objects(), all.objects()) << n.name();
      EXPECT_EQ(n.revisions(), all.revisions()) << n.name();
      EXPECT_EQ(n.bytes(), all.bytes()) << n.name();
      EXPECT_EQ(n.readable_cells(), kPartitions) << n.name();
    }
  }

  // History: transactions before the pack tid say packed, later ones not.
  int packed = 0;
  for (uint64_t tid : tids) {
    auto t = client_->GetTransaction(tid);
    ASSERT_THAT(t.status(), IsOk()) << common::TidHex(tid);
    EXPECT_EQ(t->packed(), tid < pack_tid) << common::TidHex(tid);
    packed += t->packed() ? 1 : 0;
  }
  EXPECT_EQ(packed, 9);
  auto transactions = client_->LastTransactions(5);
  ASSERT_THAT(transactions.status(), IsOk());
  for (const v1::TransactionInfo& t : *transactions) EXPECT_FALSE(t.packed());

  // The replicas, both packed at the same tid, are equal.
  v1::GetCheckStatusResponse result = RunCheck();
  EXPECT_EQ(result.mismatches_size(), 0) << result.DebugString();
  EXPECT_EQ(result.partitions_done(), kPartitions);
}

// A storage down when the pack is asked gets it when it is back; until
// it is packed too, a replica check is refused (a packed and an unpacked
// cell differ); afterwards the check passes.
TEST_P(PackTest, AStorageThatWasDownGetsThePackAndChecksWaitForIt) {
  std::vector<uint64_t> oids;
  for (int i = 0; i < 8; ++i) {
    auto oid = client_->NewOid();
    ASSERT_THAT(oid.status(), IsOk());
    oids.push_back(*oid);
  }
  std::vector<uint64_t> tids;
  for (int round = 0; round < 6; ++round) {
    std::map<uint64_t, std::string> writes;
    for (uint64_t oid : oids) writes[oid] = absl::StrCat("oid ", oid, " round ", round);
    const uint64_t tid = Commit(*client_, writes);
    ASSERT_NE(tid, 0u);
    tids.push_back(tid);
  }
  ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(30)));
  cluster_->StopStorage(1);
  v1::AdminPackResponse response;
  grpc::Status s = Pack(tids[3], &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(WaitFor([&] { return PackStatus().done(); }, absl::Seconds(60)))
      << "storage 0 did not pack in 60 s";
  ASSERT_THAT(cluster_->RestartStorage(1), IsOk());
  ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(60)))
      << "storage 1's cells did not come back UP_TO_DATE";
  // Storage 1 is not packed yet (it packs slowly): no check.
  v1::CheckReplicasResponse started;
  grpc::Status refused = StartCheck(&started);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("in progress"));
  v1::PackStatus status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = PackStatus();
        return status.done();
      },
      absl::Seconds(60)))
      << status.DebugString();
  for (const auto& p : status.storages()) EXPECT_EQ(p.pack_tid(), tids[3]);
  for (uint64_t oid : oids) {
    EXPECT_EQ(common::ErrorReason(LoadSerial(1, oid, tids[2])), "REVISION_PACKED");
    EXPECT_THAT(LoadSerial(1, oid, tids[3]), IsOk()) << "the revision current at the pack tid";
  }
  v1::GetCheckStatusResponse result = RunCheck();
  EXPECT_EQ(result.mismatches_size(), 0) << result.DebugString();
}

INSTANTIATE_TEST_SUITE_P(Backends, PackTest,
                         ::testing::ValuesIn(testing_support::TestBackendKinds()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar
