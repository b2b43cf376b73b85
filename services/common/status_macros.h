#ifndef CELLAR_SERVICES_COMMON_STATUS_MACROS_H_
#define CELLAR_SERVICES_COMMON_STATUS_MACROS_H_

// The Abseil shipped by Debian (20220623) has no status macros: these are
// cellar's. Both evaluate `expr` exactly once.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define CELLAR_RETURN_IF_ERROR(expr)                    \
  do {                                                  \
    ::absl::Status cellar_status_ = (expr);             \
    if (!cellar_status_.ok()) return cellar_status_;    \
  } while (0)

#define CELLAR_STATUS_CONCAT_INNER_(a, b) a##b
#define CELLAR_STATUS_CONCAT_(a, b) CELLAR_STATUS_CONCAT_INNER_(a, b)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its status.
//   CELLAR_ASSIGN_OR_RETURN(auto rows, backend->Load(oid));
#define CELLAR_ASSIGN_OR_RETURN(lhs, expr)                                   \
  CELLAR_ASSIGN_OR_RETURN_IMPL_(                                             \
      CELLAR_STATUS_CONCAT_(cellar_statusor_, __LINE__), lhs, expr)

#define CELLAR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CELLAR_SERVICES_COMMON_STATUS_MACROS_H_
