#include "services/common/authenticator.h"

#include <sys/stat.h>

#include <algorithm>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/auth_policy.h"
#include "services/common/logging.h"

namespace cellar::common {
namespace {

absl::StatusOr<std::string> FileStamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("auth_tokens_file: cannot stat '", path, "'"));
  }
  return absl::StrCat(st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "/", st.st_size, "/",
                      st.st_ino);
}

}  // namespace

Authenticator::Authenticator(AuthenticatorOptions options)
    : options_(std::move(options)),
      node_bearer_(options_.cluster_secret.empty() ? ""
                                                   : NodeBearer(options_.cluster_secret)) {
  if (options_.rate_limit_per_second > 0) {
    const double burst = options_.rate_limit_burst > 0
                             ? options_.rate_limit_burst
                             : std::max(1.0, 2 * options_.rate_limit_per_second);
    limiter_ = std::make_unique<RateLimiter>(
        options_.rate_limit_per_second, burst,
        options_.clock != nullptr ? options_.clock : RealClock::Get());
  }
  if (options_.byte_limit_per_second > 0) {
    const double burst = options_.byte_limit_burst > 0 ? options_.byte_limit_burst
                                                       : 2 * options_.byte_limit_per_second;
    byte_limiter_ = std::make_unique<RateLimiter>(
        options_.byte_limit_per_second, burst,
        options_.clock != nullptr ? options_.clock : RealClock::Get(), "bytes");
  }
}

void Authenticator::ChargeBytes(absl::string_view authorization, bool node_certificate,
                                size_t bytes) const {
  if (byte_limiter_ == nullptr || bytes == 0) return;
  absl::StatusOr<Caller> caller = IdentifyCaller(authorization, node_certificate);
  if (!caller.ok() || caller->role == Role::kNode) return;
  byte_limiter_->Charge(caller->principal, static_cast<double>(bytes));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(
    AuthenticatorOptions options) {
  if (options.tokens_file.empty() && options.cluster_secret.empty() &&
      !options.node_certificates) {
    return absl::InvalidArgumentError(
        "auth: needs a tokens file, a cluster secret or node certificates");
  }
  auto auth = std::unique_ptr<Authenticator>(new Authenticator(std::move(options)));
  if (!auth->options_.tokens_file.empty()) {
    absl::Status loaded = auth->ReloadIfChanged();
    if (!loaded.ok()) return loaded;
    if (auth->options_.reload_interval > absl::ZeroDuration()) {
      auth->poller_ = std::thread([a = auth.get()] { a->PollLoop(); });
    }
  }
  return auth;
}

Authenticator::~Authenticator() {
  stop_.Notify();
  if (poller_.joinable()) poller_.join();
}

void Authenticator::PollLoop() {
  std::string last_error;
  while (!stop_.WaitForNotificationWithTimeout(options_.reload_interval)) {
    absl::Status s = ReloadIfChanged();
    // Log a bad file once, not every second until it is fixed.
    if (!s.ok() && s.ToString() != last_error) {
      CELLAR_LOG(ERROR) << s.message() << " (keeping the previous " << token_count()
                        << " tokens)";
    }
    last_error = s.ok() ? "" : s.ToString();
  }
}

absl::Status Authenticator::ReloadIfChanged() {
  absl::StatusOr<std::string> stamp = FileStamp(options_.tokens_file);
  if (!stamp.ok()) return stamp.status();
  {
    absl::MutexLock lock(&mu_);
    if (*stamp == file_stamp_) return absl::OkStatus();
  }
  std::ifstream in(options_.tokens_file, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("auth_tokens_file: cannot read '", options_.tokens_file, "'"));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  absl::StatusOr<TokenTable> table = ParseTokensFile(contents.str());
  absl::MutexLock lock(&mu_);
  const bool first = file_stamp_.empty();
  // A bad file is not retried until it changes again.
  file_stamp_ = *stamp;
  if (!table.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth_tokens_file '", options_.tokens_file, "': ", table.status().message()));
  }
  tokens_ = *std::move(table);
  if (!first) {
    CELLAR_LOG(INFO) << "auth: reloaded " << tokens_.size() << " tokens from "
                     << options_.tokens_file;
  }
  return absl::OkStatus();
}

size_t Authenticator::token_count() const {
  absl::MutexLock lock(&mu_);
  return tokens_.size();
}

std::vector<TokenEntry> Authenticator::FileTokens() const {
  std::vector<TokenEntry> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : tokens_) out.push_back(entry);
  }
  std::sort(out.begin(), out.end(),
            [](const TokenEntry& a, const TokenEntry& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<Role> Authenticator::Identify(absl::string_view authorization,
                                             bool node_certificate) const {
  absl::StatusOr<Caller> caller = IdentifyCaller(authorization, node_certificate);
  if (!caller.ok()) return caller.status();
  return caller->role;
}

absl::StatusOr<Authenticator::Caller> Authenticator::IdentifyCaller(
    absl::string_view authorization, bool node_certificate) const {
  if (authorization.empty()) {
    if (node_certificate && options_.node_certificates) return Caller{Role::kNode, "node"};
    return absl::UnauthenticatedError(
        "no credentials: this server requires 'authorization: Bearer <token>' "
        "metadata (docs/security.md)");
  }
  static constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "authorization: expected 'Bearer <token>'");
  }
  const absl::string_view bearer =
      absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  if (!node_bearer_.empty() && ConstantTimeEquals(bearer, node_bearer_)) {
    return Caller{Role::kNode, "node"};
  }
  absl::StatusOr<ParsedToken> token = ParseToken(bearer);
  if (!token.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "authorization: not a valid token or cluster node credential (",
        token.status().message(), ")"));
  }
  // Hash outside the lock; the id is not secret, the hash comparison is
  // constant-time.
  const std::string hash = Sha256Hex(token->secret);
  {
    absl::MutexLock lock(&mu_);
    auto it = tokens_.find(token->id);
    if (it != tokens_.end() && ConstantTimeEquals(hash, it->second.secret_sha256)) {
      return Caller{it->second.role, std::string(token->id)};
    }
  }
  Role role;
  switch (cluster_tokens_->Lookup(token->id, hash, &role)) {
    case ClusterTokens::Match::kValid:
      return Caller{role, std::string(token->id)};
    case ClusterTokens::Match::kRevoked:
      return absl::UnauthenticatedError(
          absl::StrCat("authorization: token ", token->id, " was revoked"));
    case ClusterTokens::Match::kUnknown:
      break;
  }
  return absl::UnauthenticatedError(
      absl::StrCat("authorization: token ", token->id, " is unknown or revoked"));
}

absl::StatusOr<std::optional<Role>> Authenticator::Authorize(
    absl::string_view full_method, absl::string_view authorization,
    bool node_certificate) const {
  if (IsHealthMethod(full_method)) return std::optional<Role>();
  const bool reflection = IsReflectionMethod(full_method);
  if (reflection && options_.open_reflection) return std::optional<Role>();
  absl::StatusOr<Caller> caller = IdentifyCaller(authorization, node_certificate);
  if (!caller.ok()) return caller.status();
  const absl::StatusOr<Role> role = caller->role;
  if (caller->role != Role::kNode && !ReleasesCallerState(full_method)) {
    if (limiter_ != nullptr) {
      if (absl::Status admitted = limiter_->Admit(caller->principal); !admitted.ok()) {
        return admitted;
      }
    }
    if (byte_limiter_ != nullptr) {
      if (absl::Status admitted = byte_limiter_->AdmitIfNotInDebt(caller->principal);
          !admitted.ok()) {
        return admitted;
      }
    }
  }
  if (reflection) return std::optional<Role>(*role);
  const auto& table = MethodRoles();
  auto it = table.find(full_method);
  if (it == table.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat(full_method, ": not callable by any role"));
  }
  if (!HasRole(*role, it->second)) {
    return absl::PermissionDeniedError(absl::StrCat(
        full_method, " needs role ", RoleSetName(it->second),
        (it->second & Roles(Role::kReadonly)) != 0 ? " (admin includes readonly)" : "",
        (it->second & Roles(Role::kReader)) != 0 ? " (client includes reader)" : "",
        "; the caller has role ", RoleName(*role)));
  }
  return std::optional<Role>(*role);
}

}  // namespace cellar::common
