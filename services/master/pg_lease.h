#ifndef CELLAR_SERVICES_MASTER_PG_LEASE_H_
#define CELLAR_SERVICES_MASTER_PG_LEASE_H_

// PostgresLeaseElection: master election by a lease row in a PostgreSQL
// database that every master of a cluster can reach (docs/failover.md).
//
//   cellar_master_lease(cluster text PRIMARY KEY, holder text, address text,
//                       epoch bigint, expires_at timestamptz)
//
// * Acquire: one atomic statement, INSERT ... ON CONFLICT (cluster) DO
//   UPDATE ... WHERE expires_at < now() OR holder = me RETURNING epoch.
//   A brand-new row starts at the server's time in milliseconds (above any
//   single-master epoch of the past); every later term gets the previous
//   epoch + 1. Two masters racing on an empty table: the unique key makes
//   one insert and the other see a live lease, so exactly one wins.
// * Expiry is the database server's clock: expires_at = now() + lease,
//   computed by the statement. The holder counts its own lease from just
//   before it sent the statement (a local monotonic clock), i.e. from no
//   later than the server's now(), and stops being primary `margin` before
//   that local deadline would pass: IsPrimary() turns false and the lost
//   callback runs (from a watchdog thread that no database call can
//   block) strictly before any other master can acquire the row.
// * The primary renews every lease/3 (renew_interval) while its term is
//   live; a renewal that finds the row taken or expired ends the term at
//   once. Standbys retry every lease/3 (retry_interval) and learn the
//   holder's address for their "not the primary" answers.
// * Every database call is bounded (db_timeout: statement_timeout on the
//   session and a client-side wait with cancel). Prepared, parameterized
//   statements only.
//
// `holder` identifies one incarnation of a master (address, pid and a
// random suffix by default): a restarted process is a new holder, so it
// never inherits a previous process's term.
//
// Thread-safe. Owns two threads (database worker and deadline watchdog):
// the state machine is LeaseElection's (lease_election.h); this class
// holds the SQL.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/master/lease_election.h"

namespace cellar::master {

struct PostgresLeaseOptions {
  // libpq connection string (key=value or URI) of the shared database.
  // Required.
  std::string conninfo;
  // Key of the lease row: one lease per cluster name. Default "cellar".
  std::string cluster = "cellar";
  // This master's address as storages and clients dial it, stored in the
  // row so standbys can name the primary. Default "".
  std::string address;
  // Unique identity of this incarnation. Default "": "<address>/<pid>/<16
  // random hex digits>".
  std::string holder;
  // Lease length. Default 10 s.
  absl::Duration lease = absl::Seconds(10);
  // How often the primary renews. Default 0 = lease / 3.
  absl::Duration renew_interval = absl::ZeroDuration();
  // How often a standby tries to acquire. Default 0 = lease / 3.
  absl::Duration retry_interval = absl::ZeroDuration();
  // The primary steps down this long before its lease may expire; covers
  // clock-rate drift between this host and the database server and the
  // time to stop acting. Default 0 = lease / 5.
  absl::Duration step_down_margin = absl::ZeroDuration();
  // Bound of every database call (connect, statement). Default 0 =
  // lease / 3.
  absl::Duration db_timeout = absl::ZeroDuration();
};

class PostgresLeaseElection final : public LeaseElection {
 public:
  // INVALID_ARGUMENT for bad options (empty conninfo or cluster, lease not
  // positive, margin >= lease, renew_interval >= lease - margin). Does not
  // connect: the database may come up later (attempts retry).
  static absl::StatusOr<std::unique_ptr<PostgresLeaseElection>> Create(
      PostgresLeaseOptions options);

  // Resign(), then stops the threads.
  ~PostgresLeaseElection() override;

  // Election, Abandon() and last_error() (of a database call): see
  // LeaseElection.

  // Effective options (defaults filled in) and this incarnation's holder.
  const PostgresLeaseOptions& options() const { return options_; }
  const std::string& holder() const { return options_.holder; }

 private:
  explicit PostgresLeaseElection(PostgresLeaseOptions options);

  const PostgresLeaseOptions options_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_PG_LEASE_H_
