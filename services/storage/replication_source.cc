#include "services/storage/replication_source.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/ids.h"
#include "services/common/status_macros.h"

namespace cellar::storage {
namespace {

// Objects fetched per backend call: bounds the memory a window needs
// whatever max_records says (objects can be MiBs each).
constexpr uint32_t kMaxObjectPage = 100;

uint64_t SizeOf(const TransactionRecord& t) {
  return t.user.size() + t.description.size() + t.extension.size() + 8 * t.oids.size() + 32;
}

uint64_t SizeOf(const ObjectRecord& o) { return o.data.size() + o.checksum.size() + 32; }

// Accumulates records into chunks and emits them when full.
class ChunkWriter {
 public:
  ChunkWriter(const ChunkLimits& limits,
              const std::function<absl::Status(ReplicationChunk)>& emit)
      : limits_(limits), emit_(emit) {}

  absl::Status Add(TransactionRecord t) {
    bytes_ += SizeOf(t);
    chunk_.transactions.push_back(std::move(t));
    return MaybeFlush();
  }
  absl::Status Add(ObjectRecord o) {
    bytes_ += SizeOf(o);
    chunk_.objects.push_back(std::move(o));
    return MaybeFlush();
  }
  // Ends a window: the last chunk (possibly empty) says so.
  absl::Status Complete(uint64_t through) {
    chunk_.complete_through = through;
    return Flush();
  }

 private:
  absl::Status MaybeFlush() {
    const size_t records = chunk_.transactions.size() + chunk_.objects.size();
    if (records >= limits_.max_records || bytes_ >= limits_.max_bytes) return Flush();
    return absl::OkStatus();
  }
  absl::Status Flush() {
    ReplicationChunk out = std::move(chunk_);
    chunk_ = ReplicationChunk();
    bytes_ = 0;
    return emit_(std::move(out));
  }

  const ChunkLimits& limits_;
  const std::function<absl::Status(ReplicationChunk)>& emit_;
  ReplicationChunk chunk_;
  uint64_t bytes_ = 0;
};

}  // namespace

uint64_t ReplicationChunk::ByteSize() const {
  uint64_t n = 0;
  for (const TransactionRecord& t : transactions) n += SizeOf(t);
  for (const ObjectRecord& o : objects) n += SizeOf(o);
  return n;
}

absl::Status StreamPartition(StorageBackend& backend, uint32_t partition,
                             uint64_t min_tid, uint64_t max_tid,
                             const ChunkLimits& limits,
                             const std::function<absl::Status(ReplicationChunk)>& emit) {
  if (limits.max_records == 0) {
    return absl::InvalidArgumentError("max_records must be at least 1");
  }
  if (min_tid > max_tid) {
    return absl::InvalidArgumentError(absl::StrCat("min_tid ", common::TidHex(min_tid),
                                                   " is above max_tid ",
                                                   common::TidHex(max_tid)));
  }
  max_tid = std::min<uint64_t>(max_tid, common::kMaxTid);
  const uint32_t page = std::min(limits.max_records, kMaxObjectPage);
  ChunkWriter writer(limits, emit);
  uint64_t cursor = min_tid;
  while (cursor <= max_tid) {
    // The window: at most max_records transaction records...
    CELLAR_ASSIGN_OR_RETURN(
        std::vector<TransactionRecord> transactions,
        backend.ListTransactions(partition, cursor, max_tid, limits.max_records));
    uint64_t end = transactions.size() == limits.max_records ? transactions.back().tid
                                                             : max_tid;
    // ...and about one page of objects: a full page ends the window at
    // the tid of its last object.
    CELLAR_ASSIGN_OR_RETURN(std::vector<ObjectRecord> objects,
                            backend.ListObjectsFrom(partition, cursor, 0, end, page));
    if (objects.size() == page && objects.back().tid < end) end = objects.back().tid;
    for (TransactionRecord& t : transactions) {
      if (t.tid > end) break;
      CELLAR_RETURN_IF_ERROR(writer.Add(std::move(t)));
    }
    // Objects of [cursor, end], paged by (tid, oid).
    while (true) {
      const bool more = objects.size() == page;
      uint64_t next_tid = 0, next_oid = 0;
      if (more) {
        next_tid = objects.back().tid;
        next_oid = objects.back().oid + 1;
      }
      bool past_end = false;
      for (ObjectRecord& o : objects) {
        if (o.tid > end) {
          past_end = true;
          break;
        }
        CELLAR_RETURN_IF_ERROR(writer.Add(std::move(o)));
      }
      if (!more || past_end || next_oid == 0 /* oid wrapped */) break;
      CELLAR_ASSIGN_OR_RETURN(objects, backend.ListObjectsFrom(partition, next_tid,
                                                               next_oid, end, page));
    }
    CELLAR_RETURN_IF_ERROR(writer.Complete(end));
    if (end >= max_tid) break;
    cursor = end + 1;
  }
  return absl::OkStatus();
}

}  // namespace cellar::storage
