#include "services/common/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <google/protobuf/message.h>
#include <grpcpp/server_context.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/auth_policy.h"
#include "services/common/json.h"
#include "services/common/logging.h"
#include "services/common/tls_credentials.h"

namespace cellar::common {
namespace {

// `s` as a JSON string literal (JsonString), cut to `limit` input bytes
// with a note of the full size.
std::string JsonQuoted(absl::string_view s, size_t limit) {
  if (s.size() <= limit) return JsonString(s);
  return JsonString(absl::StrCat(s.substr(0, limit), "... (", s.size(), " bytes)"));
}

absl::string_view AuthorizationOf(const grpc::ServerContextBase& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

class AuditInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuditInterceptor(AuditLog* log, const Authenticator* authenticator,
                   grpc::experimental::ServerRpcInfo* info)
      : log_(log), authenticator_(authenticator), info_(info) {
    record_.method = info->method();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Every audited method is a cellar.v1 rpc: its request is a
      // generated protobuf message.
      const auto* request =
          static_cast<const google::protobuf::Message*>(methods->GetRecvMessage());
      if (request != nullptr) record_.request = request->ShortDebugString();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      record_.time = absl::Now();
      record_.code = absl::StatusCodeToString(
          static_cast<absl::StatusCode>(status.error_code()));
      record_.message = status.error_message();
      Identify();
      log_->Write(record_);
    }
    methods->Proceed();
  }

 private:
  void Identify() {
    grpc::ServerContextBase* context = info_->server_context();
    if (context != nullptr) record_.peer = context->peer();
    if (authenticator_ == nullptr) {
      record_.principal = "anonymous";
      return;
    }
    if (context == nullptr) return;
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    absl::StatusOr<Authenticator::Caller> caller = authenticator_->IdentifyCaller(
        AuthorizationOf(*context), auth != nullptr && PeerHasNodeIdentity(*auth));
    if (!caller.ok()) {
      record_.principal = "unknown";
      return;
    }
    record_.role = RoleName(caller->role);
    record_.principal = caller->role == Role::kNode
                            ? caller->principal
                            : absl::StrCat("token ", caller->principal);
  }

  AuditLog* log_;
  const Authenticator* authenticator_;
  grpc::experimental::ServerRpcInfo* info_;
  AuditRecord record_;
};

}  // namespace

bool IsAuditedMethod(absl::string_view full_method) {
  const auto& table = MethodRoles();
  auto it = table.find(full_method);
  if (it == table.end()) return false;
  const RoleSet allowed = it->second;
  return (allowed & Roles(Role::kAdmin)) != 0 &&
         (allowed & Roles(Role::kReadonly)) == 0;
}

std::string AuditRecordJson(const AuditRecord& record) {
  return absl::StrCat(
      "{\"time\":",
      JsonQuoted(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", record.time,
                                  absl::UTCTimeZone()),
                 64),
      ",\"method\":", JsonQuoted(record.method, 128),
      ",\"principal\":", JsonQuoted(record.principal, 128),
      ",\"role\":", JsonQuoted(record.role, 16),
      ",\"peer\":", JsonQuoted(record.peer, 128),
      ",\"request\":", JsonQuoted(record.request, kMaxAuditRequestBytes),
      ",\"code\":", JsonQuoted(record.code, 32),
      ",\"message\":", JsonQuoted(record.message, kMaxAuditMessageBytes), "}");
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(
    const std::string& path, prometheus::Registry* registry) {
  int fd = -1;
  if (!path.empty()) {
    fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--audit_log_file: cannot open ", path, " for appending: ",
          std::strerror(errno)));
    }
  }
  return std::unique_ptr<AuditLog>(new AuditLog(fd, registry));
}

AuditLog::AuditLog(int fd, prometheus::Registry* registry) : fd_(fd) {
  if (registry == nullptr) return;
  actions_ = &prometheus::BuildCounter()
                  .Name("cellar_audit_actions_total")
                  .Help("Admin actions ended on this process, by method and "
                        "status code (each is a line of the audit log).")
                  .Register(*registry);
  write_errors_ = &prometheus::BuildCounter()
                       .Name("cellar_audit_write_errors_total")
                       .Help("Audit log lines that could not be written to "
                             "--audit_log_file.")
                       .Register(*registry)
                       .Add({});
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AuditLog::Write(const AuditRecord& record) {
  const std::string line = AuditRecordJson(record);
  CELLAR_LOG(INFO) << "audit " << line;
  if (actions_ != nullptr) {
    absl::MutexLock l(&mu_);
    prometheus::Counter*& c = action_series_[{record.method, record.code}];
    if (c == nullptr) {
      c = &actions_->Add({{"grpc_method", record.method}, {"grpc_code", record.code}});
    }
    c->Increment();
  }
  if (fd_ < 0) return;
  const std::string with_newline = line + "\n";
  // O_APPEND: one write(2) per line keeps lines whole between writers.
  const ssize_t n = ::write(fd_, with_newline.data(), with_newline.size());
  if (n != static_cast<ssize_t>(with_newline.size()) || ::fdatasync(fd_) != 0) {
    CELLAR_LOG(ERROR) << "audit log: write failed: " << std::strerror(errno);
    if (write_errors_ != nullptr) write_errors_->Increment();
  }
}

grpc::experimental::Interceptor* AuditInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (info->method() == nullptr || !IsAuditedMethod(info->method())) return nullptr;
  return new AuditInterceptor(log_, authenticator_, info);
}

}  // namespace cellar::common
