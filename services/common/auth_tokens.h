#ifndef CELLAR_SERVICES_COMMON_AUTH_TOKENS_H_
#define CELLAR_SERVICES_COMMON_AUTH_TOKENS_H_

// Roles, bearer tokens and the tokens file (docs/security.md).
//
// A token is "cellar_<id>_<secret>": id = 8 hex chars (names the token in
// the file and in logs), secret = 32 random bytes as 64 hex chars. The
// tokens file holds one line per token, "<id> <role> <sha256hex> <name>",
// where sha256hex is SHA-256 of the secret's 64 hex chars: the file never
// holds a usable secret. '#' starts a comment line; blank lines are skipped.
//
// The `node` role is not in the file: it belongs to whoever knows the
// cluster secret, as the bearer NodeBearer(secret).
//
// Thread-safe (pure functions and immutable values).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellar::common {

enum class Role : uint8_t {
  kClient = 1,    // the data path (client library)
  kReadonly = 2,  // admin reads
  kAdmin = 4,     // every admin action (implies readonly)
  kNode = 8,      // node-to-node calls (cluster secret holders)
  kReader = 16,   // the read half of the data path (client implies reader)
};

// A set of roles (bitwise or of Role values).
using RoleSet = uint8_t;
inline constexpr RoleSet Roles(Role role) { return static_cast<RoleSet>(role); }
inline constexpr RoleSet operator|(Role a, Role b) { return Roles(a) | Roles(b); }
inline constexpr RoleSet operator|(RoleSet a, Role b) { return a | Roles(b); }

// "client", "reader", "readonly", "admin", "node".
const char* RoleName(Role role);
// "client or node" (in the order above); "no role" for an empty set.
std::string RoleSetName(RoleSet roles);
// INVALID_ARGUMENT naming the accepted roles for anything else.
absl::StatusOr<Role> ParseRole(absl::string_view name);

// Lower-case hex of SHA-256(data).
std::string Sha256Hex(absl::string_view data);

// Equal contents, in time independent of where they differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// The bearer that grants `node`: hex HMAC-SHA256(cluster_secret,
// "cellar-node-v1"). Every process holding the secret derives the same.
std::string NodeBearer(absl::string_view cluster_secret);

// A new cluster secret: 32 bytes from the OpenSSL CSPRNG as 64 hex chars.
std::string NewClusterSecret();

// Reads a cluster secret file: its contents without surrounding whitespace.
// INVALID_ARGUMENT if shorter than 16 bytes (too weak to be a secret),
// NOT_FOUND / PERMISSION_DENIED if it cannot be read.
absl::StatusOr<std::string> ReadClusterSecret(const std::string& path);

// Splits "cellar_<id>_<secret>"; INVALID_ARGUMENT if malformed.
struct ParsedToken {
  std::string id;
  std::string secret;
};
absl::StatusOr<ParsedToken> ParseToken(absl::string_view token);

// One line of the tokens file.
struct TokenEntry {
  std::string id;
  Role role;
  std::string secret_sha256;  // lower-case hex
  std::string name;
};

// The tokens of a tokens file, by id.
using TokenTable = absl::flat_hash_map<std::string, TokenEntry>;

// Parses a tokens file. INVALID_ARGUMENT naming the line and the field on
// the first bad line (bad id, role, hash, missing name, duplicate id).
absl::StatusOr<TokenTable> ParseTokensFile(absl::string_view contents);

// A fresh token (secret from the OpenSSL CSPRNG) and its tokens-file line
// (with a trailing newline). The token is shown once; only the line is kept.
// INVALID_ARGUMENT for the node role (it comes from the cluster secret) or
// an empty name or one with a line break.
struct NewToken {
  std::string token;
  std::string line;
};
absl::StatusOr<NewToken> MakeToken(Role role, absl::string_view name);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_AUTH_TOKENS_H_
