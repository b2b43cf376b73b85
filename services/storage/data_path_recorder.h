#ifndef CELLAR_SERVICES_STORAGE_DATA_PATH_RECORDER_H_
#define CELLAR_SERVICES_STORAGE_DATA_PATH_RECORDER_H_

// What this storage process served on its data path, cumulative since it
// started: the counters it sends with every heartbeat for the master's
// canary analysis (common/data_path_stats.h, docs/rollouts.md). A random
// incarnation, fixed for the life of the object, tells the master when
// the counters started again from 0. Thread-safe.

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/data_path_stats.h"

namespace cellar::storage {

class DataPathRecorder {
 public:
  DataPathRecorder();

  // One object load answered `status` after `latency`.
  void RecordLoad(const absl::Status& status, absl::Duration latency);
  // One Store call (any number of objects) answered `status`.
  void RecordStore(const absl::Status& status, absl::Duration latency);
  common::DataPathSample Snapshot() const;

 private:
  static void Record(const absl::Status& status, absl::Duration latency, uint64_t* calls,
                     uint64_t* errors, uint64_t* checksum_failures,
                     common::LatencyHistogram* histogram);

  mutable absl::Mutex mu_;
  common::DataPathSample sample_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_DATA_PATH_RECORDER_H_
