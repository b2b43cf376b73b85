#ifndef CELLAR_SERVICES_ADMIN_TOKEN_FOLLOWER_H_
#define CELLAR_SERVICES_ADMIN_TOKEN_FOLLOWER_H_

// Keeps the admin's accepted cluster tokens (Authenticator::cluster_tokens)
// equal to its default cluster's master table (docs/security.md, "Cluster
// tokens"): asks Master.GetTokenTable every `interval`, and at once after
// the admin changed the table (Refresh). A master that does not answer
// leaves the last table in force. Thread-safe.

#include <functional>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/cluster_tokens.h"

namespace cellar::admin {

class TokenFollower {
 public:
  // Master.GetTokenTable(known_version) on the default cluster.
  using Fetch =
      std::function<absl::StatusOr<cellar::v1::GetTokenTableResponse>(uint64_t known_version)>;

  // `sink` receives every newer table. Default interval 1 s.
  TokenFollower(Fetch fetch, std::shared_ptr<common::ClusterTokens> sink,
                absl::Duration interval = absl::Seconds(1));
  ~TokenFollower();  // Stop()

  // Starts the polling thread. Call once.
  void Start();
  // Stops it. Idempotent.
  void Stop();
  // Fetches now (on the caller's thread); the fetch error, if any.
  absl::Status Refresh();

 private:
  const Fetch fetch_;
  const std::shared_ptr<common::ClusterTokens> sink_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_TOKEN_FOLLOWER_H_
