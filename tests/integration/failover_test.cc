// Master failover, in-process: two MasterServers elected by a lease in a
// real PostgreSQL database (tools/pgserver), two storages on SQLite that
// know both master addresses, and the real client library with both
// addresses. LocalCluster is single-master, so the pieces are started here.
//
// Checked (failure-scenarios.md, "Cluster lifecycle"): two masters started
// together against an empty cluster create exactly one cluster; the
// primary crashes / loses its lease / shuts down and the standby takes over
// within a bound; every acknowledged commit is still readable and new
// commits work; storages refuse the deposed primary's epoch (STALE_EPOCH).

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/clock.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "services/master/master_server.h"
#include "services/master/pg_lease.h"
#include "services/storage/backend/backend_uri.h"
#include "services/storage/storage_server.h"
#include "tests/integration/test_backends.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::HasSubstr;

constexpr int kStorages = 2;
constexpr uint32_t kPartitions = 4;
constexpr char kCluster[] = "failover";
// Short leases keep the test quick: a crashed primary is replaced within
// lease + lease/3 (+ the storages' reconnection backoff).
constexpr absl::Duration kLease = absl::Seconds(2);
constexpr absl::Duration kTakeoverBound = absl::Seconds(30);

class FailoverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kWarning); }

  void SetUp() override {
    auto db = tools::CreateTestDatabase("failover");
    ASSERT_THAT(db, IsOk());
    lease_db_ = db->conninfo;
    auto backends = testing_support::MakeTestBackends("sqlite", kStorages);
    ASSERT_THAT(backends, IsOk());
    backends_ = *std::move(backends);
    masters_.resize(2);
    elections_.resize(2);
  }

  void TearDown() override {
    client_.reset();
    for (auto& s : storages_) {
      if (s) s->Shutdown();
    }
    for (auto& m : masters_) {
      if (m) m->Shutdown();
    }
  }

  // Starts master `i` with a PostgreSQL lease election.
  void StartMaster(int i) {
    master::MasterServerOptions options;
    options.cluster.cluster_name = kCluster;
    options.cluster.num_partitions = kPartitions;
    options.cluster.num_replicas = 1;
    options.cluster.autostart = kStorages;
    options.storage_rpc_timeout = absl::Seconds(5);
    options.on_lost = [this, i](const absl::Status&) { ++lost_[i]; };
    master::PostgresLeaseElection** slot = &elections_[i];
    const std::string conninfo = lease_db_;
    auto server = master::MasterServer::Start(
        options, common::RealClock::Get(), nullptr,
        [slot, conninfo](const std::string& address)
            -> absl::StatusOr<std::unique_ptr<master::Election>> {
          master::PostgresLeaseOptions lease;
          lease.conninfo = conninfo;
          lease.cluster = kCluster;
          lease.address = address;
          lease.lease = kLease;
          auto e = master::PostgresLeaseElection::Create(lease);
          if (!e.ok()) return e.status();
          *slot = e->get();
          return std::unique_ptr<master::Election>(*std::move(e));
        });
    ASSERT_THAT(server, IsOk());
    masters_[i] = *std::move(server);
  }

  std::vector<std::string> MasterAddresses() const {
    return {masters_[0]->address(), masters_[1]->address()};
  }

  void StartStorages() {
    storages_.resize(kStorages);
    for (int i = 0; i < kStorages; ++i) {
      auto backend = storage::OpenBackendFromUri(backends_->uris()[i]);
      ASSERT_THAT(backend, IsOk());
      storage::StorageServerOptions options;
      options.master_addresses = MasterAddresses();
      options.cluster_name = kCluster;
      auto server = storage::StorageServer::Start(std::move(options), *std::move(backend),
                                                  common::RealClock::Get(), nullptr);
      ASSERT_THAT(server, IsOk());
      storages_[i] = *std::move(server);
    }
    for (auto& s : storages_) ASSERT_THAT(s->WaitUntilServing(kTakeoverBound), IsOk());
  }

  void ConnectClient() {
    client::ClientOptions options;
    options.master_addresses = MasterAddresses();
    options.cluster_name = kCluster;
    options.max_reconnect_backoff = absl::Milliseconds(500);
    auto c = client::Client::Connect(options);
    ASSERT_THAT(c, IsOk());
    client_ = *std::move(c);
  }

  // Index of the one primary; fails the test if there isn't exactly one.
  int Primary() {
    int primary = -1, count = 0;
    for (int i = 0; i < 2; ++i) {
      if (masters_[i] && masters_[i]->is_primary()) {
        primary = i;
        ++count;
      }
    }
    EXPECT_EQ(count, 1);
    return primary;
  }

  // Commits a new object; retries while the cluster is between masters
  // (UNAVAILABLE / FAILED_PRECONDITION) until `bound`.
  absl::StatusOr<uint64_t> PutNew(uint64_t* oid_out, const std::string& data,
                                  absl::Duration bound = absl::Seconds(5)) {
    const absl::Time end = absl::Now() + bound;
    absl::Status last;
    while (true) {
      absl::StatusOr<uint64_t> oid = client_->NewOid();
      if (oid.ok()) {
        auto txn = client_->NewTransaction();
        txn->Store(*oid, 0, data);
        absl::StatusOr<uint64_t> tid = txn->Commit();
        if (tid.ok()) {
          *oid_out = *oid;
          return tid;
        }
        last = tid.status();
      } else {
        last = oid.status();
      }
      if (last.code() != absl::StatusCode::kUnavailable &&
          last.code() != absl::StatusCode::kFailedPrecondition &&
          last.code() != absl::StatusCode::kCancelled &&
          last.code() != absl::StatusCode::kDeadlineExceeded) {
        return last;
      }
      if (absl::Now() > end) return last;
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  struct Committed {
    uint64_t tid;
    std::string data;
  };

  // Commits `n` objects, remembering each acknowledged one.
  void CommitSome(int n, const std::string& tag) {
    for (int i = 0; i < n; ++i) {
      uint64_t oid = 0;
      const std::string data = absl::StrCat(tag, "-", i);
      absl::StatusOr<uint64_t> tid = PutNew(&oid, data);
      ASSERT_THAT(tid, IsOk()) << data;
      committed_[oid] = {*tid, data};
    }
  }

  // Every acknowledged commit is readable, at its tid, from a fresh client
  // (cold cache) and from the long-lived one.
  void ExpectAllReadable() {
    client::ClientOptions options;
    options.master_addresses = MasterAddresses();
    options.cluster_name = kCluster;
    auto fresh = client::Client::Connect(options);
    ASSERT_THAT(fresh, IsOk());
    for (client::Client* c : {client_.get(), fresh->get()}) {
      for (const auto& [oid, want] : committed_) {
        absl::StatusOr<client::LoadResult> got = c->Load(oid);
        ASSERT_THAT(got, IsOk()) << "oid " << oid;
        EXPECT_EQ(got->data, want.data) << "oid " << oid;
        EXPECT_EQ(got->serial, want.tid) << "oid " << oid;
      }
    }
  }

  // Waits until master `i` is primary and the client sees RUNNING.
  void AwaitTakeover(int i, absl::Time since) {
    ASSERT_THAT(masters_[i]->AwaitPrimary(kTakeoverBound), IsOk());
    const absl::Time end = since + kTakeoverBound;
    while (!(client_->connected() && client_->cluster_state() == v1::CLUSTER_RUNNING) &&
           absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(client_->cluster_state(), v1::CLUSTER_RUNNING);
    for (auto& s : storages_) {
      ASSERT_THAT(s->WaitUntilServing(end - absl::Now()), IsOk());
    }
    takeover_time_ = absl::Now() - since;
  }

  // LockTransaction on storage `s` with `epoch`, as a master would send it.
  absl::Status LockWithEpoch(int s, uint64_t epoch) {
    auto stub = v1::Storage::NewStub(common::MakeChannel(storages_[s]->address()));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    v1::LockTransactionRequest request;
    request.set_epoch(epoch);
    request.set_ttid(12345);
    request.set_tid(12346);
    v1::LockTransactionResponse response;
    return common::FromGrpcStatus(stub->LockTransaction(&context, request, &response));
  }

  absl::Status MasterInfo(int i, v1::GetClusterInfoResponse* response) {
    auto stub = v1::Master::NewStub(common::MakeChannel(masters_[i]->address()));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    return common::FromGrpcStatus(
        stub->GetClusterInfo(&context, v1::GetClusterInfoRequest(), response));
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus MasterHealth(int i) {
    auto stub = grpc::health::v1::Health::NewStub(common::MakeChannel(masters_[i]->address()));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("cellar.v1.Master");
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(stub->Check(&context, request, &response).ok());
    return response.status();
  }

  // Starts both masters (0 first: it wins), the storages and the client,
  // and commits a first batch.
  void StartCluster() {
    ASSERT_NO_FATAL_FAILURE(StartMaster(0));
    ASSERT_NO_FATAL_FAILURE(StartMaster(1));
    ASSERT_TRUE(masters_[0]->is_primary());
    ASSERT_FALSE(masters_[1]->is_primary());
    ASSERT_NO_FATAL_FAILURE(StartStorages());
    ASSERT_NO_FATAL_FAILURE(ConnectClient());
    ASSERT_NO_FATAL_FAILURE(CommitSome(10, "before"));
  }

  std::string lease_db_;
  std::unique_ptr<testing_support::TestBackends> backends_;
  std::vector<std::unique_ptr<master::MasterServer>> masters_;
  std::vector<master::PostgresLeaseElection*> elections_;
  std::atomic<int> lost_[2] = {0, 0};
  std::vector<std::unique_ptr<storage::StorageServer>> storages_;
  std::unique_ptr<client::Client> client_;
  std::map<uint64_t, Committed> committed_;
  absl::Duration takeover_time_;
};

// failure-scenarios.md: "Two masters started at the same time against an
// empty cluster: exactly one cluster is created".
TEST_F(FailoverTest, MastersStartedTogetherCreateExactlyOneCluster) {
  absl::Barrier* start = new absl::Barrier(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([this, i, start] {
      if (start->Block()) delete start;
      StartMaster(i);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(masters_[0] && masters_[1]);
  const int primary = Primary();
  ASSERT_GE(primary, 0);
  const int standby = 1 - primary;
  EXPECT_EQ(masters_[standby]->cluster(), nullptr);
  EXPECT_EQ(masters_[standby]->epoch(), 0u);
  EXPECT_EQ(MasterHealth(primary), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(MasterHealth(standby), grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  ASSERT_NO_FATAL_FAILURE(StartStorages());
  ASSERT_NO_FATAL_FAILURE(ConnectClient());
  ASSERT_NO_FATAL_FAILURE(CommitSome(3, "one"));

  // One cluster: the primary's, and every storage holds its table and epoch.
  v1::GetClusterInfoResponse info;
  ASSERT_THAT(MasterInfo(primary, &info), IsOk());
  EXPECT_EQ(info.cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_EQ(info.epoch(), masters_[primary]->epoch());
  for (auto& s : storages_) {
    EXPECT_EQ(s->node().epoch(), masters_[primary]->epoch());
    EXPECT_EQ(s->node().partition_table()->ptid(), info.partition_table().ptid());
  }
  // The standby created nothing and names the primary.
  absl::Status refused = MasterInfo(standby, &info);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr(absl::StrCat("not the primary (primary is ",
                                                       masters_[primary]->address(), ")"))));
  EXPECT_EQ(masters_[standby]->cluster(), nullptr);
}

// The primary "crashes": it stops renewing (lease left to expire) and its
// server goes away. The standby takes over after the lease expires.
TEST_F(FailoverTest, StandbyTakesOverFromACrashedPrimary) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t old_epoch = masters_[0]->epoch();
  // A standby refuses and names the primary.
  v1::GetClusterInfoResponse info;
  EXPECT_THAT(MasterInfo(1, &info),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("primary is ", masters_[0]->address()))));

  // The client committed through ttids its previous Finish handed out,
  // and holds one of the old primary's: it must not use it after the
  // takeover (the storages refuse its token), but Begin with the new one.
  EXPECT_GT(client_->stats().preallocated_ttids_used, 0u);
  const absl::Time crash = absl::Now();
  elections_[0]->Abandon();
  masters_[0]->Shutdown();
  ASSERT_NO_FATAL_FAILURE(AwaitTakeover(1, crash));
  EXPECT_GE(takeover_time_, absl::ZeroDuration());
  std::cerr << "takeover after a crash: " << takeover_time_ << "\n";
  EXPECT_EQ(masters_[1]->epoch(), old_epoch + 1);
  EXPECT_GE(client_->session_count(), 2u);

  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());
  ASSERT_NO_FATAL_FAILURE(CommitSome(5, "after"));
  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());

  // Fencing: the deposed primary's epoch is refused by every storage; the
  // new one passes the epoch check (then finds no such transaction).
  for (int s = 0; s < kStorages; ++s) {
    const absl::Status stale = LockWithEpoch(s, old_epoch);
    EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_EQ(common::ErrorReason(stale), common::kReasonStaleEpoch) << stale;
    const absl::Status current = LockWithEpoch(s, masters_[1]->epoch());
    EXPECT_NE(common::ErrorReason(current), common::kReasonStaleEpoch) << current;
  }
}

// The cluster token table (docs/security.md, "Cluster tokens") lives on
// the storages: a standby taking over from a crashed primary recovers it
// from their registrations, revoked tokens still revoked, and changes go
// on from there.
TEST_F(FailoverTest, ClusterTokensSurviveAFailover) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  // One rpc of master m (10 s deadline).
  auto call = [this](int m, auto method, const auto& request, auto* response) {
    auto stub = v1::Master::NewStub(common::MakeChannel(masters_[m]->address()));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    return common::FromGrpcStatus((stub.get()->*method)(&context, request, response));
  };
  auto create = [&](int m, const std::string& name) {
    v1::CreateTokenRequest request;
    request.set_name(name);
    request.set_role(v1::TOKEN_ROLE_CLIENT);
    v1::CreateTokenResponse response;
    EXPECT_THAT(call(m, &v1::Master::Stub::CreateToken, request, &response), IsOk());
    return response.info().id();
  };
  auto revoke = [&](int m, const std::string& id) {
    v1::RevokeTokenRequest request;
    request.set_id(id);
    v1::RevokeTokenResponse response;
    return call(m, &v1::Master::Stub::RevokeToken, request, &response);
  };
  // Token id -> revoked, as master m lists them.
  auto list = [&](int m) {
    v1::ListTokensResponse response;
    EXPECT_THAT(call(m, &v1::Master::Stub::ListTokens, v1::ListTokensRequest(), &response),
                IsOk());
    std::map<std::string, bool> out;
    for (const v1::TokenInfo& info : response.tokens()) out[info.id()] = info.revoked();
    return out;
  };
  const std::string kept = create(0, "kept");
  const std::string gone = create(0, "gone");
  ASSERT_THAT(revoke(0, gone), IsOk());

  const absl::Time crash = absl::Now();
  elections_[0]->Abandon();
  masters_[0]->Shutdown();
  ASSERT_NO_FATAL_FAILURE(AwaitTakeover(1, crash));
  EXPECT_EQ(list(1), (std::map<std::string, bool>{{kept, false}, {gone, true}}));

  ASSERT_THAT(revoke(1, kept), IsOk());
  EXPECT_THAT(revoke(1, "0badc0de"), StatusIs(absl::StatusCode::kNotFound));
  const std::string late = create(1, "late");
  EXPECT_EQ(list(1), (std::map<std::string, bool>{{kept, true}, {gone, true}, {late, false}}));
}

// The primary cannot renew (as if cut off from the lease database): it
// steps down on its own before the lease expires — refusing calls, ending
// its streams, reporting the loss — and the standby takes over.
TEST_F(FailoverTest, PrimaryThatCannotRenewStepsDownAndStandbyTakesOver) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t old_epoch = masters_[0]->epoch();
  const absl::Time cut = absl::Now();
  elections_[0]->Abandon();  // no more renewals; the process keeps running
  ASSERT_NO_FATAL_FAILURE(AwaitTakeover(1, cut));
  std::cerr << "takeover after a lost lease: " << takeover_time_ << "\n";
  EXPECT_EQ(lost_[0].load(), 1);
  EXPECT_FALSE(masters_[0]->is_primary());
  EXPECT_THAT(masters_[0]->lost_status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(MasterHealth(0), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  v1::GetClusterInfoResponse info;
  EXPECT_THAT(MasterInfo(0, &info), StatusIs(absl::StatusCode::kUnavailable,
                                             HasSubstr("lost the primary lease")));
  EXPECT_EQ(masters_[1]->epoch(), old_epoch + 1);

  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());
  ASSERT_NO_FATAL_FAILURE(CommitSome(5, "after"));
  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());
  for (int s = 0; s < kStorages; ++s) {
    EXPECT_EQ(common::ErrorReason(LockWithEpoch(s, old_epoch)), common::kReasonStaleEpoch);
  }
  EXPECT_EQ(lost_[1].load(), 0);
}

// failure-scenarios.md: "The primary master dies before vote, during
// finish". Commits keep running while the primary crashes: every commit
// that was acknowledged, before or after, is readable afterwards at its
// tid; commits that failed during the takeover were reported as failures
// (outcome unknown to the client, see docs/failover.md).
TEST_F(FailoverTest, AcknowledgedCommitsSurviveACrashUnderLoad) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  absl::Mutex mu;
  std::map<uint64_t, Committed> acked;  // guarded by mu
  std::thread committer([&] {
    for (int i = 0; !stop; ++i) {
      const std::string data = absl::StrCat("load-", i);
      absl::StatusOr<uint64_t> oid = client_->NewOid();
      if (!oid.ok()) {
        ++failures;
        absl::SleepFor(absl::Milliseconds(20));
        continue;
      }
      auto txn = client_->NewTransaction();
      txn->Store(*oid, 0, data);
      absl::StatusOr<uint64_t> tid = txn->Commit();
      if (tid.ok()) {
        absl::MutexLock l(&mu);
        acked[*oid] = {*tid, data};
      } else {
        ++failures;
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
  });
  auto acked_count = [&] {
    absl::MutexLock l(&mu);
    return acked.size();
  };
  const absl::Time start = absl::Now();
  while (acked_count() < 20 && absl::Now() < start + absl::Seconds(20)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE(acked_count(), 20u);

  const absl::Time crash = absl::Now();
  elections_[0]->Abandon();
  masters_[0]->Shutdown();
  const size_t before = acked_count();
  ASSERT_NO_FATAL_FAILURE(AwaitTakeover(1, crash));
  // Commits resume on the new primary.
  const absl::Time resume = absl::Now();
  while (acked_count() < before + 20 && absl::Now() < resume + absl::Seconds(20)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  stop = true;
  committer.join();
  EXPECT_GE(acked_count(), before + 20);
  std::cerr << "acknowledged " << acked_count() << " commits (" << before
            << " before the crash), " << failures.load() << " failed during the takeover\n";
  {
    absl::MutexLock l(&mu);
    for (const auto& [oid, c] : acked) committed_[oid] = c;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());
}

// A clean shutdown hands the lease over at once: no wait for expiry.
TEST_F(FailoverTest, ShutdownHandsOverWithoutWaitingForTheLease) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const uint64_t old_epoch = masters_[0]->epoch();
  const absl::Time stop = absl::Now();
  masters_[0]->Shutdown();
  ASSERT_THAT(masters_[1]->AwaitPrimary(kLease), IsOk());
  EXPECT_LT(absl::Now() - stop, kLease);
  ASSERT_NO_FATAL_FAILURE(AwaitTakeover(1, stop));
  EXPECT_EQ(masters_[1]->epoch(), old_epoch + 1);
  EXPECT_EQ(lost_[0].load(), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());
  ASSERT_NO_FATAL_FAILURE(CommitSome(3, "after"));

  // The old master comes back (a restarted process): it is a standby now.
  masters_[0].reset();
  ASSERT_NO_FATAL_FAILURE(StartMaster(0));
  EXPECT_FALSE(masters_[0]->is_primary());
  EXPECT_TRUE(masters_[1]->is_primary());
  ASSERT_NO_FATAL_FAILURE(CommitSome(2, "later"));
  ASSERT_NO_FATAL_FAILURE(ExpectAllReadable());
}

}  // namespace
}  // namespace cellar
