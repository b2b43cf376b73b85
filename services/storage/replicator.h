#ifndef CELLAR_SERVICES_STORAGE_REPLICATOR_H_
#define CELLAR_SERVICES_STORAGE_REPLICATOR_H_

// The receiving side of replication: catches this node's OUT_OF_DATE cells
// up from readable cells of other storages (docs/design.md, "Replication").
//
// One round for partition p:
//   progress = config "replication.<p>" (durable: every transaction of p
//              with tid <= progress is here; 0 if unknown)
//   Report(p, progress) to the master -> up to date (done), or a range
//              (max(min_tid, progress), max_tid] and source addresses
//   Fetch the range from a source (Storage.Replicate), chunk by chunk:
//              verify every checksum, ImportCommitted (idempotent), and at
//              each window end store progress = complete_through; a
//              checksum mismatch or a broken stream moves on to the next
//              source, resuming from the progress reached
//   Report(p, max_tid) -> the master marks the cell UP_TO_DATE when that
//              covers everything the cell may have missed, else another
//              round (transactions that committed meanwhile).
// A restarted node resumes from its stored progress instead of starting
// over. New writes keep reaching the cell meanwhile (an OUT_OF_DATE cell
// is writable, without conflict checks).
//
// Throttling: after each chunk the replicator sleeps so that its rate
// stays under `busy_bytes_per_second` while client traffic is seen (the
// configured minimum speed: replication yields to clients but never stops)
// and under `idle_bytes_per_second` otherwise (0 = as fast as it goes).
//
// Thread-safe. One background thread (Start) replicates the cells one
// after the other; ReplicateOnce can also be driven by hand (tests).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/replication_source.h"
#include "services/storage/storage_metrics.h"

namespace cellar::storage {

// What the master answers to a progress report (ReportReplication).
struct ReplicationTarget {
  bool up_to_date = false;
  // Copy from max(min_tid, own progress) + 1 up to max_tid.
  uint64_t min_tid = 0;
  uint64_t max_tid = 0;
  struct Source {
    uint32_t node_id = 0;
    std::string address;
  };
  std::vector<Source> sources;
};

// One fetch from a source (ReplicateRequest).
struct FetchRequest {
  uint32_t partition = 0;
  uint64_t min_tid = 0;  // inclusive
  uint64_t max_tid = 0;  // inclusive
  ChunkLimits limits;
};

// How the replicator reaches the master and the other storages.
// Implementations are thread-safe.
class ReplicationPeers {
 public:
  virtual ~ReplicationPeers() = default;
  // Master.ReportReplication for this node.
  virtual absl::StatusOr<ReplicationTarget> Report(uint32_t partition, uint64_t tid) = 0;
  // Storage.Replicate on `address`: calls `on_chunk` for every chunk, in
  // order, until the stream ends or `on_chunk` fails (then returns that).
  virtual absl::Status Fetch(const std::string& address, const FetchRequest& request,
                             const std::function<absl::Status(ReplicationChunk)>& on_chunk) = 0;
  // Ends fetches in progress (shutdown). Default: nothing.
  virtual void Cancel() {}
};

struct ReplicatorOptions {
  // Records and bytes per chunk asked from sources. Defaults 1000, 4 MiB.
  uint32_t chunk_records = 1000;
  uint64_t chunk_bytes = 4 << 20;
  // Rate while client traffic is seen (the minimum speed). 0 = no limit.
  // Default 8 MiB/s.
  uint64_t busy_bytes_per_second = 8 << 20;
  // Rate without client traffic. 0 = no limit (default).
  uint64_t idle_bytes_per_second = 0;
  // Wait between rounds after an error or while the master says the cell
  // still misses transactions in flight. Default 200 ms.
  absl::Duration retry_delay = absl::Milliseconds(200);
  // Re-check this node's cells at least this often. Default 1 s.
  absl::Duration poll_interval = absl::Seconds(1);
  // Tests: after this many chunks (whole process), stop making progress
  // (block until Stop). 0 = never. Default 0.
  int pause_after_chunks = 0;
};

// Replication state of one cell, for status output.
struct CellReplicationStatus {
  uint32_t partition = 0;
  uint64_t replicated_tid = 0;
  uint64_t target_tid = 0;
  uint64_t started_from_tid = 0;
  uint64_t chunks = 0;
  uint64_t bytes = 0;
  bool active = false;
  std::string last_error;
};

// Config key of the durable progress of `partition`.
std::string ReplicationProgressKey(uint32_t partition);

class Replicator {
 public:
  // None owned; all must outlive the replicator. `metrics` may be null.
  // `client_activity` returns a counter of client data-path calls (its
  // change between two chunks means "busy").
  Replicator(StorageBackend* backend, ReplicationPeers* peers, ReplicatorOptions options,
             StorageMetrics* metrics, std::function<uint64_t()> client_activity);
  ~Replicator();  // Stop()

  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // Starts the background thread; `cells` returns the partitions to
  // replicate now (this node's OUT_OF_DATE cells while it is registered
  // and the cluster RUNNING; empty otherwise). Call once.
  void Start(std::function<std::vector<uint32_t>()> cells);
  // Wakes the thread (the table changed).
  void Wake();
  // Stops the thread (an ongoing fetch ends at its next chunk). Idempotent.
  void Stop();

  // One round for `partition` (see the header comment): true once the
  // master says the cell is up to date, false if more rounds are needed;
  // the error of the master or of every source otherwise.
  absl::StatusOr<bool> ReplicateOnce(uint32_t partition);

  // Durable progress of `partition` (0 if none).
  absl::StatusOr<uint64_t> Progress(uint32_t partition);

  // This node's cell of `partition` was discarded (or is to be filled
  // again from scratch): stores progress 0 and makes any round of it in
  // progress stop before it writes anything more. Once this returns, no
  // earlier round imports records or saves progress for `partition`, so
  // the caller may delete the partition's data and a cell added later
  // replicates from the start.
  absl::Status ForgetPartition(uint32_t partition);
  // Called by ForgetPartition after the progress is reset (the node resets
  // the cell's pack position there). Set before Start().
  void set_on_forget(std::function<absl::Status(uint32_t partition)> on_forget) {
    on_forget_ = std::move(on_forget);
  }

  // Truncate to `tid`: the stored progress of every partition below
  // `num_partitions` that is above `tid` is lowered to `tid` (what is
  // re-committed above it must be fetched again), and rounds in progress
  // stop before they write more (as ForgetPartition). Progress at or below
  // `tid` is kept.
  absl::Status TruncateProgress(uint32_t num_partitions, uint64_t tid);

  // Every cell worked on since start.
  std::vector<CellReplicationStatus> Status() const;
  // Chunks imported since start (all cells).
  uint64_t total_chunks() const;

 private:
  std::function<absl::Status(uint32_t)> on_forget_;
  void Loop(std::function<std::vector<uint32_t>()> cells);
  absl::Status SaveProgress(uint32_t partition, uint64_t tid);
  // ABORTED if ForgetPartition(partition) ran since `generation` was read.
  absl::Status CheckGeneration(uint32_t partition, uint64_t generation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  uint64_t Generation(uint32_t partition) const;
  // Imports one chunk (verified), saves progress; throttles. Writes
  // nothing if the partition was forgotten since `generation`.
  absl::Status Apply(uint32_t partition, uint64_t generation, ReplicationChunk chunk,
                     uint64_t* progress);
  void Throttle(uint64_t bytes, absl::Time chunk_start);
  bool stopping() const;
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StorageBackend* const backend_;
  ReplicationPeers* const peers_;
  const ReplicatorOptions options_;
  StorageMetrics* const metrics_;
  const std::function<uint64_t()> client_activity_;

  // Held across a round's backend writes (import + progress) and by
  // ForgetPartition, so that the two never interleave.
  mutable absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped by ForgetPartition.
  std::map<uint32_t, uint64_t> generations_ ABSL_GUARDED_BY(mu_);
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::map<uint32_t, CellReplicationStatus> cells_ ABSL_GUARDED_BY(mu_);
  uint64_t total_chunks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_activity_ = 0;  // replication thread only
  std::thread thread_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_REPLICATOR_H_
