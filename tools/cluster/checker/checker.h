#ifndef CELLAR_TOOLS_CLUSTER_CHECKER_CHECKER_H_
#define CELLAR_TOOLS_CLUSTER_CHECKER_CHECKER_H_

// Judges a workload history (history.h) and the state read at the end.
// Pure logic, no I/O: the unit test feeds it hand-made histories.
//
// Four counts, each must be 0 (the bar of `cellar-cluster check`):
//   lost      acknowledged commits missing at the end: a revision
//             (oid, tid) an acknowledged commit wrote is gone or holds
//             other data (LoadSerial at the end), or (set) an
//             acknowledged element is not in its final list.
//   invariant bank: a snapshot read (or the final read) whose balances
//             don't add up to the total; set: a list read that is not a
//             prefix of a later one (by revision tid), two reads of one
//             revision that differ, a duplicate element, a read missing
//             an acknowledged append older than the revision read, an
//             element of a definitely-failed add visible; any: a read
//             returning a revision newer than its snapshot, a value that
//             doesn't parse, no final state.
//   stale     a read older than what its client had already seen: a
//             snapshot below the highest tid the client had seen
//             (acknowledged or read), or an object revision older than
//             one the client had read or written (semantics rule 6).
//   locked    objects the final "store everything" pass could not write
//             within its bound (rule 4).
// Every violation names the operation (history id, client, type) where
// it was found; the first one is the one to look at.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "tools/cluster/checker/history.h"

namespace cellar::tools::checker {

enum class WorkloadKind { kBank, kSet };

// Values stored by the workloads (so that the checker can read them back).
std::string BankValue(int64_t balance, uint64_t tag);
std::optional<int64_t> ParseBankValue(absl::string_view data);
// "list 5,9,12 tag 7": the elements of a shared list, in append order.
std::string ListValue(const std::vector<uint64_t>& elements, uint64_t tag);
std::optional<std::vector<uint64_t>> ParseListValue(absl::string_view data);
std::string ElementValue(uint64_t element);

// What the workload read once the clients and the nemesis stopped.
struct FinalState {
  // False when the final read failed (error in read_error): a violation.
  bool read = false;
  std::string read_error;
  uint64_t snapshot = 0;
  // Every account (bank) or list (set), at `snapshot`.
  std::vector<ReadValue> objects;
  // LoadSerial(oid, tid) of every write of every acknowledged commit: the
  // data found. A key absent from both maps was not found (NOT_FOUND).
  std::map<std::pair<uint64_t, uint64_t>, std::string> revisions;
  // Lookups that failed with another error (reported, not counted lost).
  std::map<std::pair<uint64_t, uint64_t>, std::string> revision_errors;
  // Objects that could not be stored within the bound at the end, with the
  // last error (which names the transaction holding the lock).
  std::map<uint64_t, std::string> locked;
};

struct CheckInput {
  WorkloadKind kind = WorkloadKind::kBank;
  // Bank: the account oids, in account order, and their fixed total.
  std::vector<uint64_t> accounts;
  int64_t total = 0;
  // Set: the shared list oids, in list order.
  std::vector<uint64_t> lists;
  std::vector<Operation> operations;
  FinalState final_state;
};

struct Violation {
  // "lost", "invariant", "stale" or "locked".
  std::string kind;
  // The operation (0: the final state).
  uint64_t op_id = 0;
  std::string message;
};

struct Verdict {
  size_t lost = 0;
  size_t invariant = 0;
  size_t stale = 0;
  size_t locked = 0;
  // In the order found: lost, invariant, stale, locked; each kind by
  // operation id.
  std::vector<Violation> violations;
  bool ok() const { return lost == 0 && invariant == 0 && stale == 0 && locked == 0; }
  // The first violation of the earliest operation, "" if none.
  std::string FirstViolation() const;
};

Verdict Check(const CheckInput& input);

// "op 17 (client 2, add, ok, tid 0x...)".
std::string DescribeOp(const Operation& op);

}  // namespace cellar::tools::checker

#endif  // CELLAR_TOOLS_CLUSTER_CHECKER_CHECKER_H_
