#ifndef CELLAR_CLIENT_TRANSACTION_H_
#define CELLAR_CLIENT_TRANSACTION_H_

// A client transaction (ZODB-like): Store() buffers objects in memory;
// Commit() runs the whole two-phase commit (Begin, Store+vote on every
// writable cell, Finish) through the Client that created it.
//
//   auto txn = client->NewTransaction();
//   txn->Store(oid, serial_read, "bytes");
//   txn->SetUser("alice");
//   absl::StatusOr<uint64_t> tid = txn->Commit();  // ABORTED: retry all
//
// Rules:
//   - Storing the same oid twice keeps the last call (data and base serial).
//   - Oid 0 is the root object and is valid. base_serial 0 = new object.
//   - Data over kMaxObjectBytes (16 MiB) makes Commit fail with
//     RESOURCE_EXHAUSTED (reason TOO_LARGE) without contacting anyone.
//   - An empty transaction (no Store) is allowed: it commits a transaction
//     record (user/description/extension) and gets a tid.
//   - Commit() or Abort() ends the transaction: later calls to Store are
//     ignored and Commit returns FAILED_PRECONDITION.
//   - Abort() is always local: nothing reaches the cluster before Commit().
//
// Not thread-safe: one thread uses a Transaction. The Client must outlive
// it.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellar::client {

// Largest object the client accepts (the storage default limit).
inline constexpr size_t kMaxObjectBytes = size_t{16} << 20;

// One buffered object.
struct StagedObject {
  uint64_t oid = 0;
  uint64_t base_serial = 0;
  std::string data;
  // CheckCurrent: nothing stored, base_serial checked under the lock.
  bool check_only = false;
};

// Everything a transaction commits.
struct TransactionData {
  std::string user;
  std::string description;
  std::string extension;
  // In Store() order, one entry per oid.
  std::vector<StagedObject> objects;
};

// Runs the commit protocol (implemented by Client). Thread-safe.
class TransactionCommitter {
 public:
  virtual ~TransactionCommitter() = default;
  // Commits `data`; returns the final tid.
  virtual absl::StatusOr<uint64_t> CommitTransaction(
      const TransactionData& data) = 0;
};

class Transaction {
 public:
  explicit Transaction(TransactionCommitter* committer);

  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // Buffers `data` as the new revision of `oid`, written over the revision
  // `base_serial` the application read (0 for a new object).
  void Store(uint64_t oid, uint64_t base_serial, std::string data);
  // Read-current check (ZODB checkCurrentSerialInTransaction): the commit
  // fails with ABORTED / CONFLICT (the current serial in the detail) unless
  // `serial` is still the latest revision of `oid`, and no other
  // transaction commits `oid` before this one ends (the storages hold its
  // lock from the vote). Nothing is stored; a Store of the same oid, before
  // or after, replaces the check (its own conflict check covers it).
  void CheckCurrent(uint64_t oid, uint64_t serial);
  void SetUser(std::string user);
  void SetDescription(std::string description);
  void SetExtension(std::string extension);

  // Commits: returns the final tid once this client's snapshot includes
  // it (so the committer reads its own writes). Errors: ABORTED (CONFLICT
  // with a ConflictDetail payload — common::GetConflict —,
  // LOCK_CONTENTION, or BAD_TTID_TOKEN: a storage took a newer primary's
  // ttid key since Begin; retry the whole transaction), UNAVAILABLE without a
  // reason (not committed: not enough replicas reached, or the master
  // connection was lost before Finish; retry), FAILED_PRECONDITION
  // (cluster not RUNNING), RESOURCE_EXHAUSTED (object too large),
  // DEADLINE_EXCEEDED (committed, but the invalidation did not arrive in
  // time; the message says so and carries the tid).
  //
  // Unknown outcome: UNAVAILABLE with reason OUTCOME_UNKNOWN
  // (common::kReasonOutcomeUnknown). Finish was sent and got no answer
  // (deadline, connection lost, master failover) or failed after the
  // storages may have locked, and the primary could not tell: Commit
  // first asks it (Master.GetTransactionStatus; an Abort it refuses
  // because a final tid was picked is followed by more questions, bounded
  // by rpc_timeout; after a failover, the next primary once RUNNING). The
  // transaction may have committed: do not report it as failed nor retry
  // it blindly; read its objects to find out. Commit never answers OK or
  // ABORTED for an outcome it does not know.
  absl::StatusOr<uint64_t> Commit();

  // Drops the buffered objects (local only).
  void Abort();

  // True once Commit() or Abort() was called.
  bool finished() const { return finished_; }
  // Objects stored (read-current checks not counted).
  size_t object_count() const { return data_.objects.size() - checks_; }

 private:
  TransactionCommitter* const committer_;
  TransactionData data_;
  absl::flat_hash_map<uint64_t, size_t> index_;  // oid -> objects position
  size_t checks_ = 0;  // check_only entries of data_.objects
  absl::Status sticky_error_;
  bool finished_ = false;
};

}  // namespace cellar::client

#endif  // CELLAR_CLIENT_TRANSACTION_H_
