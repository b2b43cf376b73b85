#include "client/client.h"

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/testing/fake_cluster.h"
#include "services/common/errors.h"
#include "services/common/status_matchers.h"
#include "services/common/ttid_token.h"

namespace cellar::client {
namespace {

using ::cellar::client::testing::FakeCluster;
using ::cellar::client::testing::FakeClusterOptions;
using ::cellar::client::testing::StoreBarrier;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

MATCHER_P(Holds, value, "is OK and holds a value") {
  return arg.ok() && *arg == value;
}

class ClientTest : public ::testing::Test {
 protected:
  void StartCluster(FakeClusterOptions options = {}) {
    auto cluster = FakeCluster::Start(options);
    ASSERT_THAT(cluster, IsOk());
    cluster_ = *std::move(cluster);
  }

  ClientOptions Options() const {
    ClientOptions options;
    options.master_addresses = {cluster_->master_address()};
    options.rpc_timeout = absl::Seconds(5);
    options.connect_timeout = absl::Seconds(5);
    options.commit_wait_timeout = absl::Seconds(5);
    options.max_reconnect_backoff = absl::Milliseconds(200);
    return options;
  }

  // Bounded waits of half a second (tests that wait them out).
  ClientOptions ShortRpcTimeout() const {
    ClientOptions options = Options();
    options.rpc_timeout = absl::Milliseconds(500);
    return options;
  }

  std::unique_ptr<Client> Connect(ClientOptions options) {
    auto client = Client::Connect(std::move(options));
    EXPECT_THAT(client, IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }
  std::unique_ptr<Client> Connect() { return Connect(Options()); }

  // Commits `data` as the new revision of `oid` over `base`.
  absl::StatusOr<uint64_t> Put(Client& client, uint64_t oid, uint64_t base,
                               const std::string& data) {
    auto txn = client.NewTransaction();
    txn->Store(oid, base, data);
    return txn->Commit();
  }

  std::unique_ptr<FakeCluster> cluster_;
};

TEST_F(ClientTest, ConnectTakesTheSnapshot) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->snapshot(), cluster_->master().last_tid());
  EXPECT_NE(client->node_id(), 0u);
  EXPECT_TRUE(client->connected());
  EXPECT_EQ(client->session_count(), 1u);
  EXPECT_EQ(client->cluster_state(), ::cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(client->view().table()->num_partitions(), 4u);
  EXPECT_EQ(cluster_->master().open_watch_streams(), 1);
}

TEST_F(ClientTest, WrongClusterNameIsRefusedAtOnce) {
  StartCluster();
  ClientOptions options = Options();
  options.cluster_name = "other";
  options.connect_timeout = absl::Seconds(30);
  const absl::Time start = absl::Now();
  auto client = Client::Connect(options);
  EXPECT_THAT(client, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(client.status()), "WRONG_CLUSTER");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(ClientTest, NoMasterGivesUnavailable) {
  StartCluster();
  const std::string address = cluster_->master_address();
  cluster_->master().Shutdown();
  ClientOptions options = Options();
  options.connect_timeout = absl::Milliseconds(500);
  EXPECT_THAT(Client::Connect(options),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ClientTest, SecondMasterAddressIsTried) {
  StartCluster();
  ClientOptions options = Options();
  // Nothing listens on port 1 of loopback.
  options.master_addresses = {"127.0.0.1:1", cluster_->master_address()};
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->connected());
}

TEST_F(ClientTest, NewOidIsUniqueAcrossThreads) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::Mutex mu;
  std::set<uint64_t> oids;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 60; ++i) {
        absl::StatusOr<uint64_t> oid = client->NewOid();
        ASSERT_THAT(oid, IsOk());
        absl::MutexLock lock(&mu);
        EXPECT_TRUE(oids.insert(*oid).second);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(oids.size(), 240u);
}

TEST_F(ClientTest, CommitThenLoadReadsOwnWrites) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->NewOid(), IsOk());
  auto txn = client->NewTransaction();
  txn->Store(0, 0, "root");
  txn->Store(5, 0, "five");
  txn->SetUser("alice");
  txn->SetDescription("first");
  absl::StatusOr<uint64_t> tid = txn->Commit();
  ASSERT_THAT(tid, IsOk());
  EXPECT_GE(client->snapshot(), *tid);
  EXPECT_EQ(*tid % 4, cluster_->master().finish_requests()[0].ttid() % 4);

  absl::StatusOr<LoadResult> root = client->Load(0);
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->data, "root");
  EXPECT_EQ(root->serial, *tid);
  EXPECT_EQ(root->next_serial, 0u);
  // Both replicas got the objects (R = 1: every partition on S1 and S2).
  EXPECT_EQ(cluster_->storage(1).Revisions(5).size(), 1u);
  EXPECT_EQ(cluster_->storage(2).Revisions(5).size(), 1u);

  // One Store per storage, voting; metadata only where partition(ttid) is.
  const auto finish = cluster_->master().finish_requests();
  ASSERT_EQ(finish.size(), 1u);
  EXPECT_THAT(finish[0].voted_node_ids(), UnorderedElementsAre(1u, 2u));
  EXPECT_THAT(finish[0].oids(), ElementsAre(0u, 5u));
  std::set<uint32_t> partitions = {0u, 1u,
                                    static_cast<uint32_t>(finish[0].ttid() % 4)};
  EXPECT_EQ(std::set<uint32_t>(finish[0].partitions().begin(),
                               finish[0].partitions().end()),
            partitions);
  EXPECT_EQ(finish[0].partitions_size(), static_cast<int>(partitions.size()));
  for (uint32_t s : {1u, 2u}) {
    auto requests = cluster_->storage(s).store_requests();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_TRUE(requests[0].vote());
    EXPECT_EQ(requests[0].client_node_id(), client->node_id());
    EXPECT_TRUE(requests[0].has_metadata());  // both hold every partition
    EXPECT_EQ(requests[0].metadata().user(), "alice");
    EXPECT_THAT(requests[0].metadata().oids(), ElementsAre(0u, 5u));
    // All the transaction's data: "root" + "five".
    EXPECT_EQ(requests[0].metadata().size_bytes(), 8u);
  }
}

TEST_F(ClientTest, MetadataOnlyGoesToTheTransactionPartition) {
  FakeClusterOptions options;
  options.num_storages = 2;
  options.num_replicas = 0;  // every partition on exactly one storage
  StartCluster(options);
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 1, 0, "x"), IsOk());
  const auto finish = cluster_->master().finish_requests();
  ASSERT_EQ(finish.size(), 1u);
  const auto table = cluster_->master().table();
  const uint32_t record_node = table.Row(finish[0].ttid() % 4)[0].node_id;
  for (uint32_t s : {1u, 2u}) {
    for (const auto& request : cluster_->storage(s).store_requests()) {
      EXPECT_EQ(request.has_metadata(), s == record_node) << "S" << s;
    }
  }
}

TEST_F(ClientTest, StoresAreSentInParallel) {
  StartCluster();
  auto barrier = std::make_shared<StoreBarrier>(2, absl::Seconds(5));
  cluster_->storage(1).SetStoreBarrier(barrier);
  cluster_->storage(2).SetStoreBarrier(barrier);
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  // Sequential stores would wait for each other and fail at the barrier.
  EXPECT_THAT(Put(*client, 3, 0, "parallel"), IsOk());
}

TEST_F(ClientTest, ConflictIsPropagatedWithDetail) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<uint64_t> first = Put(*client, 9, 0, "v1");
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<uint64_t> second = Put(*client, 9, 0, "v1 again");
  ASSERT_THAT(second, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(common::ErrorReason(second.status()), "CONFLICT");
  std::optional<common::ConflictInfo> conflict =
      common::GetConflict(second.status());
  ASSERT_TRUE(conflict.has_value());
  EXPECT_EQ(conflict->oid, 9u);
  EXPECT_EQ(conflict->current_serial, *first);
  EXPECT_EQ(conflict->base_serial, 0u);
  // The master was told to abort on every involved storage.
  const auto aborts = cluster_->master().abort_requests();
  ASSERT_EQ(aborts.size(), 1u);
  EXPECT_THAT(aborts[0].storage_node_ids(), UnorderedElementsAre(1u, 2u));
  EXPECT_EQ(cluster_->master().finish_requests().size(), 1u);
  EXPECT_EQ(client->stats().conflicts, 1u);
  // Retrying on the current serial commits.
  EXPECT_THAT(Put(*client, 9, conflict->current_serial, "v2"), IsOk());
  EXPECT_EQ(client->Load(9)->data, "v2");
}

TEST_F(ClientTest, OtherStoreErrorsAbort) {
  StartCluster();
  cluster_->storage(2).SetStoreError(
      absl::InvalidArgumentError("bad request"));
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(Put(*client, 1, 0, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("S2")));
  EXPECT_EQ(cluster_->master().abort_requests().size(), 1u);
  EXPECT_TRUE(cluster_->master().finish_requests().empty());
}

TEST_F(ClientTest, UnreachableReplicaToleratedWhenEveryPartitionVoted) {
  StartCluster();  // R = 1
  cluster_->storage(2).SetStoreError(absl::UnavailableError("down"));
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  ASSERT_THAT(tid, IsOk());
  const auto finish = cluster_->master().finish_requests();
  ASSERT_EQ(finish.size(), 1u);
  EXPECT_THAT(finish[0].voted_node_ids(), ElementsAre(1u));
}

// A stopped (SIGSTOP) storage keeps its connection: its Store times out
// rather than failing. That node is a replica that did not vote, not a
// refusal: the commit goes on with the other cell.
TEST_F(ClientTest, UnresponsiveReplicaToleratedWhenEveryPartitionVoted) {
  StartCluster();  // R = 1
  cluster_->storage(2).SetStoreError(absl::DeadlineExceededError("Deadline Exceeded"));
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  ASSERT_THAT(tid, IsOk());
  const auto finish = cluster_->master().finish_requests();
  ASSERT_EQ(finish.size(), 1u);
  EXPECT_THAT(finish[0].voted_node_ids(), ElementsAre(1u));
}

TEST_F(ClientTest, UnreachableOnlyReplicaAborts) {
  FakeClusterOptions options;
  options.num_replicas = 0;
  options.num_storages = 1;
  StartCluster(options);
  cluster_->storage(1).SetStoreError(absl::UnavailableError("down"));
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(Put(*client, 1, 0, "x"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(cluster_->master().abort_requests().size(), 1u);
  EXPECT_TRUE(cluster_->master().finish_requests().empty());
}

TEST_F(ClientTest, LostFinishAnswerIsRecovered) {
  StartCluster();
  cluster_->master().SetLoseFinishAnswer(true);
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  ASSERT_THAT(tid, IsOk());
  EXPECT_EQ(*tid, cluster_->master().last_tid());
  EXPECT_TRUE(cluster_->master().abort_requests().empty());
}

TEST_F(ClientTest, FinishAnswerLostInAFailoverIsAskedOfTheNewMaster) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->AwaitSession(1, absl::Seconds(5)), IsOk());
  cluster_->master().SetFailOverOnFinish(true);
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  ASSERT_THAT(tid, IsOk());
  EXPECT_EQ(*tid, cluster_->master().last_tid());
  // Asked after reconnecting; the snapshot of the new session covers it.
  EXPECT_GE(client->session_count(), 2u);
  EXPECT_GE(client->snapshot(), *tid);
  // The old master refused the abort; nothing was aborted.
  EXPECT_EQ(cluster_->master().refused_while_down(), 1);
  EXPECT_TRUE(cluster_->master().abort_requests().empty());
  auto loaded = client->Load(1);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->data, "x");
  EXPECT_EQ(loaded->serial, *tid);
}

TEST_F(ClientTest, AfterAFailoverTheClientAsksOnceTheNewMasterRuns) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->AwaitSession(1, absl::Seconds(5)), IsOk());
  // The new primary verifies (RECOVERING) before it can answer.
  cluster_->master().SetFailOverOnFinish(true, /*commit=*/true,
                                         /*recovering=*/true);
  absl::StatusOr<uint64_t> tid;
  std::thread commit([&] { tid = Put(*client, 1, 0, "x"); });
  ASSERT_THAT(client->AwaitSession(2, absl::Seconds(5)), IsOk());
  // Gives a client that asks at once (UNKNOWN while RECOVERING) the time to
  // do so; the outcome with a correct client does not depend on it.
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(client->cluster_state(), ::cellar::v1::CLUSTER_RECOVERING);
  cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RUNNING);
  commit.join();
  ASSERT_THAT(tid, IsOk());
  EXPECT_EQ(*tid, cluster_->master().last_tid());
  EXPECT_TRUE(cluster_->master().abort_requests().empty());
}

TEST_F(ClientTest, FinishLostInAFailoverAndUnknownToTheNewMasterFails) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->AwaitSession(1, absl::Seconds(5)), IsOk());
  const uint64_t before = cluster_->master().last_tid();
  cluster_->master().SetFailOverOnFinish(true, /*commit=*/false);
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(common::ErrorReason(tid.status()), common::kReasonOutcomeUnknown);
  EXPECT_EQ(cluster_->master().last_tid(), before);
  EXPECT_EQ(cluster_->master().refused_while_down(), 1);
  // Outcome unknown: the new master is not asked to abort it.
  EXPECT_TRUE(cluster_->master().abort_requests().empty());
  // The client works on in its new session.
  ASSERT_THAT(client->AwaitSession(2, absl::Seconds(5)), IsOk());
  EXPECT_THAT(Put(*client, 2, 0, "y"), IsOk());
}

TEST_F(ClientTest, MissingInvalidationTimesOut) {
  StartCluster();
  cluster_->master().SetSuppressInvalidations(true);
  ClientOptions options = Options();
  options.commit_wait_timeout = absl::Milliseconds(200);
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(Put(*client, 1, 0, "x"),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("committed as tid")));
}

TEST_F(ClientTest, EmptyTransactionCommitsARecord) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto txn = client->NewTransaction();
  txn->SetDescription("nothing");
  absl::StatusOr<uint64_t> tid = txn->Commit();
  ASSERT_THAT(tid, IsOk());
  auto last = client->LastTransactions(5);
  ASSERT_THAT(last, IsOk());
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].tid(), *tid);
  EXPECT_EQ((*last)[0].description(), "nothing");
}

TEST_F(ClientTest, TooLargeObjectFailsWithoutContactingTheCluster) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(Put(*client, 1, 0, std::string(kMaxObjectBytes + 1, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(cluster_->master().begin_calls(), 0);
}

TEST_F(ClientTest, CommitFailsWhenClusterNotRunning) {
  StartCluster();
  cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RECOVERING);
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->cluster_state(), ::cellar::v1::CLUSTER_RECOVERING);
  auto tid = Put(*client, 1, 0, "x");
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(tid.status()), "CLUSTER_NOT_RUNNING");
}

TEST_F(ClientTest, LoadVariantsAndNotFound) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto t1 = Put(*client, 4, 0, "one");
  ASSERT_THAT(t1, IsOk());
  auto t2 = Put(*client, 4, *t1, "two");
  ASSERT_THAT(t2, IsOk());

  auto current = client->Load(4);
  ASSERT_THAT(current, IsOk());
  EXPECT_EQ(current->data, "two");
  auto before = client->LoadBefore(4, *t2);
  ASSERT_THAT(before, IsOk());
  EXPECT_EQ(before->data, "one");
  EXPECT_EQ(before->serial, *t1);
  EXPECT_EQ(before->next_serial, *t2);
  auto exact = client->LoadSerial(4, *t1);
  ASSERT_THAT(exact, IsOk());
  EXPECT_EQ(exact->data, "one");

  auto missing = client->Load(12345);
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(missing.status()), "NO_SUCH_OBJECT");
  auto too_early = client->LoadBefore(4, *t1);
  EXPECT_THAT(too_early, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(too_early.status()), "NO_EARLIER_REVISION");
  auto no_revision = client->LoadSerial(4, *t1 + 1);
  EXPECT_EQ(common::ErrorReason(no_revision.status()), "NO_SUCH_REVISION");

  // LoadMany answers the same. The fake storages have no LoadMany
  // (UNIMPLEMENTED), like storages of an older version during a rolling
  // upgrade: the client falls back to Load.
  ASSERT_THAT(Put(*client, 5, 0, "five"), IsOk());
  auto reader = Connect();
  ASSERT_NE(reader, nullptr);
  const auto many = reader->LoadMany({4, 12345, 5, 4});
  ASSERT_EQ(many.size(), 4u);
  EXPECT_EQ(many[0]->data, "two");
  EXPECT_EQ(many[0]->serial, *t2);
  EXPECT_THAT(many[1], StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(many[1].status()), "NO_SUCH_OBJECT");
  EXPECT_EQ(many[2]->data, "five");
  EXPECT_EQ(many[3]->data, "two");
  const auto many_before = reader->LoadManyBefore({4}, *t2);
  ASSERT_THAT(many_before[0], IsOk());
  EXPECT_EQ(many_before[0]->data, "one");
  EXPECT_EQ(many_before[0]->next_serial, *t2);
  EXPECT_THAT(reader->LoadManyBefore({4}, 0)[0], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(reader->LoadMany({}).empty());
}

TEST_F(ClientTest, CacheHitsAndInvalidationsFromAnotherClient) {
  StartCluster();
  auto reader = Connect();
  auto writer = Connect();
  ASSERT_NE(reader, nullptr);
  ASSERT_NE(writer, nullptr);
  auto t1 = Put(*writer, 8, 0, "old");
  ASSERT_THAT(t1, IsOk());
  ASSERT_THAT(reader->Sync(), IsOk());

  absl::Mutex mu;
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>> seen;
  reader->SetInvalidationListener(
      [&](uint64_t tid, const std::vector<uint64_t>& oids) {
        absl::MutexLock lock(&mu);
        seen.emplace_back(tid, oids);
      });

  ASSERT_EQ(reader->Load(8)->data, "old");
  const int loads = cluster_->storage(1).load_calls() +
                    cluster_->storage(2).load_calls();
  ASSERT_EQ(reader->Load(8)->data, "old");  // cached
  EXPECT_EQ(cluster_->storage(1).load_calls() +
                cluster_->storage(2).load_calls(),
            loads);
  EXPECT_GE(reader->stats().cache_hits, 1u);

  auto t2 = Put(*writer, 8, *t1, "new");
  ASSERT_THAT(t2, IsOk());
  ASSERT_THAT(reader->Sync(), IsOk());
  EXPECT_EQ(reader->Load(8)->data, "new");
  // The old revision stays readable from the cache, bounded by t2.
  auto old = reader->LoadBefore(8, *t2);
  ASSERT_THAT(old, IsOk());
  EXPECT_EQ(old->data, "old");
  EXPECT_EQ(old->next_serial, *t2);
  absl::MutexLock lock(&mu);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().first, *t2);
  EXPECT_THAT(seen.back().second, ElementsAre(8u));
}

TEST_F(ClientTest, ChecksumMismatchTriesAnotherReplica) {
  StartCluster();
  ClientOptions options = Options();
  options.cache_bytes = 0;  // every load goes to a storage
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 2, 0, "payload"), IsOk());
  cluster_->storage(1).SetCorruptLoads(true);
  // Round-robin: one of two loads tries S1 first.
  for (int i = 0; i < 2; ++i) {
    auto loaded = client->Load(2);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ(loaded->data, "payload");
  }
  EXPECT_GE(client->stats().checksum_failures, 1u);

  cluster_->storage(2).SetCorruptLoads(true);
  auto lost = client->Load(2);
  EXPECT_THAT(lost, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(common::ErrorReason(lost.status()), "CHECKSUM_MISMATCH");
}

TEST_F(ClientTest, UnavailableReplicaIsSkippedOnRead) {
  StartCluster();
  ClientOptions options = Options();
  options.cache_bytes = 0;
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 2, 0, "payload"), IsOk());
  cluster_->storage(2).SetLoadError(common::ErrorWithReason(
      absl::StatusCode::kUnavailable, common::kReasonNotReadable, "no"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(client->Load(2)->data, "payload");
  EXPECT_THAT(client->History(2), IsOk());
}

// A replica that does not answer is reported to the master (which
// probes it), asynchronously and at most once per interval per storage;
// the load itself is served by the other replica.
TEST_F(ClientTest, UnreachableReplicaIsReportedToTheMasterOncePerInterval) {
  StartCluster();
  ClientOptions options = Options();
  options.cache_bytes = 0;
  options.report_unreachable_interval = absl::Hours(1);
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 2, 0, "payload"), IsOk());
  cluster_->storage(2).SetLoadError(absl::DeadlineExceededError("Deadline Exceeded"));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(client->Load(2)->data, "payload");
  ASSERT_TRUE(cluster_->master().AwaitUnreachableReports(1, absl::Seconds(10)))
      << "no ReportUnreachable reached the master";
  // Round-robin: three of the loads tried S2 first; one report.
  client->Close();
  const auto reports = cluster_->master().unreachable_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].node_id(), 2u);
  EXPECT_EQ(reports[0].reason(), ::cellar::v1::UNREACHABLE_DEADLINE_EXCEEDED);
  EXPECT_EQ(reports[0].reporter_node_id(), client->node_id());
  EXPECT_EQ(client->stats().unreachable_reports, 1u);
  EXPECT_EQ(client->stats().unreachable_reports_failed, 0u);
}

TEST_F(ClientTest, AReplicaThatAnswersAnErrorOrReportingOffIsNotReported) {
  StartCluster();
  ClientOptions options = Options();
  options.cache_bytes = 0;
  options.report_unreachable_interval = absl::ZeroDuration();
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 2, 0, "payload"), IsOk());
  // UNAVAILABLE with a reason: the storage answered, it is up.
  cluster_->storage(2).SetLoadError(common::ErrorWithReason(
      absl::StatusCode::kUnavailable, common::kReasonNotReadable, "no"));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(client->Load(2)->data, "payload");
  options.report_unreachable = false;
  auto quiet = Connect(options);
  ASSERT_NE(quiet, nullptr);
  cluster_->storage(2).SetLoadError(absl::UnavailableError("connection refused"));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(quiet->Load(2)->data, "payload");
  client->Close();
  quiet->Close();
  EXPECT_TRUE(cluster_->master().unreachable_reports().empty());
  EXPECT_EQ(quiet->stats().unreachable_reports, 0u);
}

TEST_F(ClientTest, NoReadableCellIsUnavailable) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  // oid 6 → partition 2: make both its cells non-readable.
  cluster_->master().SetCellState(2, 1, ::cellar::v1::CELL_OUT_OF_DATE);
  cluster_->master().SetCellState(2, 2, ::cellar::v1::CELL_CORRUPTED);
  cluster_->master().AdvanceTid();
  ASSERT_THAT(client->Sync(), IsOk());
  auto loaded = client->Load(6);
  EXPECT_THAT(loaded, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(common::ErrorReason(loaded.status()), "NOT_READABLE");
  // Other partitions are fine.
  EXPECT_THAT(client->Load(5), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ClientTest, PartitionTableGapFetchesTheWholeTable) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  const uint64_t ptid = client->view().table()->ptid();
  cluster_->master().SetCellStateWithGap(1, 1, ::cellar::v1::CELL_OUT_OF_DATE);
  cluster_->master().AdvanceTid();
  ASSERT_THAT(client->Sync(), IsOk());
  EXPECT_EQ(client->view().table()->ptid(), ptid + 2);
  EXPECT_EQ(client->view().table()->CellStateOf(1, 1),
            ::cellar::v1::CELL_OUT_OF_DATE);
}

TEST_F(ClientTest, ReconnectsAfterTheStreamEndsAndClearsTheCache) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 3, 0, "v"), IsOk());
  ASSERT_THAT(client->Load(3), IsOk());
  ASSERT_THAT(client->Load(3), IsOk());
  const ClientStats before = client->stats();
  EXPECT_GE(before.cache_hits, 1u);
  const uint32_t old_id = client->node_id();

  cluster_->master().EndWatchStreams();
  ASSERT_THAT(client->AwaitSession(2, absl::Seconds(10)), IsOk());
  EXPECT_NE(client->node_id(), old_id);
  EXPECT_EQ(cluster_->master().register_calls(), 2);
  EXPECT_EQ(client->stats().reconnects, 1u);
  EXPECT_EQ(client->snapshot(), cluster_->master().last_tid());

  // The cache was cleared: the next load is a miss.
  ASSERT_THAT(client->Load(3), IsOk());
  EXPECT_EQ(client->stats().cache_misses, before.cache_misses + 1);
  // And commits work in the new session.
  auto tid = Put(*client, 3, client->Load(3)->serial, "w");
  ASSERT_THAT(tid, IsOk());
  EXPECT_EQ(cluster_->master().finish_requests().back().node_id(),
            client->node_id());
}

// Across a master restart or failover a commit waits for the next session
// (at most rpc_timeout) instead of failing at once with "not connected".
TEST_F(ClientTest, CommitWithoutASessionWaitsForTheNextOne) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  cluster_->master().SetRegisterError(absl::UnavailableError("master restarting"));
  cluster_->master().EndWatchStreams();
  for (int i = 0; i < 500 && client->connected(); ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_FALSE(client->connected());
  std::atomic<bool> done{false};
  absl::StatusOr<uint64_t> tid;
  std::thread commit([&] {
    tid = Put(*client, 1, 0, "x");
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(done.load()) << "the commit did not wait for a session: " << tid.status();
  cluster_->master().SetRegisterError(absl::OkStatus());
  commit.join();
  EXPECT_THAT(tid, IsOk());
  EXPECT_EQ(client->stats().reconnects, 1u);
}

TEST_F(ClientTest, CommitWithoutASessionFailsAfterRpcTimeout) {
  StartCluster();
  auto client = Connect(ShortRpcTimeout());
  ASSERT_NE(client, nullptr);
  cluster_->master().SetRegisterError(absl::UnavailableError("master restarting"));
  cluster_->master().EndWatchStreams();
  for (int i = 0; i < 500 && client->connected(); ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_FALSE(client->connected());
  const absl::Time start = absl::Now();
  EXPECT_THAT(Put(*client, 1, 0, "x"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not connected")));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
}

TEST_F(ClientTest, CloseEndsTheWatchStream) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(cluster_->master().AwaitOpenWatchStreams(1, absl::Seconds(5)));
  client->Close();
  EXPECT_TRUE(cluster_->master().AwaitOpenWatchStreams(0, absl::Seconds(5)));
  EXPECT_FALSE(client->connected());
  EXPECT_THAT(Put(*client, 1, 0, "x"), StatusIs(absl::StatusCode::kCancelled));
  client->Close();  // idempotent
}

TEST_F(ClientTest, ConcurrentCommitsAndLoads) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      uint64_t serial = 0;
      const uint64_t oid = 100 + t;
      for (int i = 0; i < 10; ++i) {
        auto tid = Put(*client, oid, serial, std::to_string(i));
        if (!tid.ok()) {
          ++failures;
          return;
        }
        serial = *tid;
        auto loaded = client->Load(oid);
        if (!loaded.ok() || loaded->data != std::to_string(i) ||
            loaded->serial != serial) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client->stats().commits, 80u);
}

TEST_F(ClientTest, HistoryAndLastTransactions) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  uint64_t serial = 0;
  std::vector<uint64_t> tids;
  for (int i = 0; i < 3; ++i) {
    auto txn = client->NewTransaction();
    txn->Store(1, serial, "rev" + std::to_string(i));
    txn->SetUser("u" + std::to_string(i));
    auto tid = txn->Commit();
    ASSERT_THAT(tid, IsOk());
    serial = *tid;
    tids.push_back(*tid);
  }
  auto history = client->History(1, 2);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].serial(), tids[2]);
  EXPECT_EQ((*history)[1].serial(), tids[1]);

  // Both storages hold every record: merged without duplicates.
  auto last = client->LastTransactions(2);
  ASSERT_THAT(last, IsOk());
  ASSERT_EQ(last->size(), 2u);
  EXPECT_EQ((*last)[0].tid(), tids[2]);
  EXPECT_EQ((*last)[0].user(), "u2");
  EXPECT_EQ((*last)[0].size_bytes(), 4u);  // "rev2", as the client sent it
  EXPECT_EQ((*last)[1].tid(), tids[1]);

  // A record past the client's snapshot (locked on a storage, not yet
  // published) is not listed.
  cluster_->storage(1).AddTransactionRecord(client->snapshot() + 1000, "unpublished");
  last = client->LastTransactions(2);
  ASSERT_THAT(last, IsOk());
  ASSERT_EQ(last->size(), 2u);
  EXPECT_EQ((*last)[0].tid(), tids[2]);

  cluster_->storage(1).SetAllCallsError(absl::UnavailableError("down"));
  auto partial = client->LastTransactions(10);
  ASSERT_THAT(partial, IsOk());
  EXPECT_EQ(partial->size(), 3u);
}

TEST_F(ClientTest, ClusterInfoAndSync) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto info = client->ClusterInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->cluster_name(), "cellar");
  EXPECT_TRUE(info->operational());
  const uint64_t tid = cluster_->master().AdvanceTid();
  ASSERT_THAT(client->Sync(), IsOk());
  EXPECT_GE(client->snapshot(), tid);
}

// Storages refuse a ttid without the token Begin gave (the fake storages
// check it as real ones do): the client sends it with every Store.
TEST_F(ClientTest, StoresCarryTheTtidTokenOfBegin) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 1, 0, "x"), IsOk());
  for (int id = 1; id <= cluster_->num_storages(); ++id) {
    for (const auto& request : cluster_->storage(id).store_requests()) {
      EXPECT_EQ(request.ttid_token(),
                common::TtidToken(cluster_->master().ttid_key(), request.ttid()));
    }
  }
}

// A storage that took a newer primary's key refuses the transaction's
// stores: the application retries the whole transaction (ABORTED).
TEST_F(ClientTest, StoresRefusedForAnEarlierTermAbortTheTransaction) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  cluster_->storage(1).SetTtidKey(common::NewTtidKey());
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(common::ErrorReason(tid.status()), common::kReasonBadTtidToken);
  EXPECT_TRUE(cluster_->master().finish_requests().empty());
  EXPECT_EQ(cluster_->master().abort_requests().size(), 1u);
}

// A client that commits again uses the ttid its previous Finish handed
// out instead of calling Begin (docs/protocol.md, "Pre-allocated ttids"),
// asking for the next one with each Finish; off, every commit calls Begin.
TEST_F(ClientTest, CommittingAgainUsesTheTtidOfThePreviousFinish) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  for (uint64_t oid = 1; oid <= 3; ++oid) ASSERT_THAT(Put(*client, oid, 0, "x"), IsOk());
  EXPECT_EQ(cluster_->master().begin_calls(), 1);
  EXPECT_EQ(client->stats().preallocated_ttids_used, 2u);
  const auto finishes = cluster_->master().finish_requests();
  ASSERT_EQ(finishes.size(), 3u);
  for (const auto& finish : finishes) EXPECT_TRUE(finish.want_next_ttid());
  // Every store carried a valid token of its ttid (the storages check it).
  for (int id = 1; id <= cluster_->num_storages(); ++id) {
    for (const auto& request : cluster_->storage(id).store_requests()) {
      EXPECT_EQ(request.ttid_token(),
                common::TtidToken(cluster_->master().ttid_key(), request.ttid()));
    }
  }

  ClientOptions off = Options();
  off.preallocate_ttid = false;
  auto plain = Connect(off);
  ASSERT_NE(plain, nullptr);
  for (uint64_t oid = 4; oid <= 5; ++oid) ASSERT_THAT(Put(*plain, oid, 0, "x"), IsOk());
  EXPECT_EQ(cluster_->master().begin_calls(), 3);
  EXPECT_FALSE(cluster_->master().finish_requests().back().want_next_ttid());
}

// A pre-allocated ttid belongs to its session: after the session ends (a
// failover: the storages now hold the new primary's key and refuse the old
// token with BAD_TTID_TOKEN) the next commit calls Begin.
TEST_F(ClientTest, APreallocatedTtidIsNotUsedAfterTheSessionEnds) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 1, 0, "x"), IsOk());
  ASSERT_EQ(cluster_->master().preallocated_ttids(), 1);
  cluster_->master().NewTtidKey();
  cluster_->master().EndWatchStreams();
  ASSERT_THAT(client->AwaitSession(2, absl::Seconds(10)), IsOk());
  EXPECT_THAT(Put(*client, 2, 0, "y"), IsOk());
  EXPECT_EQ(cluster_->master().begin_calls(), 2);
  EXPECT_EQ(client->stats().preallocated_ttids_used, 0u);
  // The new session's own pre-allocated ttid is used as usual.
  EXPECT_THAT(Put(*client, 3, 0, "z"), IsOk());
  EXPECT_EQ(cluster_->master().begin_calls(), 2);
  EXPECT_EQ(client->stats().preallocated_ttids_used, 1u);
}

// While the cluster is not RUNNING a commit goes through Begin (which the
// master holds or refuses), not through the pre-allocated ttid, which is
// kept for the next commit once the cluster runs again.
TEST_F(ClientTest, APreallocatedTtidWaitsWhileTheClusterIsNotRunning) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(Put(*client, 1, 0, "x"), IsOk());
  auto await_state = [&](::cellar::v1::ClusterState state) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (client->cluster_state() != state && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return client->cluster_state() == state;
  };
  cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RECOVERING);
  ASSERT_TRUE(await_state(::cellar::v1::CLUSTER_RECOVERING))
      << "the client never saw the cluster RECOVERING";
  auto tid = Put(*client, 2, 0, "y");
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(tid.status()), "CLUSTER_NOT_RUNNING");
  EXPECT_EQ(cluster_->master().begin_calls(), 2);
  EXPECT_EQ(cluster_->master().finish_requests().size(), 1u);

  cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RUNNING);
  ASSERT_TRUE(await_state(::cellar::v1::CLUSTER_RUNNING))
      << "the client never saw the cluster RUNNING again";
  EXPECT_THAT(Put(*client, 2, 0, "y"), IsOk());
  EXPECT_EQ(cluster_->master().begin_calls(), 2);
  EXPECT_EQ(client->stats().preallocated_ttids_used, 1u);
}

// Semantics rule 6: a new primary still RECOVERING reports last tid 0 (or
// less than it will recover); the client keeps its snapshot and waits for
// the master to catch up (it publishes its recovered last tid, then runs)
// before reads and commits that depend on it.
TEST_F(ClientTest, SnapshotNeverGoesBackwardsOnReconnect) {
  StartCluster();
  auto client = Connect(ShortRpcTimeout());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<uint64_t> tid = Put(*client, 5, 0, "kept");
  ASSERT_THAT(tid, IsOk());
  const uint64_t snapshot = client->snapshot();
  ASSERT_GE(snapshot, *tid);
  ASSERT_THAT(client->Load(5), IsOk());  // cached

  for (uint64_t reported : {uint64_t{0}, snapshot - 1}) {
    SCOPED_TRACE(absl::StrCat("the new master reports last tid ", reported));
    const uint64_t sessions = client->session_count();
    cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RECOVERING);
    cluster_->master().SetReportedLastTid(reported);
    cluster_->master().EndWatchStreams();
    ASSERT_THAT(client->AwaitSession(sessions + 1, absl::Seconds(10)), IsOk());
    EXPECT_EQ(client->snapshot(), snapshot);
    // While the master is behind: a load waits (bounded), never NOT_FOUND;
    // a commit does not begin.
    EXPECT_THAT(client->Load(5), StatusIs(absl::StatusCode::kUnavailable,
                                          HasSubstr("behind")));
    const int begins = cluster_->master().begin_calls();
    EXPECT_THAT(Put(*client, 6, 0, "waits"),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("behind")));
    EXPECT_EQ(cluster_->master().begin_calls(), begins);
    EXPECT_EQ(client->snapshot(), snapshot);

    // The master recovers: its last tid reaches the client as an
    // invalidation of no object (as a new primary publishes it).
    absl::StatusOr<LoadResult> loaded;
    std::thread load([&] { loaded = client->Load(5); });
    cluster_->master().SetReportedLastTid(std::nullopt);
    cluster_->master().PushInvalidation(cluster_->master().last_tid(), {});
    cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RUNNING);
    load.join();
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ(loaded->data, "kept");
    EXPECT_EQ(loaded->serial, *tid);
    EXPECT_GE(client->snapshot(), snapshot);
  }

  // After a Truncate the RUNNING master's last tid stays below the
  // client's snapshot (until the next commit): the client keeps its
  // snapshot, but neither loads nor commits wait for the master.
  const uint64_t kept = client->snapshot();
  cluster_->master().SetReportedLastTid(*tid - 1);
  cluster_->master().EndWatchStreams();
  ASSERT_THAT(client->AwaitSession(4, absl::Seconds(10)), IsOk());
  EXPECT_EQ(client->snapshot(), kept);
  absl::StatusOr<LoadResult> loaded = client->Load(5);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->data, "kept");
  EXPECT_THAT(Put(*client, 6, 0, "after"), IsOk());
}

// Semantics rule 7: OIDs reserved under an old master are not used after a
// failover (a new epoch); a reconnection to the same master keeps them.
TEST_F(ClientTest, OidBatchIsDroppedWhenTheMasterEpochChanges) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->NewOid(), Holds(1u));
  EXPECT_THAT(client->NewOid(), Holds(2u));

  cluster_->master().EndWatchStreams();
  ASSERT_THAT(client->AwaitSession(2, absl::Seconds(10)), IsOk());
  EXPECT_THAT(client->NewOid(), Holds(3u));

  cluster_->master().SetEpoch(2);
  cluster_->master().EndWatchStreams();
  ASSERT_THAT(client->AwaitSession(3, absl::Seconds(10)), IsOk());
  // A new batch from the new master (the fake hands out 101.. next).
  EXPECT_THAT(client->NewOid(), Holds(101u));
  EXPECT_THAT(client->NewOid(), Holds(102u));
}

// Semantics rule 8: an unknown commit outcome is its own answer. Finish
// never answers, or fails UNAVAILABLE after the storages locked; the
// primary, asked, cannot tell (its abort is refused: a final tid was
// picked).
TEST_F(ClientTest, FinishWithoutAVerdictIsOutcomeUnknown) {
  StartCluster();
  auto client = Connect(ShortRpcTimeout());
  ASSERT_NE(client, nullptr);
  size_t aborts = 0;
  for (auto fault : {testing::FakeMaster::FinishFault::kNeverAnswer,
                     testing::FakeMaster::FinishFault::kUnavailableAfterLock}) {
    SCOPED_TRACE(static_cast<int>(fault));
    cluster_->master().SetFinishFault(fault);
    absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
    EXPECT_THAT(tid, StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_EQ(common::ErrorReason(tid.status()), common::kReasonOutcomeUnknown);
    EXPECT_EQ(cluster_->master().abort_requests().size(), ++aborts);
  }
  EXPECT_EQ(client->stats().commits, 0u);
  EXPECT_EQ(client->stats().conflicts, 0u);
}

// A Finish that failed before any lock, whose transaction the master then
// aborts at the client's request, is a known failure (the error as is).
TEST_F(ClientTest, FinishFailedBeforeTheLocksIsAKnownFailure) {
  StartCluster();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  cluster_->master().SetFinishFault(
      testing::FakeMaster::FinishFault::kUnavailableBeforeLock);
  absl::StatusOr<uint64_t> tid = Put(*client, 1, 0, "x");
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(common::ErrorReason(tid.status()), "");
  EXPECT_EQ(cluster_->master().abort_requests().size(), 1u);
  EXPECT_TRUE(cluster_->storage(1).Revisions(1).empty());
}

}  // namespace
}  // namespace cellar::client
