#ifndef CELLAR_TESTS_INTEGRATION_TEST_BACKENDS_H_
#define CELLAR_TESTS_INTEGRATION_TEST_BACKENDS_H_

// Storage backends for multi-node tests (testonly): N fresh SQLite files
// in the test's temp dir, or N fresh databases on the test PostgreSQL
// server (tools/pgserver/test_postgres.h: $CELLAR_TEST_PG or a throwaway
// server started on first use).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellar::testing_support {

// "sqlite" and "postgres".
std::vector<std::string> TestBackendKinds();

class TestBackends {
 public:
  // One backend URI per storage (stable across cluster restarts).
  const std::vector<std::string>& uris() const { return uris_; }

 private:
  friend absl::StatusOr<std::unique_ptr<TestBackends>> MakeTestBackends(
      const std::string& kind, int count);
  std::vector<std::string> uris_;
};

// INVALID_ARGUMENT for an unknown kind; the PostgreSQL server's error if
// it cannot start.
absl::StatusOr<std::unique_ptr<TestBackends>> MakeTestBackends(const std::string& kind,
                                                               int count);

}  // namespace cellar::testing_support

#endif  // CELLAR_TESTS_INTEGRATION_TEST_BACKENDS_H_
