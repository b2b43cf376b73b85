#include "services/common/cluster_tokens.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"

namespace cellar::common {
namespace {

bool IsLowerHex(absl::string_view s, size_t size) {
  if (s.size() != size) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

void SetTime(int64_t unix_ms, google::protobuf::Timestamp* out) {
  out->set_seconds(unix_ms / 1000);
  out->set_nanos(static_cast<int32_t>(unix_ms % 1000) * 1000000);
}

}  // namespace

cellar::v1::TokenInfo ClusterTokenInfo(const cellar::v1::ClusterToken& token) {
  cellar::v1::TokenInfo info;
  info.set_id(token.id());
  info.set_name(token.name());
  info.set_role(token.role());
  info.set_source(cellar::v1::TOKEN_SOURCE_CLUSTER);
  SetTime(token.created_unix_ms(), info.mutable_created_time());
  info.set_revoked(token.revoked());
  if (token.revoked()) SetTime(token.revoked_unix_ms(), info.mutable_revoked_time());
  return info;
}

cellar::v1::TokenInfo FileTokenInfo(const TokenEntry& entry) {
  cellar::v1::TokenInfo info;
  info.set_id(entry.id);
  info.set_name(entry.name);
  info.set_role(TokenRoleToProto(entry.role));
  info.set_source(cellar::v1::TOKEN_SOURCE_FILE);
  return info;
}

absl::StatusOr<Role> TokenRoleFromProto(cellar::v1::TokenRole role) {
  switch (role) {
    case cellar::v1::TOKEN_ROLE_CLIENT:
      return Role::kClient;
    case cellar::v1::TOKEN_ROLE_READER:
      return Role::kReader;
    case cellar::v1::TOKEN_ROLE_READONLY:
      return Role::kReadonly;
    case cellar::v1::TOKEN_ROLE_ADMIN:
      return Role::kAdmin;
    case cellar::v1::TOKEN_ROLE_NODE:
      return absl::InvalidArgumentError(
          "role: TOKEN_ROLE_NODE is granted by the cluster secret or a node certificate, "
          "never by a token");
    default:
      return absl::InvalidArgumentError(
          "role: required: TOKEN_ROLE_CLIENT, TOKEN_ROLE_READER, TOKEN_ROLE_READONLY or "
          "TOKEN_ROLE_ADMIN");
  }
}

cellar::v1::TokenRole TokenRoleToProto(Role role) {
  switch (role) {
    case Role::kClient:
      return cellar::v1::TOKEN_ROLE_CLIENT;
    case Role::kReader:
      return cellar::v1::TOKEN_ROLE_READER;
    case Role::kReadonly:
      return cellar::v1::TOKEN_ROLE_READONLY;
    case Role::kAdmin:
      return cellar::v1::TOKEN_ROLE_ADMIN;
    case Role::kNode:
      return cellar::v1::TOKEN_ROLE_NODE;
  }
  return cellar::v1::TOKEN_ROLE_UNSPECIFIED;
}

absl::Status ValidateTokenName(absl::string_view name) {
  if (name.size() > kMaxTokenNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name: ", name.size(), " bytes; at most ", kMaxTokenNameBytes));
  }
  if (name.find_first_not_of(' ') == absl::string_view::npos) {
    return absl::InvalidArgumentError("name: required (who or what the token is for)");
  }
  for (char c : name) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "name: printable ASCII characters only (no control characters or line breaks)");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTokenTable(const cellar::v1::ClusterTokenTable& table) {
  absl::flat_hash_set<std::string> seen;
  for (const cellar::v1::ClusterToken& token : table.tokens()) {
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("token table: token '", absl::CHexEscape(token.id().substr(0, 16)),
                       "': ", what));
    };
    if (!IsLowerHex(token.id(), 8)) return bad("id: not 8 lower-case hex characters");
    if (!seen.insert(token.id()).second) return bad("id: appears twice");
    if (absl::Status s = TokenRoleFromProto(token.role()).status(); !s.ok()) {
      return bad(s.message());
    }
    if (!IsLowerHex(token.secret_sha256(), 64)) {
      return bad("secret_sha256: not 64 lower-case hex characters");
    }
    if (absl::Status s = ValidateTokenName(token.name()); !s.ok()) return bad(s.message());
  }
  return absl::OkStatus();
}

cellar::v1::ClusterTokenTable MergeTokenTables(const cellar::v1::ClusterTokenTable& a,
                                               const cellar::v1::ClusterTokenTable& b) {
  std::map<std::string, cellar::v1::ClusterToken> by_id;
  for (const auto* table : {&a, &b}) {
    for (const cellar::v1::ClusterToken& token : table->tokens()) {
      auto [it, inserted] = by_id.emplace(token.id(), token);
      if (inserted || !token.revoked()) continue;
      cellar::v1::ClusterToken& kept = it->second;
      if (!kept.revoked() || token.revoked_unix_ms() < kept.revoked_unix_ms()) {
        kept.set_revoked(true);
        kept.set_revoked_unix_ms(token.revoked_unix_ms());
      }
    }
  }
  cellar::v1::ClusterTokenTable out;
  out.set_version(std::max(a.version(), b.version()));
  for (auto& [id, token] : by_id) *out.add_tokens() = std::move(token);
  return out;
}

bool SameTokens(const cellar::v1::ClusterTokenTable& a,
                const cellar::v1::ClusterTokenTable& b) {
  if (a.tokens_size() != b.tokens_size()) return false;
  for (int i = 0; i < a.tokens_size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a.tokens(i), b.tokens(i))) {
      return false;
    }
  }
  return true;
}

std::string EncodeTokenTable(const cellar::v1::ClusterTokenTable& table) {
  return absl::Base64Escape(table.SerializeAsString());
}

absl::StatusOr<cellar::v1::ClusterTokenTable> DecodeTokenTable(absl::string_view text) {
  std::string bytes;
  cellar::v1::ClusterTokenTable table;
  if (!absl::Base64Unescape(text, &bytes) || !table.ParseFromString(bytes)) {
    return absl::DataLossError("token table: the stored table does not decode");
  }
  return table;
}

bool ClusterTokens::Replace(const cellar::v1::ClusterTokenTable& table) {
  absl::flat_hash_map<std::string, Entry> by_id;
  for (const cellar::v1::ClusterToken& token : table.tokens()) {
    absl::StatusOr<Role> role = TokenRoleFromProto(token.role());
    if (!role.ok()) continue;  // validated by the caller; never grant a bad role
    by_id[token.id()] = Entry{*role, token.secret_sha256(), token.revoked()};
  }
  absl::MutexLock l(&mu_);
  if (table.version() <= table_.version()) return false;
  table_ = table;
  by_id_ = std::move(by_id);
  return true;
}

uint64_t ClusterTokens::version() const {
  absl::MutexLock l(&mu_);
  return table_.version();
}

cellar::v1::ClusterTokenTable ClusterTokens::table() const {
  absl::MutexLock l(&mu_);
  return table_;
}

ClusterTokens::Match ClusterTokens::Lookup(absl::string_view id,
                                           absl::string_view secret_sha256,
                                           Role* role) const {
  absl::MutexLock l(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || !ConstantTimeEquals(secret_sha256, it->second.secret_sha256)) {
    return Match::kUnknown;
  }
  if (it->second.revoked) return Match::kRevoked;
  *role = it->second.role;
  return Match::kValid;
}

}  // namespace cellar::common
