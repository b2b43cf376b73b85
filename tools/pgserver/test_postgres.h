#ifndef CELLAR_TOOLS_PGSERVER_TEST_POSTGRES_H_
#define CELLAR_TOOLS_PGSERVER_TEST_POSTGRES_H_

// The PostgreSQL server a test binary uses (testonly).
//
// If the environment variable CELLAR_TEST_PG holds a libpq connection
// string (pass it with `bazel test --test_env=CELLAR_TEST_PG=...`), tests
// use that server; otherwise the first call starts a ThrowawayPostgres that
// lives until the test binary exits. Either way every test asks for a
// fresh database of its own:
//
//   absl::StatusOr<TestDatabase> db = CreateTestDatabase("conformance");
//   ... PostgresBackend::Open({.conninfo = db->conninfo}) ...
//   DropTestDatabase(db->name);  // optional with a throwaway server
//
// Thread-safe.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellar::tools {

// The name of the environment variable read by TestPostgresConninfo().
inline constexpr char kTestPostgresEnv[] = "CELLAR_TEST_PG";

// Connection string of the server (database "postgres" for a throwaway
// one). Starts the throwaway server on first use; its error is returned
// on this and every later call.
absl::StatusOr<std::string> TestPostgresConninfo();

// A test database: its name and connection string.
struct TestDatabase {
  std::string name;
  std::string conninfo;
};

// A fresh, empty database named "<prefix>_<pid>_<n>" (n counts calls in
// this process; an old database of that name is dropped first).
// `prefix`: letters, digits, '_' (at most 40).
absl::StatusOr<TestDatabase> CreateTestDatabase(absl::string_view prefix);

// Drops a database made by CreateTestDatabase (its sessions are
// terminated). OK if it doesn't exist.
absl::Status DropTestDatabase(absl::string_view name);

}  // namespace cellar::tools

#endif  // CELLAR_TOOLS_PGSERVER_TEST_POSTGRES_H_
