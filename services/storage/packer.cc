#include "services/storage/packer.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace cellar::storage {
namespace {

constexpr char kPackTidKey[] = "pack/tid";

std::string PartitionKey(uint32_t partition) { return absl::StrCat("pack/", partition); }

// "<tid> <o|t|d> <next>": the pack tid, the phase (objects, transaction
// records, done) and the resume key.
std::string Encode(uint64_t tid, const PackPosition& at, bool done) {
  return absl::StrCat(tid, " ", done ? "d" : (at.transactions ? "t" : "o"), " ", at.next);
}

}  // namespace

Packer::Packer(StorageBackend* backend, PackerOptions options, PartitionsFn partitions,
               ChunkFn on_chunk)
    : backend_(backend),
      options_(options),
      partitions_(std::move(partitions)),
      on_chunk_(std::move(on_chunk)) {}

absl::StatusOr<std::unique_ptr<Packer>> Packer::Open(StorageBackend* backend,
                                                     PackerOptions options,
                                                     PartitionsFn partitions,
                                                     ChunkFn on_chunk) {
  if (options.chunk_items == 0) {
    return absl::InvalidArgumentError("pack chunk size must be > 0");
  }
  std::unique_ptr<Packer> packer(
      new Packer(backend, options, std::move(partitions), std::move(on_chunk)));
  CELLAR_RETURN_IF_ERROR(packer->Load());
  return packer;
}

Packer::~Packer() { Stop(); }

absl::Status Packer::Load() {
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> tid, backend_->GetConfig(kPackTidKey));
  {
    absl::MutexLock l(&mu_);
    if (tid.has_value() && !absl::SimpleAtoi(*tid, &pack_tid_)) {
      return absl::FailedPreconditionError(
          absl::StrCat("config ", kPackTidKey, ": not a tid: ", *tid));
    }
  }
  // The cells held now: their loads tell REVISION_PACKED from the start.
  for (uint32_t p : partitions_()) CELLAR_RETURN_IF_ERROR(LoadProgress(p).status());
  return absl::OkStatus();
}

absl::StatusOr<Packer::Progress> Packer::LoadProgress(uint32_t partition) {
  Progress progress;
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> saved,
                          backend_->GetConfig(PartitionKey(partition)));
  if (saved.has_value()) {
    std::vector<std::string> parts = absl::StrSplit(*saved, ' ');
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &progress.tid) ||
        !absl::SimpleAtoi(parts[2], &progress.at.next)) {
      return absl::FailedPreconditionError(
          absl::StrCat("config ", PartitionKey(partition), ": unreadable: ", *saved));
    }
    progress.at.transactions = parts[1] == "t";
    progress.done = parts[1] == "d";
  }
  absl::MutexLock l(&mu_);
  progress_[partition] = progress;
  return progress;
}

void Packer::Start() {
  absl::MutexLock l(&mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Packer::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status Packer::Request(uint64_t pack_tid) {
  if (pack_tid == 0) return absl::InvalidArgumentError("pack tid must not be 0");
  absl::MutexLock run(&run_mu_);
  {
    absl::MutexLock l(&mu_);
    if (pack_tid <= pack_tid_) return absl::OkStatus();
  }
  CELLAR_RETURN_IF_ERROR(backend_->SetConfig(kPackTidKey, absl::StrCat(pack_tid)));
  absl::MutexLock l(&mu_);
  pack_tid_ = pack_tid;
  ++wakeups_;
  CELLAR_LOG(INFO) << "pack requested at tid " << pack_tid;
  return absl::OkStatus();
}

absl::Status Packer::ForgetPartition(uint32_t partition) {
  absl::MutexLock run(&run_mu_);  // not while a chunk of it runs
  CELLAR_RETURN_IF_ERROR(
      backend_->SetConfig(PartitionKey(partition), Encode(0, PackPosition{}, false)));
  absl::MutexLock l(&mu_);
  progress_[partition] = Progress{};
  return absl::OkStatus();
}

uint64_t Packer::PackedTid(uint32_t partition) const {
  absl::MutexLock l(&mu_);
  auto it = progress_.find(partition);
  return it == progress_.end() ? 0 : it->second.tid;
}

PackStatus Packer::Status() const {
  std::vector<uint32_t> partitions = partitions_();
  absl::MutexLock l(&mu_);
  PackStatus s;
  s.pack_tid = pack_tid_;
  s.rows_removed = rows_removed_;
  s.bytes_removed = bytes_removed_;
  s.last_error = last_error_;
  if (pack_tid_ == 0) return s;
  for (uint32_t p : partitions) {
    auto it = progress_.find(p);
    const bool done = it != progress_.end() && it->second.tid >= pack_tid_ && it->second.done;
    (done ? s.done_partitions : s.pending_partitions).push_back(p);
  }
  return s;
}

absl::StatusOr<bool> Packer::RunOneChunk() {
  absl::MutexLock run(&run_mu_);
  uint64_t target;
  {
    absl::MutexLock l(&mu_);
    target = pack_tid_;
  }
  if (target == 0) return false;
  for (uint32_t p : partitions_()) {
    Progress progress;
    bool known;
    {
      absl::MutexLock l(&mu_);
      auto it = progress_.find(p);
      known = it != progress_.end();
      if (known) progress = it->second;
    }
    if (!known) {
      CELLAR_ASSIGN_OR_RETURN(progress, LoadProgress(p));
    }
    if (progress.tid >= target && progress.done) continue;
    if (progress.tid != target) progress = Progress{target, PackPosition{}, false};
    CELLAR_ASSIGN_OR_RETURN(
        PackChunk chunk,
        backend_->PackPartition(p, target, progress.at, options_.chunk_items));
    progress.at = chunk.next;
    progress.done = chunk.done;
    {
      // Before the position is saved: a load of a revision this chunk
      // removed says REVISION_PACKED.
      absl::MutexLock l(&mu_);
      progress_[p] = progress;
      rows_removed_ += chunk.rows_removed;
      bytes_removed_ += chunk.bytes_removed;
    }
    CELLAR_RETURN_IF_ERROR(
        backend_->SetConfig(PartitionKey(p), Encode(target, progress.at, progress.done)));
    if (on_chunk_) on_chunk_(chunk);
    if (chunk.done) {
      CELLAR_LOG(INFO) << "partition " << p << " packed at tid " << target;
    }
    return true;
  }
  return false;
}

absl::Status Packer::RunUntilIdle() {
  for (;;) {
    absl::StatusOr<bool> worked = RunOneChunk();
    {
      absl::MutexLock l(&mu_);
      last_error_ = worked.status();
    }
    if (!worked.ok()) return worked.status();
    if (!*worked) return absl::OkStatus();
  }
}

void Packer::Loop() {
  for (;;) {
    absl::StatusOr<bool> worked = RunOneChunk();
    absl::Duration wait = absl::Seconds(1);  // idle: look for new cells now and then
    {
      absl::MutexLock l(&mu_);
      last_error_ = worked.status();
      if (!worked.ok()) {
        CELLAR_LOG(WARNING) << "pack chunk failed: " << worked.status();
        wait = options_.retry;
      } else if (*worked) {
        wait = options_.pause;
      }
      const uint64_t seen = wakeups_;
      auto woken = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || wakeups_ != seen;
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
      if (stopping_) return;
    }
  }
}

}  // namespace cellar::storage
