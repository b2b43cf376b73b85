#ifndef CELLAR_SERVICES_STORAGE_WRITE_BATCHER_H_
#define CELLAR_SERVICES_STORAGE_WRITE_BATCHER_H_

// Group commit for the commit path. Callers submit a vote (VoteRecord) or a
// lock (LockRecord) and block until it is durable. Writer threads take
// everything queued (up to max_batch records) and write it with ONE
// StoreVotes and/or ONE LockTransactions call, so many concurrent commits
// share one database transaction and one fsync.
//
// Within a batch, votes are written before locks. If a batch call fails and
// held more than one record, each record is retried alone, so one bad
// record fails only its own caller.
//
// The queue is bounded: a submit blocks while max_queue requests wait
// (back-pressure on the gRPC threads). After Shutdown() the writers finish
// what is queued, then stop; later submits fail with UNAVAILABLE.
//
// Thread-safe.

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

struct WriteBatcherOptions {
  // Writer threads, i.e. backend calls in flight at once. Default 1 (right
  // for SQLite, which has one writer); PostgreSQL benefits from a few.
  int writer_threads = 1;
  // Requests that may wait in the queue before submitters block.
  // Default 4096.
  size_t max_queue = 4096;
  // Most records written by one backend call. Default 512.
  size_t max_batch = 512;
  // Called after each backend call with its record count (metrics).
  // Default: none.
  std::function<void(size_t records)> on_batch;
};

class WriteBatcher {
 public:
  // `backend` is not owned and must outlive the batcher. Starts the writers.
  WriteBatcher(StorageBackend* backend, WriteBatcherOptions options);
  ~WriteBatcher();  // Shutdown()

  WriteBatcher(const WriteBatcher&) = delete;
  WriteBatcher& operator=(const WriteBatcher&) = delete;

  // Writes `vote` (StoreVotes) durably; blocks until done.
  absl::Status StoreVote(VoteRecord vote);
  // Applies `lock` (LockTransactions) durably; blocks until done.
  absl::Status Lock(LockRecord lock);
  // Applies every lock of `locks`, queued together so that a writer takes
  // them in one batch (up to max_batch); blocks until all are done. One
  // status per lock (same order): a failing lock fails only itself.
  std::vector<absl::Status> LockMany(std::vector<LockRecord> locks);

  // Requests waiting for a writer (not those being written).
  size_t queued() const;

  // Stops accepting requests, lets the writers drain the queue, joins them.
  // Idempotent.
  void Shutdown();

 private:
  struct Request {
    bool is_vote = false;
    VoteRecord vote;
    LockRecord lock;
    absl::Status result;
    bool done = false;
  };

  absl::Status Submit(Request* request);
  bool CanEnqueue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriterLoop();
  void WriteBatch(std::vector<Request*>& batch);

  StorageBackend* const backend_;
  const WriteBatcherOptions options_;
  mutable absl::Mutex mu_;
  std::deque<Request*> queue_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> writers_;
  absl::Mutex join_mu_;  // serializes Shutdown()
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_WRITE_BATCHER_H_
