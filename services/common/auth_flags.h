#ifndef CELLAR_SERVICES_COMMON_AUTH_FLAGS_H_
#define CELLAR_SERVICES_COMMON_AUTH_FLAGS_H_

// The authentication flags of cellar-master, cellar-storage and
// cellar-admin, read in one place (mains only):
//   --auth_tokens_file=PATH     tokens file (auth_tokens.h), re-read on change
//   --cluster_secret_file=PATH  the cluster secret: grants and sends `node`
//   --reflection                serve reflection without credentials
//   --insecure                  allow a non-loopback listener without auth
// and the TLS flags:
//   --tls_cert_file, --tls_key_file   this process's certificate and key
//                                     (served, and presented when dialling)
//   --tls_client_ca_file=PATH         verify client certificates (mTLS); a
//                                     node certificate is role node
//   --tls_require_client_cert         refuse clients without a certificate
//   --tls_ca_file=PATH                CA of the servers this process dials
//   --tls_server_name=NAME            name their certificates must carry
//   --tls_reload_interval=60s         how often the files are re-read
// and the metrics port's:
//   --metrics_auth                    basic auth, a token as password
// Auth is on when a tokens file, a cluster secret or a client CA is given
// (docs/security.md).

#include "absl/status/statusor.h"
#include "services/common/authenticator.h"

namespace cellar::common {

// From the flags. INVALID_ARGUMENT / NOT_FOUND naming the flag for an
// unreadable or bad file, or a flag missing while another needs it.
absl::StatusOr<AuthSetup> AuthSetupFromFlags();

// The same, for a main: on error prints "<program>: <message>" to stderr
// and exits 2 (bad flags).
AuthSetup AuthSetupFromFlagsOrExit(const char* program);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_AUTH_FLAGS_H_
