#include "services/master/tid_allocator.h"

#include <algorithm>

#include "services/common/ids.h"

namespace cellar::master {

uint64_t TidAllocator::Next() {
  const uint64_t from_clock = common::TidFromTime(clock_->Now());
  last_ = std::max(from_clock, last_ + 1);
  return last_;
}

uint64_t TidAllocator::NextTtid() { return Next(); }

uint64_t TidAllocator::NextTid(uint64_t ttid, uint32_t num_partitions) {
  uint64_t tid = std::max(Next(), ttid + 1);
  if (num_partitions > 1) {
    const uint64_t want = ttid % num_partitions;
    const uint64_t have = tid % num_partitions;
    tid += (want + num_partitions - have) % num_partitions;
  }
  last_ = tid;
  return tid;
}

void TidAllocator::AdvanceTo(uint64_t tid) { last_ = std::max(last_, tid); }

absl::Duration TidAllocator::ClockLag() const {
  const absl::Time now = clock_->Now();
  const absl::Time last = common::TimeFromTid(last_);
  return last > now ? last - now : absl::ZeroDuration();
}

}  // namespace cellar::master
