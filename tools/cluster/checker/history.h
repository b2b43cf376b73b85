#ifndef CELLAR_TOOLS_CLUSTER_CHECKER_HISTORY_H_
#define CELLAR_TOOLS_CLUSTER_CHECKER_HISTORY_H_

// The history of a checked workload (tools/cluster/checker): every
// operation a client ran (a commit or a snapshot read), with what it read,
// what it wrote, its outcome and when; plus the nemesis events. The
// checker (checker.h) judges a history; the report (report.h) measures it.
//
// Outcomes of a commit (semantics rule 8):
//   kOk       acknowledged: Commit returned a tid.
//   kFailed   definitely not committed: a conflict (ABORTED), or refused
//             before Finish was sent (Begin, Store, vote, connection lost
//             before Finish): no final tid can exist without Finish.
//   kUnknown  Finish was sent and its answer is an error other than
//             ABORTED: committed or not, the client can't tell.
//
// Thread-safety: History is thread-safe; Operation is a plain value.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellar::tools::checker {

enum class OpType {
  // Bank: move an amount from one account to another (reads both, writes
  // both).
  kTransfer,
  // Bank: every account read at one snapshot.
  kBankRead,
  // Set: a new element object plus an append to one shared list (reads the
  // list, writes both).
  kAdd,
  // Set: one list read at a snapshot.
  kListRead,
};

enum class Outcome { kOk, kFailed, kUnknown };

const char* OpTypeName(OpType type);
const char* OutcomeName(Outcome outcome);

// One object revision seen by a read.
struct ReadValue {
  uint64_t oid = 0;
  // The revision's tid (its serial).
  uint64_t serial = 0;
  std::string data;
};

// One object a commit stored.
struct WriteValue {
  uint64_t oid = 0;
  std::string data;
};

struct Operation {
  // Position in the history (set by History::Add).
  uint64_t id = 0;
  // The client (worker, with its own Client session) that ran it.
  int client = 0;
  OpType type = OpType::kBankRead;
  Outcome outcome = Outcome::kOk;
  absl::Time start;
  absl::Time end;
  // The error of a failed or unknown operation.
  std::string error;
  // The snapshot every read of the operation was taken at
  // (LoadBefore(oid, snapshot + 1)); 0 if it read nothing.
  uint64_t snapshot = 0;
  // What it read (reads happened even when the commit then failed).
  std::vector<ReadValue> reads;
  // Commits: what it stored, and the final tid when kOk.
  std::vector<WriteValue> writes;
  uint64_t tid = 0;
  // Set: the element added (kAdd) and the list index (kAdd, kListRead).
  uint64_t element = 0;
  int list = -1;
};

// A fault the nemesis caused, and when the cluster was healthy again.
struct NemesisEvent {
  // "rolling-restart S2", "kill -9 M1", "pause S3", "pg-restart".
  std::string kind;
  std::string target;
  absl::Time start;
  // When the nemesis saw the node (cluster) ready again.
  absl::Time healed;
  // True for a planned restart (SIGTERM + start), false for a crash or a
  // pause.
  bool planned = false;
  // Non-empty if the nemesis could not carry it out (the node did not come
  // back in time...).
  std::string error;
};

// Thread-safe list of operations and events.
class History {
 public:
  // Adds `op` (assigning its id) and returns the id.
  uint64_t Add(Operation op);
  void AddEvent(NemesisEvent event);
  std::vector<Operation> operations() const;
  std::vector<NemesisEvent> events() const;
  size_t acknowledged() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<Operation> ops_ ABSL_GUARDED_BY(mu_);
  std::vector<NemesisEvent> events_ ABSL_GUARDED_BY(mu_);
  size_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
};

// What a Commit() error means (see the file comment). `tid` is set when
// the error says the transaction committed (DEADLINE_EXCEEDED "committed
// as tid ...": the invalidation came late): the outcome is then kOk.
Outcome ClassifyCommitError(const absl::Status& status, uint64_t* tid);

}  // namespace cellar::tools::checker

#endif  // CELLAR_TOOLS_CLUSTER_CHECKER_HISTORY_H_
