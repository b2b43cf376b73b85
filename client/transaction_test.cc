#include "client/transaction.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/errors.h"
#include "services/common/status_matchers.h"

namespace cellar::client {
namespace {

using ::cellar::common::StatusIs;

class RecordingCommitter : public TransactionCommitter {
 public:
  absl::StatusOr<uint64_t> CommitTransaction(
      const TransactionData& data) override {
    ++calls;
    last = data;
    return 42;
  }
  int calls = 0;
  TransactionData last;
};

TEST(TransactionTest, BuffersObjectsAndMetadata) {
  RecordingCommitter committer;
  Transaction txn(&committer);
  txn.Store(0, 0, "root");  // oid 0 is the root object: valid
  txn.Store(7, 3, "seven");
  txn.Store(7, 4, "seven again");  // the last store of an oid wins
  txn.SetUser("alice");
  txn.SetDescription("desc");
  txn.SetExtension("ext");
  EXPECT_EQ(txn.object_count(), 2u);
  ASSERT_THAT(txn.Commit(), common::IsOk());
  ASSERT_EQ(committer.calls, 1);
  ASSERT_EQ(committer.last.objects.size(), 2u);
  EXPECT_EQ(committer.last.objects[0].oid, 0u);
  EXPECT_EQ(committer.last.objects[1].oid, 7u);
  EXPECT_EQ(committer.last.objects[1].base_serial, 4u);
  EXPECT_EQ(committer.last.objects[1].data, "seven again");
  EXPECT_EQ(committer.last.user, "alice");
  EXPECT_EQ(committer.last.description, "desc");
  EXPECT_EQ(committer.last.extension, "ext");
  // Finished: a second commit is refused.
  EXPECT_THAT(txn.Commit(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(committer.calls, 1);
}

TEST(TransactionTest, CheckCurrentIsReplacedByAStoreOfTheSameOid) {
  RecordingCommitter committer;
  Transaction txn(&committer);
  txn.CheckCurrent(1, 10);
  txn.CheckCurrent(2, 20);
  txn.CheckCurrent(2, 21);  // the last serial read wins
  txn.Store(1, 10, "one");  // stored: its own conflict check covers it
  txn.Store(3, 0, "three");
  txn.CheckCurrent(3, 30);  // already stored: ignored
  EXPECT_EQ(txn.object_count(), 2u);
  ASSERT_THAT(txn.Commit(), common::IsOk());
  ASSERT_EQ(committer.last.objects.size(), 3u);
  EXPECT_FALSE(committer.last.objects[0].check_only);
  EXPECT_EQ(committer.last.objects[0].data, "one");
  EXPECT_TRUE(committer.last.objects[1].check_only);
  EXPECT_EQ(committer.last.objects[1].base_serial, 21u);
  EXPECT_FALSE(committer.last.objects[2].check_only);
  EXPECT_EQ(committer.last.objects[2].base_serial, 0u);

  Transaction zero(&committer);
  zero.CheckCurrent(5, 0);  // a serial that was never read
  EXPECT_THAT(zero.Commit(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TransactionTest, TooLargeFailsLocally) {
  RecordingCommitter committer;
  Transaction txn(&committer);
  txn.Store(1, 0, std::string(kMaxObjectBytes + 1, 'x'));
  absl::StatusOr<uint64_t> tid = txn.Commit();
  EXPECT_THAT(tid, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(common::ErrorReason(tid.status()), "TOO_LARGE");
  EXPECT_EQ(committer.calls, 0);
}

TEST(TransactionTest, EmptyTransactionIsCommitted) {
  RecordingCommitter committer;
  Transaction txn(&committer);
  EXPECT_THAT(txn.Commit(), common::IsOk());
  EXPECT_EQ(committer.calls, 1);
  EXPECT_TRUE(committer.last.objects.empty());
}

TEST(TransactionTest, AbortIsLocal) {
  RecordingCommitter committer;
  Transaction txn(&committer);
  txn.Store(1, 0, "x");
  txn.Abort();
  EXPECT_TRUE(txn.finished());
  EXPECT_THAT(txn.Commit(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(committer.calls, 0);
}

}  // namespace
}  // namespace cellar::client
