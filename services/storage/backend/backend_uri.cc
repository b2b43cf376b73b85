#include "services/storage/backend/backend_uri.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/storage/backend/postgres/postgres_backend.h"
#include "services/storage/backend/sqlite/sqlite_backend.h"

namespace cellar::storage {

absl::StatusOr<std::unique_ptr<StorageBackend>> OpenBackendFromUri(const std::string& uri) {
  constexpr absl::string_view kSqlite = "sqlite://";
  if (absl::StartsWith(uri, kSqlite)) {
    SqliteBackend::Options options;
    options.path = uri.substr(kSqlite.size());
    if (options.path.empty()) {
      return absl::InvalidArgumentError("backend: sqlite:// needs a file path");
    }
    return SqliteBackend::Open(options);
  }
  if (absl::StartsWith(uri, "postgresql://") || absl::StartsWith(uri, "postgres://") ||
      absl::StrContains(uri, "=")) {
    PostgresBackend::Options options;
    options.conninfo = uri;
    return PostgresBackend::Open(options);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "backend: \"", uri,
      "\" is not a storage URI; use sqlite:///abs/path.db, sqlite://relative.db, "
      "postgresql://... or a libpq string like \"host=/run/postgresql dbname=cellar\""));
}

}  // namespace cellar::storage
