// Commit throughput of the storage node's commit path (transaction manager +
// group commit) on a real backend, without gRPC: N threads each run
// store -> vote -> lock -> unlock on their own objects.
//
//   bazel run -c opt //services/storage:commit_bench -- \
//       --backend=sqlite:///tmp/bench.db --threads=64 --seconds=5
//   (--objects=10 --object_bytes=16384 --random_data: bulk, bytes that
//   PostgreSQL cannot compress)

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "services/common/checksum.h"
#include "services/common/partition_table.h"
#include "services/storage/backend/backend_uri.h"
#include "services/storage/cell_view.h"
#include "services/storage/lock_manager.h"
#include "services/storage/transaction_manager.h"
#include "services/storage/write_batcher.h"

ABSL_FLAG(std::string, backend, "sqlite:///tmp/cellar-commit-bench.db", "Backend URI");
ABSL_FLAG(int, threads, 32, "Concurrent committers");
ABSL_FLAG(int, writer_threads, 1, "Group-commit writer threads");
ABSL_FLAG(int, objects, 1, "Objects per transaction");
ABSL_FLAG(int, object_bytes, 100, "Bytes per object");
ABSL_FLAG(int, seconds, 5, "Duration");
ABSL_FLAG(bool, random_data, false,
          "Pseudo-random object bytes (PostgreSQL cannot compress them) "
          "instead of 'x' repeated");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace cellar::storage;  // NOLINT
  auto backend = OpenBackendFromUri(absl::GetFlag(FLAGS_backend));
  if (!backend.ok()) {
    std::cerr << backend.status() << "\n";
    return 1;
  }
  constexpr uint32_t kPartitions = 12;
  auto pt = std::make_shared<cellar::common::PartitionTable>(kPartitions, 0);
  for (uint32_t p = 0; p < kPartitions; ++p) pt->SetCell(p, 1, cellar::v1::CELL_UP_TO_DATE);
  pt->set_ptid(1);
  CellView view(1, pt);
  LockManager locks;
  WriteBatcherOptions batcher_options;
  batcher_options.writer_threads = absl::GetFlag(FLAGS_writer_threads);
  std::atomic<uint64_t> batches{0}, records{0};
  batcher_options.on_batch = [&](size_t n) {
    batches.fetch_add(1);
    records.fetch_add(n);
  };
  WriteBatcher batcher(backend->get(), batcher_options);
  TransactionManager tm(backend->get(), &locks, &batcher, {});

  auto last = (*backend)->GetLastIds();
  std::atomic<uint64_t> next_ttid{(last.ok() ? last->last_tid : 0) + 1000};
  std::atomic<uint64_t> next_oid{(last.ok() ? last->last_oid : 0) + 1};
  std::atomic<uint64_t> commits{0}, failures{0};
  const absl::Time end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  std::string data(absl::GetFlag(FLAGS_object_bytes), 'x');
  if (absl::GetFlag(FLAGS_random_data)) {
    uint64_t x = 88172645463325252ull;  // xorshift: the same bytes every run
    for (char& c : data) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
  }
  const std::string checksum = cellar::common::Checksum(data);
  std::vector<std::thread> threads;
  for (int t = 0; t < absl::GetFlag(FLAGS_threads); ++t) {
    threads.emplace_back([&] {
      while (absl::Now() < end) {
        const uint64_t ttid = next_ttid.fetch_add(kPartitions) ;
        std::vector<StoreObject> objects;
        std::vector<uint64_t> oids;
        for (int i = 0; i < absl::GetFlag(FLAGS_objects); ++i) {
          StoreObject o;
          o.oid = next_oid.fetch_add(1);
          o.data = data;
          o.checksum = checksum;
          oids.push_back(o.oid);
          objects.push_back(std::move(o));
        }
        TransactionMetadata meta;
        meta.oids = oids;
        absl::Status s = tm.Store(ttid, 7, std::move(objects), view,
                                  absl::Now() + absl::Seconds(10));
        if (s.ok()) s = tm.Vote(ttid, 7, meta, view);
        if (s.ok()) s = tm.Lock(ttid, ttid + kPartitions / 2 * 2);
        if (s.ok()) s = tm.Unlock(ttid);
        if (s.ok()) {
          commits.fetch_add(1);
        } else {
          failures.fetch_add(1);
          if (failures.load() < 5) std::cerr << s << "\n";
          (void)tm.Abort(ttid);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const double secs = absl::GetFlag(FLAGS_seconds);
  std::printf("%s: %d threads, %d writer(s): %.0f commits/s, %llu failures, "
              "%.1f records per backend call\n",
              (*backend)->Kind().c_str(), absl::GetFlag(FLAGS_threads),
              absl::GetFlag(FLAGS_writer_threads), commits.load() / secs,
              static_cast<unsigned long long>(failures.load()),
              batches.load() ? static_cast<double>(records.load()) / batches.load() : 0.0);
  batcher.Shutdown();
  return 0;
}
