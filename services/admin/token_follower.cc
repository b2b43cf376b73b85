#include "services/admin/token_follower.h"

#include <utility>

#include "services/common/logging.h"

namespace cellar::admin {

TokenFollower::TokenFollower(Fetch fetch, std::shared_ptr<common::ClusterTokens> sink,
                             absl::Duration interval)
    : fetch_(std::move(fetch)), sink_(std::move(sink)), interval_(interval) {}

TokenFollower::~TokenFollower() { Stop(); }

void TokenFollower::Start() {
  thread_ = std::thread([this] {
    absl::StatusCode last = absl::StatusCode::kOk;
    while (true) {
      const absl::Status s = Refresh();
      // Log a change of state, not every poll of a master that is down.
      if (s.code() != last && !s.ok() && s.code() != absl::StatusCode::kUnimplemented) {
        CELLAR_LOG(WARNING) << "cannot follow the cluster token table: " << s;
      }
      last = s.code();
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) return;
    }
  });
}

void TokenFollower::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status TokenFollower::Refresh() {
  absl::StatusOr<cellar::v1::GetTokenTableResponse> answer = fetch_(sink_->version());
  if (!answer.ok()) return answer.status();
  if (!answer->changed()) return absl::OkStatus();
  if (absl::Status s = common::ValidateTokenTable(answer->table()); !s.ok()) return s;
  if (sink_->Replace(answer->table())) {
    CELLAR_LOG(INFO) << "cluster token table version " << answer->table().version() << " ("
                     << answer->table().tokens_size() << " token(s)) in force";
  }
  return absl::OkStatus();
}

}  // namespace cellar::admin
