#include "tools/bench/report.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cellar::bench {
namespace {

constexpr double kTinyCommitFraction = 0.5;
constexpr double kBulkObjectsPerSecond = 50000;
constexpr double kUncachedLoadsPerSecond = 20000;

const BenchRow* FindRaw(const std::vector<BenchRow>& rows, const std::string& backend,
                        const std::string& kind, int clients) {
  for (const BenchRow& row : rows) {
    if (row.raw && row.backend == backend && row.kind == kind && row.clients == clients) {
      return &row;
    }
  }
  return nullptr;
}

const BenchRow* FindRow(const std::vector<BenchRow>& rows, const std::string& backend,
                        const std::string& kind, int clients) {
  for (const BenchRow& row : rows) {
    if (!row.raw && row.backend == backend && row.kind == kind && row.clients == clients) {
      return &row;
    }
  }
  return nullptr;
}

// The highest client count among `kind` rows (the "16" of the targets).
int HighClients(const std::vector<BenchRow>& rows, const std::string& kind) {
  int high = 0;
  for (const BenchRow& row : rows) {
    if (row.kind == kind && row.clients > high) high = row.clients;
  }
  return high;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

std::string JsonNumber(double v, int decimals) {
  return absl::StrFormat("%.*f", decimals, v);
}

std::string Optional(const absl::optional<double>& v, const char* format) {
  return v.has_value() ? absl::StrFormat(format, *v) : std::string("-");
}

}  // namespace

std::string TinyCommitName(int clients) { return absl::StrCat("tiny_commit_c", clients); }
std::string BulkName(int objects, int object_bytes, int clients) {
  return absl::StrCat("bulk_", objects, "x", object_bytes, "_c", clients);
}
std::string LoadName(int clients) { return absl::StrCat("load_uncached_c", clients); }
std::string LoadManyName(int batch, int clients) {
  return absl::StrCat("load_many", batch, "_c", clients);
}
std::string RawCommitName(const std::string& db, int clients) {
  return absl::StrCat("raw_", db, "_commit_c", clients);
}
std::string RawBulkName(const std::string& db, int rows, int clients) {
  return absl::StrCat("raw_", db, "_bulk_", rows, "_c", clients);
}
std::string RawSelectName(const std::string& db, int clients) {
  return absl::StrCat("raw_", db, "_select_c", clients);
}

void AttachBaselines(std::vector<BenchRow>& rows) {
  // Copy what's needed first: `rows` is modified below.
  std::vector<BenchRow> raw;
  for (const BenchRow& row : rows) {
    if (row.raw) raw.push_back(row);
  }
  for (BenchRow& row : rows) {
    if (row.raw) continue;
    const BenchRow* base = FindRaw(raw, "postgresql", row.kind, row.clients);
    if (base == nullptr) continue;
    row.baseline_name = base->name;
    row.baseline_ops_per_s = base->ops_per_s;
    if (base->ops_per_s > 0) row.ratio = row.ops_per_s / base->ops_per_s;
  }
}

std::vector<TargetCheck> EvaluateTargets(const std::vector<BenchRow>& rows,
                                         int high_clients) {
  std::vector<std::string> backends;
  std::set<std::string> seen;
  for (const BenchRow& row : rows) {
    if (!row.raw && seen.insert(row.backend).second) backends.push_back(row.backend);
  }
  std::vector<TargetCheck> checks;
  const int bulk_clients = HighClients(rows, "bulk");
  for (const std::string& backend : backends) {
    {
      TargetCheck c;
      c.backend = backend;
      c.goal = absl::StrFormat(
          "tiny commits/s at %d clients >= %.1f x raw PG single-row commits/s at %d",
          high_clients, kTinyCommitFraction, high_clients);
      c.row_name = TinyCommitName(high_clients);
      const BenchRow* row = FindRow(rows, backend, "commit", high_clients);
      const BenchRow* base = FindRaw(rows, "postgresql", "commit", high_clients);
      if (row != nullptr) c.measured = row->ops_per_s;
      if (base != nullptr) c.threshold = kTinyCommitFraction * base->ops_per_s;
      checks.push_back(c);
    }
    {
      TargetCheck c;
      c.backend = backend;
      c.goal = absl::StrFormat("bulk add >= %.0f objects/s", kBulkObjectsPerSecond);
      const BenchRow* row = FindRow(rows, backend, "bulk", bulk_clients);
      if (row != nullptr) {
        c.row_name = row->name;
        c.measured = row->ops_per_s;
      }
      c.threshold = kBulkObjectsPerSecond;
      checks.push_back(c);
    }
    {
      TargetCheck c;
      c.backend = backend;
      c.goal = absl::StrFormat("uncached loads/s at %d clients >= %.0f", high_clients,
                               kUncachedLoadsPerSecond);
      c.row_name = LoadName(high_clients);
      const BenchRow* row = FindRow(rows, backend, "load", high_clients);
      if (row != nullptr) c.measured = row->ops_per_s;
      c.threshold = kUncachedLoadsPerSecond;
      checks.push_back(c);
    }
  }
  for (TargetCheck& c : checks) {
    c.met = c.measured.has_value() && c.threshold.has_value() && *c.measured >= *c.threshold;
  }
  return checks;
}

void ReportRow(const BenchRow& row, std::ostream& progress) {
  progress << absl::StrFormat("[bench]   -> %.1f %s, p50 %.3f ms, p99 %.3f ms, %d errors",
                              row.ops_per_s, row.unit, row.p50_ms, row.p99_ms, row.errors)
           << std::endl;
}

void PrintTable(const std::vector<BenchRow>& rows, const std::vector<TargetCheck>& targets,
                std::ostream& out) {
  const char* kRowFormat = "%-22s %-10s %-10s %11s %8s %8s  %-19s %11s %7s %6s %8s %5s\n";
  bool any_cellar = false, any_raw = false;
  for (const BenchRow& row : rows) (row.raw ? any_raw : any_cellar) = true;

  auto print_rows = [&](bool raw) {
    out << absl::StrFormat(kRowFormat, "name", "backend", "unit", "ops/s", "p50 ms", "p99 ms",
                           "baseline", "base ops/s", "ratio", "errors", "cpu us", "busy");
    for (const BenchRow& row : rows) {
      if (row.raw != raw) continue;
      out << absl::StrFormat(kRowFormat, row.name, row.backend, row.unit,
                             absl::StrFormat("%.1f", row.ops_per_s),
                             absl::StrFormat("%.3f", row.p50_ms),
                             absl::StrFormat("%.3f", row.p99_ms),
                             row.baseline_name.empty() ? "-" : row.baseline_name,
                             Optional(row.baseline_ops_per_s, "%.1f"),
                             Optional(row.ratio, "%.3f"), absl::StrCat(row.errors),
                             absl::StrFormat("%.0f", row.cpu_us_per_op),
                             row.machine_busy < 0
                                 ? std::string("-")
                                 : absl::StrFormat("%.0f%%", 100 * row.machine_busy));
    }
  };
  if (any_cellar) {
    out << "cellar (client library -> in-process cluster):\n";
    print_rows(false);
  }
  if (any_raw) {
    out << (any_cellar ? "\n" : "") << "raw baselines (same machine, no cellar):\n";
    print_rows(true);
  }
  for (const BenchRow& row : rows) {
    if (row.errors > 0) {
      out << "ERRORS in " << row.name << " (" << row.backend << "): " << row.errors
          << "; first: " << row.first_error << "\n";
    }
  }
  out << "(cpu us: CPU microseconds of this process per unit - client threads, and for\n"
         " cellar rows the whole in-process cluster, or with --mode=security the cluster's\n"
         " processes too; never the PostgreSQL server; busy: share of all the machine's\n"
         " CPUs in use during the window, by any process)\n";
  if (!targets.empty()) {
    out << "\ntargets (from the issue; reported, not enforced):\n";
    for (const TargetCheck& c : targets) {
      std::string verdict = "n/a";
      if (c.measured.has_value() && c.threshold.has_value()) {
        verdict = c.met ? "MET" : "NOT MET";
      }
      out << absl::StrFormat("  %-10s %-72s %11s vs %11s  %s\n", c.backend, c.goal,
                             Optional(c.measured, "%.1f"), Optional(c.threshold, "%.1f"),
                             verdict);
    }
  }
}

std::string ToJson(const std::vector<BenchRow>& rows) {
  std::string out = "[\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    absl::StrAppend(
        &out, "  {", "\"name\": ", JsonString(r.name), ", \"backend\": ", JsonString(r.backend),
        ", \"ops_per_s\": ", JsonNumber(r.ops_per_s, 2), ", \"p50_ms\": ",
        JsonNumber(r.p50_ms, 4), ", \"p99_ms\": ", JsonNumber(r.p99_ms, 4),
        ", \"baseline_name\": ", r.baseline_name.empty() ? "null" : JsonString(r.baseline_name),
        ", \"baseline_ops_per_s\": ",
        r.baseline_ops_per_s.has_value() ? JsonNumber(*r.baseline_ops_per_s, 2) : "null",
        ", \"ratio\": ", r.ratio.has_value() ? JsonNumber(*r.ratio, 4) : "null",
        ", \"unit\": ", JsonString(r.unit), ", \"clients\": ", r.clients, ", \"ops\": ", r.ops,
        ", \"errors\": ", r.errors, ", \"first_error\": ", JsonString(r.first_error),
        ", \"raw\": ", r.raw ? "true" : "false", ", \"cpu_us_per_op\": ", JsonNumber(r.cpu_us_per_op, 1),
        ", \"machine_busy\": ", r.machine_busy < 0 ? "null" : JsonNumber(r.machine_busy, 3), "}", i + 1 < rows.size() ? "," : "", "\n");
  }
  out += "]\n";
  return out;
}

}  // namespace cellar::bench
