#include "tools/bench/runner.h"

#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"

namespace cellar::bench {
namespace {

// An operation that takes `latency` (a sleep: no CPU).
class SleepWorker : public Worker {
 public:
  explicit SleepWorker(absl::Duration latency) : latency_(latency) {}
  absl::Status Op() override {
    absl::SleepFor(latency_);
    return absl::OkStatus();
  }

 private:
  absl::Duration latency_;
};

WorkerFactory Sleeping(absl::Duration latency) {
  return [latency](int) -> absl::StatusOr<std::unique_ptr<Worker>> {
    return std::make_unique<SleepWorker>(latency);
  };
}

// Operations slower than the window: the window stretches until one fits
// instead of reporting 0/s.
TEST(RunnerTest, AWindowShorterThanOneOperationStretchesUntilOneFits) {
  RunSpec spec;
  spec.threads = 1;
  spec.warmup = absl::Milliseconds(10);
  spec.duration = absl::Milliseconds(50);
  absl::StatusOr<Measurement> m = RunScenario(spec, Sleeping(absl::Milliseconds(200)));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GE(m->ops, 1u);
  EXPECT_GT(m->items_per_s, 0);
  // At least one whole 200 ms operation inside the window.
  EXPECT_GE(m->seconds, 0.2);
  EXPECT_GE(m->p50_ms, 200);
}

// Operations that fit: the window is the configured duration.
TEST(RunnerTest, AWindowThatFitsOperationsKeepsItsDuration) {
  RunSpec spec;
  spec.threads = 2;
  spec.warmup = absl::Milliseconds(10);
  spec.duration = absl::Milliseconds(200);
  absl::StatusOr<Measurement> m = RunScenario(spec, Sleeping(absl::Milliseconds(5)));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GE(m->ops, 1u);
  EXPECT_DOUBLE_EQ(m->seconds, 0.2);
}

}  // namespace
}  // namespace cellar::bench
