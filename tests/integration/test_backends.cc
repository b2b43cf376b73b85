#include "tests/integration/test_backends.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::testing_support {

std::vector<std::string> TestBackendKinds() { return {"sqlite", "postgres"}; }

absl::StatusOr<std::unique_ptr<TestBackends>> MakeTestBackends(const std::string& kind,
                                                               int count) {
  static std::atomic<int> counter{0};
  auto backends = std::unique_ptr<TestBackends>(new TestBackends);
  if (kind == "sqlite") {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/cluster-", getpid(), "-",
                                   counter++);
    std::string templ = dir + "-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp ", templ, " failed"));
    }
    for (int i = 0; i < count; ++i) {
      backends->uris_.push_back(absl::StrCat("sqlite://", templ, "/storage-", i, ".db"));
    }
    return backends;
  }
  if (kind == "postgres") {
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<tools::TestDatabase> db =
          tools::CreateTestDatabase(absl::StrCat("cluster_s", i));
      if (!db.ok()) return db.status();
      backends->uris_.push_back(db->conninfo);
    }
    return backends;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend kind ", kind));
}

}  // namespace cellar::testing_support
