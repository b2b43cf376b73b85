#include "client/transaction.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
#include "services/common/ids.h"

namespace cellar::client {

Transaction::Transaction(TransactionCommitter* committer)
    : committer_(committer) {}

void Transaction::Store(uint64_t oid, uint64_t base_serial, std::string data) {
  if (finished_) return;
  if (data.size() > kMaxObjectBytes && sticky_error_.ok()) {
    sticky_error_ = common::ErrorWithReason(
        absl::StatusCode::kResourceExhausted, common::kReasonTooLarge,
        absl::StrCat("object ", common::FormatOid(oid), " is ", data.size(),
                     " bytes, over the ", kMaxObjectBytes, "-byte limit"));
  }
  auto [it, inserted] = index_.emplace(oid, data_.objects.size());
  if (inserted) {
    data_.objects.push_back(StagedObject{oid, base_serial, std::move(data)});
  } else {
    StagedObject& object = data_.objects[it->second];
    object.base_serial = base_serial;
    object.data = std::move(data);
    if (object.check_only) --checks_;
    object.check_only = false;
  }
}

void Transaction::CheckCurrent(uint64_t oid, uint64_t serial) {
  if (finished_) return;
  if (serial == 0 && sticky_error_.ok()) {
    sticky_error_ = absl::InvalidArgumentError(absl::StrCat(
        "CheckCurrent of oid ", common::FormatOid(oid), " needs the serial that was read"));
  }
  auto [it, inserted] = index_.emplace(oid, data_.objects.size());
  if (inserted) {
    data_.objects.push_back(StagedObject{oid, serial, "", /*check_only=*/true});
    ++checks_;
  } else if (data_.objects[it->second].check_only) {
    data_.objects[it->second].base_serial = serial;
  }
}

void Transaction::SetUser(std::string user) { data_.user = std::move(user); }

void Transaction::SetDescription(std::string description) {
  data_.description = std::move(description);
}

void Transaction::SetExtension(std::string extension) {
  data_.extension = std::move(extension);
}

absl::StatusOr<uint64_t> Transaction::Commit() {
  if (finished_) {
    return absl::FailedPreconditionError(
        "transaction already committed or aborted");
  }
  finished_ = true;
  if (!sticky_error_.ok()) return sticky_error_;
  return committer_->CommitTransaction(data_);
}

void Transaction::Abort() {
  finished_ = true;
  data_.objects.clear();
  index_.clear();
}

}  // namespace cellar::client
