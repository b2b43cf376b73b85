#include "tools/pgserver/throwaway_postgres.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/common/status_matchers.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::tools {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

// The single value of `sql` on `conninfo`, or "ERROR: ...".
std::string QueryValue(const std::string& conninfo, const char* sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  std::string value;
  if (PQstatus(conn) != CONNECTION_OK) {
    value = absl::StrCat("ERROR: ", PQerrorMessage(conn));
  } else {
    PGresult* result = PQexec(conn, sql);
    value = PQresultStatus(result) == PGRES_TUPLES_OK
                ? PQgetvalue(result, 0, 0)
                : absl::StrCat("ERROR: ", PQresultErrorMessage(result));
    PQclear(result);
  }
  PQfinish(conn);
  return value;
}

TEST(ThrowawayPostgresTest, StartsWithDurableSettingsOnAUnixSocket) {
  auto pg = ThrowawayPostgres::Start({});
  ASSERT_THAT(pg, IsOk());
  EXPECT_THAT((*pg)->conninfo(), HasSubstr("host=/tmp/cellar-pg-"));
  EXPECT_EQ((*pg)->tcp_conninfo(), "");
  EXPECT_EQ(QueryValue((*pg)->conninfo(), "SHOW fsync"), "on");
  EXPECT_EQ(QueryValue((*pg)->conninfo(), "SHOW synchronous_commit"), "on");
  EXPECT_EQ(QueryValue((*pg)->conninfo(), "SHOW max_connections"), "200");
  EXPECT_EQ(QueryValue((*pg)->conninfo(), "SHOW listen_addresses"), "");
}

TEST(ThrowawayPostgresTest, DestructorStopsTheServerAndRemovesTheDirectory) {
  std::string dir, conninfo;
  {
    auto pg = ThrowawayPostgres::Start({});
    ASSERT_THAT(pg, IsOk());
    dir = (*pg)->dir();
    conninfo = (*pg)->conninfo();
    EXPECT_EQ(PQping(conninfo.c_str()), PQPING_OK);
  }
  EXPECT_NE(PQping(conninfo.c_str()), PQPING_OK);
  EXPECT_NE(access(dir.c_str(), F_OK), 0) << dir << " still exists";
}

TEST(ThrowawayPostgresTest, ListensOnAFreeLoopbackPortWhenAsked) {
  ThrowawayPostgres::Options options;
  options.listen_tcp = true;
  auto pg = ThrowawayPostgres::Start(options);
  ASSERT_THAT(pg, IsOk());
  EXPECT_GT((*pg)->port(), 0);
  EXPECT_EQ((*pg)->tcp_conninfo(),
            absl::StrCat("host=127.0.0.1 port=", (*pg)->port(),
                         " user=postgres dbname=postgres"));
  EXPECT_EQ(QueryValue((*pg)->tcp_conninfo(), "SELECT 1"), "1");
  EXPECT_EQ(QueryValue((*pg)->conninfo(), "SELECT 2"), "2");
}

TEST(ThrowawayPostgresTest, CreateDatabaseGivesAFreshDatabase) {
  auto pg = ThrowawayPostgres::Start({});
  ASSERT_THAT(pg, IsOk());
  auto db = (*pg)->CreateDatabase("fresh_1");
  ASSERT_THAT(db, IsOk());
  EXPECT_THAT(*db, HasSubstr("dbname=fresh_1"));
  EXPECT_EQ(QueryValue(*db, "SELECT current_database()"), "fresh_1");
  // Again: dropped and re-created, even with a session open on it.
  PGconn* open_session = PQconnectdb(db->c_str());
  ASSERT_EQ(PQstatus(open_session), CONNECTION_OK);
  EXPECT_THAT((*pg)->CreateDatabase("fresh_1"), IsOk());
  PQfinish(open_session);
  EXPECT_THAT(DropPostgresDatabase((*pg)->conninfo(), "fresh_1"), IsOk());
  EXPECT_THAT(QueryValue(*db, "SELECT 1"), HasSubstr("does not exist"));
}

TEST(ThrowawayPostgresTest, RefusesBadDatabaseNames) {
  auto pg = ThrowawayPostgres::Start({});
  ASSERT_THAT(pg, IsOk());
  EXPECT_THAT((*pg)->CreateDatabase("a\"; DROP DATABASE postgres; --"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*pg)->CreateDatabase(""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*pg)->CreateDatabase(std::string(64, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ThrowawayPostgresTest, DetachedServerSurvivesAndTheDirectoryIsReused) {
  const std::string dir = absl::StrCat("/tmp/cellar-pgt-", getpid());
  ThrowawayPostgres::Options options;
  options.dir = dir;
  std::string conninfo;
  {
    auto pg = ThrowawayPostgres::Start(options);
    ASSERT_THAT(pg, IsOk());
    conninfo = (*pg)->conninfo();
    ASSERT_THAT((*pg)->CreateDatabase("kept"), IsOk());
    // A second server on the same directory is refused.
    EXPECT_THAT(ThrowawayPostgres::Start(options),
                StatusIs(absl::StatusCode::kFailedPrecondition));
    (*pg)->Detach();
  }
  EXPECT_EQ(PQping(conninfo.c_str()), PQPING_OK);
  ASSERT_THAT(StopPostgresAt(dir, "fast", options), IsOk());
  EXPECT_NE(PQping(conninfo.c_str()), PQPING_OK);
  EXPECT_THAT(StopPostgresAt(dir, "fast", options), IsOk());  // idempotent
  {
    auto pg = ThrowawayPostgres::Start(options);  // reuses data/
    ASSERT_THAT(pg, IsOk());
    auto kept = ConninfoWithDatabase((*pg)->conninfo(), "kept");
    ASSERT_THAT(kept, IsOk());
    EXPECT_EQ(QueryValue(*kept, "SELECT current_database()"), "kept");
  }
  // Not a temporary directory: stopped, but kept.
  EXPECT_NE(PQping(conninfo.c_str()), PQPING_OK);
  EXPECT_EQ(access(absl::StrCat(dir, "/data/PG_VERSION").c_str(), F_OK), 0);
  std::string rm = absl::StrCat("rm -rf ", dir);
  ASSERT_EQ(system(rm.c_str()), 0);
}

TEST(ThrowawayPostgresTest, MissingBinariesAreAPreconditionFailure) {
  ThrowawayPostgres::Options options;
  options.bin_dir = "/nonexistent/bin";
  EXPECT_THAT(ThrowawayPostgres::Start(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("/nonexistent/bin/initdb")));
}

TEST(ThrowawayPostgresTest, TooLongDirectoryIsRefused) {
  ThrowawayPostgres::Options options;
  options.dir = absl::StrCat("/tmp/", std::string(120, 'x'));
  EXPECT_THAT(
      ThrowawayPostgres::Start(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too long")));
  rmdir(options.dir.c_str());
}

TEST(ConninfoWithDatabaseTest, ReplacesTheDatabaseOfStringsAndUris) {
  auto plain = ConninfoWithDatabase("host=/tmp/x port=5432 dbname=a", "b");
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(*plain, "host=/tmp/x port=5432 dbname=b");
  auto from_uri = ConninfoWithDatabase(
      "postgresql://u@localhost:5433/a?sslmode=disable", "b");
  ASSERT_THAT(from_uri, IsOk());
  EXPECT_THAT(*from_uri, HasSubstr("user=u"));
  EXPECT_THAT(*from_uri, HasSubstr("host=localhost"));
  EXPECT_THAT(*from_uri, HasSubstr("port=5433"));
  EXPECT_THAT(*from_uri, HasSubstr("sslmode=disable"));
  EXPECT_THAT(*from_uri, HasSubstr("dbname=b"));
  auto quoted = ConninfoWithDatabase("host='/tmp/a b'", "c");
  ASSERT_THAT(quoted, IsOk());
  EXPECT_EQ(*quoted, "host='/tmp/a b' dbname=c");
  EXPECT_THAT(ConninfoWithDatabase("nonsense", "b"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TestPostgresTest, GivesEachCallerAFreshDatabase) {
  auto a = CreateTestDatabase("tp");
  auto b = CreateTestDatabase("tp");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(a->name, b->name);
  EXPECT_EQ(QueryValue(a->conninfo, "SELECT current_database()"), a->name);
  EXPECT_THAT(DropTestDatabase(a->name), IsOk());
  EXPECT_THAT(DropTestDatabase(b->name), IsOk());
}

}  // namespace
}  // namespace cellar::tools
