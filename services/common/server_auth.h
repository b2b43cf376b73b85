#ifndef CELLAR_SERVICES_COMMON_SERVER_AUTH_H_
#define CELLAR_SERVICES_COMMON_SERVER_AUTH_H_

// Plugs an Authenticator into a gRPC server so that a refused call never
// reaches its handler, and lets handlers read the caller's role.
//
// Why an AuthMetadataProcessor on hand-made server credentials: in gRPC
// 1.51 C++ a server interceptor cannot fail a call (it can only cancel it
// after the handler was scheduled, with CANCELLED), whereas the auth
// metadata processor runs in the server auth filter on the call's initial
// metadata (":path" included) and its status (UNAUTHENTICATED,
// PERMISSION_DENIED and message) is what the client gets, the handler never
// running. grpc::InsecureServerCredentials() refuses a processor (it
// asserts), so these credentials are the core's insecure server
// credentials — the same plaintext transport — with the processor set;
// with TLS, the core TLS credentials (tls_credentials.h) with the processor
// set. The processor answers synchronously (Authorize only reads memory).
//
// With TLS and a client CA, a peer whose verified certificate carries the
// node identity (kNodeIdentityUri) and sends no bearer is `node`: the
// processor reads the connection's peer properties (they belong to the
// connection, so sharing it is right for them).
//
// Handlers that need more than the per-method table (a storage
// registration, an abort with a master epoch) call RequireNodeRole, which
// identifies the caller again from the call's metadata. Not through the
// AuthContext: in gRPC 1.51 the processor is handed the connection's
// AuthContext, shared by every call on it (and channels to one address
// share connections), so a property added there would leak to other
// callers and pile up.
//
// Thread-safe.

#include <memory>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <prometheus/counter.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "services/common/tls_credentials.h"

namespace cellar::common {

// Counters of refused calls (either may be null).
struct AuthRefusalCounters {
  prometheus::Counter* unauthenticated = nullptr;
  prometheus::Counter* permission_denied = nullptr;
  prometheus::Counter* rate_limited = nullptr;
};

// Server credentials whose every call is first decided by `authenticator`
// (null: no decision, every call runs): plaintext when `tls` is null, else
// TLS from it.
std::shared_ptr<grpc::ServerCredentials> AuthenticatingServerCredentials(
    std::shared_ptr<const Authenticator> authenticator, AuthRefusalCounters counters,
    std::shared_ptr<const TlsServerCredentialsSource> tls = nullptr);

// OK when `authenticator` is null (auth off) or the call's bearer is the
// node credential; otherwise PERMISSION_DENIED saying that `what` needs the
// cluster secret.
// The caller's principal (Authenticator::IdentifyCaller), "" without an
// authenticator (auth off) or without valid credentials.
std::string CallerPrincipal(const grpc::ServerContext& context,
                            const Authenticator* authenticator);

absl::Status RequireNodeRole(const grpc::ServerContext& context,
                             const Authenticator* authenticator, absl::string_view what);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_SERVER_AUTH_H_
