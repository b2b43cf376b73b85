#ifndef CELLAR_SERVICES_STORAGE_STORAGE_METRICS_H_
#define CELLAR_SERVICES_STORAGE_STORAGE_METRICS_H_

// The storage node's domain metrics, built once per node on the registry
// main passes in. Every series carries the labels version and track.
//
//   cellar_storage_stores_total                 objects stored (temporary)
//   cellar_storage_store_bytes_total            bytes of those objects
//   cellar_storage_conflicts_total              stores refused with CONFLICT
//   cellar_storage_lock_contention_total        stores refused with LOCK_CONTENTION
//   cellar_storage_votes_total                  successful votes
//   cellar_storage_commits_total                transactions locked (committed)
//   cellar_storage_aborts_total                 transactions aborted
//   cellar_storage_unvoted_expired_total        transactions aborted by this node:
//                                               no store or vote for unvoted_timeout
//   cellar_storage_loads_total{result}          ok | not_found | unavailable | error
//   cellar_storage_load_bytes_total             bytes returned by loads
//   cellar_storage_open_transactions            transactions in commit (gauge)
//   cellar_storage_write_batch_size             records per backend write (histogram)
//   cellar_storage_objects{partition}           current objects of each cell (gauge)
//   cellar_storage_revisions{partition}         committed object revisions of each cell
//   cellar_storage_bytes{partition}             data bytes of those revisions
//   cellar_storage_transactions                 committed transactions (gauge)
//   cellar_storage_data_bytes                   committed data bytes (gauge)
//   cellar_storage_ptid                         partition table version held (gauge)
//   cellar_storage_master_connected             1 while registered with the master
//   cellar_node_up{role="storage"}              1 while the node runs
//   cellar_storage_replication_bytes_total      bytes imported by replication
//   cellar_storage_replication_chunks_total     replication chunks imported
//   cellar_storage_replication_checksum_failures_total  bad replicated objects
//   cellar_storage_replication_cells_replicating OUT_OF_DATE cells catching up
//   cellar_storage_replication_lag_seconds      max (target - progress), TID time
//   cellar_storage_replication_lag_tids         the same in raw TID units
//   cellar_storage_pack_rows_removed_total     object revisions removed by pack
//   cellar_storage_pack_bytes_reclaimed_total  bytes of object data removed by pack
//   cellar_storage_pack_chunks_total           pack chunks run
//   cellar_storage_pack_tid                    the highest pack tid requested (raw)
//   cellar_storage_pack_tid_seconds            the same as Unix seconds (0: never)
//   cellar_storage_pack_pending_partitions     cells not packed at that tid yet
//   cellar_storage_backend_errors_total         failed backend operations (database failures)
//   cellar_storage_backend_pool_connections{state}  in_use | idle connections of the
//                                               backend's pool (sampled with the stats)
//
// Nodes that share a registry share series (prometheus-cpp merges equal
// families and labels); give each node its own registry to tell them apart.
//
// Thread-safe (prometheus-cpp metrics are).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace cellar::storage {

// The size of one cell, for the per-partition gauges.
struct PartitionSizes {
  uint32_t partition = 0;
  uint64_t objects = 0;
  uint64_t revisions = 0;
  uint64_t bytes = 0;
};

struct StorageMetrics {
  // Registers the families on `registry` (must outlive this object).
  StorageMetrics(prometheus::Registry& registry, const std::string& version,
                 const std::string& track);

  prometheus::Counter* stores;
  prometheus::Counter* store_bytes;
  prometheus::Counter* conflicts;
  prometheus::Counter* lock_contention;
  prometheus::Counter* votes;
  prometheus::Counter* commits;
  prometheus::Counter* aborts;
  prometheus::Counter* unvoted_expired;
  prometheus::Counter* loads_ok;
  prometheus::Counter* loads_not_found;
  prometheus::Counter* loads_unavailable;
  prometheus::Counter* loads_error;
  prometheus::Counter* load_bytes;
  prometheus::Gauge* open_transactions;
  prometheus::Histogram* write_batch_size;
  prometheus::Gauge* transactions;
  prometheus::Gauge* data_bytes;
  prometheus::Gauge* ptid;
  prometheus::Gauge* master_connected;
  prometheus::Gauge* node_up;
  prometheus::Counter* replication_bytes;
  prometheus::Counter* replication_chunks;
  prometheus::Counter* replication_checksum_failures;
  prometheus::Gauge* replication_cells;
  prometheus::Gauge* replication_lag_seconds;
  prometheus::Gauge* replication_lag_tids;
  prometheus::Counter* pack_rows_removed;
  prometheus::Counter* pack_bytes_reclaimed;
  prometheus::Counter* pack_chunks;
  prometheus::Gauge* pack_tid;
  prometheus::Gauge* pack_tid_seconds;
  prometheus::Gauge* pack_pending_partitions;
  prometheus::Counter* backend_errors;
  prometheus::Gauge* backend_pool_in_use;
  prometheus::Gauge* backend_pool_idle;

  // Sets cellar_storage_{objects,revisions,bytes}{partition} to `cells`
  // (the cells this node holds): series of partitions not in it go.
  // Called from one thread at a time (the node's stats refresher).
  void SetPartitionSizes(const std::vector<PartitionSizes>& cells);

 private:
  struct SizeGauges {
    prometheus::Gauge* objects;
    prometheus::Gauge* revisions;
    prometheus::Gauge* bytes;
  };
  prometheus::Labels labels_;
  prometheus::Family<prometheus::Gauge>* objects_family_;
  prometheus::Family<prometheus::Gauge>* revisions_family_;
  prometheus::Family<prometheus::Gauge>* bytes_family_;
  std::map<uint32_t, SizeGauges> sizes_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_STORAGE_METRICS_H_
