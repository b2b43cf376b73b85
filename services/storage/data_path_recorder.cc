#include "services/storage/data_path_recorder.h"

#include "absl/random/random.h"

namespace cellar::storage {

DataPathRecorder::DataPathRecorder() {
  absl::BitGen bits;
  // Non-zero: zero is "not given" on the wire.
  sample_.incarnation = absl::Uniform<uint64_t>(bits, 1, UINT64_MAX);
}

void DataPathRecorder::Record(const absl::Status& status, absl::Duration latency,
                              uint64_t* calls, uint64_t* errors, uint64_t* checksum_failures,
                              common::LatencyHistogram* histogram) {
  ++*calls;
  if (common::IsDataPathError(status)) ++*errors;
  if (status.code() == absl::StatusCode::kDataLoss) ++*checksum_failures;
  ++(*histogram)[common::LatencyBucket(latency)];
}

void DataPathRecorder::RecordLoad(const absl::Status& status, absl::Duration latency) {
  absl::MutexLock l(&mu_);
  Record(status, latency, &sample_.loads, &sample_.load_errors, &sample_.checksum_failures,
         &sample_.load_latency);
}

void DataPathRecorder::RecordStore(const absl::Status& status, absl::Duration latency) {
  absl::MutexLock l(&mu_);
  Record(status, latency, &sample_.stores, &sample_.store_errors, &sample_.checksum_failures,
         &sample_.store_latency);
}

common::DataPathSample DataPathRecorder::Snapshot() const {
  absl::MutexLock l(&mu_);
  return sample_;
}

}  // namespace cellar::storage
