#ifndef CELLAR_SERVICES_STORAGE_REPLICATION_SOURCE_H_
#define CELLAR_SERVICES_STORAGE_REPLICATION_SOURCE_H_

// The sending side of replication (Storage.Replicate): cuts the committed
// records of one partition over a tid range into chunks, in tid order.
//
// The range is walked in windows [cursor, end]: a window holds at most
// `max_records` transaction records and, roughly, one page of object
// records (all objects of the window's last tid are always included, paged
// through by (tid, oid)). Within a window the transaction records come
// first, then the objects; a window may span several chunks (each chunk at
// most `max_records` records and about `max_bytes` bytes); the window's
// last chunk carries complete_through = end: the receiver then holds
// every record with min_tid <= tid <= end. An empty range is one empty
// chunk with complete_through = max_tid.
//
// Records are sent as stored (undo records unresolved, checksums as the
// client sent them): the receiver verifies them.
//
// Stateless, thread-compatible (the backend is thread-safe).

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

// One chunk of a replication stream (ReplicateChunk on the wire).
struct ReplicationChunk {
  std::vector<TransactionRecord> transactions;
  std::vector<ObjectRecord> objects;
  // Non-zero: the receiver now holds every record with tid <= this (of the
  // range asked).
  uint64_t complete_through = 0;

  // Payload size, roughly (data, checksums, metadata).
  uint64_t ByteSize() const;
};

struct ChunkLimits {
  // Most records (transactions + objects) per chunk, >= 1. Default 1000.
  uint32_t max_records = 1000;
  // A chunk is cut once it holds this many bytes (a single bigger object
  // travels alone). Default 4 MiB.
  uint64_t max_bytes = 4 << 20;
};

// Emits the chunks of `partition` over [min_tid, max_tid] (see above).
// Stops at the first non-OK status of `emit` or of the backend and returns
// it. INVALID_ARGUMENT if min_tid > max_tid or max_records is 0.
absl::Status StreamPartition(StorageBackend& backend, uint32_t partition,
                             uint64_t min_tid, uint64_t max_tid,
                             const ChunkLimits& limits,
                             const std::function<absl::Status(ReplicationChunk)>& emit);

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_REPLICATION_SOURCE_H_
