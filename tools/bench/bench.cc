#include "tools/bench/bench.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "services/common/status_macros.h"
#include "tools/bench/cellar_scenarios.h"
#include "tools/bench/raw_baselines.h"
#include "tools/local/local_cluster.h"
#include "tools/pgserver/throwaway_postgres.h"

namespace cellar::bench {
namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

absl::StatusOr<std::string> MakeTempDir(const std::string& parent) {
  std::string base = parent;
  if (base.empty()) {
    const char* env = std::getenv("TMPDIR");
    base = env != nullptr && *env != '\0' ? env : "/tmp";
  }
  std::string pattern = absl::StrCat(base, "/cellar-bench-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("mkdtemp ", pattern, ": ", std::strerror(errno)));
  }
  return std::filesystem::absolute(pattern).string();
}

// Starts a cluster on `backends` (one URI per storage) and runs the cellar
// scenarios on it.
absl::StatusOr<std::vector<BenchRow>> RunOnCluster(const BenchOptions& options,
                                                   const std::string& backend,
                                                   std::vector<std::string> backend_uris,
                                                   int writer_threads, std::ostream& progress) {
  tools::LocalClusterOptions cluster_options;
  cluster_options.storages = options.storages;
  cluster_options.replicas = options.replicas;
  cluster_options.partitions = options.partitions;
  cluster_options.cluster_name = "bench";
  cluster_options.storage_backends = std::move(backend_uris);
  cluster_options.writer_threads = writer_threads;
  progress << "[bench] cellar/" << backend << ": starting a cluster (" << options.storages
           << " storages, " << options.replicas << " replicas, " << options.partitions
           << " partitions, " << writer_threads << " writer threads per storage)" << std::endl;
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<tools::LocalCluster> cluster,
                          tools::LocalCluster::Start(cluster_options));
  CellarTarget target;
  target.master_addresses = {cluster->master_address()};
  target.cluster_name = cluster_options.cluster_name;
  target.backend = backend;
  // The master's lock batching since the previous note (the commits of
  // one scenario, with its warm-up and verification).
  target.cluster_note = [collector = cluster->master().collector(),
                         last = std::array<double, 4>{}]() mutable {
    std::array<double, 4> now{};  // lock calls, locks, unlock calls, unlocks
    for (const prometheus::MetricFamily& family : collector->Collect()) {
      const bool calls = family.name == "cellar_master_storage_lock_calls_total";
      if (!calls && family.name != "cellar_master_storage_lock_items_total") continue;
      for (const prometheus::ClientMetric& metric : family.metric) {
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          if (label.name != "kind") continue;
          const size_t i = (label.value == "lock" ? 0 : 2) + (calls ? 0 : 1);
          now[i] = metric.counter.value;
        }
      }
    }
    std::array<double, 4> d;
    for (size_t i = 0; i < d.size(); ++i) d[i] = now[i] - last[i];
    last = now;
    return absl::StrFormat(
        "master lock batching: %.0f locks in %.0f calls (%.2f per call), %.0f unlocks in %.0f "
        "calls (%.2f per call)",
        d[1], d[0], d[0] > 0 ? d[1] / d[0] : 0.0, d[3], d[2], d[2] > 0 ? d[3] / d[2] : 0.0);
  };
  absl::StatusOr<std::vector<BenchRow>> rows =
      RunCellarScenarios(target, options.workload, progress);
  cluster->Shutdown();
  return rows;
}

absl::StatusOr<BenchResult> RunSecurityMode(const BenchOptions& options,
                                            std::ostream& progress) {
  CELLAR_ASSIGN_OR_RETURN(const std::string tmp, MakeTempDir(options.tmp_dir));
  absl::Cleanup remove_tmp = [&tmp] {
    std::error_code ignored;
    std::filesystem::remove_all(tmp, ignored);
  };
  BenchClusterOptions shape;
  shape.storages = options.storages;
  shape.replicas = options.replicas;
  shape.partitions = options.partitions;
  shape.argv0 = options.argv0;
  absl::StatusOr<SecurityReport> report =
      options.mode == "security"
          ? RunAuthTlsCost(shape, options.workload, options.security_rounds, tmp, progress)
          : RunFlood(shape, options.workload, options.flood, tmp, progress);
  CELLAR_RETURN_IF_ERROR(report.status());
  BenchResult result;
  result.rows = std::move(report->rows);
  result.summary = std::move(report->summary);
  for (const BenchRow& row : result.rows) result.errors += row.errors;
  return result;
}

}  // namespace

absl::StatusOr<BenchResult> RunBench(const BenchOptions& options, std::ostream& progress) {
  if (options.mode == "security" || options.mode == "flood") {
    return RunSecurityMode(options, progress);
  }
  if (options.mode != "perf") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown mode \"", options.mode, "\" (perf, security or flood)"));
  }
  for (const std::string& backend : options.backends) {
    if (backend != "sqlite" && backend != "postgresql") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown backend \"", backend, "\" (sqlite or postgresql)"));
    }
  }
  const WorkloadOptions& w = options.workload;
  if (w.low_clients < 1 || w.high_clients < 1 || w.bulk_clients < 1 || w.bulk_objects < 1 ||
      w.object_bytes < 8 || w.load_objects < 1) {
    return absl::InvalidArgumentError(
        "clients, bulk objects and load objects must be >= 1, object bytes >= 8");
  }

  CELLAR_ASSIGN_OR_RETURN(const std::string tmp, MakeTempDir(options.tmp_dir));
  absl::Cleanup remove_tmp = [&tmp] {
    std::error_code ignored;
    std::filesystem::remove_all(tmp, ignored);
  };

  // One PostgreSQL server for everything.
  const bool need_pg = options.raw_pg || Contains(options.backends, "postgresql");
  std::unique_ptr<tools::ThrowawayPostgres> server;
  std::string admin_conninfo = options.pg_conninfo;
  std::vector<std::string> databases;
  if (need_pg && admin_conninfo.empty()) {
    progress << "[bench] starting a throwaway PostgreSQL server (fsync on)" << std::endl;
    CELLAR_ASSIGN_OR_RETURN(server, tools::ThrowawayPostgres::Start({}));
    admin_conninfo = server->conninfo();
  }
  absl::Cleanup drop_databases = [&] {
    if (server != nullptr) return;  // the whole server goes away
    for (const std::string& name : databases) {
      tools::DropPostgresDatabase(admin_conninfo, name).IgnoreError();
    }
  };
  const std::string db_prefix = absl::StrCat("cellar_bench_", ::getpid());
  auto create_database = [&](const std::string& suffix) -> absl::StatusOr<std::string> {
    const std::string name = absl::StrCat(db_prefix, "_", suffix);
    CELLAR_ASSIGN_OR_RETURN(std::string conninfo,
                            tools::CreatePostgresDatabase(admin_conninfo, name));
    databases.push_back(name);
    return conninfo;
  };

  BenchResult result;
  std::vector<BenchRow> raw_rows;
  auto add_failure = [&](const std::string& what, const absl::Status& status) {
    progress << "[bench] FAILED: " << what << ": " << status << std::endl;
    result.failures.push_back(absl::StrCat(what, ": ", status.ToString()));
  };

  if (options.raw_pg) {
    absl::StatusOr<std::vector<BenchRow>> rows = [&]() -> absl::StatusOr<std::vector<BenchRow>> {
      CELLAR_ASSIGN_OR_RETURN(std::string conninfo, create_database("raw"));
      return RunRawPostgres(conninfo, w, progress);
    }();
    if (rows.ok()) {
      raw_rows.insert(raw_rows.end(), rows->begin(), rows->end());
    } else {
      add_failure("raw PostgreSQL baseline", rows.status());
    }
  }
  if (options.raw_sqlite) {
    absl::StatusOr<std::vector<BenchRow>> rows =
        RunRawSqlite(absl::StrCat(tmp, "/raw-sqlite.db"), w, progress);
    if (rows.ok()) {
      raw_rows.insert(raw_rows.end(), rows->begin(), rows->end());
    } else {
      add_failure("raw SQLite baseline", rows.status());
    }
  }

  for (const std::string& backend : options.backends) {
    absl::StatusOr<std::vector<BenchRow>> rows = [&]() -> absl::StatusOr<std::vector<BenchRow>> {
      std::vector<std::string> uris;
      if (backend == "sqlite") {
        const std::string dir = absl::StrCat(tmp, "/sqlite");
        std::filesystem::create_directories(dir);
        for (int i = 0; i < options.storages; ++i) {
          uris.push_back(absl::StrCat("sqlite://", dir, "/storage-", i, ".db"));
        }
        return RunOnCluster(options, backend, std::move(uris), options.sqlite_writer_threads,
                            progress);
      }
      for (int i = 0; i < options.storages; ++i) {
        CELLAR_ASSIGN_OR_RETURN(std::string conninfo, create_database(absl::StrCat("s", i)));
        uris.push_back(std::move(conninfo));
      }
      return RunOnCluster(options, backend, std::move(uris), options.pg_writer_threads, progress);
    }();
    if (rows.ok()) {
      result.rows.insert(result.rows.end(), rows->begin(), rows->end());
    } else {
      add_failure(absl::StrCat("cellar on ", backend), rows.status());
    }
  }

  result.rows.insert(result.rows.end(), raw_rows.begin(), raw_rows.end());
  AttachBaselines(result.rows);
  result.targets = EvaluateTargets(result.rows, w.high_clients);
  for (const BenchRow& row : result.rows) result.errors += row.errors;
  return result;
}

}  // namespace cellar::bench
