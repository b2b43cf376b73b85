// The transaction manager across a storage restart, on every backend (the
// in-memory one, a SQLite file, a PostgreSQL database: $CELLAR_TEST_PG or
// a throwaway server): voted transactions come back with their object
// locks, taken again from the stored votes (semantics.md, "Rules that
// restarts and hostile callers make explicit", rule 4).

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/postgres/postgres_backend.h"
#include "services/storage/backend/sqlite/sqlite_backend.h"
#include "services/storage/testing/memory_backend.h"
#include "services/storage/transaction_manager.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::storage {
namespace {

using ::cellar::common::Checksum;
using ::cellar::common::ErrorReason;
using ::cellar::common::GetConflict;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

constexpr uint32_t kNode = 1;
constexpr uint32_t kPartitions = 4;

// A database that outlives the backends opened on it (a node's restart).
struct Database {
  std::function<absl::StatusOr<std::shared_ptr<StorageBackend>>()> open;
  std::function<void()> drop = [] {};
};

struct Param {
  std::string name;
  std::function<absl::StatusOr<Database>()> make;
};

absl::StatusOr<Database> MemoryDatabase() {
  // A new backend on the same store: only what the store keeps survives.
  auto store = std::make_shared<testing::MemoryStore>();
  return Database{[store]() -> absl::StatusOr<std::shared_ptr<StorageBackend>> {
    auto backend = testing::MemoryBackend::Open(store);
    if (!backend.ok()) return backend.status();
    return std::shared_ptr<StorageBackend>(*std::move(backend));
  }};
}

absl::StatusOr<Database> SqliteDatabase() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/restart_test.db");
  std::remove(path.c_str());
  return Database{[path]() -> absl::StatusOr<std::shared_ptr<StorageBackend>> {
    SqliteBackend::Options options;
    options.path = path;
    auto backend = SqliteBackend::Open(options);
    if (!backend.ok()) return backend.status();
    return std::shared_ptr<StorageBackend>(*std::move(backend));
  }};
}

absl::StatusOr<Database> PostgresDatabase() {
  absl::StatusOr<tools::TestDatabase> db = tools::CreateTestDatabase("restart");
  if (!db.ok()) return db.status();
  const std::string conninfo = db->conninfo, name = db->name;
  return Database{
      [conninfo]() -> absl::StatusOr<std::shared_ptr<StorageBackend>> {
        PostgresBackend::Options options;
        options.conninfo = conninfo;
        options.pool_size = 2;
        auto backend = PostgresBackend::Open(options);
        if (!backend.ok()) return backend.status();
        return std::shared_ptr<StorageBackend>(*std::move(backend));
      },
      [name] { (void)tools::DropTestDatabase(name); }};
}

StoreObject Obj(uint64_t oid, uint64_t base, std::string data) {
  StoreObject o;
  o.oid = oid;
  o.base_serial = base;
  o.checksum = Checksum(data);
  o.data = std::move(data);
  return o;
}

class RestartTest : public ::testing::TestWithParam<Param> {
 protected:
  RestartTest() : view_(kNode, Table()) {}

  static std::shared_ptr<const common::PartitionTable> Table() {
    auto pt = std::make_shared<common::PartitionTable>(kPartitions, 0);
    for (uint32_t p = 0; p < kPartitions; ++p) {
      pt->SetCell(p, kNode, ::cellar::v1::CELL_UP_TO_DATE);
    }
    pt->set_ptid(1);
    return pt;
  }

  void SetUp() override {
    auto db = GetParam().make();
    ASSERT_THAT(db, IsOk());
    db_ = *std::move(db);
    ASSERT_NO_FATAL_FAILURE(Start());
  }
  void TearDown() override {
    Stop();
    db_.drop();
  }

  // A node's start: a backend on the database, fresh managers.
  void Start() {
    auto backend = db_.open();
    ASSERT_THAT(backend, IsOk());
    backend_ = *std::move(backend);
    locks_ = std::make_unique<LockManager>();
    batcher_ = std::make_unique<WriteBatcher>(backend_.get(), WriteBatcherOptions());
    tm_ = std::make_unique<TransactionManager>(backend_.get(), locks_.get(), batcher_.get(),
                                               TransactionManagerOptions());
  }
  void Stop() {
    tm_.reset();
    batcher_.reset();
    locks_.reset();
    backend_.reset();
  }

  absl::Status Store(uint64_t ttid, std::vector<StoreObject> objects) {
    return tm_->Store(ttid, 42, std::move(objects), view_, absl::Now() + absl::Seconds(10));
  }
  absl::Status Vote(uint64_t ttid, std::vector<uint64_t> oids) {
    TransactionMetadata m;
    m.user = "alice";
    m.oids = std::move(oids);
    return tm_->Vote(ttid, 42, m, view_);
  }

  Database db_;
  std::shared_ptr<StorageBackend> backend_;
  std::unique_ptr<LockManager> locks_;
  std::unique_ptr<WriteBatcher> batcher_;
  std::unique_ptr<TransactionManager> tm_;
  CellView view_;
};

TEST_P(RestartTest, VotesKeepTheirObjectLocks) {
  ASSERT_THAT(Store(100, {Obj(1, 0, "v1")}), IsOk());
  ASSERT_THAT(Vote(100, {1}), IsOk());
  ASSERT_THAT(tm_->Lock(100, 104), IsOk());
  ASSERT_THAT(tm_->Unlock(100), IsOk());
  ASSERT_THAT(Store(200, {Obj(1, 104, "voted"), Obj(2, 0, "b")}), IsOk());
  ASSERT_THAT(Vote(200, {1, 2}), IsOk());
  ASSERT_THAT(Store(250, {Obj(6, 0, "voted, then aborted")}), IsOk());
  ASSERT_THAT(Vote(250, {6}), IsOk());

  Stop();
  ASSERT_NO_FATAL_FAILURE(Start());
  auto voted = backend_->ListVotedObjects();
  ASSERT_THAT(voted, IsOk());
  EXPECT_THAT(*voted, ::testing::ElementsAre(VotedTransaction{200, {1, 2}},
                                             VotedTransaction{250, {6}}));
  EXPECT_EQ(tm_->RecoverVoted(*voted), 0u);
  EXPECT_EQ(locks_->Holder(1), 200u);
  EXPECT_EQ(locks_->Holder(6), 250u);

  // The same object on the same base serial: a younger transaction dies,
  // an older one waits (here until its deadline) -- never a lost update.
  absl::Status s = Store(300, {Obj(1, 104, "lost update")});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), common::kReasonLockContention);
  s = tm_->Store(150, 43, {Obj(1, 104, "older")}, view_, absl::Now() + absl::Milliseconds(20));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted, HasSubstr("timed out waiting")));
  EXPECT_EQ(ErrorReason(s), common::kReasonLockContention);
  // Committed by verification: the other transaction now conflicts.
  ASSERT_THAT(tm_->Lock(200, 204), IsOk());
  ASSERT_THAT(tm_->Unlock(200), IsOk());
  s = Store(300, {Obj(1, 104, "lost update")});
  auto conflict = GetConflict(s);
  ASSERT_TRUE(conflict.has_value()) << s;
  EXPECT_EQ(conflict->current_serial, 204u);
  // Aborted by verification: the object is free.
  EXPECT_EQ(ErrorReason(Store(300, {Obj(6, 0, "x")})), common::kReasonLockContention);
  ASSERT_THAT(tm_->Abort(250), IsOk());
  EXPECT_THAT(Store(300, {Obj(6, 0, "x")}), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Backends, RestartTest,
                         ::testing::Values(Param{"memory", MemoryDatabase},
                                           Param{"sqlite", SqliteDatabase},
                                           Param{"postgresql", PostgresDatabase}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace cellar::storage
