#include "services/common/server_auth.h"

#include <grpc/grpc_security.h>
#include <grpc/slice.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cellar::common {
namespace {

absl::string_view SliceView(const grpc_slice& slice) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
                           GRPC_SLICE_LENGTH(slice));
}

struct ProcessorState {
  std::shared_ptr<const Authenticator> authenticator;
  AuthRefusalCounters counters;
};

void Process(void* state, grpc_auth_context* context, const grpc_metadata* md,
             size_t num_md, grpc_process_auth_metadata_done_cb cb, void* user_data) {
  const auto* s = static_cast<const ProcessorState*>(state);
  absl::string_view path;
  absl::string_view authorization;
  for (size_t i = 0; i < num_md; ++i) {
    const absl::string_view key = SliceView(md[i].key);
    if (key == ":path") {
      path = SliceView(md[i].value);
    } else if (key == "authorization") {
      authorization = SliceView(md[i].value);
    }
  }
  absl::StatusOr<std::optional<Role>> decision =
      path.empty() ? absl::PermissionDeniedError("no :path in the call's metadata")
                   : s->authenticator->Authorize(path, authorization,
                                                 PeerHasNodeIdentity(context));
  if (!decision.ok()) {
    const absl::StatusCode code = decision.status().code();
    prometheus::Counter* counter = code == absl::StatusCode::kUnauthenticated
                                       ? s->counters.unauthenticated
                                   : code == absl::StatusCode::kResourceExhausted
                                       ? s->counters.rate_limited
                                       : s->counters.permission_denied;
    if (counter != nullptr) counter->Increment();
    const std::string message(decision.status().message());
    cb(user_data, nullptr, 0, nullptr, 0,
       static_cast<grpc_status_code>(decision.status().code()), message.c_str());
    return;
  }
  // Nothing is added to `context`: it is the connection's (see the header).
  // The bearer is not consumed: RequireNodeRole reads it again.
  cb(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
}

void Destroy(void* state) { delete static_cast<ProcessorState*>(state); }

class AuthenticatingCredentials final : public grpc::ServerCredentials {
 public:
  AuthenticatingCredentials(std::shared_ptr<const Authenticator> authenticator,
                            AuthRefusalCounters counters,
                            std::shared_ptr<const TlsServerCredentialsSource> tls)
      : authenticator_(std::move(authenticator)), counters_(counters), tls_(std::move(tls)) {}

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    // Ours is fixed at construction; nothing else may replace it.
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    grpc_server_credentials* creds = tls_ != nullptr
                                         ? tls_->NewCoreCredentials()
                                         : grpc_insecure_server_credentials_create();
    if (authenticator_ != nullptr) {
      grpc_auth_metadata_processor processor;
      processor.process = &Process;
      processor.destroy = &Destroy;
      processor.state = new ProcessorState{authenticator_, counters_};
      grpc_server_credentials_set_auth_metadata_processor(creds, processor);
    }
    const int port = grpc_server_add_http2_port(server, addr.c_str(), creds);
    grpc_server_credentials_release(creds);
    return port;
  }

  std::shared_ptr<const Authenticator> authenticator_;
  AuthRefusalCounters counters_;
  std::shared_ptr<const TlsServerCredentialsSource> tls_;  // null: plaintext
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> AuthenticatingServerCredentials(
    std::shared_ptr<const Authenticator> authenticator, AuthRefusalCounters counters,
    std::shared_ptr<const TlsServerCredentialsSource> tls) {
  return std::make_shared<AuthenticatingCredentials>(std::move(authenticator), counters,
                                                     std::move(tls));
}

namespace {

absl::string_view AuthorizationOf(const grpc::ServerContext& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

bool NodeCertificate(const grpc::ServerContext& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  return auth != nullptr && PeerHasNodeIdentity(*auth);
}

}  // namespace

std::string CallerPrincipal(const grpc::ServerContext& context,
                            const Authenticator* authenticator) {
  if (authenticator == nullptr) return "";
  absl::StatusOr<Authenticator::Caller> caller =
      authenticator->IdentifyCaller(AuthorizationOf(context), NodeCertificate(context));
  return caller.ok() ? caller->principal : "";
}

absl::Status RequireNodeRole(const grpc::ServerContext& context,
                             const Authenticator* authenticator, absl::string_view what) {
  if (authenticator == nullptr) return absl::OkStatus();
  absl::StatusOr<Role> role =
      authenticator->Identify(AuthorizationOf(context), NodeCertificate(context));
  if (role.ok() && *role == Role::kNode) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      what, " needs role node (the cluster secret or a node certificate); the caller has role ",
      role.ok() ? RoleName(*role) : "none"));
}

}  // namespace cellar::common
