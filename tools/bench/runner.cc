#include "tools/bench/runner.h"

#include <algorithm>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <limits>
#include <cmath>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace cellar::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

// What one thread saw.
struct ThreadResult {
  // Operations that started inside the window: latency and end time (the
  // window's end is decided later; those ending after it are dropped).
  std::vector<double> latencies_ms;
  std::vector<SteadyClock::time_point> ends;
  uint64_t errors = 0;
  std::string first_error;
};

// Runs operations until `stop`. For those that started at or after
// `measure_start`, keeps `first_end` (steady-clock ticks) at the earliest
// end time.
void RunThread(Worker* worker, SteadyClock::time_point measure_start,
               const std::atomic<bool>* stop, std::atomic<SteadyClock::rep>* first_end,
               ThreadResult* out) {
  out->latencies_ms.reserve(4096);
  out->ends.reserve(4096);
  while (!stop->load()) {
    const SteadyClock::time_point start = SteadyClock::now();
    const absl::Status status = worker->Op();
    const SteadyClock::time_point end = SteadyClock::now();
    if (!status.ok()) {
      if (out->errors++ == 0) out->first_error = status.ToString();
      // Don't spin on a broken cluster.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (start >= measure_start) {
      out->latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(end - start).count());
      out->ends.push_back(end);
      SteadyClock::rep seen = first_end->load();
      const SteadyClock::rep mine = end.time_since_epoch().count();
      while (mine < seen && !first_end->compare_exchange_weak(seen, mine)) {
      }
    }
  }
}

}  // namespace

double ProcessCpuSeconds() {
  rusage usage;
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
         usage.ru_stime.tv_usec / 1e6;
}

CpuTimes MachineCpuTimes() {
  CpuTimes t;
  std::ifstream in("/proc/stat");
  std::string label;
  double user, nice, system, idle, iowait, irq, softirq, steal;
  if (in >> label >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal &&
      label == "cpu") {
    t.ok = true;
    t.busy = user + nice + system + irq + softirq + steal;
    t.total = t.busy + idle + iowait;
  }
  return t;
}

double Percentile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank: the smallest value with at least q of the values <= it.
  size_t rank = static_cast<size_t>(std::ceil(q * values.size()));
  if (rank > 0) --rank;
  rank = std::min(rank, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + rank, values.end());
  return values[rank];
}

absl::StatusOr<Measurement> RunScenario(const RunSpec& spec,
                                        const WorkerFactory& factory) {
  if (spec.threads < 1) return absl::InvalidArgumentError("threads must be >= 1");
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < spec.threads; ++i) {
    absl::StatusOr<std::unique_ptr<Worker>> worker = factory(i);
    if (!worker.ok()) {
      return absl::Status(worker.status().code(),
                          absl::StrCat("worker ", i, ": ", worker.status().message()));
    }
    workers.push_back(*std::move(worker));
  }

  // Every worker exists (connections open) before the clock starts.
  const SteadyClock::time_point start = SteadyClock::now();
  const SteadyClock::time_point measure_start =
      start + absl::ToChronoNanoseconds(spec.warmup);
  const SteadyClock::time_point measure_end =
      measure_start + absl::ToChronoNanoseconds(spec.duration);
  std::vector<ThreadResult> results(workers.size());
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false};
  // No measured operation has ended yet.
  constexpr SteadyClock::rep kNone = std::numeric_limits<SteadyClock::rep>::max();
  std::atomic<SteadyClock::rep> first_end{kNone};
  for (size_t i = 0; i < workers.size(); ++i) {
    threads.emplace_back(RunThread, workers[i].get(), measure_start, &stop, &first_end,
                         &results[i]);
  }
  // Resource use over the measured window only.
  std::this_thread::sleep_until(measure_start);
  auto cpu_now = [&spec] {
    return ProcessCpuSeconds() + (spec.other_cpu_seconds ? spec.other_cpu_seconds() : 0);
  };
  const double cpu_start = cpu_now();
  const CpuTimes machine_start = MachineCpuTimes();
  std::this_thread::sleep_until(measure_end);
  // Nothing fitted yet: stretch the window until one operation has.
  const SteadyClock::time_point stretch_limit =
      measure_end +
      std::max(10 * absl::ToChronoNanoseconds(spec.duration),
               std::chrono::nanoseconds(std::chrono::seconds(10)));
  while (first_end.load() == kNone && SteadyClock::now() < stretch_limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // The configured end, or the end of the first operation if none fitted.
  SteadyClock::time_point window_end = measure_end;
  if (const SteadyClock::rep first = first_end.load(); first != kNone) {
    window_end = std::max(measure_end, SteadyClock::time_point(SteadyClock::duration(first)));
  } else {
    window_end = SteadyClock::now();  // gave up: nothing ever finished
  }
  const double cpu_end = cpu_now();
  const CpuTimes machine_end = MachineCpuTimes();
  stop = true;
  for (std::thread& t : threads) t.join();
  workers.clear();

  Measurement m;
  m.process_cpu_s = cpu_end - cpu_start;
  if (machine_start.ok && machine_end.ok && machine_end.total > machine_start.total) {
    m.machine_busy =
        (machine_end.busy - machine_start.busy) / (machine_end.total - machine_start.total);
  }
  std::vector<double> all;
  for (ThreadResult& r : results) {
    for (size_t k = 0; k < r.latencies_ms.size(); ++k) {
      if (r.ends[k] <= window_end) all.push_back(r.latencies_ms[k]);
    }
    m.errors += r.errors;
    if (m.first_error.empty()) m.first_error = r.first_error;
  }
  m.ops = all.size();
  m.items = m.ops * spec.items_per_op;
  m.seconds = std::chrono::duration<double>(window_end - measure_start).count();
  m.items_per_s = m.seconds > 0 ? m.items / m.seconds : 0;
  m.p50_ms = Percentile(all, 0.50);
  m.p99_ms = Percentile(all, 0.99);
  return m;
}

std::string ObjectData(uint64_t oid, size_t size) {
  std::string data(size, '\0');
  uint64_t x = oid * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    if (i < 8) {
      data[i] = static_cast<char>((oid >> (8 * i)) & 0xff);
    } else {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      data[i] = static_cast<char>(x & 0xff);
    }
  }
  return data;
}

absl::Status CheckObjectData(uint64_t oid, size_t size, absl::string_view data) {
  if (data != ObjectData(oid, size)) {
    return absl::DataLossError(absl::StrCat("object ", oid, ": got ", data.size(),
                                            " bytes that differ from what was written"));
  }
  return absl::OkStatus();
}

}  // namespace cellar::bench
