#ifndef CELLAR_SERVICES_COMMON_CLOCK_H_
#define CELLAR_SERVICES_COMMON_CLOCK_H_

// An injectable wall clock. Libraries take a Clock* so tests can control
// time (FakeClock in fake_clock.h). Implementations are thread-safe.

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cellar::common {

class Clock {
 public:
  virtual ~Clock() = default;
  // The current wall-clock time. May go backwards (NTP steps).
  virtual absl::Time Now() const = 0;
};

// The system clock (absl::Now()).
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance; stateless, so sharing it is safe.
  static RealClock* Get() {
    static RealClock* const clock = new RealClock;
    return clock;
  }
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_CLOCK_H_
