#ifndef CELLAR_SERVICES_STORAGE_BACKEND_PACK_PLAN_H_
#define CELLAR_SERVICES_STORAGE_BACKEND_PACK_PLAN_H_

// What a pack does to the revisions of one oid (StorageBackend::
// PackPartition), computed once for every backend so that they all pack
// to the same rows (replicas packed at the same tid stay hash-equal).
//
// The revision current at the pack tid (the newest with tid <= pack tid,
// "K") and every newer one are kept; every older one is removed. A kept
// undo revision whose back-pointer (data_tid) leads into the removed ones
// would dangle: the oldest kept revision leading to a removed revision T
// takes T's bytes (its data_id and checksum, data_tid 0) and every other
// kept revision leading to T points at that one instead. T's bytes are
// then not freed. A deletion current at the pack tid is kept (a row
// without bytes): the oid keeps its last serial, so conflict checks and
// the highest oid a node reports do not move back.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace cellar::storage {

// PackPartition's argument checks, the same for every backend:
// INVALID_ARGUMENT for pack_tid 0 or above the largest tid (a pack of
// "everything" is never implied by a field left unset) or max_items 0.
absl::Status CheckPackArguments(uint64_t pack_tid, uint32_t max_items);

// One committed revision of the oid being packed.
struct PackRow {
  uint64_t tid = 0;
  uint64_t data_tid = 0;
  // The row's own bytes: a backend's `data` id, any non-zero value for a
  // backend without one; 0 = none (a deletion or an undo record).
  int64_t data_id = 0;
  std::string checksum;
  // Length of the row's own bytes (0 without).
  uint64_t data_len = 0;
};

// A kept revision to update in place.
struct PackRewrite {
  uint64_t tid = 0;
  // The new back-pointer (0: the row now holds its bytes itself).
  uint64_t data_tid = 0;
  // Set when the row takes the bytes of the removed revision `source_tid`
  // (data_id / checksum are that revision's; data_id 0 when it was a
  // deletion). Otherwise source_tid is 0 and only data_tid changes.
  uint64_t source_tid = 0;
  int64_t data_id = 0;
  std::string checksum;
};

struct OidPackPlan {
  // Ascending; empty when there is nothing to pack.
  std::vector<uint64_t> removed_tids;
  // The `data` ids only removed revisions used (to delete with them).
  std::vector<int64_t> freed_data_ids;
  uint64_t bytes_freed = 0;
  std::vector<PackRewrite> rewrites;
  // Change of the partition's live-object count (-1 when the latest
  // revision was an undo of a removed deletion and becomes a deletion).
  int64_t objects_delta = 0;
};

// `rows`: every committed revision of one oid, ascending tid.
OidPackPlan PlanOidPack(const std::vector<PackRow>& rows, uint64_t pack_tid);

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_BACKEND_PACK_PLAN_H_
