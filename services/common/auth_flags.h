#ifndef CELLAR_SERVICES_COMMON_AUTH_FLAGS_H_
#define CELLAR_SERVICES_COMMON_AUTH_FLAGS_H_

// The authentication flags of cellar-master, cellar-storage and
// cellar-admin, read in one place (mains only):
//   --auth_tokens_file=PATH     tokens file (auth_tokens.h), re-read on change
//   --cluster_secret_file=PATH  the cluster secret: grants and sends `node`
//   --reflection                serve reflection without credentials
//   --insecure                  allow a non-loopback listener without auth
// Auth is on when either file is given (docs/security.md).

#include "absl/status/statusor.h"
#include "services/common/authenticator.h"

namespace cellar::common {

// From the flags. INVALID_ARGUMENT / NOT_FOUND naming the flag for an
// unreadable or bad file.
absl::StatusOr<AuthSetup> AuthSetupFromFlags();

// The same, for a main: on error prints "<program>: <message>" to stderr
// and exits 2 (bad flags).
AuthSetup AuthSetupFromFlagsOrExit(const char* program);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_AUTH_FLAGS_H_
