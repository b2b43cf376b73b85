// PostgresLeaseElection on a real PostgreSQL server (tools/pgserver:
// $CELLAR_TEST_PG or a throwaway server), with short leases and bounded
// polling: acquire, renew, takeover after expiry with epoch + 1, resign,
// and a stalled holder that steps down before a standby can take over.

#include "services/master/pg_lease.h"

#include <libpq-fe.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/status_matchers.h"
#include "services/master/lease_election_test_util.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::cellar::master::lease_testing::DualPrimaryWatcher;
using ::cellar::master::lease_testing::Eventually;
using ::cellar::master::lease_testing::LostRecorder;
using ::testing::HasSubstr;

// A plain libpq session for looking at (and locking) the lease row.
class Inspector {
 public:
  explicit Inspector(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {}
  ~Inspector() { PQfinish(conn_); }
  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }

  // Runs `sql` with text parameters; the first column of the first row
  // ("" if none).
  std::string Query(const char* sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* r = PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
    std::string out;
    const ExecStatusType status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    } else if (status == PGRES_TUPLES_OK && PQntuples(r) > 0) {
      out = PQgetvalue(r, 0, 0);
    }
    PQclear(r);
    return out;
  }

  int64_t Int(const char* sql, const std::vector<std::string>& params = {}) {
    int64_t v = -1;
    EXPECT_TRUE(absl::SimpleAtoi(Query(sql, params), &v)) << sql;
    return v;
  }

  // Expiry of the lease row, as wall-clock time (same host as the server).
  absl::Time ExpiresAt(const std::string& cluster) {
    return absl::FromUnixMillis(Int(
        "SELECT floor(extract(epoch FROM expires_at) * 1000)::bigint"
        " FROM cellar_master_lease WHERE cluster = $1",
        {cluster}));
  }
  std::string Holder(const std::string& cluster) {
    return Query("SELECT holder FROM cellar_master_lease WHERE cluster = $1", {cluster});
  }

 private:
  PGconn* conn_;
};

class PgLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<tools::TestDatabase> db = tools::CreateTestDatabase("pg_lease");
    ASSERT_THAT(db, IsOk());
    conninfo_ = db->conninfo;
  }

  std::unique_ptr<PostgresLeaseElection> Make(const std::string& address,
                                              absl::Duration lease = absl::Seconds(1)) {
    PostgresLeaseOptions options;
    options.conninfo = conninfo_;
    options.cluster = "c1";
    options.address = address;
    options.lease = lease;
    absl::StatusOr<std::unique_ptr<PostgresLeaseElection>> e =
        PostgresLeaseElection::Create(options);
    EXPECT_THAT(e, IsOk());
    return e.ok() ? *std::move(e) : nullptr;
  }

  std::string conninfo_;
};

TEST(PgLeaseOptionsTest, RejectsBadOptions) {
  PostgresLeaseOptions options;
  EXPECT_THAT(PostgresLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.conninfo = "dbname=x";
  options.lease = absl::ZeroDuration();
  EXPECT_THAT(PostgresLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.lease = absl::Seconds(1);
  options.step_down_margin = absl::Seconds(1);
  EXPECT_THAT(PostgresLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("margin")));
  options.step_down_margin = absl::Milliseconds(200);
  options.renew_interval = absl::Milliseconds(900);
  EXPECT_THAT(PostgresLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.renew_interval = absl::ZeroDuration();
  auto e = PostgresLeaseElection::Create(options);
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ((*e)->options().renew_interval, absl::Milliseconds(1000) / 3);
  EXPECT_EQ((*e)->options().step_down_margin, absl::Milliseconds(200));
  EXPECT_FALSE((*e)->holder().empty());
}

TEST(PgLeaseOptionsTest, UnreachableDatabaseIsNotPrimary) {
  PostgresLeaseOptions options;
  options.conninfo = "host=127.0.0.1 port=1 dbname=nothing connect_timeout=2";
  options.lease = absl::Seconds(1);
  auto e = PostgresLeaseElection::Create(options);
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT((*e)->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("connect")));
  EXPECT_FALSE((*e)->IsPrimary());
  EXPECT_THAT((*e)->last_error(), HasSubstr("connect"));
}

TEST_F(PgLeaseTest, AcquireRenewAndRefuseOthers) {
  // A 2 s lease: renewals every ~0.7 s survive a loaded 2-core machine (with
  // 1 s, one renewal late by ~0.8 s correctly makes the holder step down).
  auto a = Make("10.0.0.1:7100", absl::Seconds(2));
  auto b = Make("10.0.0.2:7100", absl::Seconds(2));
  ASSERT_TRUE(a && b);
  absl::StatusOr<uint64_t> epoch = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(epoch, IsOk());
  EXPECT_GT(*epoch, 0u);
  EXPECT_TRUE(a->IsPrimary());
  EXPECT_EQ(a->epoch(), *epoch);
  EXPECT_EQ(a->PrimaryAddress(), "10.0.0.1:7100");
  EXPECT_THAT(a->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  Inspector db(conninfo_);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db.Holder("c1"), a->holder());
  EXPECT_EQ(db.Query("SELECT address FROM cellar_master_lease WHERE cluster = 'c1'"),
            "10.0.0.1:7100");
  const absl::Time first_expiry = db.ExpiresAt("c1");

  // Renewed for two lease lengths: still primary, same epoch, later expiry.
  absl::SleepFor(absl::Seconds(4));
  EXPECT_TRUE(a->IsPrimary());
  EXPECT_EQ(a->epoch(), *epoch);
  EXPECT_GT(db.ExpiresAt("c1"), first_expiry + absl::Seconds(2));

  // Another master is refused while the lease is live, and learns who leads.
  EXPECT_THAT(b->Campaign(absl::Milliseconds(800)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("10.0.0.1:7100")));
  EXPECT_FALSE(b->IsPrimary());
  EXPECT_EQ(b->PrimaryAddress(), "10.0.0.1:7100");
  EXPECT_TRUE(a->IsPrimary());
}

TEST_F(PgLeaseTest, ResignHandsOverAtOnceWithEpochPlusOne) {
  auto a = Make("a:1", absl::Seconds(10));
  auto b = Make("b:1", absl::Seconds(10));
  ASSERT_TRUE(a && b);
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());
  a->Resign();
  EXPECT_FALSE(a->IsPrimary());
  EXPECT_THAT(a->Campaign(absl::ZeroDuration()), StatusIs(absl::StatusCode::kCancelled));
  // Well within the 10 s lease: the lease was given back.
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> eb = b->Campaign(absl::Seconds(5));
  ASSERT_THAT(eb, IsOk());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(*eb, *ea + 1);
}

TEST_F(PgLeaseTest, ExpiredLeaseIsTakenOverWithEpochPlusOne) {
  auto a = Make("a:1");
  auto b = Make("b:1");
  ASSERT_TRUE(a && b);
  LostRecorder a_lost(*a);
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());
  Inspector db(conninfo_);
  ASSERT_TRUE(db.ok());

  // The process "dies": no more renewals, nothing given back.
  a->Abandon();
  ASSERT_TRUE(Eventually([&] { return a_lost.count() == 1; }));
  EXPECT_FALSE(a->IsPrimary());
  const absl::Time expiry = db.ExpiresAt("c1");
  EXPECT_EQ(db.Holder("c1"), a->holder());
  // Stepped down before the lease could expire (margin = lease / 5).
  EXPECT_LT(a_lost.at(), expiry) << "stepped down " << (a_lost.at() - expiry) << " late";

  absl::StatusOr<uint64_t> eb = b->Campaign(absl::Seconds(10));
  ASSERT_THAT(eb, IsOk());
  EXPECT_GE(absl::Now(), expiry);
  EXPECT_EQ(*eb, *ea + 1);
  EXPECT_EQ(db.Holder("c1"), b->holder());
  EXPECT_EQ(b->PrimaryAddress(), "b:1");
  EXPECT_EQ(a_lost.count(), 1);
}

TEST_F(PgLeaseTest, StalledHolderStepsDownBeforeStandbyTakesOver) {
  auto a = Make("a:1", absl::Seconds(2));
  auto b = Make("b:1", absl::Seconds(2));
  ASSERT_TRUE(a && b);
  LostRecorder a_lost(*a);
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());

  // A watcher samples both sides all along: never two primaries.
  DualPrimaryWatcher watcher(*a, *b);

  // The database stalls the holder: another session locks the lease row,
  // so renewals (and the standby's attempts) block until it lets go.
  Inspector locker(conninfo_);
  ASSERT_TRUE(locker.ok());
  locker.Query("BEGIN");
  locker.Query("SELECT holder FROM cellar_master_lease WHERE cluster = 'c1' FOR UPDATE");
  const absl::Time expiry = locker.ExpiresAt("c1");

  absl::StatusOr<uint64_t> eb;
  absl::Time b_won_at;
  std::thread standby([&] {
    eb = b->Campaign(absl::Seconds(20));
    b_won_at = absl::Now();
  });

  ASSERT_TRUE(Eventually([&] { return a_lost.count() > 0; }));
  EXPECT_FALSE(a->IsPrimary());
  EXPECT_LT(a_lost.at(), expiry) << "stepped down " << (a_lost.at() - expiry) << " late";
  // Keep the row locked until past its expiry, then let go.
  while (absl::Now() < expiry + absl::Milliseconds(100)) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(b->IsPrimary());
  locker.Query("COMMIT");

  standby.join();
  ASSERT_THAT(eb, IsOk());
  EXPECT_GT(b_won_at, expiry);
  EXPECT_EQ(*eb, *ea + 1);
  EXPECT_EQ(watcher.Stop(), 0);

  // The deposed holder does not get its term back by renewing late: it
  // must campaign anew, and B holds a live lease.
  EXPECT_THAT(a->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("b:1")));
}

TEST_F(PgLeaseTest, LosingTheRowEndsTheTermAtOnce) {
  auto a = Make("a:1", absl::Seconds(3));
  ASSERT_TRUE(a);
  std::atomic<bool> lost{false};
  a->SetLostCallback([&] { lost = true; });
  ASSERT_THAT(a->Campaign(absl::Seconds(10)), IsOk());
  // Someone (an operator) hands the lease to another holder: the next
  // renewal finds it gone and the term ends before the local deadline.
  Inspector db(conninfo_);
  ASSERT_TRUE(db.ok());
  db.Query("UPDATE cellar_master_lease SET holder = 'someone-else', epoch = epoch + 1");
  const absl::Time start = absl::Now();
  ASSERT_TRUE(Eventually([&] { return lost.load(); }));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(2000));
  EXPECT_FALSE(a->IsPrimary());
}

}  // namespace
}  // namespace cellar::master
