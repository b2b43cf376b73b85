#include "services/storage/write_batcher.h"

#include <algorithm>
#include <utility>

namespace cellar::storage {

WriteBatcher::WriteBatcher(StorageBackend* backend, WriteBatcherOptions options)
    : backend_(backend), options_(std::move(options)) {
  const int n = std::max(1, options_.writer_threads);
  for (int i = 0; i < n; ++i) writers_.emplace_back([this] { WriterLoop(); });
}

WriteBatcher::~WriteBatcher() { Shutdown(); }

absl::Status WriteBatcher::StoreVote(VoteRecord vote) {
  Request request;
  request.is_vote = true;
  request.vote = std::move(vote);
  return Submit(&request);
}

absl::Status WriteBatcher::Lock(LockRecord lock) {
  Request request;
  request.lock = lock;
  return Submit(&request);
}

std::vector<absl::Status> WriteBatcher::LockMany(std::vector<LockRecord> locks) {
  std::vector<Request> requests(locks.size());
  for (size_t i = 0; i < locks.size(); ++i) requests[i].lock = std::move(locks[i]);
  absl::MutexLock l(&mu_);
  for (Request& r : requests) {
    mu_.Await(absl::Condition(this, &WriteBatcher::CanEnqueue));
    if (shutdown_) {
      r.result = absl::UnavailableError("storage node is shutting down");
      r.done = true;
      continue;
    }
    queue_.push_back(&r);
  }
  auto all_done = [&requests]() {
    return std::all_of(requests.begin(), requests.end(),
                       [](const Request& r) { return r.done; });
  };
  mu_.Await(absl::Condition(&all_done));
  std::vector<absl::Status> results;
  results.reserve(requests.size());
  for (Request& r : requests) results.push_back(std::move(r.result));
  return results;
}

absl::Status WriteBatcher::Submit(Request* request) {
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(this, &WriteBatcher::CanEnqueue));
  if (shutdown_) return absl::UnavailableError("storage node is shutting down");
  queue_.push_back(request);
  mu_.Await(absl::Condition(&request->done));
  return request->result;
}

bool WriteBatcher::CanEnqueue() const {
  return shutdown_ || queue_.size() < std::max<size_t>(1, options_.max_queue);
}

bool WriteBatcher::HasWork() const { return shutdown_ || !queue_.empty(); }

size_t WriteBatcher::queued() const {
  absl::MutexLock l(&mu_);
  return queue_.size();
}

void WriteBatcher::WriterLoop() {
  const size_t max_batch = std::max<size_t>(1, options_.max_batch);
  while (true) {
    std::vector<Request*> batch;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &WriteBatcher::HasWork));
      if (queue_.empty()) return;  // shut down and drained
      while (!queue_.empty() && batch.size() < max_batch) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    WriteBatch(batch);
    absl::MutexLock l(&mu_);
    for (Request* r : batch) r->done = true;
  }
}

void WriteBatcher::WriteBatch(std::vector<Request*>& batch) {
  std::vector<Request*> votes, locks;
  for (Request* r : batch) (r->is_vote ? votes : locks).push_back(r);

  if (!votes.empty()) {
    std::vector<VoteRecord> records;
    records.reserve(votes.size());
    for (Request* r : votes) records.push_back(std::move(r->vote));
    absl::Status s = backend_->StoreVotes(records);
    if (options_.on_batch) options_.on_batch(records.size());
    if (s.ok() || records.size() == 1) {
      for (Request* r : votes) r->result = s;
    } else {
      // Isolate the failure: one record per call.
      for (size_t i = 0; i < votes.size(); ++i) {
        votes[i]->result = backend_->StoreVotes({records[i]});
        if (options_.on_batch) options_.on_batch(1);
      }
    }
  }
  if (!locks.empty()) {
    std::vector<LockRecord> records;
    records.reserve(locks.size());
    for (Request* r : locks) records.push_back(r->lock);
    absl::Status s = backend_->LockTransactions(records);
    if (options_.on_batch) options_.on_batch(records.size());
    if (s.ok() || records.size() == 1) {
      for (Request* r : locks) r->result = s;
    } else {
      for (size_t i = 0; i < locks.size(); ++i) {
        locks[i]->result = backend_->LockTransactions({records[i]});
        if (options_.on_batch) options_.on_batch(1);
      }
    }
  }
}

void WriteBatcher::Shutdown() {
  absl::MutexLock join(&join_mu_);
  {
    absl::MutexLock l(&mu_);
    shutdown_ = true;
  }
  for (std::thread& t : writers_) {
    if (t.joinable()) t.join();
  }
  writers_.clear();
}

}  // namespace cellar::storage
