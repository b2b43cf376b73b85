#include "tools/cluster/checker/history.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "services/common/errors.h"
#include "services/common/ids.h"

namespace cellar::tools::checker {

const char* OpTypeName(OpType type) {
  switch (type) {
    case OpType::kTransfer:
      return "transfer";
    case OpType::kBankRead:
      return "bank-read";
    case OpType::kAdd:
      return "add";
    case OpType::kListRead:
      return "list-read";
  }
  return "?";
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "?";
}

uint64_t History::Add(Operation op) {
  absl::MutexLock lock(&mu_);
  op.id = ops_.size() + 1;
  if (op.outcome == Outcome::kOk && op.type != OpType::kBankRead &&
      op.type != OpType::kListRead) {
    ++acknowledged_;
  }
  ops_.push_back(std::move(op));
  return ops_.back().id;
}

void History::AddEvent(NemesisEvent event) {
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(event));
}

std::vector<Operation> History::operations() const {
  absl::MutexLock lock(&mu_);
  return ops_;
}

std::vector<NemesisEvent> History::events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

size_t History::acknowledged() const {
  absl::MutexLock lock(&mu_);
  return acknowledged_;
}

Outcome ClassifyCommitError(const absl::Status& status, uint64_t* tid) {
  constexpr absl::string_view kCommittedAs = "committed as tid ";
  const absl::string_view message = status.message();
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    const size_t at = message.find(kCommittedAs);
    if (at != absl::string_view::npos) {
      absl::string_view rest = message.substr(at + kCommittedAs.size());
      rest = rest.substr(0, rest.find(' '));
      uint64_t parsed = 0;
      if (common::ParseUint64(rest, &parsed) && parsed != 0) {
        if (tid != nullptr) *tid = parsed;
        return Outcome::kOk;
      }
    }
  }
  if (status.code() == absl::StatusCode::kAborted) return Outcome::kFailed;
  // The client library's own verdict "it may have committed" (semantics
  // rule R8), whatever the message says.
  if (common::ErrorReason(status) == common::kReasonOutcomeUnknown) return Outcome::kUnknown;
  // Client::Commit annotates the Finish error with "Finish: "; anything
  // else happened before Finish was sent.
  if (absl::StartsWith(message, "Finish")) return Outcome::kUnknown;
  return Outcome::kFailed;
}

}  // namespace cellar::tools::checker
