#include "services/common/auth_tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/logging.h"

namespace cellar::common {
namespace {

constexpr size_t kIdChars = 8;
constexpr size_t kSecretChars = 64;
constexpr size_t kSha256HexChars = 64;
constexpr size_t kMinClusterSecret = 16;

bool IsLowerHex(absl::string_view s, size_t size) {
  if (s.size() != size) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()),
                 static_cast<int>(raw.size())) != 1) {
    // No safe fallback for a credential.
    CELLAR_LOG(FATAL) << "RAND_bytes failed: cannot make a token";
  }
  return absl::BytesToHexString(raw);
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kReader:
      return "reader";
    case Role::kReadonly:
      return "readonly";
    case Role::kAdmin:
      return "admin";
    case Role::kNode:
      return "node";
  }
  return "unknown";
}

std::string RoleSetName(RoleSet roles) {
  std::string out;
  for (Role role : {Role::kClient, Role::kReader, Role::kReadonly, Role::kAdmin, Role::kNode}) {
    if ((roles & Roles(role)) == 0) continue;
    absl::StrAppend(&out, out.empty() ? "" : " or ", RoleName(role));
  }
  return out.empty() ? "no role" : out;
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role role : {Role::kClient, Role::kReader, Role::kReadonly, Role::kAdmin, Role::kNode}) {
    if (name == RoleName(role)) return role;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "role: '", name, "' is not one of client, reader, readonly, admin, node"));
}

std::string Sha256Hex(absl::string_view data) {
  // Every authenticated call hashes its token (twice on some master rpcs).
  // OpenSSL 3's one-shot SHA256() looks the implementation up on every call
  // (EVP_Q_digest), about as costly as the hash itself: fetch it once.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (kSha256 == nullptr ||
      EVP_Digest(data.data(), data.size(), digest, &length, kSha256, nullptr) != 1) {
    // No safe fallback for a credential check.
    CELLAR_LOG(FATAL) << "SHA-256 unavailable";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), length));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // The length of a bearer is not a secret (every token has the same one).
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string NodeBearer(absl::string_view cluster_secret) {
  static constexpr absl::string_view kLabel = "cellar-node-v1";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), cluster_secret.data(), static_cast<int>(cluster_secret.size()),
       reinterpret_cast<const unsigned char*>(kLabel.data()), kLabel.size(), digest,
       &length);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), length));
}

std::string NewClusterSecret() { return RandomHex(32); }

absl::StatusOr<std::string> ReadClusterSecret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cluster_secret_file: cannot read '", path, "'"));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  std::string secret(absl::StripAsciiWhitespace(contents.str()));
  if (secret.size() < kMinClusterSecret) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cluster_secret_file: '", path, "' holds ", secret.size(),
        " bytes; a cluster secret needs at least ", kMinClusterSecret,
        " (e.g. `openssl rand -hex 32`)"));
  }
  return secret;
}

absl::StatusOr<ParsedToken> ParseToken(absl::string_view token) {
  // Never put the token itself in an error: it may be a mistyped secret.
  if (!absl::ConsumePrefix(&token, "cellar_")) {
    return absl::InvalidArgumentError("token: does not start with 'cellar_'");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(token, '_');
  if (parts.size() != 2 || !IsLowerHex(parts[0], kIdChars) ||
      !IsLowerHex(parts[1], kSecretChars)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token: expected cellar_<", kIdChars, " hex id>_<", kSecretChars,
        " hex secret>"));
  }
  return ParsedToken{std::string(parts[0]), std::string(parts[1])};
}

absl::StatusOr<TokenTable> ParseTokensFile(absl::string_view contents) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file line ", line_number, ": ", what));
    };
    // id role sha256hex name (the name is the rest of the line).
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::MaxSplits(absl::ByAnyChar(" \t"), 3),
                       absl::SkipEmpty());
    if (fields.size() < 4) {
      return bad("expected '<id> <role> <sha256hex> <name>'");
    }
    TokenEntry entry;
    if (!IsLowerHex(fields[0], kIdChars)) {
      return bad(absl::StrCat("id: '", fields[0], "' is not ", kIdChars,
                              " lower-case hex chars"));
    }
    entry.id = std::string(fields[0]);
    absl::StatusOr<Role> role = ParseRole(fields[1]);
    if (!role.ok()) return bad(role.status().message());
    if (*role == Role::kNode) {
      return bad("role: node is granted by the cluster secret, not by a token");
    }
    entry.role = *role;
    if (!IsLowerHex(fields[2], kSha256HexChars)) {
      return bad(absl::StrCat("sha256hex: not ", kSha256HexChars,
                              " lower-case hex chars"));
    }
    entry.secret_sha256 = std::string(fields[2]);
    entry.name = std::string(absl::StripAsciiWhitespace(fields[3]));
    if (table.contains(entry.id)) {
      return bad(absl::StrCat("id: ", entry.id, " appears twice"));
    }
    table.emplace(entry.id, std::move(entry));
  }
  return table;
}

absl::StatusOr<NewToken> MakeToken(Role role, absl::string_view name) {
  if (role == Role::kNode) {
    return absl::InvalidArgumentError(
        "role: node is granted by the cluster secret, not by a token");
  }
  name = absl::StripAsciiWhitespace(name);
  if (name.empty() || name.find_first_of("\r\n") != absl::string_view::npos) {
    return absl::InvalidArgumentError("name: must be one non-empty line");
  }
  const std::string id = RandomHex(kIdChars / 2);
  const std::string secret = RandomHex(kSecretChars / 2);
  NewToken out;
  out.token = absl::StrCat("cellar_", id, "_", secret);
  out.line = absl::StrCat(id, " ", RoleName(role), " ", Sha256Hex(secret), " ",
                          name, "\n");
  return out;
}

}  // namespace cellar::common
