#ifndef CELLAR_SERVICES_STORAGE_BACKEND_BACKEND_URI_H_
#define CELLAR_SERVICES_STORAGE_BACKEND_BACKEND_URI_H_

// Opens a storage backend from the URI operators write in --backend:
//   sqlite:///abs/path/storage.db     SQLite file (absolute path)
//   sqlite://relative/storage.db      SQLite file (relative to the cwd)
//   postgresql://user@host/db?...     PostgreSQL (libpq URI; postgres:// too)
//   host=/run/postgresql dbname=s1    PostgreSQL (libpq key=value string)
// INVALID_ARGUMENT for anything else, naming the accepted forms.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

absl::StatusOr<std::unique_ptr<StorageBackend>> OpenBackendFromUri(const std::string& uri);

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_BACKEND_BACKEND_URI_H_
