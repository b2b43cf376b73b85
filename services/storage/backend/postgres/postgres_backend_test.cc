#include "services/storage/backend/postgres/postgres_backend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/errors.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/backend_conformance.h"
#include "services/storage/backend/storage_backend.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A StatusOr that is OK and whose value matches `matcher`.
MATCHER_P(IsOkAndHolds, matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

PostgresBackend::Options OptionsFor(const std::string& conninfo) {
  PostgresBackend::Options options;
  options.conninfo = conninfo;
  options.pool_size = 4;
  options.acquire_timeout = absl::Seconds(20);
  return options;
}

// Runs `sql` (with text parameters) on a raw connection; returns the
// first column of the first row ("" if none).
absl::StatusOr<std::string> RawQuery(const std::string& conninfo,
                                     const std::string& sql,
                                     std::vector<std::string> params = {}) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(PQerrorMessage(conn));
    PQfinish(conn);
    return status;
  }
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  PGresult* result =
      PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                   values.data(), nullptr, nullptr, 0);
  absl::StatusOr<std::string> value;
  const ExecStatusType status = PQresultStatus(result);
  if (status == PGRES_TUPLES_OK) {
    value = PQntuples(result) > 0 ? PQgetvalue(result, 0, 0) : "";
  } else if (status == PGRES_COMMAND_OK) {
    value = "";
  } else {
    value = absl::InternalError(
        absl::StrCat(sql, ": ", PQresultErrorMessage(result)));
  }
  PQclear(result);
  PQfinish(conn);
  return value;
}

absl::Status SetSchemaVersion(const std::string& conninfo, int version) {
  return RawQuery(conninfo,
                  "UPDATE config SET value = convert_to($1, 'UTF8')"
                  " WHERE name = 'schema_version'",
                  {absl::StrCat(version)})
      .status();
}

// Turns a database of this build back into the layout of schema version 2:
// trans.size was generated (the metadata's bytes), ttrans had none. The
// caller sets the version.
absl::Status RestoreVersion2Size(const std::string& conninfo) {
  for (const char* sql :
       {"ALTER TABLE trans DROP COLUMN size",
        "ALTER TABLE trans ADD COLUMN size bigint GENERATED ALWAYS AS"
        " (octet_length(\"user\") + octet_length(description)"
        " + octet_length(extension) + octet_length(oids)) STORED",
        "ALTER TABLE ttrans DROP COLUMN size"}) {
    absl::Status s = RawQuery(conninfo, sql).status();
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Turns a database of this build back into the layout of schema version 3
// (the tables exactly as versions 1-3 created them): object bytes inline
// in obj / tobj, no data table. The caller sets the version.
// Turns a database of this build back into the layout of schema version 4
// (no per-partition counts); the caller sets the version.
// Turns a database of this build back into the layout of schema version 5
// (no partitions in tlock); the caller sets the version.
absl::Status RestoreVersion5Layout(const std::string& conninfo) {
  return RawQuery(conninfo, "ALTER TABLE tlock DROP COLUMN partitions").status();
}

absl::Status RestoreVersion4Layout(const std::string& conninfo) {
  if (absl::Status s = RestoreVersion5Layout(conninfo); !s.ok()) return s;
  for (const char* sql : {"DROP TRIGGER obj_pstats ON obj", "DROP TABLE pstats",
                          "DROP FUNCTION cellar_obj_pstats()"}) {
    absl::Status s = RawQuery(conninfo, sql).status();
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status RestoreVersion3Layout(const std::string& conninfo) {
  if (absl::Status s = RestoreVersion4Layout(conninfo); !s.ok()) return s;
  for (const char* sql :
       {"CREATE TABLE obj3 ("
        " partition int NOT NULL,"
        " oid bigint NOT NULL,"
        " tid bigint NOT NULL,"
        " data_tid bigint NOT NULL,"
        " checksum bytea NOT NULL,"
        " data bytea NOT NULL,"
        " PRIMARY KEY (partition, oid, tid))",
        "INSERT INTO obj3 SELECT o.partition, o.oid, o.tid, o.data_tid,"
        " o.checksum, COALESCE(d.data, ''::bytea)"
        " FROM obj o LEFT JOIN data d ON d.id = o.data_id",
        "CREATE TABLE tobj3 ("
        " ttid bigint NOT NULL,"
        " partition int NOT NULL,"
        " oid bigint NOT NULL,"
        " data_tid bigint NOT NULL,"
        " checksum bytea NOT NULL,"
        " data bytea NOT NULL,"
        " PRIMARY KEY (ttid, oid))",
        "INSERT INTO tobj3 SELECT t.ttid, t.partition, t.oid, t.data_tid,"
        " t.checksum, COALESCE(d.data, ''::bytea)"
        " FROM tobj t LEFT JOIN data d ON d.id = t.data_id",
        "DROP TABLE obj", "DROP TABLE tobj", "DROP TABLE data",
        "ALTER TABLE obj3 RENAME TO obj",
        "ALTER TABLE obj RENAME CONSTRAINT obj3_pkey TO obj_pkey",
        "CREATE INDEX obj_partition_tid_oid ON obj (partition, tid, oid)",
        "ALTER TABLE tobj3 RENAME TO tobj",
        "ALTER TABLE tobj RENAME CONSTRAINT tobj3_pkey TO tobj_pkey"}) {
    absl::Status s = RawQuery(conninfo, sql).status();
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// One fresh PostgreSQL database per conformance test case, dropped at the
// end (so an external CELLAR_TEST_PG server doesn't fill up).
class PostgresConformanceStore : public ConformanceStore {
 public:
  explicit PostgresConformanceStore(tools::TestDatabase db)
      : db_(std::move(db)) {}
  ~PostgresConformanceStore() override {
    (void)tools::DropTestDatabase(db_.name);
  }

  absl::StatusOr<std::unique_ptr<StorageBackend>> Open() override {
    return PostgresBackend::Open(OptionsFor(db_.conninfo));
  }

  absl::Status ForceSchemaVersion(int version) override {
    auto schema = RawQuery(db_.conninfo, "SELECT to_regclass('config')");
    if (!schema.ok()) return schema.status();
    if (schema->empty()) {
      auto backend = Open();  // creates the schema
      if (!backend.ok()) return backend.status();
    }
    return SetSchemaVersion(db_.conninfo, version);
  }

  absl::Status RestorePreviousSchema() override {
    static_assert(kSchemaVersion == 6, "restore the layout of version 5");
    absl::Status s = RestoreVersion5Layout(db_.conninfo);
    return s.ok() ? SetSchemaVersion(db_.conninfo, 5) : s;
  }

 private:
  tools::TestDatabase db_;
};

INSTANTIATE_TEST_SUITE_P(
    Postgres, BackendConformanceTest,
    ::testing::Values(BackendConformanceParam{
        "postgresql",
        []() -> absl::StatusOr<std::unique_ptr<ConformanceStore>> {
          absl::StatusOr<tools::TestDatabase> db =
              tools::CreateTestDatabase("conformance");
          if (!db.ok()) return db.status();
          return std::make_unique<PostgresConformanceStore>(*std::move(db));
        }}),
    BackendConformanceParamName);

// --- PostgreSQL-specific tests ---

class PostgresBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = tools::CreateTestDatabase("pgbackend");
    ASSERT_THAT(db, IsOk());
    db_ = *std::move(db);
  }
  void TearDown() override { (void)tools::DropTestDatabase(db_.name); }

  std::unique_ptr<StorageBackend> OpenOrDie() {
    auto backend = PostgresBackend::Open(OptionsFor(db_.conninfo));
    EXPECT_THAT(backend, IsOk());
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  // Terminates the sessions of our database whose application_name ends
  // in `role` ("owner" or "pool") and waits (up to 10 s each) until they
  // are gone; returns how many.
  int TerminateSessions(const std::string& role) {
    auto count = RawQuery(
        db_.conninfo,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000))"
        " FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1",
        {absl::StrCat("cellar-storage/", role)});
    EXPECT_THAT(count, IsOk());
    return count.ok() ? std::stoi(*count) : -1;
  }

  tools::TestDatabase db_;
};

ObjectRecord Obj(uint32_t partition, uint64_t oid, std::string data) {
  ObjectRecord o;
  o.partition = partition;
  o.oid = oid;
  o.checksum = "checksum";
  o.data = std::move(data);
  return o;
}

TEST_F(PostgresBackendTest, CreatesTheSchemaAtTheCurrentVersion) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->Kind(), "postgresql");
  EXPECT_THAT(RawQuery(db_.conninfo,
                       "SELECT convert_from(value, 'UTF8') FROM config"
                       " WHERE name = 'schema_version'"),
              IsOkAndHolds(absl::StrCat(kSchemaVersion)));
  EXPECT_THAT(RawQuery(db_.conninfo,
                       "SELECT string_agg(tablename, ',' ORDER BY tablename)"
                       " FROM pg_tables WHERE schemaname = 'public'"),
              IsOkAndHolds(std::string("config,data,obj,pstats,pt,tlock,tobj,trans,ttrans")));
}

TEST_F(PostgresBackendTest, MigratesAVersion1DatabaseToTheLockRecordTable) {
  {
    auto backend = OpenOrDie();
    ASSERT_NE(backend, nullptr);
    VoteRecord vote;
    vote.ttid = 5;
    vote.objects.push_back(Obj(1, 1, "v"));
    ASSERT_THAT(backend->StoreVotes({vote}), IsOk());
  }
  // What a version-1 build left: no tlock table, the old size columns,
  // bytes inline.
  ASSERT_THAT(RestoreVersion3Layout(db_.conninfo), IsOk());
  ASSERT_THAT(RawQuery(db_.conninfo, "DROP TABLE tlock"), IsOk());
  ASSERT_THAT(RestoreVersion2Size(db_.conninfo), IsOk());
  ASSERT_THAT(SetSchemaVersion(db_.conninfo, 1), IsOk());
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  EXPECT_THAT(RawQuery(db_.conninfo,
                       "SELECT convert_from(value, 'UTF8') FROM config"
                       " WHERE name = 'schema_version'"),
              IsOkAndHolds(absl::StrCat(kSchemaVersion)));
  ASSERT_THAT(backend->LockTransactions({{5, 7}}), IsOk());
  EXPECT_THAT(backend->GetLockedTid(5), IsOkAndHolds(uint64_t{7}));
}

TEST_F(PostgresBackendTest, MigratesAVersion2DatabaseToStoredTransactionSizes) {
  TransactionRecord t;
  t.partition = 1;
  t.user = "u";
  t.oids = {1};
  t.size_bytes = 99;  // dropped with the column below
  {
    auto backend = OpenOrDie();
    ASSERT_NE(backend, nullptr);
    // One committed record, one voted (temporary) record.
    t.ttid = 4;
    ASSERT_THAT(backend->StoreVotes({VoteRecord{4, {}, t}}), IsOk());
    ASSERT_THAT(backend->LockTransactions({{4, 5}}), IsOk());
    t.ttid = 7;
    ASSERT_THAT(backend->StoreVotes({VoteRecord{7, {}, t}}), IsOk());
  }
  // What a version-2 build left: a generated trans.size (metadata bytes,
  // here 1 + 8 = 9), none in ttrans, bytes inline.
  ASSERT_THAT(RestoreVersion3Layout(db_.conninfo), IsOk());
  ASSERT_THAT(RestoreVersion2Size(db_.conninfo), IsOk());
  ASSERT_THAT(SetSchemaVersion(db_.conninfo, 2), IsOk());
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  EXPECT_THAT(RawQuery(db_.conninfo,
                       "SELECT convert_from(value, 'UTF8') FROM config"
                       " WHERE name = 'schema_version'"),
              IsOkAndHolds(absl::StrCat(kSchemaVersion)));
  // Older records read 0, committed or locked after the upgrade; new
  // votes keep their size.
  ASSERT_THAT(backend->LockTransactions({{7, 8}}), IsOk());
  t.ttid = 10;
  t.size_bytes = 12;
  ASSERT_THAT(backend->StoreVotes({VoteRecord{10, {}, t}}), IsOk());
  ASSERT_THAT(backend->LockTransactions({{10, 11}}), IsOk());
  auto last = backend->LastTransactions(10, 0);
  ASSERT_THAT(last, IsOk());
  ASSERT_EQ(last->size(), 3u);
  EXPECT_EQ((*last)[0].tid, 11u);
  EXPECT_EQ((*last)[0].size_bytes, 12u);
  EXPECT_EQ((*last)[1].tid, 8u);
  EXPECT_EQ((*last)[1].size_bytes, 0u);
  EXPECT_EQ((*last)[2].tid, 5u);
  EXPECT_EQ((*last)[2].size_bytes, 0u);
  EXPECT_THAT(RawQuery(db_.conninfo,
                       "SELECT attgenerated FROM pg_attribute"
                       " WHERE attrelid = 'trans'::regclass AND attname = 'size'"),
              IsOkAndHolds(std::string("")));
}

// `n` bytes PostgreSQL cannot compress (xorshift).
std::string Incompressible(size_t n, uint64_t seed) {
  std::string out(n, '\0');
  uint64_t x = 88172645463325252ull ^ seed;
  for (char& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

// Semantics rule R3: the lock writes metadata only. Locking a vote of
// 4 MiB grows the database by far less than 4 MiB. (Before schema version
// 4 the lock copied the data from tobj to obj: it grew by the whole 4 MiB.)
TEST_F(PostgresBackendTest, LockGrowsTheDatabaseByMetadataOnly) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  const auto vote = [](uint64_t ttid, std::vector<ObjectRecord> objects) {
    TransactionRecord t;
    t.partition = 0;
    t.ttid = ttid;
    for (const ObjectRecord& o : objects) t.oids.push_back(o.oid);
    return VoteRecord{ttid, std::move(objects), t};
  };
  // Every table gets its first pages.
  ASSERT_THAT(backend->StoreVotes({vote(2, {Obj(1, 1, "small")})}), IsOk());
  ASSERT_THAT(backend->LockTransactions({{2, 3}}), IsOk());
  constexpr size_t kObjectBytes = size_t{1} << 20;
  std::vector<ObjectRecord> objects;
  for (uint64_t oid = 10; oid < 14; ++oid) {
    objects.push_back(Obj(oid % 2, oid, Incompressible(kObjectBytes, oid)));
  }
  ASSERT_THAT(backend->StoreVotes({vote(10, objects)}), IsOk());
  const std::string size_sql = "SELECT pg_database_size(current_database())";
  auto before = RawQuery(db_.conninfo, size_sql);
  ASSERT_THAT(before, IsOk());

  ASSERT_THAT(backend->LockTransactions({{10, 11}}), IsOk());

  auto after = RawQuery(db_.conninfo, size_sql);
  ASSERT_THAT(after, IsOk());
  const int64_t growth = std::stoll(*after) - std::stoll(*before);
  EXPECT_LT(growth, static_cast<int64_t>(objects.size() * kObjectBytes / 8))
      << "the lock grew the database by " << growth << " bytes";
  for (const ObjectRecord& o : objects) {
    auto loaded = backend->LoadSerial(o.partition, o.oid, 11);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_TRUE(loaded->data == o.data) << "oid " << o.oid;
  }
}

TEST_F(PostgresBackendTest, SecondNodeOnTheSameDatabaseIsRefused) {
  auto first = OpenOrDie();
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(PostgresBackend::Open(OptionsFor(db_.conninfo)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is in use by another storage node")));
}

TEST_F(PostgresBackendTest, NewerSchemaIsRefusedWithoutTouchingIt) {
  { ASSERT_NE(OpenOrDie(), nullptr); }
  ASSERT_THAT(SetSchemaVersion(db_.conninfo, kSchemaVersion + 7), IsOk());
  EXPECT_THAT(
      PostgresBackend::Open(OptionsFor(db_.conninfo)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(absl::StrCat("schema version ", kSchemaVersion + 7))));
  EXPECT_THAT(RawQuery(db_.conninfo,
                       "SELECT convert_from(value, 'UTF8') FROM config"
                       " WHERE name = 'schema_version'"),
              IsOkAndHolds(absl::StrCat(kSchemaVersion + 7)));
}

TEST_F(PostgresBackendTest, BadOptionsAndUnreachableServers) {
  EXPECT_THAT(PostgresBackend::Open(PostgresBackend::Options{}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto options = OptionsFor(db_.conninfo);
  options.pool_size = 0;
  EXPECT_THAT(PostgresBackend::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PostgresBackend::Open(OptionsFor("not a conninfo")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      PostgresBackend::Open(OptionsFor(
          "host=/nonexistent-cellar-dir port=1 user=postgres dbname=x")),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot connect")));
}

TEST_F(PostgresBackendTest, OidsAndTidsAbove2To63AreRefused) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  const uint64_t huge = uint64_t{1} << 63;
  VoteRecord vote;
  vote.ttid = 5;
  vote.objects = {Obj(0, huge, "x")};
  EXPECT_THAT(backend->StoreVotes({vote}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  vote.ttid = huge;
  vote.objects = {Obj(0, 3, "x")};
  EXPECT_THAT(backend->StoreVotes({vote}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->LoadBefore(0, huge, 10),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->GetLastSerials(1, {huge}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->LoadSerial(0, 3, huge),
              StatusIs(absl::StatusCode::kInvalidArgument));
  vote.objects = {Obj(uint32_t{1} << 31, 3, "x")};
  vote.ttid = 5;
  EXPECT_THAT(backend->StoreVotes({vote}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ListVotedTransactions(), IsOkAndHolds(IsEmpty()));
}

TEST_F(PostgresBackendTest, BulkVoteIsOneStatementPerTable) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  VoteRecord vote;
  vote.ttid = 1000;
  for (uint64_t oid = 1; oid <= 5000; ++oid) {
    vote.objects.push_back(Obj(oid % 4, oid, absl::StrCat("data ", oid)));
  }
  TransactionRecord t;
  t.partition = 0;
  t.ttid = 1000;
  for (const ObjectRecord& o : vote.objects) t.oids.push_back(o.oid);
  vote.transaction = t;
  ASSERT_THAT(backend->StoreVotes({vote}), IsOk());
  ASSERT_THAT(backend->LockTransactions({{1000, 1001}}), IsOk());
  auto stats = backend->GetStats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->object_count, 5000u);
  auto loaded = backend->LoadSerial(4999 % 4, 4999, 1001);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->data, "data 4999");
  auto txns = backend->ListTransactions(0, 0, 2000, 10);
  ASSERT_THAT(txns, IsOk());
  ASSERT_EQ(txns->size(), 1u);
  EXPECT_EQ((*txns)[0].oids.size(), 5000u);
  EXPECT_EQ((*txns)[0].oids[4999], 5000u);
}

TEST_F(PostgresBackendTest, AFailedVoteRollsBackAsAWhole) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  VoteRecord first;
  first.ttid = 10;
  first.objects = {Obj(1, 1, "first")};
  ASSERT_THAT(backend->StoreVotes({first}), IsOk());
  // Make the insert of the re-vote fail after its delete ran.
  ASSERT_THAT(RawQuery(db_.conninfo,
                       "ALTER TABLE tobj ADD CONSTRAINT no_666"
                       " CHECK (oid <> 666)"),
              IsOk());
  VoteRecord revote;
  revote.ttid = 10;
  revote.objects = {Obj(0, 666, "refused")};
  revote.transaction = TransactionRecord();  // a statement after the failure
  revote.transaction->ttid = 10;
  revote.transaction->oids = {666};
  EXPECT_THAT(backend->StoreVotes({revote}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("no_666")));
  // The first vote is intact, and the pool connection still works.
  EXPECT_THAT(backend->ListVotedTransactions(), IsOkAndHolds(ElementsAre(10u)));
  ASSERT_THAT(backend->LockTransactions({{10, 11}}), IsOk());
  auto loaded = backend->LoadBefore(1, 1, 100);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->data, "first");
}

TEST_F(PostgresBackendTest, PoolUsageAndNoDiskFigures) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  // The server's volume is not visible from here: no figures.
  auto disk = backend->GetDiskUsage();
  ASSERT_THAT(disk, IsOk());
  EXPECT_FALSE(disk->has_value());
  // Sessions are opened on demand and go back to the pool after a call.
  ASSERT_THAT(backend->SetConfig("k", "v"), IsOk());
  const std::optional<PoolUsage> pool = backend->GetPoolUsage();
  ASSERT_TRUE(pool.has_value());
  EXPECT_EQ(pool->in_use, 0);
  EXPECT_GE(pool->idle, 1);
}

TEST_F(PostgresBackendTest, SurvivesTerminatedPoolSessions) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  ASSERT_THAT(backend->SetConfig("k", "v1"), IsOk());
  EXPECT_GE(TerminateSessions("pool"), 1);
  // The dead pooled connection is replaced transparently.
  EXPECT_THAT(backend->GetConfig("k"),
              IsOkAndHolds(testing::Optional(std::string("v1"))));
  EXPECT_GE(TerminateSessions("pool"), 1);
  EXPECT_THAT(backend->SetConfig("k", "v2"), IsOk());
  EXPECT_THAT(backend->GetConfig("k"),
              IsOkAndHolds(testing::Optional(std::string("v2"))));
}

TEST_F(PostgresBackendTest, LosingTheOwnershipSessionToAnotherNodeStopsWrites) {
  auto first = OpenOrDie();
  ASSERT_NE(first, nullptr);
  ASSERT_THAT(first->SetConfig("k", "first"), IsOk());
  ASSERT_EQ(TerminateSessions("owner"), 1);
  // The lock went with the session: another node can take the database...
  auto second = PostgresBackend::Open(OptionsFor(db_.conninfo));
  ASSERT_THAT(second, IsOk());
  // ...and the first one must not write any more.
  EXPECT_THAT(first->SetConfig("k", "stale"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("in use by another storage node")));
  EXPECT_THAT((*second)->GetConfig("k"),
              IsOkAndHolds(testing::Optional(std::string("first"))));
}

TEST_F(PostgresBackendTest, RetakesTheOwnershipLockIfNobodyElseDid) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  ASSERT_EQ(TerminateSessions("owner"), 1);
  EXPECT_THAT(backend->SetConfig("k", "v"), IsOk());
  // Owned again: another node is refused.
  EXPECT_THAT(PostgresBackend::Open(OptionsFor(db_.conninfo)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PostgresBackendTest, PoolWaitIsBounded) {
  // A pool of one, held by a raw lock: the next call can't get a connection
  // while another call is stuck on a row lock.
  auto options = OptionsFor(db_.conninfo);
  options.pool_size = 1;
  options.acquire_timeout = absl::Milliseconds(300);
  auto backend = PostgresBackend::Open(options);
  ASSERT_THAT(backend, IsOk());
  ASSERT_THAT((*backend)->SetConfig("k", "v"), IsOk());
  PGconn* blocker = PQconnectdb(db_.conninfo.c_str());
  ASSERT_EQ(PQstatus(blocker), CONNECTION_OK);
  PQclear(PQexec(blocker, "BEGIN"));
  PQclear(PQexec(blocker, "LOCK TABLE config IN ACCESS EXCLUSIVE MODE"));
  std::thread stuck([&] { (void)(*backend)->GetConfig("k"); });
  absl::SleepFor(absl::Milliseconds(100));  // let it take the connection
  EXPECT_THAT((*backend)->GetStats(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("no free connection")));
  PQclear(PQexec(blocker, "ROLLBACK"));
  stuck.join();
  PQfinish(blocker);
  EXPECT_THAT((*backend)->GetConfig("k"),
              IsOkAndHolds(testing::Optional(std::string("v"))));
}

TEST_F(PostgresBackendTest, BackPointerChainsAreFollowed) {
  auto backend = OpenOrDie();
  ASSERT_NE(backend, nullptr);
  // Replicated records may chain: 30 -> 20 -> 10 (data).
  ObjectRecord r10 = Obj(0, 9, "the data");
  r10.tid = 10;
  ObjectRecord r20 = Obj(0, 9, "");
  r20.tid = 20;
  r20.data_tid = 10;
  ObjectRecord r30 = Obj(0, 9, "");
  r30.tid = 30;
  r30.data_tid = 20;
  ASSERT_THAT(backend->ImportCommitted({}, {r10, r20, r30}), IsOk());
  auto loaded = backend->LoadBefore(0, 9, 100);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->serial, 30u);
  EXPECT_EQ(loaded->data_tid, 20u);
  EXPECT_EQ(loaded->data, "the data");
  auto history = backend->History(0, 9, 10);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ((*history)[0].size_bytes, 8u);
  EXPECT_FALSE((*history)[0].deleted);
  // A back-pointer to a revision that isn't there is data loss, not a crash.
  ObjectRecord dangling = Obj(0, 11, "");
  dangling.tid = 40;
  dangling.data_tid = 35;
  ASSERT_THAT(backend->ImportCommitted({}, {dangling}), IsOk());
  EXPECT_THAT(backend->LoadSerial(0, 11, 40),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace cellar::storage
