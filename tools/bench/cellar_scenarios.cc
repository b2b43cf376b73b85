#include "tools/bench/cellar_scenarios.h"

#include <algorithm>
#include <memory>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "services/common/status_macros.h"

namespace cellar::bench {
namespace {

struct CommitLog {
  absl::Mutex mu;
  std::vector<Committed> objects ABSL_GUARDED_BY(mu);
};

// Commits transactions of `objects` new objects of `object_bytes` each;
// with a `log` (may be null), what it committed is added to it at the end.
class CommitWorker : public Worker {
 public:
  CommitWorker(std::unique_ptr<client::Client> client, int objects, int object_bytes,
               CommitLog* log)
      : client_(std::move(client)), objects_(objects), object_bytes_(object_bytes), log_(log) {}

  ~CommitWorker() override {
    client_->Close();
    if (log_ == nullptr) return;
    absl::MutexLock lock(&log_->mu);
    log_->objects.insert(log_->objects.end(), committed_.begin(), committed_.end());
  }

  absl::Status Op() override { return Commit(objects_); }

  // One transaction of `objects` new objects.
  absl::Status Commit(int objects) {
    oids_.clear();
    std::unique_ptr<client::Transaction> txn = client_->NewTransaction();
    for (int i = 0; i < objects; ++i) {
      CELLAR_ASSIGN_OR_RETURN(uint64_t oid, client_->NewOid());
      oids_.push_back(oid);
      txn->Store(oid, /*base_serial=*/0, ObjectData(oid, object_bytes_));
    }
    CELLAR_ASSIGN_OR_RETURN(uint64_t tid, txn->Commit());
    if (log_ != nullptr) {
      for (uint64_t oid : oids_) committed_.push_back({oid, tid});
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<client::Client> client_;
  const int objects_;
  const int object_bytes_;
  CommitLog* const log_;
  std::vector<uint64_t> oids_;
  std::vector<Committed> committed_;
};

// Loads random objects of `population` and checks them.
// One operation: Load() of a random object, or with batch > 1 one
// LoadMany() of `batch` random objects.
class LoadWorker : public Worker {
 public:
  LoadWorker(std::unique_ptr<client::Client> client, int thread,
             const std::vector<Committed>* population, int object_bytes, int batch)
      : client_(std::move(client)),
        population_(population),
        random_(7000 + thread),
        pick_(0, population->size() - 1),
        object_bytes_(object_bytes),
        batch_(batch) {}

  ~LoadWorker() override { client_->Close(); }

  absl::Status Op() override {
    if (batch_ == 1) {
      const Committed& expected = (*population_)[pick_(random_)];
      return Check(expected, client_->Load(expected.oid));
    }
    std::vector<const Committed*> expected;
    std::vector<uint64_t> oids;
    for (int i = 0; i < batch_; ++i) {
      expected.push_back(&(*population_)[pick_(random_)]);
      oids.push_back(expected.back()->oid);
    }
    std::vector<absl::StatusOr<client::LoadResult>> results = client_->LoadMany(oids);
    for (size_t i = 0; i < results.size(); ++i) {
      CELLAR_RETURN_IF_ERROR(Check(*expected[i], std::move(results[i])));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Check(const Committed& expected, absl::StatusOr<client::LoadResult> result) {
    if (!result.ok()) return result.status();
    if (result->serial != expected.tid) {
      return absl::DataLossError(absl::StrCat("oid ", expected.oid, ": serial ", result->serial,
                                              ", committed as ", expected.tid));
    }
    return CheckObjectData(expected.oid, object_bytes_, result->data);
  }

  std::unique_ptr<client::Client> client_;
  const std::vector<Committed>* const population_;
  std::mt19937_64 random_;
  std::uniform_int_distribution<size_t> pick_;
  const int object_bytes_;
  const int batch_;
};

BenchRow MakeRow(std::string name, const std::string& backend, std::string kind, std::string unit,
                 int clients, const Measurement& m) {
  BenchRow row;
  row.name = std::move(name);
  row.backend = backend;
  row.kind = std::move(kind);
  row.unit = std::move(unit);
  row.clients = clients;
  row.ops_per_s = m.items_per_s;
  row.p50_ms = m.p50_ms;
  row.p99_ms = m.p99_ms;
  row.ops = m.items;
  row.errors = m.errors;
  row.first_error = m.first_error;
  row.cpu_us_per_op = m.items > 0 ? 1e6 * m.process_cpu_s / m.items : 0;
  row.machine_busy = m.machine_busy;
  return row;
}

// Reads back a sample of `objects` through a fresh client (after Sync);
// failures are added to `row`.
void VerifyCommitted(const CellarTarget& target, std::vector<Committed> objects, int sample,
                     int object_bytes, BenchRow& row) {
  auto fail = [&](const absl::Status& status) {
    if (row.errors++ == 0) row.first_error = absl::StrCat("read-back: ", status.ToString());
  };
  std::mt19937_64 random(42);
  std::shuffle(objects.begin(), objects.end(), random);
  if (objects.size() > static_cast<size_t>(sample)) objects.resize(sample);
  absl::StatusOr<std::unique_ptr<client::Client>> client = ConnectClient(target);
  if (!client.ok()) return fail(client.status());
  if (absl::Status s = (*client)->Sync(); !s.ok()) return fail(s);
  for (const Committed& c : objects) {
    absl::StatusOr<client::LoadResult> r = (*client)->Load(c.oid);
    if (!r.ok()) {
      fail(r.status());
    } else if (r->serial != c.tid) {
      fail(absl::DataLossError(
          absl::StrCat("oid ", c.oid, ": serial ", r->serial, ", committed as ", c.tid)));
    } else if (absl::Status s = CheckObjectData(c.oid, object_bytes, r->data); !s.ok()) {
      fail(s);
    }
  }
  (*client)->Close();
}

}  // namespace

absl::StatusOr<std::unique_ptr<client::Client>> ConnectClient(const CellarTarget& target) {
  client::ClientOptions options;
  options.master_addresses = target.master_addresses;
  options.cluster_name = target.cluster_name;
  options.cache_bytes = 0;  // every load goes to a storage
  options.token = target.token;
  options.tls = target.tls;
  return client::Client::Connect(std::move(options));
}

std::unique_ptr<Worker> NewCommitWorker(std::unique_ptr<client::Client> client, int objects,
                                        int object_bytes) {
  return std::make_unique<CommitWorker>(std::move(client), objects, object_bytes,
                                        /*log=*/nullptr);
}

std::unique_ptr<Worker> NewLoadWorker(std::unique_ptr<client::Client> client, int seed,
                                      const std::vector<Committed>* population,
                                      int object_bytes) {
  return std::make_unique<LoadWorker>(std::move(client), seed, population, object_bytes,
                                      /*batch=*/1);
}

absl::StatusOr<std::vector<Committed>> WriteObjects(const CellarTarget& target, int count,
                                                    int per_txn, int threads,
                                                    int object_bytes) {
  per_txn = std::max(1, per_txn);
  const int txns = (count + per_txn - 1) / per_txn;
  CommitLog log;
  absl::Mutex mu;
  absl::Status error;
  int next_txn = 0;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      absl::StatusOr<std::unique_ptr<client::Client>> client = ConnectClient(target);
      if (!client.ok()) {
        absl::MutexLock lock(&mu);
        error.Update(client.status());
        return;
      }
      CommitWorker worker(*std::move(client), per_txn, object_bytes, &log);
      while (true) {
        int txn;
        {
          absl::MutexLock lock(&mu);
          if (next_txn >= txns || !error.ok()) break;
          txn = next_txn++;
        }
        absl::Status status = worker.Commit(std::min(per_txn, count - txn * per_txn));
        if (!status.ok()) {
          absl::MutexLock lock(&mu);
          error.Update(status);
        }
      }
    });
  }
  for (std::thread& t : workers) t.join();
  CELLAR_RETURN_IF_ERROR(error);
  absl::MutexLock lock(&log.mu);
  return log.objects;
}

absl::StatusOr<std::vector<BenchRow>> RunCellarScenarios(const CellarTarget& target,
                                                         const WorkloadOptions& w,
                                                         std::ostream& progress) {
  const std::string& backend = target.backend;
  std::vector<BenchRow> rows;
  RunSpec spec;
  spec.warmup = w.warmup;
  spec.duration = w.duration;
  spec.other_cpu_seconds = target.cluster_cpu_seconds;

  auto run_commits = [&](const std::string& name, const std::string& kind,
                         const std::string& unit, int clients, int objects) -> absl::Status {
    progress << "[bench] cellar/" << backend << ": " << name << " (" << clients << (clients == 1 ? " client)" : " clients)")
             << std::endl;
    CommitLog log;
    spec.threads = clients;
    spec.items_per_op = objects;
    CELLAR_ASSIGN_OR_RETURN(
        Measurement m, RunScenario(spec, [&](int) -> absl::StatusOr<std::unique_ptr<Worker>> {
          CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, ConnectClient(target));
          return std::make_unique<CommitWorker>(std::move(client), objects, w.object_bytes,
                                                &log);
        }));
    rows.push_back(MakeRow(name, backend, kind, unit, clients, m));
    std::vector<Committed> committed;
    {
      absl::MutexLock lock(&log.mu);
      committed = std::move(log.objects);
    }
    VerifyCommitted(target, std::move(committed), w.verify_sample, w.object_bytes, rows.back());
    ReportRow(rows.back(), progress);
    if (target.cluster_note) progress << "[bench]   " << target.cluster_note() << std::endl;
    return absl::OkStatus();
  };
  CELLAR_RETURN_IF_ERROR(
      run_commits(TinyCommitName(w.low_clients), "commit", "txn/s", w.low_clients, 1));
  CELLAR_RETURN_IF_ERROR(
      run_commits(TinyCommitName(w.high_clients), "commit", "txn/s", w.high_clients, 1));
  if (w.run_bulk) {
    CELLAR_RETURN_IF_ERROR(run_commits(BulkName(w.bulk_objects, w.object_bytes, w.bulk_clients),
                                       "bulk", "objects/s", w.bulk_clients, w.bulk_objects));
  }

  progress << "[bench] cellar/" << backend << ": writing " << w.load_objects
           << " objects for the loads" << std::endl;
  absl::StatusOr<std::vector<Committed>> written = WriteObjects(
      target, w.load_objects, w.bulk_objects, std::max(2, w.bulk_clients), w.object_bytes);
  if (written.ok() && written->empty()) {
    written = absl::InvalidArgumentError("load_objects must be positive");
  }
  struct LoadRun {
    int clients;
    int batch;  // objects per call: 1 = Load, more = LoadMany
  };
  for (const LoadRun run : {LoadRun{w.low_clients, 1}, LoadRun{w.high_clients, 1},
                            LoadRun{w.low_clients, kLoadManyBatch}}) {
    const int clients = run.clients;
    const std::string name =
        run.batch == 1 ? LoadName(clients) : LoadManyName(run.batch, clients);
    const char* unit = run.batch == 1 ? "loads/s" : "objects/s";
    if (!written.ok()) {
      // No data to read: report the scenario as failed, keep the other rows.
      BenchRow row = MakeRow(name, backend, "load", unit, clients, Measurement());
      row.errors = 1;
      row.first_error = absl::StrCat("writing the objects to load: ", written.status().ToString());
      rows.push_back(std::move(row));
      continue;
    }
    const std::vector<Committed>& population = *written;
    progress << "[bench] cellar/" << backend << ": " << name << " (" << clients << (clients == 1 ? " client)" : " clients)")
             << std::endl;
    spec.threads = clients;
    spec.items_per_op = static_cast<uint64_t>(run.batch);
    CELLAR_ASSIGN_OR_RETURN(
        Measurement m,
        RunScenario(spec, [&](int thread) -> absl::StatusOr<std::unique_ptr<Worker>> {
          CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, ConnectClient(target));
          return std::make_unique<LoadWorker>(std::move(client), thread, &population,
                                              w.object_bytes, run.batch);
        }));
    rows.push_back(MakeRow(name, backend, "load", unit, clients, m));
    ReportRow(rows.back(), progress);
  }
  return rows;
}

}  // namespace cellar::bench
