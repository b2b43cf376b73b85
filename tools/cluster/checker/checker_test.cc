#include "tools/cluster/checker/checker.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/errors.h"

namespace cellar::tools::checker {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kA = 10, kB = 11;  // bank accounts
constexpr uint64_t kL = 20;           // set: the one shared list

// Hand-made histories: tids are small numbers (the checker only compares
// them).
class HistoryBuilder {
 public:
  Operation& Add(Operation op) {
    op.id = ops_.size() + 1;
    ops_.push_back(op);
    return ops_.back();
  }
  std::vector<Operation> ops() const { return ops_; }

 private:
  std::vector<Operation> ops_;
};

Operation Transfer(int client, uint64_t snapshot, uint64_t serial_a, int64_t a,
                   uint64_t serial_b, int64_t b, int64_t amount, Outcome outcome,
                   uint64_t tid, uint64_t tag) {
  Operation op;
  op.client = client;
  op.type = OpType::kTransfer;
  op.outcome = outcome;
  op.snapshot = snapshot;
  op.reads = {{kA, serial_a, BankValue(a, 0)}, {kB, serial_b, BankValue(b, 0)}};
  op.writes = {{kA, BankValue(a - amount, tag)}, {kB, BankValue(b + amount, tag)}};
  op.tid = tid;
  return op;
}

Operation BankRead(int client, uint64_t snapshot, uint64_t serial_a, int64_t a,
                   uint64_t serial_b, int64_t b) {
  Operation op;
  op.client = client;
  op.type = OpType::kBankRead;
  op.snapshot = snapshot;
  op.reads = {{kA, serial_a, BankValue(a, 0)}, {kB, serial_b, BankValue(b, 0)}};
  return op;
}

// Final state of the bank after `ops`: LoadSerial finds every acked write.
FinalState BankFinal(const std::vector<Operation>& ops, uint64_t snapshot, int64_t a,
                     int64_t b) {
  FinalState s;
  s.read = true;
  s.snapshot = snapshot;
  s.objects = {{kA, snapshot, BankValue(a, 0)}, {kB, snapshot, BankValue(b, 0)}};
  for (const Operation& op : ops) {
    if (op.outcome != Outcome::kOk) continue;
    for (const WriteValue& w : op.writes) s.revisions[{w.oid, op.tid}] = w.data;
  }
  return s;
}

CheckInput BankInput(const std::vector<Operation>& ops, FinalState fin) {
  CheckInput in;
  in.kind = WorkloadKind::kBank;
  in.accounts = {kA, kB};
  in.total = 100;
  in.operations = ops;
  in.final_state = std::move(fin);
  return in;
}

// A clean bank history: 50/50, transfer 10 (tid 5), a conflict, an
// unknown transfer that did commit (tid 8), reads in between.
std::vector<Operation> CleanBank() {
  HistoryBuilder h;
  h.Add(BankRead(1, 2, 1, 50, 1, 50));
  h.Add(Transfer(1, 2, 1, 50, 1, 50, 10, Outcome::kOk, 5, 1));
  h.Add(Transfer(2, 2, 1, 50, 1, 50, 3, Outcome::kFailed, 0, 2)).error = "ABORTED";
  h.Add(BankRead(2, 5, 5, 40, 5, 60));
  h.Add(Transfer(2, 5, 5, 40, 5, 60, 5, Outcome::kUnknown, 0, 3)).error = "Finish: lost";
  h.Add(BankRead(1, 8, 8, 35, 8, 65));
  return h.ops();
}

TEST(CheckerTest, CleanBankHistoryPasses) {
  std::vector<Operation> ops = CleanBank();
  Verdict v = Check(BankInput(ops, BankFinal(ops, 9, 35, 65)));
  EXPECT_TRUE(v.ok()) << v.FirstViolation();
  EXPECT_EQ(v.FirstViolation(), "");
}

TEST(CheckerTest, WrongTotalInASnapshotReadIsAnInvariantViolation) {
  std::vector<Operation> ops = CleanBank();
  // Client 2 sees the debit of tid 5 but not the credit.
  ops[3].reads[1] = {kB, 1, BankValue(50, 0)};
  Verdict v = Check(BankInput(ops, BankFinal(ops, 9, 35, 65)));
  EXPECT_EQ(v.invariant, 1u);
  EXPECT_EQ(v.lost, 0u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("op 4 (client 2, bank-read"));
  EXPECT_THAT(v.FirstViolation(), HasSubstr("sum to 90 instead of 100"));
}

TEST(CheckerTest, WrongFinalTotalIsAnInvariantViolation) {
  std::vector<Operation> ops = CleanBank();
  Verdict v = Check(BankInput(ops, BankFinal(ops, 9, 35, 70)));
  EXPECT_EQ(v.invariant, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("final read"));
}

TEST(CheckerTest, LostAcknowledgedTransferIsFlagged) {
  std::vector<Operation> ops = CleanBank();
  FinalState fin = BankFinal(ops, 9, 35, 65);
  fin.revisions.erase({kB, 5});
  Verdict v = Check(BankInput(ops, fin));
  EXPECT_EQ(v.lost, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("lost: op 2 (client 1, transfer, ok"));
  // A lookup that failed otherwise is not counted as lost.
  fin.revision_errors[{kB, 5}] = "UNAVAILABLE";
  EXPECT_TRUE(Check(BankInput(ops, fin)).ok());
}

TEST(CheckerTest, StaleSnapshotAfterOwnCommitIsFlagged) {
  std::vector<Operation> ops = CleanBank();
  // Client 1 committed tid 5, then reads at snapshot 2 (before its commit).
  ops[5] = BankRead(1, 2, 1, 50, 1, 50);
  ops[5].id = 6;
  Verdict v = Check(BankInput(ops, BankFinal(ops, 9, 35, 65)));
  EXPECT_EQ(v.stale, 1u);
  EXPECT_EQ(v.invariant, 0u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("stale: op 6 (client 1"));
  EXPECT_THAT(v.FirstViolation(), HasSubstr("had seen tid"));
}

TEST(CheckerTest, OlderRevisionThanAlreadySeenIsStale) {
  std::vector<Operation> ops = CleanBank();
  // Snapshot moved on, but account B comes back at revision 1 (50) although
  // client 1 wrote revision 5: a cell that missed the commit served it.
  ops[5] = BankRead(1, 8, 8, 35, 1, 65);
  ops[5].id = 6;
  Verdict v = Check(BankInput(ops, BankFinal(ops, 9, 35, 65)));
  EXPECT_EQ(v.stale, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("older than revision"));
}

TEST(CheckerTest, LockedObjectsAreCounted) {
  std::vector<Operation> ops = CleanBank();
  FinalState fin = BankFinal(ops, 9, 35, 65);
  fin.locked[kB] = "ABORTED: oid 0xb is locked by older transaction 0x5";
  Verdict v = Check(BankInput(ops, fin));
  EXPECT_EQ(v.locked, 1u);
  EXPECT_FALSE(v.ok());
  EXPECT_THAT(v.FirstViolation(), HasSubstr("locked: oid 0xb could not be stored: ABORTED"));
}

TEST(CheckerTest, MissingFinalStateFails) {
  FinalState fin;
  fin.read_error = "UNAVAILABLE: no readable cell";
  Verdict v = Check(BankInput(CleanBank(), fin));
  EXPECT_FALSE(v.ok());
  EXPECT_THAT(v.FirstViolation(), HasSubstr("no final state"));
}

// Set histories: one list, clients append elements.
Operation AddOp(int client, uint64_t snapshot, uint64_t list_serial,
                std::vector<uint64_t> before, uint64_t element, Outcome outcome,
                uint64_t tid) {
  Operation op;
  op.client = client;
  op.type = OpType::kAdd;
  op.outcome = outcome;
  op.snapshot = snapshot;
  op.list = 0;
  op.element = element;
  op.reads = {{kL, list_serial, ListValue(before, 0)}};
  std::vector<uint64_t> after = before;
  after.push_back(element);
  op.writes = {{kL, ListValue(after, element)}, {1000 + element, ElementValue(element)}};
  op.tid = tid;
  return op;
}

Operation ListRead(int client, uint64_t snapshot, uint64_t serial,
                   std::vector<uint64_t> elements) {
  Operation op;
  op.client = client;
  op.type = OpType::kListRead;
  op.snapshot = snapshot;
  op.list = 0;
  op.reads = {{kL, serial, ListValue(elements, 0)}};
  return op;
}

std::vector<Operation> CleanSet() {
  HistoryBuilder h;
  h.Add(AddOp(1, 1, 1, {}, 1, Outcome::kOk, 3));
  h.Add(AddOp(2, 1, 1, {}, 2, Outcome::kFailed, 0)).error = "ABORTED";
  h.Add(AddOp(2, 3, 3, {1}, 3, Outcome::kOk, 4));
  h.Add(ListRead(1, 4, 4, {1, 3}));
  h.Add(AddOp(1, 4, 4, {1, 3}, 4, Outcome::kUnknown, 0)).error = "Finish: UNAVAILABLE";
  h.Add(ListRead(2, 6, 6, {1, 3, 4}));
  return h.ops();
}

CheckInput SetInput(const std::vector<Operation>& ops, std::vector<uint64_t> final_list,
                    uint64_t final_serial) {
  CheckInput in;
  in.kind = WorkloadKind::kSet;
  in.lists = {kL};
  in.operations = ops;
  FinalState& s = in.final_state;
  s.read = true;
  s.snapshot = 9;
  s.objects = {{kL, final_serial, ListValue(final_list, 0)}};
  for (const Operation& op : ops) {
    if (op.outcome != Outcome::kOk) continue;
    for (const WriteValue& w : op.writes) s.revisions[{w.oid, op.tid}] = w.data;
  }
  return in;
}

TEST(CheckerTest, CleanSetHistoryPasses) {
  Verdict v = Check(SetInput(CleanSet(), {1, 3, 4}, 6));
  EXPECT_TRUE(v.ok()) << v.FirstViolation();
}

TEST(CheckerTest, LostAppendIsFlagged) {
  // The final list lost element 3 (acknowledged at tid 4).
  Verdict v = Check(SetInput(CleanSet(), {1, 4}, 7));
  EXPECT_EQ(v.lost, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("op 3 (client 2, add, ok, tid"));
  // ... and the later revision is not an extension of the earlier reads.
  EXPECT_GE(v.invariant, 1u);
}

TEST(CheckerTest, ReorderedReadIsNotAPrefix) {
  std::vector<Operation> ops = CleanSet();
  ops[5].reads[0].data = ListValue({3, 1, 4}, 0);
  Verdict v = Check(SetInput(ops, {1, 3, 4}, 6));
  EXPECT_EQ(v.lost, 0u);
  EXPECT_GE(v.invariant, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("not a prefix"));
}

TEST(CheckerTest, ReadMissingAnOlderAcknowledgedAppend) {
  std::vector<Operation> ops = CleanSet();
  // Revision 4 is read without element 3, acknowledged at tid 4.
  ops[3].reads[0].data = ListValue({1}, 0);
  Verdict v = Check(SetInput(ops, {1, 3, 4}, 6));
  EXPECT_GE(v.invariant, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("misses element 3"));
}

TEST(CheckerTest, FailedAddVisibleIsAnInvariantViolation) {
  Verdict v = Check(SetInput(CleanSet(), {1, 3, 4, 2}, 7));
  EXPECT_EQ(v.invariant, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("commit that failed"));
}

TEST(CheckerTest, ElementGivenTwiceIsAnInvariantViolation) {
  std::vector<Operation> ops = CleanSet();
  // Client 2's failed add got oid 1001 = element 1, which client 1 had.
  ops[1].element = 1;
  Verdict v = Check(SetInput(ops, {1, 3, 4}, 6));
  EXPECT_EQ(v.invariant, 1u);
  EXPECT_THAT(v.FirstViolation(), HasSubstr("an OID handed out twice"));
}

TEST(CheckerTest, ShorterListAfterOwnAppendIsAStaleRead) {
  std::vector<Operation> ops = CleanSet();
  // Client 2 appended 3 at tid 4, then reads revision 3 ([1]) at snapshot 6.
  ops[5] = ListRead(2, 6, 3, {1});
  ops[5].id = 6;
  Verdict v = Check(SetInput(ops, {1, 3, 4}, 6));
  EXPECT_EQ(v.stale, 1u);
  EXPECT_EQ(v.lost, 0u);
  EXPECT_EQ(v.invariant, 0u) << v.FirstViolation();
  EXPECT_THAT(v.FirstViolation(), HasSubstr("stale: op 6 (client 2, list-read"));
}

TEST(CheckerTest, ClassifiesCommitErrors) {
  uint64_t tid = 0;
  EXPECT_EQ(ClassifyCommitError(absl::AbortedError("Store on S1: conflict"), &tid),
            Outcome::kFailed);
  EXPECT_EQ(ClassifyCommitError(absl::UnavailableError("Begin: no master"), &tid),
            Outcome::kFailed);
  EXPECT_EQ(ClassifyCommitError(absl::UnavailableError("Finish: connection reset"), &tid),
            Outcome::kUnknown);
  EXPECT_EQ(ClassifyCommitError(absl::AbortedError("Finish: refused"), &tid),
            Outcome::kFailed);
  // The client's own "it may have committed", whatever its message (seen
  // misclassified as failed after a kill -9 of the primary).
  EXPECT_EQ(ClassifyCommitError(
                common::ErrorWithReason(absl::StatusCode::kUnavailable,
                                        common::kReasonOutcomeUnknown,
                                        "the outcome of transaction 0x1 is unknown"),
                &tid),
            Outcome::kUnknown);
  EXPECT_EQ(tid, 0u);
  EXPECT_EQ(ClassifyCommitError(
                absl::DeadlineExceededError(
                    "transaction committed as tid 0x03e1b2c4d5e6f708 (2026-11-22T02:30:12Z) "
                    "but its invalidation did not reach this client within 5s"),
                &tid),
            Outcome::kOk);
  EXPECT_EQ(tid, 0x03e1b2c4d5e6f708u);
}

TEST(CheckerTest, ValuesRoundTrip) {
  EXPECT_EQ(ParseBankValue(BankValue(-7, 3)), -7);
  EXPECT_EQ(ParseListValue(ListValue({4, 5}, 9)), (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(ParseListValue(ListValue({}, 9)), std::vector<uint64_t>{});
  EXPECT_EQ(ParseBankValue("junk"), std::nullopt);
}

}  // namespace
}  // namespace cellar::tools::checker
