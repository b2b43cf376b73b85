#ifndef CELLAR_SERVICES_COMMON_AUDIT_LOG_H_
#define CELLAR_SERVICES_COMMON_AUDIT_LOG_H_

// The audit log: one JSON line per admin action (every rpc whose roles
// include `admin` but not `readonly`, from auth_policy's table), written
// when the call ends, with who, what, when and the outcome:
//
//   {"time":"2026-12-07T06:01:02.123456Z","method":"/cellar.v1.Admin/SetReplicas",
//    "principal":"token 1a2b3c4d","role":"admin","peer":"ipv4:127.0.0.1:40122",
//    "request":"replicas: 2","code":"OK","message":""}
//
// Every line goes to the process log (prefixed "audit ") and, with a file,
// is appended to it (O_APPEND, 0600, flushed per line). Strings are JSON-
// escaped (json.h: never a line break) and bounded (the request's text form to kMaxAuditRequestBytes,
// the message to kMaxAuditMessageBytes): a caller cannot forge lines or
// grow them without bound. Each action is counted in
// cellar_audit_actions_total{grpc_method,grpc_code}; a failed file write in
// cellar_audit_write_errors_total (the action itself is not undone).
//
// Calls refused before their handler (no or wrong credentials) never reach
// the log: they are counted in cellar_auth_refused_total.
//
// Thread-safe.

#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/authenticator.h"

namespace cellar::common {

inline constexpr size_t kMaxAuditRequestBytes = 2048;
inline constexpr size_t kMaxAuditMessageBytes = 512;

// True for the rpcs the audit log records (admin actions).
bool IsAuditedMethod(absl::string_view full_method);

struct AuditRecord {
  absl::Time time;
  std::string method;     // "/cellar.v1.Admin/SetReplicas"
  std::string principal;  // "token <id>", "node", "anonymous" (auth off)
  std::string role;       // "admin", "node", "" (auth off)
  std::string peer;       // gRPC peer string
  std::string request;    // the request's one-line text form
  std::string code;       // "OK", "INVALID_ARGUMENT", ...
  std::string message;    // the status message
};

// The record as one JSON object on one line (no trailing newline),
// escaped and bounded as described above.
std::string AuditRecordJson(const AuditRecord& record);

class AuditLog {
 public:
  // `path` empty: process log only. INVALID_ARGUMENT naming the path if it
  // cannot be opened for appending. `registry` may be null (no metrics);
  // it must outlive the log.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(
      const std::string& path, prometheus::Registry* registry);
  ~AuditLog();

  void Write(const AuditRecord& record);

 private:
  AuditLog(int fd, prometheus::Registry* registry);

  const int fd_;  // -1: no file
  prometheus::Family<prometheus::Counter>* actions_ = nullptr;
  prometheus::Counter* write_errors_ = nullptr;
  absl::Mutex mu_;
  absl::flat_hash_map<std::pair<std::string, std::string>, prometheus::Counter*>
      action_series_ ABSL_GUARDED_BY(mu_);
};

// Records every audited call of a server into `log` (not owned; it and
// `authenticator`, which may be null when auth is off, must outlive the
// server).
class AuditInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  AuditInterceptorFactory(AuditLog* log, const Authenticator* authenticator)
      : log_(log), authenticator_(authenticator) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  AuditLog* log_;
  const Authenticator* authenticator_;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_AUDIT_LOG_H_
