#include "services/master/election.h"

#include <utility>

#include "absl/status/status.h"

namespace cellar::master {

SingleMasterElection::SingleMasterElection(uint64_t epoch, std::string address)
    : epoch_(epoch), address_(std::move(address)) {}

void SingleMasterElection::SetLostCallback(LostCallback) {
  // A single master never loses its primacy.
}

absl::StatusOr<uint64_t> SingleMasterElection::Campaign(absl::Duration) {
  absl::MutexLock l(&mu_);
  if (resigned_) return absl::CancelledError("resigned");
  if (primary_) return absl::FailedPreconditionError("already the primary");
  primary_ = true;
  return epoch_;
}

bool SingleMasterElection::IsPrimary() const {
  absl::MutexLock l(&mu_);
  return primary_;
}

std::string SingleMasterElection::PrimaryAddress() const {
  absl::MutexLock l(&mu_);
  return address_;
}

void SingleMasterElection::Resign() {
  absl::MutexLock l(&mu_);
  primary_ = false;
  resigned_ = true;
}

void SingleMasterElection::set_address(std::string address) {
  absl::MutexLock l(&mu_);
  address_ = std::move(address);
}

}  // namespace cellar::master
