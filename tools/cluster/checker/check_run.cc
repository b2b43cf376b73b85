#include "tools/cluster/checker/check_run.h"

#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace cellar::tools::checker {

absl::StatusOr<RunReport> RunCheck(ProcessCluster& cluster, CheckOptions options) {
  absl::Mutex progress_mu;
  auto progress = [&](const std::string& line) {
    if (!options.on_progress) return;
    absl::MutexLock lock(&progress_mu);
    options.on_progress(line);
  };
  History history;
  options.workload.client.master_addresses = cluster.master_addresses();
  options.workload.client.cluster_name = cluster.cluster_name();
  options.workload.client.token = cluster.client_token();
  absl::StatusOr<std::unique_ptr<Workload>> workload =
      Workload::Create(options.workload, &history);
  if (!workload.ok()) return workload.status();

  RunReport report;
  report.workload = options.workload.kind == WorkloadKind::kBank ? "bank" : "set";
  report.backend = options.backend;
  std::vector<std::string> faults;
  for (Fault f : options.nemesis.faults) faults.push_back(FaultName(f));
  report.nemesis = faults.empty() ? "none" : absl::StrJoin(faults, ",");
  report.cycles = faults.empty() ? 0 : options.nemesis.cycles;
  report.clients = options.workload.clients;
  report.seed = options.workload.seed;

  report.start = absl::Now();
  progress(absl::StrCat("workload ", report.workload, " with ", report.clients,
                        " clients for at least ", absl::FormatDuration(options.duration),
                        ", nemesis ", report.nemesis));
  (*workload)->Start();
  absl::Notification done;
  std::thread ticker([&] {
    while (!done.WaitForNotificationWithTimeout(options.progress_every)) {
      progress(absl::StrCat("t=", absl::ToInt64Seconds(absl::Now() - report.start), "s: ",
                            history.acknowledged(), " commits acknowledged"));
    }
  });

  options.nemesis.on_progress = progress;
  Nemesis nemesis(&cluster, &history, options.nemesis);
  absl::Status nemesis_status = nemesis.Run();
  if (!nemesis_status.ok()) {
    report.errors.push_back(absl::StrCat("nemesis stopped: ", nemesis_status.ToString()));
  }
  const absl::Time until = report.start + options.duration;
  if (absl::Now() < until) absl::SleepFor(until - absl::Now());
  (*workload)->Stop();
  report.end = absl::Now();
  done.Notify();
  ticker.join();
  progress(absl::StrCat("workload stopped after ",
                        absl::ToInt64Seconds(report.end - report.start), "s: ",
                        history.acknowledged(), " commits acknowledged"));

  // Whole again: anything the nemesis left down is started.
  bool all_running = true;
  for (const std::string& name : cluster.node_names()) {
    if (cluster.Probe(name).process != NodeProbe::Process::kRunning) all_running = false;
  }
  if (!all_running) {
    progress("starting the nodes the nemesis left down");
    absl::Status s = cluster.StartAll();
    if (!s.ok()) report.errors.push_back(absl::StrCat("StartAll: ", s.ToString()));
  }
  absl::Status running = cluster.WaitUntilRunning();
  if (!running.ok()) report.errors.push_back(absl::StrCat("cluster: ", running.ToString()));

  progress("reading the final state, every acknowledged revision, then storing every object");
  FinalState final_state = (*workload)->Finish(options.final_timeout);
  Measure(history.operations(), history.events(), report);
  report.verdict = Check((*workload)->Input(std::move(final_state)));
  return report;
}

}  // namespace cellar::tools::checker
