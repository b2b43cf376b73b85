#ifndef CELLAR_SERVICES_STORAGE_PACKER_H_
#define CELLAR_SERVICES_STORAGE_PACKER_H_

// The background pack of one storage node (docs/lifecycle.md): packs each
// cell the node can pack at the highest pack tid requested, one
// StorageBackend::PackPartition chunk at a time (each its own short
// database transaction) with a pause between chunks, on a thread of its
// own. The requested tid and every partition's position are persisted in
// the backend's config (keys "pack/tid" and "pack/<partition>") after
// each chunk, so a restarted node resumes where it was.
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

struct PackerOptions {
  // Oids (or transaction records) examined per chunk. Default 500.
  uint32_t chunk_items = 500;
  // Pause after each chunk (the pack's rate limit: it yields the database
  // to commits, loads and replication). Default 50 ms.
  absl::Duration pause = absl::Milliseconds(50);
  // Pause when a chunk failed before trying again. Default 1 s.
  absl::Duration retry = absl::Seconds(1);
};

// What the packer has done and has left.
struct PackStatus {
  // The highest pack tid requested (0: never).
  uint64_t pack_tid = 0;
  // Partitions of the node's packable cells not packed at pack_tid yet.
  std::vector<uint32_t> pending_partitions;
  // Partitions packed at pack_tid.
  std::vector<uint32_t> done_partitions;
  // Since this process started.
  uint64_t rows_removed = 0;
  uint64_t bytes_removed = 0;
  // The last chunk's error (OK if none).
  absl::Status last_error;
};

class Packer {
 public:
  // The partitions the node may pack now: its readable cells (an
  // OUT_OF_DATE cell is being written by replication, which may import
  // revisions older than the pack tid; it is packed once caught up).
  using PartitionsFn = std::function<std::vector<uint32_t>()>;
  // Called after each chunk (metrics): rows and bytes it removed.
  using ChunkFn = std::function<void(const PackChunk&)>;

  // Reads the persisted request and positions. `backend` must outlive
  // the packer.
  static absl::StatusOr<std::unique_ptr<Packer>> Open(StorageBackend* backend,
                                                      PackerOptions options,
                                                      PartitionsFn partitions,
                                                      ChunkFn on_chunk = nullptr);
  ~Packer();  // Stop()s

  // Starts the background thread.
  void Start();
  // Stops it (waits for the chunk in progress). Idempotent.
  void Stop();

  // Asks for a pack at `pack_tid` (persisted first). A tid at or below the
  // one already requested changes nothing (OK). INVALID_ARGUMENT for 0.
  absl::Status Request(uint64_t pack_tid);

  PackStatus Status() const;

  // The cell of `partition` is dropped or created anew (its data deleted,
  // to be replicated again, maybe from a source not packed yet): its pack
  // position is reset (persisted) so that it is packed again once
  // readable.
  absl::Status ForgetPartition(uint32_t partition);

  // The tid a pack of `partition` started at (0: never packed): a load
  // there that finds nothing at or below it may have lost its revision to
  // the pack (REVISION_PACKED).
  uint64_t PackedTid(uint32_t partition) const;

  // One chunk of the first partition with work to do; false when none
  // has any. The thread's body; tests call it directly.
  absl::StatusOr<bool> RunOneChunk();
  // Runs chunks until every partition is packed or one fails (tests).
  absl::Status RunUntilIdle();

 private:
  struct Progress {
    uint64_t tid = 0;  // the pack tid this position is for
    PackPosition at;
    bool done = false;
  };

  Packer(StorageBackend* backend, PackerOptions options, PartitionsFn partitions,
         ChunkFn on_chunk);
  absl::Status Load();
  // Reads `partition`'s saved position into progress_.
  absl::StatusOr<Progress> LoadProgress(uint32_t partition);
  void Loop();

  StorageBackend* const backend_;
  const PackerOptions options_;
  const PartitionsFn partitions_;
  const ChunkFn on_chunk_;

  mutable absl::Mutex mu_;
  uint64_t pack_tid_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint32_t, Progress> progress_ ABSL_GUARDED_BY(mu_);
  uint64_t rows_removed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_removed_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex run_mu_;  // one chunk at a time
  std::thread thread_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_PACKER_H_
