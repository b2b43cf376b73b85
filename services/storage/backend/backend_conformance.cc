#include "services/storage/backend/backend_conformance.h"

// The test cases of the conformance suite. Conventions used throughout:
// kPartitions partitions, partition(oid) = oid % kPartitions and the
// transaction record of ttid lives in partition(ttid), as in semantics.md.
// Each case runs on a fresh, empty store.

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/status_matchers.h"

namespace cellar::storage {
namespace {

using ::cellar::common::Checksum;
using ::cellar::common::ErrorReason;
using ::cellar::common::IsOk;
using ::cellar::common::kMaxTid;
using ::cellar::common::kReasonNoEarlierRevision;
using ::cellar::common::kReasonNoSuchObject;
using ::cellar::common::kReasonNoSuchRevision;
using ::cellar::common::StatusIs;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::Eq;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

// Binds `lhs` to the value of a StatusOr or fails the test (fatally).
#define CONFORMANCE_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  CONFORMANCE_ASSERT_OK_AND_ASSIGN_IMPL_(           \
      CONFORMANCE_CONCAT_(conformance_statusor_, __LINE__), lhs, expr)
#define CONFORMANCE_CONCAT_INNER_(a, b) a##b
#define CONFORMANCE_CONCAT_(a, b) CONFORMANCE_CONCAT_INNER_(a, b)
#define CONFORMANCE_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                           \
  ASSERT_THAT(statusor, IsOk());                                    \
  lhs = std::move(statusor).value()

// A StatusOr that is OK and whose value matches `matcher`.
MATCHER_P(IsOkAndHolds, matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

constexpr uint32_t kPartitions = 3;
constexpr uint64_t kNoBound = 0;  // LastTransactions' "no before_tid"
constexpr uint64_t kUnbounded = std::numeric_limits<uint64_t>::max();

uint32_t PartitionOf(uint64_t id) { return id % kPartitions; }

// Realistic, strictly increasing TIDs (well above 32 bits).
uint64_t Tid(int n) { return 0x03f1a2b300000000 + uint64_t(n) * 0x1000; }

// NOT_FOUND carrying the ErrorInfo reason `reason`.
MATCHER_P(NotFoundWithReason, reason,
          absl::StrCat("is NOT_FOUND with reason ", std::string(reason))) {
  const absl::Status& s = ::cellar::common::GetStatus(arg);
  *result_listener << "whose status is " << s << " (reason \""
                   << ErrorReason(s) << "\")";
  return s.code() == absl::StatusCode::kNotFound &&
         ErrorReason(s) == std::string(reason);
}

ObjectRecord Obj(uint64_t oid, std::string data) {
  ObjectRecord r;
  r.partition = PartitionOf(oid);
  r.oid = oid;
  r.checksum = Checksum(data);
  r.data = std::move(data);
  return r;
}

// An undo record: no data of its own, re-uses revision `data_tid`'s.
ObjectRecord Undo(uint64_t oid, uint64_t data_tid, std::string checksum) {
  ObjectRecord r;
  r.partition = PartitionOf(oid);
  r.oid = oid;
  r.data_tid = data_tid;
  r.checksum = std::move(checksum);
  return r;
}

// A deletion: empty data, no back-pointer.
ObjectRecord Deletion(uint64_t oid) {
  ObjectRecord r;
  r.partition = PartitionOf(oid);
  r.oid = oid;
  return r;
}

std::vector<uint64_t> OidsOf(const std::vector<ObjectRecord>& objects) {
  std::vector<uint64_t> oids;
  for (const ObjectRecord& o : objects) oids.push_back(o.oid);
  return oids;
}

TransactionRecord Txn(uint64_t ttid, std::vector<uint64_t> oids,
                      std::string user = "user",
                      std::string description = "description") {
  TransactionRecord t;
  t.partition = PartitionOf(ttid);
  t.ttid = ttid;
  t.user = std::move(user);
  t.description = std::move(description);
  t.extension = "\x80\x03}q\x00.";  // an empty pickled dict, with a NUL
  t.extension.push_back('\0');
  t.oids = std::move(oids);
  return t;
}

// Objects plus the transaction record (this node holds partition(ttid)).
VoteRecord Vote(uint64_t ttid, std::vector<ObjectRecord> objects) {
  VoteRecord v;
  v.ttid = ttid;
  v.transaction = Txn(ttid, OidsOf(objects));
  v.objects = std::move(objects);
  return v;
}

// Objects only (another node holds partition(ttid)).
VoteRecord VoteObjectsOnly(uint64_t ttid, std::vector<ObjectRecord> objects) {
  VoteRecord v;
  v.ttid = ttid;
  v.objects = std::move(objects);
  return v;
}

// Vote then lock, ttid == tid (what a commit without contention looks like).
absl::Status Commit(StorageBackend& backend, uint64_t tid,
                    std::vector<ObjectRecord> objects) {
  absl::Status s = backend.StoreVotes({Vote(tid, std::move(objects))});
  if (!s.ok()) return s;
  return backend.LockTransactions({LockRecord{tid, tid}});
}

::testing::Matcher<LoadedObject> IsRevision(uint64_t oid, uint64_t serial,
                                            uint64_t next_serial,
                                            const std::string& data,
                                            uint64_t data_tid = 0) {
  return AllOf(Field("oid", &LoadedObject::oid, oid),
               Field("serial", &LoadedObject::serial, serial),
               Field("next_serial", &LoadedObject::next_serial, next_serial),
               Field("data", &LoadedObject::data, data),
               Field("checksum", &LoadedObject::checksum, Checksum(data)),
               Field("data_tid", &LoadedObject::data_tid, data_tid));
}

::testing::Matcher<HistoryEntry> IsHistory(uint64_t serial, uint64_t size,
                                           bool deleted = false,
                                           uint64_t data_tid = 0) {
  return AllOf(Field("serial", &HistoryEntry::serial, serial),
               Field("size_bytes", &HistoryEntry::size_bytes, size),
               Field("deleted", &HistoryEntry::deleted, deleted),
               Field("data_tid", &HistoryEntry::data_tid, data_tid));
}

// A committed transaction record as Txn(ttid, oids, ...) made it.
::testing::Matcher<TransactionRecord> IsTxn(uint64_t tid, uint64_t ttid,
                                            std::vector<uint64_t> oids,
                                            std::string user = "user") {
  TransactionRecord expected = Txn(ttid, oids, user);
  return AllOf(Field("partition", &TransactionRecord::partition,
                     expected.partition),
               Field("tid", &TransactionRecord::tid, tid),
               Field("ttid", &TransactionRecord::ttid, ttid),
               Field("user", &TransactionRecord::user, expected.user),
               Field("description", &TransactionRecord::description,
                     expected.description),
               Field("extension", &TransactionRecord::extension,
                     expected.extension),
               Field("oids", &TransactionRecord::oids, ElementsAreArray(oids)),
               Field("packed", &TransactionRecord::packed, false));
}

::testing::Matcher<TransactionRecord> HasTid(uint64_t tid) {
  return Field("tid", &TransactionRecord::tid, tid);
}

// A committed object record as returned by ListObjects (not resolved).
::testing::Matcher<ObjectRecord> IsObject(uint64_t oid, uint64_t tid,
                                          const std::string& data,
                                          uint64_t data_tid = 0) {
  return AllOf(Field("partition", &ObjectRecord::partition, PartitionOf(oid)),
               Field("oid", &ObjectRecord::oid, oid),
               Field("tid", &ObjectRecord::tid, tid),
               Field("data", &ObjectRecord::data, data),
               Field("data_tid", &ObjectRecord::data_tid, data_tid));
}

::testing::Matcher<CellRecord> IsCell(uint32_t partition, uint32_t node_id,
                                      int state) {
  return AllOf(Field("partition", &CellRecord::partition, partition),
               Field("node_id", &CellRecord::node_id, node_id),
               Field("state", &CellRecord::state, state));
}

}  // namespace

// Readable failures of the PartitionStats expectations.
void PrintTo(const PartitionStats& s, std::ostream* os) {
  *os << "{partition " << s.partition << ", objects " << s.objects << ", revisions "
      << s.revisions << ", bytes " << s.bytes << "}";
}

namespace {

std::string AllByteValues() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

// The counts GetPartitionStats must give, computed the slow way from the
// committed object records.
std::vector<PartitionStats> ScannedStats(StorageBackend& backend) {
  std::vector<PartitionStats> out;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    absl::StatusOr<std::vector<ObjectRecord>> records =
        backend.ListObjects(p, 0, kMaxTid, 100000);
    EXPECT_THAT(records, IsOk());
    if (!records.ok() || records->empty()) continue;
    PartitionStats stats;
    stats.partition = p;
    std::map<uint64_t, const ObjectRecord*> latest;
    for (const ObjectRecord& r : *records) {
      ++stats.revisions;
      stats.bytes += r.data.size();
      const ObjectRecord*& l = latest[r.oid];
      if (l == nullptr || l->tid < r.tid) l = &r;
    }
    for (const auto& [oid, r] : latest) {
      stats.objects += (r->data.empty() && r->data_tid == 0) ? 0 : 1;
    }
    out.push_back(stats);
  }
  return out;
}

}  // namespace

void PrintTo(const BackendConformanceParam& param, std::ostream* os) {
  *os << param.name;
}

std::string BackendConformanceParamName(
    const ::testing::TestParamInfo<BackendConformanceParam>& info) {
  return info.param.name;
}

void BackendConformanceTest::SetUp() {
  auto store = GetParam().make_store();
  ASSERT_THAT(store, IsOk());
  store_ = *std::move(store);
  auto backend = store_->Open();
  ASSERT_THAT(backend, IsOk());
  backend_ = *std::move(backend);
}

void BackendConformanceTest::TearDown() {
  backend_.reset();
  store_.reset();
}

void BackendConformanceTest::Reopen() {
  backend_.reset();
  auto backend = store_->Open();
  ASSERT_THAT(backend, IsOk());
  backend_ = *std::move(backend);
}

// --- Basics ---

TEST_P(BackendConformanceTest, KindNamesTheDatabase) {
  // The in-memory test fake (services/storage/testing) names no database.
  if (GetParam().name == "memory") {
    EXPECT_EQ(backend_->Kind(), "memory");
    return;
  }
  EXPECT_THAT(backend_->Kind(), AnyOf("sqlite", "postgresql"));
}

TEST_P(BackendConformanceTest, FreshStoreIsEmpty) {
  EXPECT_THAT(backend_->GetConfig("name"), IsOkAndHolds(Eq(std::optional<std::string>())));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(PartitionTableRecord pt,
                                   backend_->LoadPartitionTable());
  EXPECT_EQ(pt.ptid, 0u);
  EXPECT_THAT(pt.cells, IsEmpty());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, 0u);
  EXPECT_EQ(ids.last_oid, 0u);
  EXPECT_EQ(ids.last_ttid, 0u);
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 0u);
  EXPECT_EQ(stats.transaction_count, 0u);
  EXPECT_EQ(stats.data_bytes, 0u);
  EXPECT_EQ(stats.data_rows, 0u);
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(1)), IsOkAndHolds(0u));
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {1, 2}),
              IsOkAndHolds(ElementsAre(0u, 0u)));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->LoadSerial(1, 1, Tid(1)),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->History(1, 1, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListTransactions(0, 0, kMaxTid, 10),
              IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListObjects(0, 0, kMaxTid, 10), IsOkAndHolds(IsEmpty()));
}

// --- Configuration ---

TEST_P(BackendConformanceTest, ConfigGetSetOverwrite) {
  EXPECT_THAT(backend_->GetConfig("cluster"), IsOkAndHolds(Eq(std::optional<std::string>())));
  ASSERT_THAT(backend_->SetConfig("cluster", "prod"), IsOk());
  ASSERT_THAT(backend_->SetConfig("node_id", "7"), IsOk());
  EXPECT_THAT(backend_->GetConfig("cluster"),
              IsOkAndHolds(Optional(std::string("prod"))));
  ASSERT_THAT(backend_->SetConfig("cluster", "staging"), IsOk());
  EXPECT_THAT(backend_->GetConfig("cluster"),
              IsOkAndHolds(Optional(std::string("staging"))));
  EXPECT_THAT(backend_->GetConfig("node_id"),
              IsOkAndHolds(Optional(std::string("7"))));
  // An empty value is a value, not "absent".
  ASSERT_THAT(backend_->SetConfig("empty", ""), IsOk());
  EXPECT_THAT(backend_->GetConfig("empty"), IsOkAndHolds(Optional(std::string())));
  // Values are bytes.
  const std::string binary = AllByteValues();
  ASSERT_THAT(backend_->SetConfig("binary", binary), IsOk());
  EXPECT_THAT(backend_->GetConfig("binary"), IsOkAndHolds(Optional(binary)));
  // Keys are exact.
  EXPECT_THAT(backend_->GetConfig("Cluster"), IsOkAndHolds(Eq(std::optional<std::string>())));
}

// --- Partition table ---

TEST_P(BackendConformanceTest, PartitionTableSaveLoadReplace) {
  PartitionTableRecord pt;
  pt.ptid = 5;
  pt.cells = {{0, 1, 1}, {0, 2, 2}, {1, 1, 1}, {2, 3, 4}};
  ASSERT_THAT(backend_->SavePartitionTable(pt), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(PartitionTableRecord loaded,
                                   backend_->LoadPartitionTable());
  EXPECT_EQ(loaded.ptid, 5u);
  EXPECT_THAT(loaded.cells,
              UnorderedElementsAre(IsCell(0, 1, 1), IsCell(0, 2, 2),
                                   IsCell(1, 1, 1), IsCell(2, 3, 4)));

  // A save replaces the whole table, it doesn't merge.
  PartitionTableRecord replacement;
  replacement.ptid = 6;
  replacement.cells = {{0, 2, 1}, {1, 4, 3}};
  ASSERT_THAT(backend_->SavePartitionTable(replacement), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(loaded, backend_->LoadPartitionTable());
  EXPECT_EQ(loaded.ptid, 6u);
  EXPECT_THAT(loaded.cells,
              UnorderedElementsAre(IsCell(0, 2, 1), IsCell(1, 4, 3)));

  // Large ids round-trip.
  PartitionTableRecord big;
  big.ptid = (uint64_t{1} << 62) + 3;
  big.cells = {{4000000000u, 4000000001u, 2}};
  ASSERT_THAT(backend_->SavePartitionTable(big), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(loaded, backend_->LoadPartitionTable());
  EXPECT_EQ(loaded.ptid, big.ptid);
  EXPECT_THAT(loaded.cells,
              ElementsAre(IsCell(4000000000u, 4000000001u, 2)));
}

// --- Commit path ---

TEST_P(BackendConformanceTest, StoreVotesThenLockMakesDataVisible) {
  const uint64_t ttid = Tid(10);
  const uint64_t tid = Tid(11);  // the final tid may be above the ttid
  ASSERT_THAT(backend_->StoreVotes({Vote(ttid, {Obj(1, "one"), Obj(2, "two")})}),
              IsOk());

  // Voted but not locked: invisible to every read.
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->LoadSerial(2, 2, tid),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {1, 2}),
              IsOkAndHolds(ElementsAre(0u, 0u)));
  EXPECT_THAT(backend_->History(1, 1, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListObjects(1, 0, kMaxTid, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListTransactions(PartitionOf(ttid), 0, kMaxTid, 10),
              IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->FindCommittedTid(ttid), IsOkAndHolds(0u));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(ttid)));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 0u);
  EXPECT_EQ(stats.transaction_count, 0u);
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, 0u);
  EXPECT_EQ(ids.last_oid, 2u);
  EXPECT_EQ(ids.last_ttid, ttid);

  ASSERT_THAT(backend_->LockTransactions({LockRecord{ttid, tid}}), IsOk());

  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, tid, 0, "one")));
  EXPECT_THAT(backend_->LoadSerial(2, 2, tid),
              IsOkAndHolds(IsRevision(2, tid, 0, "two")));
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {1, 2}),
              IsOkAndHolds(ElementsAre(tid, tid)));
  EXPECT_THAT(backend_->FindCommittedTid(ttid), IsOkAndHolds(tid));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(tid, ttid, {1, 2}))));
  EXPECT_THAT(backend_->ListTransactions(PartitionOf(ttid), 0, kMaxTid, 10),
              IsOkAndHolds(ElementsAre(IsTxn(tid, ttid, {1, 2}))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 2u);
  EXPECT_EQ(stats.transaction_count, 1u);
  EXPECT_EQ(stats.data_bytes, 6u);
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, tid);
  EXPECT_EQ(ids.last_oid, 2u);
  EXPECT_EQ(ids.last_ttid, 0u);
}

TEST_P(BackendConformanceTest, VotesAndLocksApplyInBatches) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "a1")}),
                                    Vote(Tid(2), {Obj(2, "b2"), Obj(3, "c2")}),
                                    VoteObjectsOnly(Tid(3), {Obj(4, "d3")})}),
              IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(),
              IsOkAndHolds(UnorderedElementsAre(Tid(1), Tid(2), Tid(3))));
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(1)}, {Tid(2), Tid(4)}}),
              IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(Tid(3))));
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {1, 2, 3, 4}),
              IsOkAndHolds(ElementsAre(Tid(1), Tid(4), Tid(4), 0u)));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(4), Tid(2), {2, 3}),
                                   IsTxn(Tid(1), Tid(1), {1}))));
}

TEST_P(BackendConformanceTest, VoteWithoutTransactionRecord) {
  // This node holds the objects but not partition(ttid).
  const uint64_t ttid = Tid(1);
  ASSERT_THAT(backend_->StoreVotes({VoteObjectsOnly(ttid, {Obj(5, "five")})}),
              IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(ttid)));
  ASSERT_THAT(backend_->LockTransactions({{ttid, Tid(2)}}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(5), 5, kUnbounded),
              IsOkAndHolds(IsRevision(5, Tid(2), 0, "five")));
  EXPECT_THAT(backend_->FindCommittedTid(ttid), IsOkAndHolds(0u));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, VoteWithOnlyTransactionRecord) {
  // This node holds partition(ttid) but none of the objects.
  const uint64_t ttid = Tid(1);
  VoteRecord vote;
  vote.ttid = ttid;
  vote.transaction = Txn(ttid, {7, 8});
  ASSERT_THAT(backend_->StoreVotes({vote}), IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(ttid)));
  EXPECT_THAT(backend_->FindCommittedTid(ttid), IsOkAndHolds(0u));
  ASSERT_THAT(backend_->LockTransactions({{ttid, Tid(2)}}), IsOk());
  EXPECT_THAT(backend_->FindCommittedTid(ttid), IsOkAndHolds(Tid(2)));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(2), ttid, {7, 8}))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 0u);
  EXPECT_EQ(stats.transaction_count, 1u);
}

TEST_P(BackendConformanceTest, AbortDropsTemporaryRecords) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "x")}),
                                    Vote(Tid(2), {Obj(2, "y")})}),
              IsOk());
  ASSERT_THAT(backend_->AbortTransaction(Tid(1)), IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(Tid(2))));
  // Aborting twice, or something unknown, is a no-op.
  EXPECT_THAT(backend_->AbortTransaction(Tid(1)), IsOk());
  EXPECT_THAT(backend_->AbortTransaction(Tid(99)), IsOk());
  // Locking an aborted ttid finds nothing to move.
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(3)}}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(1)), IsOkAndHolds(0u));
  // The other vote is untouched.
  ASSERT_THAT(backend_->LockTransactions({{Tid(2), Tid(4)}}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(4), 0, "y")));
  ASSERT_THAT(backend_->AbortTransaction(Tid(2)), IsOk());  // after lock
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(4), 0, "y")));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_ttid, 0u);
}

TEST_P(BackendConformanceTest, ReVoteReplacesTemporaryRecords) {
  const uint64_t ttid = Tid(1);
  ASSERT_THAT(backend_->StoreVotes({Vote(ttid, {Obj(1, "old1"), Obj(2, "old2")})}),
              IsOk());
  VoteRecord revote = Vote(ttid, {Obj(3, "new3"), Obj(1, "new1")});
  revote.transaction->user = "second";
  ASSERT_THAT(backend_->StoreVotes({revote}), IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(ttid)));
  ASSERT_THAT(backend_->LockTransactions({{ttid, Tid(2)}}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, "new1")));
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->LoadBefore(0, 3, kUnbounded),
              IsOkAndHolds(IsRevision(3, Tid(2), 0, "new3")));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(2), ttid, {3, 1}, "second"))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 2u);
}

// --- Object bytes: written once at vote, never copied, never leaked ---
//
// BackendStats::data_rows counts the stored bytes: one row per committed or
// temporary object record with data (deletions and undo records have
// none).

namespace {

uint64_t DataRows(StorageBackend& backend) {
  absl::StatusOr<BackendStats> stats = backend.GetStats();
  EXPECT_THAT(stats, IsOk());
  return stats.ok() ? stats->data_rows : ~uint64_t{0};
}

}  // namespace

TEST_P(BackendConformanceTest, AbortFreesTheVotesData) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "kept")}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(2), {Obj(1, "a"), Obj(2, "b"),
                                                  Deletion(3)}),
                                    VoteObjectsOnly(Tid(3), {Obj(4, "c")})}),
              IsOk());
  EXPECT_EQ(DataRows(*backend_), 4u);
  ASSERT_THAT(backend_->AbortTransaction(Tid(2)), IsOk());
  EXPECT_EQ(DataRows(*backend_), 2u);
  ASSERT_THAT(backend_->AbortTransaction(Tid(3)), IsOk());
  EXPECT_EQ(DataRows(*backend_), 1u);
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(1), 0, "kept")));
  // Durably so.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(DataRows(*backend_), 1u);
}

TEST_P(BackendConformanceTest, ReVoteReplacesTheVotesData) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "old1"), Obj(2, "old2"),
                                                  Obj(3, "old3")})}),
              IsOk());
  EXPECT_EQ(DataRows(*backend_), 3u);
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "new1"), Deletion(2)})}),
              IsOk());
  EXPECT_EQ(DataRows(*backend_), 1u);
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(2)}}), IsOk());
  EXPECT_EQ(DataRows(*backend_), 1u);
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, "new1")));
  EXPECT_THAT(backend_->History(2, 2, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(2), 0, true))));
  EXPECT_THAT(backend_->LoadBefore(0, 3, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
}

// A lock naming the commit's partitions commits only the objects of those:
// the others (stored for a partition the client's Finish left out) go with
// their bytes, so that this replica does not differ from the others.
TEST_P(BackendConformanceTest, LockCommitsOnlyTheNamedPartitions) {
  ASSERT_NE(PartitionOf(1), PartitionOf(2));
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "in"), Obj(2, "left out")})}),
              IsOk());
  EXPECT_EQ(DataRows(*backend_), 2u);
  LockRecord lock{Tid(1), Tid(2)};
  lock.partitions = {PartitionOf(1), PartitionOf(Tid(1))};
  ASSERT_THAT(backend_->LockTransactions({lock}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(1), 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, "in")));
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(2), 2, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_EQ(DataRows(*backend_), 1u);
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(::testing::IsEmpty()));
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(Tid(2)));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(DataRows(*backend_), 1u);
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(2), 2, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
}

// The master corrects a committed record whose client listed other oids
// than the commit committed: only that record changes, durably.
TEST_P(BackendConformanceTest, SetTransactionOidsRewritesOnlyThatRecord) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "a")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(2, "b")}), IsOk());
  ASSERT_THAT(backend_->SetTransactionOids(PartitionOf(Tid(1)), Tid(1), {1, 5}), IsOk());
  // No record there: nothing happens.
  ASSERT_THAT(backend_->SetTransactionOids(PartitionOf(Tid(1)), Tid(9), {7}), IsOk());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  auto first = backend_->GetTransaction(Tid(1));
  ASSERT_THAT(first, IsOk());
  ASSERT_TRUE(first->has_value());
  EXPECT_THAT((*first)->oids, ::testing::ElementsAre(1u, 5u));
  auto second = backend_->GetTransaction(Tid(2));
  ASSERT_THAT(second, IsOk());
  ASSERT_TRUE(second->has_value());
  EXPECT_THAT((*second)->oids, ::testing::ElementsAre(2u));
  auto none = backend_->GetTransaction(Tid(9));
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
}

// The lock record keeps the partitions the lock committed, durably: a
// later primary completes the commit on the other voters with them (a
// lock without them would commit what they hold of left-out partitions).
TEST_P(BackendConformanceTest, LockRecordKeepsTheCommittedPartitions) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "a")}), Vote(Tid(3), {Obj(2, "b")})}),
              IsOk());
  LockRecord scoped{Tid(1), Tid(2)};
  scoped.partitions = {PartitionOf(1), PartitionOf(Tid(1))};
  ASSERT_THAT(backend_->LockTransactions({scoped, {Tid(3), Tid(4)}}), IsOk());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  absl::StatusOr<LockRecord> lock = backend_->GetLock(Tid(1));
  ASSERT_THAT(lock, IsOk());
  EXPECT_EQ(lock->ttid, Tid(1));
  EXPECT_EQ(lock->tid, Tid(2));
  EXPECT_THAT(lock->partitions, ::testing::ElementsAreArray(scoped.partitions));
  // Without partitions (every stored object): none come back.
  lock = backend_->GetLock(Tid(3));
  ASSERT_THAT(lock, IsOk());
  EXPECT_EQ(lock->tid, Tid(4));
  EXPECT_THAT(lock->partitions, ::testing::IsEmpty());
  // Never locked here.
  lock = backend_->GetLock(Tid(9));
  ASSERT_THAT(lock, IsOk());
  EXPECT_EQ(lock->tid, 0u);
  EXPECT_THAT(lock->partitions, ::testing::IsEmpty());
}

TEST_P(BackendConformanceTest, LockMovesNoDataAndLoadsReturnIt) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "first"), Obj(2, "two")}),
              IsOk());
  EXPECT_EQ(DataRows(*backend_), 2u);
  const std::string big(300000, 'z');  // beyond one database page
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(2), {Obj(1, big),
                                                  Undo(2, Tid(1), Checksum("two")),
                                                  Deletion(4)})}),
              IsOk());
  EXPECT_EQ(DataRows(*backend_), 3u);
  ASSERT_THAT(backend_->LockTransactions({{Tid(2), Tid(3)}}), IsOk());
  // The lock wrote no bytes: the same rows, now committed.
  EXPECT_EQ(DataRows(*backend_), 3u);
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(3), 0, big)));
  EXPECT_THAT(backend_->LoadSerial(1, 1, Tid(1)),
              IsOkAndHolds(IsRevision(1, Tid(1), Tid(3), "first")));
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(3), 0, "two", Tid(1))));
  EXPECT_THAT(backend_->History(1, 1, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(3), big.size()),
                                       IsHistory(Tid(1), 5))));
  EXPECT_THAT(backend_->History(2, 2, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(3), 3, false, Tid(1)),
                                       IsHistory(Tid(1), 3))));
  EXPECT_THAT(backend_->History(1, 4, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(3), 0, true))));
  EXPECT_THAT(backend_->ListObjects(1, Tid(3), Tid(3), 10),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(3), big),
                                       IsObject(4, Tid(3), ""))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 5u);
  EXPECT_EQ(stats.data_bytes, 5u + 3u + big.size());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(3), 0, big)));
}

TEST_P(BackendConformanceTest, TruncateAndDeletePartitionLeaveNoOrphanData) {
  // Objects 0..5 in partitions 0, 1, 2, two revisions each.
  for (int i = 1; i <= 4; ++i) {
    std::vector<ObjectRecord> objects;
    for (uint64_t oid = 0; oid < 6; ++oid) {
      objects.push_back(Obj(oid, absl::StrCat("v", i, "-", oid)));
    }
    if (i == 4) objects.push_back(Deletion(6));
    ASSERT_THAT(Commit(*backend_, Tid(i), std::move(objects)), IsOk());
  }
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(5), {Obj(1, "pending")})}), IsOk());
  EXPECT_EQ(DataRows(*backend_), 4u * 6 + 1);

  ASSERT_THAT(backend_->DeletePartition(1), IsOk());
  EXPECT_EQ(DataRows(*backend_), 4u * 4 + 1);  // the vote keeps its bytes
  ASSERT_THAT(backend_->Truncate(Tid(2)), IsOk());
  EXPECT_EQ(DataRows(*backend_), 2u * 4);  // and truncate drops them
  EXPECT_THAT(backend_->LoadBefore(0, 3, kUnbounded),
              IsOkAndHolds(IsRevision(3, Tid(2), 0, "v2-3")));
  ASSERT_THAT(backend_->Truncate(0), IsOk());
  EXPECT_EQ(DataRows(*backend_), 0u);
}

TEST_P(BackendConformanceTest, MigratesThePreviousSchemaKeepingEveryRecord) {
  const std::string big(100000, 'B');  // beyond one database page
  // Committed: revisions of oid 1 (the last an undo), a deletion, a large
  // object, an imported revision; and a vote (with a deletion) not locked.
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "one"), Obj(2, big)}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(1, "uno"), Deletion(3)}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Undo(1, Tid(1), Checksum("one"))}),
              IsOk());
  ObjectRecord imported = Obj(5, "five");
  imported.tid = Tid(3);
  ASSERT_THAT(backend_->ImportCommitted({}, {imported}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(4), {Obj(2, "two"), Deletion(4)})}),
              IsOk());
  backend_.reset();
  const absl::Status restored = store_->RestorePreviousSchema();
  if (restored.code() == absl::StatusCode::kUnimplemented) {
    GTEST_SKIP() << restored;
  }
  ASSERT_THAT(restored, IsOk());

  ASSERT_NO_FATAL_FAILURE(Reopen());  // migrates

  EXPECT_THAT(backend_->GetConfig("schema_version"),
              IsOkAndHolds(Optional(absl::StrCat(kSchemaVersion))));
  EXPECT_THAT(backend_->LoadSerial(1, 1, Tid(1)),
              IsOkAndHolds(IsRevision(1, Tid(1), Tid(2), "one")));
  EXPECT_THAT(backend_->LoadSerial(1, 1, Tid(2)),
              IsOkAndHolds(IsRevision(1, Tid(2), Tid(3), "uno")));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(3), 0, "one", Tid(1))));
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(1), 0, big)));
  EXPECT_THAT(backend_->History(1, 1, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(3), 3, false, Tid(1)),
                                       IsHistory(Tid(2), 3), IsHistory(Tid(1), 3))));
  EXPECT_THAT(backend_->History(0, 3, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(2), 0, true))));
  EXPECT_THAT(backend_->ListObjects(2, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(2, Tid(1), big),
                                       IsObject(5, Tid(3), "five"))));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(3), Tid(3), {1}),
                                       IsTxn(Tid(2), Tid(2), {1, 3}),
                                       IsTxn(Tid(1), Tid(1), {1, 2}))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 6u);
  EXPECT_EQ(stats.transaction_count, 3u);
  EXPECT_EQ(stats.data_bytes, 3u + big.size() + 3u + 4u);
  EXPECT_EQ(stats.data_rows, 4u + 1u);  // committed and voted bytes
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{0, 0, 1, 0},
                                       PartitionStats{1, 1, 3, 6},
                                       PartitionStats{2, 2, 2, big.size() + 4})));
  // The vote survived with its bytes: it locks and loads.
  EXPECT_THAT(backend_->ListVotedObjects(),
              IsOkAndHolds(ElementsAre(VotedTransaction{Tid(4), {2, 4}})));
  ASSERT_THAT(backend_->LockTransactions({{Tid(4), Tid(5)}}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(5), 0, "two")));
  EXPECT_THAT(backend_->History(1, 4, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(5), 0, true))));
  // New bytes get ids of their own.
  ASSERT_THAT(Commit(*backend_, Tid(6), {Obj(6, "six")}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(0, 6, kUnbounded),
              IsOkAndHolds(IsRevision(6, Tid(6), 0, "six")));
  EXPECT_THAT(backend_->LoadSerial(2, 2, Tid(1)),
              IsOkAndHolds(IsRevision(2, Tid(1), Tid(5), big)));
  EXPECT_EQ(DataRows(*backend_), 6u);
}

TEST_P(BackendConformanceTest, LockIsIdempotent) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "v")})}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(2)}}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(2)}}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(2)}, {Tid(1), Tid(2)}}),
              IsOk());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, "v")));
  EXPECT_THAT(backend_->History(1, 1, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(2), 1))));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(1)), IsOkAndHolds(Tid(2)));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 1u);
  EXPECT_EQ(stats.transaction_count, 1u);
  // A ttid this node never saw is skipped.
  ASSERT_THAT(backend_->LockTransactions({{Tid(5), Tid(6)}}), IsOk());
  EXPECT_THAT(backend_->FindCommittedTid(Tid(5)), IsOkAndHolds(0u));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 1u);
  EXPECT_EQ(stats.transaction_count, 1u);
}

TEST_P(BackendConformanceTest, LockRejectsBadTidAtomically) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "a")}),
                                    Vote(Tid(2), {Obj(2, "b")})}),
              IsOk());
  // A tid above kMaxTid doesn't fit the schema; 0 is "no tid". The whole
  // batch is refused: the good lock in it is not applied either.
  EXPECT_THAT(backend_->LockTransactions({{Tid(1), Tid(1)}, {Tid(2), kMaxTid + 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->LockTransactions({{Tid(1), Tid(1)}, {Tid(2), 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->ListVotedTransactions(),
              IsOkAndHolds(UnorderedElementsAre(Tid(1), Tid(2))));
}

TEST_P(BackendConformanceTest, EmptyBatchesAreNoOps) {
  EXPECT_THAT(backend_->StoreVotes({}), IsOk());
  EXPECT_THAT(backend_->LockTransactions({}), IsOk());
  EXPECT_THAT(backend_->ImportCommitted({}, {}), IsOk());
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {}), IsOkAndHolds(IsEmpty()));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 0u);
}

TEST_P(BackendConformanceTest, ListVotedTransactions) {
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(3), {Obj(1, "a")}),
                                    VoteObjectsOnly(Tid(1), {Obj(2, "b")})}),
              IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(2), {})}), IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(),
              IsOkAndHolds(UnorderedElementsAre(Tid(1), Tid(2), Tid(3))));
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(4)}}), IsOk());
  ASSERT_THAT(backend_->AbortTransaction(Tid(3)), IsOk());
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(Tid(2))));
}

TEST_P(BackendConformanceTest, ListVotedObjectsGivesTheOidsOfEachVote) {
  const uint64_t big = (uint64_t{1} << 62) + 4;  // partition 2 of 3
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(3), {Obj(7, "a"), Obj(1, "b"), Obj(big, "c")}),
                                    VoteObjectsOnly(Tid(1), {Obj(2, "d")})}),
              IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(2), {})}), IsOk());
  const auto all = ElementsAre(VotedTransaction{Tid(1), {2}}, VotedTransaction{Tid(2), {}},
                               VotedTransaction{Tid(3), {1, 7, big}});
  EXPECT_THAT(backend_->ListVotedObjects(), IsOkAndHolds(all));
  // What a restarted node reads to take the object locks again.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->ListVotedObjects(), IsOkAndHolds(all));
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(4)}}), IsOk());
  ASSERT_THAT(backend_->AbortTransaction(Tid(2)), IsOk());
  EXPECT_THAT(backend_->ListVotedObjects(),
              IsOkAndHolds(ElementsAre(VotedTransaction{Tid(3), {1, 7, big}})));
  ASSERT_THAT(backend_->Truncate(Tid(4)), IsOk());
  EXPECT_THAT(backend_->ListVotedObjects(), IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, FindCommittedTid) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "a")}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(2), {Obj(2, "b")}),
                                    Vote(Tid(3), {Obj(3, "c")})}),
              IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(2), Tid(5)}, {Tid(3), Tid(4)}}),
              IsOk());
  EXPECT_THAT(backend_->FindCommittedTid(Tid(1)), IsOkAndHolds(Tid(1)));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(2)), IsOkAndHolds(Tid(5)));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(3)), IsOkAndHolds(Tid(4)));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(4)), IsOkAndHolds(0u));  // a tid
  EXPECT_THAT(backend_->FindCommittedTid(Tid(9)), IsOkAndHolds(0u));
}

TEST_P(BackendConformanceTest, GetLastSerials) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "a"), Obj(2, "b")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(2, "b2")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Obj(6, "f")}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(4), {Obj(1, "pending")})}), IsOk());
  // Same order as asked, duplicates kept, unknown oids 0, pending votes
  // ignored.
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {6, 1, 99, 2, 1}),
              IsOkAndHolds(ElementsAre(Tid(3), Tid(1), 0u, Tid(2), Tid(1))));
  EXPECT_THAT(backend_->GetLastSerials(0, {1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- Reads ---

TEST_P(BackendConformanceTest, LoadBeforeAndLoadSerialAcrossRevisions) {
  const uint64_t oid = 7;
  const uint32_t p = PartitionOf(oid);
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(oid, "r1")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(8, "other")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Obj(oid, "r3")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(4), {Obj(10, "other")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(5), {Obj(oid, "r5")}), IsOk());

  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(1)),
              NotFoundWithReason(kReasonNoEarlierRevision));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(1) + 1),
              IsOkAndHolds(IsRevision(oid, Tid(1), Tid(3), "r1")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(3)),
              IsOkAndHolds(IsRevision(oid, Tid(1), Tid(3), "r1")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(3) + 1),
              IsOkAndHolds(IsRevision(oid, Tid(3), Tid(5), "r3")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(5)),
              IsOkAndHolds(IsRevision(oid, Tid(3), Tid(5), "r3")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(5) + 1),
              IsOkAndHolds(IsRevision(oid, Tid(5), 0, "r5")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, kMaxTid),
              IsOkAndHolds(IsRevision(oid, Tid(5), 0, "r5")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, kMaxTid + 1),
              IsOkAndHolds(IsRevision(oid, Tid(5), 0, "r5")));
  EXPECT_THAT(backend_->LoadBefore(p, oid, kUnbounded),
              IsOkAndHolds(IsRevision(oid, Tid(5), 0, "r5")));

  EXPECT_THAT(backend_->LoadSerial(p, oid, Tid(1)),
              IsOkAndHolds(IsRevision(oid, Tid(1), Tid(3), "r1")));
  EXPECT_THAT(backend_->LoadSerial(p, oid, Tid(3)),
              IsOkAndHolds(IsRevision(oid, Tid(3), Tid(5), "r3")));
  EXPECT_THAT(backend_->LoadSerial(p, oid, Tid(5)),
              IsOkAndHolds(IsRevision(oid, Tid(5), 0, "r5")));
  EXPECT_THAT(backend_->LoadSerial(p, oid, Tid(2)),
              NotFoundWithReason(kReasonNoSuchRevision));
  EXPECT_THAT(backend_->LoadSerial(p, oid, Tid(6)),
              NotFoundWithReason(kReasonNoSuchRevision));

  EXPECT_THAT(backend_->LoadBefore(PartitionOf(9), 9, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->LoadSerial(PartitionOf(9), 9, Tid(1)),
              NotFoundWithReason(kReasonNoSuchObject));
  // Rows are keyed by partition: the oid is not in another partition.
  EXPECT_THAT(backend_->LoadBefore((p + 1) % kPartitions, oid, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
}

TEST_P(BackendConformanceTest, UndoBackPointerIsResolvedOnLoad) {
  const uint64_t oid = 4;
  const uint32_t p = PartitionOf(oid);
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(oid, "original")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(oid, "changed, longer")}), IsOk());
  // Undo of Tid(2): the new revision re-uses Tid(1)'s data.
  ASSERT_THAT(Commit(*backend_, Tid(3), {Undo(oid, Tid(1), Checksum("original"))}),
              IsOk());

  EXPECT_THAT(backend_->LoadBefore(p, oid, kUnbounded),
              IsOkAndHolds(IsRevision(oid, Tid(3), 0, "original", Tid(1))));
  EXPECT_THAT(backend_->LoadSerial(p, oid, Tid(3)),
              IsOkAndHolds(IsRevision(oid, Tid(3), 0, "original", Tid(1))));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(3)),
              IsOkAndHolds(IsRevision(oid, Tid(2), Tid(3), "changed, longer")));
  EXPECT_THAT(backend_->History(p, oid, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(3), 8, false, Tid(1)),
                                   IsHistory(Tid(2), 15),
                                   IsHistory(Tid(1), 8))));
  // Replication sees the raw record: no data of its own, the back-pointer.
  EXPECT_THAT(backend_->ListObjects(p, Tid(3), Tid(3), 10),
              IsOkAndHolds(ElementsAre(IsObject(oid, Tid(3), "", Tid(1)))));

  // An undo of the undo points at the same original data.
  ASSERT_THAT(Commit(*backend_, Tid(4), {Undo(oid, Tid(1), Checksum("original"))}),
              IsOk());
  EXPECT_THAT(backend_->LoadBefore(p, oid, kUnbounded),
              IsOkAndHolds(IsRevision(oid, Tid(4), 0, "original", Tid(1))));
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(4)),
              IsOkAndHolds(IsRevision(oid, Tid(3), Tid(4), "original", Tid(1))));
}

TEST_P(BackendConformanceTest, DeletionRecord) {
  const uint64_t oid = 5;
  const uint32_t p = PartitionOf(oid);
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(oid, "alive")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Deletion(oid)}), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LoadedObject latest,
                                   backend_->LoadBefore(p, oid, kUnbounded));
  EXPECT_EQ(latest.serial, Tid(2));
  EXPECT_EQ(latest.next_serial, 0u);
  EXPECT_EQ(latest.data, "");
  EXPECT_EQ(latest.data_tid, 0u);
  EXPECT_THAT(backend_->LoadBefore(p, oid, Tid(2)),
              IsOkAndHolds(IsRevision(oid, Tid(1), Tid(2), "alive")));
  EXPECT_THAT(backend_->History(p, oid, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(2), 0, true),
                                   IsHistory(Tid(1), 5))));
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {oid}),
              IsOkAndHolds(ElementsAre(Tid(2))));
  EXPECT_THAT(backend_->ListObjects(p, 0, kMaxTid, 10),
              IsOkAndHolds(ElementsAre(IsObject(oid, Tid(1), "alive"),
                                   IsObject(oid, Tid(2), ""))));
}

TEST_P(BackendConformanceTest, GetTransactionFindsTheRecordByTid) {
  // Locked with a tid that is not its ttid (the record lives in
  // partition(ttid)), and one imported from a replica.
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "a"), Obj(2, "b")})}),
              IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(5)}}), IsOk());
  TransactionRecord imported = Txn(Tid(6), {3});
  imported.tid = Tid(7);
  ASSERT_THAT(backend_->ImportCommitted({imported}, {}), IsOk());

  EXPECT_THAT(backend_->GetTransaction(Tid(5)),
              IsOkAndHolds(Optional(IsTxn(Tid(5), Tid(1), {1, 2}))));
  EXPECT_THAT(backend_->GetTransaction(Tid(7)),
              IsOkAndHolds(Optional(IsTxn(Tid(7), Tid(6), {3}))));
  // Not by ttid, not an unknown tid, not a vote that is not locked.
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(8), {Obj(4, "c")})}), IsOk());
  for (uint64_t tid : {Tid(1), Tid(6), Tid(8), Tid(9)}) {
    EXPECT_THAT(backend_->GetTransaction(tid), IsOkAndHolds(::testing::Not(Optional(::testing::_)))) << tid;
  }
  EXPECT_THAT(backend_->GetTransaction(0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->GetTransaction(kMaxTid + 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(BackendConformanceTest, PartitionStatsFollowEveryWrite) {
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(IsEmpty()));
  // Partition 1: oids 1, 4, 7; partition 2: oid 2 (kPartitions = 3).
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "aa"), Obj(2, "bbb"), Obj(4, "c")}),
              IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 2, 2, 3},
                                       PartitionStats{2, 1, 1, 3})));
  // A deletion is a revision but no longer an object; an undo record is.
  ASSERT_THAT(Commit(*backend_, Tid(2), {Deletion(1), Obj(2, "x")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Undo(2, Tid(1), Checksum("bbb"))}), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 1, 3, 3},
                                       PartitionStats{2, 1, 3, 4})));
  // Two transactions writing the same oid, locked in one batch.
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(4), {Obj(7, "a")}),
                                    VoteObjectsOnly(Tid(5), {Obj(7, "bb")})}),
              IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(4), Tid(4)}, {Tid(5), Tid(5)}}), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 2, 5, 6},
                                       PartitionStats{2, 1, 3, 4})));
  // A lock replayed changes nothing.
  ASSERT_THAT(backend_->LockTransactions({{Tid(5), Tid(5)}}), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));

  // Replication: an older revision (no change of objects), the deleted
  // object back, a deletion and an older revision of it in one batch, a
  // new partition; then the same batch again (kept, not counted twice).
  std::vector<ObjectRecord> imports = {Obj(4, "old"), Obj(1, "back"), Deletion(7),
                                       Obj(7, "between"), Obj(9, "nine")};
  imports[0].tid = Tid(0);
  imports[1].tid = Tid(6);
  imports[2].tid = Tid(7);
  imports[3].tid = Tid(6);
  imports[4].tid = Tid(6);
  ASSERT_THAT(backend_->ImportCommitted({}, imports), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{0, 1, 1, 4},
                                       PartitionStats{1, 2, 9, 6 + 3 + 4 + 7},
                                       PartitionStats{2, 1, 3, 4})));
  ASSERT_THAT(backend_->ImportCommitted({}, imports), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));
  // Records replication imported first, then locked here: counted once.
  ObjectRecord twice = Obj(10, "ten");
  twice.tid = Tid(8);
  ASSERT_THAT(backend_->ImportCommitted({}, {twice}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(8), {Obj(10, "ten")}), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));

  // Durable; then a dropped cell and a truncation.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));
  ASSERT_THAT(backend_->DeletePartition(2), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(Field("partition", &PartitionStats::partition, 0),
                                       Field("partition", &PartitionStats::partition, 1))));
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));
  ASSERT_THAT(backend_->Truncate(Tid(5)), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 2, 6, 2 + 3 + 1 + 1 + 2})));
  ASSERT_THAT(Commit(*backend_, Tid(9), {Deletion(4)}), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 1, 7, 9})));
  ASSERT_THAT(backend_->Truncate(0), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, HistoryIsNewestFirstWithLimit) {
  const uint64_t oid = 11;
  const uint32_t p = PartitionOf(oid);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_THAT(Commit(*backend_, Tid(i), {Obj(oid, std::string(i * 10, 'x'))}),
                IsOk());
  }
  ASSERT_THAT(Commit(*backend_, Tid(6), {Obj(12, "other")}), IsOk());
  EXPECT_THAT(backend_->History(p, oid, 100),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(5), 50), IsHistory(Tid(4), 40),
                                   IsHistory(Tid(3), 30), IsHistory(Tid(2), 20),
                                   IsHistory(Tid(1), 10))));
  EXPECT_THAT(backend_->History(p, oid, 2),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(5), 50), IsHistory(Tid(4), 40))));
  EXPECT_THAT(backend_->History(p, oid, 1),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(5), 50))));
  EXPECT_THAT(backend_->History(p, 13, 10), IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, LastTransactionsNewestFirstWithPaging) {
  // Transaction records in every partition (ttid % kPartitions varies).
  for (int i = 1; i <= 6; ++i) {
    ASSERT_THAT(Commit(*backend_, Tid(i), {Obj(100 + i, "v")}), IsOk());
  }
  EXPECT_THAT(backend_->LastTransactions(100, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(6), Tid(6), {106}),
                                   IsTxn(Tid(5), Tid(5), {105}),
                                   IsTxn(Tid(4), Tid(4), {104}),
                                   IsTxn(Tid(3), Tid(3), {103}),
                                   IsTxn(Tid(2), Tid(2), {102}),
                                   IsTxn(Tid(1), Tid(1), {101}))));
  EXPECT_THAT(backend_->LastTransactions(2, kNoBound),
              IsOkAndHolds(ElementsAre(HasTid(Tid(6)), HasTid(Tid(5)))));
  // Next page: strictly before the last tid seen.
  EXPECT_THAT(backend_->LastTransactions(2, Tid(5)),
              IsOkAndHolds(ElementsAre(HasTid(Tid(4)), HasTid(Tid(3)))));
  EXPECT_THAT(backend_->LastTransactions(2, Tid(3)),
              IsOkAndHolds(ElementsAre(HasTid(Tid(2)), HasTid(Tid(1)))));
  EXPECT_THAT(backend_->LastTransactions(2, Tid(1)), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->LastTransactions(100, Tid(3) + 1),
              IsOkAndHolds(ElementsAre(HasTid(Tid(3)), HasTid(Tid(2)),
                                   HasTid(Tid(1)))));
  EXPECT_THAT(backend_->LastTransactions(1, kUnbounded),
              IsOkAndHolds(ElementsAre(HasTid(Tid(6)))));
}

static ::testing::Matcher<TransactionRecord> HasSize(uint64_t tid, uint64_t size_bytes) {
  return AllOf(Field("tid", &TransactionRecord::tid, tid),
               Field("size_bytes", &TransactionRecord::size_bytes, size_bytes));
}

// A transaction record whose client said the transaction stores `size`
// bytes of object data (all partitions).
TransactionRecord SizedTxn(uint64_t ttid, std::vector<uint64_t> oids,
                           uint64_t size) {
  TransactionRecord t = Txn(ttid, std::move(oids));
  t.size_bytes = size;
  return t;
}

TEST_P(BackendConformanceTest, TransactionSizeIsStoredWithTheRecord) {
  // The size the client sent, not the data held here: 10 bytes here, the
  // rest of its 1000 bytes on other nodes.
  ASSERT_THAT(backend_->StoreVotes({VoteRecord{
                  Tid(1), {Obj(30, std::string(10, 'a'))},
                  SizedTxn(Tid(1), {30, 40, 41}, 1000)}}),
              IsOk());
  // The record is here, its objects are elsewhere.
  ASSERT_THAT(backend_->StoreVotes({VoteRecord{Tid(2), {}, SizedTxn(Tid(2), {42}, 7)}}),
              IsOk());
  // Objects here but a record that says 0 (an older client): 0, not
  // computed from the rows.
  ASSERT_THAT(backend_->StoreVotes({VoteRecord{
                  Tid(3), {Obj(31, "bcd")}, SizedTxn(Tid(3), {31}, 0)}}),
              IsOk());
  // Objects only (the record is elsewhere): not listed.
  ASSERT_THAT(backend_->StoreVotes({VoteObjectsOnly(Tid(4), {Obj(50, "elsewhere")})}),
              IsOk());
  // A re-vote replaces the size; any value is kept as sent.
  ASSERT_THAT(backend_->StoreVotes({VoteRecord{Tid(5), {}, SizedTxn(Tid(5), {43}, 5)}}),
              IsOk());
  ASSERT_THAT(backend_->StoreVotes({VoteRecord{
                  Tid(5), {}, SizedTxn(Tid(5), {43}, std::numeric_limits<uint64_t>::max())}}),
              IsOk());
  // Voted, not locked yet: the size survives a restart in the temporary
  // record.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(1)}, {Tid(2), Tid(2)},
                                          {Tid(3), Tid(3)}, {Tid(4), Tid(4)},
                                          {Tid(5), Tid(6)}}),
              IsOk());
  const auto listed = ElementsAre(
      HasSize(Tid(6), std::numeric_limits<uint64_t>::max()), HasSize(Tid(3), 0),
      HasSize(Tid(2), 7), HasSize(Tid(1), 1000));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound), IsOkAndHolds(listed));
  // Replication reads it with the record.
  EXPECT_THAT(backend_->ListTransactions(PartitionOf(Tid(2)), 0, kMaxTid, 10),
              IsOkAndHolds(Contains(HasSize(Tid(2), 7))));

  // Imported records keep the size they carry, whichever objects come
  // (or not) with them.
  TransactionRecord imported = SizedTxn(Tid(7), {60, 61}, 4242);
  imported.tid = Tid(8);
  ObjectRecord object = Obj(60, std::string(42, 'r'));
  object.tid = Tid(8);
  ASSERT_THAT(backend_->ImportCommitted({imported}, {object}), IsOk());
  EXPECT_THAT(backend_->LastTransactions(1, kNoBound),
              IsOkAndHolds(ElementsAre(HasSize(Tid(8), 4242))));
  EXPECT_THAT(backend_->ListTransactions(PartitionOf(Tid(7)), Tid(8), Tid(8), 10),
              IsOkAndHolds(ElementsAre(HasSize(Tid(8), 4242))));

  // All of it is durable.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->LastTransactions(10, Tid(8)), IsOkAndHolds(listed));
  EXPECT_THAT(backend_->LastTransactions(1, kNoBound),
              IsOkAndHolds(ElementsAre(HasSize(Tid(8), 4242))));
}

TEST_P(BackendConformanceTest, GetLastIds) {
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(40, "a"), Obj(3, "b")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(5), {Obj(7, "c")}), IsOk());
  // Objects only: the highest committed tid comes from obj rows too.
  ASSERT_THAT(backend_->StoreVotes({VoteObjectsOnly(Tid(6), {Obj(8, "d")})}),
              IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(6), Tid(7)}}), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, Tid(7));
  EXPECT_EQ(ids.last_oid, 40u);
  EXPECT_EQ(ids.last_ttid, 0u);

  // Temporary records count for last_oid and last_ttid, not last_tid.
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(9), {Obj(50, "e")}),
                                    Vote(Tid(8), {Obj(9, "f")})}),
              IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, Tid(7));
  EXPECT_EQ(ids.last_oid, 50u);
  EXPECT_EQ(ids.last_ttid, Tid(9));

  // A transaction record alone (no objects here) also counts.
  VoteRecord txn_only;
  txn_only.ttid = Tid(20);
  txn_only.transaction = Txn(Tid(20), {1});
  ASSERT_THAT(backend_->StoreVotes({txn_only}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(20), Tid(21)}}), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, Tid(21));
  EXPECT_EQ(ids.last_ttid, Tid(9));
}

TEST_P(BackendConformanceTest, GetStats) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "12345"), Obj(2, "123")}),
              IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(1, "1234567890")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Undo(1, Tid(1), Checksum("12345"))}),
              IsOk());
  ASSERT_THAT(backend_->StoreVotes({VoteObjectsOnly(Tid(4), {Obj(3, "xx")})}),
              IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(4), Tid(4)}}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(5), {Obj(3, "pending")})}), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 5u);       // committed obj rows
  EXPECT_EQ(stats.transaction_count, 3u);  // Tid(4) had no trans record here
  EXPECT_EQ(stats.data_bytes, 5u + 3u + 10u + 0u + 2u);  // stored bytes
}

// --- Partition-level operations ---

TEST_P(BackendConformanceTest, ListTransactionsByPartitionAndRange) {
  // Tid(i) % 3 cycles, so records land in every partition.
  for (int i = 1; i <= 9; ++i) {
    ASSERT_THAT(Commit(*backend_, Tid(i), {Obj(200 + i, "v")}), IsOk());
  }
  std::vector<uint64_t> in_p;  // tids whose record is in partition p
  const uint32_t p = PartitionOf(Tid(1));
  for (int i = 1; i <= 9; ++i) {
    if (PartitionOf(Tid(i)) == p) in_p.push_back(Tid(i));
  }
  ASSERT_THAT(in_p, SizeIs(3));
  EXPECT_THAT(backend_->ListTransactions(p, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(HasTid(in_p[0]), HasTid(in_p[1]),
                                   HasTid(in_p[2]))));
  // Bounds are inclusive.
  EXPECT_THAT(backend_->ListTransactions(p, in_p[1], in_p[2], 100),
              IsOkAndHolds(ElementsAre(HasTid(in_p[1]), HasTid(in_p[2]))));
  EXPECT_THAT(backend_->ListTransactions(p, in_p[0] + 1, in_p[2] - 1, 100),
              IsOkAndHolds(ElementsAre(HasTid(in_p[1]))));
  EXPECT_THAT(backend_->ListTransactions(p, 0, kMaxTid, 2),
              IsOkAndHolds(ElementsAre(HasTid(in_p[0]), HasTid(in_p[1]))));
  EXPECT_THAT(backend_->ListTransactions(p, in_p[2] + 1, kMaxTid, 100),
              IsOkAndHolds(IsEmpty()));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(
      std::vector<TransactionRecord> all,
      backend_->ListTransactions(p, 0, kMaxTid, 100));
  for (const TransactionRecord& t : all) {
    EXPECT_EQ(t.partition, p);
    EXPECT_EQ(t.ttid, t.tid);
  }
  EXPECT_THAT(backend_->ListTransactions(kPartitions + 5, 0, kMaxTid, 100),
              IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, ListObjectsByPartitionAndRangeOrderedByTidOid) {
  // Partition 1: oids 1, 4, 7; partition 2: oid 2.
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(7, "7a"), Obj(1, "1a"), Obj(2, "2a")}),
              IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(4, "4b"), Obj(1, "1b")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Obj(2, "2c")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(4), {Obj(7, "7d")}), IsOk());
  EXPECT_THAT(backend_->ListObjects(1, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(1), "1a"),
                                   IsObject(7, Tid(1), "7a"),
                                   IsObject(1, Tid(2), "1b"),
                                   IsObject(4, Tid(2), "4b"),
                                   IsObject(7, Tid(4), "7d"))));
  EXPECT_THAT(backend_->ListObjects(1, Tid(2), Tid(4), 100),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(2), "1b"),
                                   IsObject(4, Tid(2), "4b"),
                                   IsObject(7, Tid(4), "7d"))));
  EXPECT_THAT(backend_->ListObjects(1, Tid(1), Tid(2), 3),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(1), "1a"),
                                   IsObject(7, Tid(1), "7a"),
                                   IsObject(1, Tid(2), "1b"))));
  EXPECT_THAT(backend_->ListObjects(1, Tid(3), Tid(3), 100), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListObjects(2, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(2, Tid(1), "2a"),
                                   IsObject(2, Tid(3), "2c"))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<ObjectRecord> objects,
                                   backend_->ListObjects(1, 0, kMaxTid, 1));
  ASSERT_THAT(objects, SizeIs(1));
  EXPECT_EQ(objects[0].checksum, Checksum("1a"));
}

TEST_P(BackendConformanceTest, ImportCommittedIsIdempotent) {
  // Records as a replica sends them (ListTransactions/ListObjects output).
  TransactionRecord t1 = Txn(Tid(1), {1, 2});
  t1.tid = Tid(1);
  TransactionRecord t2 = Txn(Tid(2), {1});
  t2.tid = Tid(3);  // tid != ttid
  std::vector<ObjectRecord> objects = {Obj(1, "1a"), Obj(2, "2a"),
                                       Obj(1, "1b")};
  objects[0].tid = Tid(1);
  objects[1].tid = Tid(1);
  objects[2].tid = Tid(3);
  ASSERT_THAT(backend_->ImportCommitted({t1, t2}, objects), IsOk());

  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(3), 0, "1b")));
  EXPECT_THAT(backend_->LoadBefore(1, 1, Tid(3)),
              IsOkAndHolds(IsRevision(1, Tid(1), Tid(3), "1a")));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(2)), IsOkAndHolds(Tid(3)));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(3), Tid(2), {1}),
                                   IsTxn(Tid(1), Tid(1), {1, 2}))));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));

  // Again, plus one new record: nothing is duplicated.
  ASSERT_THAT(backend_->ImportCommitted({t1, t2}, objects), IsOk());
  ObjectRecord more = Obj(2, "2c");
  more.tid = Tid(4);
  ASSERT_THAT(backend_->ImportCommitted({t2}, {objects[2], more}), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 4u);
  EXPECT_EQ(stats.transaction_count, 2u);
  EXPECT_THAT(backend_->History(1, 1, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(3), 2), IsHistory(Tid(1), 2))));
  EXPECT_THAT(backend_->LoadBefore(2, 2, Tid(4)),
              IsOkAndHolds(IsRevision(2, Tid(1), Tid(4), "2a")));
  // Undo records import with their back-pointer.
  ObjectRecord undo = Undo(1, Tid(1), Checksum("1a"));
  undo.tid = Tid(5);
  ASSERT_THAT(backend_->ImportCommitted({}, {undo}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(5), 0, "1a", Tid(1))));
}

TEST_P(BackendConformanceTest, ImportCommittedRejectsBadTidAtomically) {
  ObjectRecord good = Obj(1, "ok");
  good.tid = Tid(1);
  ObjectRecord bad = Obj(2, "bad");
  bad.tid = kMaxTid + 1;
  EXPECT_THAT(backend_->ImportCommitted({}, {good, bad}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad.tid = 0;
  EXPECT_THAT(backend_->ImportCommitted({}, {good, bad}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  TransactionRecord bad_txn = Txn(Tid(1), {1});
  bad_txn.tid = 0;
  EXPECT_THAT(backend_->ImportCommitted({bad_txn}, {good}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 0u);
  EXPECT_EQ(stats.transaction_count, 0u);
}

TEST_P(BackendConformanceTest, DeletePartitionOnlyTouchesThatPartition) {
  // Objects 0..5 in partitions 0, 1, 2; transaction records likewise.
  for (int i = 1; i <= 6; ++i) {
    ASSERT_THAT(Commit(*backend_, Tid(i), {Obj(i - 1, "v"), Obj(i + 2, "w")}),
                IsOk());
  }
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(7), {Obj(1, "pending")})}), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats before, backend_->GetStats());

  ASSERT_THAT(backend_->DeletePartition(1), IsOk());

  EXPECT_THAT(backend_->ListObjects(1, 0, kMaxTid, 100), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListTransactions(1, 0, kMaxTid, 100),
              IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->LoadBefore(1, 4, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  for (uint32_t p : {0u, 2u}) {
    CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<ObjectRecord> objects,
                                     backend_->ListObjects(p, 0, kMaxTid, 100));
    EXPECT_THAT(objects, SizeIs(4)) << "partition " << p;
    CONFORMANCE_ASSERT_OK_AND_ASSIGN(
        std::vector<TransactionRecord> txns,
        backend_->ListTransactions(p, 0, kMaxTid, 100));
    EXPECT_THAT(txns, SizeIs(2)) << "partition " << p;
  }
  EXPECT_THAT(backend_->LoadBefore(0, 3, kUnbounded), IsOk());
  EXPECT_THAT(backend_->LoadBefore(2, 5, kUnbounded), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats after, backend_->GetStats());
  EXPECT_EQ(after.object_count, before.object_count - 4);
  EXPECT_EQ(after.transaction_count, before.transaction_count - 2);
  // Temporary records are not committed records: the vote survives.
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(Tid(7))));
  // Deleting an empty or unknown partition is fine.
  EXPECT_THAT(backend_->DeletePartition(1), IsOk());
  EXPECT_THAT(backend_->DeletePartition(kPartitions + 10), IsOk());
}

TEST_P(BackendConformanceTest, TruncateDropsLaterCommitsAndAllTemporaryRecords) {
  for (int i = 1; i <= 4; ++i) {
    ASSERT_THAT(Commit(*backend_, Tid(i), {Obj(1, absl::StrCat("r", i)),
                                           Obj(10 + i, "x")}),
                IsOk());
  }
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(5), {Obj(1, "pending")})}), IsOk());

  ASSERT_THAT(backend_->Truncate(Tid(2)), IsOk());

  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, "r2")));  // no next serial
  EXPECT_THAT(backend_->LoadSerial(1, 1, Tid(3)),
              NotFoundWithReason(kReasonNoSuchRevision));
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(13), 13, kUnbounded),
              NotFoundWithReason(kReasonNoSuchObject));
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(12), 12, kUnbounded), IsOk());
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(HasTid(Tid(2)), HasTid(Tid(1)))));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(3)), IsOkAndHolds(0u));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, Tid(2));
  EXPECT_EQ(ids.last_oid, 12u);
  EXPECT_EQ(ids.last_ttid, 0u);
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 4u);
  EXPECT_EQ(stats.transaction_count, 2u);

  // Truncating at or above the last tid keeps every commit.
  ASSERT_THAT(backend_->Truncate(kMaxTid), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 4u);
  ASSERT_THAT(backend_->Truncate(0), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 0u);
  EXPECT_EQ(stats.transaction_count, 0u);
}

// --- Lock records (verification) and replication paging ---

TEST_P(BackendConformanceTest, LockRecordsTtidToTidDurablyUntilForgotten) {
  // T1: objects only (another node holds its record); T2: record too.
  ASSERT_THAT(backend_->StoreVotes({VoteObjectsOnly(Tid(1), {Obj(1, "a")}),
                                    Vote(Tid(2), {Obj(2, "b")})}),
              IsOk());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(0u));  // voted only
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(4)}, {Tid(2), Tid(5)}}),
              IsOk());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(Tid(4)));
  EXPECT_THAT(backend_->GetLockedTid(Tid(2)), IsOkAndHolds(Tid(5)));
  // The objects-only node has no trans record: only the lock record says
  // it committed T1.
  EXPECT_THAT(backend_->FindCommittedTid(Tid(1)), IsOkAndHolds(0u));
  // A lock replayed is a no-op; a ttid this node never held gets no record.
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(4)}, {Tid(9), Tid(10)}}),
              IsOk());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(Tid(4)));
  EXPECT_THAT(backend_->GetLockedTid(Tid(9)), IsOkAndHolds(0u));

  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(Tid(4)));
  EXPECT_THAT(backend_->GetLockedTid(Tid(2)), IsOkAndHolds(Tid(5)));

  EXPECT_THAT(backend_->ForgetLocks({}), IsOk());
  ASSERT_THAT(backend_->ForgetLocks({Tid(1), Tid(9), kMaxTid}), IsOk());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(0u));
  EXPECT_THAT(backend_->GetLockedTid(Tid(2)), IsOkAndHolds(Tid(5)));
  // Forgetting the record keeps the committed data.
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(4), 0, "a")));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(0u));
  EXPECT_THAT(backend_->GetLockedTid(Tid(2)), IsOkAndHolds(Tid(5)));
}

TEST_P(BackendConformanceTest, TruncateDropsLaterLockRecords) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "a")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Obj(1, "b")}), IsOk());
  ASSERT_THAT(backend_->Truncate(Tid(2)), IsOk());
  EXPECT_THAT(backend_->GetLockedTid(Tid(1)), IsOkAndHolds(Tid(1)));
  EXPECT_THAT(backend_->GetLockedTid(Tid(3)), IsOkAndHolds(0u));
}

TEST_P(BackendConformanceTest, LockAfterReplicationImportedTheSameRecords) {
  // A replicating (OUT_OF_DATE) cell may receive a transaction twice: by
  // replication from a readable cell, and by its own vote + lock. Both
  // orders end with one copy of each row.
  TransactionRecord t = Txn(Tid(1), {1, 4});
  t.tid = Tid(2);
  std::vector<ObjectRecord> objects = {Obj(1, "one"), Obj(4, "four")};
  for (ObjectRecord& o : objects) o.tid = Tid(2);
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(1), {Obj(1, "one"), Obj(4, "four")})}),
              IsOk());
  ASSERT_THAT(backend_->ImportCommitted({t}, objects), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(2)}}), IsOk());
  // The other order: locked first, imported after.
  ASSERT_THAT(Commit(*backend_, Tid(3), {Obj(7, "seven")}), IsOk());
  TransactionRecord t3 = Txn(Tid(3), {7});
  t3.tid = Tid(3);
  ObjectRecord o3 = Obj(7, "seven");
  o3.tid = Tid(3);
  ASSERT_THAT(backend_->ImportCommitted({t3}, {o3}), IsOk());

  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 3u);
  EXPECT_EQ(stats.transaction_count, 2u);
  EXPECT_EQ(stats.data_rows, 3u);  // one copy of the bytes, too
  EXPECT_THAT(backend_->LoadBefore(1, 4, kUnbounded),
              IsOkAndHolds(IsRevision(4, Tid(2), 0, "four")));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(IsTxn(Tid(3), Tid(3), {7}),
                                       IsTxn(Tid(2), Tid(1), {1, 4}))));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, ListObjectsFromPagesInsideOneTransaction) {
  // Partition 1: oids 1, 4, 7, 10 in one transaction, then 4 again.
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(10, "10a"), Obj(4, "4a"), Obj(1, "1a"),
                                         Obj(7, "7a"), Obj(2, "2a")}),
              IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(4, "4b")}), IsOk());
  EXPECT_THAT(backend_->ListObjectsFrom(1, Tid(1), 0, kMaxTid, 2),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(1), "1a"),
                                       IsObject(4, Tid(1), "4a"))));
  EXPECT_THAT(backend_->ListObjectsFrom(1, Tid(1), 5, kMaxTid, 2),
              IsOkAndHolds(ElementsAre(IsObject(7, Tid(1), "7a"),
                                       IsObject(10, Tid(1), "10a"))));
  EXPECT_THAT(backend_->ListObjectsFrom(1, Tid(1), 10, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(10, Tid(1), "10a"),
                                       IsObject(4, Tid(2), "4b"))));
  EXPECT_THAT(backend_->ListObjectsFrom(1, Tid(1), 11, Tid(1), 100),
              IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListObjectsFrom(1, Tid(2), 0, Tid(2), 100),
              IsOkAndHolds(ElementsAre(IsObject(4, Tid(2), "4b"))));
  EXPECT_THAT(backend_->ListObjectsFrom(1, Tid(3), 0, kMaxTid, 100),
              IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListObjectsFrom(1, 0, 0, kMaxTid, 0), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ListObjectsFrom(2, 0, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(2, Tid(1), "2a"))));
}

// --- Data shapes ---

TEST_P(BackendConformanceTest, BinaryDataRoundTrips) {
  const std::string binary = std::string("\0\0x\0", 4) + AllByteValues() +
                             std::string("\0", 1);
  VoteRecord vote = Vote(Tid(1), {Obj(1, binary), Obj(2, std::string(1, '\0'))});
  vote.transaction->user = std::string("us\0er\xff", 6);
  vote.transaction->description = AllByteValues();
  vote.transaction->extension = std::string("\0\x01\x02", 3);
  ASSERT_THAT(backend_->StoreVotes({vote}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(1), Tid(1)}}), IsOk());

  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(1), 0, binary)));
  EXPECT_THAT(backend_->LoadSerial(2, 2, Tid(1)),
              IsOkAndHolds(IsRevision(2, Tid(1), 0, std::string(1, '\0'))));
  EXPECT_THAT(backend_->ListObjects(1, 0, kMaxTid, 10),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(1), binary))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<TransactionRecord> txns,
                                   backend_->LastTransactions(1, kNoBound));
  ASSERT_THAT(txns, SizeIs(1));
  EXPECT_EQ(txns[0].user, vote.transaction->user);
  EXPECT_EQ(txns[0].description, vote.transaction->description);
  EXPECT_EQ(txns[0].extension, vote.transaction->extension);
  EXPECT_THAT(txns[0].oids, ElementsAre(1u, 2u));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.data_bytes, binary.size() + 1);
}

// Every string that reaches the database (config keys and values such as
// the cluster name, the transaction's user, description and extension,
// object data) with quotes, backslashes, NULs, format directives and SQL
// fragments: stored and returned byte for byte, and nothing else touched.
TEST_P(BackendConformanceTest, HostileStringsRoundTripByteForByte) {
  const std::vector<std::string> hostile = {
      "'",
      "''",
      "\\",
      "\\'",
      std::string("a\0b", 3),
      "'); DROP TABLE obj; --",
      "\"; DELETE FROM trans; --",
      "' OR '1'='1",
      "E'\\x00'",
      "$1 $$ $tag$ ? ?1 :name @p",
      "%s%n%x%%",
      "\\.\n\\copy obj to '/tmp/x'",
      "\xc3\x28 \xff\xfe \xe2\x82\xac",
      std::string(1, '\0'),
      std::string(300, '\''),
  };
  // The SQL fragments are valid keys: they do reach the key column.
  EXPECT_THAT(CheckConfigKey("'); DROP TABLE obj; --"), IsOk());
  EXPECT_THAT(CheckConfigKey(std::string("a\0b", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "witness")}), IsOk());
  for (size_t i = 0; i < hostile.size(); ++i) {
    const std::string& text = hostile[i];
    const uint64_t tid = Tid(2 + static_cast<int>(i));
    const uint64_t oid = 10 + i;
    SCOPED_TRACE(::testing::PrintToString(text));
    // As a key: stored if printable ASCII, refused the same way by every
    // backend otherwise (CheckConfigKey).
    if (CheckConfigKey(text).ok()) {
      ASSERT_THAT(backend_->SetConfig(text, text + "-value"), IsOk());
      EXPECT_THAT(backend_->GetConfig(text), IsOkAndHolds(Optional(text + "-value")));
    } else {
      EXPECT_THAT(backend_->SetConfig(text, "v"), StatusIs(absl::StatusCode::kInvalidArgument));
      EXPECT_THAT(backend_->GetConfig(text), StatusIs(absl::StatusCode::kInvalidArgument));
    }
    // As a value (the cluster name): any bytes.
    ASSERT_THAT(backend_->SetConfig("name", text), IsOk());
    EXPECT_THAT(backend_->GetConfig("name"), IsOkAndHolds(Optional(text)));

    VoteRecord vote = Vote(tid, {Obj(oid, text)});
    vote.transaction->user = text;
    vote.transaction->description = text + text;
    vote.transaction->extension = text;
    ASSERT_THAT(backend_->StoreVotes({vote}), IsOk());
    ASSERT_THAT(backend_->LockTransactions({{tid, tid}}), IsOk());
    EXPECT_THAT(backend_->LoadBefore(PartitionOf(oid), oid, kUnbounded),
                IsOkAndHolds(IsRevision(oid, tid, 0, text)));
    CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<TransactionRecord> txns,
                                     backend_->LastTransactions(1, kNoBound));
    ASSERT_THAT(txns, SizeIs(1));
    EXPECT_EQ(txns[0].tid, tid);
    EXPECT_EQ(txns[0].user, text);
    EXPECT_EQ(txns[0].description, text + text);
    EXPECT_EQ(txns[0].extension, text);
  }
  // Nothing else was touched, and it all survives a reopen.
  Reopen();
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(1), 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(1), 0, "witness")));
  for (size_t i = 0; i < hostile.size(); ++i) {
    SCOPED_TRACE(::testing::PrintToString(hostile[i]));
    if (CheckConfigKey(hostile[i]).ok()) {
      EXPECT_THAT(backend_->GetConfig(hostile[i]),
                  IsOkAndHolds(Optional(hostile[i] + "-value")));
    }
    EXPECT_THAT(backend_->LoadBefore(PartitionOf(10 + i), 10 + i, kUnbounded),
                IsOkAndHolds(IsRevision(10 + i, Tid(2 + static_cast<int>(i)), 0, hostile[i])));
  }
  EXPECT_THAT(backend_->GetConfig("name"), IsOkAndHolds(Optional(hostile.back())));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.transaction_count, hostile.size() + 1);
}

TEST_P(BackendConformanceTest, LargeObjectsRoundTrip) {
  std::string big(1 << 20, '\0');  // 1 MiB, every byte value, with NULs
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>((i * 131 + i / 977) & 0xff);
  }
  std::string bigger = big + big + big;  // 3 MiB
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, big), Obj(2, bigger)}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Undo(1, Tid(1), Checksum(big))}),
              IsOk());
  EXPECT_THAT(backend_->LoadBefore(1, 1, Tid(2)),
              IsOkAndHolds(IsRevision(1, Tid(1), Tid(2), big)));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, big, Tid(1))));
  EXPECT_THAT(backend_->LoadSerial(2, 2, Tid(1)),
              IsOkAndHolds(IsRevision(2, Tid(1), 0, bigger)));
  EXPECT_THAT(backend_->History(1, 1, 10),
              IsOkAndHolds(ElementsAre(IsHistory(Tid(2), big.size(), false, Tid(1)),
                                   IsHistory(Tid(1), big.size()))));
  EXPECT_THAT(backend_->ListObjects(2, 0, kMaxTid, 10),
              IsOkAndHolds(ElementsAre(IsObject(2, Tid(1), bigger))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.data_bytes, big.size() + bigger.size());
}

TEST_P(BackendConformanceTest, ExtremeIdsRoundTrip) {
  // The largest tid fits; oids up to 2^63 - 1 keep their order.
  const uint64_t oid_a = (uint64_t{1} << 62) + 1;
  const uint64_t oid_b = kMaxTid;  // 2^63 - 1
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(oid_a, "a1"), Obj(oid_b, "b1")}),
              IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(2), {Obj(oid_a, "a2")})}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(2), kMaxTid}}), IsOk());
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(oid_a), oid_a, kUnbounded),
              IsOkAndHolds(IsRevision(oid_a, kMaxTid, 0, "a2")));
  EXPECT_THAT(backend_->LoadBefore(PartitionOf(oid_a), oid_a, kMaxTid),
              IsOkAndHolds(IsRevision(oid_a, Tid(1), kMaxTid, "a1")));
  EXPECT_THAT(backend_->LoadSerial(PartitionOf(oid_b), oid_b, Tid(1)),
              IsOkAndHolds(IsRevision(oid_b, Tid(1), 0, "b1")));
  EXPECT_THAT(backend_->GetLastSerials(kPartitions, {oid_a, oid_b}),
              IsOkAndHolds(ElementsAre(kMaxTid, Tid(1))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, kMaxTid);
  EXPECT_EQ(ids.last_oid, oid_b);
  EXPECT_THAT(backend_->FindCommittedTid(Tid(2)), IsOkAndHolds(kMaxTid));
  EXPECT_THAT(backend_->LastTransactions(10, kNoBound),
              IsOkAndHolds(ElementsAre(HasTid(kMaxTid), HasTid(Tid(1)))));
  EXPECT_THAT(backend_->ListTransactions(PartitionOf(Tid(2)), kMaxTid, kMaxTid, 10),
              IsOkAndHolds(ElementsAre(IsTxn(kMaxTid, Tid(2), {oid_a}))));
}

// --- Concurrency ---

TEST_P(BackendConformanceTest, ConcurrentCommitsAndLoads) {
  constexpr int kWriters = 4;
  constexpr int kCommitsPerWriter = 25;
  constexpr uint64_t kSharedOid = 1000;
  // Writer w commits Tid(1 + i * kWriters + w): tids are unique and each
  // writer's own tids increase, though commits of different writers
  // interleave in any order.
  auto TidOf = [](int w, int i) { return Tid(1 + i * kWriters + w); };
  auto DataOf = [](uint64_t oid, uint64_t tid) {
    return absl::StrCat("oid ", oid, " tid ", tid);
  };

  std::atomic<int> writers_left{kWriters};
  std::atomic<int> loads_ok{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      const uint64_t own_oid = 1 + w;
      for (int i = 0; i < kCommitsPerWriter; ++i) {
        const uint64_t tid = TidOf(w, i);
        absl::Status s = backend_->StoreVotes(
            {Vote(tid, {Obj(own_oid, DataOf(own_oid, tid)),
                        Obj(kSharedOid + tid % 7, DataOf(kSharedOid, tid))})});
        if (s.ok()) s = backend_->LockTransactions({{tid, tid}});
        if (!s.ok()) {
          ADD_FAILURE() << "writer " << w << " commit " << i << ": " << s;
          break;
        }
        // Read our own write back.
        absl::StatusOr<LoadedObject> o =
            backend_->LoadBefore(PartitionOf(own_oid), own_oid, kUnbounded);
        if (!o.ok() || o->serial != tid || o->data != DataOf(own_oid, tid)) {
          ADD_FAILURE() << "writer " << w << " reads back " << o.status();
          break;
        }
      }
      writers_left.fetch_sub(1);
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      // Loads while writers run: each answer is a consistent revision.
      int n = 0;
      while (writers_left.load() > 0 || n < 20) {
        const uint64_t oid = 1 + (n++ + r) % kWriters;
        absl::StatusOr<LoadedObject> o =
            backend_->LoadBefore(PartitionOf(oid), oid, kUnbounded);
        if (!o.ok()) {
          if (ErrorReason(o.status()) != common::kReasonNoSuchObject) {
            ADD_FAILURE() << "reader " << r << ": " << o.status();
            return;
          }
          continue;
        }
        if (o->data != DataOf(oid, o->serial) || o->next_serial != 0) {
          ADD_FAILURE() << "reader " << r << " got serial " << o->serial
                        << " data " << o->data;
          return;
        }
        loads_ok.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GT(loads_ok.load(), 0);

  CONFORMANCE_ASSERT_OK_AND_ASSIGN(BackendStats stats, backend_->GetStats());
  EXPECT_EQ(stats.object_count, 2u * kWriters * kCommitsPerWriter);
  EXPECT_EQ(stats.transaction_count, uint64_t{kWriters} * kCommitsPerWriter);
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
  for (int w = 0; w < kWriters; ++w) {
    const uint64_t oid = 1 + w;
    const uint64_t last = TidOf(w, kCommitsPerWriter - 1);
    EXPECT_THAT(backend_->LoadBefore(PartitionOf(oid), oid, kUnbounded),
                IsOkAndHolds(IsRevision(oid, last, 0, DataOf(oid, last))));
    CONFORMANCE_ASSERT_OK_AND_ASSIGN(
        std::vector<HistoryEntry> history,
        backend_->History(PartitionOf(oid), oid, 1000));
    EXPECT_THAT(history, SizeIs(kCommitsPerWriter));
    // Walk back through the revisions with next_serial.
    uint64_t next = 0;
    for (int i = kCommitsPerWriter - 1; i >= 0; --i) {
      const uint64_t tid = TidOf(w, i);
      EXPECT_THAT(backend_->LoadSerial(PartitionOf(oid), oid, tid),
                  IsOkAndHolds(IsRevision(oid, tid, next, DataOf(oid, tid))));
      next = tid;
    }
  }
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, TidOf(kWriters - 1, kCommitsPerWriter - 1));
  EXPECT_EQ(ids.last_ttid, 0u);
}

// --- Durability and ownership ---

TEST_P(BackendConformanceTest, DataSurvivesReopen) {
  ASSERT_THAT(backend_->SetConfig("cluster", "prod"), IsOk());
  PartitionTableRecord pt;
  pt.ptid = 9;
  pt.cells = {{0, 1, 1}, {1, 1, 2}};
  ASSERT_THAT(backend_->SavePartitionTable(pt), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "v1")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(1, "v2")}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(3), {Obj(2, "pending")})}), IsOk());

  ASSERT_NO_FATAL_FAILURE(Reopen());

  EXPECT_THAT(backend_->GetConfig("cluster"),
              IsOkAndHolds(Optional(std::string("prod"))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(PartitionTableRecord loaded,
                                   backend_->LoadPartitionTable());
  EXPECT_EQ(loaded.ptid, 9u);
  EXPECT_THAT(loaded.cells, UnorderedElementsAre(IsCell(0, 1, 1), IsCell(1, 1, 2)));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(2), 0, "v2")));
  EXPECT_THAT(backend_->LoadBefore(1, 1, Tid(2)),
              IsOkAndHolds(IsRevision(1, Tid(1), Tid(2), "v1")));
  // The vote is in doubt after a restart, and can still be locked.
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(ElementsAre(Tid(3))));
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(LastIds ids, backend_->GetLastIds());
  EXPECT_EQ(ids.last_tid, Tid(2));
  EXPECT_EQ(ids.last_oid, 2u);
  EXPECT_EQ(ids.last_ttid, Tid(3));
  ASSERT_THAT(backend_->LockTransactions({{Tid(3), Tid(4)}}), IsOk());

  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(4), 0, "pending")));
  EXPECT_THAT(backend_->FindCommittedTid(Tid(3)), IsOkAndHolds(Tid(4)));
  EXPECT_THAT(backend_->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
}

TEST_P(BackendConformanceTest, SecondOpenFailsWhileFirstIsOpen) {
  EXPECT_THAT(store_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // The first backend is unaffected.
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "v")}), IsOk());
  // Once it is gone, the store can be opened again.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(1), 0, "v")));
  EXPECT_THAT(store_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(BackendConformanceTest, RefusesNewerSchema) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "v")}), IsOk());
  backend_.reset();
  absl::Status forced = store_->ForceSchemaVersion(kSchemaVersion + 1);
  if (absl::IsUnimplemented(forced)) {
    GTEST_SKIP() << "store can't fake a newer schema: " << forced;
  }
  ASSERT_THAT(forced, IsOk());
  EXPECT_THAT(store_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // The refusal didn't keep the ownership lock: still refused, same code.
  EXPECT_THAT(store_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // Back to this build's version: the data is still there.
  ASSERT_THAT(store_->ForceSchemaVersion(kSchemaVersion), IsOk());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(1), 0, "v")));
}

}  // namespace cellar::storage

// --- Pack ---

namespace cellar::storage {
namespace {

// Packs every partition at pack_tid, `max_items` per call; the totals.
PackChunk PackAll(StorageBackend& backend, uint64_t pack_tid, uint32_t max_items) {
  PackChunk total;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    PackPosition at;
    for (int calls = 0;; ++calls) {
      absl::StatusOr<PackChunk> chunk = backend.PackPartition(p, pack_tid, at, max_items);
      EXPECT_THAT(chunk, IsOk());
      if (!chunk.ok() || calls > 10000) return total;
      total.rows_removed += chunk->rows_removed;
      total.bytes_removed += chunk->bytes_removed;
      total.transactions_marked += chunk->transactions_marked;
      if (chunk->done) break;
      at = chunk->next;
    }
  }
  total.done = true;
  return total;
}

// What a load answered, minus data_tid (a pack may rewrite back-pointers).
std::string LoadAnswer(const absl::StatusOr<LoadedObject>& o) {
  if (!o.ok()) return absl::StrCat("error ", absl::StatusCodeToString(o.status().code()));
  return absl::StrCat(o->oid, " ", o->serial, " ", o->next_serial, " ",
                      absl::CHexEscape(o->data), " ", absl::CHexEscape(o->checksum));
}

}  // namespace

TEST_P(BackendConformanceTest, PackRejectsBadArguments) {
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "a")}), IsOk());
  EXPECT_THAT(backend_->PackPartition(1, 0, {}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->PackPartition(1, kMaxTid + 1, {}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->PackPartition(1, Tid(2), {}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend_->LoadSerial(1, 1, Tid(1)), IsOkAndHolds(IsRevision(1, Tid(1), 0, "a")));
}

// Many oids, revisions, deletions and undo chains: after a pack at a
// middle tid (in small chunks), every load at a tid above it answers what
// it answered before, the revisions older than the current one at the
// pack tid are gone with their bytes, the counts equal a scan and the
// old transaction records say packed.
TEST_P(BackendConformanceTest, PackKeepsEveryLoadAfterThePackTid) {
  constexpr int kTxns = 60;
  constexpr int kOids = 14;
  uint64_t seed = 12345;
  auto next = [&seed](uint64_t n) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (seed >> 33) % n;
  };
  std::map<uint64_t, std::vector<uint64_t>> revisions;  // oid -> tids
  for (int t = 1; t <= kTxns; ++t) {
    std::map<uint64_t, ObjectRecord> objects;
    for (int n = 1 + next(4); n > 0; --n) {
      uint64_t oid = 1 + next(kOids);
      const std::vector<uint64_t>& revs = revisions[oid];
      uint64_t kind = next(10);
      if (kind == 0 && !revs.empty()) {
        objects[oid] = Deletion(oid);
      } else if (kind <= 3 && !revs.empty()) {
        // An undo to any earlier revision (itself maybe an undo or a
        // deletion): chains and shared targets.
        objects[oid] = Undo(oid, revs[next(revs.size())], "");
      } else {
        objects[oid] = Obj(oid, absl::StrCat("oid ", oid, " txn ", t,
                                             std::string(next(50), 'x')));
      }
    }
    std::vector<ObjectRecord> list;
    for (auto& [oid, o] : objects) {
      revisions[oid].push_back(Tid(t));
      list.push_back(o);
    }
    ASSERT_THAT(Commit(*backend_, Tid(t), list), IsOk());
  }
  // Undo records carry the checksum of the data they re-use, as clients
  // send them; the loads return the target's anyway.
  const uint64_t pack_tid = Tid(kTxns / 2) + 5;
  auto answers = [&](uint64_t from_tid) {
    std::vector<std::string> out;
    for (uint64_t oid = 1; oid <= kOids; ++oid) {
      for (int t = 1; t <= kTxns + 1; ++t) {
        for (uint64_t before : {Tid(t), Tid(t) + 1}) {
          if (before <= from_tid) continue;
          out.push_back(absl::StrCat(oid, "@", before, ": ",
                                     LoadAnswer(backend_->LoadBefore(
                                         PartitionOf(oid), oid, before))));
        }
      }
    }
    return out;
  };
  const std::vector<std::string> before_pack = answers(pack_tid);
  absl::StatusOr<BackendStats> stats_before = backend_->GetStats();
  ASSERT_THAT(stats_before, IsOk());

  PackChunk packed = PackAll(*backend_, pack_tid, 2);
  ASSERT_TRUE(packed.done);
  EXPECT_GT(packed.rows_removed, 0u);
  EXPECT_GT(packed.bytes_removed, 0u);
  EXPECT_EQ(answers(pack_tid), before_pack);

  // Exactly the revisions older than the current one at pack_tid went.
  uint64_t expected_removed = 0;
  for (const auto& [oid, tids] : revisions) {
    size_t current = 0;
    for (size_t i = 0; i < tids.size() && tids[i] <= pack_tid; ++i) current = i;
    expected_removed += current;
    for (size_t i = 0; i < tids.size(); ++i) {
      absl::StatusOr<LoadedObject> o = backend_->LoadSerial(PartitionOf(oid), oid, tids[i]);
      if (i < current) {
        EXPECT_THAT(o, NotFoundWithReason(kReasonNoSuchRevision)) << oid << "@" << tids[i];
      } else {
        EXPECT_THAT(o, IsOk()) << oid << "@" << tids[i];
      }
    }
  }
  EXPECT_EQ(packed.rows_removed, expected_removed);
  absl::StatusOr<BackendStats> stats = backend_->GetStats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->object_count, stats_before->object_count - expected_removed);
  EXPECT_EQ(stats->data_bytes, stats_before->data_bytes - packed.bytes_removed);
  // No orphan bytes: one data row per record with bytes of its own.
  uint64_t with_bytes = 0;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    absl::StatusOr<std::vector<ObjectRecord>> records = backend_->ListObjects(p, 0, kMaxTid, 100000);
    ASSERT_THAT(records, IsOk());
    for (const ObjectRecord& r : *records) with_bytes += r.data.empty() ? 0 : 1;
  }
  if (stats->data_rows != 0) EXPECT_EQ(stats->data_rows, with_bytes);
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));

  // Transaction records are all kept; the old ones say packed.
  absl::StatusOr<std::vector<TransactionRecord>> txns = backend_->LastTransactions(1000, kNoBound);
  ASSERT_THAT(txns, IsOk());
  ASSERT_EQ(txns->size(), static_cast<size_t>(kTxns));
  for (const TransactionRecord& t : *txns) EXPECT_EQ(t.packed, t.tid < pack_tid) << t.tid;
  EXPECT_EQ(packed.transactions_marked, static_cast<uint64_t>(kTxns / 2));

  // Again, at the same or a lower tid, after a restart: nothing more.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  PackChunk again = PackAll(*backend_, pack_tid, 1000);
  EXPECT_EQ(again.rows_removed, 0u);
  EXPECT_EQ(again.transactions_marked, 0u);
  EXPECT_EQ(PackAll(*backend_, Tid(3), 1000).rows_removed, 0u);
  EXPECT_EQ(answers(pack_tid), before_pack);
}

// Kept undo records whose back-pointers lead into the removed revisions
// take the bytes (the oldest of them) or point at the one that did.
TEST_P(BackendConformanceTest, PackRewritesUndoBackPointersIntoRemovedRevisions) {
  // oid 1 (partition 1): a, b, undo->a, undo->undo; oid 4 (partition 1):
  // x, deletion, y, undo->deletion; oid 2 (partition 2): c, d, e, then
  // two undos to c.
  ASSERT_THAT(Commit(*backend_, Tid(1), {Obj(1, "a"), Obj(2, "c"), Obj(4, "x")}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(2), {Obj(1, "b"), Obj(2, "d"), Deletion(4)}), IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(3), {Undo(1, Tid(1), Checksum("a")), Obj(2, "e"),
                                         Obj(4, "y")}),
              IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(5), {Undo(1, Tid(3), Checksum("a")),
                                         Undo(2, Tid(1), Checksum("c")),
                                         Undo(4, Tid(2), "")}),
              IsOk());
  ASSERT_THAT(Commit(*backend_, Tid(6), {Undo(2, Tid(1), Checksum("c"))}), IsOk());
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 2, 8, 4},
                                       PartitionStats{2, 1, 5, 3})));

  PackChunk packed = PackAll(*backend_, Tid(4), 1);
  EXPECT_EQ(packed.rows_removed, 2u + 2u + 2u);
  // Freed: b, x (oid 1's a and oid 2's c were taken by kept revisions),
  // d.
  EXPECT_EQ(packed.bytes_removed, 3u);

  EXPECT_THAT(backend_->ListObjects(1, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(1, Tid(3), "a"), IsObject(4, Tid(3), "y"),
                                       IsObject(1, Tid(5), "", Tid(3)),
                                       IsObject(4, Tid(5), ""))));
  EXPECT_THAT(backend_->ListObjects(2, 0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(IsObject(2, Tid(3), "e"), IsObject(2, Tid(5), "c"),
                                       IsObject(2, Tid(6), "", Tid(5)))));
  EXPECT_THAT(backend_->LoadBefore(1, 1, kUnbounded),
              IsOkAndHolds(IsRevision(1, Tid(5), 0, "a", Tid(3))));
  EXPECT_THAT(backend_->LoadBefore(1, 1, Tid(4)), IsOkAndHolds(IsRevision(1, Tid(3), Tid(5), "a")));
  EXPECT_THAT(backend_->LoadBefore(2, 2, kUnbounded),
              IsOkAndHolds(IsRevision(2, Tid(6), 0, "c", Tid(5))));
  EXPECT_THAT(backend_->LoadSerial(2, 2, Tid(5)), IsOkAndHolds(IsRevision(2, Tid(5), Tid(6), "c")));
  EXPECT_THAT(backend_->LoadSerial(1, 4, Tid(5)),
              IsOkAndHolds(AllOf(Field("data", &LoadedObject::data, ""),
                                 Field("data_tid", &LoadedObject::data_tid, 0u))));
  // The undo of a deletion became a deletion: one object fewer.
  EXPECT_THAT(backend_->GetPartitionStats(),
              IsOkAndHolds(ElementsAre(PartitionStats{1, 1, 4, 1 + 1},
                                       PartitionStats{2, 1, 3, 2})));
  EXPECT_THAT(backend_->GetPartitionStats(), IsOkAndHolds(ScannedStats(*backend_)));
  absl::StatusOr<BackendStats> stats = backend_->GetStats();
  ASSERT_THAT(stats, IsOk());
  if (stats->data_rows != 0) EXPECT_EQ(stats->data_rows, 4u);
}

TEST_P(BackendConformanceTest, ScanTransactionsPagesAllPartitionsInTidOrder) {
  // Records in every partition (Tid(i) % 3 cycles), one locked with a tid
  // that is not its ttid, one imported from a replica, one voted only.
  for (int i = 1; i <= 6; ++i) {
    ASSERT_THAT(Commit(*backend_, Tid(i), {Obj(300 + i, "v")}), IsOk());
  }
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(7), {Obj(307, "a"), Obj(308, "b")})}), IsOk());
  ASSERT_THAT(backend_->LockTransactions({{Tid(7), Tid(10)}}), IsOk());
  TransactionRecord imported = Txn(Tid(8), {309});
  imported.tid = Tid(8);
  ASSERT_THAT(backend_->ImportCommitted({imported}, {}), IsOk());
  ASSERT_THAT(backend_->StoreVotes({Vote(Tid(9), {Obj(310, "c")})}), IsOk());

  EXPECT_THAT(backend_->ScanTransactions(0, kMaxTid, 100),
              IsOkAndHolds(ElementsAre(HasTid(Tid(1)), HasTid(Tid(2)), HasTid(Tid(3)),
                                       HasTid(Tid(4)), HasTid(Tid(5)), HasTid(Tid(6)),
                                       IsTxn(Tid(8), Tid(8), {309}),
                                       IsTxn(Tid(10), Tid(7), {307, 308}))));
  // Pages of 3, each resuming after the last tid, list everything once.
  std::vector<uint64_t> paged;
  for (uint64_t from = 0;;) {
    CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<TransactionRecord> page,
                                     backend_->ScanTransactions(from, kMaxTid, 3));
    ASSERT_LE(page.size(), 3u);
    for (const TransactionRecord& t : page) paged.push_back(t.tid);
    if (page.size() < 3) break;
    from = page.back().tid + 1;
  }
  EXPECT_THAT(paged, ElementsAre(Tid(1), Tid(2), Tid(3), Tid(4), Tid(5), Tid(6), Tid(8),
                                 Tid(10)));
  // Bounds are inclusive; an empty or backwards range, limit 0: nothing.
  EXPECT_THAT(backend_->ScanTransactions(Tid(2), Tid(4), 100),
              IsOkAndHolds(ElementsAre(HasTid(Tid(2)), HasTid(Tid(3)), HasTid(Tid(4)))));
  EXPECT_THAT(backend_->ScanTransactions(Tid(9), Tid(9), 100), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ScanTransactions(Tid(4), Tid(3), 100), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ScanTransactions(0, kMaxTid, 0), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ScanTransactions(kMaxTid + 1, ~uint64_t{0}, 10),
              IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(backend_->ScanTransactions(Tid(10), ~uint64_t{0}, 10),
              IsOkAndHolds(ElementsAre(HasTid(Tid(10)))));
  // Records a pack marked say so.
  PackAll(*backend_, Tid(3), 100);
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<TransactionRecord> after_pack,
                                   backend_->ScanTransactions(0, Tid(3), 100));
  ASSERT_THAT(after_pack, SizeIs(3));
  EXPECT_TRUE(after_pack[0].packed);
  EXPECT_TRUE(after_pack[1].packed);
  EXPECT_FALSE(after_pack[2].packed);
  // Dropped with their partition.
  ASSERT_THAT(backend_->DeletePartition(PartitionOf(Tid(1))), IsOk());
  CONFORMANCE_ASSERT_OK_AND_ASSIGN(std::vector<TransactionRecord> kept,
                                   backend_->ScanTransactions(0, kMaxTid, 100));
  for (const TransactionRecord& t : kept) EXPECT_NE(t.partition, PartitionOf(Tid(1)));
  EXPECT_THAT(kept, SizeIs(::testing::Lt(8)));
}

}  // namespace cellar::storage
