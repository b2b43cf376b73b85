#include "services/master/token_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/auth_tokens.h"
#include "services/common/cluster_tokens.h"
#include "services/common/logging.h"

namespace cellar::master {
namespace {

bool IsTokenId(absl::string_view id) {
  return id.size() == 8 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

cellar::v1::ClusterToken* Find(cellar::v1::ClusterTokenTable* table, absl::string_view id) {
  for (cellar::v1::ClusterToken& token : *table->mutable_tokens()) {
    if (token.id() == id) return &token;
  }
  return nullptr;
}

}  // namespace

TokenRegistry::TokenRegistry(const common::Clock* clock, OnChange on_change)
    : clock_(clock), on_change_(std::move(on_change)) {}

cellar::v1::ClusterTokenTable TokenRegistry::Table() const {
  absl::MutexLock l(&mu_);
  return table_;
}

absl::Status TokenRegistry::MergeReported(const cellar::v1::ClusterTokenTable& reported) {
  if (absl::Status s = common::ValidateTokenTable(reported); !s.ok()) return s;
  Adopt(reported);
  return absl::OkStatus();
}

void TokenRegistry::Adopt(const cellar::v1::ClusterTokenTable& table) {
  absl::MutexLock n(&notify_mu_);
  cellar::v1::ClusterTokenTable now;
  {
    absl::MutexLock l(&mu_);
    cellar::v1::ClusterTokenTable merged = common::MergeTokenTables(table_, table);
    const bool changed = !common::SameTokens(merged, table_);
    const bool other_differs = !common::SameTokens(merged, table);
    if (!changed && !(other_differs && table.version() >= table_.version()) &&
        table.version() <= table_.version()) {
      return;
    }
    if (changed && !other_differs) {
      merged.set_version(std::max(table_.version(), table.version()));
      if (merged.version() == table_.version()) merged.set_version(table_.version() + 1);
    } else if (changed || other_differs) {
      merged.set_version(std::max(table_.version(), table.version()) + 1);
    }
    // (Neither: the same tokens at a higher version; keep that version.)
    table_ = std::move(merged);
    now = table_;
  }
  CELLAR_LOG(INFO) << "cluster token table: version " << now.version() << ", "
                   << now.tokens_size() << " token(s)";
  if (on_change_) on_change_(now);
}

absl::StatusOr<TokenRegistry::Created> TokenRegistry::Create(
    absl::string_view name, cellar::v1::TokenRole role,
    const std::function<bool(absl::string_view)>& id_taken, const Persist& persist) {
  absl::StatusOr<common::Role> parsed_role = common::TokenRoleFromProto(role);
  if (!parsed_role.ok()) return parsed_role.status();
  if (absl::Status s = common::ValidateTokenName(name); !s.ok()) return s;
  absl::MutexLock change(&change_mu_);
  cellar::v1::ClusterTokenTable next = Table();
  Created created;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<common::NewToken> made = common::MakeToken(*parsed_role, name);
    if (!made.ok()) return made.status();
    absl::StatusOr<common::ParsedToken> parsed = common::ParseToken(made->token);
    if (!parsed.ok()) return parsed.status();
    if (Find(&next, parsed->id) != nullptr || (id_taken && id_taken(parsed->id))) {
      // 2^32 ids: a collision is rare; an id is never reused.
      if (attempt < 16) continue;
      return absl::InternalError("token: no free id found; retry");
    }
    created.token = made->token;
    created.entry.set_id(parsed->id);
    created.entry.set_name(std::string(name));
    created.entry.set_role(role);
    created.entry.set_secret_sha256(common::Sha256Hex(parsed->secret));
    created.entry.set_created_unix_ms(absl::ToUnixMillis(clock_->Now()));
    break;
  }
  *next.add_tokens() = created.entry;
  next = common::MergeTokenTables(next, cellar::v1::ClusterTokenTable());  // sorts by id
  next.set_version(next.version() + 1);
  if (absl::Status s = persist(next); !s.ok()) return s;
  Adopt(next);
  CELLAR_LOG(INFO) << "token " << created.entry.id() << " created (role "
                   << cellar::v1::TokenRole_Name(role) << ")";
  return created;
}

absl::StatusOr<cellar::v1::ClusterToken> TokenRegistry::Revoke(absl::string_view id,
                                                               const Persist& persist) {
  if (!IsTokenId(id)) {
    return absl::InvalidArgumentError("id: expected 8 lower-case hex characters");
  }
  absl::MutexLock change(&change_mu_);
  cellar::v1::ClusterTokenTable next = Table();
  cellar::v1::ClusterToken* token = Find(&next, id);
  if (token == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("token ", id, " is not in the cluster token table"));
  }
  if (token->revoked()) return *token;
  token->set_revoked(true);
  token->set_revoked_unix_ms(absl::ToUnixMillis(clock_->Now()));
  const cellar::v1::ClusterToken revoked = *token;
  next.set_version(next.version() + 1);
  if (absl::Status s = persist(next); !s.ok()) return s;
  Adopt(next);
  CELLAR_LOG(INFO) << "token " << id << " revoked";
  return revoked;
}

}  // namespace cellar::master
