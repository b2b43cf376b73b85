#ifndef CELLAR_SERVICES_MASTER_LEASE_ELECTION_H_
#define CELLAR_SERVICES_MASTER_LEASE_ELECTION_H_

// LeaseElection: the state machine shared by the lease elections
// (PostgresLeaseElection in pg_lease.h, KubernetesLeaseElection in
// k8s_lease.h; docs/failover.md). What differs between them (the calls to
// the shared store and how a standby judges a lease expired) sits behind a
// LeaseBackend; this class owns the rest:
//
// * two threads: a worker that makes every backend call (acquire while a
//   Campaign() waits, renew while primary, give a term back) and a
//   deadline watchdog that no backend call can block;
// * the term's local deadline, on a monotonic clock: a term counts from the
//   backend's `term_start` (acquire) or from the start of the last
//   successful renewal, and lasts `term` (LeaseTiming). The watchdog ends it
//   at that deadline: IsPrimary() turns false, then the lost callback runs.
//   Each backend's `term` is chosen so that this happens strictly before
//   any other master can acquire the lease (the Election safety contract);
// * Campaign(), Resign() (gives the term back, waiting at most
//   `release_wait`), Abandon() and the errors they report.
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/master/election.h"

namespace cellar::master {

// A monotonic clock as absl::Time (never compared with wall-clock times):
// lease deadlines and observations must not move when the wall clock is
// stepped.
absl::Time LeaseMonoNow();

// The default holder identity of one master incarnation:
// "<address>/<pid>/<16 random hex digits>".
std::string DefaultLeaseHolder(const std::string& address);

// The calls to the shared store. Used by LeaseElection's worker thread
// only (never two calls at once, never with LeaseElection's lock held).
class LeaseBackend {
 public:
  struct Acquired {
    // A failed call (the attempt counts, the error is recorded).
    absl::Status error;
    // The epoch of the term won; 0 when another master holds the lease.
    uint64_t epoch = 0;
    // When won: the local monotonic time the term counts from (no later
    // than the start of the lease as any other master counts it).
    absl::Time term_start = absl::InfinitePast();
    // When not won: the primary's address as seen ("" for none), if known.
    std::optional<std::string> primary_address;
  };
  struct Renewed {
    // A failed call: the primary keeps trying until its deadline.
    absl::Status error;
    // Non-null when the term is over (expired, taken over): why.
    const char* lost = nullptr;
    // With `lost`: the primary's address as seen, if known.
    std::optional<std::string> primary_address;
  };
  struct Released {
    absl::Status error;
    // The lease was still ours and was given back.
    bool released = false;
  };

  virtual ~LeaseBackend() = default;

  // One acquire attempt.
  virtual Acquired Acquire() = 0;
  // Extends the live term `epoch` of ours. The renewal counts from just
  // before this call (LeaseElection takes the time).
  virtual Renewed Renew(uint64_t epoch) = 0;
  // Gives term `epoch` back if the lease is still ours.
  virtual Released Release(uint64_t epoch) = 0;
  // The worker is exiting (close connections).
  virtual void Close() {}
};

struct LeaseTiming {
  // For logs: the cluster and how the won lease is named ("holder ...").
  std::string cluster;
  std::string description;
  // This master's address (PrimaryAddress() while primary).
  std::string address;
  // How long a term lasts after its term_start / renewal start (> 0).
  absl::Duration term;
  // How often the primary renews; a standby attempts (both > 0).
  absl::Duration renew_interval;
  absl::Duration retry_interval;
  // How long Resign() waits for the lease to be given back.
  absl::Duration release_wait;
};

class LeaseElection : public Election {
 public:
  // Resign(), then stops the threads (and closes the backend).
  ~LeaseElection() override;

  LeaseElection(const LeaseElection&) = delete;
  LeaseElection& operator=(const LeaseElection&) = delete;

  void SetLostCallback(LostCallback callback) override;
  absl::StatusOr<uint64_t> Campaign(absl::Duration timeout) override;
  bool IsPrimary() const override;
  uint64_t epoch() const override;
  std::string PrimaryAddress() const override;
  void Resign() override;

  // Stops renewing and campaigning without giving the lease back, as if
  // the process had died (tests of crash takeover): a held term still ends
  // at its local deadline (lost callback), and a standby can take over
  // once the lease expires. Later Campaign() calls return CANCELLED.
  void Abandon();

  // The last error of a backend call ("" if the last call succeeded): for
  // logs and tests.
  std::string last_error() const;

 protected:
  // Starts the threads. `backend` must not refer to the derived object
  // (it may outlive it: the threads stop in ~LeaseElection).
  LeaseElection(LeaseTiming timing, std::unique_ptr<LeaseBackend> backend);

 private:
  enum class State { kStandby, kPrimary, kStopped };

  void WorkerLoop();
  void WatchdogLoop();
  // One acquire attempt (worker thread, mu_ not held).
  void Attempt();
  // One renewal (worker thread, mu_ not held).
  void Renew();
  // Gives term `epoch` back (worker thread, mu_ not held).
  void Release(uint64_t epoch);
  // Ends the current term `term` if it is still live; returns the
  // callback to run outside mu_ (empty if nothing was ended).
  LostCallback EndTermLocked(uint64_t term, const char* why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordError(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LeaseTiming timing_;
  // Only the worker thread uses it.
  const std::unique_ptr<LeaseBackend> backend_;

  mutable absl::Mutex mu_;
  // Signalled on every change of the fields below.
  absl::CondVar cv_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kStandby;
  LostCallback on_lost_ ABSL_GUARDED_BY(mu_);
  // Campaign() calls waiting; the worker only acquires while one waits.
  int waiters_ ABSL_GUARDED_BY(mu_) = 0;
  // Acquire attempts made (Campaign with a zero timeout waits for one).
  uint64_t attempts_ ABSL_GUARDED_BY(mu_) = 0;
  // Terms won by this object; `term_` identifies the current/last one.
  uint64_t term_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Local monotonic deadline of the current term (step-down time).
  absl::Time deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // When the worker renews next.
  absl::Time next_renew_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // When a standby attempts next (a new Campaign() makes it now).
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // A held term to give back (after Resign or a lost term).
  bool release_pending_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t release_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Stop campaigning for good; `release_on_stop_` false after Abandon().
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool release_on_stop_ ABSL_GUARDED_BY(mu_) = true;
  // Threads exit.
  bool exit_ ABSL_GUARDED_BY(mu_) = false;
  std::string primary_address_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);

  std::thread worker_;
  std::thread watchdog_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_LEASE_ELECTION_H_
