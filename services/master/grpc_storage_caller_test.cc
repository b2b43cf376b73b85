// GrpcStorageCaller's natural batching of locks and unlocks, against a fake
// storage served over gRPC: what queues behind a call in flight goes out as
// one batch call, each lock gets its own answer, unlocks keep their order,
// and a storage without the batch rpcs gets single calls.

#include "services/master/grpc_storage_caller.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/errors.h"
#include "services/common/grpc_server.h"
#include "services/common/grpc_status.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

namespace v1 = ::cellar::v1;
using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr uint32_t kS1 = 0x10001;
constexpr uint64_t kEpoch = 7;
constexpr absl::Duration kWait = absl::Seconds(20);

// Locks of an odd ttid fail (NOT_FOUND, UNKNOWN_TRANSACTION); the others
// answer stored oid ttid * 10. While held, every call waits for Release.
class FakeLockStorage final : public v1::Storage::Service {
 public:
  explicit FakeLockStorage(bool batches) : batches_(batches) {}

  void Hold() {
    absl::MutexLock l(&mu_);
    held_ = true;
  }
  void Release() {
    absl::MutexLock l(&mu_);
    held_ = false;
  }
  std::vector<uint64_t> single_locks() const {
    absl::MutexLock l(&mu_);
    return single_locks_;
  }
  std::vector<uint64_t> single_unlocks() const {
    absl::MutexLock l(&mu_);
    return single_unlocks_;
  }
  std::vector<std::vector<uint64_t>> lock_batches() const {
    absl::MutexLock l(&mu_);
    return lock_batches_;
  }
  std::vector<v1::UnlockTransactionsRequest> unlock_batches() const {
    absl::MutexLock l(&mu_);
    return unlock_batches_;
  }
  int batch_attempts() const {
    absl::MutexLock l(&mu_);
    return batch_attempts_;
  }

  grpc::Status LockTransaction(grpc::ServerContext*, const v1::LockTransactionRequest* request,
                               v1::LockTransactionResponse* response) override {
    absl::MutexLock l(&mu_);
    single_locks_.push_back(request->ttid());
    AwaitReleased();
    absl::Status s = Answer(*request, response);
    return common::ToGrpcStatus(s);
  }
  grpc::Status LockTransactions(grpc::ServerContext* context,
                                const v1::LockTransactionsRequest* request,
                                v1::LockTransactionsResponse* response) override {
    absl::MutexLock l(&mu_);
    ++batch_attempts_;
    if (!batches_) return Service::LockTransactions(context, request, response);
    AwaitReleased();
    std::vector<uint64_t> ttids;
    for (const v1::LockTransactionRequest& item : request->items()) {
      ttids.push_back(item.ttid());
      v1::LockTransactionResult* result = response->add_results();
      absl::Status s = Answer(item, result->mutable_response());
      if (!s.ok()) {
        result->mutable_status()->set_code(static_cast<uint32_t>(s.code()));
        result->mutable_status()->set_reason(common::ErrorReason(s));
        result->mutable_status()->set_message(std::string(s.message()));
      }
    }
    lock_batches_.push_back(ttids);
    return grpc::Status::OK;
  }
  grpc::Status UnlockTransaction(grpc::ServerContext*,
                                 const v1::UnlockTransactionRequest* request,
                                 v1::UnlockTransactionResponse*) override {
    absl::MutexLock l(&mu_);
    single_unlocks_.push_back(request->ttid());
    AwaitReleased();
    return grpc::Status::OK;
  }
  grpc::Status UnlockTransactions(grpc::ServerContext* context,
                                  const v1::UnlockTransactionsRequest* request,
                                  v1::UnlockTransactionsResponse* response) override {
    absl::MutexLock l(&mu_);
    ++batch_attempts_;
    if (!batches_) return Service::UnlockTransactions(context, request, response);
    AwaitReleased();
    unlock_batches_.push_back(*request);
    for (int i = 0; i < request->items_size(); ++i) response->add_results();
    return grpc::Status::OK;
  }

 private:
  void AwaitReleased() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    mu_.Await(absl::Condition(
        +[](bool* held) { return !*held; }, &held_));
  }
  static absl::Status Answer(const v1::LockTransactionRequest& request,
                             v1::LockTransactionResponse* response) {
    if (request.epoch() != kEpoch || request.tid() != request.ttid() + 4) {
      return absl::InternalError("the lock lost its own fields in the batch");
    }
    if (request.ttid() % 2 == 1) {
      return common::ErrorWithReason(absl::StatusCode::kNotFound,
                                     common::kReasonUnknownTransaction,
                                     absl::StrCat("no vote for ", request.ttid()));
    }
    response->set_stored_oids_known(true);
    response->add_stored_oids(request.ttid() * 10);
    return absl::OkStatus();
  }

  const bool batches_;
  mutable absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<uint64_t> single_locks_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> single_unlocks_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint64_t>> lock_batches_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::UnlockTransactionsRequest> unlock_batches_ ABSL_GUARDED_BY(mu_);
  int batch_attempts_ ABSL_GUARDED_BY(mu_) = 0;
};

// Waits (bounded) until `done` holds; false with the test failed otherwise.
template <typename F>
bool WaitFor(F done, const std::string& what) {
  const absl::Time give_up = absl::Now() + kWait;
  while (!done()) {
    if (absl::Now() > give_up) {
      ADD_FAILURE() << "timed out waiting for " << what;
      return false;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

class GrpcStorageCallerTest : public ::testing::Test {
 protected:
  void Start(bool batches) {
    fake_ = std::make_unique<FakeLockStorage>(batches);
    common::GrpcServerOptions options;
    options.services = {fake_.get()};
    auto server = common::GrpcServer::Start(std::move(options));
    ASSERT_THAT(server.status(), IsOk());
    server_ = *std::move(server);
    target_ = StorageTarget{kS1, absl::StrCat("127.0.0.1:", server_->port())};
    caller_ = std::make_unique<GrpcStorageCaller>(absl::Seconds(20));
  }

  absl::StatusOr<LockedOids> LockOne(uint64_t ttid) {
    std::vector<absl::StatusOr<LockedOids>> results =
        caller_->LockAll({target_}, kEpoch, ttid, ttid + 4, /*min_ptid=*/0, {});
    if (results.size() != 1) return absl::InternalError("not one answer");
    return results[0];
  }

  // One lock held in flight (ttid `first`), then `more` locks from their
  // own threads, queued behind it; released once all are queued. Answers
  // by ttid.
  std::map<uint64_t, absl::StatusOr<LockedOids>> LockWhileOneIsInFlight(
      uint64_t first, const std::vector<uint64_t>& more) {
    std::map<uint64_t, absl::StatusOr<LockedOids>> answers;
    for (uint64_t ttid : more) answers.emplace(ttid, absl::UnknownError("no answer"));
    answers.emplace(first, absl::UnknownError("no answer"));
    fake_->Hold();
    const size_t singles = fake_->single_locks().size();
    const int attempts = fake_->batch_attempts();
    std::vector<std::thread> threads;
    threads.emplace_back([&, first] { answers.at(first) = LockOne(first); });
    WaitFor([&] { return fake_->single_locks().size() > singles; }, "the first lock");
    for (uint64_t ttid : more) {
      threads.emplace_back([&, ttid] { answers.at(ttid) = LockOne(ttid); });
    }
    WaitFor([&] { return caller_->queued(target_.address) == more.size(); },
            "the other locks to queue");
    EXPECT_EQ(fake_->single_locks().size(), singles + 1) << "queued locks went out";
    EXPECT_EQ(fake_->batch_attempts(), attempts) << "queued locks went out";
    fake_->Release();
    for (std::thread& t : threads) t.join();
    return answers;
  }

  std::unique_ptr<FakeLockStorage> fake_;
  std::unique_ptr<common::GrpcServer> server_;
  StorageTarget target_;
  std::unique_ptr<GrpcStorageCaller> caller_;
};

TEST_F(GrpcStorageCallerTest, ALoneLockGoesOutAtOnceAsTheSingleRpc) {
  ASSERT_NO_FATAL_FAILURE(Start(/*batches=*/true));
  absl::StatusOr<LockedOids> locked = LockOne(10);
  ASSERT_THAT(locked.status(), IsOk());
  EXPECT_TRUE(locked->known);
  EXPECT_THAT(locked->oids, ElementsAre(100u));
  EXPECT_THAT(LockOne(11), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(fake_->single_locks(), ElementsAre(10u, 11u));
  EXPECT_EQ(fake_->batch_attempts(), 0);
}

TEST_F(GrpcStorageCallerTest, LocksQueuedBehindACallInFlightGoOutAsOneBatch) {
  ASSERT_NO_FATAL_FAILURE(Start(/*batches=*/true));
  auto answers = LockWhileOneIsInFlight(10, {20, 31, 40});
  EXPECT_THAT(fake_->single_locks(), ElementsAre(10u));
  ASSERT_EQ(fake_->lock_batches().size(), 1u);
  EXPECT_THAT(fake_->lock_batches()[0], UnorderedElementsAre(20u, 31u, 40u));
  // Each lock got its own answer: one failing item failed only itself.
  ASSERT_THAT(answers.at(10).status(), IsOk());
  EXPECT_THAT(answers.at(10)->oids, ElementsAre(100u));
  ASSERT_THAT(answers.at(20).status(), IsOk());
  EXPECT_THAT(answers.at(20)->oids, ElementsAre(200u));
  ASSERT_THAT(answers.at(40).status(), IsOk());
  EXPECT_THAT(answers.at(40)->oids, ElementsAre(400u));
  EXPECT_THAT(answers.at(31), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(common::ErrorReason(answers.at(31).status()), common::kReasonUnknownTransaction);
  const GrpcStorageCaller::BatchStats stats = caller_->batch_stats();
  EXPECT_EQ(stats.lock_calls, 2u);
  EXPECT_EQ(stats.locks, 4u);
  EXPECT_EQ(stats.lock_batches, 1u);
}

TEST_F(GrpcStorageCallerTest, AStorageWithoutTheBatchRpcsGetsSingleCalls) {
  ASSERT_NO_FATAL_FAILURE(Start(/*batches=*/false));
  auto answers = LockWhileOneIsInFlight(10, {20, 31});
  EXPECT_THAT(fake_->single_locks(), UnorderedElementsAre(10u, 20u, 31u));
  EXPECT_EQ(fake_->batch_attempts(), 1);
  ASSERT_THAT(answers.at(20).status(), IsOk());
  EXPECT_THAT(answers.at(20)->oids, ElementsAre(200u));
  EXPECT_THAT(answers.at(31), StatusIs(absl::StatusCode::kNotFound));
  // Remembered: the next queue goes out as single calls at once.
  answers = LockWhileOneIsInFlight(50, {60, 70});
  EXPECT_EQ(fake_->batch_attempts(), 1);
  ASSERT_THAT(answers.at(70).status(), IsOk());
  EXPECT_THAT(answers.at(70)->oids, ElementsAre(700u));
  // Until the storage registers again (perhaps upgraded).
  caller_->Reconnect(target_.address);
  answers = LockWhileOneIsInFlight(80, {90, 100});
  EXPECT_EQ(fake_->batch_attempts(), 2);
  EXPECT_THAT(answers.at(90).status(), IsOk());
}

TEST_F(GrpcStorageCallerTest, UnlocksQueuedBehindACallInFlightGoOutInTheirOrder) {
  ASSERT_NO_FATAL_FAILURE(Start(/*batches=*/true));
  fake_->Hold();
  caller_->UnlockAsync({target_}, kEpoch, 10, 14, /*forget_lock=*/true);
  WaitFor([&] { return fake_->single_unlocks().size() == 1; }, "the first unlock");
  RecordOids record;
  record.holders = {kS1};
  record.oids = {1, 2};
  caller_->UnlockAsync({target_}, kEpoch, 30, 34, /*forget_lock=*/false, &record);
  caller_->UnlockAsync({target_}, kEpoch, 20, 24, /*forget_lock=*/true);
  caller_->UnlockAsync({target_}, kEpoch, 40, 44, /*forget_lock=*/true);
  EXPECT_EQ(caller_->queued(target_.address), 3u);
  fake_->Release();
  ASSERT_TRUE(WaitFor([&] { return fake_->unlock_batches().size() == 1; }, "the unlock batch"));
  const v1::UnlockTransactionsRequest batch = fake_->unlock_batches()[0];
  ASSERT_EQ(batch.items_size(), 3);
  EXPECT_EQ(batch.items(0).ttid(), 30u);
  EXPECT_EQ(batch.items(1).ttid(), 20u);
  EXPECT_EQ(batch.items(2).ttid(), 40u);
  EXPECT_EQ(batch.items(0).tid(), 34u);
  EXPECT_FALSE(batch.items(0).forget_lock());
  EXPECT_THAT(batch.items(0).record_oids().oids(), ElementsAre(1u, 2u));
  EXPECT_TRUE(batch.items(1).forget_lock());
  EXPECT_FALSE(batch.items(1).has_record_oids());
  EXPECT_THAT(fake_->single_unlocks(), ElementsAre(10u));
  WaitFor([&] { return caller_->batch_stats().unlocks == 4; }, "the unlock counts");
  EXPECT_EQ(caller_->batch_stats().unlock_calls, 2u);
}

}  // namespace
}  // namespace cellar::master
