#include "services/storage/replicator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace cellar::storage {

using ::cellar::common::TidHex;

std::string ReplicationProgressKey(uint32_t partition) {
  return absl::StrCat("replication.", partition);
}

namespace {

// DATA_LOSS for the first object whose checksum does not match its data.
absl::Status VerifyChunk(const ReplicationChunk& chunk) {
  for (const ObjectRecord& o : chunk.objects) {
    if (o.checksum.size() != common::kChecksumSize) {
      return common::ErrorWithReason(
          absl::StatusCode::kDataLoss, common::kReasonChecksumMismatch,
          absl::StrCat("replicated oid ", common::FormatOid(o.oid), " serial ",
                       TidHex(o.tid), " has a ", o.checksum.size(), "-byte checksum"));
    }
    if (o.data_tid != 0) {
      if (!o.data.empty()) {
        return absl::DataLossError(absl::StrCat(
            "replicated undo record of oid ", common::FormatOid(o.oid), " carries data"));
      }
      continue;  // the checksum is the one of the revision pointed to
    }
    if (!common::ChecksumMatches(o.data, o.checksum)) {
      return common::ErrorWithReason(
          absl::StatusCode::kDataLoss, common::kReasonChecksumMismatch,
          absl::StrCat("replicated oid ", common::FormatOid(o.oid), " serial ",
                       TidHex(o.tid), ": checksum does not match the data"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Replicator::Replicator(StorageBackend* backend, ReplicationPeers* peers,
                       ReplicatorOptions options, StorageMetrics* metrics,
                       std::function<uint64_t()> client_activity)
    : backend_(backend),
      peers_(peers),
      options_(std::move(options)),
      metrics_(metrics),
      client_activity_(std::move(client_activity)) {}

Replicator::~Replicator() { Stop(); }

void Replicator::Start(std::function<std::vector<uint32_t>()> cells) {
  thread_ = std::thread([this, cells = std::move(cells)] { Loop(cells); });
}

void Replicator::Wake() {
  absl::MutexLock l(&mu_);
  woken_ = true;
}

void Replicator::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  peers_->Cancel();
  if (thread_.joinable()) thread_.join();
}

bool Replicator::stopping() const {
  absl::MutexLock l(&mu_);
  return stopping_;
}

absl::StatusOr<uint64_t> Replicator::Progress(uint32_t partition) {
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          backend_->GetConfig(ReplicationProgressKey(partition)));
  uint64_t tid = 0;
  if (value.has_value() && !absl::SimpleAtoi(*value, &tid)) {
    CELLAR_LOG(WARNING) << "ignoring malformed " << ReplicationProgressKey(partition)
                        << " \"" << *value << "\": replicating from the start";
    tid = 0;
  }
  return tid;
}

absl::Status Replicator::SaveProgress(uint32_t partition, uint64_t tid) {
  CELLAR_RETURN_IF_ERROR(
      backend_->SetConfig(ReplicationProgressKey(partition), absl::StrCat(tid)));
  absl::MutexLock l(&mu_);
  cells_[partition].replicated_tid = tid;
  UpdateGauges();
  return absl::OkStatus();
}

uint64_t Replicator::Generation(uint32_t partition) const {
  absl::MutexLock l(&mu_);
  auto it = generations_.find(partition);
  return it == generations_.end() ? 0 : it->second;
}

absl::Status Replicator::CheckGeneration(uint32_t partition, uint64_t generation) const {
  if (Generation(partition) == generation) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat("the cell of partition ", partition,
                                         " was discarded during replication"));
}

absl::Status Replicator::ForgetPartition(uint32_t partition) {
  absl::MutexLock w(&write_mu_);
  {
    absl::MutexLock l(&mu_);
    ++generations_[partition];
    cells_.erase(partition);
    UpdateGauges();
  }
  CELLAR_RETURN_IF_ERROR(backend_->SetConfig(ReplicationProgressKey(partition), "0"));
  return on_forget_ ? on_forget_(partition) : absl::OkStatus();
}

absl::Status Replicator::TruncateProgress(uint32_t num_partitions, uint64_t tid) {
  absl::MutexLock w(&write_mu_);
  {
    absl::MutexLock l(&mu_);
    for (uint32_t p = 0; p < num_partitions; ++p) ++generations_[p];
  }
  for (uint32_t p = 0; p < num_partitions; ++p) {
    CELLAR_ASSIGN_OR_RETURN(uint64_t progress, Progress(p));
    if (progress <= tid) continue;
    CELLAR_RETURN_IF_ERROR(backend_->SetConfig(ReplicationProgressKey(p), absl::StrCat(tid)));
    {
      absl::MutexLock l(&mu_);
      if (auto it = cells_.find(p); it != cells_.end()) it->second.replicated_tid = tid;
    }
    CELLAR_LOG(INFO) << "partition " << p << ": replication progress lowered from "
                     << TidHex(progress) << " to the truncation point " << TidHex(tid);
  }
  return absl::OkStatus();
}

std::vector<CellReplicationStatus> Replicator::Status() const {
  absl::MutexLock l(&mu_);
  std::vector<CellReplicationStatus> out;
  for (const auto& [p, s] : cells_) out.push_back(s);
  return out;
}

uint64_t Replicator::total_chunks() const {
  absl::MutexLock l(&mu_);
  return total_chunks_;
}

void Replicator::UpdateGauges() {
  if (metrics_ == nullptr) return;
  int active = 0;
  uint64_t lag = 0;
  for (const auto& [p, s] : cells_) {
    if (!s.active) continue;
    ++active;
    if (s.target_tid > s.replicated_tid) lag = std::max(lag, s.target_tid - s.replicated_tid);
  }
  metrics_->replication_cells->Set(active);
  metrics_->replication_lag_tids->Set(static_cast<double>(lag));
  // TIDs count 2^32 per minute.
  metrics_->replication_lag_seconds->Set(static_cast<double>(lag) * 60.0 / 4294967296.0);
}

void Replicator::Throttle(uint64_t bytes, absl::Time chunk_start) {
  const uint64_t activity = client_activity_ ? client_activity_() : 0;
  const bool busy = activity != last_activity_;
  last_activity_ = activity;
  const uint64_t rate = busy ? options_.busy_bytes_per_second : options_.idle_bytes_per_second;
  if (rate == 0 || bytes == 0) return;
  const absl::Duration budget = absl::Seconds(static_cast<double>(bytes) / rate);
  const absl::Duration wait = budget - (absl::Now() - chunk_start);
  if (wait <= absl::ZeroDuration()) return;
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
}

absl::Status Replicator::Apply(uint32_t partition, uint64_t generation,
                               ReplicationChunk chunk, uint64_t* progress) {
  const absl::Time start = absl::Now();
  if (stopping()) return absl::CancelledError("storage node is stopping");
  if (absl::Status s = VerifyChunk(chunk); !s.ok()) {
    if (metrics_ != nullptr) metrics_->replication_checksum_failures->Increment();
    return s;
  }
  for (TransactionRecord& t : chunk.transactions) t.partition = partition;
  for (ObjectRecord& o : chunk.objects) o.partition = partition;
  const uint64_t bytes = chunk.ByteSize();
  {
    absl::MutexLock w(&write_mu_);
    CELLAR_RETURN_IF_ERROR(CheckGeneration(partition, generation));
    if (!chunk.transactions.empty() || !chunk.objects.empty()) {
      CELLAR_RETURN_IF_ERROR(backend_->ImportCommitted(chunk.transactions, chunk.objects));
    }
    if (chunk.complete_through > *progress) {
      CELLAR_RETURN_IF_ERROR(SaveProgress(partition, chunk.complete_through));
      *progress = chunk.complete_through;
    }
  }
  if (metrics_ != nullptr) {
    metrics_->replication_chunks->Increment();
    metrics_->replication_bytes->Increment(static_cast<double>(bytes));
  }
  bool pause;
  {
    absl::MutexLock l(&mu_);
    CellReplicationStatus& s = cells_[partition];
    ++s.chunks;
    s.bytes += bytes;
    ++total_chunks_;
    pause = options_.pause_after_chunks > 0 &&
            total_chunks_ >= static_cast<uint64_t>(options_.pause_after_chunks);
  }
  if (pause) {
    CELLAR_LOG(WARNING) << "replication paused after " << options_.pause_after_chunks
                        << " chunk(s) (test hook)";
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&stopping_));
    return absl::CancelledError("replication paused (test hook)");
  }
  Throttle(bytes, start);
  return absl::OkStatus();
}

absl::StatusOr<bool> Replicator::ReplicateOnce(uint32_t partition) {
  const uint64_t generation = Generation(partition);  // before reading progress
  CELLAR_ASSIGN_OR_RETURN(uint64_t progress, Progress(partition));
  if (client_activity_) last_activity_ = client_activity_();
  {
    absl::MutexLock l(&mu_);
    auto [it, inserted] = cells_.try_emplace(partition);
    CellReplicationStatus& s = it->second;
    if (inserted) {
      s.partition = partition;
      s.started_from_tid = progress;
    }
    s.replicated_tid = progress;
    s.active = true;
    UpdateGauges();
  }
  auto finish = [&](absl::StatusOr<bool> result) {
    absl::MutexLock l(&mu_);
    CellReplicationStatus& s = cells_[partition];
    if (result.ok()) {
      s.last_error.clear();
      if (*result) s.active = false;
    } else {
      s.last_error = std::string(result.status().message());
    }
    UpdateGauges();
    return result;
  };

  absl::StatusOr<ReplicationTarget> target = peers_->Report(partition, progress);
  if (!target.ok() && common::ErrorReason(target.status()) == common::kReasonCellRecreated) {
    // The master re-created this cell (it was discarded, or dropped for
    // repair, meanwhile): what is here is from before. Start over.
    CELLAR_LOG(INFO) << "partition " << partition
                     << ": the cell was created anew; deleting its data and "
                        "replicating from the start";
    absl::Status s = ForgetPartition(partition);
    if (s.ok()) s = backend_->DeletePartition(partition);
    if (!s.ok()) return finish(common::Annotate(s, "resetting a re-created cell"));
    return finish(false);
  }
  if (!target.ok()) return finish(common::Annotate(target.status(), "report to the master"));
  if (target->up_to_date) return finish(true);
  if (target->min_tid > progress) {
    // The master knows the cell was complete up to there.
    absl::Status s;
    {
      absl::MutexLock w(&write_mu_);
      s = CheckGeneration(partition, generation);
      if (s.ok()) s = SaveProgress(partition, target->min_tid);
    }
    if (!s.ok()) return finish(s);
    progress = target->min_tid;
  }
  {
    absl::MutexLock l(&mu_);
    cells_[partition].target_tid = target->max_tid;
    UpdateGauges();
  }
  if (progress < target->max_tid) {
    if (target->sources.empty()) {
      return finish(absl::UnavailableError(absl::StrCat(
          "no readable cell of partition ", partition, " to replicate from")));
    }
    absl::Status last = absl::OkStatus();
    for (const ReplicationTarget::Source& source : target->sources) {
      FetchRequest request;
      request.partition = partition;
      request.min_tid = progress + 1;
      request.max_tid = target->max_tid;
      request.limits.max_records = std::max<uint32_t>(options_.chunk_records, 1);
      request.limits.max_bytes = std::max<uint64_t>(options_.chunk_bytes, 1);
      last = peers_->Fetch(source.address, request, [&](ReplicationChunk chunk) {
        return Apply(partition, generation, std::move(chunk), &progress);
      });
      if (stopping()) return finish(absl::CancelledError("storage node is stopping"));
      if (last.ok() && progress >= target->max_tid) break;
      if (last.ok()) {
        last = absl::DataLossError(absl::StrCat(
            "source ", common::NodeName(source.node_id), " ended the stream at ",
            TidHex(progress), " before ", TidHex(target->max_tid)));
      }
      CELLAR_LOG(WARNING) << "replication of partition " << partition << " from "
                          << common::NodeName(source.node_id) << " (" << source.address
                          << "): " << last << "; trying the next source from "
                          << TidHex(progress);
    }
    if (progress < target->max_tid) {
      return finish(common::Annotate(last, absl::StrCat("replicating partition ", partition)));
    }
  }
  absl::StatusOr<ReplicationTarget> done = peers_->Report(partition, progress);
  if (!done.ok()) return finish(common::Annotate(done.status(), "report to the master"));
  if (done->up_to_date) {
    CELLAR_LOG(INFO) << "partition " << partition << " caught up to " << TidHex(progress);
  }
  return finish(done->up_to_date);
}

void Replicator::Loop(std::function<std::vector<uint32_t>()> cells) {
  absl::Time last_error_log = absl::InfinitePast();
  while (!stopping()) {
    const std::vector<uint32_t> partitions = cells();
    {
      absl::MutexLock l(&mu_);
      // Cells no longer OUT_OF_DATE are done.
      for (auto& [p, s] : cells_) {
        if (std::find(partitions.begin(), partitions.end(), p) == partitions.end()) {
          s.active = false;
        }
      }
      UpdateGauges();
    }
    for (uint32_t p : partitions) {
      if (stopping()) return;
      absl::StatusOr<bool> done = ReplicateOnce(p);
      if (!done.ok()) {
        if (absl::Now() - last_error_log > absl::Seconds(10)) {
          CELLAR_LOG(WARNING) << "replication of partition " << p << ": " << done.status();
          last_error_log = absl::Now();
        }
      }
    }
    absl::Duration wait = partitions.empty() ? options_.poll_interval : options_.retry_delay;
    absl::MutexLock l(&mu_);
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || woken_; };
    mu_.AwaitWithTimeout(absl::Condition(&wake), wait);
    woken_ = false;
  }
}

}  // namespace cellar::storage
