// MemoryBackend runs the backend conformance suite: a fake must pass the
// same contract as the real backends it stands in for.

#include <memory>
#include <utility>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/storage/backend/backend_conformance.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage::testing {
namespace {

// A MemoryStore: backends opened on it keep their records in it (a
// "restart" is destroying one backend and opening another).
class MemoryConformanceStore : public ConformanceStore {
 public:
  absl::StatusOr<std::unique_ptr<StorageBackend>> Open() override {
    absl::StatusOr<std::unique_ptr<MemoryBackend>> backend =
        MemoryBackend::Open(store_);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<StorageBackend>(*std::move(backend));
  }

  // An in-memory store has no schema: nothing written by another build
  // can reach it, so the schema version and migration cases are skipped.
  absl::Status ForceSchemaVersion(int) override {
    return absl::UnimplementedError("memory store: no schema version");
  }
  absl::Status RestorePreviousSchema() override {
    return absl::UnimplementedError("memory store: no schema to migrate");
  }

 private:
  const std::shared_ptr<MemoryStore> store_ = std::make_shared<MemoryStore>();
};

INSTANTIATE_TEST_SUITE_P(
    Memory, BackendConformanceTest,
    ::testing::Values(BackendConformanceParam{
        "memory",
        []() -> absl::StatusOr<std::unique_ptr<ConformanceStore>> {
          return std::make_unique<MemoryConformanceStore>();
        }}),
    BackendConformanceParamName);

}  // namespace
}  // namespace cellar::storage::testing
