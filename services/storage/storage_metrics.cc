#include "services/storage/storage_metrics.h"

namespace cellar::storage {
namespace {

prometheus::Counter* MakeCounter(prometheus::Registry& registry,
                                 const std::string& name, const std::string& help,
                                 const prometheus::Labels& labels) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add(labels);
}

prometheus::Gauge* MakeGauge(prometheus::Registry& registry, const std::string& name,
                             const std::string& help, const prometheus::Labels& labels) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(labels);
}

}  // namespace

StorageMetrics::StorageMetrics(prometheus::Registry& registry,
                               const std::string& version, const std::string& track) {
  const prometheus::Labels labels = {{"version", version}, {"track", track}};
  auto with = [&](const char* k, const char* v) {
    prometheus::Labels l = labels;
    l[k] = v;
    return l;
  };
  stores = MakeCounter(registry, "cellar_storage_stores_total",
                       "Objects stored in temporary records.", labels);
  store_bytes = MakeCounter(registry, "cellar_storage_store_bytes_total",
                            "Bytes of the objects stored.", labels);
  conflicts = MakeCounter(registry, "cellar_storage_conflicts_total",
                          "Stores refused with a conflict (ABORTED, CONFLICT).", labels);
  lock_contention = MakeCounter(
      registry, "cellar_storage_lock_contention_total",
      "Stores refused by deadlock avoidance (ABORTED, LOCK_CONTENTION).", labels);
  votes = MakeCounter(registry, "cellar_storage_votes_total",
                      "Transactions voted (made durable) on this node.", labels);
  commits = MakeCounter(registry, "cellar_storage_commits_total",
                        "Transactions locked with their final tid on this node.", labels);
  aborts = MakeCounter(registry, "cellar_storage_aborts_total",
                       "Transactions aborted on this node.", labels);
  unvoted_expired = MakeCounter(
      registry, "cellar_storage_unvoted_expired_total",
      "Transactions aborted by this node: still storing, idle for unvoted_timeout.",
      labels);
  auto& loads = prometheus::BuildCounter()
                    .Name("cellar_storage_loads_total")
                    .Help("Object loads by result.")
                    .Register(registry);
  loads_ok = &loads.Add(with("result", "ok"));
  loads_not_found = &loads.Add(with("result", "not_found"));
  loads_unavailable = &loads.Add(with("result", "unavailable"));
  loads_error = &loads.Add(with("result", "error"));
  load_bytes = MakeCounter(registry, "cellar_storage_load_bytes_total",
                           "Bytes returned by loads.", labels);
  open_transactions = MakeGauge(registry, "cellar_storage_open_transactions",
                                "Transactions in commit on this node.", labels);
  write_batch_size =
      &prometheus::BuildHistogram()
           .Name("cellar_storage_write_batch_size")
           .Help("Records written by one backend call (group commit).")
           .Register(registry)
           .Add(labels, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64,
                                                                128, 256, 512});
  labels_ = labels;
  objects_family_ = &prometheus::BuildGauge()
                         .Name("cellar_storage_objects")
                         .Help("Objects (oids whose latest revision is not a deletion) "
                               "of each cell of this node.")
                         .Register(registry);
  revisions_family_ = &prometheus::BuildGauge()
                           .Name("cellar_storage_revisions")
                           .Help("Committed object revisions of each cell of this node.")
                           .Register(registry);
  bytes_family_ = &prometheus::BuildGauge()
                       .Name("cellar_storage_bytes")
                       .Help("Bytes of object data of each cell of this node.")
                       .Register(registry);
  transactions = MakeGauge(registry, "cellar_storage_transactions",
                           "Committed transactions stored.", labels);
  data_bytes = MakeGauge(registry, "cellar_storage_data_bytes",
                         "Bytes of committed object data stored.", labels);
  ptid = MakeGauge(registry, "cellar_storage_ptid",
                   "Version of the partition table this node holds.", labels);
  master_connected = MakeGauge(registry, "cellar_storage_master_connected",
                               "1 while registered with the primary master.", labels);
  node_up = MakeGauge(registry, "cellar_node_up", "1 while the node runs.",
                      with("role", "storage"));
  replication_bytes = MakeCounter(registry, "cellar_storage_replication_bytes_total",
                                  "Bytes of records imported by replication.", labels);
  replication_chunks = MakeCounter(registry, "cellar_storage_replication_chunks_total",
                                   "Replication chunks imported.", labels);
  replication_checksum_failures = MakeCounter(
      registry, "cellar_storage_replication_checksum_failures_total",
      "Replicated objects whose checksum did not match (the chunk was refused).", labels);
  replication_cells = MakeGauge(registry, "cellar_storage_replication_cells_replicating",
                                "OUT_OF_DATE cells of this node being caught up.", labels);
  replication_lag_seconds = MakeGauge(
      registry, "cellar_storage_replication_lag_seconds",
      "Largest distance, in TID time, between what a replicating cell holds and the "
      "target of its current round.",
      labels);
  replication_lag_tids = MakeGauge(
      registry, "cellar_storage_replication_lag_tids",
      "Largest distance, in raw TID units (2^32 per minute), between what a "
      "replicating cell holds and the target of its current round.",
      labels);
  pack_rows_removed = MakeCounter(registry, "cellar_storage_pack_rows_removed_total",
                                  "Object revisions removed by pack.", labels);
  pack_bytes_reclaimed = MakeCounter(registry, "cellar_storage_pack_bytes_reclaimed_total",
                                     "Bytes of object data removed by pack.", labels);
  pack_chunks = MakeCounter(registry, "cellar_storage_pack_chunks_total",
                            "Pack chunks run (one short database transaction each).", labels);
  pack_tid = MakeGauge(registry, "cellar_storage_pack_tid",
                       "The highest pack tid requested of this node (raw TID; 0: never).",
                       labels);
  pack_tid_seconds = MakeGauge(registry, "cellar_storage_pack_tid_seconds",
                               "The time of the highest pack tid requested of this node "
                               "(Unix seconds; 0: never).",
                               labels);
  pack_pending_partitions = MakeGauge(
      registry, "cellar_storage_pack_pending_partitions",
      "Readable cells of this node not packed at the requested pack tid yet.", labels);
  backend_errors = MakeCounter(
      registry, "cellar_storage_backend_errors_total",
      "Backend operations that failed because the database did (UNAVAILABLE, INTERNAL, ...).",
      labels);
  auto& pool = prometheus::BuildGauge()
                   .Name("cellar_storage_backend_pool_connections")
                   .Help("Connections of the backend's pool by state (PostgreSQL: sessions; "
                         "SQLite: reader connections), sampled with the storage stats.")
                   .Register(registry);
  backend_pool_in_use = &pool.Add(with("state", "in_use"));
  backend_pool_idle = &pool.Add(with("state", "idle"));
}

void StorageMetrics::SetPartitionSizes(const std::vector<PartitionSizes>& cells) {
  std::map<uint32_t, SizeGauges> now;
  for (const PartitionSizes& c : cells) {
    auto it = sizes_.find(c.partition);
    SizeGauges g;
    if (it != sizes_.end()) {
      g = it->second;
      sizes_.erase(it);
    } else {
      prometheus::Labels l = labels_;
      l["partition"] = std::to_string(c.partition);
      g = SizeGauges{&objects_family_->Add(l), &revisions_family_->Add(l),
                     &bytes_family_->Add(l)};
    }
    g.objects->Set(static_cast<double>(c.objects));
    g.revisions->Set(static_cast<double>(c.revisions));
    g.bytes->Set(static_cast<double>(c.bytes));
    now[c.partition] = g;
  }
  for (auto& [partition, g] : sizes_) {  // cells this node no longer holds
    objects_family_->Remove(g.objects);
    revisions_family_->Remove(g.revisions);
    bytes_family_->Remove(g.bytes);
  }
  sizes_ = std::move(now);
}

}  // namespace cellar::storage
