#include "services/master/replica_checker.h"

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "services/common/fake_clock.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

constexpr uint32_t kS1 = 0x02000001, kS2 = 0x02000002, kS3 = 0x02000003;

// Storages holding sets of tids per partition; CheckCell "hashes" them by
// joining them (any injective encoding does for the checker).
class FakeCells : public StorageCaller {
 public:
  std::vector<absl::StatusOr<LockedOids>> LockAll(const std::vector<StorageTarget>&, uint64_t,
                                                  uint64_t, uint64_t, uint64_t,
                                                  const std::vector<uint32_t>&) override {
    return {};
  }
  void UnlockAsync(const std::vector<StorageTarget>&, uint64_t, uint64_t, uint64_t, bool,
                   const RecordOids*) override {}
  std::vector<absl::Status> AbortAll(const std::vector<StorageTarget>&, uint64_t,
                                     uint64_t) override {
    return {};
  }
  void AbortAsync(const std::vector<StorageTarget>&, uint64_t, uint64_t) override {}
  std::vector<absl::StatusOr<StorageOutcome>> OutcomeAll(const std::vector<StorageTarget>&,
                                                         uint64_t) override {
    return {};
  }
  // Storage.Shutdown (no `override`: builds with or without it in the interface).
  absl::Status Shutdown(const StorageTarget&, const std::string&) {
    return absl::OkStatus();
  }

  absl::StatusOr<CellCheck> CheckCell(const StorageTarget& target, uint64_t epoch,
                                      const CellCheckRange& range) override {
    if (block_.load()) {
      entered_.Notify();
      release_.WaitForNotification();
    }
    absl::MutexLock l(&mu_);
    ++calls_;
    last_epoch_ = epoch;
    if (failing_.count(target.node_id)) {
      return absl::UnavailableError(absl::StrCat("S", target.node_id & 0xff, " unreachable"));
    }
    const std::set<uint64_t>& tids = tids_[{target.node_id, range.partition}];
    CellCheck check;
    check.last_tid = range.max_tid;
    std::vector<uint64_t> covered;
    for (auto it = tids.lower_bound(range.min_tid); it != tids.end() && *it <= range.max_tid;
         ++it) {
      covered.push_back(*it);
      if (range.max_transactions != 0 && covered.size() == range.max_transactions) {
        check.last_tid = *it;
        break;
      }
    }
    check.transaction_count = check.object_count = covered.size();
    check.tid_hash = check.oid_hash = absl::StrJoin(covered, ",");
    if (range.with_data) check.data_hash = "d" + check.tid_hash;
    return check;
  }

  void Add(uint32_t node, uint32_t partition, std::vector<uint64_t> tids) {
    absl::MutexLock l(&mu_);
    tids_[{node, partition}].insert(tids.begin(), tids.end());
  }
  void Fail(uint32_t node) {
    absl::MutexLock l(&mu_);
    failing_.insert(node);
  }
  int calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }
  uint64_t last_epoch() {
    absl::MutexLock l(&mu_);
    return last_epoch_;
  }

  std::atomic<bool> block_{false};
  absl::Notification entered_, release_;

 private:
  absl::Mutex mu_;
  std::map<std::pair<uint32_t, uint32_t>, std::set<uint64_t>> tids_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> failing_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

class ReplicaCheckerTest : public ::testing::Test {
 protected:
  ReplicaCheckerTest() {
    info_.set_cluster_state(cellar::v1::CLUSTER_RUNNING);
    info_.set_epoch(7);
    info_.set_last_tid(100);
    auto* pt = info_.mutable_partition_table();
    pt->set_num_partitions(3);
    for (uint32_t id : {kS1, kS2, kS3}) {
      auto* n = info_.add_nodes();
      n->set_node_id(id);
      n->set_address(absl::StrCat("s", id & 0xff));
      n->set_state(cellar::v1::NODE_RUNNING);
    }
    // Partition 0: S1 UP_TO_DATE, S2 UP_TO_DATE, S3 FEEDING.
    // Partition 1: S2 UP_TO_DATE, S3 OUT_OF_DATE (only one readable).
    // Partition 2: S3 UP_TO_DATE, S1 UP_TO_DATE.
    AddRow(0, {{kS1, cellar::v1::CELL_UP_TO_DATE},
               {kS2, cellar::v1::CELL_UP_TO_DATE},
               {kS3, cellar::v1::CELL_FEEDING}});
    AddRow(1, {{kS2, cellar::v1::CELL_UP_TO_DATE}, {kS3, cellar::v1::CELL_OUT_OF_DATE}});
    AddRow(2, {{kS3, cellar::v1::CELL_UP_TO_DATE}, {kS1, cellar::v1::CELL_UP_TO_DATE}});
    const std::vector<uint64_t> p0 = {3, 6, 9, 12, 15, 18, 21};
    for (uint32_t id : {kS1, kS2, kS3}) cells_.Add(id, 0, p0);
    cells_.Add(kS2, 1, {4, 7});
    cells_.Add(kS3, 1, {4});
    cells_.Add(kS3, 2, {5, 8, 11});
    cells_.Add(kS1, 2, {5, 8, 11});
  }

  void AddRow(uint32_t p, std::vector<std::pair<uint32_t, cellar::v1::CellState>> cells) {
    auto* row = info_.mutable_partition_table()->add_rows();
    row->set_partition(p);
    for (auto [id, state] : cells) {
      auto* c = row->add_cells();
      c->set_node_id(id);
      c->set_state(state);
    }
  }

  std::unique_ptr<ReplicaChecker> MakeChecker(uint32_t chunk = 3) {
    ReplicaCheckerOptions options;
    options.chunk_transactions = chunk;
    return std::make_unique<ReplicaChecker>(
        [this] {
          absl::MutexLock l(&mu_);
          return info_;
        },
        &cells_, &clock_, options);
  }

  cellar::v1::GetCheckStatusResponse RunToEnd(ReplicaChecker& checker,
                                              cellar::v1::CheckReplicasRequest request = {}) {
    absl::StatusOr<uint64_t> id = checker.Start(request);
    EXPECT_THAT(id.status(), IsOk());
    EXPECT_TRUE(checker.WaitIdle(absl::Seconds(30))) << "the check did not end within 30 s";
    absl::StatusOr<cellar::v1::GetCheckStatusResponse> status = checker.Status(0);
    EXPECT_THAT(status.status(), IsOk());
    return status.ok() ? *status : cellar::v1::GetCheckStatusResponse();
  }

  absl::Mutex mu_;
  cellar::v1::GetClusterInfoResponse info_;
  FakeCells cells_;
  common::FakeClock clock_;
};

TEST_F(ReplicaCheckerTest, EqualReplicasHaveNoMismatch) {
  auto checker = MakeChecker();
  const auto status = RunToEnd(*checker);
  EXPECT_FALSE(status.running());
  EXPECT_EQ(status.check_id(), 1u);
  EXPECT_EQ(status.error(), "");
  EXPECT_EQ(status.mismatches_size(), 0) << status.DebugString();
  EXPECT_EQ(status.partitions_done(), 3u);
  EXPECT_EQ(status.partitions_total(), 3u);
  EXPECT_THAT(status.skipped_partitions(), ::testing::ElementsAre(1u));
  // Reference cells: 7 transactions of partition 0, 3 of partition 2.
  EXPECT_EQ(status.transactions_checked(), 10u);
  EXPECT_EQ(status.min_tid(), 0u);
  EXPECT_EQ(status.max_tid(), 100u);  // max_tid 0 = the last tid
  EXPECT_EQ(cells_.last_epoch(), 7u);
  EXPECT_GT(status.finished_unix_ms(), 0);
}

TEST_F(ReplicaCheckerTest, ReportsTheFirstDifferingChunkOfEachCell) {
  cells_.Add(kS3, 0, {13});  // an extra transaction in the 2nd chunk (12..18)
  cells_.Add(kS1, 2, {9});   // partition 2: S1 differs from the reference S3
  auto checker = MakeChecker(/*chunk=*/3);
  const auto status = RunToEnd(*checker);
  ASSERT_EQ(status.mismatches_size(), 2) << status.DebugString();
  const cellar::v1::CheckMismatch& m0 = status.mismatches(0);
  EXPECT_EQ(m0.partition(), 0u);
  EXPECT_EQ(m0.node_id(), kS3);
  EXPECT_EQ(m0.reference_node_id(), kS1);
  EXPECT_EQ(m0.min_tid(), 10u);  // chunk 1 = 0..9, chunk 2 = 10..18
  EXPECT_EQ(m0.max_tid(), 18u);
  EXPECT_THAT(m0.detail(), HasSubstr("transactions: 4 vs 3"));
  const cellar::v1::CheckMismatch& m2 = status.mismatches(1);
  EXPECT_EQ(m2.partition(), 2u);
  EXPECT_EQ(m2.node_id(), kS1);
  EXPECT_EQ(m2.reference_node_id(), kS3);
  EXPECT_EQ(status.error(), "");
}

TEST_F(ReplicaCheckerTest, SameCountsDifferentTidsShowAsHashes) {
  auto checker = MakeChecker(/*chunk=*/100);
  cells_.Add(kS1, 2, {50});
  cells_.Add(kS3, 2, {51});
  cellar::v1::CheckReplicasRequest request;
  request.add_partitions(2);
  request.set_with_data(true);
  const auto status = RunToEnd(*checker, request);
  ASSERT_EQ(status.mismatches_size(), 1) << status.DebugString();
  EXPECT_THAT(status.mismatches(0).detail(), HasSubstr("tid hash differs"));
  EXPECT_THAT(status.mismatches(0).detail(), HasSubstr("data hash differs"));
  EXPECT_EQ(status.partitions_total(), 1u);
}

TEST_F(ReplicaCheckerTest, RangeLimitsWhatIsCompared) {
  cells_.Add(kS2, 0, {40});  // outside [0, 30]
  auto checker = MakeChecker();
  cellar::v1::CheckReplicasRequest request;
  request.add_partitions(0);
  request.set_max_tid(30);
  EXPECT_EQ(RunToEnd(*checker, request).mismatches_size(), 0);
  request.set_max_tid(0);
  const auto status = RunToEnd(*checker, request);
  EXPECT_EQ(status.check_id(), 2u);
  ASSERT_EQ(status.mismatches_size(), 1);
  EXPECT_EQ(status.mismatches(0).node_id(), kS2);
}

TEST_F(ReplicaCheckerTest, AFailingStorageEndsTheCheckWithAnError) {
  cells_.Fail(kS2);
  auto checker = MakeChecker();
  const auto status = RunToEnd(*checker);
  EXPECT_THAT(status.error(), HasSubstr("partition 0"));
  EXPECT_THAT(status.error(), HasSubstr("unreachable"));
  EXPECT_FALSE(status.running());
  EXPECT_EQ(status.partitions_done(), 0u);
}

TEST_F(ReplicaCheckerTest, ANodeGoingAwayEndsTheCheck) {
  auto checker = MakeChecker(/*chunk=*/3);
  cells_.block_ = true;
  cellar::v1::CheckReplicasRequest request;
  request.add_partitions(0);
  ASSERT_THAT(checker->Start(request).status(), IsOk());
  ASSERT_TRUE(cells_.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the check never called CheckCell";
  cells_.block_ = false;
  {
    absl::MutexLock l(&mu_);
    info_.mutable_nodes(1)->set_state(cellar::v1::NODE_DOWN);  // S2, still answering
  }
  cells_.release_.Notify();
  ASSERT_TRUE(checker->WaitIdle(absl::Seconds(30))) << "the check did not end within 30 s";
  absl::StatusOr<cellar::v1::GetCheckStatusResponse> status = checker->Status(0);
  ASSERT_THAT(status.status(), IsOk());
  EXPECT_THAT(status->error(), HasSubstr("went away"));
  EXPECT_EQ(status->partitions_done(), 0u);
}

TEST_F(ReplicaCheckerTest, LeavingRunningEndsTheCheck) {
  auto checker = MakeChecker(/*chunk=*/3);
  cells_.block_ = true;
  ASSERT_THAT(checker->Start({}).status(), IsOk());
  ASSERT_TRUE(cells_.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the check never called CheckCell";
  cells_.block_ = false;
  {
    absl::MutexLock l(&mu_);
    info_.set_cluster_state(cellar::v1::CLUSTER_RECOVERING);
  }
  cells_.release_.Notify();
  ASSERT_TRUE(checker->WaitIdle(absl::Seconds(30))) << "the check did not end within 30 s";
  absl::StatusOr<cellar::v1::GetCheckStatusResponse> status = checker->Status(0);
  ASSERT_THAT(status.status(), IsOk());
  EXPECT_THAT(status->error(), HasSubstr("left RUNNING"));
}

TEST_F(ReplicaCheckerTest, DownNodesAreNotCompared) {
  {
    absl::MutexLock l(&mu_);
    info_.mutable_nodes(2)->set_state(cellar::v1::NODE_DOWN);  // S3
  }
  auto checker = MakeChecker();
  // S3 down before the start: partition 0 compares S1 and S2 only, and
  // partition 2 has one readable cell left (S1, not UP_TO_DATE reference
  // is S1 itself) -> skipped.
  auto status = RunToEnd(*checker);
  EXPECT_EQ(status.error(), "");
  EXPECT_THAT(status.skipped_partitions(), ::testing::ElementsAre(1u, 2u));
}

TEST_F(ReplicaCheckerTest, OneCheckAtATimeAndStatusIds) {
  auto checker = MakeChecker();
  EXPECT_THAT(checker->Status(0).status(), StatusIs(absl::StatusCode::kNotFound));
  cells_.block_ = true;
  ASSERT_THAT(checker->Start({}).status(), IsOk());
  ASSERT_TRUE(cells_.entered_.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the check never called CheckCell";
  EXPECT_THAT(checker->Start({}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("check 1")));
  absl::StatusOr<cellar::v1::GetCheckStatusResponse> running = checker->Status(1);
  ASSERT_THAT(running.status(), IsOk());
  EXPECT_TRUE(running->running());
  EXPECT_EQ(running->finished_unix_ms(), 0);
  EXPECT_THAT(checker->Status(2).status(), StatusIs(absl::StatusCode::kNotFound));
  cells_.block_ = false;
  cells_.release_.Notify();
  ASSERT_TRUE(checker->WaitIdle(absl::Seconds(30))) << "the check did not end within 30 s";
  EXPECT_FALSE(checker->Status(1)->running());
}

TEST_F(ReplicaCheckerTest, RefusesBadRequests) {
  auto checker = MakeChecker();
  cellar::v1::CheckReplicasRequest request;
  request.add_partitions(3);
  EXPECT_THAT(checker->Start(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  request.clear_partitions();
  request.set_min_tid(200);  // above the last tid (max_tid 0)
  EXPECT_THAT(checker->Start(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  {
    absl::MutexLock l(&mu_);
    info_.set_cluster_state(cellar::v1::CLUSTER_RECOVERING);
  }
  EXPECT_THAT(checker->Start({}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(cells_.calls(), 0);
}

}  // namespace
}  // namespace cellar::master
