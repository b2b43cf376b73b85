// Multi-node integration tests: a real in-process cluster (1 master, 3
// storage nodes, replicas = 1, every node a gRPC server on port 0) and the
// real client library, on SQLite and on PostgreSQL.
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/common/ttid_token.h"
#include "tests/integration/cluster_helpers.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;

constexpr int kStorages = 3;
constexpr uint32_t kPartitions = 6;

class ClusterTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
  }

  void SetUp() override {
    backends_ = testing_support::MakeTestBackends(GetParam(), kStorages);
    ASSERT_TRUE(backends_.ok()) << backends_.status();
    StartCluster();
  }

  void StartCluster() {
    tools::LocalClusterOptions options;
    options.storages = kStorages;
    options.replicas = 1;
    options.partitions = kPartitions;
    options.cluster_name = "itest";
    options.storage_backends = (*backends_)->uris();
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  std::unique_ptr<client::Client> Connect() {
    client::ClientOptions options;
    options.master_addresses = {cluster_->master_address()};
    options.cluster_name = "itest";
    auto c = client::Client::Connect(options);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Commits {oid: data} over the given serials; returns the tid.
  absl::StatusOr<uint64_t> Put(client::Client& c, uint64_t oid, uint64_t base,
                               const std::string& data) {
    auto txn = c.NewTransaction();
    txn->Store(oid, base, data);
    return txn->Commit();
  }

  // c's current revision of `oid` once it is `serial` (bounded wait: the
  // commit reaches c's snapshot through its Watch stream).
  static absl::StatusOr<client::LoadResult> AwaitRevision(client::Client& c, uint64_t oid,
                                                         uint64_t serial) {
    absl::StatusOr<client::LoadResult> loaded;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    do {
      loaded = c.Load(oid);
      if (loaded.ok() && loaded->serial == serial) return loaded;
      absl::SleepFor(absl::Milliseconds(20));
    } while (absl::Now() < deadline);
    if (!loaded.ok()) return loaded.status();
    return absl::DeadlineExceededError(absl::StrCat("after 10 s, oid ", oid, " is at serial ",
                                                    loaded->serial, ", not ", serial));
  }

  absl::StatusOr<std::unique_ptr<testing_support::TestBackends>> backends_;
  std::unique_ptr<tools::LocalCluster> cluster_;
};

TEST_P(ClusterTest, CommitAndReadBack) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto oid = c->NewOid();
  ASSERT_THAT(oid, IsOk());
  auto txn = c->NewTransaction();
  txn->Store(*oid, 0, std::string("hello\0world", 11));
  txn->Store(0, 0, "root");
  txn->SetUser("alice");
  txn->SetDescription("first commit");
  auto tid = txn->Commit();
  ASSERT_THAT(tid, IsOk());
  EXPECT_GE(c->snapshot(), *tid);

  auto loaded = c->Load(*oid);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->data, std::string("hello\0world", 11));
  EXPECT_EQ(loaded->serial, *tid);
  EXPECT_EQ(loaded->next_serial, 0u);

  // A second client reads it too, from the storages (cold cache).
  auto other = Connect();
  ASSERT_NE(other, nullptr);
  auto root = other->Load(0);
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->data, "root");

  auto txns = other->LastTransactions(5);
  ASSERT_THAT(txns, IsOk());
  ASSERT_FALSE(txns->empty());
  EXPECT_EQ(txns->front().tid(), *tid);
  EXPECT_EQ(txns->front().user(), "alice");
  EXPECT_EQ(txns->front().description(), "first commit");
  EXPECT_EQ(txns->front().oids_size(), 2);
  // All its data (11 + 4 bytes), whichever storages hold the objects.
  EXPECT_EQ(txns->front().size_bytes(), 15u);

  // Single-object commits: each record says its own size, though the
  // object is usually on other storages than the record.
  std::vector<uint64_t> tids;
  for (int i = 0; i < 5; ++i) {
    auto put_oid = c->NewOid();
    ASSERT_THAT(put_oid, IsOk());
    auto put = Put(*c, *put_oid, 0, std::string(7 + i, 'x'));
    ASSERT_THAT(put, IsOk());
    tids.push_back(*put);
  }
  // `other` lists what its snapshot holds: wait for the invalidations of
  // c's commits to reach it.
  ASSERT_TRUE(testing_support::WaitFor([&] { return other->snapshot() >= tids.back(); },
                                       absl::Seconds(10)))
      << "the other client's snapshot did not reach the last commit within 10 s";
  txns = other->LastTransactions(5);
  ASSERT_THAT(txns, IsOk());
  ASSERT_EQ(txns->size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ((*txns)[i].tid(), tids[4 - i]);
    EXPECT_EQ((*txns)[i].size_bytes(), 7u + (4 - i)) << "transaction " << i;
  }

  auto history = other->History(*oid);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].serial(), *tid);
}

TEST_P(ClusterTest, ConflictCarriesCurrentSerialAndRetrySucceeds) {
  auto a = Connect();
  auto b = Connect();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const uint64_t oid = *a->NewOid();
  auto t0 = Put(*a, oid, 0, "v0");
  ASSERT_THAT(t0, IsOk());
  ASSERT_THAT(b->Sync(), IsOk());

  // Both read v0; a commits v1 first.
  auto t1 = Put(*a, oid, *t0, "v1-from-a");
  ASSERT_THAT(t1, IsOk());
  auto conflict = Put(*b, oid, *t0, "v1-from-b");
  ASSERT_THAT(conflict, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(common::ErrorReason(conflict.status()), "CONFLICT");
  auto detail = common::GetConflict(conflict.status());
  ASSERT_TRUE(detail.has_value()) << conflict.status();
  EXPECT_EQ(detail->oid, oid);
  EXPECT_EQ(detail->current_serial, *t1);
  EXPECT_EQ(detail->base_serial, *t0);

  // Retry on the serial the conflict named.
  auto t2 = Put(*b, oid, detail->current_serial, "v2-from-b");
  ASSERT_THAT(t2, IsOk());
  ASSERT_THAT(a->Sync(), IsOk());
  auto latest = a->Load(oid);
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(latest->data, "v2-from-b");
  EXPECT_EQ(latest->serial, *t2);
}

TEST_P(ClusterTest, ConcurrentDisjointCommitsCompleteInTidOrder) {
  auto watcher = Connect();
  ASSERT_NE(watcher, nullptr);
  absl::Mutex mu;
  std::vector<uint64_t> seen;
  watcher->SetInvalidationListener([&](uint64_t tid, const std::vector<uint64_t>&) {
    absl::MutexLock l(&mu);
    seen.push_back(tid);
  });

  constexpr int kThreads = 4;
  constexpr int kPerThread = 15;
  std::vector<std::unique_ptr<client::Client>> clients;
  for (int i = 0; i < kThreads; ++i) clients.push_back(Connect());
  std::vector<std::vector<uint64_t>> tids(kThreads);
  std::vector<absl::Status> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < kPerThread; ++n) {
        auto oid = clients[i]->NewOid();
        if (!oid.ok()) {
          errors[i] = oid.status();
          return;
        }
        auto tid = Put(*clients[i], *oid, 0, absl::StrCat("t", i, "-", n));
        if (!tid.ok()) {
          errors[i] = tid.status();
          return;
        }
        tids[i].push_back(*tid);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint64_t> all;
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_THAT(errors[i], IsOk());
    // Each client's own commits got increasing tids.
    EXPECT_TRUE(std::is_sorted(tids[i].begin(), tids[i].end()));
    all.insert(tids[i].begin(), tids[i].end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  ASSERT_THAT(watcher->Sync(), IsOk());
  absl::MutexLock l(&mu);
  // The watcher saw every commit, in strictly increasing tid order.
  EXPECT_EQ(seen.size(), all.size());
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
}

TEST_P(ClusterTest, MvccSnapshotReads) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t oid = *c->NewOid();
  auto t1 = Put(*c, oid, 0, "one");
  ASSERT_THAT(t1, IsOk());
  auto t2 = Put(*c, oid, *t1, "two");
  ASSERT_THAT(t2, IsOk());
  auto t3 = Put(*c, oid, *t2, "three");
  ASSERT_THAT(t3, IsOk());

  auto at_t2 = c->LoadBefore(oid, *t2 + 1);
  ASSERT_THAT(at_t2, IsOk());
  EXPECT_EQ(at_t2->data, "two");
  EXPECT_EQ(at_t2->serial, *t2);
  EXPECT_EQ(at_t2->next_serial, *t3);

  auto before_t2 = c->LoadBefore(oid, *t2);
  ASSERT_THAT(before_t2, IsOk());
  EXPECT_EQ(before_t2->data, "one");
  EXPECT_EQ(before_t2->next_serial, *t2);

  auto exact = c->LoadSerial(oid, *t1);
  ASSERT_THAT(exact, IsOk());
  EXPECT_EQ(exact->data, "one");

  auto too_early = c->LoadBefore(oid, *t1);
  ASSERT_THAT(too_early, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(too_early.status()), "NO_EARLIER_REVISION");
  auto no_such = c->LoadSerial(oid, *t1 + 1);
  EXPECT_THAT(no_such, StatusIs(absl::StatusCode::kNotFound));

  auto current = c->Load(oid);
  ASSERT_THAT(current, IsOk());
  EXPECT_EQ(current->data, "three");
  auto history = c->History(oid);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ((*history)[0].serial(), *t3);
  EXPECT_EQ((*history)[2].serial(), *t1);
}

TEST_P(ClusterTest, InvalidationsReachOtherClientsBeforeTheyReadNewer) {
  auto writer = Connect();
  auto reader = Connect();
  ASSERT_NE(writer, nullptr);
  ASSERT_NE(reader, nullptr);
  const uint64_t oid = *writer->NewOid();
  auto t1 = Put(*writer, oid, 0, "old");
  ASSERT_THAT(t1, IsOk());
  ASSERT_THAT(reader->Sync(), IsOk());
  auto cached = reader->Load(oid);  // now in the reader's cache
  ASSERT_THAT(cached, IsOk());
  EXPECT_EQ(cached->data, "old");

  absl::Notification invalidated;
  std::vector<uint64_t> got_oids;
  uint64_t got_tid = 0;
  reader->SetInvalidationListener([&](uint64_t tid, const std::vector<uint64_t>& oids) {
    if (!invalidated.HasBeenNotified()) {
      got_tid = tid;
      got_oids = oids;
      invalidated.Notify();
    }
  });
  auto t2 = Put(*writer, oid, *t1, "new");
  ASSERT_THAT(t2, IsOk());
  ASSERT_TRUE(invalidated.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "the reader never got the invalidation";
  EXPECT_EQ(got_tid, *t2);
  EXPECT_THAT(got_oids, ElementsAre(oid));
  EXPECT_GE(reader->snapshot(), *t2);
  // The cache entry was invalidated: the reader sees the new revision.
  auto fresh = reader->Load(oid);
  ASSERT_THAT(fresh, IsOk());
  EXPECT_EQ(fresh->data, "new");
  EXPECT_EQ(fresh->serial, *t2);
  // And the old snapshot still reads the old one.
  auto old = reader->LoadBefore(oid, *t2);
  ASSERT_THAT(old, IsOk());
  EXPECT_EQ(old->data, "old");
}

TEST_P(ClusterTest, AbortLeavesNothingAndReleasesNothingHeld) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t oid = *c->NewOid();
  auto txn = c->NewTransaction();
  txn->Store(oid, 0, "never");
  txn->Abort();
  auto missing = c->Load(oid);
  ASSERT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  // A conflicting commit aborts on the storages too: its stores are gone
  // and the object can be written by the next transaction.
  auto t1 = Put(*c, oid, 0, "v1");
  ASSERT_THAT(t1, IsOk());
  EXPECT_THAT(Put(*c, oid, 0, "stale"), StatusIs(absl::StatusCode::kAborted));
  auto t2 = Put(*c, oid, *t1, "v2");
  ASSERT_THAT(t2, IsOk());
  auto history = c->History(oid);
  ASSERT_THAT(history, IsOk());
  EXPECT_EQ(history->size(), 2u);
}

// Raw protocol access, for what the client library never does on purpose.
class RawClient {
 public:
  explicit RawClient(const std::string& master)
      : master_(cellar::v1::Master::NewStub(common::MakeChannel(master))) {}

  uint32_t node_id() const { return node_id_; }

  absl::Status Register() {
    grpc::ClientContext ctx;
    common::SetDeadline(&ctx, absl::Seconds(5));
    cellar::v1::RegisterNodeRequest req;
    req.set_cluster_name("itest");
    req.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    req.set_role(cellar::v1::NODE_ROLE_CLIENT);
    cellar::v1::RegisterNodeResponse resp;
    absl::Status s = common::FromGrpcStatus(master_->RegisterNode(&ctx, req, &resp));
    if (!s.ok()) return s;
    node_id_ = resp.node_id();
    watch_ctx_ = std::make_unique<grpc::ClientContext>();
    cellar::v1::WatchRequest watch;
    watch.set_node_id(node_id_);
    reader_ = master_->Watch(watch_ctx_.get(), watch);
    cellar::v1::ClusterEvent first;
    if (!reader_->Read(&first) || !first.has_snapshot()) {
      return absl::UnavailableError("no snapshot");
    }
    snapshot_ = first.snapshot();
    return absl::OkStatus();
  }

  // Ends the Watch stream, as a crashed client would.
  void Disconnect() {
    watch_ctx_->TryCancel();
    cellar::v1::ClusterEvent e;
    while (reader_->Read(&e)) {
    }
    reader_->Finish().IgnoreError();
  }

  absl::StatusOr<uint64_t> Begin() {
    grpc::ClientContext ctx;
    common::SetDeadline(&ctx, absl::Seconds(5));
    cellar::v1::BeginRequest req;
    req.set_node_id(node_id_);
    cellar::v1::BeginResponse resp;
    absl::Status s = common::FromGrpcStatus(master_->Begin(&ctx, req, &resp));
    if (!s.ok()) return s;
    tokens_[resp.ttid()] = resp.ttid_token();
    return resp.ttid();
  }

  // Stores (without voting) on every writable cell of partition(oid), with
  // the ttid token Begin gave (or `token` if set).
  absl::Status StoreEverywhere(uint64_t ttid, uint64_t oid, const std::string& data,
                               const std::string& checksum,
                               std::optional<std::string> token = std::nullopt) {
    auto pt = common::PartitionTable::FromProto(snapshot_.partition_table());
    if (!pt.ok()) return pt.status();
    for (uint32_t node : pt->WritableNodes(pt->PartitionOf(oid))) {
      std::string address;
      for (const auto& n : snapshot_.nodes()) {
        if (n.node_id() == node) address = n.address();
      }
      auto stub = cellar::v1::Storage::NewStub(common::MakeChannel(address));
      grpc::ClientContext ctx;
      common::SetDeadline(&ctx, absl::Seconds(5));
      cellar::v1::StoreRequest req;
      req.set_ttid(ttid);
      req.set_ttid_token(token.has_value() ? *token : tokens_[ttid]);
      req.set_client_node_id(node_id_);
      auto* obj = req.add_objects();
      obj->set_oid(oid);
      obj->set_data(data);
      obj->set_checksum(checksum);
      cellar::v1::StoreResponse resp;
      absl::Status s = common::FromGrpcStatus(stub->Store(&ctx, req, &resp));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<common::PartitionTable> Table() const {
    return common::PartitionTable::FromProto(snapshot_.partition_table());
  }

  // Commits `data` as `oid` (a new revision of `base_serial`) the way the
  // client library does (store and vote on every writable cell, conflict
  // checks, every touched partition's voters), except that the Finish and
  // the transaction record name `claimed_oids` as what it changed. With
  // `stray_oid`, that new object is also stored on the voters that hold a
  // writable cell of its partition, which the Finish leaves out.
  absl::StatusOr<uint64_t> CommitClaiming(uint64_t ttid, uint64_t oid, uint64_t base_serial,
                                          const std::string& data,
                                          const std::vector<uint64_t>& claimed_oids,
                                          uint64_t stray_oid = 0) {
    auto pt = Table();
    if (!pt.ok()) return pt.status();
    const uint32_t object_partition = pt->PartitionOf(oid);
    const uint32_t record_partition = static_cast<uint32_t>(ttid % pt->num_partitions());
    cellar::v1::FinishRequest finish;
    finish.set_node_id(node_id_);
    finish.set_ttid(ttid);
    finish.set_ptid(pt->ptid());
    finish.mutable_oids()->Add(claimed_oids.begin(), claimed_oids.end());
    std::map<uint32_t, std::set<uint32_t>> voters;
    std::set<uint32_t> nodes;
    for (uint32_t p : {object_partition, record_partition}) {
      for (uint32_t node : pt->WritableNodes(p)) {
        nodes.insert(node);
        voters[p].insert(node);
      }
    }
    for (uint32_t node : nodes) {
      const std::vector<uint32_t> object_nodes = pt->WritableNodes(object_partition);
      const std::vector<uint32_t> record_nodes = pt->WritableNodes(record_partition);
      cellar::v1::StoreRequest req;
      req.set_ttid(ttid);
      req.set_ttid_token(tokens_[ttid]);
      req.set_client_node_id(node_id_);
      req.set_vote(true);
      if (std::count(object_nodes.begin(), object_nodes.end(), node) > 0) {
        auto* obj = req.add_objects();
        obj->set_oid(oid);
        obj->set_base_serial(base_serial);
        obj->set_data(data);
        obj->set_checksum(common::Checksum(data));
      }
      if (std::count(record_nodes.begin(), record_nodes.end(), node) > 0) {
        req.mutable_metadata()->mutable_oids()->Add(claimed_oids.begin(), claimed_oids.end());
      }
      const std::vector<uint32_t> stray_nodes = pt->WritableNodes(pt->PartitionOf(stray_oid));
      if (stray_oid != 0 && std::count(stray_nodes.begin(), stray_nodes.end(), node) > 0) {
        auto* obj = req.add_objects();
        obj->set_oid(stray_oid);
        obj->set_data("stray");
        obj->set_checksum(common::Checksum("stray"));
      }
      grpc::ClientContext ctx;
      common::SetDeadline(&ctx, absl::Seconds(5));
      cellar::v1::StoreResponse resp;
      absl::Status s = common::FromGrpcStatus(
          cellar::v1::Storage::NewStub(common::MakeChannel(AddressOf(node)))
              ->Store(&ctx, req, &resp));
      if (!s.ok()) return s;
      for (uint32_t p : resp.checked_partitions()) {
        auto* check = finish.add_conflict_checks();
        check->set_partition(p);
        check->set_node_id(node);
        check->set_ptid(resp.checked_ptid());
      }
    }
    for (const auto& [p, ids] : voters) {
      auto* v = finish.add_partition_voters();
      v->set_partition(p);
      v->mutable_node_ids()->Add(ids.begin(), ids.end());
    }
    grpc::ClientContext ctx;
    common::SetDeadline(&ctx, absl::Seconds(20));
    cellar::v1::FinishResponse finished;
    absl::Status s = common::FromGrpcStatus(master_->Finish(&ctx, finish, &finished));
    if (!s.ok()) return s;
    return finished.tid();
  }

  // Storage `node`'s answer to Load(oid) of its newest revision.
  absl::Status LoadFrom(uint32_t node, uint64_t oid) {
    grpc::ClientContext ctx;
    common::SetDeadline(&ctx, absl::Seconds(5));
    cellar::v1::LoadRequest req;
    req.set_oid(oid);
    req.set_before_tid(common::kMaxTid);
    cellar::v1::LoadResponse resp;
    return common::FromGrpcStatus(
        cellar::v1::Storage::NewStub(common::MakeChannel(AddressOf(node)))
            ->Load(&ctx, req, &resp));
  }

  // The oids storage `node`'s transaction record of `tid` lists, sorted.
  absl::StatusOr<std::vector<uint64_t>> RecordOidsOn(uint32_t node, uint64_t tid) {
    grpc::ClientContext ctx;
    common::SetDeadline(&ctx, absl::Seconds(5));
    cellar::v1::GetTransactionRequest req;
    req.set_tid(tid);
    cellar::v1::GetTransactionResponse resp;
    absl::Status s = common::FromGrpcStatus(
        cellar::v1::Storage::NewStub(common::MakeChannel(AddressOf(node)))
            ->GetTransaction(&ctx, req, &resp));
    if (!s.ok()) return s;
    std::vector<uint64_t> oids(resp.transaction().oids().begin(),
                               resp.transaction().oids().end());
    std::sort(oids.begin(), oids.end());
    return oids;
  }

 private:
  std::string AddressOf(uint32_t node) const {
    for (const auto& n : snapshot_.nodes()) {
      if (n.node_id() == node) return n.address();
    }
    return "";
  }

  std::unique_ptr<cellar::v1::Master::Stub> master_;
  uint32_t node_id_ = 0;
  std::unique_ptr<grpc::ClientContext> watch_ctx_;
  std::unique_ptr<grpc::ClientReader<cellar::v1::ClusterEvent>> reader_;
  cellar::v1::ClusterSnapshot snapshot_;
  // ttid -> BeginResponse.ttid_token.
  std::map<uint64_t, std::string> tokens_;
};

// A client that leaves an object it changed out of its Finish cannot leave
// the other clients' caches stale: the invalidation lists what the storages
// stored (docs/protocol.md, "Finish").
TEST_P(ClusterTest, AnObjectLeftOutOfTheFinishIsInvalidatedAllTheSame) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t oid = *c->NewOid();
  auto first = Put(*c, oid, 0, "v1");
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(c->Load(oid)->data, "v1");  // now in c's cache

  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  auto tid = raw.CommitClaiming(*ttid, oid, *first, "v2", /*claimed_oids=*/{});
  ASSERT_THAT(tid, IsOk());
  raw.Disconnect();

  // c learns of the commit (its snapshot passes tid) and drops its copy.
  auto loaded = AwaitRevision(*c, oid, *tid);
  ASSERT_THAT(loaded, IsOk()) << "c still serves the revision the commit replaced";
  EXPECT_EQ(loaded->data, "v2");
}

// The transaction record lists what the commit committed, not the oids its
// client sent with the vote (here: one it never stored, and not the one it
// did): LastTransactions / GetTransaction cannot be made to lie.
TEST_P(ClusterTest, TheTransactionRecordListsWhatWasCommittedNotWhatTheClientSaid) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto pt = raw.Table();
  ASSERT_THAT(pt, IsOk());
  const uint64_t oid = *c->NewOid();
  // An oid of the same partition the client claims but never stores.
  uint64_t phantom = 0;
  for (int i = 0; i < 1000 && phantom == 0; ++i) {
    const uint64_t candidate = *c->NewOid();
    if (pt->PartitionOf(candidate) == pt->PartitionOf(oid)) phantom = candidate;
  }
  ASSERT_NE(phantom, 0u);
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  auto tid = raw.CommitClaiming(*ttid, oid, 0, "stored", /*claimed_oids=*/{phantom});
  ASSERT_THAT(tid, IsOk());
  raw.Disconnect();
  ASSERT_THAT(AwaitRevision(*c, oid, *tid), IsOk());
  const uint32_t record_partition = static_cast<uint32_t>(*ttid % pt->num_partitions());
  // Corrected with the (asynchronous) unlock: bounded wait.
  for (uint32_t node : pt->WritableNodes(record_partition)) {
    absl::StatusOr<std::vector<uint64_t>> listed;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    do {
      listed = raw.RecordOidsOn(node, *tid);
      if (listed.ok() && *listed == std::vector<uint64_t>{oid}) break;
      absl::SleepFor(absl::Milliseconds(20));
    } while (absl::Now() < deadline);
    ASSERT_THAT(listed, IsOk());
    EXPECT_THAT(*listed, ::testing::ElementsAre(oid))
        << "S" << node << "'s record lists the client's oids, not the committed ones";
  }
}

// Objects a client stores for a partition it leaves out of its Finish are
// not committed anywhere, not even on the storages that lock the commit for
// the partitions it names: committed there alone, they would make those
// replicas differ from the partition's other cells.
TEST_P(ClusterTest, AnObjectOfAPartitionLeftOutOfTheFinishIsCommittedNowhere) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto pt = raw.Table();
  ASSERT_THAT(pt, IsOk());
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  const uint64_t oid = *c->NewOid();
  const uint32_t record_partition = static_cast<uint32_t>(*ttid % pt->num_partitions());
  std::set<uint32_t> voters;
  for (uint32_t p : {pt->PartitionOf(oid), record_partition}) {
    for (uint32_t node : pt->WritableNodes(p)) voters.insert(node);
  }
  // A partition the commit does not touch, with a cell on one of its voters.
  uint64_t stray = 0;
  for (int i = 0; i < 1000 && stray == 0; ++i) {
    const uint64_t candidate = *c->NewOid();
    const uint32_t p = pt->PartitionOf(candidate);
    if (p == pt->PartitionOf(oid) || p == record_partition) continue;
    for (uint32_t node : pt->WritableNodes(p)) {
      if (voters.count(node) > 0) stray = candidate;
    }
  }
  ASSERT_NE(stray, 0u) << "no partition outside the commit shares a storage with it";

  auto tid = raw.CommitClaiming(*ttid, oid, 0, "named", {oid}, stray);
  ASSERT_THAT(tid, IsOk());
  raw.Disconnect();
  ASSERT_THAT(AwaitRevision(*c, oid, *tid), IsOk());
  for (uint32_t node : pt->WritableNodes(pt->PartitionOf(stray))) {
    EXPECT_THAT(raw.LoadFrom(node, stray), StatusIs(absl::StatusCode::kNotFound))
        << "S" << node << " committed the object of the left-out partition";
  }
}

TEST_P(ClusterTest, ClientThatDisconnectsMidTransactionReleasesItsLocks) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t oid = *c->NewOid();
  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  ASSERT_THAT(raw.StoreEverywhere(*ttid, oid, "held", common::Checksum("held")), IsOk());

  // The older raw transaction holds the object's lock: a younger one
  // cannot take it (deadlock avoidance answers at once).
  auto blocked = Put(*c, oid, 0, "mine");
  ASSERT_THAT(blocked, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(common::ErrorReason(blocked.status()), "LOCK_CONTENTION");

  raw.Disconnect();
  // The master aborts the departed client's transaction on every storage;
  // the lock is released soon after.
  absl::StatusOr<uint64_t> tid;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    tid = Put(*c, oid, 0, "mine");
    if (tid.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  ASSERT_THAT(tid, IsOk()) << "the departed client's lock was never released";
  auto loaded = c->Load(oid);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->data, "mine");
}

// Storages refuse a Store under a ttid the primary did not issue (checked
// by its token, without asking the master): no lock taken, nothing stored.
TEST_P(ClusterTest, StoreWithoutAValidTtidTokenIsRefused) {
  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t oid = *c->NewOid();
  const std::string checksum = common::Checksum("forged");
  // A made-up (older) ttid, the real ttid with a token of another key, and
  // the real ttid with no token.
  const std::vector<std::pair<uint64_t, std::string>> forgeries = {
      {*ttid - 1000, ""},
      {*ttid, common::TtidToken(common::NewTtidKey(), *ttid)},
      {*ttid, ""}};
  for (const auto& [forged_ttid, token] : forgeries) {
    absl::Status s = raw.StoreEverywhere(forged_ttid, oid, "forged", checksum, token);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kPermissionDenied));
    EXPECT_EQ(common::ErrorReason(s), "BAD_TTID_TOKEN");
  }
  // The object is not locked: a younger transaction commits it at once.
  auto tid = Put(*c, oid, 0, "mine");
  ASSERT_THAT(tid, IsOk());
  EXPECT_EQ(c->Load(oid)->data, "mine");
  // The token Begin gave works (the object now has a newer serial: conflict).
  EXPECT_THAT(raw.StoreEverywhere(*ttid, oid, "late", common::Checksum("late")),
              StatusIs(absl::StatusCode::kAborted));
  raw.Disconnect();
}

// Requests past the documented limits are refused whole, with the field
// named, before anything is decided or held (the transaction stays open).
TEST_P(ClusterTest, OversizedFinishAndHeartbeatAreRefused) {
  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  auto master = cellar::v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext ctx;
    common::SetDeadline(&ctx, absl::Seconds(20));
    return common::FromGrpcStatus(((*master).*method)(&ctx, request, response));
  };
  cellar::v1::FinishRequest finish;
  finish.set_node_id(raw.node_id());
  finish.set_ttid(*ttid);
  finish.add_partition_voters()->set_partition(0);
  for (int i = 0; i < 1000001; ++i) finish.add_oids(static_cast<uint64_t>(i) + 1);
  cellar::v1::FinishResponse finished;
  absl::Status s = call(&cellar::v1::Master::Stub::Finish, finish, &finished);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("oids"));
  finish.clear_oids();
  for (int i = 0; i < 1000001; ++i) finish.add_partition_voters()->set_partition(0);
  s = call(&cellar::v1::Master::Stub::Finish, finish, &finished);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  // Still open: the client can abort it.
  cellar::v1::AbortRequest abort;
  abort.set_node_id(raw.node_id());
  abort.set_ttid(*ttid);
  cellar::v1::AbortResponse aborted;
  EXPECT_THAT(call(&cellar::v1::Master::Stub::Abort, abort, &aborted), IsOk());

  uint32_t storage = 0;
  cellar::v1::GetClusterInfoResponse info;
  ASSERT_THAT(call(&cellar::v1::Master::Stub::GetClusterInfo,
                   cellar::v1::GetClusterInfoRequest(), &info),
              IsOk());
  for (const auto& node : info.nodes()) {
    if (node.role() == cellar::v1::NODE_ROLE_STORAGE) storage = node.node_id();
  }
  ASSERT_NE(storage, 0u);
  cellar::v1::HeartbeatRequest beat;
  beat.set_node_id(storage);
  for (int i = 0; i < 10001; ++i) beat.add_stale_votes(static_cast<uint64_t>(i) + 1);
  cellar::v1::HeartbeatResponse beaten;
  s = call(&cellar::v1::Master::Stub::Heartbeat, beat, &beaten);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("stale_votes"));
  raw.Disconnect();
}

TEST_P(ClusterTest, CorruptedChecksumIsRejected) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t oid = *c->NewOid();
  RawClient raw(cluster_->master_address());
  ASSERT_THAT(raw.Register(), IsOk());
  auto ttid = raw.Begin();
  ASSERT_THAT(ttid, IsOk());
  absl::Status s = raw.StoreEverywhere(*ttid, oid, "payload", common::Checksum("other"));
  ASSERT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(common::ErrorReason(s), "CHECKSUM_MISMATCH");
  s = raw.StoreEverywhere(*ttid, oid, "payload", "short");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  raw.Disconnect();
  EXPECT_THAT(c->Load(oid), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(ClusterTest, UnknownOidIsNotFound) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto r = c->Load(0xdeadbeef);
  ASSERT_THAT(r, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(r.status()), "NO_SUCH_OBJECT");
}

TEST_P(ClusterTest, TransactionRecordBySizeAndDeletion) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto empty = c->Size();
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(empty->objects, 0u);
  EXPECT_EQ(empty->partitions, kPartitions);

  std::vector<uint64_t> oids;
  auto txn = c->NewTransaction();
  for (int i = 0; i < 8; ++i) {
    auto oid = c->NewOid();
    ASSERT_THAT(oid, IsOk());
    oids.push_back(*oid);
    txn->Store(*oid, 0, std::string(10 + i, 'd'));
  }
  txn->SetUser("alice");
  txn->SetDescription("eight objects");
  txn->SetExtension(std::string("\x80\x03}q\x00.", 6));
  auto tid = txn->Commit();
  ASSERT_THAT(tid, IsOk());

  // By tid, from whichever storage holds partition(tid) (replicas 1: two).
  auto record = c->GetTransaction(*tid);
  ASSERT_THAT(record, IsOk());
  EXPECT_EQ(record->tid(), *tid);
  EXPECT_EQ(record->user(), "alice");
  EXPECT_EQ(record->description(), "eight objects");
  EXPECT_EQ(record->extension(), std::string("\x80\x03}q\x00.", 6));
  EXPECT_EQ(record->oids_size(), 8);
  auto missing = c->GetTransaction(*tid + kPartitions);
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(missing.status()), "NO_SUCH_TRANSACTION");
  EXPECT_THAT(c->GetTransaction(0), StatusIs(absl::StatusCode::kInvalidArgument));

  // Sizes: each partition once, though every partition has two cells.
  auto size = c->Size();
  ASSERT_THAT(size, IsOk());
  EXPECT_EQ(size->objects, 8u);
  EXPECT_EQ(size->revisions, 8u);
  EXPECT_EQ(size->bytes, 8u * 10 + 28);
  EXPECT_EQ(size->partitions, kPartitions);
  EXPECT_EQ(size->num_partitions, kPartitions);

  // A deletion (empty data): loads as NOT_FOUND (OBJECT_DELETED), its
  // history shows it, and the object no longer counts.
  auto deleted = Put(*c, oids[0], *tid, "");
  ASSERT_THAT(deleted, IsOk());
  auto other = Connect();
  ASSERT_NE(other, nullptr);
  for (client::Client* reader : {c.get(), other.get()}) {
    auto gone = reader->Load(oids[0]);
    EXPECT_THAT(gone, StatusIs(absl::StatusCode::kNotFound,
                               ::testing::HasSubstr("was deleted by transaction")));
    EXPECT_EQ(common::ErrorReason(gone.status()), "OBJECT_DELETED");
    auto many = reader->LoadMany({oids[0], oids[1]});
    ASSERT_EQ(many.size(), 2u);
    EXPECT_EQ(common::ErrorReason(many[0].status()), "OBJECT_DELETED");
    EXPECT_THAT(many[1], IsOk());
  }
  EXPECT_THAT(other->LoadBefore(oids[0], *deleted), IsOk());
  auto history = other->History(oids[0]);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_TRUE((*history)[0].deleted());
  size = c->Size();
  ASSERT_THAT(size, IsOk());
  EXPECT_EQ(size->objects, 7u);
  EXPECT_EQ(size->revisions, 9u);
}

TEST_P(ClusterTest, RestartOnTheSameDataKeepsEverything) {
  std::map<uint64_t, std::string> written;
  uint64_t last_tid = 0;
  {
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < 20; ++i) {
      const uint64_t oid = *c->NewOid();
      written[oid] = absl::StrCat("object-", i);
      auto tid = Put(*c, oid, 0, written[oid]);
      ASSERT_THAT(tid, IsOk());
      last_tid = *tid;
    }
  }
  cluster_->Shutdown();
  cluster_.reset();
  StartCluster();

  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_GE(c->snapshot(), last_tid);
  for (const auto& [oid, data] : written) {
    auto loaded = c->Load(oid);
    ASSERT_THAT(loaded, IsOk()) << "oid " << oid;
    EXPECT_EQ(loaded->data, data);
  }
  // New OIDs and tids continue after the old ones.
  const uint64_t oid = *c->NewOid();
  EXPECT_GT(oid, written.rbegin()->first);
  auto tid = Put(*c, oid, 0, "after restart");
  ASSERT_THAT(tid, IsOk());
  EXPECT_GT(*tid, last_tid);
}

TEST_P(ClusterTest, ReadsSurviveTheLossOfOneReplica) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::vector<uint64_t> oids;
  for (int i = 0; i < 12; ++i) {
    const uint64_t oid = *c->NewOid();
    ASSERT_THAT(Put(*c, oid, 0, absl::StrCat("r", i)), IsOk());
    oids.push_back(oid);
  }
  cluster_->StopStorage(0);
  auto reader = Connect();
  ASSERT_NE(reader, nullptr);
  for (size_t i = 0; i < oids.size(); ++i) {
    auto loaded = reader->Load(oids[i]);
    ASSERT_THAT(loaded, IsOk()) << "oid " << oids[i];
    EXPECT_EQ(loaded->data, absl::StrCat("r", i));
  }
}

TEST_P(ClusterTest, LoadManyAnswersWhatLoadAnswersForEachObject) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::vector<uint64_t> oids;
  std::map<uint64_t, uint64_t> first_tid;
  for (int i = 0; i < 40; ++i) {
    const uint64_t oid = *c->NewOid();
    auto tid = Put(*c, oid, 0, absl::StrCat("v1-", i));
    ASSERT_THAT(tid, IsOk());
    first_tid[oid] = *tid;
    oids.push_back(oid);
  }
  // A second revision of every other object.
  uint64_t last_tid = 0;
  for (size_t i = 0; i < oids.size(); i += 2) {
    auto tid = Put(*c, oids[i], first_tid[oids[i]], absl::StrCat("v2-", i));
    ASSERT_THAT(tid, IsOk());
    last_tid = *tid;
  }
  // Larger objects than one answer's 8 MiB budget holds, an unknown oid
  // and a repeated one.
  std::vector<uint64_t> big;
  for (int i = 0; i < 3; ++i) {
    big.push_back(*c->NewOid());
    ASSERT_THAT(Put(*c, big.back(), 0, std::string(5 << 20, static_cast<char>('a' + i))),
                IsOk());
  }
  std::vector<uint64_t> asked = oids;
  asked.insert(asked.end(), big.begin(), big.end());
  asked.push_back(0xdeadbeef);
  asked.push_back(oids[3]);

  auto reader = Connect();  // a cold cache: everything from the storages
  ASSERT_NE(reader, nullptr);
  const std::vector<absl::StatusOr<client::LoadResult>> many = reader->LoadMany(asked);
  ASSERT_EQ(many.size(), asked.size());
  for (size_t i = 0; i < asked.size(); ++i) {
    auto one = c->Load(asked[i]);
    ASSERT_EQ(many[i].status().code(), one.status().code()) << "oid " << asked[i];
    if (!one.ok()) {
      EXPECT_EQ(common::ErrorReason(many[i].status()), "NO_SUCH_OBJECT");
      continue;
    }
    EXPECT_EQ(many[i]->oid, asked[i]);
    EXPECT_EQ(many[i]->serial, one->serial) << "oid " << asked[i];
    EXPECT_EQ(many[i]->data, one->data) << "oid " << asked[i];
  }
  EXPECT_EQ(reader->stats().checksum_failures, 0u);

  // At an earlier tid: the first revisions, and next_serial says what
  // replaced them.
  const auto before = reader->LoadManyBefore(oids, last_tid);
  ASSERT_EQ(before.size(), oids.size());
  for (size_t i = 0; i < oids.size(); ++i) {
    ASSERT_THAT(before[i], IsOk()) << "oid " << oids[i];
    if (i + 2 >= oids.size() && i % 2 == 0) {
      EXPECT_EQ(before[i]->data, absl::StrCat("v1-", i));  // the last update is at last_tid
    } else {
      EXPECT_EQ(before[i]->data, absl::StrCat(i % 2 == 0 ? "v2-" : "v1-", i));
    }
  }

  // Without one storage, the objects it held come from their replicas.
  cluster_->StopStorage(0);
  auto after = Connect();
  ASSERT_NE(after, nullptr);
  const auto degraded = after->LoadMany(oids);
  for (size_t i = 0; i < oids.size(); ++i) {
    ASSERT_THAT(degraded[i], IsOk()) << "oid " << oids[i];
    EXPECT_EQ(degraded[i]->data, absl::StrCat(i % 2 == 0 ? "v2-" : "v1-", i));
  }
}

TEST_P(ClusterTest, CheckCurrentFailsOnAStaleReadAndWritesNothing) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t read = *c->NewOid();
  auto t1 = Put(*c, read, 0, "v1");
  ASSERT_THAT(t1, IsOk());
  auto t2 = Put(*c, read, *t1, "v2");
  ASSERT_THAT(t2, IsOk());

  // Read at t1, written since: the commit fails with the current serial.
  auto stale = c->NewTransaction();
  stale->CheckCurrent(read, *t1);
  stale->Store(*c->NewOid(), 0, "depends on v1");
  auto refused = stale->Commit();
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(common::ErrorReason(refused.status()), "CONFLICT");
  auto conflict = common::GetConflict(refused.status());
  ASSERT_TRUE(conflict.has_value());
  EXPECT_EQ(conflict->oid, read);
  EXPECT_EQ(conflict->current_serial, *t2);
  EXPECT_EQ(conflict->base_serial, *t1);

  // Still current: commits, and the checked object is neither written nor
  // invalidated.
  const uint64_t written = *c->NewOid();
  auto fresh = c->NewTransaction();
  fresh->CheckCurrent(read, *t2);
  fresh->Store(written, 0, "depends on v2");
  auto t3 = fresh->Commit();
  ASSERT_THAT(t3, IsOk());
  auto reader = Connect();
  ASSERT_NE(reader, nullptr);
  auto loaded = reader->Load(read);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->serial, *t2);
  EXPECT_EQ(loaded->data, "v2");
  auto history = reader->History(read);
  ASSERT_THAT(history, IsOk());
  EXPECT_EQ(history->size(), 2u);
  auto txns = reader->LastTransactions(1);
  ASSERT_THAT(txns, IsOk());
  ASSERT_EQ(txns->size(), 1u);
  EXPECT_EQ(txns->front().tid(), *t3);
  EXPECT_THAT(txns->front().oids(), ElementsAre(written));
  // The lock was released: the checked object can be written again.
  EXPECT_THAT(Put(*c, read, *t2, "v3"), IsOk());
}

TEST_P(ClusterTest, LoadManyRefusesEmptyHugeAndUnboundedRequests) {
  auto stub = cellar::v1::Storage::NewStub(common::MakeChannel(cluster_->storage_address(0)));
  auto call = [&](const cellar::v1::LoadManyRequest& request) {
    cellar::v1::LoadManyResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    return common::FromGrpcStatus(stub->LoadMany(&context, request, &response));
  };
  cellar::v1::LoadManyRequest request;
  EXPECT_THAT(call(request), StatusIs(absl::StatusCode::kInvalidArgument));  // empty
  request.add_oids(1);
  EXPECT_THAT(call(request), StatusIs(absl::StatusCode::kInvalidArgument));  // before_tid 0
  request.set_before_tid(common::kMaxTid);
  for (int i = 0; i < 1000; ++i) request.add_oids(static_cast<uint64_t>(i));
  const absl::Status too_many = call(request);
  EXPECT_THAT(too_many, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(too_many.message()), ::testing::HasSubstr("oids"));
}

INSTANTIATE_TEST_SUITE_P(Backends, ClusterTest,
                         ::testing::ValuesIn(testing_support::TestBackendKinds()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace cellar
