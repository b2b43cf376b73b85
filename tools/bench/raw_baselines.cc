#include "tools/bench/raw_baselines.h"

#include <endian.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_macros.h"

namespace cellar::bench {
namespace {

// First oid of the rows written by the write scenarios (the rows the
// select scenarios read are 1..load_objects).
constexpr uint64_t kFirstWriteOid = uint64_t{1} << 40;

// One connection of a raw database, used by one thread.
class RawConnection {
 public:
  virtual ~RawConnection() = default;
  // Inserts one row in its own transaction.
  virtual absl::Status Insert(uint64_t oid, const std::string& data) = 0;
  // Inserts rows (oids[i], data[i]) in one transaction.
  virtual absl::Status InsertMany(const std::vector<uint64_t>& oids,
                                  const std::vector<std::string>& data) = 0;
  // The data of row `oid`; NOT_FOUND if there is none.
  virtual absl::StatusOr<std::string> Select(uint64_t oid) = 0;
};

using Connector = std::function<absl::StatusOr<std::unique_ptr<RawConnection>>()>;

// ---------------------------------------------------------------- PostgreSQL

constexpr Oid kInt8Oid = 20;
constexpr Oid kByteaOid = 17;

class PgConnection : public RawConnection {
 public:
  static absl::StatusOr<std::unique_ptr<PgConnection>> Connect(const std::string& conninfo) {
    PGconn* conn = PQconnectdb(conninfo.c_str());
    auto result = std::unique_ptr<PgConnection>(new PgConnection(conn));
    if (PQstatus(conn) != CONNECTION_OK) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to PostgreSQL: ", PQerrorMessage(conn)));
    }
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
    return result;
  }

  ~PgConnection() override { PQfinish(conn_); }

  absl::Status Exec(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    return Check(result, PGRES_COMMAND_OK, sql);
  }

  absl::Status Insert(uint64_t oid, const std::string& data) override {
    if (!insert_prepared_) {
      const Oid types[2] = {kInt8Oid, kByteaOid};
      CELLAR_RETURN_IF_ERROR(Check(
          PQprepare(conn_, "ins", "INSERT INTO objects (oid, data) VALUES ($1, $2)", 2, types),
          PGRES_COMMAND_OK, "prepare insert"));
      insert_prepared_ = true;
    }
    const uint64_t be_oid = htobe64(oid);
    const char* values[2] = {reinterpret_cast<const char*>(&be_oid), data.data()};
    const int lengths[2] = {8, static_cast<int>(data.size())};
    const int formats[2] = {1, 1};
    return Check(PQexecPrepared(conn_, "ins", 2, values, lengths, formats, 1), PGRES_COMMAND_OK,
                 "insert");
  }

  absl::Status InsertMany(const std::vector<uint64_t>& oids,
                          const std::vector<std::string>& data) override {
    const size_t n = oids.size();
    const std::string name = absl::StrCat("bulk", n);
    if (prepared_bulk_sizes_.count(n) == 0) {
      // One multi-row INSERT: a single statement, hence one transaction.
      std::string sql = "INSERT INTO objects (oid, data) VALUES ";
      std::vector<Oid> types;
      for (size_t i = 0; i < n; ++i) {
        absl::StrAppend(&sql, i == 0 ? "" : ",", "($", 2 * i + 1, ",$", 2 * i + 2, ")");
        types.push_back(kInt8Oid);
        types.push_back(kByteaOid);
      }
      CELLAR_RETURN_IF_ERROR(Check(PQprepare(conn_, name.c_str(), sql.c_str(),
                                             static_cast<int>(2 * n), types.data()),
                                   PGRES_COMMAND_OK, "prepare bulk insert"));
      prepared_bulk_sizes_.insert(n);
    }
    std::vector<uint64_t> be_oids(n);
    std::vector<const char*> values(2 * n);
    std::vector<int> lengths(2 * n);
    std::vector<int> formats(2 * n, 1);
    for (size_t i = 0; i < n; ++i) {
      be_oids[i] = htobe64(oids[i]);
      values[2 * i] = reinterpret_cast<const char*>(&be_oids[i]);
      lengths[2 * i] = 8;
      values[2 * i + 1] = data[i].data();
      lengths[2 * i + 1] = static_cast<int>(data[i].size());
    }
    return Check(PQexecPrepared(conn_, name.c_str(), static_cast<int>(2 * n), values.data(),
                                lengths.data(), formats.data(), 1),
                 PGRES_COMMAND_OK, "bulk insert");
  }

  absl::StatusOr<std::string> Select(uint64_t oid) override {
    if (!select_prepared_) {
      const Oid types[1] = {kInt8Oid};
      CELLAR_RETURN_IF_ERROR(Check(
          PQprepare(conn_, "sel", "SELECT data FROM objects WHERE oid = $1", 1, types),
          PGRES_COMMAND_OK, "prepare select"));
      select_prepared_ = true;
    }
    const uint64_t be_oid = htobe64(oid);
    const char* values[1] = {reinterpret_cast<const char*>(&be_oid)};
    const int lengths[1] = {8};
    const int formats[1] = {1};
    PGresult* result = PQexecPrepared(conn_, "sel", 1, values, lengths, formats, 1);
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
      return Check(result, PGRES_TUPLES_OK, "select");
    }
    if (PQntuples(result) != 1) {
      PQclear(result);
      return absl::NotFoundError(absl::StrCat("no row ", oid));
    }
    std::string data(PQgetvalue(result, 0, 0), PQgetlength(result, 0, 0));
    PQclear(result);
    return data;
  }

 private:
  explicit PgConnection(PGconn* conn) : conn_(conn) {}

  // Frees `result`; an error unless its status is `expected`.
  absl::Status Check(PGresult* result, ExecStatusType expected, absl::string_view what) {
    const bool ok = PQresultStatus(result) == expected;
    std::string message = ok ? "" : PQresultErrorMessage(result);
    if (!ok && message.empty()) message = PQerrorMessage(conn_);
    PQclear(result);
    if (ok) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("PostgreSQL ", what, ": ", message));
  }

  PGconn* const conn_;
  bool insert_prepared_ = false;
  bool select_prepared_ = false;
  std::set<size_t> prepared_bulk_sizes_;
};

// -------------------------------------------------------------------- SQLite

class SqliteConnection : public RawConnection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(const std::string& path) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    auto conn = std::unique_ptr<SqliteConnection>(new SqliteConnection(db));
    if (rc != SQLITE_OK) {
      return absl::UnavailableError(
          absl::StrCat("cannot open ", path, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    }
    sqlite3_busy_timeout(db, 10000);
    CELLAR_RETURN_IF_ERROR(conn->Exec("PRAGMA journal_mode = WAL"));
    CELLAR_RETURN_IF_ERROR(conn->Exec("PRAGMA synchronous = FULL"));
    CELLAR_RETURN_IF_ERROR(conn->Exec(
        "CREATE TABLE IF NOT EXISTS objects (oid INTEGER PRIMARY KEY, data BLOB NOT NULL)"));
    CELLAR_RETURN_IF_ERROR(conn->Prepare("INSERT INTO objects (oid, data) VALUES (?, ?)",
                                         &conn->insert_));
    CELLAR_RETURN_IF_ERROR(conn->Prepare("SELECT data FROM objects WHERE oid = ?",
                                         &conn->select_));
    return conn;
  }

  ~SqliteConnection() override {
    sqlite3_finalize(insert_);
    sqlite3_finalize(select_);
    sqlite3_close_v2(db_);
  }

  absl::Status Insert(uint64_t oid, const std::string& data) override {
    return InsertRow(oid, data);
  }

  absl::Status InsertMany(const std::vector<uint64_t>& oids,
                          const std::vector<std::string>& data) override {
    CELLAR_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    for (size_t i = 0; i < oids.size(); ++i) {
      if (absl::Status s = InsertRow(oids[i], data[i]); !s.ok()) {
        Exec("ROLLBACK").IgnoreError();
        return s;
      }
    }
    if (absl::Status s = Exec("COMMIT"); !s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Select(uint64_t oid) override {
    sqlite3_bind_int64(select_, 1, static_cast<sqlite3_int64>(oid));
    const int rc = sqlite3_step(select_);
    absl::StatusOr<std::string> result;
    if (rc == SQLITE_ROW) {
      const void* blob = sqlite3_column_blob(select_, 0);
      const int size = sqlite3_column_bytes(select_, 0);
      result = std::string(static_cast<const char*>(blob), size);
    } else if (rc == SQLITE_DONE) {
      result = absl::NotFoundError(absl::StrCat("no row ", oid));
    } else {
      result = absl::InternalError(absl::StrCat("SQLite select: ", sqlite3_errmsg(db_)));
    }
    sqlite3_reset(select_);
    return result;
  }

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}

  absl::Status Exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error ? error : sqlite3_errmsg(db_);
      sqlite3_free(error);
      return absl::InternalError(absl::StrCat("SQLite ", sql, ": ", message));
    }
    return absl::OkStatus();
  }

  absl::Status Prepare(const char* sql, sqlite3_stmt** stmt) {
    if (sqlite3_prepare_v2(db_, sql, -1, stmt, nullptr) != SQLITE_OK) {
      return absl::InternalError(absl::StrCat("SQLite prepare ", sql, ": ", sqlite3_errmsg(db_)));
    }
    return absl::OkStatus();
  }

  absl::Status InsertRow(uint64_t oid, const std::string& data) {
    sqlite3_bind_int64(insert_, 1, static_cast<sqlite3_int64>(oid));
    sqlite3_bind_blob(insert_, 2, data.data(), static_cast<int>(data.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    if (rc != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat("SQLite insert: ", sqlite3_errstr(rc)));
    }
    return absl::OkStatus();
  }

  sqlite3* const db_;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
};

// ------------------------------------------------------------------ scenarios

// Oids written by a scenario's workers (for the read-back check).
struct WrittenLog {
  absl::Mutex mu;
  std::vector<uint64_t> oids ABSL_GUARDED_BY(mu);
};

class InsertWorker : public Worker {
 public:
  InsertWorker(std::unique_ptr<RawConnection> conn, int rows, int object_bytes,
               std::atomic<uint64_t>* next_oid, WrittenLog* log)
      : conn_(std::move(conn)),
        rows_(rows),
        object_bytes_(object_bytes),
        next_oid_(next_oid),
        log_(log) {}

  ~InsertWorker() override {
    absl::MutexLock lock(&log_->mu);
    log_->oids.insert(log_->oids.end(), written_.begin(), written_.end());
  }

  absl::Status Op() override {
    const uint64_t first = next_oid_->fetch_add(rows_);
    if (rows_ == 1) {
      CELLAR_RETURN_IF_ERROR(conn_->Insert(first, ObjectData(first, object_bytes_)));
      written_.push_back(first);
      return absl::OkStatus();
    }
    oids_.clear();
    data_.clear();
    for (int i = 0; i < rows_; ++i) {
      oids_.push_back(first + i);
      data_.push_back(ObjectData(first + i, object_bytes_));
    }
    CELLAR_RETURN_IF_ERROR(conn_->InsertMany(oids_, data_));
    written_.insert(written_.end(), oids_.begin(), oids_.end());
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<RawConnection> conn_;
  const int rows_;
  const int object_bytes_;
  std::atomic<uint64_t>* const next_oid_;
  WrittenLog* const log_;
  std::vector<uint64_t> written_;
  std::vector<uint64_t> oids_;
  std::vector<std::string> data_;
};

class SelectWorker : public Worker {
 public:
  SelectWorker(std::unique_ptr<RawConnection> conn, int thread, int rows, int object_bytes)
      : conn_(std::move(conn)), random_(1000 + thread), pick_(1, rows), object_bytes_(object_bytes) {}

  absl::Status Op() override {
    const uint64_t oid = pick_(random_);
    CELLAR_ASSIGN_OR_RETURN(std::string data, conn_->Select(oid));
    return CheckObjectData(oid, object_bytes_, data);
  }

 private:
  std::unique_ptr<RawConnection> conn_;
  std::mt19937_64 random_;
  std::uniform_int_distribution<uint64_t> pick_;
  const int object_bytes_;
};

BenchRow MakeRow(std::string name, const std::string& backend, std::string kind, std::string unit,
                 int clients, const Measurement& m) {
  BenchRow row;
  row.name = std::move(name);
  row.backend = backend;
  row.kind = std::move(kind);
  row.unit = std::move(unit);
  row.clients = clients;
  row.raw = true;
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

// Reads back a sample of the rows `log` says were written; failures are
// added to `row`.
void VerifyWritten(const Connector& connect, WrittenLog& log, int sample, int object_bytes,
                   BenchRow& row) {
  std::vector<uint64_t> oids;
  {
    absl::MutexLock lock(&log.mu);
    oids = log.oids;
    log.oids.clear();
  }
  std::mt19937_64 random(42);
  std::shuffle(oids.begin(), oids.end(), random);
  if (oids.size() > static_cast<size_t>(sample)) oids.resize(sample);
  auto fail = [&](const absl::Status& status) {
    if (row.errors++ == 0) row.first_error = absl::StrCat("read-back: ", status.ToString());
  };
  absl::StatusOr<std::unique_ptr<RawConnection>> conn = connect();
  if (!conn.ok()) return fail(conn.status());
  for (uint64_t oid : oids) {
    absl::StatusOr<std::string> data = (*conn)->Select(oid);
    if (!data.ok()) {
      fail(data.status());
    } else if (absl::Status s = CheckObjectData(oid, object_bytes, *data); !s.ok()) {
      fail(s);
    }
  }
}

absl::StatusOr<std::vector<BenchRow>> RunRaw(const std::string& db, const std::string& backend,
                                             const Connector& connect, const WorkloadOptions& w,
                                             std::ostream& progress) {
  const std::string label = absl::StrCat("raw ", backend);
  // Rows 1..load_objects for the select scenarios, in bulk.
  progress << "[bench] " << label << ": writing " << w.load_objects << " rows for the selects"
           << std::endl;
  {
    CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<RawConnection> conn, connect());
    const int chunk = std::max(1, w.bulk_objects);
    for (int first = 1; first <= w.load_objects; first += chunk) {
      std::vector<uint64_t> oids;
      std::vector<std::string> data;
      for (int oid = first; oid < first + chunk && oid <= w.load_objects; ++oid) {
        oids.push_back(oid);
        data.push_back(ObjectData(oid, w.object_bytes));
      }
      CELLAR_RETURN_IF_ERROR(conn->InsertMany(oids, data));
    }
  }

  std::vector<BenchRow> rows;
  std::atomic<uint64_t> next_oid{kFirstWriteOid};
  RunSpec spec;
  spec.warmup = w.warmup;
  spec.duration = w.duration;

  auto run_inserts = [&](const std::string& name, const std::string& kind, int clients,
                         int rows_per_op) -> absl::Status {
    progress << "[bench] " << label << ": " << name << " (" << clients << (clients == 1 ? " connection)" : " connections)")
             << std::endl;
    WrittenLog log;
    spec.threads = clients;
    spec.items_per_op = rows_per_op;
    CELLAR_ASSIGN_OR_RETURN(
        Measurement m, RunScenario(spec, [&](int) -> absl::StatusOr<std::unique_ptr<Worker>> {
          CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<RawConnection> conn, connect());
          return std::make_unique<InsertWorker>(std::move(conn), rows_per_op, w.object_bytes,
                                                &next_oid, &log);
        }));
    rows.push_back(MakeRow(name, backend, kind, "rows/s", clients, m));
    VerifyWritten(connect, log, w.verify_sample, w.object_bytes, rows.back());
    ReportRow(rows.back(), progress);
    return absl::OkStatus();
  };
  CELLAR_RETURN_IF_ERROR(run_inserts(RawCommitName(db, w.low_clients), "commit", w.low_clients, 1));
  CELLAR_RETURN_IF_ERROR(
      run_inserts(RawCommitName(db, w.high_clients), "commit", w.high_clients, 1));
  CELLAR_RETURN_IF_ERROR(run_inserts(RawBulkName(db, w.bulk_objects, w.bulk_clients), "bulk",
                                     w.bulk_clients, w.bulk_objects));

  for (int clients : {w.low_clients, w.high_clients}) {
    const std::string name = RawSelectName(db, clients);
    progress << "[bench] " << label << ": " << name << " (" << clients << (clients == 1 ? " connection)" : " connections)")
             << std::endl;
    spec.threads = clients;
    spec.items_per_op = 1;
    CELLAR_ASSIGN_OR_RETURN(
        Measurement m,
        RunScenario(spec, [&](int thread) -> absl::StatusOr<std::unique_ptr<Worker>> {
          CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<RawConnection> conn, connect());
          return std::make_unique<SelectWorker>(std::move(conn), thread, w.load_objects,
                                                w.object_bytes);
        }));
    rows.push_back(MakeRow(name, backend, "load", "selects/s", clients, m));
    ReportRow(rows.back(), progress);
  }
  return rows;
}

}  // namespace

absl::StatusOr<std::vector<BenchRow>> RunRawPostgres(const std::string& conninfo,
                                                     const WorkloadOptions& workload,
                                                     std::ostream& progress) {
  {
    CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, PgConnection::Connect(conninfo));
    CELLAR_RETURN_IF_ERROR(conn->Exec("DROP TABLE IF EXISTS objects"));
    CELLAR_RETURN_IF_ERROR(
        conn->Exec("CREATE TABLE objects (oid bigint PRIMARY KEY, data bytea NOT NULL)"));
  }
  Connector connect = [&]() -> absl::StatusOr<std::unique_ptr<RawConnection>> {
    CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, PgConnection::Connect(conninfo));
    return std::unique_ptr<RawConnection>(std::move(conn));
  };
  return RunRaw("pg", "postgresql", connect, workload, progress);
}

absl::StatusOr<std::vector<BenchRow>> RunRawSqlite(const std::string& path,
                                                   const WorkloadOptions& workload,
                                                   std::ostream& progress) {
  Connector connect = [&]() -> absl::StatusOr<std::unique_ptr<RawConnection>> {
    CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> conn, SqliteConnection::Open(path));
    return std::unique_ptr<RawConnection>(std::move(conn));
  };
  return RunRaw("sqlite", "sqlite", connect, workload, progress);
}

}  // namespace cellar::bench
