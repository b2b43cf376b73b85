#ifndef CELLAR_SERVICES_COMMON_CLUSTER_TOKENS_H_
#define CELLAR_SERVICES_COMMON_CLUSTER_TOKENS_H_

// The cluster token table (docs/security.md, "Cluster tokens"): tokens
// created through the admin API, owned by the primary master, persisted on
// the storages and followed by every process. Tokens are only ever added
// or revoked (never removed), so two tables merge without conflict: the
// union by id, a revocation winning (MergeTokenTables).
//
// ClusterTokens is what one process accepts from that table; the
// Authenticator consults it after its tokens file. Thread-safe.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/common.pb.h"
#include "services/common/auth_tokens.h"

namespace cellar::common {

// At most this many bytes in a token's name.
inline constexpr size_t kMaxTokenNameBytes = 200;

// The role a token may grant: CLIENT, READONLY or ADMIN. INVALID_ARGUMENT
// for UNSPECIFIED (an unset field must not mean a role) and for NODE (node
// identity comes from the cluster secret or a certificate).
absl::StatusOr<Role> TokenRoleFromProto(cellar::v1::TokenRole role);
cellar::v1::TokenRole TokenRoleToProto(Role role);

// INVALID_ARGUMENT unless `name` is 1..kMaxTokenNameBytes printable ASCII
// characters (space included) with something other than spaces.
absl::Status ValidateTokenName(absl::string_view name);

// INVALID_ARGUMENT naming the token and field if a token of `table` is
// malformed (id, role, hash, name) or an id appears twice.
absl::Status ValidateTokenTable(const cellar::v1::ClusterTokenTable& table);

// The union of `a` and `b` by id, sorted by id; a token revoked in either
// is revoked (with the earliest revocation time). The version is
// max(a.version, b.version); the caller decides whether a change needs a
// new one (SameTokens).
cellar::v1::ClusterTokenTable MergeTokenTables(const cellar::v1::ClusterTokenTable& a,
                                               const cellar::v1::ClusterTokenTable& b);

// Same tokens (ignoring the versions).
bool SameTokens(const cellar::v1::ClusterTokenTable& a,
                const cellar::v1::ClusterTokenTable& b);

// The table encoded for a storage's config (base64 of the proto), and
// back (DATA_LOSS if it does not decode).
std::string EncodeTokenTable(const cellar::v1::ClusterTokenTable& table);
absl::StatusOr<cellar::v1::ClusterTokenTable> DecodeTokenTable(absl::string_view text);

// A token as operators see it (never its hash): from the cluster table,
// or a line of a tokens file.
cellar::v1::TokenInfo ClusterTokenInfo(const cellar::v1::ClusterToken& token);
cellar::v1::TokenInfo FileTokenInfo(const TokenEntry& entry);

class ClusterTokens {
 public:
  // What a (token id, secret hash) is in the table.
  enum class Match { kUnknown, kValid, kRevoked };

  // Adopts `table` (assumed valid: ValidateTokenTable) if its version is
  // above the current one; false if it kept the current one.
  bool Replace(const cellar::v1::ClusterTokenTable& table);

  // The version held (0: none yet).
  uint64_t version() const;

  // The table held.
  cellar::v1::ClusterTokenTable table() const;

  // The token `id` if `secret_sha256` is its hash (constant-time compare):
  // kValid with its role, kRevoked, or kUnknown (no such id, or another
  // secret).
  Match Lookup(absl::string_view id, absl::string_view secret_sha256, Role* role) const;

 private:
  struct Entry {
    Role role;
    std::string secret_sha256;
    bool revoked;
  };
  mutable absl::Mutex mu_;
  cellar::v1::ClusterTokenTable table_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Entry> by_id_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_CLUSTER_TOKENS_H_
