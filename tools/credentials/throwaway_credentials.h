#ifndef CELLAR_TOOLS_CREDENTIALS_THROWAWAY_CREDENTIALS_H_
#define CELLAR_TOOLS_CREDENTIALS_THROWAWAY_CREDENTIALS_H_

// Throwaway credentials for a cluster on one machine (tools/cluster up
// --auth/--tls, tools/cellar local --secure), written once into a
// directory and reused on the next start:
//   <dir>/tokens                    the tokens file (hashed: id role sha256 name)
//   <dir>/{client,reader,readonly,admin}.token   one token per role, in clear
//   <dir>/cluster-secret            the cluster secret (role node)
//   <dir>/tls/ca.{pem,key}          a CA (WriteThrowawayTls)
//   <dir>/tls/node.{pem,key}        the nodes' certificate (node identity)
//   <dir>/tls/client.{pem,key}      a client certificate (no node identity)
// Secrets are mode 0600 from their creation. Not for production: the CA
// key sits next to the certificates (docs/security.md says how to make
// real ones).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/common/authenticator.h"

namespace cellar::tools {

// Writes the tokens, the per-role token files and the cluster secret into
// `dir` (which must exist); `who` names the tokens ("tools/cluster").
absl::Status WriteThrowawayAuth(const std::string& dir, absl::string_view who);

// Adds a token for each role whose <dir>/<role>.token is missing (a
// directory written before that role existed) and its line to
// <dir>/tokens; the other tokens stay valid.
absl::Status AddMissingThrowawayTokens(const std::string& dir, absl::string_view who);

// Writes <dir>/tls/: a CA, the node certificate (valid for 127.0.0.1,
// localhost and the extra `sans`, e.g. "IP:10.0.0.5"; carries the node
// identity URI) and a client certificate.
absl::Status WriteThrowawayTls(const std::string& dir, const std::vector<std::string>& sans = {});

// Whether `dir` already holds what WriteThrowawayAuth (resp. Tls) writes.
bool HasThrowawayAuth(const std::string& dir);
bool HasThrowawayTls(const std::string& dir);

// The authentication of a process of that cluster: tokens file, cluster
// secret, TLS served with the node certificate (client certificates
// verified against the CA, optional), TLS to the other nodes.
absl::StatusOr<common::AuthSetup> ThrowawayAuthSetup(const std::string& dir);

}  // namespace cellar::tools

#endif  // CELLAR_TOOLS_CREDENTIALS_THROWAWAY_CREDENTIALS_H_
