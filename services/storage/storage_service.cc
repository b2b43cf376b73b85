#include "services/storage/storage_service.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/server_auth.h"

namespace cellar::storage {

using ::cellar::common::kMaxTid;
using ::cellar::common::ToGrpcStatus;

namespace {

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// Checks a TID-valued field: `required` means 0 is refused.
bool BadTid(uint64_t tid, bool required) {
  return (required && tid == 0) || tid > kMaxTid;
}

std::string TidRule(const std::string& field, bool required) {
  return absl::StrCat(field, required ? ": required, " : ": ", "at most ",
                      common::TidHex(kMaxTid));
}

TransactionMetadata ToMetadata(const ::cellar::v1::TransactionMetadata& m) {
  TransactionMetadata out;
  out.user = m.user();
  out.description = m.description();
  out.extension = m.extension();
  out.oids.assign(m.oids().begin(), m.oids().end());
  out.size_bytes = m.size_bytes();
  return out;
}

void ToProto(LoadedObject loaded, ::cellar::v1::LoadResponse* response) {
  response->set_oid(loaded.oid);
  response->set_serial(loaded.serial);
  response->set_next_serial(loaded.next_serial);
  response->set_data(std::move(loaded.data));
  response->set_checksum(std::move(loaded.checksum));
  response->set_data_serial(loaded.data_tid);
}

void ToProto(const TransactionRecord& t, ::cellar::v1::TransactionInfo* info) {
  info->set_tid(t.tid);
  info->set_ttid(t.ttid);
  info->set_user(t.user);
  info->set_description(t.description);
  info->set_extension(t.extension);
  for (uint64_t oid : t.oids) info->add_oids(oid);
  info->set_packed(t.packed);
  info->set_size_bytes(t.size_bytes);
}

}  // namespace

StorageService::StorageService(StorageNode* node, StorageServiceOptions options)
    : node_(node), options_(options) {}

grpc::Status StorageService::Store(grpc::ServerContext* context,
                                   const ::cellar::v1::StoreRequest* request,
                                   ::cellar::v1::StoreResponse* response) {
  if (BadTid(request->ttid(), true)) return Invalid(TidRule("ttid", true));
  // Before anything else: no lock, no record for a ttid the primary did
  // not issue.
  if (absl::Status s = node_->CheckTtidToken(request->ttid(), request->ttid_token());
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (request->objects_size() > kMaxObjectsPerStore) {
    return Invalid(absl::StrCat("objects: at most ", kMaxObjectsPerStore,
                                " per call, got ", request->objects_size()));
  }
  if (request->objects_size() == 0 && !request->vote()) {
    return Invalid("objects: nothing to store (and vote is false)");
  }
  if (request->has_metadata() && !request->vote()) {
    return Invalid("metadata: only allowed with vote = true");
  }
  absl::flat_hash_map<uint64_t, int> seen;
  std::vector<StoreObject> objects;
  objects.reserve(request->objects_size());
  for (int i = 0; i < request->objects_size(); ++i) {
    const ::cellar::v1::ObjectToStore& o = request->objects(i);
    const std::string field = absl::StrCat("objects[", i, "]");
    auto [it, inserted] = seen.emplace(o.oid(), i);
    if (!inserted) {
      return Invalid(absl::StrCat(field, ".oid: ", common::FormatOid(o.oid()),
                                  " already appears in objects[", it->second, "]"));
    }
    if (o.check_only()) {
      if (!o.data().empty() || !o.checksum().empty() || o.data_serial() != 0 ||
          o.base_serial() == 0) {
        return Invalid(absl::StrCat(field, ": check_only needs base_serial > 0 and no data, "
                                           "checksum or data_serial"));
      }
    } else if (o.checksum().size() != common::kChecksumSize) {
      return Invalid(absl::StrCat(field, ".checksum: must be ", common::kChecksumSize,
                                  " bytes (SHA-1), got ", o.checksum().size()));
    }
    if (BadTid(o.base_serial(), false)) {
      return Invalid(TidRule(field + ".base_serial", false));
    }
    if (BadTid(o.data_serial(), false)) {
      return Invalid(TidRule(field + ".data_serial", false));
    }
    if (o.data_serial() != 0 && !o.data().empty()) {
      return Invalid(absl::StrCat(field, ".data: must be empty when data_serial is set"));
    }
    StoreObject object;
    object.oid = o.oid();
    object.base_serial = o.base_serial();
    object.data = o.data();
    object.checksum = o.checksum();
    object.data_serial = o.data_serial();
    object.check_only = o.check_only();
    objects.push_back(std::move(object));
  }
  std::optional<TransactionMetadata> metadata;
  if (request->has_metadata()) metadata = ToMetadata(request->metadata());

  // A lock wait ends before the client's deadline, so that the client
  // hears "lock contention, retry" rather than a timeout it would take for
  // an unreachable node.
  const absl::Time now = absl::Now();
  absl::Time deadline = now + options_.lock_wait_timeout;
  const absl::Time client_deadline = absl::FromChrono(context->deadline());
  if (client_deadline < absl::InfiniteFuture()) {
    const absl::Duration left = client_deadline - now;
    deadline = std::min(deadline, client_deadline - std::min(absl::Seconds(1), left / 5));
  }

  StorageNode::StoreReceipt receipt;
  absl::Status s = node_->Store(request->ttid(), request->client_node_id(),
                                std::move(objects), request->vote(), metadata, deadline,
                                &receipt);
  if (s.ok()) {
    response->set_voted(request->vote());
    response->set_checked_ptid(receipt.checked_ptid);
    for (uint32_t p : receipt.checked_partitions) response->add_checked_partitions(p);
  }
  return ToGrpcStatus(s);
}

grpc::Status StorageService::Vote(grpc::ServerContext* /*context*/,
                                  const ::cellar::v1::VoteRequest* request,
                                  ::cellar::v1::VoteResponse* /*response*/) {
  if (BadTid(request->ttid(), true)) return Invalid(TidRule("ttid", true));
  if (absl::Status s = node_->CheckTtidToken(request->ttid(), request->ttid_token());
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  std::optional<TransactionMetadata> metadata;
  if (request->has_metadata()) metadata = ToMetadata(request->metadata());
  return ToGrpcStatus(node_->Vote(request->ttid(), request->client_node_id(), metadata));
}

grpc::Status StorageService::AbortTransaction(
    grpc::ServerContext* context,
    const ::cellar::v1::AbortTransactionRequest* request,
    ::cellar::v1::AbortTransactionResponse* /*response*/) {
  if (BadTid(request->ttid(), true)) return Invalid(TidRule("ttid", true));
  // The primary's aborts are fenced by its epoch; anyone else's need the
  // ttid's token. An epoch abort needs no token, so it needs the cluster
  // secret (a client could otherwise abort anyone's transaction).
  if (request->epoch() != 0) {
    if (absl::Status s = common::RequireNodeRole(*context, options_.authenticator.get(),
                                                 "AbortTransaction with an epoch");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  } else {
    if (absl::Status s = node_->CheckTtidToken(request->ttid(), request->ttid_token());
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  return ToGrpcStatus(node_->Abort(request->ttid(), request->epoch()));
}

namespace {

// LockTransaction's checks of one lock (also each item of a batch).
grpc::Status ValidateLock(const ::cellar::v1::LockTransactionRequest& request) {
  if (BadTid(request.ttid(), true)) return Invalid(TidRule("ttid", true));
  if (BadTid(request.tid(), true)) return Invalid(TidRule("tid", true));
  if (request.tid() < request.ttid()) {
    return Invalid("tid: the final tid cannot be smaller than the ttid");
  }
  if (request.partitions_size() > kMaxLockPartitions) {
    return Invalid(absl::StrCat("partitions: at most ", kMaxLockPartitions, ", got ",
                                request.partitions_size()));
  }
  return grpc::Status::OK;
}

// UnlockTransaction's checks of one unlock; sets `record_oids` from it.
grpc::Status ValidateUnlock(const ::cellar::v1::UnlockTransactionRequest& request,
                            std::optional<std::vector<uint64_t>>* record_oids) {
  if (BadTid(request.ttid(), true)) return Invalid(TidRule("ttid", true));
  if (BadTid(request.tid(), false)) return Invalid(TidRule("tid", false));
  record_oids->reset();
  if (request.has_record_oids()) {
    const auto& oids = request.record_oids().oids();
    if (oids.size() > kMaxRecordOids) {
      return Invalid(absl::StrCat("record_oids: at most ", kMaxRecordOids, " oids, got ",
                                  oids.size()));
    }
    if (request.tid() == 0) return Invalid("tid: required with record_oids");
    record_oids->emplace(oids.begin(), oids.end());
  }
  return grpc::Status::OK;
}

// A batch's bounds (LockTransactions, UnlockTransactions).
template <typename Request>
grpc::Status ValidateBatch(const Request& request) {
  if (request.items().empty() || request.items_size() > kMaxBatchItems) {
    return Invalid(absl::StrCat("items: 1..", kMaxBatchItems, " items, got ",
                                request.items_size()));
  }
  if (request.ByteSizeLong() > kMaxBatchBytes) {
    return Invalid(absl::StrCat("items: at most ", kMaxBatchBytes, " bytes in one batch, got ",
                                request.ByteSizeLong()));
  }
  return grpc::Status::OK;
}

void SetItemStatus(const absl::Status& s, ::cellar::v1::ItemStatus* out) {
  if (s.ok()) return;
  out->set_code(static_cast<uint32_t>(s.code()));
  out->set_reason(common::ErrorReason(s));
  out->set_message(common::OneLine(s.message(), common::kMaxStatusMessageBytes));
}

void SetItemStatus(const grpc::Status& s, ::cellar::v1::ItemStatus* out) {
  if (s.ok()) return;
  out->set_code(static_cast<uint32_t>(s.error_code()));
  out->set_message(common::OneLine(s.error_message(), common::kMaxStatusMessageBytes));
}

}  // namespace

grpc::Status StorageService::LockTransaction(
    grpc::ServerContext* /*context*/,
    const ::cellar::v1::LockTransactionRequest* request,
    ::cellar::v1::LockTransactionResponse* response) {
  if (grpc::Status v = ValidateLock(*request); !v.ok()) return v;
  std::optional<std::vector<uint64_t>> stored_oids;
  const std::vector<uint32_t> partitions(request->partitions().begin(),
                                         request->partitions().end());
  absl::Status s = node_->Lock(request->epoch(), request->ttid(), request->tid(),
                               request->min_ptid(), &stored_oids, partitions);
  if (s.ok() && stored_oids.has_value()) {
    response->set_stored_oids_known(true);
    response->mutable_stored_oids()->Add(stored_oids->begin(), stored_oids->end());
  }
  return ToGrpcStatus(s);
}

grpc::Status StorageService::LockTransactions(
    grpc::ServerContext* /*context*/, const ::cellar::v1::LockTransactionsRequest* request,
    ::cellar::v1::LockTransactionsResponse* response) {
  if (grpc::Status v = ValidateBatch(*request); !v.ok()) return v;
  absl::flat_hash_map<uint64_t, int> seen;
  for (int i = 0; i < request->items_size(); ++i) {
    auto [it, inserted] = seen.emplace(request->items(i).ttid(), i);
    if (!inserted) {
      return Invalid(absl::StrCat("items: ttid ", common::TidHex(request->items(i).ttid()),
                                  " appears twice (items ", it->second, " and ", i, ")"));
    }
  }
  std::vector<StorageNode::LockRequest> locks;
  std::vector<int> index;  // locks[j] answers items[index[j]]
  locks.reserve(request->items_size());
  for (int i = 0; i < request->items_size(); ++i) {
    const ::cellar::v1::LockTransactionRequest& item = request->items(i);
    ::cellar::v1::LockTransactionResult* result = response->add_results();
    if (grpc::Status v = ValidateLock(item); !v.ok()) {
      SetItemStatus(v, result->mutable_status());
      continue;
    }
    StorageNode::LockRequest lock;
    lock.epoch = item.epoch();
    lock.ttid = item.ttid();
    lock.tid = item.tid();
    lock.min_ptid = item.min_ptid();
    lock.partitions.assign(item.partitions().begin(), item.partitions().end());
    locks.push_back(std::move(lock));
    index.push_back(i);
  }
  node_->LockMany(locks);
  for (size_t j = 0; j < locks.size(); ++j) {
    ::cellar::v1::LockTransactionResult* result = response->mutable_results(index[j]);
    SetItemStatus(locks[j].result, result->mutable_status());
    if (locks[j].result.ok() && locks[j].stored_oids.has_value()) {
      result->mutable_response()->set_stored_oids_known(true);
      result->mutable_response()->mutable_stored_oids()->Add(locks[j].stored_oids->begin(),
                                                             locks[j].stored_oids->end());
    }
  }
  return grpc::Status::OK;
}

grpc::Status StorageService::UnlockTransaction(
    grpc::ServerContext* /*context*/,
    const ::cellar::v1::UnlockTransactionRequest* request,
    ::cellar::v1::UnlockTransactionResponse* /*response*/) {
  std::optional<std::vector<uint64_t>> record_oids;
  if (grpc::Status v = ValidateUnlock(*request, &record_oids); !v.ok()) return v;
  return ToGrpcStatus(node_->Unlock(request->epoch(), request->ttid(), request->tid(),
                                    request->forget_lock(), record_oids));
}

grpc::Status StorageService::UnlockTransactions(
    grpc::ServerContext* /*context*/, const ::cellar::v1::UnlockTransactionsRequest* request,
    ::cellar::v1::UnlockTransactionsResponse* response) {
  if (grpc::Status v = ValidateBatch(*request); !v.ok()) return v;
  // In order: the master queues them in the order it completed the commits.
  for (const ::cellar::v1::UnlockTransactionRequest& item : request->items()) {
    ::cellar::v1::ItemStatus* result = response->add_results();
    std::optional<std::vector<uint64_t>> record_oids;
    if (grpc::Status v = ValidateUnlock(item, &record_oids); !v.ok()) {
      SetItemStatus(v, result);
      continue;
    }
    SetItemStatus(node_->Unlock(item.epoch(), item.ttid(), item.tid(), item.forget_lock(),
                                record_oids),
                  result);
  }
  return grpc::Status::OK;
}

grpc::Status StorageService::Load(grpc::ServerContext* /*context*/,
                                  const ::cellar::v1::LoadRequest* request,
                                  ::cellar::v1::LoadResponse* response) {
  absl::StatusOr<LoadedObject> loaded;
  switch (request->at_case()) {
    case ::cellar::v1::LoadRequest::kBeforeTid:
      if (request->before_tid() == 0) {
        return Invalid("before_tid: must be > 0 (the newest revision is "
                       "before_tid = last tid + 1)");
      }
      loaded = node_->LoadBefore(request->oid(), request->before_tid());
      break;
    case ::cellar::v1::LoadRequest::kSerial:
      if (BadTid(request->serial(), true)) return Invalid(TidRule("serial", true));
      loaded = node_->LoadSerial(request->oid(), request->serial());
      break;
    default:
      return Invalid("at: set before_tid or serial");
  }
  if (!loaded.ok()) return ToGrpcStatus(loaded.status());
  ToProto(std::move(*loaded), response);
  return grpc::Status::OK;
}

grpc::Status StorageService::LoadMany(grpc::ServerContext* /*context*/,
                                      const ::cellar::v1::LoadManyRequest* request,
                                      ::cellar::v1::LoadManyResponse* response) {
  if (request->oids().empty() || request->oids_size() > kMaxLoadManyOids) {
    return Invalid(absl::StrCat("oids: 1..", kMaxLoadManyOids, " oids, got ",
                                request->oids_size()));
  }
  if (request->before_tid() == 0) {
    return Invalid("before_tid: must be > 0 (the newest revision is "
                   "before_tid = last tid + 1)");
  }
  const std::vector<uint64_t> oids(request->oids().begin(), request->oids().end());
  for (absl::StatusOr<LoadedObject>& loaded :
       node_->LoadManyBefore(oids, request->before_tid(), kLoadManyBudgetBytes)) {
    ::cellar::v1::LoadManyResult* result = response->add_results();
    if (loaded.ok()) {
      ToProto(std::move(*loaded), result->mutable_revision());
      continue;
    }
    result->set_code(static_cast<uint32_t>(loaded.status().code()));
    result->set_reason(common::ErrorReason(loaded.status()));
    result->set_message(std::string(loaded.status().message()));
  }
  return grpc::Status::OK;
}

grpc::Status StorageService::History(grpc::ServerContext* /*context*/,
                                     const ::cellar::v1::HistoryRequest* request,
                                     ::cellar::v1::HistoryResponse* response) {
  if (request->limit() > kMaxHistoryLimit) {
    return Invalid(absl::StrCat("limit: at most ", kMaxHistoryLimit, ", got ",
                                request->limit()));
  }
  const uint32_t limit = request->limit() == 0 ? kDefaultHistoryLimit : request->limit();
  auto entries = node_->History(request->oid(), limit);
  if (!entries.ok()) return ToGrpcStatus(entries.status());
  response->set_oid(request->oid());
  for (const HistoryEntry& e : *entries) {
    ::cellar::v1::Revision* r = response->add_revisions();
    r->set_serial(e.serial);
    r->set_size_bytes(e.size_bytes);
    r->set_deleted(e.deleted);
    r->set_data_serial(e.data_tid);
  }
  return grpc::Status::OK;
}

grpc::Status StorageService::LastTransactions(
    grpc::ServerContext* /*context*/,
    const ::cellar::v1::LastTransactionsRequest* request,
    ::cellar::v1::LastTransactionsResponse* response) {
  if (request->limit() > kMaxLastTransactionsLimit) {
    return Invalid(absl::StrCat("limit: at most ", kMaxLastTransactionsLimit,
                                ", got ", request->limit()));
  }
  const uint32_t limit =
      request->limit() == 0 ? kDefaultLastTransactionsLimit : request->limit();
  auto records = node_->LastTransactions(limit, request->before_tid());
  if (!records.ok()) return ToGrpcStatus(records.status());
  for (const TransactionRecord& t : *records) ToProto(t, response->add_transactions());
  return grpc::Status::OK;
}

grpc::Status StorageService::GetTransaction(grpc::ServerContext* /*context*/,
                                            const ::cellar::v1::GetTransactionRequest* request,
                                            ::cellar::v1::GetTransactionResponse* response) {
  if (BadTid(request->tid(), true)) return Invalid(TidRule("tid", true));
  auto record = node_->GetTransaction(request->tid());
  if (!record.ok()) return ToGrpcStatus(record.status());
  ToProto(*record, response->mutable_transaction());
  return grpc::Status::OK;
}

grpc::Status StorageService::ScanTransactions(
    grpc::ServerContext* /*context*/, const ::cellar::v1::ScanTransactionsRequest* request,
    ::cellar::v1::ScanTransactionsResponse* response) {
  if (request->partitions().empty()) {
    return Invalid("partitions: at least one (the partitions whose records to list)");
  }
  if (request->partitions_size() > static_cast<int>(common::kMaxPartitions)) {
    return Invalid(absl::StrCat("partitions: at most ", common::kMaxPartitions, ", got ",
                                request->partitions_size()));
  }
  if (BadTid(request->max_tid(), true)) return Invalid(TidRule("max_tid", true));
  if (request->min_tid() > request->max_tid()) {
    return Invalid(absl::StrCat("min_tid: must be at most max_tid (", request->max_tid(),
                                "), got ", request->min_tid()));
  }
  if (request->limit() > kMaxScanTransactionsLimit) {
    return Invalid(absl::StrCat("limit: at most ", kMaxScanTransactionsLimit, ", got ",
                                request->limit()));
  }
  const uint32_t limit =
      request->limit() == 0 ? kDefaultScanTransactionsLimit : request->limit();
  auto page = node_->ScanTransactions(
      std::vector<uint32_t>(request->partitions().begin(), request->partitions().end()),
      request->min_tid(), request->max_tid(), limit);
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (const TransactionRecord& t : page->transactions) {
    ToProto(t, response->add_transactions());
  }
  response->set_next_min_tid(page->next_min_tid);
  return grpc::Status::OK;
}

grpc::Status StorageService::GetPartitionStats(
    grpc::ServerContext* /*context*/, const ::cellar::v1::GetPartitionStatsRequest* /*request*/,
    ::cellar::v1::GetPartitionStatsResponse* response) {
  auto stats = node_->CellStatsNow();
  if (!stats.ok()) return ToGrpcStatus(stats.status());
  response->set_ptid(stats->ptid);
  for (const CellStats& c : stats->cells) {
    ::cellar::v1::PartitionStats* out = response->add_partitions();
    out->set_partition(c.partition);
    out->set_readable(c.readable);
    out->set_objects(c.objects);
    out->set_revisions(c.revisions);
    out->set_bytes(c.bytes);
  }
  return grpc::Status::OK;
}

grpc::Status StorageService::GetNodeStatus(
    grpc::ServerContext* /*context*/,
    const ::cellar::v1::GetNodeStatusRequest* request,
    ::cellar::v1::GetNodeStatusResponse* response) {
  auto status = node_->Status(/*with_counts=*/!request->health_only());
  if (!status.ok()) return ToGrpcStatus(status.status());
  response->set_node_id(status->node_id);
  response->set_ptid(status->ptid);
  response->set_last_tid(status->last_tid);
  response->set_last_oid(status->last_oid);
  response->set_backend(status->backend);
  response->set_object_count(status->object_count);
  response->set_transaction_count(status->transaction_count);
  response->set_open_transactions(status->open_transactions);
  response->set_cluster_state(status->cluster_state);
  response->set_master_link(status->master_link);
  for (const CellReplicationStatus& r : status->replication) {
    ::cellar::v1::CellReplication* out = response->add_replication();
    out->set_partition(r.partition);
    out->set_replicated_tid(r.replicated_tid);
    out->set_target_tid(r.target_tid);
    out->set_started_from_tid(r.started_from_tid);
    out->set_chunks(r.chunks);
    out->set_bytes(r.bytes);
    out->set_active(r.active);
    out->set_last_error(r.last_error);
  }
  // Health inputs of the admin's alerts.
  response->set_backend_errors_total(status->backend_errors_total);
  if (status->disk.has_value()) {
    response->set_disk_free_bytes(status->disk->free_bytes);
    response->set_disk_total_bytes(status->disk->total_bytes);
  }
  response->set_unix_time_ms(absl::ToUnixMillis(status->now));
  return grpc::Status::OK;
}

grpc::Status StorageService::Replicate(
    grpc::ServerContext* context, const ::cellar::v1::ReplicateRequest* request,
    grpc::ServerWriter<::cellar::v1::ReplicateChunk>* writer) {
  if (BadTid(request->max_tid(), true)) return Invalid(TidRule("max_tid", true));
  if (request->min_tid() > request->max_tid()) {
    return Invalid("min_tid: must not be above max_tid");
  }
  if (request->max_records() > kMaxReplicateRecords) {
    return Invalid(absl::StrCat("max_records: at most ", kMaxReplicateRecords, ", got ",
                                request->max_records()));
  }
  if (request->max_bytes() > kMaxReplicateBytes) {
    return Invalid(absl::StrCat("max_bytes: at most ", kMaxReplicateBytes, ", got ",
                                request->max_bytes()));
  }
  ChunkLimits limits;
  limits.max_records =
      request->max_records() == 0 ? kDefaultReplicateRecords : request->max_records();
  limits.max_bytes = request->max_bytes() == 0 ? kDefaultReplicateBytes : request->max_bytes();
  absl::Status s = node_->ServeReplication(
      request->partition(), request->min_tid(), request->max_tid(), limits,
      [&](ReplicationChunk chunk) -> absl::Status {
        if (context->IsCancelled()) return absl::CancelledError("the replica went away");
        ::cellar::v1::ReplicateChunk out;
        out.set_complete_through(chunk.complete_through);
        for (TransactionRecord& t : chunk.transactions) {
          ::cellar::v1::TransactionInfo* info = out.add_transactions();
          info->set_tid(t.tid);
          info->set_ttid(t.ttid);
          info->set_user(std::move(t.user));
          info->set_description(std::move(t.description));
          info->set_extension(std::move(t.extension));
          for (uint64_t oid : t.oids) info->add_oids(oid);
          info->set_size_bytes(t.size_bytes);
          info->set_packed(t.packed);
        }
        for (ObjectRecord& o : chunk.objects) {
          ::cellar::v1::ReplicatedObject* obj = out.add_objects();
          obj->set_oid(o.oid);
          obj->set_serial(o.tid);
          obj->set_data(std::move(o.data));
          obj->set_checksum(std::move(o.checksum));
          obj->set_data_serial(o.data_tid);
        }
        if (!writer->Write(out)) return absl::CancelledError("the replica went away");
        return absl::OkStatus();
      });
  return ToGrpcStatus(s);
}

grpc::Status StorageService::GetTransactionOutcome(
    grpc::ServerContext* /*context*/,
    const ::cellar::v1::GetTransactionOutcomeRequest* request,
    ::cellar::v1::GetTransactionOutcomeResponse* response) {
  if (BadTid(request->ttid(), true)) return Invalid(TidRule("ttid", true));
  auto known = node_->TransactionOutcome(request->ttid());
  if (!known.ok()) return ToGrpcStatus(known.status());
  switch (known->kind) {
    case TransactionManager::Known::kStoring:
      response->set_state(::cellar::v1::STORAGE_TRANSACTION_STORING);
      break;
    case TransactionManager::Known::kVoted:
      response->set_state(::cellar::v1::STORAGE_TRANSACTION_VOTED);
      break;
    case TransactionManager::Known::kLocked: {
      response->set_state(::cellar::v1::STORAGE_TRANSACTION_LOCKED);
      response->set_tid(known->tid);
      // For the master's invalidation of a transaction verification found
      // committed; without them the answer still stands.
      absl::StatusOr<std::vector<uint64_t>> oids = node_->CommittedOids(known->tid);
      if (oids.ok()) response->mutable_oids()->Add(oids->begin(), oids->end());
      response->mutable_partitions()->Add(known->partitions.begin(), known->partitions.end());
      break;
    }
    case TransactionManager::Known::kAborted:
      response->set_state(::cellar::v1::STORAGE_TRANSACTION_ABORTED);
      break;
    default:
      response->set_state(::cellar::v1::STORAGE_TRANSACTION_UNKNOWN);
      break;
  }
  return grpc::Status::OK;
}

// ---- Operator actions: replica check and truncate (master only).

grpc::Status StorageService::CheckCell(grpc::ServerContext* /*context*/,
                                       const ::cellar::v1::CheckCellRequest* request,
                                       ::cellar::v1::CheckCellResponse* response) {
  if (request->min_tid() > request->max_tid()) {
    return Invalid("min_tid: must not be above max_tid");
  }
  if (request->max_transactions() > kMaxCheckTransactions) {
    return Invalid(absl::StrCat("max_transactions: at most ", kMaxCheckTransactions));
  }
  CellCheckRequest check;
  check.partition = request->partition();
  check.min_tid = request->min_tid();
  check.max_tid = request->max_tid();
  check.max_transactions = request->max_transactions();
  check.with_data = request->with_data();
  absl::StatusOr<CellCheckResult> result = node_->CheckCell(request->epoch(), check);
  if (!result.ok()) return ToGrpcStatus(result.status());
  response->set_transaction_count(result->transaction_count);
  response->set_tid_hash(result->tid_hash);
  response->set_object_count(result->object_count);
  response->set_oid_hash(result->oid_hash);
  response->set_data_hash(result->data_hash);
  response->set_last_tid(result->last_tid);
  return grpc::Status::OK;
}

grpc::Status StorageService::TruncateData(grpc::ServerContext* /*context*/,
                                          const ::cellar::v1::TruncateDataRequest* request,
                                          ::cellar::v1::TruncateDataResponse* response) {
  // tid 0 would delete every transaction: unset must not mean that.
  if (BadTid(request->tid(), true)) return Invalid(TidRule("tid", true));
  if (request->epoch() == 0) return Invalid("epoch: required (the primary's epoch)");
  absl::StatusOr<uint64_t> last_tid = node_->TruncateData(request->epoch(), request->tid());
  if (!last_tid.ok()) return ToGrpcStatus(last_tid.status());
  response->set_last_tid(*last_tid);
  return grpc::Status::OK;
}

grpc::Status StorageService::Pack(grpc::ServerContext* /*context*/,
                                  const ::cellar::v1::StoragePackRequest* request,
                                  ::cellar::v1::StoragePackResponse* response) {
  if (request->epoch() == 0) return Invalid("epoch: required (the primary's epoch)");
  // 0 reads the progress: it never means "pack everything".
  if (BadTid(request->pack_tid(), false)) return Invalid(TidRule("pack_tid", false));
  absl::StatusOr<PackStatus> status = node_->Pack(request->epoch(), request->pack_tid());
  if (!status.ok()) return ToGrpcStatus(status.status());
  ::cellar::v1::StoragePackProgress* progress = response->mutable_progress();
  progress->set_node_id(node_->node_id());
  progress->set_pack_tid(status->pack_tid);
  for (uint32_t p : status->pending_partitions) progress->add_pending_partitions(p);
  for (uint32_t p : status->done_partitions) progress->add_done_partitions(p);
  progress->set_rows_removed(status->rows_removed);
  progress->set_bytes_removed(status->bytes_removed);
  if (!status->last_error.ok()) {
    progress->set_error(std::string(status->last_error.message()).substr(0, 512));
  }
  return grpc::Status::OK;
}

grpc::Status StorageService::SaveMasterState(
    grpc::ServerContext* /*context*/, const ::cellar::v1::SaveMasterStateRequest* request,
    ::cellar::v1::SaveMasterStateResponse* /*response*/) {
  if (request->epoch() == 0) return Invalid("epoch: must not be 0");
  if (request->oid_high_water() == 0) return Invalid("oid_high_water: must not be 0");
  absl::Status s = node_->SaveMasterState(request->epoch(), request->oid_high_water());
  if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition &&
      s.code() != absl::StatusCode::kInvalidArgument) {
    // Not written: the master hands nothing out; it may retry.
    s = absl::UnavailableError(absl::StrCat("cannot save the OID high-water mark: ",
                                            s.message()));
  }
  return ToGrpcStatus(s);
}

namespace {

// A master-state save's answer: refusals as is, any other failure
// UNAVAILABLE (the master retries or counts another storage).
grpc::Status SaveAnswer(absl::Status s, absl::string_view what) {
  if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition &&
      s.code() != absl::StatusCode::kInvalidArgument) {
    s = absl::UnavailableError(absl::StrCat("cannot save ", what, ": ", s.message()));
  }
  return ToGrpcStatus(s);
}

}  // namespace

grpc::Status StorageService::SaveTokenTable(
    grpc::ServerContext* /*context*/, const ::cellar::v1::SaveTokenTableRequest* request,
    ::cellar::v1::SaveTokenTableResponse* /*response*/) {
  return SaveAnswer(node_->SaveTokenTable(request->epoch(), request->table()), "the token table");
}

grpc::Status StorageService::SaveFeatureFlags(
    grpc::ServerContext* /*context*/, const ::cellar::v1::SaveFeatureFlagsRequest* request,
    ::cellar::v1::SaveFeatureFlagsResponse* /*response*/) {
  return SaveAnswer(node_->SaveFeatureFlags(request->epoch(), request->table()),
                    "the feature flags");
}

// ---- Operator stop (Storage.Shutdown): the server decides what stopping
// means (the process in cellar-storage, this node only in `cellar local`).

grpc::Status StorageService::Shutdown(grpc::ServerContext* context,
                                      const ::cellar::v1::ShutdownRequest* request,
                                      ::cellar::v1::ShutdownResponse* /*response*/) {
  if (request->reason().size() > 1000) return Invalid("reason: at most 1000 bytes");
  if (request->node_id() == 0) return Invalid("node_id: required (the node to stop)");
  if (request->node_id() != node_->node_id()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("node_id: this node is ", common::NodeName(node_->node_id()),
                                     ", not ", common::NodeName(request->node_id())));
  }
  if (!options_.on_shutdown) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this storage cannot be stopped by rpc (no stop hook)");
  }
  std::string reason = request->reason().empty() ? "no reason given" : request->reason();
  absl::StrAppend(&reason, " (Storage.Shutdown from ", context->peer(), ")");
  return ToGrpcStatus(options_.on_shutdown(reason));
}

}  // namespace cellar::storage
