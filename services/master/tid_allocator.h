#ifndef CELLAR_SERVICES_MASTER_TID_ALLOCATOR_H_
#define CELLAR_SERVICES_MASTER_TID_ALLOCATOR_H_

// Hands out TIDs (ttids at Begin, final tids at Finish) from the wall
// clock in ZODB format, strictly increasing even when the clock goes
// backwards: tid = max(from_clock(now), last + 1). A final tid is also
// bumped to tid % P == ttid % P (the transaction record lives in
// partition(ttid)), which keeps tid > ttid.
//
// Not thread-safe: the coordinator calls it under its mutex.

#include <cstdint>

#include "absl/time/time.h"
#include "services/common/clock.h"

namespace cellar::master {

class TidAllocator {
 public:
  explicit TidAllocator(const common::Clock* clock) : clock_(clock) {}

  // A new ttid.
  uint64_t NextTtid();

  // The final tid of a transaction with `ttid`, with `num_partitions` P.
  uint64_t NextTid(uint64_t ttid, uint32_t num_partitions);

  // Raises the floor (recovery: the highest tid/ttid storages hold).
  void AdvanceTo(uint64_t tid);

  uint64_t last() const { return last_; }

  // How far the clock is behind the last TID handed out (zero when the
  // clock is ahead): a clock that jumped backwards shows up here.
  absl::Duration ClockLag() const;

 private:
  uint64_t Next();

  const common::Clock* clock_;
  uint64_t last_ = 0;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_TID_ALLOCATOR_H_
