#include "tools/pgserver/test_postgres.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_macros.h"
#include "tools/pgserver/throwaway_postgres.h"

namespace cellar::tools {
namespace {

struct SharedServer {
  absl::Mutex mu;
  bool initialized ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<std::string> conninfo ABSL_GUARDED_BY(mu) =
      absl::UnknownError("not started");
  // Stopped by the static destructor at exit.
  std::unique_ptr<ThrowawayPostgres> server ABSL_GUARDED_BY(mu);
};

SharedServer& Shared() {
  // Destroyed at exit, which stops the throwaway server.
  static SharedServer shared;
  return shared;
}

}  // namespace

absl::StatusOr<std::string> TestPostgresConninfo() {
  SharedServer& shared = Shared();
  absl::MutexLock lock(&shared.mu);
  if (!shared.initialized) {
    shared.initialized = true;
    const char* env = getenv(kTestPostgresEnv);
    if (env != nullptr && env[0] != '\0') {
      shared.conninfo = std::string(env);
    } else {
      absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> server =
          ThrowawayPostgres::Start({});
      if (server.ok()) {
        shared.server = *std::move(server);
        shared.conninfo = shared.server->conninfo();
      } else {
        shared.conninfo = absl::Status(
            server.status().code(),
            absl::StrCat("starting a throwaway PostgreSQL for tests (set ",
                         kTestPostgresEnv, " to use an existing server): ",
                         server.status().message()));
      }
    }
  }
  return shared.conninfo;
}

absl::StatusOr<TestDatabase> CreateTestDatabase(absl::string_view prefix) {
  static std::atomic<int> counter{0};
  if (prefix.size() > 40) {
    return absl::InvalidArgumentError("CreateTestDatabase: prefix too long");
  }
  CELLAR_ASSIGN_OR_RETURN(std::string admin, TestPostgresConninfo());
  TestDatabase db;
  db.name = absl::StrCat(prefix, "_", getpid(), "_", counter.fetch_add(1));
  CELLAR_ASSIGN_OR_RETURN(db.conninfo, CreatePostgresDatabase(admin, db.name));
  return db;
}

absl::Status DropTestDatabase(absl::string_view name) {
  CELLAR_ASSIGN_OR_RETURN(std::string admin, TestPostgresConninfo());
  return DropPostgresDatabase(admin, name);
}

}  // namespace cellar::tools
