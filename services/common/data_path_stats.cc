#include "services/common/data_path_stats.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"

namespace cellar::common {

size_t LatencyBucket(absl::Duration latency) {
  const double ms = absl::ToDoubleMilliseconds(latency);
  for (size_t i = 0; i < kLatencyBucketBoundsMs.size(); ++i) {
    if (ms <= kLatencyBucketBoundsMs[i]) return i;
  }
  return kLatencyBucketBoundsMs.size();
}

double LatencyQuantileMs(const LatencyHistogram& histogram, double quantile) {
  uint64_t total = 0;
  for (uint64_t n : histogram) total += n;
  if (total == 0) return 0;
  // The smallest bucket whose cumulative count reaches quantile * total.
  const double rank = quantile * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < histogram.size(); ++i) {
    seen += histogram[i];
    if (static_cast<double>(seen) >= rank && seen > 0) {
      return kLatencyBucketBoundsMs[std::min(i, kLatencyBucketBoundsMs.size() - 1)];
    }
  }
  return kLatencyBucketBoundsMs.back();
}

void DataPathSample::Add(const DataPathSample& other) {
  loads += other.loads;
  load_errors += other.load_errors;
  stores += other.stores;
  store_errors += other.store_errors;
  checksum_failures += other.checksum_failures;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    load_latency[i] += other.load_latency[i];
    store_latency[i] += other.store_latency[i];
  }
}

bool DataPathSample::Since(const DataPathSample& earlier, DataPathSample* delta) const {
  DataPathSample d;
  d.incarnation = incarnation;
  bool down = false;
  auto sub = [&down](uint64_t now, uint64_t before) {
    if (now < before) down = true;
    return now - before;
  };
  d.loads = sub(loads, earlier.loads);
  d.load_errors = sub(load_errors, earlier.load_errors);
  d.stores = sub(stores, earlier.stores);
  d.store_errors = sub(store_errors, earlier.store_errors);
  d.checksum_failures = sub(checksum_failures, earlier.checksum_failures);
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    d.load_latency[i] = sub(load_latency[i], earlier.load_latency[i]);
    d.store_latency[i] = sub(store_latency[i], earlier.store_latency[i]);
  }
  if (down) return false;
  *delta = d;
  return true;
}

bool IsDataPathError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
      return true;
    case absl::StatusCode::kUnavailable: {
      const std::string reason = ErrorReason(status);
      return reason != kReasonNotReadable && reason != kReasonInDoubt;
    }
    default:
      return false;
  }
}

namespace {

absl::Status HistogramFromProto(const google::protobuf::RepeatedField<uint64_t>& buckets,
                                const char* field, LatencyHistogram* out) {
  if (buckets.empty()) return absl::OkStatus();
  if (static_cast<size_t>(buckets.size()) != kLatencyBuckets) {
    return absl::InvalidArgumentError(absl::StrCat("data_path.", field, ": ", kLatencyBuckets,
                                                   " buckets or none, got ", buckets.size()));
  }
  for (size_t i = 0; i < kLatencyBuckets; ++i) (*out)[i] = buckets[static_cast<int>(i)];
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DataPathSample> DataPathFromProto(const cellar::v1::DataPathCounters& proto) {
  if (proto.incarnation() == 0) {
    return absl::InvalidArgumentError("data_path.incarnation: required (non-zero)");
  }
  if (proto.load_errors() > proto.loads()) {
    return absl::InvalidArgumentError("data_path.load_errors: more than loads");
  }
  if (proto.store_errors() > proto.stores()) {
    return absl::InvalidArgumentError("data_path.store_errors: more than stores");
  }
  if (proto.checksum_failures() > proto.load_errors() + proto.store_errors()) {
    return absl::InvalidArgumentError(
        "data_path.checksum_failures: more than load_errors + store_errors");
  }
  DataPathSample sample;
  sample.incarnation = proto.incarnation();
  sample.loads = proto.loads();
  sample.load_errors = proto.load_errors();
  sample.stores = proto.stores();
  sample.store_errors = proto.store_errors();
  sample.checksum_failures = proto.checksum_failures();
  if (absl::Status s = HistogramFromProto(proto.load_latency_buckets(), "load_latency_buckets",
                                          &sample.load_latency);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = HistogramFromProto(proto.store_latency_buckets(),
                                          "store_latency_buckets", &sample.store_latency);
      !s.ok()) {
    return s;
  }
  return sample;
}

void DataPathToProto(const DataPathSample& sample, cellar::v1::DataPathCounters* proto) {
  proto->set_incarnation(sample.incarnation);
  proto->set_loads(sample.loads);
  proto->set_load_errors(sample.load_errors);
  proto->set_stores(sample.stores);
  proto->set_store_errors(sample.store_errors);
  proto->set_checksum_failures(sample.checksum_failures);
  for (uint64_t n : sample.load_latency) proto->add_load_latency_buckets(n);
  for (uint64_t n : sample.store_latency) proto->add_store_latency_buckets(n);
}

}  // namespace cellar::common
