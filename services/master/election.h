#ifndef CELLAR_SERVICES_MASTER_ELECTION_H_
#define CELLAR_SERVICES_MASTER_ELECTION_H_

// How a master becomes the primary, as a domain interface (no gRPC types).
//
// An Election hands out *terms*: Campaign() returns once this master is
// the primary, with the term's epoch. Epochs only grow: a later term of
// any master has a higher epoch than every earlier term, so storages,
// which refuse calls carrying an epoch older than the highest they have
// seen, fence a deposed primary (docs/failover.md).
//
// Safety contract of every implementation: IsPrimary() is true only while
// no other master can be primary; it turns false (and the lost callback
// runs) *before* another master can win, never after.
//
//   election->SetLostCallback([&] { /* stop acting as primary now */ });
//   CELLAR_ASSIGN_OR_RETURN(uint64_t epoch, election->Campaign(absl::InfiniteDuration()));
//   ... serve with `epoch` while election->IsPrimary() ...
//   election->Resign();
//
// Implementations: SingleMasterElection (below; one master, always
// primary) and PostgresLeaseElection (pg_lease.h; a lease row in a shared
// PostgreSQL database). Implementations are thread-safe.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellar::master {

class Election {
 public:
  // Called once per term, on a thread of the election, when primacy is
  // lost without Resign() (lease not renewed in time, taken over). Must
  // not block for long and must not call Resign().
  using LostCallback = std::function<void()>;

  virtual ~Election() = default;

  // Set before the first Campaign(); replaces any earlier callback.
  virtual void SetLostCallback(LostCallback callback) = 0;

  // Blocks until this master is the primary and returns the new term's
  // epoch; tries at once, then keeps retrying (implementation's pace)
  // until `timeout`. DEADLINE_EXCEEDED when `timeout` passed first (a
  // zero timeout makes exactly one attempt); CANCELLED after Resign();
  // FAILED_PRECONDITION if already primary.
  virtual absl::StatusOr<uint64_t> Campaign(absl::Duration timeout) = 0;

  // True while this master holds the current term (see the safety
  // contract above). Cheap: callers check it on every request.
  virtual bool IsPrimary() const = 0;

  // The epoch of the current term, or of the last one held (0 if none).
  virtual uint64_t epoch() const = 0;

  // True when epoch() comes from durable, monotonic state shared by every
  // master (a lease row), so it is the term's epoch as is. False when it
  // is only a provisional value (SingleMasterElection: the start time):
  // the term's epoch is then raised above every epoch the storages report
  // (ClusterOptions::epoch_is_durable).
  virtual bool EpochIsDurable() const { return true; }

  // The address of the primary as last seen ("" if unknown); this
  // master's own address while it is primary.
  virtual std::string PrimaryAddress() const = 0;

  // Ends the current term (if any) and stops campaigning for good: a
  // Campaign() in progress returns CANCELLED, later ones too. A primary
  // gives its lease back so that a standby can take over at once; the
  // caller must have stopped acting as primary first. Idempotent.
  virtual void Resign() = 0;
};

// The single-master case (SQLite clusters, `cellar local`, tests): always
// primary. The epoch is fixed at construction, typically the start time in
// milliseconds; it is provisional (EpochIsDurable() is false): the
// ClusterManager raises the term's epoch above the highest epoch the
// storages persisted, so a clock that went back does not wedge the
// cluster. Thread-safe.
class SingleMasterElection final : public Election {
 public:
  // `epoch` > 0; `address` is what PrimaryAddress() reports.
  explicit SingleMasterElection(uint64_t epoch, std::string address = "");

  void SetLostCallback(LostCallback callback) override;
  absl::StatusOr<uint64_t> Campaign(absl::Duration timeout) override;
  bool IsPrimary() const override;
  uint64_t epoch() const override { return epoch_; }
  // The start time is no durable state: a clock that went back gives a
  // lower epoch after a restart.
  bool EpochIsDurable() const override { return false; }
  std::string PrimaryAddress() const override;
  void Resign() override;

  // Sets the address reported by PrimaryAddress() (known once listening).
  void set_address(std::string address);

 private:
  const uint64_t epoch_;
  mutable absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);
  bool primary_ ABSL_GUARDED_BY(mu_) = false;
  bool resigned_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_ELECTION_H_
