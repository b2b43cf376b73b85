#ifndef CELLAR_SERVICES_STORAGE_CELL_CHECKER_H_
#define CELLAR_SERVICES_STORAGE_CELL_CHECKER_H_

// Counts and hashes the committed records of one partition over a tid
// range, for replica checks (Storage.CheckCell, semantics.md "check").
// Two cells hold the same records over a range exactly when their results
// for that range are equal (up to SHA-1 collisions).
//
// Hashes (SHA-1, 20 bytes, over 8-byte big-endian integers):
//   tid_hash   the tids of the partition's transaction records, ascending;
//   oid_hash   the (tid, oid) pairs of its object revisions, ascending;
//   data_hash  (with_data only; empty otherwise) for every revision in the
//              same order: tid, oid, data_tid, the stored checksum, the
//              data length and the data bytes.
//
// Chunking: at most `max_transactions` distinct tids are covered, whether
// they come from transaction records or from object revisions (a
// partition may hold objects of transactions whose record lives in
// another partition); the covered range is then [min_tid, last_tid], with
// last_tid < max_tid only when the cap cut it short. Work and memory are
// bounded by the cap: objects are read page by page.
//
// Thread-safe (stateless over a thread-safe backend).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

// Limits of max_transactions (storage.proto CheckCellRequest).
inline constexpr uint32_t kMaxCheckTransactions = 100000;
inline constexpr uint32_t kDefaultCheckTransactions = 10000;

struct CellCheckRequest {
  uint32_t partition = 0;
  // Inclusive range; min_tid <= max_tid.
  uint64_t min_tid = 0;
  uint64_t max_tid = 0;
  // 1..kMaxCheckTransactions; 0 = kDefaultCheckTransactions.
  uint32_t max_transactions = 0;
  bool with_data = false;
};

struct CellCheckResult {
  uint64_t transaction_count = 0;
  std::string tid_hash;
  uint64_t object_count = 0;
  std::string oid_hash;
  std::string data_hash;  // empty unless with_data
  // The covered range is [min_tid, last_tid].
  uint64_t last_tid = 0;
};

class CellChecker {
 public:
  // `backend` is not owned and must outlive the checker. `object_page`:
  // object revisions read per backend call (default 1000).
  explicit CellChecker(StorageBackend* backend, uint32_t object_page = 1000);

  // See the class comment. INVALID_ARGUMENT for min_tid > max_tid or
  // max_transactions above the limit; backend errors as they come. The
  // caller checks that the partition is readable here.
  absl::StatusOr<CellCheckResult> Check(const CellCheckRequest& request) const;

 private:
  StorageBackend* const backend_;
  const uint32_t object_page_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_CELL_CHECKER_H_
