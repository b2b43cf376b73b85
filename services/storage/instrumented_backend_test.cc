#include "services/storage/instrumented_backend.h"

#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "services/common/status_matchers.h"
#include "services/storage/storage_metrics.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

TEST(InstrumentedBackendTest, CountsDatabaseFailuresOnly) {
  prometheus::Registry registry;
  StorageMetrics metrics(registry, "0.1.0", "stable");
  auto memory = std::make_unique<::cellar::storage::testing::MemoryBackend>();
  ::cellar::storage::testing::MemoryBackend* raw = memory.get();
  InstrumentedBackend backend(std::move(memory), &metrics);
  EXPECT_EQ(backend.Kind(), raw->Kind());

  // Contract answers are not failures: NOT_FOUND loads, refused input.
  EXPECT_THAT(backend.LoadBefore(0, 1, 100), StatusIs(absl::StatusCode::kNotFound));
  raw->set_store_votes_hook([](const std::vector<VoteRecord>&) {
    return absl::InvalidArgumentError("bad vote");
  });
  EXPECT_THAT(backend.StoreVotes({VoteRecord{1, {}, std::nullopt}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(backend.errors_total(), 0u);

  // The database failing is.
  raw->set_store_votes_hook([](const std::vector<VoteRecord>&) {
    return absl::UnavailableError("database is locked");
  });
  EXPECT_THAT(backend.StoreVotes({VoteRecord{1, {}, std::nullopt}}),
              StatusIs(absl::StatusCode::kUnavailable));
  raw->set_lock_hook([](const std::vector<LockRecord>&) {
    return absl::InternalError("disk I/O error");
  });
  EXPECT_THAT(backend.LockTransactions({LockRecord{1, 2}}),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(backend.errors_total(), 2u);
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_THAT(text, HasSubstr("cellar_storage_backend_errors_total{track=\"stable\","
                              "version=\"0.1.0\"} 2"));

  // Everything else is forwarded.
  raw->set_store_votes_hook(nullptr);
  raw->set_lock_hook(nullptr);
  EXPECT_THAT(backend.StoreVotes({VoteRecord{1, {}, std::nullopt}}), IsOk());
  raw->set_disk_usage(DiskUsage{1, 2});
  auto disk = backend.GetDiskUsage();
  ASSERT_THAT(disk, IsOk());
  ASSERT_TRUE(disk->has_value());
  EXPECT_EQ((*disk)->total_bytes, 2u);
  EXPECT_EQ(backend.GetPoolUsage(), std::nullopt) << "the memory backend has no pool";
  EXPECT_THAT(backend.GetStats(), IsOk());
  EXPECT_EQ(backend.errors_total(), 2u);
}

TEST(InstrumentedBackendTest, WorksWithoutMetrics) {
  auto memory = std::make_unique<::cellar::storage::testing::MemoryBackend>();
  ::cellar::storage::testing::MemoryBackend* raw = memory.get();
  InstrumentedBackend backend(std::move(memory), nullptr);
  raw->set_store_votes_hook([](const std::vector<VoteRecord>&) {
    return absl::DataLossError("corrupt page");
  });
  EXPECT_THAT(backend.StoreVotes({}), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(backend.errors_total(), 1u);
}

}  // namespace
}  // namespace cellar::storage
