#include "tools/credentials/throwaway_credentials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/auth_tokens.h"
#include "services/common/tls_config.h"
#include "services/common/tls_files.h"

namespace cellar::tools {
namespace {

// Secrets: readable by the owner only, from the start.
absl::Status WriteSecret(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", path));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

absl::Status WriteThrowawayAuth(const std::string& dir, absl::string_view who) {
  absl::Status s = WriteSecret(dir + "/cluster-secret", common::NewClusterSecret());
  if (!s.ok()) return s;
  s = WriteSecret(dir + "/tokens",
                  absl::StrCat("# written by ", who, " (docs/security.md): id role sha256 name\n"));
  if (!s.ok()) return s;
  return AddMissingThrowawayTokens(dir, who);
}

absl::Status AddMissingThrowawayTokens(const std::string& dir, absl::string_view who) {
  for (common::Role role : {common::Role::kClient, common::Role::kReader, common::Role::kReadonly,
                            common::Role::kAdmin}) {
    const std::string token_file = absl::StrCat(dir, "/", common::RoleName(role), ".token");
    if (Exists(token_file)) continue;
    absl::StatusOr<common::NewToken> token =
        common::MakeToken(role, absl::StrCat(who, " ", common::RoleName(role)));
    if (!token.ok()) return token.status();
    // The line first: a token file without its line would never be replaced.
    const int fd = ::open((dir + "/tokens").c_str(), O_WRONLY | O_APPEND);
    if (fd < 0) return absl::InternalError(absl::StrCat("cannot append to ", dir, "/tokens"));
    const bool ok =
        ::write(fd, token->line.data(), token->line.size()) ==
        static_cast<ssize_t>(token->line.size());
    ::close(fd);
    if (!ok) return absl::InternalError(absl::StrCat("cannot append to ", dir, "/tokens"));
    absl::Status s = WriteSecret(token_file, token->token + "\n");
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status WriteThrowawayTls(const std::string& dir, const std::vector<std::string>& sans) {
  const std::string tls = dir + "/tls";
  if (::mkdir(tls.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("cannot create ", tls));
  }
  absl::StatusOr<common::CertificateFiles> ca = common::MakeCertificateAuthority(tls, "ca");
  if (!ca.ok()) return ca.status();
  std::vector<std::string> node_sans = {"IP:127.0.0.1", "DNS:localhost",
                                        absl::StrCat("URI:", common::kNodeIdentityUri)};
  node_sans.insert(node_sans.end(), sans.begin(), sans.end());
  absl::Status s = common::IssueCertificate(*ca, tls, "node", node_sans).status();
  if (!s.ok()) return s;
  return common::IssueCertificate(*ca, tls, "client", {"DNS:cellar-client"}).status();
}

bool HasThrowawayAuth(const std::string& dir) {
  return Exists(dir + "/tokens") && Exists(dir + "/cluster-secret") &&
         Exists(dir + "/admin.token");
}

bool HasThrowawayTls(const std::string& dir) {
  return Exists(dir + "/tls/ca.pem") && Exists(dir + "/tls/node.pem") &&
         Exists(dir + "/tls/node.key");
}

absl::StatusOr<common::AuthSetup> ThrowawayAuthSetup(const std::string& dir) {
  common::AuthSetup setup;
  common::TlsServerConfig server;
  server.cert_file = dir + "/tls/node.pem";
  server.key_file = dir + "/tls/node.key";
  server.client_ca_file = dir + "/tls/ca.pem";
  setup.tls_server = server;
  common::TlsClientConfig client;
  client.ca_file = dir + "/tls/ca.pem";
  client.cert_file = server.cert_file;
  client.key_file = server.key_file;
  setup.tls_client = client;
  common::AuthenticatorOptions options;
  options.tokens_file = dir + "/tokens";
  options.node_certificates = true;
  absl::StatusOr<std::string> secret = common::ReadClusterSecret(dir + "/cluster-secret");
  if (!secret.ok()) return secret.status();
  options.cluster_secret = *secret;
  setup.node_bearer = common::NodeBearer(*secret);
  absl::StatusOr<std::unique_ptr<common::Authenticator>> auth =
      common::Authenticator::Create(std::move(options));
  if (!auth.ok()) return auth.status();
  setup.authenticator = *std::move(auth);
  return setup;
}

}  // namespace cellar::tools
