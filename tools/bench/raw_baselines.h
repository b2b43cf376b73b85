#ifndef CELLAR_TOOLS_BENCH_RAW_BASELINES_H_
#define CELLAR_TOOLS_BENCH_RAW_BASELINES_H_

// The raw baselines: the same workloads as the cellar scenarios, straight
// through the database client library, with no cellar in between. The
// issue defines "raw PostgreSQL" as the yardstick; raw SQLite is extra.
//
// Table (both): objects(oid bigint primary key, data blob/bytea).
//   raw_<db>_commit_c<N>   one single-row INSERT per transaction
//                          (autocommit), N connections  [rows/s]
//   raw_<db>_bulk_<B>_c<N> one B-row insert per transaction  [rows/s]
//   raw_<db>_select_c<N>   point SELECT by primary key of random rows
//                          (load_objects rows written first)  [selects/s]
// Each thread has its own connection; every SELECT result is compared with
// what was written, and a sample of the inserted rows is read back.
//
// Thread-safety: the functions block and are not meant to run concurrently
// on the same database.

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"

namespace cellar::bench {

// Runs the raw PostgreSQL scenarios on the (empty) database `conninfo`
// (libpq conninfo). PostgreSQL settings are the server's (synchronous_commit
// on by default). Progress lines go to `progress`. Rows have backend
// "postgresql" and raw = true.
absl::StatusOr<std::vector<BenchRow>> RunRawPostgres(const std::string& conninfo,
                                                     const WorkloadOptions& workload,
                                                     std::ostream& progress);

// Runs the raw SQLite scenarios on a new database file `path` (WAL,
// synchronous = FULL, like cellar's SQLite backend; busy timeout 10 s).
// Rows have backend "sqlite" and raw = true.
absl::StatusOr<std::vector<BenchRow>> RunRawSqlite(const std::string& path,
                                                   const WorkloadOptions& workload,
                                                   std::ostream& progress);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_RAW_BASELINES_H_
