#include "tools/bench/security_bench.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/status_macros.h"
#include "tools/bench/cellar_scenarios.h"

namespace cellar::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr char kPlain[] = "sqlite";
constexpr char kSecure[] = "sqlite+tls";

// --- auth + TLS cost ----------------------------------------------------

struct CostCell {
  double cpu_us_sum = 0;
  double ops_per_s_sum = 0;
  int runs = 0;
};

std::string CostSummary(const std::vector<BenchRow>& rows, int rounds) {
  // name -> (plain, secure), in the order the scenarios ran.
  std::vector<std::string> names;
  std::map<std::string, std::pair<CostCell, CostCell>> cells;
  for (const BenchRow& row : rows) {
    if (cells.find(row.name) == cells.end()) names.push_back(row.name);
    CostCell& cell = row.backend == kSecure ? cells[row.name].second : cells[row.name].first;
    cell.cpu_us_sum += row.cpu_us_per_op;
    cell.ops_per_s_sum += row.ops_per_s;
    ++cell.runs;
  }
  std::string out = absl::StrCat(
      "auth + TLS cost (SQLite; ", kPlain, " = plaintext, no auth; ", kSecure,
      " = TLS on every port, mTLS between nodes, client tokens;\n"
      " cpu us = CPU microseconds of the whole process - clients and every node - per\n"
      " operation, mean of ",
      rounds, " run(s) each, alternating; target: secure/plain <= 1.10):\n");
  const char* kFormat = "  %-20s %12s %12s %13s %13s %13s  %s\n";
  absl::StrAppend(&out, absl::StrFormat(kFormat, "scenario", "plain ops/s", "secure ops/s",
                                        "plain cpu us", "secure cpu us", "secure/plain",
                                        ""));
  for (const std::string& name : names) {
    const auto& [plain, secure] = cells[name];
    if (plain.runs == 0 || secure.runs == 0) continue;
    const double plain_cpu = plain.cpu_us_sum / plain.runs;
    const double secure_cpu = secure.cpu_us_sum / secure.runs;
    const double ratio = plain_cpu > 0 ? secure_cpu / plain_cpu : 0;
    absl::StrAppend(
        &out, absl::StrFormat(kFormat, name,
                              absl::StrFormat("%.1f", plain.ops_per_s_sum / plain.runs),
                              absl::StrFormat("%.1f", secure.ops_per_s_sum / secure.runs),
                              absl::StrFormat("%.0f", plain_cpu),
                              absl::StrFormat("%.0f", secure_cpu),
                              absl::StrFormat("%.3f", ratio),
                              ratio <= 1.10 ? "MET" : "NOT MET"));
  }
  return out;
}

// --- flood ----------------------------------------------------------------

// Operation k of a schedule is due at start + k / per_second; the threads
// sharing it take the next k.
struct Schedule {
  SteadyClock::time_point start;
  double per_second = 1;
  // B's (every operation runs, latency recorded) or A's (see RunPaced).
  bool steady = true;
  std::atomic<uint64_t> next{0};

  SteadyClock::time_point Due(uint64_t k) const {
    if (per_second <= 0) return SteadyClock::time_point::max();
    return start + std::chrono::duration_cast<SteadyClock::duration>(
                       std::chrono::duration<double>(k / per_second));
  }
};

// What one schedule's operations due inside the measured window got.
struct PacedResult {
  std::vector<double> latencies_ms;  // successful operations, from their due time
  uint64_t attempts = 0;
  uint64_t ok = 0;
  uint64_t exhausted = 0;   // RESOURCE_EXHAUSTED
  uint64_t with_hint = 0;   // ... whose message says "retry after"
  uint64_t other_errors = 0;
  std::string first_exhausted;
  std::string first_error;  // first failure other than RESOURCE_EXHAUSTED

  void Add(const PacedResult& r) {
    latencies_ms.insert(latencies_ms.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    attempts += r.attempts;
    ok += r.ok;
    exhausted += r.exhausted;
    with_hint += r.with_hint;
    other_errors += r.other_errors;
    if (first_exhausted.empty()) first_exhausted = r.first_exhausted;
    if (first_error.empty()) first_error = r.first_error;
  }
};

// Runs `worker`'s operations at the times of `schedule` until one would be
// due at `end`. A thread that falls behind starts its operations at once
// (late). A steady schedule (B) runs every operation due before `end`,
// records those due at or after `measure_from`, and their latency from the
// due time. A flood (A) records the operations it started inside
// [measure_from, end) and stops at `end` (its attempts are what it
// managed to offer, however far behind its schedule), without latencies.
void RunPaced(Worker* worker, Schedule* schedule, SteadyClock::time_point measure_from,
              SteadyClock::time_point end, PacedResult* out) {
  while (true) {
    const SteadyClock::time_point due = schedule->Due(schedule->next.fetch_add(1));
    if (due >= end) return;
    std::this_thread::sleep_until(due);
    const SteadyClock::time_point started = SteadyClock::now();
    if (!schedule->steady && started >= end) return;
    const absl::Status status = worker->Op();
    const SteadyClock::time_point done = SteadyClock::now();
    if ((schedule->steady ? due : started) < measure_from) continue;
    ++out->attempts;
    if (status.ok()) {
      ++out->ok;
      if (schedule->steady) {
        out->latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(done - due).count());
      }
    } else if (status.code() == absl::StatusCode::kResourceExhausted) {
      if (out->exhausted++ == 0) out->first_exhausted = status.ToString();
      if (absl::StrContains(status.message(), "retry after")) ++out->with_hint;
    } else if (out->other_errors++ == 0) {
      out->first_error = status.ToString();
    }
  }
}

// Threads running workers on schedules; Join collects per schedule.
class PacedRun {
 public:
  // A new schedule (see Schedule); returns its index.
  int AddSchedule(double per_second, bool steady) {
    schedules_.push_back(std::make_unique<Schedule>());
    schedules_.back()->per_second = per_second;
    schedules_.back()->steady = steady;
    return static_cast<int>(schedules_.size()) - 1;
  }
  // Adds a thread running `worker` on schedule `schedule`.
  void AddWorker(int schedule, std::unique_ptr<Worker> worker) {
    workers_.push_back({schedule, std::move(worker)});
  }
  // Starts every thread: schedules begin at `start`.
  void Start(SteadyClock::time_point start, SteadyClock::time_point measure_from,
             SteadyClock::time_point end) {
    for (auto& s : schedules_) s->start = start;
    results_.resize(workers_.size());
    for (size_t i = 0; i < workers_.size(); ++i) {
      threads_.emplace_back(RunPaced, workers_[i].second.get(),
                            schedules_[workers_[i].first].get(), measure_from, end,
                            &results_[i]);
    }
  }
  // Waits for the threads, closes the workers; one result per schedule.
  std::vector<PacedResult> Join() {
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    std::vector<PacedResult> merged(schedules_.size());
    for (size_t i = 0; i < workers_.size(); ++i) merged[workers_[i].first].Add(results_[i]);
    workers_.clear();
    return merged;
  }

 private:
  std::vector<std::unique_ptr<Schedule>> schedules_;
  std::vector<std::pair<int, std::unique_ptr<Worker>>> workers_;
  std::vector<PacedResult> results_;
  std::vector<std::thread> threads_;
};

// Resource use over a window.
struct WindowCpu {
  double process_cpu_s = 0;
  double machine_busy = -1;
};

WindowCpu MeasureWindow(SteadyClock::time_point from, SteadyClock::time_point to) {
  std::this_thread::sleep_until(from);
  const double cpu0 = ProcessCpuSeconds();
  const CpuTimes m0 = MachineCpuTimes();
  std::this_thread::sleep_until(to);
  WindowCpu w;
  w.process_cpu_s = ProcessCpuSeconds() - cpu0;
  const CpuTimes m1 = MachineCpuTimes();
  if (m0.ok && m1.ok && m1.total > m0.total) {
    w.machine_busy = (m1.busy - m0.busy) / (m1.total - m0.total);
  }
  return w;
}

// B's rows count successful operations and every failure as an error; A's
// count attempts (most are refused by design) and no errors.
BenchRow PacedRow(std::string name, std::string kind, std::string unit, int clients,
                  PacedResult r, double seconds, const WindowCpu& cpu, bool steady) {
  BenchRow row;
  row.name = std::move(name);
  row.backend = kSecure;
  row.kind = std::move(kind);
  row.unit = std::move(unit);
  row.clients = clients;
  row.ops = steady ? r.ok : r.attempts;
  row.ops_per_s = seconds > 0 ? row.ops / seconds : 0;
  row.p50_ms = Percentile(r.latencies_ms, 0.50);
  row.p99_ms = Percentile(r.latencies_ms, 0.99);
  row.machine_busy = cpu.machine_busy;
  if (steady) {
    row.errors = r.exhausted + r.other_errors;
    row.first_error = !r.first_error.empty() ? r.first_error : r.first_exhausted;
  }
  return row;
}

absl::Status AddWorkers(PacedRun& run, int schedule, int count, const CellarTarget& target,
                        bool loads, const std::vector<Committed>* population, int object_bytes,
                        int seed) {
  for (int i = 0; i < count; ++i) {
    CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, ConnectClient(target));
    run.AddWorker(schedule, loads ? NewLoadWorker(std::move(client), seed + i, population,
                                                  object_bytes)
                                  : NewCommitWorker(std::move(client), 1, object_bytes));
  }
  return absl::OkStatus();
}

// One phase: B's loads and commits, A's (empty when idle), the CPU of
// this process (B), of the cluster's processes and of A's.
struct Phase {
  PacedResult loads;
  PacedResult commits;
  PacedResult a_loads;
  PacedResult a_commits;
  WindowCpu cpu;
  double cluster_cpu_s = 0;
  double a_cpu_s = 0;
};

std::string Ms(double ms) { return absl::StrFormat("%.2f", ms); }

absl::Status WriteFile(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", path));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return text.str();
}

// What A does (RunFloodClient), passed to its process as a file.
struct FloodClientOptions {
  std::string master;
  std::string cluster_name;
  std::string token_file;
  std::string ca_file;
  // "oid tid" lines: the objects to load.
  std::string population_file;
  double loads_per_s = 0;
  double commits_per_s = 0;
  int clients = 1;
  absl::Duration warmup;
  absl::Duration duration;
  int object_bytes = 300;
};

std::string ToText(const FloodClientOptions& o) {
  return absl::StrCat("master=", o.master, "\ncluster_name=", o.cluster_name,
                      "\ntoken_file=", o.token_file, "\nca_file=", o.ca_file,
                      "\npopulation_file=", o.population_file, "\nloads_per_s=", o.loads_per_s,
                      "\ncommits_per_s=", o.commits_per_s, "\nclients=", o.clients,
                      "\nwarmup_s=", absl::ToDoubleSeconds(o.warmup),
                      "\nduration_s=", absl::ToDoubleSeconds(o.duration),
                      "\nobject_bytes=", o.object_bytes, "\n");
}

absl::StatusOr<FloodClientOptions> FromText(const std::string& text) {
  FloodClientOptions o;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    const std::string& k = kv.first;
    const std::string& v = kv.second;
    double d = 0;
    if (k == "master") o.master = v;
    else if (k == "cluster_name") o.cluster_name = v;
    else if (k == "token_file") o.token_file = v;
    else if (k == "ca_file") o.ca_file = v;
    else if (k == "population_file") o.population_file = v;
    else if (!absl::SimpleAtod(v, &d)) return absl::InvalidArgumentError(absl::StrCat("bad ", k));
    else if (k == "loads_per_s") o.loads_per_s = d;
    else if (k == "commits_per_s") o.commits_per_s = d;
    else if (k == "clients") o.clients = static_cast<int>(d);
    else if (k == "warmup_s") o.warmup = absl::Seconds(d);
    else if (k == "duration_s") o.duration = absl::Seconds(d);
    else if (k == "object_bytes") o.object_bytes = static_cast<int>(d);
  }
  return o;
}

// A's answers, as its process prints them and RunFlood reads them.
struct FloodClientResult {
  PacedResult loads;
  PacedResult commits;
  double cpu_s = 0;
};

std::string Counts(const PacedResult& r) {
  return absl::StrCat(r.attempts, " ", r.ok, " ", r.exhausted, " ", r.with_hint, " ",
                      r.other_errors);
}

bool ParseCounts(std::istream& in, PacedResult* r) {
  return static_cast<bool>(in >> r->attempts >> r->ok >> r->exhausted >> r->with_hint >>
                           r->other_errors);
}

// A's process: spawned, read until "ready", then Wait() for its result.
class FloodChild {
 public:
  static absl::StatusOr<std::unique_ptr<FloodChild>> Spawn(const FloodClientOptions& options,
                                                           const std::string& options_file) {
    CELLAR_RETURN_IF_ERROR(WriteFile(options_file, ToText(options)));
    int fds[2];
    if (::pipe(fds) != 0) return absl::InternalError("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    const std::string exe = "/proc/self/exe";
    std::vector<std::string> args = {"bench", "--mode=flood_client",
                                     absl::StrCat("--flood_client_options=", options_file)};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int error = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (error != 0) {
      ::close(fds[0]);
      return absl::InternalError(absl::StrCat("cannot start A's process: ", std::strerror(error)));
    }
    auto child = std::unique_ptr<FloodChild>(new FloodChild(pid, ::fdopen(fds[0], "r")));
    std::string line;
    if (!child->ReadLine(&line) || line != "ready") {
      return absl::InternalError(absl::StrCat("A's process did not get ready: '", line, "'"));
    }
    return child;
  }

  ~FloodChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ != nullptr) ::fclose(out_);
  }

  // Its result; fails if it printed none or exited with an error.
  absl::StatusOr<FloodClientResult> Wait() {
    FloodClientResult r;
    std::string line;
    bool got = false;
    while (ReadLine(&line)) {
      std::istringstream in(line);
      std::string word;
      in >> word;
      if (word == "result") {
        got = ParseCounts(in, &r.loads) && ParseCounts(in, &r.commits) &&
              static_cast<bool>(in >> r.cpu_s);
      } else if (word == "exhausted") {
        r.commits.first_exhausted = line.substr(std::min(line.size(), word.size() + 1));
      } else if (word == "error") {
        r.commits.first_error = line.substr(std::min(line.size(), word.size() + 1));
      }
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrCat("A's process failed (status ", status,
                                              "); see its messages above"));
    }
    return r;
  }

 private:
  FloodChild(pid_t pid, FILE* out) : pid_(pid), out_(out) {}

  bool ReadLine(std::string* line) {
    line->clear();
    int c;
    while ((c = std::fgetc(out_)) != EOF && c != '\n') line->push_back(static_cast<char>(c));
    return c != EOF || !line->empty();
  }

  pid_t pid_;
  FILE* out_;
};

}  // namespace

absl::StatusOr<SecurityReport> RunAuthTlsCost(const BenchClusterOptions& shape,
                                              const WorkloadOptions& workload, int rounds,
                                              const std::string& dir, std::ostream& progress) {
  if (rounds < 1) return absl::InvalidArgumentError("rounds must be >= 1");
  WorkloadOptions w = workload;
  w.run_bulk = false;
  SecurityReport report;
  for (int round = 0; round < rounds; ++round) {
    // plain, secure, secure, plain, ...: a drift of the machine's load
    // weighs on both alike.
    for (int k = 0; k < 2; ++k) {
      const bool secure = (round % 2 == 0) == (k == 1);
      BenchClusterOptions options = shape;
      options.secure = secure;
      options.dir = absl::StrCat(dir, "/", secure ? "secure" : "plain", "-", round);
      options.rate_limit_per_second = 0;
      progress << "[bench] security: round " << round + 1 << "/" << rounds << ", "
               << (secure ? "TLS + tokens" : "plaintext, no auth") << std::endl;
      CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<BenchCluster> cluster, BenchCluster::Start(options));
      CELLAR_ASSIGN_OR_RETURN(
          std::vector<BenchRow> rows,
          RunCellarScenarios(cluster->Target(secure ? kSecure : kPlain), w, progress));
      report.rows.insert(report.rows.end(), rows.begin(), rows.end());
    }
  }
  report.summary = CostSummary(report.rows, rounds);
  return report;
}

absl::StatusOr<SecurityReport> RunFlood(const BenchClusterOptions& shape,
                                        const WorkloadOptions& workload,
                                        const FloodOptions& flood, const std::string& dir,
                                        std::ostream& progress) {
  if (flood.rate_limit <= 0 || flood.factor <= 0 || flood.flood_clients < 1 ||
      flood.b_loads_per_s <= 0 || flood.b_commits_per_s <= 0) {
    return absl::InvalidArgumentError(
        "flood: rate limit, factor, clients and B's rates must be positive");
  }
  BenchClusterOptions options = shape;
  options.dir = absl::StrCat(dir, "/flood");
  options.secure = true;
  options.client_tokens = 2;  // 0: B, 1: A
  options.rate_limit_per_second = flood.rate_limit;
  options.rate_limit_burst = flood.rate_limit_burst;
  const double burst =
      flood.rate_limit_burst > 0 ? flood.rate_limit_burst : std::max(1.0, 2 * flood.rate_limit);
  progress << "[bench] flood: starting a secured cluster, rate limit " << flood.rate_limit
           << " calls/s per token per node (burst " << burst << ")" << std::endl;
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<BenchCluster> cluster, BenchCluster::Start(options));
  const CellarTarget b = cluster->Target(kSecure, 0);

  // The objects to load, written by B's token in bulk from one client:
  // about 3 calls per 100 objects, within B's limit if not too many.
  progress << "[bench] flood: writing " << flood.objects << " objects" << std::endl;
  CELLAR_ASSIGN_OR_RETURN(const std::vector<Committed> population,
                          WriteObjects(b, flood.objects, 100, 1, workload.object_bytes));
  if (population.empty()) return absl::InvalidArgumentError("load_objects must be positive");

  const double a_commits_per_s = flood.a_commits ? flood.factor * flood.rate_limit : 0;
  const double a_loads_per_s =
      flood.a_loads ? flood.factor * flood.rate_limit * shape.storages : 0;
  const double seconds = absl::ToDoubleSeconds(flood.duration);

  // A runs in a process of its own (this binary, --mode=flood_client), so
  // that its clients' gRPC work does not queue with B's in one process.
  FloodClientOptions a;
  const CellarTarget a_target = cluster->Target(kSecure, 1);
  a.master = a_target.master_addresses.front();
  a.cluster_name = a_target.cluster_name;
  a.token_file = options.dir + "/a.token";
  a.ca_file = a_target.tls->ca_file;
  a.population_file = options.dir + "/population";
  a.loads_per_s = a_loads_per_s;
  a.commits_per_s = a_commits_per_s;
  a.clients = flood.flood_clients;
  a.warmup = flood.warmup;
  a.duration = flood.duration;
  a.object_bytes = workload.object_bytes;
  CELLAR_RETURN_IF_ERROR(WriteFile(a.token_file, a_target.token + "\n"));
  {
    std::string text;
    for (const Committed& c : population) absl::StrAppend(&text, c.oid, " ", c.tid, "\n");
    CELLAR_RETURN_IF_ERROR(WriteFile(a.population_file, text));
  }

  auto run_phase = [&](bool with_a) -> absl::StatusOr<Phase> {
    progress << "[bench] flood: B steady (" << flood.b_loads_per_s << " loads/s, "
             << flood.b_commits_per_s << " commits/s), A "
             << (with_a ? absl::StrCat("flooding (", a_loads_per_s, " loads/s and ",
                                       a_commits_per_s, " commit attempts/s from ",
                                       2 * flood.flood_clients, " clients, another process)")
                        : std::string("idle"))
             << std::endl;
    PacedRun run;
    const int b_loads = run.AddSchedule(flood.b_loads_per_s, /*steady=*/true);
    const int b_commits = run.AddSchedule(flood.b_commits_per_s, /*steady=*/true);
    CELLAR_RETURN_IF_ERROR(AddWorkers(run, b_loads, 1, b, /*loads=*/true, &population,
                                      workload.object_bytes, 100));
    CELLAR_RETURN_IF_ERROR(AddWorkers(run, b_commits, 1, b, /*loads=*/false, &population,
                                      workload.object_bytes, 0));
    std::unique_ptr<FloodChild> child;
    if (with_a) {
      // Its clients connect first; it starts its schedule when it says so.
      CELLAR_ASSIGN_OR_RETURN(child, FloodChild::Spawn(a, options.dir + "/a.options"));
    }
    const SteadyClock::time_point start = SteadyClock::now();
    const SteadyClock::time_point measure_from = start + absl::ToChronoNanoseconds(flood.warmup);
    const SteadyClock::time_point end = measure_from + absl::ToChronoNanoseconds(flood.duration);
    run.Start(start, measure_from, end);
    Phase phase;
    const double cluster_cpu0 = cluster->CPU();
    phase.cpu = MeasureWindow(measure_from, end);
    phase.cluster_cpu_s = cluster->CPU() - cluster_cpu0;
    std::vector<PacedResult> results = run.Join();
    phase.loads = std::move(results[b_loads]);
    phase.commits = std::move(results[b_commits]);
    if (with_a) {
      CELLAR_ASSIGN_OR_RETURN(FloodClientResult r, child->Wait());
      phase.a_loads = std::move(r.loads);
      phase.a_commits = std::move(r.commits);
      phase.a_cpu_s = r.cpu_s;
    }
    return phase;
  };
  CELLAR_ASSIGN_OR_RETURN(Phase idle, run_phase(false));
  CELLAR_ASSIGN_OR_RETURN(Phase flooded, run_phase(true));
  cluster.reset();

  SecurityReport report;
  report.rows.push_back(PacedRow("flood_b_load_idle", "load", "loads/s", 1, idle.loads, seconds,
                                 idle.cpu, true));
  report.rows.push_back(PacedRow("flood_b_commit_idle", "commit", "txn/s", 1, idle.commits,
                                 seconds, idle.cpu, true));
  report.rows.push_back(PacedRow("flood_b_load_flood", "load", "loads/s", 1, flooded.loads,
                                 seconds, flooded.cpu, true));
  report.rows.push_back(PacedRow("flood_b_commit_flood", "commit", "txn/s", 1,
                                 flooded.commits, seconds, flooded.cpu, true));
  report.rows.push_back(PacedRow("flood_a_load", "load", "attempts/s", flood.flood_clients,
                                 flooded.a_loads, seconds, flooded.cpu, false));
  report.rows.push_back(PacedRow("flood_a_commit", "commit", "attempts/s", flood.flood_clients,
                                 flooded.a_commits, seconds, flooded.cpu, false));

  auto line = [](const std::string& what, const PacedResult& idle_r, const PacedResult& flood_r) {
    std::vector<double> i = idle_r.latencies_ms, f = flood_r.latencies_ms;
    const double i50 = Percentile(i, 0.5), i99 = Percentile(i, 0.99);
    const double f50 = Percentile(f, 0.5), f99 = Percentile(f, 0.99);
    return absl::StrFormat("  %-12s %8zu %10s %10s %8zu %10s %10s %12s\n", what,
                           idle_r.latencies_ms.size(), Ms(i50), Ms(i99),
                           flood_r.latencies_ms.size(), Ms(f50), Ms(f99),
                           i99 > 0 ? absl::StrFormat("%.2f", f99 / i99) : "-");
  };
  PacedResult idle_b = idle.loads, flood_b = flooded.loads;
  idle_b.Add(idle.commits);
  flood_b.Add(flooded.commits);
  const double idle_p99 = Percentile(idle_b.latencies_ms, 0.99);
  const double ratio = idle_p99 > 0 ? Percentile(flood_b.latencies_ms, 0.99) / idle_p99 : 0;
  std::string& out = report.summary;
  out = absl::StrCat(
      "flood (SQLite, TLS + tokens, every node limits each token to ", flood.rate_limit,
      " calls/s, burst ", burst, ";\n B: one token, ", flood.b_loads_per_s, " loads/s + ",
      flood.b_commits_per_s,
      " commits/s, paced, latency from when each was due; A: another token, ",
      2 * flood.flood_clients, " clients;\n each phase ", seconds, " s measured after ",
      absl::ToDoubleSeconds(flood.warmup), " s):\n");
  absl::StrAppend(&out, absl::StrFormat("  %-12s %8s %10s %10s %8s %10s %10s %12s\n", "B",
                                        "idle ops", "p50 ms", "p99 ms", "flood ops", "p50 ms",
                                        "p99 ms", "p99 flood/idle"));
  absl::StrAppend(&out, line("loads", idle.loads, flooded.loads));
  absl::StrAppend(&out, line("commits", idle.commits, flooded.commits));
  absl::StrAppend(&out, line("all", idle_b, flood_b));
  absl::StrAppend(&out, absl::StrFormat("  B p99 flood/idle = %.2f (target <= 2): %s; B errors: "
                                        "idle %d, flood %d\n",
                                        ratio, ratio > 0 && ratio <= 2 ? "MET" : "NOT MET",
                                        idle_b.exhausted + idle_b.other_errors,
                                        flood_b.exhausted + flood_b.other_errors));
  // Every commit attempt starts with Begin on the master; loads spread over
  // the storages.
  const double a_load_offered = flooded.a_loads.attempts / seconds;
  const double a_commit_offered = flooded.a_commits.attempts / seconds;
  for (const auto& [what, r, per_node, node] :
       {std::make_tuple("loads", &flooded.a_loads, a_load_offered / shape.storages,
                        "each storage"),
        std::make_tuple("commits", &flooded.a_commits, a_commit_offered, "the master")}) {
    absl::StrAppend(&out, absl::StrFormat("  A %-8s offered %.0f/s (%.1f x the limit at %s), "
                                          "answered: ok %d, RESOURCE_EXHAUSTED %d (%d with "
                                          "\"retry after\"), other errors %d\n",
                                          what, r->attempts / seconds, per_node / flood.rate_limit,
                                          node, r->ok, r->exhausted, r->with_hint,
                                          r->other_errors));
  }
  if (!flooded.a_loads.first_exhausted.empty() || !flooded.a_commits.first_exhausted.empty()) {
    absl::StrAppend(&out, "  e.g. ",
                    !flooded.a_commits.first_exhausted.empty() ? flooded.a_commits.first_exhausted
                                                                : flooded.a_loads.first_exhausted,
                    "\n");
  }
  for (const PacedResult* r : {&flooded.a_loads, &flooded.a_commits}) {
    if (!r->first_error.empty()) {
      absl::StrAppend(&out, "  A's first other error: ", r->first_error, "\n");
    }
  }
  const uint64_t a_attempts = flooded.a_loads.attempts + flooded.a_commits.attempts;
  if (a_attempts > 0) {
    absl::StrAppend(
        &out, absl::StrFormat("  CPU per A attempt (most refused): cluster +%.0f us over idle, "
                              "A's own process %.0f us\n",
                              1e6 * (flooded.cluster_cpu_s - idle.cluster_cpu_s) / a_attempts,
                              1e6 * flooded.a_cpu_s / a_attempts));
  }
  absl::StrAppend(
      &out, absl::StrFormat("  CPU s/s: cluster processes idle %.2f, flood %.2f; B's process "
                            "idle %.2f, flood %.2f; A's process %.2f; machine busy %.0f%% / "
                            "%.0f%%\n",
                            idle.cluster_cpu_s / seconds, flooded.cluster_cpu_s / seconds,
                            idle.cpu.process_cpu_s / seconds, flooded.cpu.process_cpu_s / seconds,
                            flooded.a_cpu_s / seconds, 100 * idle.cpu.machine_busy,
                            100 * flooded.cpu.machine_busy));
  return report;
}

absl::Status RunFloodClient(const std::string& options_file, std::ostream& out) {
  CELLAR_ASSIGN_OR_RETURN(const std::string text, ReadFile(options_file));
  CELLAR_ASSIGN_OR_RETURN(const FloodClientOptions o, FromText(text));
  CELLAR_ASSIGN_OR_RETURN(const std::string token, ReadFile(o.token_file));
  CELLAR_ASSIGN_OR_RETURN(const std::string objects, ReadFile(o.population_file));
  std::vector<Committed> population;
  std::istringstream in(objects);
  Committed c;
  while (in >> c.oid >> c.tid) population.push_back(c);
  if (population.empty()) return absl::InvalidArgumentError("no objects to load");

  CellarTarget target;
  target.master_addresses = {o.master};
  target.cluster_name = o.cluster_name;
  target.token = std::string(absl::StripAsciiWhitespace(token));
  common::TlsClientConfig tls;
  tls.ca_file = o.ca_file;
  target.tls = tls;
  PacedRun run;
  const int loads = run.AddSchedule(o.loads_per_s, /*steady=*/false);
  const int commits = run.AddSchedule(o.commits_per_s, /*steady=*/false);
  // A rate of 0: that kind is not flooded (no clients).
  CELLAR_RETURN_IF_ERROR(AddWorkers(run, loads, o.loads_per_s > 0 ? o.clients : 0, target,
                                    /*loads=*/true, &population, o.object_bytes, 1000));
  CELLAR_RETURN_IF_ERROR(AddWorkers(run, commits, o.commits_per_s > 0 ? o.clients : 0, target,
                                    /*loads=*/false, &population, o.object_bytes, 0));
  out << "ready" << std::endl;
  const SteadyClock::time_point start = SteadyClock::now();
  const SteadyClock::time_point measure_from = start + absl::ToChronoNanoseconds(o.warmup);
  const SteadyClock::time_point end = measure_from + absl::ToChronoNanoseconds(o.duration);
  run.Start(start, measure_from, end);
  const WindowCpu cpu = MeasureWindow(measure_from, end);
  std::vector<PacedResult> results = run.Join();
  PacedResult& l = results[loads];
  PacedResult& m = results[commits];
  out << "result " << Counts(l) << " " << Counts(m) << " " << cpu.process_cpu_s << "\n";
  const std::string& exhausted = !m.first_exhausted.empty() ? m.first_exhausted : l.first_exhausted;
  if (!exhausted.empty()) out << "exhausted " << exhausted << "\n";
  const std::string& error = !m.first_error.empty() ? m.first_error : l.first_error;
  if (!error.empty()) out << "error " << error << "\n";
  out << std::flush;
  return absl::OkStatus();
}

}  // namespace cellar::bench
