// Operator actions on an in-process cluster (1 master, 2 storages,
// replicas = 1, so every partition has a cell on each storage), with the
// real client library, on SQLite and on PostgreSQL:
//  - CheckReplicas finds no difference between healthy replicas; after one
//    replica is damaged directly in its database (a transaction and its
//    objects deleted while the storage is stopped) it reports that cell;
//    RepairCell copies the cell again from the good one, after which the
//    check is clean and the data loads from the repaired storage;
//  - Truncate to a middle tid: the cluster goes through RECOVERING back to
//    RUNNING, later commits are gone (older revisions, NOT_FOUND), the
//    last transaction is that tid, new commits work with higher tids;
//    a tid beyond the last one, or 0, is refused.
#include <map>
#include <memory>
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
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/backend_uri.h"
#include "services/storage/backend/storage_backend.h"
#include "tests/integration/cluster_helpers.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using common::IsOk;
using common::StatusIs;
namespace v1 = ::cellar::v1;

constexpr int kStorages = 2;
constexpr uint32_t kPartitions = 4;
constexpr char kCluster[] = "ctest";
constexpr uint64_t kAnyTid = ~uint64_t{0} >> 1;

using testing_support::WaitFor;

class CheckTruncateTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kWarning); }

  void SetUp() override {
    backends_ = testing_support::MakeTestBackends(GetParam(), kStorages);
    ASSERT_TRUE(backends_.ok()) << backends_.status();
    const tools::LocalClusterOptions options = testing_support::ReplicatedClusterOptions(
        **backends_, kStorages, kPartitions, kCluster);
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    master_ = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
    for (int i = 0; i < kStorages; ++i) {
      node_ids_[i] = cluster_->storage_node_id(i);
      storages_[i] = v1::Storage::NewStub(common::MakeChannel(cluster_->storage_address(i)));
    }
    client_ = Connect();
    ASSERT_NE(client_, nullptr);
  }

  void TearDown() override {
    client_.reset();
    if (cluster_) cluster_->Shutdown();
  }

  std::unique_ptr<client::Client> Connect() {
    return testing_support::ConnectClient(cluster_->master_address(), kCluster);
  }

  v1::GetClusterInfoResponse Info() { return testing_support::ClusterInfo(*master_); }

  v1::CellState CellState(uint32_t partition, uint32_t node_id) {
    const v1::GetClusterInfoResponse info = Info();
    for (const auto& row : info.partition_table().rows()) {
      if (row.partition() != partition) continue;
      for (const auto& cell : row.cells()) {
        if (cell.node_id() == node_id) return cell.state();
      }
    }
    return v1::CELL_STATE_UNSPECIFIED;
  }

  bool EveryCellUpToDate() {
    const v1::GetClusterInfoResponse info = Info();
    if (info.cluster_state() != v1::CLUSTER_RUNNING) return false;
    for (const auto& row : info.partition_table().rows()) {
      for (const auto& cell : row.cells()) {
        if (cell.state() != v1::CELL_UP_TO_DATE) return false;
      }
    }
    return true;
  }

  // Every storage applied the master's current table.
  void AwaitStoragesHaveTable() {
    const uint64_t ptid = Info().partition_table().ptid();
    for (int i = 0; i < kStorages; ++i) {
      ASSERT_TRUE(WaitFor(
          [&] {
            v1::GetNodeStatusResponse status;
            grpc::ClientContext context;
            common::SetDeadline(&context, absl::Seconds(10));
            return storages_[i]->GetNodeStatus(&context, {}, &status).ok() &&
                   status.ptid() >= ptid && status.cluster_state() == v1::CLUSTER_RUNNING;
          },
          absl::Seconds(30)))
          << "storage " << i << " did not reach ptid " << ptid << " / RUNNING within 30 s";
    }
  }

  // Commits `data` to `oid` (base = its current serial, 0 if new).
  uint64_t Commit(client::Client& c, std::map<uint64_t, std::string> writes,
                  std::map<uint64_t, uint64_t>* serials) {
    auto txn = c.NewTransaction();
    for (auto& [oid, data] : writes) txn->Store(oid, (*serials)[oid], data);
    absl::StatusOr<uint64_t> tid = txn->Commit();
    EXPECT_THAT(tid.status(), IsOk());
    if (!tid.ok()) return 0;
    for (auto& [oid, data] : writes) (*serials)[oid] = *tid;
    return *tid;
  }

  // Runs a check to its end (bounded) and returns its final status.
  v1::GetCheckStatusResponse RunCheck(bool with_data) {
    v1::CheckReplicasRequest request;
    request.set_with_data(with_data);
    v1::CheckReplicasResponse started;
    {
      grpc::ClientContext context;
      common::SetDeadline(&context, absl::Seconds(10));
      grpc::Status s = master_->CheckReplicas(&context, request, &started);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) return {};
    }
    v1::GetCheckStatusResponse status;
    const bool ended = WaitFor(
        [&] {
          grpc::ClientContext context;
          common::SetDeadline(&context, absl::Seconds(10));
          v1::GetCheckStatusRequest get;
          get.set_check_id(started.check_id());
          return master_->GetCheckStatus(&context, get, &status).ok() && !status.running();
        },
        absl::Seconds(60));
    EXPECT_TRUE(ended) << "check " << started.check_id() << " still running after 60 s: "
                       << status.DebugString();
    EXPECT_EQ(status.error(), "") << status.DebugString();
    return status;
  }

  grpc::Status Truncate(uint64_t tid, v1::TruncateResponse* response) {
    v1::TruncateRequest request;
    request.set_tid(tid);
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(120));
    return master_->Truncate(&context, request, response);
  }

  absl::StatusOr<std::unique_ptr<testing_support::TestBackends>> backends_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Master::Stub> master_;
  std::unique_ptr<v1::Storage::Stub> storages_[kStorages];
  uint32_t node_ids_[kStorages] = {};
  std::unique_ptr<client::Client> client_;
};

TEST_P(CheckTruncateTest, CheckFindsADamagedReplicaAndRepairFixesIt) {
  std::map<uint64_t, uint64_t> serials;
  std::map<uint64_t, std::string> contents;
  for (int n = 0; n < 12; ++n) {
    auto a = client_->NewOid();
    auto b = client_->NewOid();
    ASSERT_THAT(a.status(), IsOk());
    ASSERT_THAT(b.status(), IsOk());
    std::map<uint64_t, std::string> writes = {{*a, absl::StrCat("a", n)},
                                              {*b, absl::StrCat("b", n)}};
    ASSERT_NE(Commit(*client_, writes, &serials), 0u);
    for (auto& [oid, data] : writes) contents[oid] = data;
  }
  ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(30)))
      << "cells not all UP_TO_DATE after the commits";

  v1::GetCheckStatusResponse clean = RunCheck(/*with_data=*/true);
  EXPECT_EQ(clean.mismatches_size(), 0) << clean.DebugString();
  EXPECT_EQ(clean.partitions_done(), kPartitions);
  EXPECT_EQ(clean.skipped_partitions_size(), 0);
  EXPECT_GE(clean.transactions_checked(), 12u);

  // Damage storage 1: drop one transaction of a partition, with its
  // objects, directly in its database.
  cluster_->StopStorage(1);
  uint32_t damaged = kPartitions;
  uint64_t victim_tid = 0;
  {
    auto backend = storage::OpenBackendFromUri((*backends_)->uris()[1]);
    ASSERT_THAT(backend.status(), IsOk());
    for (uint32_t p = 0; p < kPartitions && damaged == kPartitions; ++p) {
      auto transactions = (*backend)->ListTransactions(p, 0, kAnyTid, 100000);
      auto objects = (*backend)->ListObjects(p, 0, kAnyTid, 100000);
      ASSERT_THAT(transactions.status(), IsOk());
      ASSERT_THAT(objects.status(), IsOk());
      if (transactions->empty()) continue;
      damaged = p;
      victim_tid = (*transactions)[transactions->size() / 2].tid;
      std::vector<storage::TransactionRecord> keep_t;
      std::vector<storage::ObjectRecord> keep_o;
      for (auto& t : *transactions) {
        if (t.tid != victim_tid) keep_t.push_back(t);
      }
      for (auto& o : *objects) {
        if (o.tid != victim_tid) keep_o.push_back(o);
      }
      ASSERT_THAT((*backend)->DeletePartition(p), IsOk());
      ASSERT_THAT((*backend)->ImportCommitted(keep_t, keep_o), IsOk());
    }
  }
  ASSERT_LT(damaged, kPartitions) << "no partition holds a transaction record";
  ASSERT_THAT(cluster_->RestartStorage(1), IsOk());
  ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(60)))
      << "storage 1's cells did not come back UP_TO_DATE";
  ASSERT_NO_FATAL_FAILURE(AwaitStoragesHaveTable());

  v1::GetCheckStatusResponse found = RunCheck(/*with_data=*/false);
  ASSERT_EQ(found.mismatches_size(), 1) << found.DebugString();
  const v1::CheckMismatch& m = found.mismatches(0);
  EXPECT_EQ(m.partition(), damaged);
  // Whichever of the two is the reference, the pair is storage 0 / 1.
  EXPECT_THAT((std::vector<uint32_t>{m.node_id(), m.reference_node_id()}),
              ::testing::UnorderedElementsAre(node_ids_[0], node_ids_[1]));
  EXPECT_LE(m.min_tid(), victim_tid);
  EXPECT_GE(m.max_tid(), victim_tid);
  EXPECT_THAT(m.detail(), ::testing::HasSubstr("transactions:"));

  // Repair storage 1's cell from storage 0.
  {
    v1::RepairCellRequest bad;
    bad.set_partition(damaged);
    bad.set_node_id(node_ids_[1]);
    bad.set_source_node_id(node_ids_[1]);
    v1::RepairCellResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    EXPECT_EQ(master_->RepairCell(&context, bad, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  v1::RepairCellRequest repair;
  repair.set_partition(damaged);
  repair.set_node_id(node_ids_[1]);
  repair.set_source_node_id(node_ids_[0]);
  v1::RepairCellResponse repaired;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::Status s = master_->RepairCell(&context, repair, &repaired);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_GT(repaired.ptid(), 0u);
  ASSERT_TRUE(WaitFor([&] { return CellState(damaged, node_ids_[1]) == v1::CELL_UP_TO_DATE; },
                      absl::Seconds(60)))
      << "the repaired cell is not UP_TO_DATE after 60 s (state "
      << v1::CellState_Name(CellState(damaged, node_ids_[1])) << ")";
  ASSERT_NO_FATAL_FAILURE(AwaitStoragesHaveTable());

  v1::GetCheckStatusResponse after = RunCheck(/*with_data=*/true);
  EXPECT_EQ(after.mismatches_size(), 0) << after.DebugString();

  // The lost revisions load again, from the repaired storage itself.
  for (const auto& [oid, serial] : serials) {
    if (serial != victim_tid || oid % kPartitions != damaged) continue;
    v1::LoadRequest request;
    request.set_oid(oid);
    request.set_serial(serial);
    v1::LoadResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::Status s = storages_[1]->Load(&context, request, &response);
    ASSERT_TRUE(s.ok()) << "oid " << oid << ": " << s.error_message();
    EXPECT_EQ(response.data(), contents[oid]);
  }
  // And every object loads through a client.
  auto reader = Connect();
  ASSERT_NE(reader, nullptr);
  for (const auto& [oid, data] : contents) {
    auto loaded = reader->Load(oid);
    ASSERT_THAT(loaded.status(), IsOk()) << "oid " << oid;
    EXPECT_EQ(loaded->data, data);
  }
}

TEST_P(CheckTruncateTest, TruncateDropsLaterTransactions) {
  std::map<uint64_t, uint64_t> serials;
  auto a = client_->NewOid();
  ASSERT_THAT(a.status(), IsOk());
  std::vector<uint64_t> tids;
  std::vector<uint64_t> extra_oids;  // one new object per commit
  for (int n = 0; n < 6; ++n) {
    auto b = client_->NewOid();
    ASSERT_THAT(b.status(), IsOk());
    extra_oids.push_back(*b);
    const uint64_t tid = Commit(
        *client_, {{*a, absl::StrCat("a-v", n)}, {*b, absl::StrCat("b", n)}}, &serials);
    ASSERT_NE(tid, 0u);
    tids.push_back(tid);
  }
  const uint64_t keep = tids[2];
  const uint64_t last = Info().last_tid();
  ASSERT_EQ(last, tids.back());

  v1::TruncateResponse response;
  EXPECT_EQ(Truncate(last + 1, &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  {
    grpc::Status refused = Truncate(last + 1, &response);
    EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("after the last committed tid"));
  }
  EXPECT_EQ(Truncate(0, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);

  grpc::Status s = Truncate(keep, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.last_tid(), keep);
  EXPECT_EQ(response.cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_EQ(Info().cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_EQ(Info().last_tid(), keep);
  ASSERT_NO_FATAL_FAILURE(AwaitStoragesHaveTable());

  auto reader = Connect();
  ASSERT_NE(reader, nullptr);
  auto loaded = reader->Load(*a);
  ASSERT_THAT(loaded.status(), IsOk());
  EXPECT_EQ(loaded->serial, keep);
  EXPECT_EQ(loaded->data, "a-v2");
  for (int n = 0; n < 6; ++n) {
    auto b = reader->Load(extra_oids[n]);
    if (n <= 2) {
      EXPECT_THAT(b.status(), IsOk()) << "object of commit " << n;
    } else {
      EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kNotFound))
          << "object of commit " << n << " should be gone";
    }
  }
  auto history = reader->History(*a);
  ASSERT_THAT(history.status(), IsOk());
  ASSERT_FALSE(history->empty());
  EXPECT_EQ((*history)[0].serial(), keep);
  auto transactions = reader->LastTransactions(5);
  ASSERT_THAT(transactions.status(), IsOk());
  ASSERT_FALSE(transactions->empty());
  EXPECT_EQ((*transactions)[0].tid(), keep);

  // Commits work again, with tids above the truncation point (and above
  // every tid handed out before).
  serials[*a] = keep;
  const uint64_t next = Commit(*reader, {{*a, "a-after"}}, &serials);
  ASSERT_NE(next, 0u);
  EXPECT_GT(next, keep);
  EXPECT_GT(next, last);
  auto again = reader->Load(*a);
  ASSERT_THAT(again.status(), IsOk());
  EXPECT_EQ(again->data, "a-after");

  // Replicas still agree after the truncation.
  ASSERT_TRUE(WaitFor([&] { return EveryCellUpToDate(); }, absl::Seconds(30)));
  v1::GetCheckStatusResponse check = RunCheck(/*with_data=*/true);
  EXPECT_EQ(check.mismatches_size(), 0) << check.DebugString();
}

INSTANTIATE_TEST_SUITE_P(Backends, CheckTruncateTest,
                         ::testing::ValuesIn(testing_support::TestBackendKinds()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar
