#ifndef CELLAR_SERVICES_COMMON_DATA_PATH_STATS_H_
#define CELLAR_SERVICES_COMMON_DATA_PATH_STATS_H_

// A storage's data-path counters as it reports them with its heartbeats
// (HeartbeatRequest.data_path) for the master's canary analysis
// (docs/rollouts.md, "Canary analysis"): loads, stores, their errors,
// checksum failures, and coarse latency histograms with fixed buckets.
// Shared by the storage (which counts) and the master (which validates and
// compares). No state: plain values and pure functions.

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"

namespace cellar::common {

// Upper bounds of the latency buckets, in ms; the last bucket holds the
// rest.
inline constexpr std::array<double, 11> kLatencyBucketBoundsMs = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};
inline constexpr size_t kLatencyBuckets = kLatencyBucketBoundsMs.size() + 1;
using LatencyHistogram = std::array<uint64_t, kLatencyBuckets>;

// The bucket a call of `latency` falls in.
size_t LatencyBucket(absl::Duration latency);

// The upper bound (ms) of the bucket holding the `quantile` (0..1) of the
// calls, the last bound for the overflow bucket; 0 when there is no call.
double LatencyQuantileMs(const LatencyHistogram& histogram, double quantile);

// Cumulative counters of one storage process (DataPathCounters).
struct DataPathSample {
  uint64_t incarnation = 0;
  uint64_t loads = 0;
  uint64_t load_errors = 0;
  uint64_t stores = 0;
  uint64_t store_errors = 0;
  uint64_t checksum_failures = 0;
  LatencyHistogram load_latency{};
  LatencyHistogram store_latency{};

  // Adds `other` counter by counter (not the incarnation).
  void Add(const DataPathSample& other);
  // `this - earlier`, counter by counter; false (and *delta untouched) if
  // any counter went down (the counters were reset).
  bool Since(const DataPathSample& earlier, DataPathSample* delta) const;
};

// Whether a load or store answer counts as an error of the node: INTERNAL,
// DATA_LOSS, UNKNOWN, and UNAVAILABLE except NOT_READABLE and IN_DOUBT
// (routing and in-doubt votes). Never OK, NOT_FOUND, ABORTED (conflicts,
// lock contention) or a bad request.
bool IsDataPathError(const absl::Status& status);

// INVALID_ARGUMENT for a zero incarnation, a histogram that is neither
// empty nor exactly kLatencyBuckets long, or more errors (or checksum
// failures) than calls.
absl::StatusOr<DataPathSample> DataPathFromProto(const cellar::v1::DataPathCounters& proto);
void DataPathToProto(const DataPathSample& sample, cellar::v1::DataPathCounters* proto);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_DATA_PATH_STATS_H_
