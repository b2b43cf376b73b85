#ifndef CELLAR_SERVICES_STORAGE_BACKEND_BACKEND_CONFORMANCE_H_
#define CELLAR_SERVICES_STORAGE_BACKEND_BACKEND_CONFORMANCE_H_

// The conformance suite every StorageBackend implementation runs (testonly).
//
// A backend's test file provides a way to make fresh stores and instantiates
// the suite (the test cases themselves live in backend_conformance.cc,
// linked with alwayslink = 1):
//
//   class SqliteTestStore : public ConformanceStore { ... };
//
//   INSTANTIATE_TEST_SUITE_P(
//       Sqlite, BackendConformanceTest,
//       ::testing::Values(BackendConformanceParam{
//           "sqlite",
//           []() -> absl::StatusOr<std::unique_ptr<ConformanceStore>> {
//             return std::make_unique<SqliteTestStore>(...);
//           }}),
//       BackendConformanceParamName);
//
// Every test case calls `make_store` once, then opens backends on that store
// as it needs them: usually once, sometimes again after destroying the first
// backend (durability across restarts), or twice at once (the second Open()
// must fail: ownership lock).

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

// One test case's store: a fresh, empty database (a new SQLite file, a new
// PostgreSQL database) that lives as long as this handle. The destructor
// may delete it. Used from the test's main thread only (backends opened on
// it are used from several threads).
class ConformanceStore {
 public:
  virtual ~ConformanceStore() = default;

  // Opens a backend on this store. May be called again after the previous
  // backend was destroyed: the new one must see everything the old one
  // made durable (a node restart). While another backend on this store is
  // open it must fail with FAILED_PRECONDITION (ownership lock).
  virtual absl::StatusOr<std::unique_ptr<StorageBackend>> Open() = 0;

  // With no backend open, makes the store look as if it was written by a
  // build with schema version `version` (e.g. kSchemaVersion + 1), so the
  // next Open() can be checked to refuse it with FAILED_PRECONDITION. A
  // store may create the schema first (Open() once) if needed. Returning
  // UNIMPLEMENTED skips that test case (test it in the backend's own test).
  virtual absl::Status ForceSchemaVersion(int version) = 0;

  // With no backend open, turns the store back into the layout of schema
  // version kSchemaVersion - 1, keeping every record, and sets that
  // version: the next Open() must migrate it. UNIMPLEMENTED (the default)
  // skips the test cases that need it.
  virtual absl::Status RestorePreviousSchema() {
    return absl::UnimplementedError("RestorePreviousSchema");
  }
};

// Makes a fresh, empty store for one test case (a new file / database on
// every call).
using ConformanceStoreFactory =
    std::function<absl::StatusOr<std::unique_ptr<ConformanceStore>>()>;

// The parameter of BackendConformanceTest.
struct BackendConformanceParam {
  // Test-name suffix: [A-Za-z0-9_] only (e.g. "sqlite", "postgresql").
  std::string name;
  ConformanceStoreFactory make_store;
};

// gtest prints the param by its name.
void PrintTo(const BackendConformanceParam& param, std::ostream* os);

// For INSTANTIATE_TEST_SUITE_P's name generator argument.
std::string BackendConformanceParamName(
    const ::testing::TestParamInfo<BackendConformanceParam>& info);

// The fixture: SetUp() makes a store and opens `backend_` on it.
class BackendConformanceTest
    : public ::testing::TestWithParam<BackendConformanceParam> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Destroys `backend_` and opens a new backend on the same store.
  void Reopen();

  std::unique_ptr<ConformanceStore> store_;
  std::unique_ptr<StorageBackend> backend_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_BACKEND_BACKEND_CONFORMANCE_H_
