#include "client/object_cache.h"

#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cellar::client {
namespace {

using ::testing::Optional;
using ::testing::Field;
using ::testing::AllOf;
using ::testing::Eq;

constexpr size_t kBig = 1 << 20;

auto Rev(uint64_t serial, uint64_t next_serial, const std::string& data) {
  return Optional(AllOf(Field(&CachedRevision::serial, Eq(serial)),
                        Field(&CachedRevision::next_serial, Eq(next_serial)),
                        Field(&CachedRevision::data, Eq(data))));
}

TEST(ObjectCacheTest, MissThenHitForCurrentRevision) {
  ObjectCache cache(kBig, /*last_tid=*/10);
  EXPECT_EQ(cache.LookupBefore(1, 11), std::nullopt);
  cache.Insert(1, 5, 0, "five");
  EXPECT_THAT(cache.LookupBefore(1, 11), Rev(5, 0, "five"));
  EXPECT_THAT(cache.LookupBefore(1, 6), Rev(5, 0, "five"));
  // Not visible before its own serial.
  EXPECT_EQ(cache.LookupBefore(1, 5), std::nullopt);
  // A current revision is only known current up to last_tid.
  EXPECT_EQ(cache.LookupBefore(1, 12), std::nullopt);
  EXPECT_THAT(cache.LookupSerial(1, 5), Rev(5, 0, "five"));
  EXPECT_EQ(cache.LookupSerial(1, 6), std::nullopt);
  EXPECT_EQ(cache.LookupBefore(2, 11), std::nullopt);
}

TEST(ObjectCacheTest, InvalidationClosesTheCurrentRevision) {
  ObjectCache cache(kBig, 10);
  cache.Insert(1, 5, 0, "five");
  cache.Insert(2, 7, 0, "seven");
  cache.Invalidate(12, {1});
  EXPECT_EQ(cache.last_tid(), 12u);
  // Reads before 12 still see serial 5; at 12 and after it is stale.
  EXPECT_THAT(cache.LookupBefore(1, 12), Rev(5, 12, "five"));
  EXPECT_EQ(cache.LookupBefore(1, 13), std::nullopt);
  // Other objects stay current, now up to 12.
  EXPECT_THAT(cache.LookupBefore(2, 13), Rev(7, 0, "seven"));
  // The new revision comes in as current; both are cached.
  cache.Insert(1, 12, 0, "twelve");
  EXPECT_THAT(cache.LookupBefore(1, 13), Rev(12, 0, "twelve"));
  EXPECT_THAT(cache.LookupBefore(1, 8), Rev(5, 12, "five"));
  EXPECT_EQ(cache.revision_count(), 3u);
}

TEST(ObjectCacheTest, ExactBoundaries) {
  // valid for b when serial < b <= next_serial
  ObjectCache cache(kBig, 100);
  cache.Insert(1, 10, 20, "old");
  EXPECT_EQ(cache.LookupBefore(1, 10), std::nullopt);
  EXPECT_THAT(cache.LookupBefore(1, 11), Rev(10, 20, "old"));
  EXPECT_THAT(cache.LookupBefore(1, 20), Rev(10, 20, "old"));
  EXPECT_EQ(cache.LookupBefore(1, 21), std::nullopt);
}

TEST(ObjectCacheTest, StaleCurrentInsertIgnoredAndOldCurrentReplaced) {
  ObjectCache cache(kBig, 100);
  cache.Insert(1, 50, 0, "fifty");
  // An older revision claiming to be current is stale.
  cache.Insert(1, 40, 0, "forty");
  EXPECT_EQ(cache.LookupSerial(1, 40), std::nullopt);
  // A newer current revision replaces the old current one, whose end is
  // unknown.
  cache.Insert(1, 60, 0, "sixty");
  EXPECT_EQ(cache.LookupSerial(1, 50), std::nullopt);
  EXPECT_THAT(cache.LookupBefore(1, 101), Rev(60, 0, "sixty"));
  // Same serial with a known end wins over "current".
  cache.Insert(1, 60, 70, "sixty");
  EXPECT_THAT(cache.LookupSerial(1, 60), Rev(60, 70, "sixty"));
  cache.Insert(1, 60, 0, "sixty");
  EXPECT_THAT(cache.LookupSerial(1, 60), Rev(60, 70, "sixty"));
}

TEST(ObjectCacheTest, InvalidationDuringLoadIsNotLost) {
  ObjectCache cache(kBig, 10);
  ObjectCache::LoadTicket ticket = cache.BeginLoad(1);
  // Transaction 12 replaces the revision while the load is in flight; the
  // storage answered before it committed: serial 5, "current".
  cache.Invalidate(12, {1});
  EXPECT_EQ(cache.EndLoad(ticket, 5, 0, "five"), 12u);
  EXPECT_THAT(cache.LookupBefore(1, 12), Rev(5, 12, "five"));
  EXPECT_EQ(cache.LookupBefore(1, 13), std::nullopt);
}

TEST(ObjectCacheTest, InvalidationOlderThanLoadedSerialIsIgnored) {
  ObjectCache cache(kBig, 10);
  ObjectCache::LoadTicket ticket = cache.BeginLoad(1);
  cache.Invalidate(12, {1});
  cache.Invalidate(15, {1});
  // The load saw the revision of 12 itself: it ends at 15.
  EXPECT_EQ(cache.EndLoad(ticket, 12, 0, "twelve"), 15u);
  // A load that saw 15 keeps "current".
  ObjectCache::LoadTicket second = cache.BeginLoad(1);
  EXPECT_EQ(cache.EndLoad(second, 15, 0, "fifteen"), 0u);
  EXPECT_THAT(cache.LookupBefore(1, 16), Rev(15, 0, "fifteen"));
}

TEST(ObjectCacheTest, InFlightRecordsAreDroppedWhenLoadsEnd) {
  ObjectCache cache(kBig, 10);
  ObjectCache::LoadTicket first = cache.BeginLoad(1);
  cache.Invalidate(12, {1});
  cache.CancelLoad(first);
  // Nothing is remembered once no load of the oid is in flight.
  ObjectCache::LoadTicket second = cache.BeginLoad(1);
  EXPECT_EQ(cache.EndLoad(second, 5, 0, "five"), 0u);
}

TEST(ObjectCacheTest, ClearDropsEverythingAndInFlightLoads) {
  ObjectCache cache(kBig, 10);
  cache.Insert(1, 5, 0, "five");
  ObjectCache::LoadTicket ticket = cache.BeginLoad(2);
  cache.Clear(20);
  EXPECT_EQ(cache.last_tid(), 20u);
  EXPECT_EQ(cache.revision_count(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
  cache.EndLoad(ticket, 7, 0, "seven");
  EXPECT_EQ(cache.LookupBefore(2, 21), std::nullopt);
  EXPECT_EQ(cache.revision_count(), 0u);
}

TEST(ObjectCacheTest, EvictsLeastRecentlyUsedByBytes) {
  const size_t entry = 100 + ObjectCache::kRevisionOverhead;
  ObjectCache cache(3 * entry, 100);
  const std::string data(100, 'x');
  cache.Insert(1, 5, 0, data);
  cache.Insert(2, 5, 0, data);
  cache.Insert(3, 5, 0, data);
  EXPECT_EQ(cache.bytes(), 3 * entry);
  // Touch 1: 2 becomes the least recently used.
  EXPECT_TRUE(cache.LookupBefore(1, 101).has_value());
  cache.Insert(4, 5, 0, data);
  EXPECT_EQ(cache.revision_count(), 3u);
  EXPECT_LE(cache.bytes(), 3 * entry);
  EXPECT_TRUE(cache.LookupSerial(1, 5).has_value());
  EXPECT_FALSE(cache.LookupSerial(2, 5).has_value());
  EXPECT_TRUE(cache.LookupSerial(3, 5).has_value());
  EXPECT_TRUE(cache.LookupSerial(4, 5).has_value());
}

TEST(ObjectCacheTest, OversizedAndDisabled) {
  ObjectCache small(100, 10);
  small.Insert(1, 5, 0, std::string(100, 'x'));  // + overhead > 100
  EXPECT_EQ(small.revision_count(), 0u);
  ObjectCache disabled(0, 10);
  disabled.Insert(1, 5, 0, "x");
  EXPECT_EQ(disabled.LookupBefore(1, 11), std::nullopt);
}

TEST(ObjectCacheTest, ConcurrentUseKeepsAccounting) {
  ObjectCache cache(50 * (10 + ObjectCache::kRevisionOverhead), 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (uint64_t i = 1; i <= 500; ++i) {
        const uint64_t oid = (i * 7 + t) % 97;
        ObjectCache::LoadTicket ticket = cache.BeginLoad(oid);
        cache.EndLoad(ticket, i, 0, std::string(10, 'a'));
        cache.LookupBefore(oid, i + 1);
        if (t == 0) cache.Invalidate(i, {oid});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(cache.bytes(), 50 * (10 + ObjectCache::kRevisionOverhead));
  EXPECT_EQ(cache.bytes(),
            cache.revision_count() * (10 + ObjectCache::kRevisionOverhead));
}

}  // namespace
}  // namespace cellar::client
