#ifndef CELLAR_SERVICES_MASTER_OK_STORAGE_CALLER_H_
#define CELLAR_SERVICES_MASTER_OK_STORAGE_CALLER_H_

// Tests and fuzzers: a StorageCaller whose storages all answer at once and
// succeed (locks, unlocks, aborts, shutdowns, probes; outcomes unknown).
// Derive and override the calls a test needs to fail or record.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/master/storage_caller.h"

namespace cellar::master {

class OkStorageCaller : public StorageCaller {
 public:
  std::vector<absl::StatusOr<LockedOids>> LockAll(const std::vector<StorageTarget>& targets,
                                                  uint64_t, uint64_t, uint64_t, uint64_t,
                                                  const std::vector<uint32_t>&) override {
    return std::vector<absl::StatusOr<LockedOids>>(targets.size(), LockedOids{});
  }
  void UnlockAsync(const std::vector<StorageTarget>&, uint64_t, uint64_t, uint64_t, bool,
                   const RecordOids*) override {}
  std::vector<absl::Status> AbortAll(const std::vector<StorageTarget>& targets, uint64_t,
                                     uint64_t) override {
    return std::vector<absl::Status>(targets.size(), absl::OkStatus());
  }
  void AbortAsync(const std::vector<StorageTarget>&, uint64_t, uint64_t) override {}
  std::vector<absl::StatusOr<StorageOutcome>> OutcomeAll(
      const std::vector<StorageTarget>& targets, uint64_t) override {
    return std::vector<absl::StatusOr<StorageOutcome>>(targets.size(), StorageOutcome{});
  }
  absl::Status Shutdown(const StorageTarget&, const std::string&) override {
    return absl::OkStatus();
  }
  absl::Status Probe(const StorageTarget&, absl::Duration) override { return absl::OkStatus(); }
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_OK_STORAGE_CALLER_H_
