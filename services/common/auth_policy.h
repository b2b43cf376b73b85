#ifndef CELLAR_SERVICES_COMMON_AUTH_POLICY_H_
#define CELLAR_SERVICES_COMMON_AUTH_POLICY_H_

// Who may call what: ONE table from every rpc's full name
// ("/cellar.v1.Master/Begin") to the roles allowed to call it, for the
// three services of protos/cellar/v1. auth_policy_test walks the service
// descriptors and fails if any rpc is missing, so a new rpc cannot ship
// without a decision. See docs/security.md for the table in prose.
//
// `admin` implies `readonly` and `client` implies `reader` (HasRole): a
// set naming the lesser role admits the greater one. Open paths (grpc.health.v1, and
// reflection when asked) need no credentials at all.
//
// Thread-safe (immutable after first use).

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "services/common/auth_tokens.h"

namespace cellar::common {

// Method full name -> allowed roles.
const absl::flat_hash_map<std::string, RoleSet>& MethodRoles();

// True if a caller with `role` may call a method allowing `allowed`.
bool HasRole(Role role, RoleSet allowed);

// grpc.health.v1.Health/* (Kubernetes probes must work without a token).
bool IsHealthMethod(absl::string_view full_method);

// grpc.reflection.*/* (open only when auth is off or with --reflection).
bool IsReflectionMethod(absl::string_view full_method);

// Calls that only release what the caller holds (aborting its own
// transaction): never refused for rate, or a client over its limit would
// leave begun transactions and object locks behind for everyone else to
// wait on.
bool ReleasesCallerState(absl::string_view full_method);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_AUTH_POLICY_H_
