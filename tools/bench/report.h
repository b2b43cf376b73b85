#ifndef CELLAR_TOOLS_BENCH_REPORT_H_
#define CELLAR_TOOLS_BENCH_REPORT_H_

// Results of the benchmark: one BenchRow per scenario and backend, the
// baseline each is compared with, the targets, and the table and
// JSON renderings. Pure functions over values; thread-compatible.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/types/optional.h"

namespace cellar::bench {

struct BenchRow {
  // Scenario name, e.g. "tiny_commit_c16" or "raw_pg_commit_c16".
  std::string name;
  // "sqlite" or "postgresql" (for raw rows: the database measured).
  std::string backend;
  // What ops_per_s counts: "txn/s", "objects/s", "loads/s", "rows/s", ...
  std::string unit;
  // "commit", "bulk" or "load": pairs a row with its raw baseline.
  std::string kind;
  // Client threads (each with its own client/connection).
  int clients = 1;
  double ops_per_s = 0;
  // Per-operation latency (a bulk transaction is one operation).
  double p50_ms = 0;
  double p99_ms = 0;
  // Operations counted in the measured window.
  uint64_t ops = 0;
  // CPU microseconds this process spent per counted item (unit) during the
  // window: client threads plus, for cellar rows, the in-process cluster;
  // never the PostgreSQL server's processes. 0 when unknown.
  double cpu_us_per_op = 0;
  // Fraction (0..1) of the machine's CPUs busy during the window (any
  // process: other work on the machine shows up here); -1 if unknown.
  double machine_busy = -1;
  // Failed operations plus failed read-back checks; must be 0.
  uint64_t errors = 0;
  std::string first_error;
  // True for the raw libpq / sqlite3 rows.
  bool raw = false;
  // The raw row this one is compared with (empty: none).
  std::string baseline_name;
  absl::optional<double> baseline_ops_per_s;
  // ops_per_s / baseline_ops_per_s when there is a baseline.
  absl::optional<double> ratio;
};

// One of the goals, evaluated for one backend.
struct TargetCheck {
  std::string backend;
  // Human text of the goal, e.g. "tiny commits/s at 16 clients >= 0.5 x raw
  // PG single-row commits/s at 16".
  std::string goal;
  std::string row_name;
  // Measured value and the threshold it must reach (absent when a row
  // needed to decide is missing: reported as "n/a").
  absl::optional<double> measured;
  absl::optional<double> threshold;
  bool met = false;
};

// Fills baseline_name / baseline_ops_per_s / ratio of every non-raw row
// from the raw PostgreSQL row of the same kind and clients present in
// `rows` (the baseline, for both backends).
void AttachBaselines(std::vector<BenchRow>& rows);

// The three targets, per non-raw backend present in `rows`:
// tiny commits at high_clients >= 0.5 x raw PG commits at high_clients,
// bulk >= 50,000 objects/s, uncached loads at high_clients >= 20,000/s.
std::vector<TargetCheck> EvaluateTargets(const std::vector<BenchRow>& rows,
                                         int high_clients);

// One progress line for a finished row ("[bench]   -> 123.4 txn/s, p50 ...").
void ReportRow(const BenchRow& row, std::ostream& progress);

// Readable tables (cellar rows, raw baseline rows, targets).
void PrintTable(const std::vector<BenchRow>& rows,
                const std::vector<TargetCheck>& targets, std::ostream& out);

// A JSON list with one object per row: name, backend, ops_per_s, p50_ms,
// p99_ms, baseline_name, baseline_ops_per_s, ratio (null without a
// baseline), unit, plus clients, ops, errors, first_error, raw,
// cpu_us_per_op and machine_busy (null if unknown).
std::string ToJson(const std::vector<BenchRow>& rows);

// The scenario names, shared by the runner and the report.
std::string TinyCommitName(int clients);
std::string BulkName(int objects, int object_bytes, int clients);
std::string LoadName(int clients);
// "load_many<batch>_c<clients>": LoadMany of `batch` random objects per call.
std::string LoadManyName(int batch, int clients);
// Objects per call in the LoadMany row.
inline constexpr int kLoadManyBatch = 100;
std::string RawCommitName(const std::string& db, int clients);
std::string RawBulkName(const std::string& db, int rows, int clients);
std::string RawSelectName(const std::string& db, int clients);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_REPORT_H_
