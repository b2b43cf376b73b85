// The Election contract: SingleMasterElection, and two or three
// PostgresLeaseElection instances racing on a real PostgreSQL server
// (tools/pgserver): exactly one primary when they start together on an
// empty table, never two primaries at once, epochs that only grow.

#include "services/master/election.h"

#include <atomic>
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
#include "services/common/status_matchers.h"
#include "services/master/pg_lease.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

TEST(SingleMasterElectionTest, AlwaysPrimaryUntilResigned) {
  SingleMasterElection election(1234, "127.0.0.1:7100");
  EXPECT_FALSE(election.IsPrimary());
  absl::StatusOr<uint64_t> epoch = election.Campaign(absl::ZeroDuration());
  ASSERT_THAT(epoch, IsOk());
  EXPECT_EQ(*epoch, 1234u);
  EXPECT_EQ(election.epoch(), 1234u);
  EXPECT_TRUE(election.IsPrimary());
  EXPECT_EQ(election.PrimaryAddress(), "127.0.0.1:7100");
  EXPECT_THAT(election.Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  election.Resign();
  EXPECT_FALSE(election.IsPrimary());
  EXPECT_THAT(election.Campaign(absl::InfiniteDuration()),
              StatusIs(absl::StatusCode::kCancelled));
  election.Resign();  // idempotent
}

class RacingElectionTest : public ::testing::Test {
 protected:
  std::string FreshDatabase() {
    absl::StatusOr<tools::TestDatabase> db = tools::CreateTestDatabase("election");
    EXPECT_THAT(db, IsOk());
    return db.ok() ? db->conninfo : "";
  }

  static std::unique_ptr<Election> Make(const std::string& conninfo, const std::string& address,
                                        absl::Duration lease = absl::Seconds(1)) {
    PostgresLeaseOptions options;
    options.conninfo = conninfo;
    options.cluster = "race";
    options.address = address;
    options.lease = lease;
    absl::StatusOr<std::unique_ptr<PostgresLeaseElection>> e =
        PostgresLeaseElection::Create(options);
    EXPECT_THAT(e, IsOk());
    return e.ok() ? std::unique_ptr<Election>(*std::move(e)) : nullptr;
  }
};

// failure-scenarios.md: two masters started at the same time against an
// empty cluster — exactly one becomes primary. Several rounds, each on a
// fresh (empty) database, with 2 and then 3 contenders released together.
TEST_F(RacingElectionTest, ContendersStartedTogetherOnAnEmptyDatabaseElectExactlyOne) {
  for (int contenders : {2, 3}) {
    for (int round = 0; round < 4; ++round) {
      SCOPED_TRACE(absl::StrCat(contenders, " contenders, round ", round));
      const std::string conninfo = FreshDatabase();
      std::vector<std::unique_ptr<Election>> elections;
      for (int i = 0; i < contenders; ++i) {
        elections.push_back(Make(conninfo, absl::StrCat("m", i, ":7100"), absl::Seconds(5)));
        ASSERT_NE(elections.back(), nullptr);
      }
      std::vector<absl::StatusOr<uint64_t>> results(contenders, absl::UnknownError(""));
      absl::Barrier* start = new absl::Barrier(contenders);
      std::vector<std::thread> threads;
      for (int i = 0; i < contenders; ++i) {
        threads.emplace_back([&, i] {
          if (start->Block()) delete start;
          // One attempt each: no retry can hide a double win.
          results[i] = elections[i]->Campaign(absl::ZeroDuration());
        });
      }
      for (auto& t : threads) t.join();
      int winners = 0, winner = -1;
      for (int i = 0; i < contenders; ++i) {
        if (results[i].ok()) {
          ++winners;
          winner = i;
        } else {
          EXPECT_THAT(results[i], StatusIs(absl::StatusCode::kDeadlineExceeded));
        }
      }
      ASSERT_EQ(winners, 1);
      int primaries = 0;
      for (const auto& e : elections) primaries += e->IsPrimary() ? 1 : 0;
      EXPECT_EQ(primaries, 1);
      for (int i = 0; i < contenders; ++i) {
        if (i == winner) continue;
        EXPECT_THAT(results[i].status().message(),
                    HasSubstr(absl::StrCat("primary is m", winner, ":7100")));
      }
    }
  }
}

// Three masters campaign all the time; the primary is killed again and
// again (alternately a crash — no renewals, lease left to expire — and a
// clean resignation) and replaced by a new incarnation, as Kubernetes
// would restart it. A watcher samples everyone: never two primaries; each
// new primary's epoch is higher than the last.
TEST_F(RacingElectionTest, ThreeMastersNeverTwoPrimariesAndEpochsGrow) {
  const std::string conninfo = FreshDatabase();
  constexpr int kMasters = 3;
  constexpr int kRounds = 4;

  absl::Mutex mu;
  std::vector<std::shared_ptr<Election>> masters;  // guarded by mu
  std::vector<std::thread> campaigners;
  std::atomic<int> incarnation{0};
  auto launch = [&](int slot) {
    std::shared_ptr<Election> e =
        Make(conninfo, absl::StrCat("m", slot, "-", incarnation++, ":7100"));
    ASSERT_NE(e, nullptr);
    {
      absl::MutexLock l(&mu);
      masters[slot] = e;
    }
    campaigners.emplace_back([e] { (void)e->Campaign(absl::InfiniteDuration()); });
  };
  {
    absl::MutexLock l(&mu);
    masters.resize(kMasters);
  }
  for (int i = 0; i < kMasters; ++i) launch(i);

  std::atomic<bool> stop{false};
  std::atomic<int> double_primary{0};
  std::thread watcher([&] {
    while (!stop) {
      std::vector<std::shared_ptr<Election>> snapshot;
      {
        absl::MutexLock l(&mu);
        snapshot = masters;
      }
      int primaries = 0;
      for (const auto& e : snapshot) primaries += (e && e->IsPrimary()) ? 1 : 0;
      if (primaries > 1) ++double_primary;
      absl::SleepFor(absl::Microseconds(300));
    }
  });

  uint64_t last_epoch = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    int primary = -1;
    const absl::Time end = absl::Now() + absl::Seconds(15);
    while (primary < 0 && absl::Now() < end) {
      absl::MutexLock l(&mu);
      for (int i = 0; i < kMasters; ++i) {
        if (masters[i]->IsPrimary()) primary = i;
      }
      if (primary < 0) {
        mu.Unlock();
        absl::SleepFor(absl::Milliseconds(10));
        mu.Lock();
      }
    }
    ASSERT_GE(primary, 0) << "no primary within 15 s";
    std::shared_ptr<Election> victim;
    {
      absl::MutexLock l(&mu);
      victim = masters[primary];
    }
    EXPECT_GT(victim->epoch(), last_epoch);
    last_epoch = victim->epoch();
    if (round % 2 == 0) {
      static_cast<PostgresLeaseElection*>(victim.get())->Abandon();  // crash
      const absl::Time deadline = absl::Now() + absl::Seconds(5);
      while (victim->IsPrimary() && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      EXPECT_FALSE(victim->IsPrimary());
    } else {
      victim->Resign();  // clean stop
    }
    launch(primary);  // the restarted process: a new holder
  }

  stop = true;
  watcher.join();
  EXPECT_EQ(double_primary.load(), 0);
  {
    absl::MutexLock l(&mu);
    for (auto& e : masters) e->Resign();
  }
  for (auto& t : campaigners) t.join();
}

}  // namespace
}  // namespace cellar::master
