#ifndef CELLAR_TOOLS_BENCH_RUNNER_H_
#define CELLAR_TOOLS_BENCH_RUNNER_H_

// The measurement loop of the benchmark: N threads, each with its own
// Worker (its own client or connection), run operations back to back for a
// warm-up period and then for the measured period. Every operation is
// timed on a steady clock; failures are counted, never ignored.
//
//   RunSpec spec{"tiny_commit_c16", /*threads=*/16, ...};
//   absl::StatusOr<Measurement> m = RunScenario(spec, [&](int thread) {
//     return MakeMyWorker(thread);   // connects; runs before the clock starts
//   });
//
// Throughput counts the items of operations that started and finished inside
// the measured window: ops_per_s = items / seconds. The window is the
// configured duration, stretched (by at most max(10 x duration, 10 s)) until
// at least one operation fits in it, so a very short run of slow operations
// (bulk commits on a loaded machine) still measures one instead of 0/s. Latency percentiles are
// per operation (a bulk transaction of 100 objects is one operation).
//
// Thread-safety: RunScenario blocks; each Worker is used by one thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cellar::bench {

// One client thread's state (a connection, a Client, its own random
// generator). Created before the clock starts, destroyed after the run.
class Worker {
 public:
  virtual ~Worker() = default;
  // Runs one operation. An error is counted (the run goes on).
  virtual absl::Status Op() = 0;
};

using WorkerFactory =
    std::function<absl::StatusOr<std::unique_ptr<Worker>>(int thread)>;

struct RunSpec {
  // Number of threads, one Worker each (default 1).
  int threads = 1;
  // Items per operation, for the throughput (default 1; 100 for a bulk
  // transaction of 100 objects reported as objects/s).
  uint64_t items_per_op = 1;
  // Unmeasured warm-up, then the measured window.
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration duration = absl::Seconds(5);
  // CPU seconds used so far by other processes under test (a cluster of
  // processes), counted with this process's in process_cpu_s. Default
  // none.
  std::function<double()> other_cpu_seconds;
};

struct Measurement {
  // Operations finished inside the measured window, and their items.
  uint64_t ops = 0;
  uint64_t items = 0;
  // Failed operations over the whole run (warm-up included).
  uint64_t errors = 0;
  // The first failure's message ("" if none).
  std::string first_error;
  // The measured window: the configured duration, or longer when no
  // operation had fitted in it (see the file comment).
  double seconds = 0;
  double items_per_s = 0;
  // Per-operation latency percentiles in milliseconds (0 with no ops).
  double p50_ms = 0;
  double p99_ms = 0;
  // CPU time (user + system) this process used during the measured
  // window: the client threads and, for cellar rows, the whole in-process
  // cluster (a PostgreSQL server's own processes are not included), plus
  // RunSpec::other_cpu_seconds' processes.
  double process_cpu_s = 0;
  // Fraction (0..1) of all of the machine's CPUs that were busy during the
  // measured window, whoever used them (-1 if /proc/stat is unreadable).
  double machine_busy = -1;
};

// The shape of every scenario (cellar and raw baselines alike).
struct WorkloadOptions {
  // Warm-up before, and length of, each measured window (defaults 1 s, 5 s).
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration duration = absl::Seconds(5);
  // Size of every object / row (default 300 bytes).
  int object_bytes = 300;
  // Objects per bulk transaction (default 100).
  int bulk_objects = 100;
  // Objects written before the load scenarios, which read them at random
  // (default 20,000).
  int load_objects = 20000;
  // Client counts: the low and high concurrency levels of the commit and
  // load scenarios (defaults 1 and 16) and of the bulk scenario (default 2).
  int low_clients = 1;
  int high_clients = 16;
  int bulk_clients = 2;
  // Run the bulk scenario (default true; --mode=security skips it).
  bool run_bulk = true;
  // After each write scenario, this many of the objects it wrote are read
  // back through a fresh connection and compared (default 200).
  int verify_sample = 200;
};

// Runs the scenario. Fails (without running) if a worker can't be
// created; operation failures are counted in the Measurement instead.
absl::StatusOr<Measurement> RunScenario(const RunSpec& spec,
                                        const WorkerFactory& factory);

// CPU time (user + system) this process has used so far, in seconds.
double ProcessCpuSeconds();

// The machine's CPU time so far (the "cpu" line of /proc/stat, jiffies):
// busy and total; ok false if unreadable. Busy share of a window:
// (end.busy - start.busy) / (end.total - start.total).
struct CpuTimes {
  bool ok = false;
  double busy = 0;
  double total = 0;
};
CpuTimes MachineCpuTimes();

// The q-quantile (0..1, nearest rank) of `values`; reorders them. 0 if empty.
double Percentile(std::vector<double>& values, double q);

// Deterministic object contents for `oid`: `size` bytes that start with the
// oid (little endian) and then follow a pattern derived from it, so that any
// reader can check what it got without keeping a copy.
std::string ObjectData(uint64_t oid, size_t size);
// OK if `data` is exactly ObjectData(oid, size); DATA_LOSS otherwise.
absl::Status CheckObjectData(uint64_t oid, size_t size, absl::string_view data);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_RUNNER_H_
