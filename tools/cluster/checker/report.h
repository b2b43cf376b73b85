#ifndef CELLAR_TOOLS_CLUSTER_CHECKER_REPORT_H_
#define CELLAR_TOOLS_CLUSTER_CHECKER_REPORT_H_

// Numbers of a checked run (from its History) and the checker's verdict,
// printed for humans and as JSON.
//
// Availability: acknowledged commits per second (buckets of one second
// from the workload start), the longest window with no acknowledged commit
// (from the start to the first one, between two, and from the last to the
// end all count), and per nemesis event the time from the fault to the
// first commit acknowledged after it.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tools/cluster/checker/checker.h"
#include "tools/cluster/checker/history.h"

namespace cellar::tools::checker {

struct EventRecovery {
  NemesisEvent event;
  // From event.start to the first commit acknowledged after it; none if no
  // commit was acknowledged after it before the end.
  std::optional<absl::Duration> to_first_commit;
};

struct RunReport {
  // What ran (for the printout).
  std::string workload;
  std::string backend;
  std::string nemesis;
  int cycles = 0;
  int clients = 0;
  uint64_t seed = 0;
  absl::Time start;
  absl::Time end;

  // Commits (transfers, adds).
  size_t acknowledged = 0;
  size_t failed = 0;
  size_t unknown = 0;
  // Failed commits by status code name (ABORTED, UNAVAILABLE, ...).
  std::map<std::string, size_t> failed_by_code;
  // The first error of each code, to tell what failed.
  std::map<std::string, std::string> first_failure_by_code;
  // Reads (snapshot reads, list reads).
  size_t reads_ok = 0;
  size_t reads_failed = 0;

  std::vector<int> commits_per_second;
  absl::Duration longest_zero_window;
  // Offset of that window from the start.
  absl::Duration longest_zero_window_at;
  std::vector<EventRecovery> events;
  // Longest to_first_commit over planned events (restarts) and over the
  // others (kill -9, pause); an event with no commit after it counts to
  // the end.
  absl::Duration worst_planned;
  absl::Duration worst_unplanned;
  // Errors of the nemesis / the run itself (a node that did not come back).
  std::vector<std::string> errors;

  Verdict verdict;
  bool ok() const { return verdict.ok() && errors.empty(); }
};

// Fills the counts and availability numbers of `report` from `ops` and
// `events` (report.start / end must be set).
void Measure(const std::vector<Operation>& ops, const std::vector<NemesisEvent>& events,
             RunReport& report);

// The human-readable summary: counts, availability, the bar and the verdict.
std::string HumanSummary(const RunReport& report);

// `s` as a JSON string literal, quotes included.
std::string JsonString(const std::string& s);

// The same as one JSON object.
std::string ReportJson(const RunReport& report);

}  // namespace cellar::tools::checker

#endif  // CELLAR_TOOLS_CLUSTER_CHECKER_REPORT_H_
