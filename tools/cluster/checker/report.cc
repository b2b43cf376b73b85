#include "tools/cluster/checker/report.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "services/common/json.h"

namespace cellar::tools::checker {
namespace {

std::string Seconds(absl::Duration d) { return absl::StrFormat("%.2fs", absl::ToDoubleSeconds(d)); }

std::string CodeOf(const std::string& error) {
  const size_t colon = error.find(':');
  return colon == std::string::npos ? error : error.substr(0, colon);
}

}  // namespace

void Measure(const std::vector<Operation>& ops, const std::vector<NemesisEvent>& events,
             RunReport& report) {
  std::vector<absl::Time> acks;
  for (const Operation& op : ops) {
    const bool read = op.type == OpType::kBankRead || op.type == OpType::kListRead;
    if (read) {
      ++(op.outcome == Outcome::kOk ? report.reads_ok : report.reads_failed);
      continue;
    }
    switch (op.outcome) {
      case Outcome::kOk:
        ++report.acknowledged;
        acks.push_back(op.end);
        break;
      case Outcome::kFailed:
        ++report.failed;
        ++report.failed_by_code[CodeOf(op.error)];
        report.first_failure_by_code.emplace(CodeOf(op.error), op.error);
        break;
      case Outcome::kUnknown:
        ++report.unknown;
        break;
    }
  }
  std::sort(acks.begin(), acks.end());
  const int buckets =
      std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(report.end - report.start,
                                                           absl::Seconds(1))));
  report.commits_per_second.assign(buckets, 0);
  absl::Time prev = report.start;
  report.longest_zero_window = absl::ZeroDuration();
  for (absl::Time t : acks) {
    const int64_t b = absl::ToInt64Seconds(t - report.start);
    if (b >= 0 && b < buckets) ++report.commits_per_second[b];
    if (t - prev > report.longest_zero_window) {
      report.longest_zero_window = t - prev;
      report.longest_zero_window_at = prev - report.start;
    }
    prev = std::max(prev, t);
  }
  if (report.end - prev > report.longest_zero_window) {
    report.longest_zero_window = report.end - prev;
    report.longest_zero_window_at = prev - report.start;
  }
  for (const NemesisEvent& e : events) {
    EventRecovery r;
    r.event = e;
    auto it = std::upper_bound(acks.begin(), acks.end(), e.start);
    const absl::Duration d = it == acks.end() ? report.end - e.start : *it - e.start;
    if (it != acks.end()) r.to_first_commit = d;
    absl::Duration& worst = e.planned ? report.worst_planned : report.worst_unplanned;
    worst = std::max(worst, d);
    report.events.push_back(r);
    if (!e.error.empty()) report.errors.push_back(absl::StrCat(e.kind, " ", e.target, ": ", e.error));
  }
}

std::string JsonString(const std::string& s) { return common::JsonString(s); }

std::string HumanSummary(const RunReport& r) {
  std::string out;
  absl::StrAppend(&out, "check: workload ", r.workload, ", backend ", r.backend, ", nemesis ",
                  r.nemesis, " x", r.cycles, ", ", r.clients, " clients, seed ", r.seed, ", ",
                  Seconds(r.end - r.start), "\n");
  std::vector<std::string> codes;
  for (const auto& [code, n] : r.failed_by_code) codes.push_back(absl::StrCat(code, " ", n));
  absl::StrAppend(&out, "commits: ", r.acknowledged, " acknowledged, ", r.failed, " failed (",
                  absl::StrJoin(codes, ", "), "), ", r.unknown, " unknown outcome\n");
  for (const auto& [code, error] : r.first_failure_by_code) {
    if (code != "ABORTED") absl::StrAppend(&out, "  first ", code, ": ", error, "\n");
  }
  absl::StrAppend(&out, "reads: ", r.reads_ok, " ok, ", r.reads_failed, " failed\n");
  absl::StrAppend(&out, "commits/s: ", absl::StrJoin(r.commits_per_second, " "), "\n");
  absl::StrAppend(&out, "longest window with no commit: ", Seconds(r.longest_zero_window),
                  " (from t=", Seconds(r.longest_zero_window_at), ")\n");
  for (const EventRecovery& e : r.events) {
    absl::StrAppend(&out, "  t=", Seconds(e.event.start - r.start), " ", e.event.kind, " ",
                    e.event.target, ": healed after ", Seconds(e.event.healed - e.event.start),
                    ", first commit after ",
                    e.to_first_commit ? Seconds(*e.to_first_commit) : std::string("NONE"),
                    e.event.error.empty() ? "" : absl::StrCat(" ERROR ", e.event.error), "\n");
  }
  if (!r.events.empty()) {
    absl::StrAppend(&out, "fault to first commit: planned restarts max ",
                    Seconds(r.worst_planned), ", kill -9/pause max ", Seconds(r.worst_unplanned),
                    "\n");
  }
  const Verdict& v = r.verdict;
  absl::StrAppend(&out, "bar: lost acknowledged commits ", v.lost, ", invariant violations ",
                  v.invariant, ", stale reads ", v.stale, ", objects left locked ", v.locked,
                  "\n");
  for (const std::string& e : r.errors) absl::StrAppend(&out, "run error: ", e, "\n");
  if (!v.ok()) {
    absl::StrAppend(&out, "first violation: ", v.FirstViolation(), "\n");
    // The first few of each kind.
    std::map<std::string, size_t> shown;
    for (const Violation& x : v.violations) {
      if (++shown[x.kind] > 3) continue;
      absl::StrAppend(&out, "  ", x.kind, ": ", x.message, "\n");
    }
    for (const auto& [kind, n] : shown) {
      if (n > 3) absl::StrAppend(&out, "  ... ", n - 3, " more ", kind, "\n");
    }
  }
  absl::StrAppend(&out, "verdict: ", r.ok() ? "PASS" : "FAIL", "\n");
  return out;
}

std::string ReportJson(const RunReport& r) {
  const Verdict& v = r.verdict;
  std::string out = "{";
  absl::StrAppend(&out, "\"workload\": ", JsonString(r.workload),
                  ", \"backend\": ", JsonString(r.backend), ", \"nemesis\": ",
                  JsonString(r.nemesis), ", \"cycles\": ", r.cycles, ", \"clients\": ",
                  r.clients, ", \"seed\": ", r.seed, ", \"duration_s\": ",
                  absl::ToDoubleSeconds(r.end - r.start));
  absl::StrAppend(&out, ", \"acknowledged\": ", r.acknowledged, ", \"failed\": ", r.failed,
                  ", \"unknown\": ", r.unknown, ", \"failed_by_code\": {");
  bool first = true;
  for (const auto& [code, n] : r.failed_by_code) {
    absl::StrAppend(&out, first ? "" : ", ", JsonString(code), ": ", n);
    first = false;
  }
  absl::StrAppend(&out, "}, \"reads_ok\": ", r.reads_ok, ", \"reads_failed\": ", r.reads_failed,
                  ", \"commits_per_second\": [", absl::StrJoin(r.commits_per_second, ", "),
                  "], \"longest_zero_commit_window_s\": ",
                  absl::ToDoubleSeconds(r.longest_zero_window),
                  ", \"longest_zero_commit_window_at_s\": ",
                  absl::ToDoubleSeconds(r.longest_zero_window_at),
                  ", \"worst_planned_fault_to_commit_s\": ",
                  absl::ToDoubleSeconds(r.worst_planned),
                  ", \"worst_unplanned_fault_to_commit_s\": ",
                  absl::ToDoubleSeconds(r.worst_unplanned), ", \"events\": [");
  for (size_t i = 0; i < r.events.size(); ++i) {
    const EventRecovery& e = r.events[i];
    absl::StrAppend(&out, i ? ", " : "", "{\"kind\": ", JsonString(e.event.kind),
                    ", \"target\": ", JsonString(e.event.target), ", \"planned\": ",
                    e.event.planned ? "true" : "false", ", \"at_s\": ",
                    absl::ToDoubleSeconds(e.event.start - r.start), ", \"healed_after_s\": ",
                    absl::ToDoubleSeconds(e.event.healed - e.event.start),
                    ", \"first_commit_after_s\": ",
                    e.to_first_commit ? absl::StrCat(absl::ToDoubleSeconds(*e.to_first_commit))
                                      : std::string("null"),
                    ", \"error\": ", JsonString(e.event.error), "}");
  }
  absl::StrAppend(&out, "], \"lost_acknowledged_commits\": ", v.lost,
                  ", \"invariant_violations\": ", v.invariant, ", \"stale_reads\": ", v.stale,
                  ", \"objects_left_locked\": ", v.locked, ", \"first_violation\": ",
                  JsonString(v.FirstViolation()), ", \"violations\": [");
  for (size_t i = 0; i < v.violations.size() && i < 100; ++i) {
    absl::StrAppend(&out, i ? ", " : "", "{\"kind\": ", JsonString(v.violations[i].kind),
                    ", \"op\": ", v.violations[i].op_id, ", \"message\": ",
                    JsonString(v.violations[i].message), "}");
  }
  absl::StrAppend(&out, "], \"errors\": [");
  for (size_t i = 0; i < r.errors.size(); ++i) {
    absl::StrAppend(&out, i ? ", " : "", JsonString(r.errors[i]));
  }
  absl::StrAppend(&out, "], \"pass\": ", r.ok() ? "true" : "false", "}\n");
  return out;
}

}  // namespace cellar::tools::checker
