// The storage node over real gRPC: a StorageServer on port 0 with a SQLite
// backend, registered with a FakeMaster that the test drives.

#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <sqlite3.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/fake_clock.h"
#include "services/common/feature_flags.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "services/common/ttid_token.h"
#include "services/storage/backend/sqlite/sqlite_backend.h"
#include "services/storage/storage_server.h"
#include "services/storage/replicator.h"
#include "services/storage/testing/fake_master.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using ::cellar::common::Checksum;
using ::cellar::common::ErrorReason;
using ::cellar::common::FromGrpcStatus;
using ::cellar::common::GetConflict;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::cellar::storage::testing::FakeMaster;
using ::cellar::storage::testing::MemoryBackend;
using ::testing::HasSubstr;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
namespace v1 = ::cellar::v1;

constexpr uint32_t kS1 = 1;  // the first storage id the fake master assigns
constexpr uint32_t kS2 = 2;
constexpr uint32_t kPartitions = 4;
constexpr uint64_t kEpoch = 5;
constexpr absl::Duration kWait = absl::Seconds(20);

// S1 holds partitions 0-2 (UP_TO_DATE); partition 3 lives on S2 only.
v1::PartitionTable Table(uint64_t ptid) {
  v1::PartitionTable pt;
  pt.set_ptid(ptid);
  pt.set_num_partitions(kPartitions);
  pt.set_num_replicas(0);
  for (uint32_t p = 0; p < kPartitions; ++p) {
    auto* row = pt.add_rows();
    row->set_partition(p);
    auto* cell = row->add_cells();
    cell->set_node_id(p < 3 ? kS1 : kS2);
    cell->set_state(v1::CELL_UP_TO_DATE);
  }
  return pt;
}

v1::ObjectToStore Obj(uint64_t oid, uint64_t base, const std::string& data) {
  v1::ObjectToStore o;
  o.set_oid(oid);
  o.set_base_serial(base);
  o.set_data(data);
  o.set_checksum(Checksum(data));
  return o;
}

template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

class StorageServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    auto master = FakeMaster::Start();
    ASSERT_THAT(master, IsOk());
    master_ = *std::move(master);
    master_->SetPartitionTable(Table(3));
    master_->SetEpoch(kEpoch);
    const char* tmp = std::getenv("TEST_TMPDIR");
    db_path_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/",
                            ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                            ".db");
    std::remove(db_path_.c_str());
  }

  void TearDown() override {
    if (storage_ != nullptr) storage_->Shutdown();
    master_->Shutdown();
  }

  // Operator stop tests: the StorageServerOptions::on_shutdown_rpc to use.
  std::function<void(const std::string&)> on_shutdown_rpc_;

  // The test's database file (what StartStorage opens by default).
  SqliteBackend::Options SqliteOptions() const {
    SqliteBackend::Options options;
    options.path = db_path_;
    return options;
  }

  // With no `memory` backend, a SQLite backend on db_path_.
  void StartStorage(const std::string& cluster_name = "cellar",
                    std::unique_ptr<StorageBackend> memory = nullptr) {
    absl::StatusOr<std::unique_ptr<StorageBackend>> backend = std::move(memory);
    if (*backend == nullptr) backend = SqliteBackend::Open(SqliteOptions());
    ASSERT_THAT(backend, IsOk());
    StorageServerOptions options;
    options.master_addresses = {master_->address()};
    options.cluster_name = cluster_name;
    options.max_object_bytes = 1000;
    options.lock_wait_timeout = absl::Seconds(2);
    options.heartbeat_interval = absl::Milliseconds(50);
    options.stats_interval = absl::Milliseconds(50);
    options.on_shutdown_rpc = on_shutdown_rpc_;  // Operator stop tests
    registry_ = std::make_shared<prometheus::Registry>();
    auto storage = StorageServer::Start(options, *std::move(backend), &clock_, registry_);
    ASSERT_THAT(storage, IsOk());
    storage_ = *std::move(storage);
    auto channel = common::MakeChannel(storage_->address());
    stub_ = v1::Storage::NewStub(channel);
    health_ = grpc::health::v1::Health::NewStub(channel);
  }

  void StartServing() {
    ASSERT_NO_FATAL_FAILURE(StartStorage());
    ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
    ASSERT_EQ(storage_->node_id(), kS1);
    // Events pushed from now on reach the node.
    ASSERT_TRUE(master_->WaitForWatchers(1, kWait));
  }

  void RestartStorage() {
    storage_->Shutdown();
    storage_.reset();
    ASSERT_NO_FATAL_FAILURE(StartStorage());
  }

  // Calls a unary Storage rpc with a deadline; returns the absl status.
  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (v1::Storage::Stub::*method)(grpc::ClientContext*,
                                                              const Request&, Response*),
                    const Request& request, Response* response = nullptr) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    Response local;
    return FromGrpcStatus(
        ((*stub_).*method)(&context, request, response != nullptr ? response : &local));
  }

  // The token the primary (the fake master's key) gives with `ttid`.
  std::string Token(uint64_t ttid) const {
    return common::TtidToken(master_->ttid_key(), ttid);
  }

  absl::Status Store(uint64_t ttid, std::vector<v1::ObjectToStore> objects,
                     bool vote = false) {
    return StoreWithToken(ttid, Token(ttid), std::move(objects), vote);
  }
  absl::Status StoreWithToken(uint64_t ttid, const std::string& token,
                              std::vector<v1::ObjectToStore> objects,
                              bool vote = false) {
    v1::StoreRequest r;
    r.set_ttid(ttid);
    r.set_ttid_token(token);
    r.set_client_node_id(common::MakeNodeId(common::NodeKind::kClient, 1));
    for (auto& o : objects) *r.add_objects() = o;
    r.set_vote(vote);
    return Call(&v1::Storage::Stub::Store, r);
  }
  absl::Status Vote(uint64_t ttid, bool metadata) {
    return VoteWithToken(ttid, Token(ttid), metadata);
  }
  absl::Status VoteWithToken(uint64_t ttid, const std::string& token, bool metadata) {
    v1::VoteRequest r;
    r.set_ttid(ttid);
    r.set_ttid_token(token);
    if (metadata) {
      r.mutable_metadata()->set_user("alice");
      r.mutable_metadata()->set_description("a test");
      r.mutable_metadata()->set_size_bytes(ttid * 10);
    }
    return Call(&v1::Storage::Stub::Vote, r);
  }
  absl::Status Lock(uint64_t ttid, uint64_t tid, uint64_t epoch = kEpoch) {
    v1::LockTransactionRequest r;
    r.set_epoch(epoch);
    r.set_ttid(ttid);
    r.set_tid(tid);
    return Call(&v1::Storage::Stub::LockTransaction, r);
  }
  absl::Status Unlock(uint64_t ttid, uint64_t tid, uint64_t epoch = kEpoch,
                      bool forget_lock = false) {
    v1::UnlockTransactionRequest r;
    r.set_epoch(epoch);
    r.set_ttid(ttid);
    r.set_tid(tid);
    r.set_forget_lock(forget_lock);
    return Call(&v1::Storage::Stub::UnlockTransaction, r);
  }
  absl::Status LockAt(uint64_t ttid, uint64_t tid, uint64_t min_ptid) {
    v1::LockTransactionRequest r;
    r.set_epoch(kEpoch);
    r.set_ttid(ttid);
    r.set_tid(tid);
    r.set_min_ptid(min_ptid);
    return Call(&v1::Storage::Stub::LockTransaction, r);
  }
  v1::GetTransactionOutcomeResponse Outcome(uint64_t ttid) {
    v1::GetTransactionOutcomeRequest r;
    r.set_ttid(ttid);
    v1::GetTransactionOutcomeResponse response;
    EXPECT_THAT(Call(&v1::Storage::Stub::GetTransactionOutcome, r, &response), IsOk());
    return response;
  }
  static v1::ReplicateRequest ReplicateRequest(uint32_t partition, uint64_t min_tid,
                                               uint64_t max_tid, uint32_t max_records) {
    v1::ReplicateRequest request;
    request.set_partition(partition);
    request.set_min_tid(min_tid);
    request.set_max_tid(max_tid);
    request.set_max_records(max_records);
    return request;
  }

  // Storage.Replicate into `chunks`; the stream's status.
  absl::Status Replicate(const v1::ReplicateRequest& request,
                         std::vector<v1::ReplicateChunk>* chunks) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    auto reader = stub_->Replicate(&context, request);
    v1::ReplicateChunk chunk;
    while (reader->Read(&chunk)) chunks->push_back(chunk);
    return FromGrpcStatus(reader->Finish());
  }
  // A client's abort (epoch 0) carries the ttid's token.
  absl::Status Abort(uint64_t ttid, uint64_t epoch = 0) {
    return AbortWithToken(ttid, epoch == 0 ? Token(ttid) : "", epoch);
  }
  absl::Status AbortWithToken(uint64_t ttid, const std::string& token,
                              uint64_t epoch = 0) {
    v1::AbortTransactionRequest r;
    r.set_ttid(ttid);
    r.set_epoch(epoch);
    r.set_ttid_token(token);
    return Call(&v1::Storage::Stub::AbortTransaction, r);
  }
  absl::Status LoadBefore(uint64_t oid, uint64_t before, v1::LoadResponse* out = nullptr) {
    v1::LoadRequest r;
    r.set_oid(oid);
    r.set_before_tid(before);
    return Call(&v1::Storage::Stub::Load, r, out);
  }
  absl::Status LoadSerial(uint64_t oid, uint64_t serial, v1::LoadResponse* out = nullptr) {
    v1::LoadRequest r;
    r.set_oid(oid);
    r.set_serial(serial);
    return Call(&v1::Storage::Stub::Load, r, out);
  }
  // Commits `objects` in one transaction (ttid, tid) with metadata.
  void Commit(uint64_t ttid, uint64_t tid, std::vector<v1::ObjectToStore> objects) {
    ASSERT_THAT(Store(ttid, std::move(objects)), IsOk());
    ASSERT_THAT(Vote(ttid, true), IsOk());
    ASSERT_THAT(Lock(ttid, tid), IsOk());
    ASSERT_THAT(Unlock(ttid, tid), IsOk());
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health(
      const std::string& service = "cellar.v1.Storage") {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = health_->Check(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  v1::GetNodeStatusResponse NodeStatus() {
    v1::GetNodeStatusResponse response;
    EXPECT_THAT(Call(&v1::Storage::Stub::GetNodeStatus, v1::GetNodeStatusRequest(),
                     &response),
                IsOk());
    return response;
  }

  // The value of counter or gauge `name` (with a label of value
  // `label_value`, if given), -1 if none.
  double MetricValue(const std::string& name, const std::string& label_value = "") {
    for (const auto& family : registry_->Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        bool match = label_value.empty();
        for (const auto& l : m.label) match = match || l.value == label_value;
        if (!match) continue;
        if (family.type == prometheus::MetricType::Counter) return m.counter.value;
        if (family.type == prometheus::MetricType::Gauge) return m.gauge.value;
      }
    }
    return -1.0;
  }

  common::FakeClock clock_;
  std::unique_ptr<FakeMaster> master_;
  std::string db_path_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<StorageServer> storage_;
  std::unique_ptr<v1::Storage::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(StorageServiceTest, ServesOnlyOnceTheClusterRuns) {
  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(StartStorage());
  ASSERT_TRUE(master_->WaitForWatchers(1, kWait));
  EXPECT_THAT(storage_->WaitUntilServing(absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("CLUSTER_RECOVERING")));
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(storage_->node_id(), kS1);

  v1::ClusterEvent running;
  running.set_cluster_state(v1::CLUSTER_RUNNING);
  master_->Push(running);
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  // The health follows the node's state right after it changes.
  EXPECT_TRUE(
      WaitFor([&] { return Health() == grpc::health::v1::HealthCheckResponse::SERVING; }));

  v1::ClusterEvent recovering;
  recovering.set_cluster_state(v1::CLUSTER_RECOVERING);
  master_->Push(recovering);
  EXPECT_TRUE(WaitFor([&] {
    return Health() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  }));
}

// Readiness for rolling updates: serving and every cell of this node
// caught up. A storage with an OUT_OF_DATE cell serves but is not ready.
TEST_F(StorageServiceTest, ReadyMeansServingWithEveryCellCaughtUp) {
  using grpc::health::v1::HealthCheckResponse;
  ASSERT_NO_FATAL_FAILURE(StartServing());
  EXPECT_TRUE(WaitFor([&] {
    return Health("cellar.v1.Storage.Ready") == HealthCheckResponse::SERVING;
  }));
  v1::PartitionTable behind = Table(4);
  behind.mutable_rows(1)->mutable_cells(0)->set_state(v1::CELL_OUT_OF_DATE);
  master_->SetPartitionTable(behind);
  v1::ClusterEvent event;
  *event.mutable_partition_table() = behind;
  master_->Push(event);
  EXPECT_TRUE(WaitFor([&] {
    return Health("cellar.v1.Storage.Ready") == HealthCheckResponse::NOT_SERVING;
  }));
  EXPECT_EQ(Health(), HealthCheckResponse::SERVING);
  v1::PartitionTable caught_up = Table(5);
  master_->SetPartitionTable(caught_up);
  *event.mutable_partition_table() = caught_up;
  master_->Push(event);
  EXPECT_TRUE(WaitFor([&] {
    return Health("cellar.v1.Storage.Ready") == HealthCheckResponse::SERVING;
  }));
}

TEST_F(StorageServiceTest, RegistersWithItsIdentity) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::RegisterNodeRequest r = master_->last_registration();
  EXPECT_EQ(r.cluster_name(), "cellar");
  EXPECT_EQ(r.protocol_version(), v1::PROTOCOL_VERSION_1);
  EXPECT_EQ(r.role(), v1::NODE_ROLE_STORAGE);
  EXPECT_EQ(r.address(), storage_->address());
  EXPECT_EQ(r.node_id(), 0u) << "a new node asks for an id";
  EXPECT_EQ(r.partition_table().ptid(), 0u);
  EXPECT_EQ(r.track(), "stable");
  EXPECT_EQ(r.version(), "0.1.0");
}

TEST_F(StorageServiceTest, CommitThenRead) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  const uint64_t ttid = 1000, tid = 1004;  // same partition (0)
  v1::StoreRequest store;
  store.set_ttid(ttid);
  store.set_ttid_token(Token(ttid));
  *store.add_objects() = Obj(1, 0, "one");
  *store.add_objects() = Obj(2, 0, "two");
  store.set_vote(true);
  store.mutable_metadata()->set_user("bob");
  store.mutable_metadata()->add_oids(1);
  store.mutable_metadata()->add_oids(2);
  store.mutable_metadata()->set_size_bytes(6);
  v1::StoreResponse store_response;
  ASSERT_THAT(Call(&v1::Storage::Stub::Store, store, &store_response), IsOk());
  EXPECT_TRUE(store_response.voted());
  EXPECT_EQ(NodeStatus().open_transactions(), 1u);
  ASSERT_THAT(Lock(ttid, tid), IsOk());
  EXPECT_THAT(Lock(ttid, tid), IsOk()) << "idempotent";
  EXPECT_THAT(Abort(ttid), StatusIs(absl::StatusCode::kFailedPrecondition));

  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.oid(), 1u);
  EXPECT_EQ(loaded.serial(), tid);
  EXPECT_EQ(loaded.next_serial(), 0u);
  EXPECT_EQ(loaded.data(), "one");
  EXPECT_EQ(loaded.checksum(), Checksum("one"));
  ASSERT_THAT(LoadSerial(2, tid, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "two");
  ASSERT_THAT(Unlock(ttid, tid), IsOk());
  EXPECT_THAT(Unlock(ttid, tid), IsOk()) << "idempotent";

  // A second revision of oid 1.
  Commit(2001, 2005, {Obj(1, tid, "one v2")});
  ASSERT_THAT(LoadBefore(1, 2005, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "one");
  EXPECT_EQ(loaded.next_serial(), 2005u);

  v1::HistoryRequest history;
  history.set_oid(1);
  v1::HistoryResponse h;
  ASSERT_THAT(Call(&v1::Storage::Stub::History, history, &h), IsOk());
  ASSERT_EQ(h.revisions_size(), 2);
  EXPECT_EQ(h.revisions(0).serial(), 2005u);
  EXPECT_EQ(h.revisions(1).serial(), tid);
  EXPECT_EQ(h.revisions(1).size_bytes(), 3u);

  v1::LastTransactionsRequest last;
  v1::LastTransactionsResponse l;
  ASSERT_THAT(Call(&v1::Storage::Stub::LastTransactions, last, &l), IsOk());
  ASSERT_EQ(l.transactions_size(), 2);
  EXPECT_EQ(l.transactions(0).tid(), 2005u);
  EXPECT_EQ(l.transactions(1).tid(), tid);
  EXPECT_EQ(l.transactions(1).ttid(), ttid);
  EXPECT_EQ(l.transactions(1).user(), "bob");
  EXPECT_EQ(l.transactions(1).size_bytes(), 6u);  // as the vote said
  last.set_before_tid(2005);
  ASSERT_THAT(Call(&v1::Storage::Stub::LastTransactions, last, &l), IsOk());
  ASSERT_EQ(l.transactions_size(), 1);

  v1::GetNodeStatusResponse status = NodeStatus();
  EXPECT_EQ(status.node_id(), kS1);
  EXPECT_EQ(status.ptid(), 3u);
  EXPECT_EQ(status.last_tid(), 2005u);
  EXPECT_EQ(status.last_oid(), 2u);
  EXPECT_EQ(status.backend(), "sqlite");
  EXPECT_EQ(status.object_count(), 3u);
  EXPECT_EQ(status.transaction_count(), 2u);
  EXPECT_EQ(status.open_transactions(), 0u);
  EXPECT_EQ(status.cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_EQ(status.master_link(), "registered");
  // Health inputs of the admin's alerts: no backend error, the volume of
  // the SQLite file (the test's temp dir), the node's (fake) clock.
  ASSERT_TRUE(status.has_backend_errors_total());
  EXPECT_EQ(status.backend_errors_total(), 0u);
  ASSERT_TRUE(status.has_disk_total_bytes());
  ASSERT_TRUE(status.has_disk_free_bytes());
  EXPECT_GT(status.disk_total_bytes(), 0u);
  EXPECT_LE(status.disk_free_bytes(), status.disk_total_bytes());
  EXPECT_EQ(status.unix_time_ms(), absl::ToUnixMillis(clock_.Now()));
  // What the admin polls: the same without the counts (no scan).
  v1::GetNodeStatusRequest health_only;
  health_only.set_health_only(true);
  v1::GetNodeStatusResponse health;
  ASSERT_THAT(Call(&v1::Storage::Stub::GetNodeStatus, health_only, &health), IsOk());
  EXPECT_EQ(health.node_id(), kS1);
  EXPECT_EQ(health.object_count(), 0u);
  EXPECT_EQ(health.last_tid(), 0u);
  EXPECT_TRUE(health.has_backend_errors_total());
  EXPECT_TRUE(health.has_disk_total_bytes());
  EXPECT_EQ(health.unix_time_ms(), status.unix_time_ms());
}

TEST_F(StorageServiceTest, ConflictDetailCrossesTheWire) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(5, 0, "v1")});
  absl::Status s = Store(2000, {Obj(5, 0, "v2")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "CONFLICT");
  auto conflict = GetConflict(s);
  ASSERT_TRUE(conflict.has_value());
  EXPECT_EQ(conflict->oid, 5u);
  EXPECT_EQ(conflict->current_serial, 1004u);
  EXPECT_EQ(conflict->base_serial, 0u);
  EXPECT_THAT(Store(2000, {Obj(5, 1004, "v2")}), IsOk());
}

TEST_F(StorageServiceTest, CommitPathErrors) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::ObjectToStore bad = Obj(1, 0, "data");
  bad.set_checksum(Checksum("other"));
  absl::Status s = Store(1000, {bad});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(ErrorReason(s), "CHECKSUM_MISMATCH");

  s = Store(1000, {Obj(1, 0, std::string(1001, 'x'))});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ErrorReason(s), "TOO_LARGE");

  s = Vote(1234, false);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "UNKNOWN_TRANSACTION");

  s = Lock(1234, 1238);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "UNKNOWN_TRANSACTION");

  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  s = Store(2000, {Obj(1, 0, "y")});  // younger wants the older's lock
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION");
  ASSERT_THAT(Abort(1000), IsOk());
  EXPECT_THAT(Abort(1000), IsOk());
  EXPECT_THAT(Abort(987654), IsOk()) << "abort works for any ttid";
  s = Store(1000, {Obj(2, 0, "z")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(s), "UNKNOWN_TRANSACTION");
  EXPECT_THAT(Store(2000, {Obj(1, 0, "y")}), IsOk()) << "the abort released the lock";
}

TEST_F(StorageServiceTest, OlderStoreWaitsThenGivesUpAsLockContention) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(2000, {Obj(1, 0, "young")}), IsOk());
  // The older transaction waits (lock_wait_timeout is 2 s here), then is
  // told to retry: ABORTED, not DEADLINE_EXCEEDED, which a client takes
  // for an unreachable node (and commits without it).
  absl::Status s = Store(1000, {Obj(1, 0, "old")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION");
  // Also when the client's own deadline is the shorter one: the answer
  // comes before it.
  v1::StoreRequest r;
  r.set_ttid(1000);
  r.set_ttid_token(Token(1000));
  r.set_client_node_id(common::MakeNodeId(common::NodeKind::kClient, 1));
  *r.add_objects() = Obj(1, 0, "old");
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Milliseconds(500));
  v1::StoreResponse response;
  s = FromGrpcStatus(stub_->Store(&context, r, &response));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION");
}

v1::ObjectToStore Check(uint64_t oid, uint64_t serial) {
  v1::ObjectToStore o;
  o.set_oid(oid);
  o.set_base_serial(serial);
  o.set_check_only(true);
  return o;
}

TEST_F(StorageServiceTest, ReadCurrentCheckLocksUntilTheEndAndStoresNothing) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "one")});
  // A stale serial is a conflict naming the current one.
  absl::Status s = Store(2000, {Check(1, 999)});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "CONFLICT");
  ASSERT_THAT(Abort(2000), IsOk());
  // Malformed checks change nothing.
  v1::ObjectToStore with_data = Check(1, 1004);
  with_data.set_data("x");
  EXPECT_THAT(Store(2100, {with_data}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Store(2100, {Check(1, 0)}), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(Abort(2100), IsOk());

  // The current serial: checked and locked until the transaction ends.
  ASSERT_THAT(Store(3000, {Check(1, 1004), Obj(2, 0, "two")}), IsOk());
  ASSERT_THAT(Vote(3000, true), IsOk());
  s = Store(4000, {Obj(1, 1004, "a younger writer")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION") << "the check holds the object's lock";
  ASSERT_THAT(Abort(4000), IsOk());
  ASSERT_THAT(Lock(3000, 3004), IsOk());
  ASSERT_THAT(Unlock(3000, 3004), IsOk());
  // Nothing was written for the checked object; the stored one is there.
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.serial(), 1004u);
  EXPECT_EQ(loaded.data(), "one");
  EXPECT_THAT(LoadSerial(1, 3004, &loaded), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(LoadBefore(2, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.serial(), 3004u);
  // The lock is released at the end: a writer on the current serial commits.
  Commit(5000, 5004, {Obj(1, 1004, "after")});
}

TEST_F(StorageServiceTest, NotFoundReasons) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  absl::Status s = LoadBefore(1, common::kMaxTid);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "NO_SUCH_OBJECT");
  Commit(1000, 1004, {Obj(1, 0, "v1")});
  s = LoadBefore(1, 1004);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "NO_EARLIER_REVISION");
  s = LoadSerial(1, 1003);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "NO_SUCH_REVISION");
  v1::HistoryRequest history;
  history.set_oid(9);
  s = Call(&v1::Storage::Stub::History, history);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "NO_SUCH_OBJECT");
}

// Storage.Pack: validated and fenced; the pack runs in the background,
// loads of the revisions it removed say REVISION_PACKED (also after a
// restart), later ones answer as before, and the metrics count it.
TEST_F(StorageServiceTest, PackRemovesOldRevisionsAndSaysSo) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "a")});
  Commit(2000, 2004, {Obj(1, 1004, "b")});
  Commit(3000, 3004, {Obj(1, 2004, "c")});
  auto pack = [this](uint64_t epoch, uint64_t tid, v1::StoragePackResponse* out = nullptr) {
    v1::StoragePackRequest request;
    request.set_epoch(epoch);
    request.set_pack_tid(tid);
    return Call(&v1::Storage::Stub::Pack, request, out);
  };
  EXPECT_THAT(pack(0, 2005), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(pack(kEpoch, common::kMaxTid + 1), StatusIs(absl::StatusCode::kInvalidArgument));
  absl::Status stale = pack(kEpoch - 1, 2005);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(stale), "STALE_EPOCH");
  v1::StoragePackResponse progress;
  ASSERT_THAT(pack(kEpoch, 0, &progress), IsOk());
  EXPECT_EQ(progress.progress().pack_tid(), 0u) << "a read of the progress asked for a pack";

  ASSERT_THAT(pack(kEpoch, 2005, &progress), IsOk());
  EXPECT_EQ(progress.progress().pack_tid(), 2005u);
  absl::Time deadline = absl::Now() + kWait;
  while (progress.progress().pending_partitions_size() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    ASSERT_THAT(pack(kEpoch, 0, &progress), IsOk());
  }
  ASSERT_EQ(progress.progress().pending_partitions_size(), 0) << "the pack did not finish in time";
  EXPECT_GT(progress.progress().done_partitions_size(), 0);
  EXPECT_EQ(progress.progress().rows_removed(), 1u);
  EXPECT_EQ(progress.progress().bytes_removed(), 1u);
  EXPECT_EQ(MetricValue("cellar_storage_pack_rows_removed_total"), 1.0);
  EXPECT_EQ(MetricValue("cellar_storage_pack_bytes_reclaimed_total"), 1.0);
  EXPECT_EQ(MetricValue("cellar_storage_pack_tid"), 2005.0);
  EXPECT_EQ(MetricValue("cellar_storage_pack_tid_seconds"),
            absl::ToDoubleSeconds(common::TimeFromTid(2005) - absl::UnixEpoch()));
  // A lower tid changes nothing.
  ASSERT_THAT(pack(kEpoch, 1005, &progress), IsOk());
  EXPECT_EQ(progress.progress().pack_tid(), 2005u);

  for (int restarted = 0; restarted < 2; ++restarted) {
    absl::Status s = LoadSerial(1, 1004);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound, HasSubstr("packed")));
    EXPECT_EQ(ErrorReason(s), "REVISION_PACKED") << "restarted " << restarted;
    s = LoadBefore(1, 2004);
    EXPECT_EQ(ErrorReason(s), "REVISION_PACKED") << "restarted " << restarted;
    v1::LoadResponse loaded;
    ASSERT_THAT(LoadBefore(1, 2005, &loaded), IsOk());
    EXPECT_EQ(loaded.data(), "b");
    EXPECT_EQ(loaded.next_serial(), 3004u);
    ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
    EXPECT_EQ(loaded.data(), "c");
    // A serial nothing wrote, above the pack tid: the usual reason.
    EXPECT_EQ(ErrorReason(LoadSerial(1, 3003)), "NO_SUCH_REVISION");
    if (restarted == 0) {
      ASSERT_NO_FATAL_FAILURE(RestartStorage());
      ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
    }
  }
  ASSERT_THAT(pack(kEpoch, 0, &progress), IsOk());
  EXPECT_EQ(progress.progress().pack_tid(), 2005u) << "the request was not persisted";
}

TEST_F(StorageServiceTest, GetTransactionByTid) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "one"), Obj(2, 0, "two")});  // partition 0
  Commit(1001, 1005, {Obj(1, 1004, "uno")});                 // partition 1
  v1::GetTransactionRequest request;
  v1::GetTransactionResponse response;
  request.set_tid(1005);
  ASSERT_THAT(Call(&v1::Storage::Stub::GetTransaction, request, &response), IsOk());
  EXPECT_EQ(response.transaction().tid(), 1005u);
  EXPECT_EQ(response.transaction().ttid(), 1001u);
  EXPECT_EQ(response.transaction().user(), "alice");
  EXPECT_EQ(response.transaction().description(), "a test");
  EXPECT_EQ(response.transaction().size_bytes(), 10010u);
  request.set_tid(1004);
  ASSERT_THAT(Call(&v1::Storage::Stub::GetTransaction, request, &response), IsOk());
  EXPECT_EQ(response.transaction().ttid(), 1000u);

  // A tid nothing committed with, in a partition readable here; the ttid
  // is not a tid.
  for (uint64_t tid : {1008, 1000}) {
    request.set_tid(tid);
    absl::Status s = Call(&v1::Storage::Stub::GetTransaction, request);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound,
                            HasSubstr(absl::StrCat("no committed transaction ",
                                                   common::TidHex(tid)))));
    EXPECT_EQ(ErrorReason(s), "NO_SUCH_TRANSACTION");
  }
  // Partition 3 is S2's: ask a storage that has it.
  request.set_tid(1007);
  absl::Status s = Call(&v1::Storage::Stub::GetTransaction, request);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("partition 3")));
  EXPECT_EQ(ErrorReason(s), "NOT_READABLE");
  for (uint64_t tid : {uint64_t{0}, common::kMaxTid + 1}) {
    request.set_tid(tid);
    EXPECT_THAT(Call(&v1::Storage::Stub::GetTransaction, request),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tid")));
  }
}

TEST_F(StorageServiceTest, ScanTransactionsPagesTheAskedPartitionsInTidOrder) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "one")});     // record in partition 0
  Commit(1001, 1005, {Obj(2, 0, "two")});     // partition 1
  Commit(1002, 1006, {Obj(6, 0, "six")});     // partition 2
  Commit(2000, 2004, {Obj(1, 1004, "uno")});  // partition 0
  Commit(2001, 2005, {Obj(2, 1005, "dos")});  // partition 1
  auto scan = [&](std::vector<uint32_t> partitions, uint64_t min_tid, uint64_t max_tid,
                  uint32_t limit, v1::ScanTransactionsResponse* out) {
    v1::ScanTransactionsRequest request;
    for (uint32_t p : partitions) request.add_partitions(p);
    request.set_min_tid(min_tid);
    request.set_max_tid(max_tid);
    request.set_limit(limit);
    out->Clear();
    return Call(&v1::Storage::Stub::ScanTransactions, request, out);
  };
  auto tids = [](const v1::ScanTransactionsResponse& r) {
    std::vector<uint64_t> out;
    for (const v1::TransactionInfo& t : r.transactions()) out.push_back(t.tid());
    return out;
  };
  v1::ScanTransactionsResponse page;
  ASSERT_THAT(scan({0, 1, 2}, 0, common::kMaxTid, 0, &page), IsOk());
  EXPECT_THAT(tids(page), ElementsAre(1004, 1005, 1006, 2004, 2005));
  EXPECT_EQ(page.next_min_tid(), 0u);
  EXPECT_EQ(page.transactions(1).ttid(), 1001u);
  EXPECT_EQ(page.transactions(1).user(), "alice");
  EXPECT_EQ(page.transactions(1).description(), "a test");
  EXPECT_EQ(page.transactions(1).size_bytes(), 10010u);
  // Pages of 2 records read: the other partitions' records are skipped but
  // counted, so a page may be short and not the last.
  ASSERT_THAT(scan({0, 2}, 0, common::kMaxTid, 2, &page), IsOk());
  EXPECT_THAT(tids(page), ElementsAre(1004));
  EXPECT_EQ(page.next_min_tid(), 1006u);
  ASSERT_THAT(scan({0, 2}, 1006, common::kMaxTid, 2, &page), IsOk());
  EXPECT_THAT(tids(page), ElementsAre(1006, 2004));
  EXPECT_EQ(page.next_min_tid(), 2005u);
  ASSERT_THAT(scan({2, 0, 2}, 2005, common::kMaxTid, 2, &page), IsOk());
  EXPECT_THAT(tids(page), IsEmpty());
  EXPECT_EQ(page.next_min_tid(), 0u);
  // max_tid is inclusive, and a full page ending on it is the last.
  ASSERT_THAT(scan({0, 1, 2}, 1006, 2004, 2, &page), IsOk());
  EXPECT_THAT(tids(page), ElementsAre(1006, 2004));
  EXPECT_EQ(page.next_min_tid(), 0u);

  // Partition 3 is S2's: ask a storage that has it.
  absl::Status s = scan({0, 3}, 0, common::kMaxTid, 10, &page);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("partition 3")));
  EXPECT_EQ(ErrorReason(s), "NOT_READABLE");
  EXPECT_THAT(scan({4}, 0, common::kMaxTid, 10, &page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("partitions")));
  EXPECT_THAT(scan({}, 0, common::kMaxTid, 10, &page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("partitions")));
  EXPECT_THAT(scan({0}, 0, 0, 10, &page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tid")));
  EXPECT_THAT(scan({0}, 0, common::kMaxTid + 1, 10, &page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tid")));
  EXPECT_THAT(scan({0}, 2005, 2004, 10, &page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_tid")));
  EXPECT_THAT(scan({0}, 0, common::kMaxTid, 1001, &page),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

TEST_F(StorageServiceTest, ADeletedObjectLoadsAsNotFound) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "v1")});
  Commit(2000, 2004, {Obj(1, 1004, "")});  // empty data, no data_serial: deleted
  absl::Status s = LoadBefore(1, common::kMaxTid);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound,
                          HasSubstr("object 0x1 was deleted by transaction")));
  EXPECT_EQ(ErrorReason(s), "OBJECT_DELETED");
  s = LoadSerial(1, 2004);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ErrorReason(s), "OBJECT_DELETED");
  v1::LoadManyRequest many;
  many.add_oids(1);
  many.set_before_tid(common::kMaxTid);
  v1::LoadManyResponse results;
  ASSERT_THAT(Call(&v1::Storage::Stub::LoadMany, many, &results), IsOk());
  ASSERT_EQ(results.results_size(), 1);
  EXPECT_EQ(results.results(0).code(), static_cast<uint32_t>(absl::StatusCode::kNotFound));
  EXPECT_EQ(results.results(0).reason(), "OBJECT_DELETED");
  // Before the deletion the object is there; after, it can be created again.
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, 2004, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "v1");
  EXPECT_EQ(loaded.next_serial(), 2004u);
  Commit(3000, 3004, {Obj(1, 2004, "again")});
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "again");
}

TEST_F(StorageServiceTest, PartitionStatsPerCellAndTheirGauges) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(0, 0, "zero"), Obj(4, 0, "four"), Obj(1, 0, "one")});
  Commit(2000, 2004, {Obj(4, 1004, "")});  // oid 4 deleted
  v1::GetPartitionStatsResponse response;
  ASSERT_THAT(Call(&v1::Storage::Stub::GetPartitionStats, v1::GetPartitionStatsRequest(),
                   &response),
              IsOk());
  EXPECT_EQ(response.ptid(), 3u);
  ASSERT_EQ(response.partitions_size(), 3);  // S1's cells: partitions 0-2
  const v1::PartitionStats& p0 = response.partitions(0);
  EXPECT_EQ(p0.partition(), 0u);
  EXPECT_TRUE(p0.readable());
  EXPECT_EQ(p0.objects(), 1u);
  EXPECT_EQ(p0.revisions(), 3u);
  EXPECT_EQ(p0.bytes(), 8u);
  EXPECT_EQ(response.partitions(1).partition(), 1u);
  EXPECT_EQ(response.partitions(1).objects(), 1u);
  EXPECT_EQ(response.partitions(1).bytes(), 3u);
  EXPECT_EQ(response.partitions(2).partition(), 2u);
  EXPECT_EQ(response.partitions(2).revisions(), 0u);
  // The gauges follow (refreshed every 50 ms here).
  EXPECT_TRUE(WaitFor([&] { return MetricValue("cellar_storage_revisions", "0") == 3.0; }))
      << MetricValue("cellar_storage_revisions", "0");
  EXPECT_EQ(MetricValue("cellar_storage_objects", "0"), 1.0);
  EXPECT_EQ(MetricValue("cellar_storage_bytes", "0"), 8.0);
  EXPECT_EQ(MetricValue("cellar_storage_bytes", "1"), 3.0);
  EXPECT_EQ(MetricValue("cellar_storage_objects", "3"), -1.0) << "not a cell of S1";
}

TEST_F(StorageServiceTest, NotReadableForAPartitionItDoesNotHold) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  absl::Status s = LoadBefore(3, common::kMaxTid);  // partition 3: S2's
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("partition 3")));
  EXPECT_EQ(ErrorReason(s), "NOT_READABLE");
  s = Store(1000, {Obj(7, 0, "x")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable,
                          HasSubstr("node S1 holds no writable cell of partition 3")));
  v1::HistoryRequest history;
  history.set_oid(11);
  EXPECT_THAT(Call(&v1::Storage::Stub::History, history),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(StorageServiceTest, PartitionTableDeltasAndGaps) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  // Delta 4: S1 gets an OUT_OF_DATE cell of partition 3: writable, not readable.
  v1::ClusterEvent event;
  auto* delta = event.mutable_partition_table_delta();
  delta->set_ptid(4);
  auto* change = delta->add_changes();
  change->set_partition(3);
  change->set_node_id(kS1);
  change->set_state(v1::CELL_OUT_OF_DATE);
  master_->Push(event);
  ASSERT_TRUE(WaitFor([&] { return storage_->node().partition_table()->ptid() == 4; }));
  EXPECT_THAT(LoadBefore(3, common::kMaxTid), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(Store(1000, {Obj(3, 0, "x")}), IsOk());

  // A gap (ptid 7 after 4): the node re-fetches the whole table.
  v1::PartitionTable table = Table(6);
  table.mutable_rows(3)->add_cells()->set_node_id(kS1);
  table.mutable_rows(3)->mutable_cells(1)->set_state(v1::CELL_UP_TO_DATE);
  master_->SetPartitionTable(table);
  v1::ClusterEvent gap;
  gap.mutable_partition_table_delta()->set_ptid(7);
  master_->Push(gap);
  ASSERT_TRUE(WaitFor([&] { return storage_->node().partition_table()->ptid() == 6; }));
  EXPECT_THAT(LoadBefore(3, common::kMaxTid), StatusIs(absl::StatusCode::kNotFound))
      << "partition 3 is readable now";
  EXPECT_EQ(NodeStatus().ptid(), 6u);

  // A whole table.
  v1::ClusterEvent whole;
  *whole.mutable_partition_table() = Table(8);
  master_->Push(whole);
  ASSERT_TRUE(WaitFor([&] { return storage_->node().partition_table()->ptid() == 8; }));
  EXPECT_THAT(LoadBefore(3, common::kMaxTid), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(StorageServiceTest, StaleEpochIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  ASSERT_THAT(Vote(1000, true), IsOk());
  absl::Status s = Lock(1000, 1004, kEpoch - 1);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(s), "STALE_EPOCH");
  s = Unlock(1000, 1004, kEpoch - 1);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(s), "STALE_EPOCH");
  // A newer primary's epoch is accepted, and fences the old one.
  ASSERT_THAT(Lock(1000, 1004, kEpoch + 1), IsOk());
  EXPECT_EQ(ErrorReason(Unlock(1000, 1004, kEpoch)), "STALE_EPOCH");
  EXPECT_THAT(Unlock(1000, 1004, kEpoch + 1), IsOk());

  // Aborts are fenced too (a deposed primary cannot drop a vote the new
  // one may still commit); epoch 0 is an unfenced abort.
  ASSERT_THAT(Store(2000, {Obj(2, 0, "y")}), IsOk());
  ASSERT_THAT(Vote(2000, true), IsOk());
  absl::Status stale = Abort(2000, kEpoch);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(stale), "STALE_EPOCH");
  ASSERT_THAT(Lock(2000, 2004, kEpoch + 1), IsOk()) << "the stale abort dropped the vote";
  ASSERT_THAT(Unlock(2000, 2004, kEpoch + 1), IsOk());
  ASSERT_THAT(Store(3000, {Obj(2, 2004, "z")}), IsOk());
  EXPECT_THAT(Abort(3000, kEpoch + 1), IsOk());
  ASSERT_THAT(Store(3008, {Obj(2, 2004, "w")}), IsOk());
  EXPECT_THAT(Abort(3008), IsOk());
}

TEST_F(StorageServiceTest, InvalidArguments) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  auto expect_invalid = [](const absl::Status& s, const std::string& field) {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  };
  // Store.
  expect_invalid(Store(0, {Obj(1, 0, "x")}), "ttid");
  expect_invalid(Store(common::kMaxTid + 1, {Obj(1, 0, "x")}), "ttid");
  {
    v1::StoreRequest r;
    r.set_ttid(1000);
    r.set_ttid_token(Token(1000));
    for (int i = 0; i < kMaxObjectsPerStore + 1; ++i) *r.add_objects() = Obj(i, 0, "");
    expect_invalid(Call(&v1::Storage::Stub::Store, r), "objects: at most 10000");
  }
  expect_invalid(Store(1000, {}), "objects");
  {
    v1::ObjectToStore o = Obj(1, 0, "x");
    o.set_checksum(std::string(19, 'c'));
    expect_invalid(Store(1000, {o}), "objects[0].checksum");
  }
  expect_invalid(Store(1000, {Obj(1, 0, "x"), Obj(1, 0, "y")}), "objects[1].oid");
  {
    v1::ObjectToStore o = Obj(1, 0, "x");
    o.set_data_serial(50);
    expect_invalid(Store(1000, {o}), "objects[0].data");
    o = Obj(1, common::kMaxTid + 1, "x");
    expect_invalid(Store(1000, {o}), "objects[0].base_serial");
  }
  {
    v1::StoreRequest r;
    r.set_ttid(1000);
    r.set_ttid_token(Token(1000));
    *r.add_objects() = Obj(1, 0, "x");
    r.mutable_metadata()->set_user("u");
    expect_invalid(Call(&v1::Storage::Stub::Store, r), "metadata");
  }
  // Vote, Abort, Lock, Unlock.
  expect_invalid(Vote(0, false), "ttid");
  expect_invalid(Abort(0), "ttid");
  expect_invalid(Lock(0, 5), "ttid");
  expect_invalid(Lock(1000, 0), "tid");
  expect_invalid(Lock(1000, 996), "tid");
  expect_invalid(Lock(1000, 1001), "partition of ttid");
  expect_invalid(Unlock(0, 5), "ttid");
  // Load.
  {
    v1::LoadRequest r;
    r.set_oid(1);
    expect_invalid(Call(&v1::Storage::Stub::Load, r), "at");
  }
  expect_invalid(LoadBefore(1, 0), "before_tid");
  expect_invalid(LoadSerial(1, 0), "serial");
  // History, LastTransactions.
  {
    v1::HistoryRequest r;
    r.set_oid(1);
    r.set_limit(1001);
    expect_invalid(Call(&v1::Storage::Stub::History, r), "limit");
  }
  {
    v1::LastTransactionsRequest r;
    r.set_limit(1001);
    expect_invalid(Call(&v1::Storage::Stub::LastTransactions, r), "limit");
  }
  // The node is still fine.
  EXPECT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
}

TEST_F(StorageServiceTest, RootObjectZeroIsAnOrdinaryOid) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(0, 0, "root")});
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(0, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "root");
}

TEST_F(StorageServiceTest, RestartKeepsIdTableAndVotes) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "committed")});
  ASSERT_THAT(Store(2000, {Obj(2, 0, "voted")}), IsOk());
  ASSERT_THAT(Vote(2000, true), IsOk());

  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  EXPECT_EQ(storage_->node_id(), kS1) << "the id is read from the database";
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  v1::RegisterNodeRequest r = master_->last_registration();
  EXPECT_EQ(r.node_id(), kS1);
  EXPECT_EQ(r.partition_table().ptid(), 3u);
  EXPECT_EQ(r.partition_table().num_partitions(), kPartitions);
  EXPECT_EQ(r.last_tid(), 1004u);
  EXPECT_EQ(r.last_oid(), 2u);
  EXPECT_THAT(r.voted_ttids(), ::testing::ElementsAre(2000));

  // Verification: the master locks the voted transaction.
  ASSERT_THAT(Lock(2000, 2004), IsOk());
  ASSERT_THAT(Unlock(2000, 2004), IsOk());
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(2, common::kMaxTid, &loaded), IsOk())
      << "reads work with the persisted table, before the cluster runs";
  EXPECT_EQ(loaded.data(), "voted");
}

TEST_F(StorageServiceTest, RestartKeepsTheObjectLocksOfVotes) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "v1")});
  ASSERT_THAT(Store(2000, {Obj(1, 1004, "voted")}), IsOk());
  ASSERT_THAT(Vote(2000, true), IsOk());
  ASSERT_THAT(Store(2008, {Obj(2, 0, "voted, then aborted")}), IsOk());
  ASSERT_THAT(Vote(2008, true), IsOk());
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());

  // Another transaction on the same base serial must not get past the
  // votes' object locks: younger ones die, older ones wait (and time out).
  absl::Status s = Store(3000, {Obj(1, 1004, "lost update")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION");
  EXPECT_THAT(Store(1500, {Obj(1, 1004, "older")}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("timed out waiting")));
  EXPECT_EQ(ErrorReason(Store(3000, {Obj(2, 0, "same oid")})), "LOCK_CONTENTION");

  // Verification commits the first vote: the other one now conflicts.
  ASSERT_THAT(Lock(2000, 2004), IsOk());
  ASSERT_THAT(Unlock(2000, 2004), IsOk());
  s = Store(3000, {Obj(1, 1004, "lost update")});
  EXPECT_EQ(ErrorReason(s), "CONFLICT");
  auto conflict = GetConflict(s);
  ASSERT_TRUE(conflict.has_value());
  EXPECT_EQ(conflict->current_serial, 2004u);
  // ... and aborts the second: its object is free again.
  ASSERT_THAT(Abort(2008, kEpoch), IsOk());
  EXPECT_THAT(Store(3000, {Obj(2, 0, "now free")}), IsOk());
}

// Rule R11: a vote held across a change of master session may be a
// commit (tid above its ttid) decided without this node; until the master
// resolves it, no read that commit could change is answered here.
TEST_F(StorageServiceTest, AVoteInDoubtBlocksTheReadsItsCommitCouldChange) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  // Partition 1: oids 1 and 5.
  ASSERT_NO_FATAL_FAILURE(Commit(101, 101, {Obj(1, 0, "v1"), Obj(5, 0, "w1")}));
  ASSERT_THAT(Store(2001, {Obj(1, 101, "voted")}), IsOk());
  ASSERT_THAT(Vote(2001, true), IsOk());
  // In the master session it was voted in: reads go on (the master
  // publishes its commit only once this cell locked it).
  EXPECT_THAT(LoadBefore(1, common::kMaxTid), IsOk());

  // The watch ends: the node registers again, the vote is now in doubt.
  master_->EndWatches();
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  ASSERT_TRUE(WaitFor([&] { return LoadBefore(1, common::kMaxTid).code() ==
                                   absl::StatusCode::kUnavailable; }));
  absl::Status s = LoadBefore(1, common::kMaxTid);
  EXPECT_EQ(ErrorReason(s), "IN_DOUBT") << s;
  EXPECT_EQ(ErrorReason(LoadSerial(1, 2005)), "IN_DOUBT");
  // Snapshots up to its ttid cannot include its commit; other objects are
  // not held.
  v1::LoadResponse before;
  ASSERT_THAT(LoadBefore(1, 2001, &before), IsOk());
  EXPECT_EQ(before.serial(), 101u);
  EXPECT_THAT(LoadSerial(1, 101), IsOk());
  EXPECT_THAT(LoadBefore(5, common::kMaxTid), IsOk());
  // Replication claims completeness only below it.
  v1::ReplicateRequest request = ReplicateRequest(1, 1, 5000, 100);
  std::vector<v1::ReplicateChunk> chunks;
  ASSERT_THAT(Replicate(request, &chunks), IsOk());
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.back().complete_through(), 2000u);
  request.set_min_tid(2001);
  chunks.clear();
  s = Replicate(request, &chunks);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(ErrorReason(s), "IN_DOUBT");

  // The master resolves it (committed as 2005): everything is readable.
  ASSERT_THAT(Lock(2001, 2005), IsOk());
  ASSERT_THAT(Unlock(2001, 2005), IsOk());
  v1::LoadResponse now;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &now), IsOk());
  EXPECT_EQ(now.serial(), 2005u);
  request.set_min_tid(1);
  chunks.clear();
  ASSERT_THAT(Replicate(request, &chunks), IsOk());
  EXPECT_EQ(chunks.back().complete_through(), 5000u);
}

TEST_F(StorageServiceTest, RecoveredVotesAreInDoubt) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_NO_FATAL_FAILURE(Commit(101, 101, {Obj(1, 0, "v1")}));
  ASSERT_THAT(Store(2001, {Obj(1, 101, "voted")}), IsOk());
  ASSERT_THAT(Vote(2001, true), IsOk());
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  EXPECT_EQ(ErrorReason(LoadBefore(1, common::kMaxTid)), "IN_DOUBT");
  // Aborted by the master: readable again, at the old revision.
  ASSERT_THAT(Abort(2001, kEpoch), IsOk());
  v1::LoadResponse now;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &now), IsOk());
  EXPECT_EQ(now.serial(), 101u);
}

TEST_F(StorageServiceTest, TheHighestEpochSurvivesARestart) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  ASSERT_THAT(Vote(1000, true), IsOk());
  // The master the node registers with after the restart is an old,
  // paused primary (epoch 1): the node still fences on epoch 5.
  master_->SetEpoch(1);
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  EXPECT_EQ(master_->last_registration().highest_epoch(), kEpoch);
  absl::Status s = Lock(1000, 1004, kEpoch - 1);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(s), "STALE_EPOCH");
  // A newer epoch seen in a call is persisted too (before it is acted on).
  ASSERT_THAT(Lock(1000, 1004, kEpoch + 2), IsOk());
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_TRUE(master_->WaitForRegistrations(3, kWait));
  EXPECT_EQ(master_->last_registration().highest_epoch(), kEpoch + 2);
  EXPECT_EQ(ErrorReason(Unlock(1000, 1004, kEpoch + 1)), "STALE_EPOCH");
  EXPECT_THAT(Unlock(1000, 1004, kEpoch + 2), IsOk());
}

// A call with a huge epoch (a bug, or a forged call) must not fence every
// real master out for good: refused, nothing raised.
TEST_F(StorageServiceTest, AHugeEpochIsRefusedNotAdopted) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  ASSERT_THAT(Vote(1000, true), IsOk());
  for (uint64_t huge : {std::numeric_limits<uint64_t>::max(), common::kMaxEpoch + 1}) {
    EXPECT_THAT(Lock(1000, 1004, huge), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(Abort(1000, huge), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_THAT(Lock(1000, 1004, kEpoch), IsOk()) << "a huge epoch was adopted";
  EXPECT_THAT(Unlock(1000, 1004, kEpoch), IsOk());
}

TEST_F(StorageServiceTest, AnEpochThatCannotBePersistedFailsTheCall) {
  auto memory = std::make_unique<MemoryBackend>();
  MemoryBackend* backend = memory.get();
  ASSERT_NO_FATAL_FAILURE(StartStorage("cellar", std::move(memory)));
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  ASSERT_THAT(Vote(1000, true), IsOk());
  backend->set_set_config_hook([](absl::string_view, absl::string_view) {
    return absl::InternalError("disk full");
  });
  EXPECT_THAT(Lock(1000, 1004, kEpoch + 1), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(Outcome(1000).state(), v1::STORAGE_TRANSACTION_LOCKED);
  backend->set_set_config_hook(nullptr);
  ASSERT_THAT(Lock(1000, 1004, kEpoch + 1), IsOk());
  EXPECT_EQ(ErrorReason(Unlock(1000, 1004, kEpoch)), "STALE_EPOCH");
}

TEST_F(StorageServiceTest, AnEpochThatCannotBePersistedAtRegistrationIsRetried) {
  auto memory = std::make_unique<MemoryBackend>();
  MemoryBackend* backend = memory.get();
  backend->set_set_config_hook([](absl::string_view key, absl::string_view) {
    return key == "master_epoch" ? absl::InternalError("disk full") : absl::OkStatus();
  });
  // The node registers and serves anyway (it fences on the epoch in memory)...
  ASSERT_NO_FATAL_FAILURE(StartStorage("cellar", std::move(memory)));
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  EXPECT_EQ(master_->last_registration().highest_epoch(), 0u);
  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  ASSERT_THAT(Vote(1000, true), IsOk());
  EXPECT_EQ(ErrorReason(Lock(1000, 1004, kEpoch - 1)), "STALE_EPOCH");
  // ... but accepts no fenced call until the epoch is durable.
  EXPECT_THAT(Lock(1000, 1004), StatusIs(absl::StatusCode::kUnavailable));
  backend->set_set_config_hook(nullptr);
  ASSERT_TRUE(WaitFor([&] {
    auto saved = backend->GetConfig("master_epoch");
    return saved.ok() && saved->value_or("") == absl::StrCat(kEpoch);
  })) << "the heartbeat thread did not persist the epoch";
  EXPECT_THAT(Lock(1000, 1004), IsOk());
}

TEST_F(StorageServiceTest, ALockIsRefusedWhenTheNewerTableCannotBePersisted) {
  auto memory = std::make_unique<MemoryBackend>();
  MemoryBackend* backend = memory.get();
  ASSERT_NO_FATAL_FAILURE(StartStorage("cellar", std::move(memory)));
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  ASSERT_THAT(Store(100, {Obj(1, 0, "one")}), IsOk());
  ASSERT_THAT(Vote(100, true), IsOk());
  backend->set_save_partition_table_hook(
      [](const PartitionTableRecord&) { return absl::InternalError("disk full"); });
  v1::PartitionTable pt = Table(4);
  pt.mutable_rows(1)->mutable_cells(0)->set_state(v1::CELL_OUT_OF_DATE);
  master_->SetPartitionTable(pt);
  EXPECT_THAT(LockAt(100, 104, 4), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(Outcome(100).state(), v1::STORAGE_TRANSACTION_LOCKED);
  // Used unpersisted (its cell states decide what the node may serve),
  // but no lock relies on it. (The lock made the node fetch table 4; the
  // fetch may end after the lock's answer: wait for it.)
  ASSERT_TRUE(WaitFor([&] { return NodeStatus().ptid() == 4u; }))
      << "the node did not take table 4";
  EXPECT_THAT(LockAt(100, 104, 4), StatusIs(absl::StatusCode::kUnavailable));
  // Once the database takes writes again, the heartbeat thread persists it.
  backend->set_save_partition_table_hook(nullptr);
  ASSERT_TRUE(WaitFor([&] {
    auto saved = backend->LoadPartitionTable();
    return saved.ok() && saved->ptid == 4;
  })) << "the table was not persisted again";
  ASSERT_THAT(LockAt(100, 104, 4), IsOk());
}

TEST_F(StorageServiceTest, AClientsAbortCannotDropAVote) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "x")}), IsOk());
  ASSERT_THAT(Vote(1000, true), IsOk());
  EXPECT_THAT(Abort(1000), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("through the master")));
  ASSERT_THAT(Lock(1000, 1004), IsOk()) << "the vote was dropped";
  ASSERT_THAT(Unlock(1000, 1004), IsOk());
  // Unvoted: the client's own abort is fine.
  ASSERT_THAT(Store(2000, {Obj(1, 1004, "y")}), IsOk());
  EXPECT_THAT(Abort(2000), IsOk());
  EXPECT_THAT(Store(3000, {Obj(1, 1004, "z")}), IsOk()) << "the lock was released";
}

TEST_F(StorageServiceTest, UnvotedTransactionsExpireByTheNodesClock) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "abandoned")}), IsOk());
  ASSERT_THAT(Store(2000, {Obj(2, 0, "voted")}), IsOk());
  ASSERT_THAT(Vote(2000, true), IsOk());
  EXPECT_EQ(NodeStatus().open_transactions(), 2u);
  clock_.Advance(absl::Seconds(61));  // the default unvoted_timeout is 60 s
  // The heartbeat thread sweeps (every 50 ms here).
  ASSERT_TRUE(WaitFor([&] { return NodeStatus().open_transactions() == 1; }))
      << "the abandoned transaction was not expired";
  EXPECT_EQ(MetricValue("cellar_storage_unvoted_expired_total"), 1);
  absl::Status s = Store(1000, {Obj(6, 0, "late")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expired")));
  EXPECT_EQ(ErrorReason(s), "UNKNOWN_TRANSACTION");
  EXPECT_THAT(Store(3000, {Obj(1, 0, "free again")}), IsOk());
  EXPECT_THAT(Lock(2000, 2004), IsOk()) << "a vote never expires";
}

TEST_F(StorageServiceTest, WrongClusterNameIsReportedAndRetried) {
  ASSERT_NO_FATAL_FAILURE(StartStorage("other"));
  ASSERT_TRUE(WaitFor([&] {
    return absl::StartsWith(NodeStatus().master_link(), "refused:");
  })) << NodeStatus().master_link();
  EXPECT_THAT(NodeStatus().master_link(), HasSubstr("wrong cluster name"));
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_THAT(LoadBefore(1, common::kMaxTid), StatusIs(absl::StatusCode::kUnavailable))
      << "no partition table: no data path";
}

TEST_F(StorageServiceTest, ReconnectsWhenTheStreamEnds) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_TRUE(master_->WaitForWatchers(1, kWait));
  master_->EndWatches();
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  EXPECT_EQ(master_->last_registration().node_id(), kS1);
  ASSERT_TRUE(master_->WaitForWatchers(1, kWait));
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
}

TEST_F(StorageServiceTest, NoPartitionTableMeansUnavailable) {
  master_->SetPartitionTable(v1::PartitionTable());
  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(StartStorage());
  ASSERT_TRUE(master_->WaitForWatchers(1, kWait));
  EXPECT_THAT(Store(1000, {Obj(1, 0, "x")}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(LoadBefore(1, 5), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(NodeStatus().ptid(), 0u);
}

TEST_F(StorageServiceTest, MetricsCountTheDataPath) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "abc")});
  ASSERT_THAT(LoadBefore(1, common::kMaxTid), IsOk());
  EXPECT_THAT(LoadBefore(2, common::kMaxTid), StatusIs(absl::StatusCode::kNotFound));
  auto value = [&](const std::string& name, const std::string& label_value = "") {
    return MetricValue(name, label_value);
  };
  EXPECT_EQ(value("cellar_storage_stores_total"), 1);
  EXPECT_EQ(value("cellar_storage_votes_total"), 1);
  EXPECT_EQ(value("cellar_storage_commits_total"), 1);
  EXPECT_EQ(value("cellar_storage_loads_total", "ok"), 1);
  EXPECT_EQ(value("cellar_storage_loads_total", "not_found"), 1);
  EXPECT_EQ(value("cellar_storage_load_bytes_total"), 3);
  EXPECT_EQ(value("cellar_storage_ptid"), 3);
  EXPECT_EQ(value("cellar_storage_master_connected"), 1);
  EXPECT_EQ(value("cellar_node_up", "storage"), 1);
}

// --- Liveness, verification and replication ---

TEST_F(StorageServiceTest, SendsHeartbeatsToTheMaster) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  const int before = master_->heartbeats();
  EXPECT_TRUE(WaitFor([&] { return master_->heartbeats() >= before + 3; }))
      << "no heartbeats (interval 50 ms)";
}

TEST_F(StorageServiceTest, TransactionOutcomeFollowsTheCommitAndSurvivesARestart) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  EXPECT_EQ(Outcome(100).state(), v1::STORAGE_TRANSACTION_UNKNOWN);
  // Objects only (partition(ttid) = 100 % 4 = 0 lives here too, but no
  // metadata is sent: this node holds no transaction record).
  ASSERT_THAT(Store(100, {Obj(1, 0, "one")}), IsOk());
  EXPECT_EQ(Outcome(100).state(), v1::STORAGE_TRANSACTION_STORING);
  ASSERT_THAT(Vote(100, /*metadata=*/false), IsOk());
  EXPECT_EQ(Outcome(100).state(), v1::STORAGE_TRANSACTION_VOTED);
  ASSERT_THAT(Lock(100, 104), IsOk());
  auto outcome = Outcome(100);
  EXPECT_EQ(outcome.state(), v1::STORAGE_TRANSACTION_LOCKED);
  EXPECT_EQ(outcome.tid(), 104u);
  ASSERT_THAT(Unlock(100, 104), IsOk());
  // An aborted one.
  ASSERT_THAT(Store(200, {Obj(2, 0, "two")}), IsOk());
  ASSERT_THAT(Abort(200), IsOk());
  EXPECT_EQ(Outcome(200).state(), v1::STORAGE_TRANSACTION_ABORTED);

  // After a restart only the database knows: the lock record says the
  // objects-only transaction was locked with 104.
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  outcome = Outcome(100);
  EXPECT_EQ(outcome.state(), v1::STORAGE_TRANSACTION_LOCKED);
  EXPECT_EQ(outcome.tid(), 104u);
  // Verification may lock it again (idempotent, from the lock record).
  EXPECT_THAT(Lock(100, 104), IsOk());
  EXPECT_THAT(Lock(100, 108), StatusIs(absl::StatusCode::kNotFound));
  v1::GetTransactionOutcomeRequest bad;
  EXPECT_THAT(Call(&v1::Storage::Stub::GetTransactionOutcome, bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(StorageServiceTest, OutcomeOfALockedTransactionListsItsOids) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  // With metadata: this node holds the transaction record (partition 0),
  // which lists every oid (7 lives on S2).
  ASSERT_THAT(Store(100, {Obj(2, 0, "two"), Obj(1, 0, "one")}), IsOk());
  v1::VoteRequest vote;
  vote.set_ttid(100);
  vote.set_ttid_token(Token(100));
  vote.mutable_metadata()->set_user("alice");
  for (uint64_t oid : {1, 2, 7}) vote.mutable_metadata()->add_oids(oid);
  ASSERT_THAT(Call(&v1::Storage::Stub::Vote, vote), IsOk());
  EXPECT_TRUE(Outcome(100).oids().empty()) << "not locked yet";
  ASSERT_THAT(Lock(100, 104), IsOk());
  auto outcome = Outcome(100);
  EXPECT_EQ(outcome.state(), v1::STORAGE_TRANSACTION_LOCKED);
  EXPECT_THAT(outcome.oids(), ::testing::UnorderedElementsAre(1, 2, 7));
  ASSERT_THAT(Unlock(100, 104), IsOk());
  EXPECT_THAT(Outcome(100).oids(), ::testing::UnorderedElementsAre(1, 2, 7));
}

// A lock's partitions are durable with its lock record (a later primary
// completes the commit with them), and the master's unlock makes the
// transaction record list what was committed, not the client's oids.
TEST_F(StorageServiceTest, TheLockKeepsItsPartitionsAndTheUnlockCorrectsTheRecord) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  auto vote_claiming = [&](uint64_t ttid, std::vector<uint64_t> claimed) {
    v1::VoteRequest vote;
    vote.set_ttid(ttid);
    vote.set_ttid_token(Token(ttid));
    vote.mutable_metadata()->mutable_oids()->Add(claimed.begin(), claimed.end());
    return Call(&v1::Storage::Stub::Vote, vote);
  };
  auto lock_in = [&](uint64_t ttid, uint64_t tid, std::vector<uint32_t> partitions) {
    v1::LockTransactionRequest r;
    r.set_epoch(kEpoch);
    r.set_ttid(ttid);
    r.set_tid(tid);
    r.mutable_partitions()->Add(partitions.begin(), partitions.end());
    return Call(&v1::Storage::Stub::LockTransaction, r);
  };
  auto unlock_with = [&](uint64_t ttid, uint64_t tid, std::vector<uint64_t> oids) {
    v1::UnlockTransactionRequest r;
    r.set_epoch(kEpoch);
    r.set_ttid(ttid);
    r.set_tid(tid);
    r.mutable_record_oids()->mutable_oids()->Add(oids.begin(), oids.end());
    return Call(&v1::Storage::Stub::UnlockTransaction, r);
  };
  // ttid 100 (record partition 0): oid 1 (partition 1) committed, oid 2
  // (partition 2, left out) dropped; the client claims 1 and 9 (never stored).
  ASSERT_THAT(Store(100, {Obj(1, 0, "one"), Obj(2, 0, "two")}), IsOk());
  ASSERT_THAT(vote_claiming(100, {1, 9}), IsOk());
  ASSERT_THAT(lock_in(100, 104, {0, 1}), IsOk());
  EXPECT_THAT(Outcome(100).partitions(), ::testing::ElementsAre(0u, 1u));
  EXPECT_THAT(Outcome(100).oids(), ::testing::UnorderedElementsAre(1, 9));  // as voted
  ASSERT_THAT(unlock_with(100, 104, {1}), IsOk());
  EXPECT_THAT(Outcome(100).oids(), ::testing::ElementsAre(1));
  // ttid 108: unlocked without a list (an older master), then again with
  // one after a restart: the record itself is read and corrected.
  ASSERT_THAT(Store(108, {Obj(5, 0, "five")}), IsOk());
  ASSERT_THAT(vote_claiming(108, {}), IsOk());
  ASSERT_THAT(lock_in(108, 112, {0, 1}), IsOk());
  ASSERT_THAT(Unlock(108, 112), IsOk());
  EXPECT_THAT(Outcome(108).oids(), ::testing::IsEmpty());
  // ttid 116: voted before a restart, locked and unlocked after it.
  ASSERT_THAT(Store(116, {Obj(6, 0, "six")}), IsOk());
  ASSERT_THAT(vote_claiming(116, {}), IsOk());
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  ASSERT_THAT(lock_in(116, 120, {0, 2}), IsOk());
  ASSERT_THAT(unlock_with(116, 120, {6}), IsOk());
  EXPECT_THAT(Outcome(116).oids(), ::testing::ElementsAre(6));
  EXPECT_THAT(Outcome(100).partitions(), ::testing::ElementsAre(0u, 1u));
  EXPECT_THAT(Outcome(100).oids(), ::testing::ElementsAre(1));
  ASSERT_THAT(unlock_with(108, 112, {5}), IsOk());
  EXPECT_THAT(Outcome(108).oids(), ::testing::ElementsAre(5));
  // A list without a tid is refused.
  EXPECT_THAT(unlock_with(108, 0, {5}), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The write batches' histogram: how many backend calls, how many records.
std::pair<uint64_t, double> WriteBatches(prometheus::Registry& registry) {
  for (const auto& family : registry.Collect()) {
    if (family.name != "cellar_storage_write_batch_size" || family.metric.empty()) continue;
    return {family.metric[0].histogram.sample_count, family.metric[0].histogram.sample_sum};
  }
  return {0, 0};
}

v1::LockTransactionRequest LockItem(uint64_t ttid, uint64_t tid, uint64_t epoch = kEpoch) {
  v1::LockTransactionRequest r;
  r.set_epoch(epoch);
  r.set_ttid(ttid);
  r.set_tid(tid);
  return r;
}

TEST_F(StorageServiceTest, LockTransactionsAnswersEachItemAsAloneAndWritesThemOnce) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "one")}, /*vote=*/true), IsOk());
  ASSERT_THAT(Store(2000, {Obj(2, 0, "two")}, /*vote=*/true), IsOk());
  ASSERT_THAT(Store(3000, {Obj(5, 0, "five")}, /*vote=*/true), IsOk());
  const auto before = WriteBatches(*registry_);
  v1::LockTransactionsRequest batch;
  *batch.add_items() = LockItem(1000, 1004);
  *batch.add_items() = LockItem(5000, 5004);              // no vote here
  *batch.add_items() = LockItem(2000, 2004, kEpoch - 1);  // a deposed master's
  *batch.add_items() = LockItem(4000, 0);                 // invalid alone
  *batch.add_items() = LockItem(3000, 3004);
  v1::LockTransactionsResponse answer;
  ASSERT_THAT(Call(&v1::Storage::Stub::LockTransactions, batch, &answer), IsOk());
  ASSERT_EQ(answer.results_size(), 5);
  EXPECT_EQ(answer.results(0).status().code(), 0u);
  EXPECT_TRUE(answer.results(0).response().stored_oids_known());
  EXPECT_THAT(answer.results(0).response().stored_oids(), ::testing::ElementsAre(1u));
  EXPECT_EQ(answer.results(1).status().code(),
            static_cast<uint32_t>(absl::StatusCode::kNotFound));
  EXPECT_EQ(answer.results(1).status().reason(), "UNKNOWN_TRANSACTION");
  EXPECT_EQ(answer.results(2).status().code(),
            static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(answer.results(2).status().reason(), "STALE_EPOCH");
  EXPECT_EQ(answer.results(3).status().code(),
            static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(answer.results(3).status().message(), ::testing::HasSubstr("tid"));
  EXPECT_EQ(answer.results(4).status().code(), 0u);
  EXPECT_THAT(answer.results(4).response().stored_oids(), ::testing::ElementsAre(5u));
  // The two locks that needed a write shared one backend call.
  const auto after = WriteBatches(*registry_);
  EXPECT_EQ(after.first - before.first, 1u);
  EXPECT_EQ(after.second - before.second, 2.0);
  // Committed (the failing items changed nothing): 2000 is still voted.
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.serial(), 1004u);
  ASSERT_THAT(LoadBefore(5, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.serial(), 3004u);
  EXPECT_EQ(Outcome(2000).state(), v1::STORAGE_TRANSACTION_VOTED);
  // Idempotent, as the single rpc.
  v1::LockTransactionsRequest again;
  *again.add_items() = LockItem(1000, 1004);
  *again.add_items() = LockItem(2000, 2004);
  ASSERT_THAT(Call(&v1::Storage::Stub::LockTransactions, again, &answer), IsOk());
  EXPECT_EQ(answer.results(0).status().code(), 0u);
  EXPECT_EQ(answer.results(1).status().code(), 0u);

  // Unlocks: in order, each with its own answer.
  v1::UnlockTransactionsRequest unlocks;
  auto unlock = [&](uint64_t ttid, uint64_t tid, uint64_t epoch) {
    v1::UnlockTransactionRequest* r = unlocks.add_items();
    r->set_epoch(epoch);
    r->set_ttid(ttid);
    r->set_tid(tid);
  };
  unlock(1000, 1004, kEpoch);
  unlock(2000, 2004, kEpoch - 1);  // stale
  unlock(0, 0, kEpoch);            // invalid alone
  unlock(3000, 3004, kEpoch);
  v1::UnlockTransactionsResponse unlocked;
  ASSERT_THAT(Call(&v1::Storage::Stub::UnlockTransactions, unlocks, &unlocked), IsOk());
  ASSERT_EQ(unlocked.results_size(), 4);
  EXPECT_EQ(unlocked.results(0).code(), 0u);
  EXPECT_EQ(unlocked.results(1).reason(), "STALE_EPOCH");
  EXPECT_EQ(unlocked.results(2).code(), static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(unlocked.results(3).code(), 0u);
  EXPECT_EQ(NodeStatus().open_transactions(), 1u) << "2000 stays locked";
  EXPECT_THAT(Unlock(2000, 2004), IsOk());
  EXPECT_EQ(NodeStatus().open_transactions(), 0u);
}

TEST_F(StorageServiceTest, ABadBatchIsRefusedWholeAndDoesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(1000, {Obj(1, 0, "one")}, /*vote=*/true), IsOk());
  EXPECT_THAT(Call(&v1::Storage::Stub::LockTransactions, v1::LockTransactionsRequest()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Call(&v1::Storage::Stub::UnlockTransactions, v1::UnlockTransactionsRequest()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::LockTransactionsRequest twice;
  *twice.add_items() = LockItem(1000, 1004);
  *twice.add_items() = LockItem(1000, 1004);
  absl::Status s = Call(&v1::Storage::Stub::LockTransactions, twice);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("twice"));
  v1::LockTransactionsRequest many;
  for (uint64_t i = 0; i <= 1000; ++i) *many.add_items() = LockItem(1000 + 8 * i, 1004 + 8 * i);
  EXPECT_THAT(Call(&v1::Storage::Stub::LockTransactions, many),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::UnlockTransactionsRequest big;
  for (int i = 0; i < 3; ++i) {
    v1::UnlockTransactionRequest* r = big.add_items();
    r->set_epoch(kEpoch);
    r->set_ttid(1000);
    r->set_tid(1004);
    for (uint64_t oid = 1; oid <= 1000000; ++oid) r->mutable_record_oids()->add_oids(oid << 40);
  }
  s = Call(&v1::Storage::Stub::UnlockTransactions, big);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("bytes"));
  EXPECT_EQ(Outcome(1000).state(), v1::STORAGE_TRANSACTION_VOTED) << "a refused batch did nothing";
}

TEST_F(StorageServiceTest, SaveMasterStateKeepsTheHighestOidMarkAndReportsIt) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::SaveMasterStateRequest r;
  r.set_epoch(kEpoch);
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveMasterState, r),
              StatusIs(absl::StatusCode::kInvalidArgument));  // mark 0
  r.set_oid_high_water(500);
  r.set_epoch(0);
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveMasterState, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.set_epoch(kEpoch - 1);
  absl::Status stale = Call(&v1::Storage::Stub::SaveMasterState, r);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(stale), "STALE_EPOCH");
  r.set_epoch(kEpoch);
  ASSERT_THAT(Call(&v1::Storage::Stub::SaveMasterState, r), IsOk());
  r.set_oid_high_water(300);  // lower: kept at 500
  ASSERT_THAT(Call(&v1::Storage::Stub::SaveMasterState, r), IsOk());

  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  EXPECT_EQ(master_->last_registration().oid_high_water(), 500u);
}

TEST_F(StorageServiceTest, SaveTokenTableIsFencedValidatedAndOnlyRaisesTheVersion) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::ClusterToken token;
  token.set_id("0123abcd");
  token.set_role(v1::TOKEN_ROLE_CLIENT);
  token.set_secret_sha256(std::string(64, 'e'));
  token.set_name("app");
  v1::SaveTokenTableRequest r;  // empty: epoch 0
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.set_epoch(kEpoch);  // table version 0
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.mutable_table()->set_version(3);
  *r.mutable_table()->add_tokens() = token;
  r.set_epoch(common::kMaxEpoch + 1);  // maximal epoch: refused, not adopted
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.set_epoch(kEpoch - 1);
  absl::Status stale = Call(&v1::Storage::Stub::SaveTokenTable, r);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(stale), "STALE_EPOCH");
  r.set_epoch(kEpoch);
  r.mutable_table()->mutable_tokens(0)->set_role(v1::TOKEN_ROLE_UNSPECIFIED);
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.mutable_table()->mutable_tokens(0)->set_role(v1::TOKEN_ROLE_CLIENT);
  *r.mutable_table()->add_tokens() = token;  // the same id twice
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.mutable_table()->mutable_tokens()->RemoveLast();
  ASSERT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r), IsOk());
  r.mutable_table()->set_version(2);  // older: accepted, not stored
  r.mutable_table()->clear_tokens();
  ASSERT_THAT(Call(&v1::Storage::Stub::SaveTokenTable, r), IsOk());

  // The stored table (version 3, one token) is what the node reports at
  // its next registration.
  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  EXPECT_EQ(master_->last_registration().token_table().version(), 3u);
  ASSERT_EQ(master_->last_registration().token_table().tokens_size(), 1);
  EXPECT_EQ(master_->last_registration().token_table().tokens(0).id(), "0123abcd");
}

v1::FeatureFlagTable VerifyOnLoad(uint64_t version, bool on) {
  v1::FeatureFlagTable table;
  table.set_version(version);
  v1::FeatureFlag* flag = table.add_flags();
  flag->set_name(common::kVerifyChecksumOnLoadFlag);
  flag->set_bool_value(on);
  flag->set_description("storages check each revision's SHA-1 before serving it");
  flag->set_owner("storage team");
  return table;
}

TEST_F(StorageServiceTest, SaveFeatureFlagsIsFencedValidatedAndReportedAtRegistration) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::SaveFeatureFlagsRequest r;  // empty: epoch 0
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveFeatureFlags, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.set_epoch(kEpoch);  // table version 0
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveFeatureFlags, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  *r.mutable_table() = VerifyOnLoad(3, true);
  r.set_epoch(kEpoch - 1);
  absl::Status stale = Call(&v1::Storage::Stub::SaveFeatureFlags, r);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(stale), "STALE_EPOCH");
  r.set_epoch(kEpoch);
  r.mutable_table()->mutable_flags(0)->set_name("Bad Name");
  EXPECT_THAT(Call(&v1::Storage::Stub::SaveFeatureFlags, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  *r.mutable_table() = VerifyOnLoad(3, true);
  ASSERT_THAT(Call(&v1::Storage::Stub::SaveFeatureFlags, r), IsOk());
  *r.mutable_table() = VerifyOnLoad(2, false);  // older: accepted, not stored
  ASSERT_THAT(Call(&v1::Storage::Stub::SaveFeatureFlags, r), IsOk());

  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  const v1::FeatureFlagTable reported = master_->last_registration().feature_flags();
  EXPECT_EQ(reported.version(), 3u);
  ASSERT_EQ(reported.flags_size(), 1);
  EXPECT_TRUE(reported.flags(0).bool_value());
}

// The flag storage.verify_checksum_on_load, flipped at run time over the
// Watch stream: a revision whose stored bytes were corrupted on disk is
// served as is while the flag is off (the client's check is the only one)
// and refused with DATA_LOSS as soon as the master pushes it on.
TEST_F(StorageServiceTest, TheVerifyChecksumFlagChangesTheReadPathAtRunTime) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "good bytes")});
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char* error = nullptr;
    const int rc = sqlite3_exec(db,
                                "UPDATE data SET data = CAST('evil bytes' AS BLOB) "
                                "WHERE id = (SELECT data_id FROM obj WHERE oid = 1)",
                                nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, 1005, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "evil bytes") << "flag off: served as stored";

  v1::ClusterEvent on;
  *on.mutable_feature_flags() = VerifyOnLoad(1, true);
  master_->Push(on);
  ASSERT_TRUE(WaitFor([&] { return LoadBefore(1, 1005).code() == absl::StatusCode::kDataLoss; }))
      << "the flag pushed over Watch did not change the read path";
  EXPECT_THAT(LoadSerial(1, 1004), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")));

  v1::ClusterEvent off;
  *off.mutable_feature_flags() = VerifyOnLoad(2, false);
  master_->Push(off);
  ASSERT_TRUE(WaitFor([&] { return LoadBefore(1, 1005).ok(); }))
      << "turning the flag off did not restore the plain read path";
}

TEST_F(StorageServiceTest, ForgottenLockRecordsAreDropped) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(100, {Obj(1, 0, "one")}), IsOk());
  ASSERT_THAT(Vote(100, false), IsOk());
  ASSERT_THAT(Lock(100, 104), IsOk());
  ASSERT_THAT(Unlock(100, 104, kEpoch, /*forget_lock=*/true), IsOk());
  // Flushed by the heartbeat thread (or at shutdown at the latest).
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  ASSERT_THAT(storage_->WaitUntilServing(kWait), IsOk());
  EXPECT_EQ(Outcome(100).state(), v1::STORAGE_TRANSACTION_UNKNOWN);
  // The data stays.
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, 1000, &loaded), IsOk());
  EXPECT_EQ(loaded.serial(), 104u);
}

TEST_F(StorageServiceTest, LockWaitsForTheTableTheCommitWasDecidedOn) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  ASSERT_THAT(Store(100, {Obj(1, 0, "one")}), IsOk());
  ASSERT_THAT(Vote(100, true), IsOk());
  // The master says ptid 3 (what the node has); a lock decided on ptid 4
  // cannot be honoured until the master has it.
  EXPECT_THAT(LockAt(100, 104, 4), StatusIs(absl::StatusCode::kUnavailable));
  // The master moves to ptid 4 without pushing it (the delta is late): the
  // node fetches and persists it before locking.
  v1::PartitionTable pt = Table(4);
  pt.mutable_rows(1)->mutable_cells(0)->set_state(v1::CELL_OUT_OF_DATE);
  master_->SetPartitionTable(pt);
  ASSERT_THAT(LockAt(100, 104, 4), IsOk());
  EXPECT_EQ(NodeStatus().ptid(), 4u);
  // Persisted: a restarted node reports it (before the master answers).
  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(RestartStorage());
  EXPECT_EQ(NodeStatus().ptid(), 4u);
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  EXPECT_EQ(master_->last_registration().partition_table().ptid(), 4u);
}

TEST_F(StorageServiceTest, ReplicateStreamsAReadableCell) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  // Partition 1: oids 1, 5, 9; ttids with ttid % 4 == 1.
  ASSERT_NO_FATAL_FAILURE(Commit(101, 101, {Obj(1, 0, "a"), Obj(5, 0, "b")}));
  ASSERT_NO_FATAL_FAILURE(Commit(105, 109, {Obj(9, 0, "c")}));
  ASSERT_NO_FATAL_FAILURE(Commit(102, 102, {Obj(2, 0, "other partition")}));
  v1::ReplicateRequest request = ReplicateRequest(1, 1, 200, 1);
  std::vector<v1::ReplicateChunk> chunks;
  ASSERT_THAT(Replicate(request, &chunks), IsOk());
  int transactions = 0, objects = 0;
  for (const auto& c : chunks) {
    transactions += c.transactions_size();
    objects += c.objects_size();
    for (const auto& o : c.objects()) EXPECT_EQ(o.checksum(), Checksum(o.data()));
  }
  EXPECT_EQ(transactions, 2);
  EXPECT_EQ(objects, 3);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.back().complete_through(), 200u);
  EXPECT_EQ(chunks.front().transactions(0).user(), "alice");
  // The size the vote carried travels with the record.
  EXPECT_EQ(chunks.front().transactions(0).size_bytes(), 1010u);

  // Partition 3 is not readable here.
  request.set_partition(3);
  chunks.clear();
  absl::Status s = Replicate(request, &chunks);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(ErrorReason(s), "NOT_READABLE");
  request.set_partition(1);
  request.set_min_tid(300);
  EXPECT_THAT(Replicate(request, &chunks), StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_min_tid(1);
  request.set_max_records(100000);
  EXPECT_THAT(Replicate(request, &chunks), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---- Operator stop (Storage.Shutdown) -------------------------------------

TEST_F(StorageServiceTest, ShutdownAnswersThenStopsThisServerAndClosesItsDatabase) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::ShutdownRequest request;
  request.set_reason("test: operator stop");
  request.set_node_id(NodeStatus().node_id());
  EXPECT_THAT(Call(&v1::Storage::Stub::Shutdown, request), IsOk());
  // Without a hook, the server stops itself (in the background): calls
  // then fail, and the database is closed (it opens again).
  EXPECT_TRUE(WaitFor([&] {
    return Call(&v1::Storage::Stub::GetNodeStatus, v1::GetNodeStatusRequest()).code() ==
           absl::StatusCode::kUnavailable;
  }));
  SqliteBackend::Options backend_options;
  backend_options.path = db_path_;
  EXPECT_TRUE(WaitFor([&] { return SqliteBackend::Open(backend_options).ok(); }));
  storage_.reset();  // joins the stop thread
}

TEST_F(StorageServiceTest, ShutdownCallsTheHookInsteadAndRefusesLongReasons) {
  absl::Mutex mu;
  std::vector<std::string> reasons;
  on_shutdown_rpc_ = [&](const std::string& reason) {
    absl::MutexLock l(&mu);
    reasons.push_back(reason);
  };
  ASSERT_NO_FATAL_FAILURE(StartStorage());
  ASSERT_TRUE(WaitFor([&] { return NodeStatus().node_id() != 0; }));
  // An empty request stops nothing; nor does one naming another node.
  v1::ShutdownRequest request;
  EXPECT_THAT(Call(&v1::Storage::Stub::Shutdown, request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("node_id: required")));
  request.set_node_id(NodeStatus().node_id() + 1);
  EXPECT_THAT(Call(&v1::Storage::Stub::Shutdown, request),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("node_id: this node is")));
  request.set_node_id(NodeStatus().node_id());
  request.set_reason(std::string(1001, 'x'));
  EXPECT_THAT(Call(&v1::Storage::Stub::Shutdown, request),
              StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_reason("disk swap");
  EXPECT_THAT(Call(&v1::Storage::Stub::Shutdown, request), IsOk());
  {
    absl::MutexLock l(&mu);
    ASSERT_EQ(reasons.size(), 1u);
    EXPECT_THAT(reasons[0], ::testing::StartsWith("disk swap (Storage.Shutdown from "));
  }
  // The hook decides: the server still serves.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_THAT(Call(&v1::Storage::Stub::GetNodeStatus, v1::GetNodeStatusRequest()), IsOk());
}

// ---- Operator actions: CheckCell and TruncateData.

TEST_F(StorageServiceTest, CheckCellCountsReadableCellsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(4, 0, "a"), Obj(8, 0, "b")});  // partition 0
  Commit(2000, 2004, {Obj(4, 1004, "a2")});
  v1::CheckCellRequest r;
  r.set_partition(0);
  r.set_max_tid(common::kMaxTid);
  r.set_with_data(true);
  r.set_epoch(kEpoch);
  v1::CheckCellResponse all;
  ASSERT_THAT(Call(&v1::Storage::Stub::CheckCell, r, &all), IsOk());
  EXPECT_EQ(all.transaction_count(), 2u);
  EXPECT_EQ(all.object_count(), 3u);
  EXPECT_EQ(all.tid_hash().size(), 20u);
  EXPECT_EQ(all.data_hash().size(), 20u);
  EXPECT_EQ(all.last_tid(), common::kMaxTid);
  // Capped at one transaction: the range ends at its tid.
  r.set_max_transactions(1);
  v1::CheckCellResponse first;
  ASSERT_THAT(Call(&v1::Storage::Stub::CheckCell, r, &first), IsOk());
  EXPECT_EQ(first.transaction_count(), 1u);
  EXPECT_EQ(first.object_count(), 2u);
  EXPECT_EQ(first.last_tid(), 1004u);
  EXPECT_NE(first.oid_hash(), all.oid_hash());

  r.set_partition(3);  // on S2 only
  EXPECT_THAT(Call(&v1::Storage::Stub::CheckCell, r),
              StatusIs(absl::StatusCode::kUnavailable));
  r.set_partition(0);
  r.set_epoch(kEpoch - 1);
  absl::Status stale = Call(&v1::Storage::Stub::CheckCell, r);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorReason(stale), "STALE_EPOCH");
  r.set_epoch(kEpoch);
  r.set_min_tid(2000);
  r.set_max_tid(1000);
  EXPECT_THAT(Call(&v1::Storage::Stub::CheckCell, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
  r.set_min_tid(0);
  r.set_max_transactions(100001);
  EXPECT_THAT(Call(&v1::Storage::Stub::CheckCell, r),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(StorageServiceTest, TruncateDataOnlyWhileRecovering) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "v1")});
  Commit(2000, 2004, {Obj(1, 1004, "v2"), Obj(2, 0, "new")});
  ASSERT_THAT(Store(3000, {Obj(5, 0, "voted")}), IsOk());
  ASSERT_THAT(Vote(3000, true), IsOk());

  v1::TruncateDataRequest r;
  // Unset is not "everything": tid and epoch are required.
  r.set_epoch(kEpoch);
  EXPECT_THAT(Call(&v1::Storage::Stub::TruncateData, r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tid: required")));
  r.set_tid(1004);
  r.set_epoch(0);
  EXPECT_THAT(Call(&v1::Storage::Stub::TruncateData, r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("epoch: required")));
  r.set_epoch(kEpoch);
  EXPECT_THAT(Call(&v1::Storage::Stub::TruncateData, r),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  v1::ClusterEvent recovering;
  recovering.set_cluster_state(v1::CLUSTER_RECOVERING);
  master_->Push(recovering);
  ASSERT_TRUE(WaitFor([&] { return NodeStatus().cluster_state() == v1::CLUSTER_RECOVERING; }))
      << "the node did not see RECOVERING";
  r.set_epoch(kEpoch - 1);
  EXPECT_THAT(Call(&v1::Storage::Stub::TruncateData, r),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  r.set_epoch(kEpoch);
  v1::TruncateDataResponse truncated;
  ASSERT_THAT(Call(&v1::Storage::Stub::TruncateData, r, &truncated), IsOk());
  EXPECT_EQ(truncated.last_tid(), 1004u);

  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "v1");
  EXPECT_EQ(loaded.next_serial(), 0u);
  EXPECT_THAT(LoadBefore(2, common::kMaxTid), StatusIs(absl::StatusCode::kNotFound));
  // The voted transaction is forgotten, its records gone.
  EXPECT_NE(Outcome(3000).state(), v1::STORAGE_TRANSACTION_VOTED);
  EXPECT_THAT(Lock(3000, 3004), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("was aborted")));
  EXPECT_EQ(NodeStatus().last_tid(), 1004u);
}

// Semantics rule 2: a store says which partitions it checked for
// conflicts (those its table shows readable here) and with which table,
// so the master can tell a check made on a stale table.
TEST_F(StorageServiceTest, StoreReportsWhichPartitionsItCheckedWithWhichTable) {
  v1::PartitionTable pt = Table(3);
  pt.mutable_rows(1)->mutable_cells(0)->set_state(v1::CELL_OUT_OF_DATE);
  master_->SetPartitionTable(pt);
  ASSERT_NO_FATAL_FAILURE(StartServing());
  v1::StoreRequest r;
  r.set_ttid(1000);
  r.set_ttid_token(Token(1000));
  r.set_client_node_id(common::MakeNodeId(common::NodeKind::kClient, 1));
  *r.add_objects() = Obj(kPartitions * 10 + 0, 0, "readable cell");
  *r.add_objects() = Obj(kPartitions * 10 + 1, 0, "catching-up cell");
  *r.add_objects() = Obj(kPartitions * 11 + 0, 0, "readable cell again");
  v1::StoreResponse response;
  ASSERT_THAT(Call(&v1::Storage::Stub::Store, r, &response), IsOk());
  EXPECT_EQ(response.checked_ptid(), 3u);
  EXPECT_THAT(response.checked_partitions(), ::testing::ElementsAre(0u));
}

TEST_F(StorageServiceTest, TruncateLowersReplicationProgress) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  Commit(1000, 1004, {Obj(1, 0, "v1")});
  Commit(2000, 2004, {Obj(1, 1004, "v2")});
  storage_->Shutdown();
  storage_.reset();
  // Progress of a catch-up: partition 0 reached 2004, partition 1 500.
  {
    auto backend = SqliteBackend::Open(SqliteOptions());
    ASSERT_THAT(backend, IsOk());
    ASSERT_THAT((*backend)->SetConfig(ReplicationProgressKey(0), "2004"), IsOk());
    ASSERT_THAT((*backend)->SetConfig(ReplicationProgressKey(1), "500"), IsOk());
  }
  master_->SetClusterState(v1::CLUSTER_RECOVERING);
  ASSERT_NO_FATAL_FAILURE(StartStorage());
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  ASSERT_TRUE(WaitFor([&] { return NodeStatus().cluster_state() == v1::CLUSTER_RECOVERING; }));
  v1::TruncateDataRequest r;
  r.set_tid(1004);
  r.set_epoch(kEpoch);
  ASSERT_THAT(Call(&v1::Storage::Stub::TruncateData, r), IsOk());
  storage_->Shutdown();
  storage_.reset();
  auto backend = SqliteBackend::Open(SqliteOptions());
  ASSERT_THAT(backend, IsOk());
  // A catch-up after the truncate must fetch what is re-committed above
  // 1004: the progress past it is lowered to the truncation point.
  auto p0 = (*backend)->GetConfig(ReplicationProgressKey(0));
  ASSERT_THAT(p0, IsOk());
  EXPECT_EQ(p0->value_or("0"), "1004");
  auto p1 = (*backend)->GetConfig(ReplicationProgressKey(1));
  ASSERT_THAT(p1, IsOk());
  EXPECT_EQ(p1->value_or("0"), "500");
}

// A Store, Vote or client Abort under a ttid the primary did not issue
// (no token, a token of another key or of another ttid) is refused before
// anything happens: no lock taken, nothing stored.
TEST_F(StorageServiceTest, BadTtidTokenIsRefusedWithoutLockingAnything) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  const uint64_t forged = 1000, honest = 1004;  // forged is older (wait-die)
  const std::string other_key = common::NewTtidKey();
  for (const std::string& token :
       {std::string(), common::TtidToken(other_key, forged), Token(honest)}) {
    absl::Status s = StoreWithToken(forged, token, {Obj(1, 0, "forged")}, true);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kPermissionDenied));
    EXPECT_EQ(ErrorReason(s), common::kReasonBadTtidToken);
    s = VoteWithToken(forged, token, true);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kPermissionDenied));
    EXPECT_EQ(ErrorReason(s), common::kReasonBadTtidToken);
  }
  EXPECT_EQ(NodeStatus().open_transactions(), 0u);
  // Object 1 is not locked: another transaction stores and commits it at once.
  ASSERT_THAT(Store(honest, {Obj(1, 0, "honest")}), IsOk());
  // A client abort needs the token too; the primary's (fenced) does not.
  EXPECT_THAT(AbortWithToken(honest, common::TtidToken(other_key, honest)),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(AbortWithToken(honest, ""), StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_THAT(Vote(honest, true), IsOk());
  ASSERT_THAT(Lock(honest, honest + 4), IsOk());
  ASSERT_THAT(Unlock(honest, honest + 4), IsOk());
  v1::LoadResponse loaded;
  ASSERT_THAT(LoadBefore(1, common::kMaxTid, &loaded), IsOk());
  EXPECT_EQ(loaded.data(), "honest");
  EXPECT_THAT(AbortWithToken(2000, "", kEpoch), IsOk());
}

// A node that registers with a new primary takes its key: transactions
// begun under the previous term fail their stores.
TEST_F(StorageServiceTest, NewRegistrationReplacesTheTtidKey) {
  ASSERT_NO_FATAL_FAILURE(StartServing());
  const std::string old_key = master_->ttid_key();
  ASSERT_THAT(Store(1000, {Obj(1, 0, "old term")}), IsOk());
  const std::string new_key = common::NewTtidKey();
  master_->SetTtidKey(new_key);
  master_->SetEpoch(kEpoch + 1);
  master_->EndWatches();
  ASSERT_TRUE(master_->WaitForRegistrations(2, kWait));
  // Once the node took the new key, a client abort under it passes.
  ASSERT_TRUE(WaitFor([&] {
    return AbortWithToken(9000, common::TtidToken(new_key, 9000)).ok();
  }));
  EXPECT_THAT(StoreWithToken(1004, common::TtidToken(old_key, 1004), {Obj(5, 0, "x")}),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(StoreWithToken(1008, common::TtidToken(new_key, 1008), {Obj(6, 0, "y")}),
              IsOk());
}

}  // namespace
}  // namespace cellar::storage
