#include "services/storage/backend/sqlite/sqlite_backend.h"

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/backend_conformance.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

// A fresh database path under $TEST_TMPDIR for every call.
std::string FreshPath(absl::string_view tag) {
  static std::atomic<int> counter{0};
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", tag, "_", getpid(),
                      "_", counter.fetch_add(1), ".db");
}

SqliteBackend::Options OptionsFor(const std::string& path,
                                  int read_connections = 3) {
  SqliteBackend::Options options;
  options.path = path;
  options.read_connections = read_connections;
  return options;
}

// Runs one statement with one integer parameter on a raw connection to
// `path` (no backend may be open on it).
absl::Status RawExec(const std::string& path, const char* sql,
                     int64_t param) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  sqlite3_stmt* stmt = nullptr;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc == SQLITE_OK && sqlite3_bind_parameter_count(stmt) > 0) {
    rc = sqlite3_bind_int64(stmt, 1, param);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) rc = SQLITE_OK;
  }
  absl::Status status =
      rc == SQLITE_OK ? absl::OkStatus()
                      : absl::InternalError(absl::StrCat(
                            "raw sqlite: ", sql, ": ", sqlite3_errmsg(db)));
  sqlite3_finalize(stmt);
  sqlite3_close_v2(db);
  return status;
}

// The integer `sql` returns on a raw read-only connection to `path` (a
// backend may be open on it: this reads the last committed state).
absl::StatusOr<int64_t> RawInt(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* stmt = nullptr;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  absl::StatusOr<int64_t> value =
      rc == SQLITE_ROW ? absl::StatusOr<int64_t>(sqlite3_column_int64(stmt, 0))
                       : absl::InternalError(absl::StrCat(
                             "raw sqlite: ", sql, ": ", sqlite3_errmsg(db)));
  sqlite3_finalize(stmt);
  sqlite3_close_v2(db);
  return value;
}

absl::Status SetSchemaVersion(const std::string& path, int version) {
  // Stored the way the backend stores it: decimal bytes.
  return RawExec(path,
                 "UPDATE config SET value = CAST(CAST(?1 AS TEXT) AS BLOB) "
                 "WHERE name = 'schema_version'",
                 version);
}

// Runs `script` (statements without parameters) on a raw connection to
// `path` (no backend may be open on it).
absl::Status RawScript(const std::string& path, const char* script) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, script, nullptr, nullptr, nullptr);
  absl::Status status =
      rc == SQLITE_OK ? absl::OkStatus()
                      : absl::InternalError(absl::StrCat(
                            "raw sqlite script: ", sqlite3_errmsg(db)));
  sqlite3_close_v2(db);
  return status;
}

// Turns a database of this build back into the layout of schema version 3
// (the tables exactly as versions 1-3 created them): object bytes inline
// in obj / tobj, no data table. The caller sets the version.
// Turns a database of this build back into the layout of schema version 4
// (no per-partition counts); the caller sets the version.
absl::Status RestoreVersion4Layout(const std::string& path) {
  return RawScript(path, "ALTER TABLE tlock DROP COLUMN partitions; DROP TABLE pstats;");
}

// Turns a database of this build back into the layout of schema version 5
// (no partitions in tlock); the caller sets the version.
absl::Status RestoreVersion5Layout(const std::string& path) {
  return RawScript(path, "ALTER TABLE tlock DROP COLUMN partitions;");
}

absl::Status RestoreVersion3Layout(const std::string& path) {
  if (absl::Status s = RestoreVersion4Layout(path); !s.ok()) return s;
  return RawScript(
      path,
      "CREATE TABLE obj3 ("
      "  part INTEGER NOT NULL,"
      "  oid INTEGER NOT NULL,"
      "  tid INTEGER NOT NULL,"
      "  data_tid INTEGER NOT NULL,"
      "  checksum BLOB NOT NULL,"
      "  data BLOB NOT NULL,"
      "  PRIMARY KEY (part, oid, tid));"
      "INSERT INTO obj3 SELECT o.part, o.oid, o.tid, o.data_tid, o.checksum,"
      "  ifnull(d.data, x'') FROM obj o LEFT JOIN data d ON d.id = o.data_id;"
      "CREATE TABLE tobj3 ("
      "  ttid INTEGER NOT NULL,"
      "  part INTEGER NOT NULL,"
      "  oid INTEGER NOT NULL,"
      "  data_tid INTEGER NOT NULL,"
      "  checksum BLOB NOT NULL,"
      "  data BLOB NOT NULL,"
      "  PRIMARY KEY (ttid, oid));"
      "INSERT INTO tobj3 SELECT t.ttid, t.part, t.oid, t.data_tid, t.checksum,"
      "  ifnull(d.data, x'') FROM tobj t LEFT JOIN data d ON d.id = t.data_id;"
      "DROP TABLE obj; DROP TABLE tobj; DROP TABLE data;"
      "ALTER TABLE obj3 RENAME TO obj;"
      "ALTER TABLE tobj3 RENAME TO tobj;"
      "CREATE INDEX obj_part_tid ON obj (part, tid, oid);");
}

// Turns a database of this build back into the layout of schema version 2
// (no `size` in trans / ttrans); the caller sets the version.
absl::Status DropSizeColumns(const std::string& path) {
  for (const char* sql : {"ALTER TABLE trans DROP COLUMN size",
                          "ALTER TABLE ttrans DROP COLUMN size"}) {
    absl::Status s = RawExec(path, sql, 0);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

class SqliteConformanceStore : public ConformanceStore {
 public:
  explicit SqliteConformanceStore(int read_connections)
      : path_(FreshPath("conformance")), read_connections_(read_connections) {}
  ~SqliteConformanceStore() override {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
      std::remove((path_ + suffix).c_str());
    }
  }

  absl::StatusOr<std::unique_ptr<StorageBackend>> Open() override {
    return SqliteBackend::Open(OptionsFor(path_, read_connections_));
  }

  absl::Status ForceSchemaVersion(int version) override {
    return SetSchemaVersion(path_, version);
  }

  absl::Status RestorePreviousSchema() override {
    static_assert(kSchemaVersion == 6, "restore the layout of version 5");
    absl::Status s = RestoreVersion5Layout(path_);
    return s.ok() ? SetSchemaVersion(path_, 5) : s;
  }

 private:
  const std::string path_;
  const int read_connections_;
};

INSTANTIATE_TEST_SUITE_P(
    Sqlite, BackendConformanceTest,
    ::testing::Values(BackendConformanceParam{
        "sqlite",
        []() -> absl::StatusOr<std::unique_ptr<ConformanceStore>> {
          return std::make_unique<SqliteConformanceStore>(4);
        }}),
    BackendConformanceParamName);

// A single reader connection: loads queue for it, writes don't.
INSTANTIATE_TEST_SUITE_P(
    SqliteOneReader, BackendConformanceTest,
    ::testing::Values(BackendConformanceParam{
        "sqlite_one_reader",
        []() -> absl::StatusOr<std::unique_ptr<ConformanceStore>> {
          return std::make_unique<SqliteConformanceStore>(1);
        }}),
    BackendConformanceParamName);

// --- SQLite-specific behaviour ---

TEST(SqliteBackendTest, RejectsBadOptions) {
  SqliteBackend::Options options;
  EXPECT_THAT(SqliteBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.path = ":memory:";
  EXPECT_THAT(SqliteBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.path = "file:x.db?mode=memory";
  EXPECT_THAT(SqliteBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options = OptionsFor(FreshPath("options"));
  options.read_connections = 0;
  EXPECT_THAT(SqliteBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.read_connections = 1;
  options.busy_timeout_ms = -1;
  EXPECT_THAT(SqliteBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.busy_timeout_ms = 0;
  options.max_page_count = -1;
  EXPECT_THAT(SqliteBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SqliteBackendTest, DiskUsageIsTheDatabaseDirectorysVolume) {
  auto backend = SqliteBackend::Open(OptionsFor(FreshPath("disk")));
  ASSERT_THAT(backend, IsOk());
  auto disk = (*backend)->GetDiskUsage();
  ASSERT_THAT(disk, IsOk());
  ASSERT_TRUE(disk->has_value());
  EXPECT_GT((*disk)->total_bytes, 0u);
  EXPECT_LE((*disk)->free_bytes, (*disk)->total_bytes);
}

TEST(SqliteBackendTest, PoolUsageCountsTheReaders) {
  auto backend = SqliteBackend::Open(OptionsFor(FreshPath("pool"), /*read_connections=*/3));
  ASSERT_THAT(backend, IsOk());
  const std::optional<PoolUsage> pool = (*backend)->GetPoolUsage();
  ASSERT_TRUE(pool.has_value());
  EXPECT_EQ(pool->in_use, 0);
  EXPECT_EQ(pool->idle, 3);
}

TEST(SqliteBackendTest, KindIsSqlite) {
  auto backend = SqliteBackend::Open(OptionsFor(FreshPath("kind")));
  ASSERT_THAT(backend, IsOk());
  EXPECT_EQ((*backend)->Kind(), "sqlite");
}

TEST(SqliteBackendTest, SecondOpenSaysTheDatabaseIsInUse) {
  const std::string path = FreshPath("in_use");
  auto first = SqliteBackend::Open(OptionsFor(path));
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(
      SqliteBackend::Open(OptionsFor(path)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(absl::StrCat("database ", path,
                                      " is in use by another storage node"))));
  first->reset();
  EXPECT_THAT(SqliteBackend::Open(OptionsFor(path)), IsOk());
}

TEST(SqliteBackendTest, MissingDirectoryIsAnError) {
  const std::string path = FreshPath("nodir") + "/sub/db";
  EXPECT_THAT(SqliteBackend::Open(OptionsFor(path)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("lock file")));
}

TEST(SqliteBackendTest, RefusesNewerSchemaWithAClearMessage) {
  const std::string path = FreshPath("schema");
  ASSERT_THAT(SqliteBackend::Open(OptionsFor(path)), IsOk());  // creates it
  ASSERT_THAT(SetSchemaVersion(path, kSchemaVersion + 5), IsOk());
  EXPECT_THAT(
      SqliteBackend::Open(OptionsFor(path)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(absl::StrCat("schema version ", kSchemaVersion + 5,
                                      ", newer than this build's ",
                                      kSchemaVersion))));
  // The refused open released the ownership lock: same error, not "in use".
  EXPECT_THAT(SqliteBackend::Open(OptionsFor(path)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("newer than this build")));
}

TEST(SqliteBackendTest, MigratesAVersion1DatabaseToTheLockRecordTable) {
  const std::string path = FreshPath("v1");
  {
    auto backend = SqliteBackend::Open(OptionsFor(path));
    ASSERT_THAT(backend, IsOk());
    VoteRecord vote;
    vote.ttid = 5;
    ObjectRecord o;
    o.partition = 1;
    o.oid = 1;
    o.data = "v";
    o.checksum = "c";
    vote.objects.push_back(o);
    ASSERT_THAT((*backend)->StoreVotes({vote}), IsOk());
  }
  // What a version-1 build left: no tlock table, no size columns, bytes
  // inline.
  ASSERT_THAT(RestoreVersion3Layout(path), IsOk());
  ASSERT_THAT(RawExec(path, "DROP TABLE tlock", 0), IsOk());
  ASSERT_THAT(DropSizeColumns(path), IsOk());
  ASSERT_THAT(SetSchemaVersion(path, 1), IsOk());
  auto backend = SqliteBackend::Open(OptionsFor(path));
  ASSERT_THAT(backend, IsOk());
  auto version = (*backend)->GetConfig("schema_version");
  ASSERT_THAT(version, IsOk());
  EXPECT_EQ(*version, absl::StrCat(kSchemaVersion));
  ASSERT_THAT((*backend)->LockTransactions({{5, 7}}), IsOk());
  auto locked = (*backend)->GetLockedTid(5);
  ASSERT_THAT(locked, IsOk());
  EXPECT_EQ(*locked, 7u);
}

TEST(SqliteBackendTest, MigratesAVersion2DatabaseToStoredTransactionSizes) {
  const std::string path = FreshPath("v2");
  TransactionRecord t;
  t.partition = 1;
  t.user = "u";
  t.oids = {1};
  t.size_bytes = 99;  // dropped with the column below
  {
    auto backend = SqliteBackend::Open(OptionsFor(path));
    ASSERT_THAT(backend, IsOk());
    // One committed record, one voted (temporary) record.
    t.ttid = 4;
    ASSERT_THAT((*backend)->StoreVotes({VoteRecord{4, {}, t}}), IsOk());
    ASSERT_THAT((*backend)->LockTransactions({{4, 5}}), IsOk());
    t.ttid = 7;
    ASSERT_THAT((*backend)->StoreVotes({VoteRecord{7, {}, t}}), IsOk());
  }
  // What a version-2 build left: no size columns, bytes inline.
  ASSERT_THAT(RestoreVersion3Layout(path), IsOk());
  ASSERT_THAT(DropSizeColumns(path), IsOk());
  ASSERT_THAT(SetSchemaVersion(path, 2), IsOk());
  auto backend = SqliteBackend::Open(OptionsFor(path));
  ASSERT_THAT(backend, IsOk());
  auto version = (*backend)->GetConfig("schema_version");
  ASSERT_THAT(version, IsOk());
  EXPECT_EQ(*version, absl::StrCat(kSchemaVersion));
  // Older records read 0, committed or locked after the upgrade; new
  // votes keep their size.
  ASSERT_THAT((*backend)->LockTransactions({{7, 8}}), IsOk());
  t.ttid = 10;
  t.size_bytes = 12;
  ASSERT_THAT((*backend)->StoreVotes({VoteRecord{10, {}, t}}), IsOk());
  ASSERT_THAT((*backend)->LockTransactions({{10, 11}}), IsOk());
  auto last = (*backend)->LastTransactions(10, 0);
  ASSERT_THAT(last, IsOk());
  ASSERT_EQ(last->size(), 3u);
  EXPECT_EQ((*last)[0].tid, 11u);
  EXPECT_EQ((*last)[0].size_bytes, 12u);
  EXPECT_EQ((*last)[1].tid, 8u);
  EXPECT_EQ((*last)[1].size_bytes, 0u);
  EXPECT_EQ((*last)[2].tid, 5u);
  EXPECT_EQ((*last)[2].size_bytes, 0u);
}

// Semantics rule R3: the lock writes metadata only, so a lock fits where
// its vote did. The vote of a 1 MiB object leaves less than 1 MiB of room
// (max_page_count plays the full disk); the lock still succeeds. (Before
// schema version 4 the lock copied the data and failed: SQLITE_FULL.)
TEST(SqliteBackendTest, LockNeedsNoRoomForTheDataItsVoteWrote) {
  const std::string path = FreshPath("full");
  const std::string big(size_t{1} << 20, 'b');
  const auto vote = [](uint64_t ttid, uint64_t oid, const std::string& data) {
    ObjectRecord o;
    o.partition = oid % 2;
    o.oid = oid;
    o.data = data;
    o.checksum = std::string(20, 'c');
    TransactionRecord t;
    t.partition = ttid % 2;
    t.ttid = ttid;
    t.oids = {oid};
    return VoteRecord{ttid, {o}, t};
  };
  {
    // Every table gets its first pages.
    auto backend = SqliteBackend::Open(OptionsFor(path));
    ASSERT_THAT(backend, IsOk());
    ASSERT_THAT((*backend)->StoreVotes({vote(2, 1, "small")}), IsOk());
    ASSERT_THAT((*backend)->LockTransactions({{2, 3}}), IsOk());
  }
  auto pages = RawInt(path, "PRAGMA page_count");
  ASSERT_THAT(pages, IsOk());
  auto page_size = RawInt(path, "PRAGMA page_size");
  ASSERT_THAT(page_size, IsOk());
  // Room for the vote (its data and a few pages of rows), not for a second
  // copy of its data.
  SqliteBackend::Options options = OptionsFor(path);
  options.max_page_count =
      *pages + static_cast<int64_t>(big.size()) / *page_size + 1 + 16;
  auto backend = SqliteBackend::Open(options);
  ASSERT_THAT(backend, IsOk());
  ASSERT_THAT((*backend)->StoreVotes({vote(10, 2, big)}), IsOk());
  auto voted_pages = RawInt(path, "PRAGMA page_count");
  ASSERT_THAT(voted_pages, IsOk());
  EXPECT_LT((options.max_page_count - *voted_pages) * *page_size,
            static_cast<int64_t>(big.size()));

  EXPECT_THAT((*backend)->LockTransactions({{10, 11}}), IsOk());
  auto loaded = (*backend)->LoadBefore(0, 2, 100);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->serial, 11u);
  EXPECT_EQ(loaded->data, big);
  // The cap is real: another vote of that size does not fit.
  EXPECT_THAT((*backend)->StoreVotes({vote(12, 4, big)}),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(SqliteBackendTest, RecordsSchemaVersionAndWalMode) {
  const std::string path = FreshPath("wal");
  auto backend = SqliteBackend::Open(OptionsFor(path));
  ASSERT_THAT(backend, IsOk());
  auto version = (*backend)->GetConfig("schema_version");
  ASSERT_THAT(version, IsOk());
  EXPECT_EQ(*version, absl::StrCat(kSchemaVersion));
  // WAL mode is persistent: a raw connection sees it.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(
                sqlite3_column_text(stmt, 0))),
            "wal");
  sqlite3_finalize(stmt);
  sqlite3_close_v2(db);
}

TEST(SqliteBackendTest, ReservedConfigKeys) {
  auto backend = SqliteBackend::Open(OptionsFor(FreshPath("reserved")));
  ASSERT_THAT(backend, IsOk());
  EXPECT_THAT((*backend)->SetConfig("schema_version", "99"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*backend)->SetConfig("ptid", "1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SqliteBackendTest, NotADatabaseIsRefused) {
  const std::string path = FreshPath("garbage");
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(8192, 'x');
  }
  EXPECT_THAT(SqliteBackend::Open(OptionsFor(path)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(SqliteBackendTest, ForeignConfigTableIsRefused) {
  const std::string path = FreshPath("foreign");
  ASSERT_THAT(RawExec(path.c_str(), "SELECT ?1", 0),
              StatusIs(absl::StatusCode::kInternal));  // no file yet
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE config (name TEXT, value BLOB)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close_v2(db);
  EXPECT_THAT(SqliteBackend::Open(OptionsFor(path)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a cellar database")));
}

}  // namespace
}  // namespace cellar::storage
