#include "tools/cluster/checker/nemesis.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/pgserver/throwaway_postgres.h"

namespace cellar::tools::checker {

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kRolling:
      return "rolling";
    case Fault::kKill:
      return "kill";
    case Fault::kPause:
      return "pause";
    case Fault::kPgRestart:
      return "pg-restart";
  }
  return "?";
}

absl::StatusOr<std::vector<Fault>> ParseFaults(const std::string& text) {
  std::vector<Fault> out;
  if (text == "none" || text.empty()) return out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    bool found = false;
    for (Fault f : {Fault::kRolling, Fault::kKill, Fault::kPause, Fault::kPgRestart}) {
      if (part == FaultName(f)) {
        out.push_back(f);
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown nemesis \"", part, "\" (rolling, kill, pause, pg-restart or none)"));
    }
  }
  return out;
}

Nemesis::Nemesis(ProcessCluster* cluster, History* history, NemesisOptions options)
    : cluster_(cluster), history_(history), options_(std::move(options)), rng_(options_.seed) {}

void Nemesis::Progress(const std::string& line) {
  if (options_.on_progress) options_.on_progress(absl::StrCat("nemesis: ", line));
}

void Nemesis::Record(NemesisEvent event, const absl::Status& status) {
  event.healed = absl::Now();
  if (!status.ok()) event.error = status.ToString();
  Progress(absl::StrCat(event.kind, " ", event.target,
                        status.ok() ? " healed after " : " FAILED after ",
                        absl::FormatDuration(absl::Trunc(event.healed - event.start,
                                                         absl::Milliseconds(10))),
                        status.ok() ? "" : absl::StrCat(": ", status.ToString())));
  history_->AddEvent(std::move(event));
}

absl::Status Nemesis::Run() {
  for (cycle_ = 1; cycle_ <= options_.cycles && !options_.faults.empty(); ++cycle_) {
    for (Fault fault : options_.faults) {
      Progress(absl::StrCat("cycle ", cycle_, "/", options_.cycles, ": ", FaultName(fault)));
      absl::Status s;
      switch (fault) {
        case Fault::kRolling:
          s = RollingRestart();
          break;
        case Fault::kKill:
          s = KillOne(/*primary=*/cycle_ % 2 == 0);
          break;
        case Fault::kPause:
          s = PauseOne();
          break;
        case Fault::kPgRestart:
          s = RestartPostgres();
          break;
      }
      if (!s.ok()) return s;
      absl::SleepFor(options_.interval);
    }
  }
  return absl::OkStatus();
}

absl::Status Nemesis::WaitHealed() {
  const absl::Time deadline = absl::Now() + options_.heal_timeout;
  absl::StatusOr<std::string> primary = cluster_->WaitForPrimary(options_.heal_timeout);
  if (!primary.ok()) return primary.status();
  return cluster_->WaitForClusterState(::cellar::v1::CLUSTER_RUNNING,
                                       std::max(absl::Seconds(1), deadline - absl::Now()));
}

absl::Status Nemesis::WaitCaughtUp() {
  const absl::Time deadline = absl::Now() + options_.heal_timeout;
  std::string last = "no answer";
  while (absl::Now() < deadline) {
    absl::StatusOr<::cellar::v1::GetClusterInfoResponse> info = cluster_->ClusterInfo();
    if (info.ok()) {
      int behind = 0;
      for (const auto& row : info->partition_table().rows()) {
        for (const auto& cell : row.cells()) {
          if (cell.state() == ::cellar::v1::CELL_OUT_OF_DATE) ++behind;
        }
      }
      if (behind == 0 && info->cluster_state() == ::cellar::v1::CLUSTER_RUNNING) {
        return absl::OkStatus();
      }
      last = absl::StrCat(behind, " cell(s) OUT_OF_DATE, cluster ",
                          ::cellar::v1::ClusterState_Name(info->cluster_state()));
    } else {
      last = info.status().ToString();
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the cells did not catch up within ",
                   absl::FormatDuration(options_.heal_timeout), " (", last, ")"));
}

absl::Status Nemesis::Hit(const std::string& kind, const std::string& name, int signal,
                          bool planned) {
  NemesisEvent event;
  event.kind = kind;
  event.target = name;
  event.planned = planned;
  event.start = absl::Now();
  Progress(absl::StrCat(kind, ": ", signal == SIGKILL ? "SIGKILL " : "SIGTERM ", name,
                        " (pid ", cluster_->pid(name), ")"));
  absl::Status s = cluster_->Kill(name, signal);
  if (s.ok()) s = cluster_->Start(name, /*wait_ready=*/true);
  if (s.ok()) s = WaitHealed();
  // A rolling update moves on only once the restarted storage is ready,
  // and a storage is ready once its cells caught up: restarting the next
  // one earlier could take the last readable cell of a partition away.
  if (s.ok() && planned) s = WaitCaughtUp();
  Record(std::move(event), s);
  return s;
}

absl::Status Nemesis::RollingRestart() {
  std::vector<std::string> storages = cluster_->storage_names();
  std::reverse(storages.begin(), storages.end());
  for (const std::string& s : storages) {
    absl::Status st = Hit("rolling-restart", s, SIGTERM, /*planned=*/true);
    if (!st.ok()) return st;
  }
  std::vector<std::string> masters;
  absl::StatusOr<std::string> primary = cluster_->PrimaryMaster();
  for (const auto& node : cluster_->file().nodes()) {
    if (node.role() == "master" && (!primary.ok() || node.name() != *primary)) {
      masters.push_back(node.name());
    }
  }
  std::reverse(masters.begin(), masters.end());
  if (primary.ok()) masters.push_back(*primary);
  for (const std::string& m : masters) {
    absl::Status st = Hit("rolling-restart", m, SIGTERM, /*planned=*/true);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status Nemesis::KillOne(bool primary) {
  std::string name;
  if (primary) {
    absl::StatusOr<std::string> p = cluster_->PrimaryMaster();
    if (!p.ok()) return p.status();
    name = *p;
  } else {
    std::vector<std::string> storages = cluster_->storage_names();
    name = storages[rng_() % storages.size()];
  }
  return Hit("kill-9", name, SIGKILL, /*planned=*/false);
}

absl::Status Nemesis::PauseOne() {
  std::vector<std::string> storages = cluster_->storage_names();
  const std::string name = storages[rng_() % storages.size()];
  NemesisEvent event;
  event.kind = "pause";
  event.target = name;
  event.start = absl::Now();
  Progress(absl::StrCat("pause: SIGSTOP ", name, " for ",
                        absl::FormatDuration(options_.pause_time)));
  absl::Status s = cluster_->Stop(name);
  if (s.ok()) {
    absl::SleepFor(options_.pause_time);
    Progress(absl::StrCat("pause: SIGCONT ", name));
    s = cluster_->Cont(name);
  }
  if (s.ok()) {
    // Serving again (it may have been declared lost and re-registered).
    const absl::Time deadline = absl::Now() + options_.heal_timeout;
    while (cluster_->Probe(name).health != "SERVING" && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (cluster_->Probe(name).health != "SERVING") {
      s = absl::DeadlineExceededError(
          absl::StrCat(name, " did not serve again within ",
                       absl::FormatDuration(options_.heal_timeout), "; log:\n",
                       cluster_->LogTail(name)));
    }
  }
  if (s.ok()) s = WaitHealed();
  Record(std::move(event), s);
  return s;
}

absl::Status Nemesis::RestartPostgres() {
  const std::string dir = cluster_->file().postgres().dir();
  NemesisEvent event;
  event.kind = "pg-restart";
  event.target = "postgresql";
  event.planned = true;
  event.start = absl::Now();
  absl::Status s;
  if (dir.empty()) {
    s = absl::FailedPreconditionError(
        "pg-restart needs a PostgreSQL server started by the cluster itself (not "
        "--postgres_conninfo) and storages on PostgreSQL (--backend postgresql)");
  } else {
    Progress(absl::StrCat("pg-restart: pg_ctl stop -m fast in ", dir));
    s = StopPostgresAt(dir, "fast", {});
    if (s.ok()) {
      ThrowawayPostgres::Options pg;
      pg.dir = dir;
      absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> server = ThrowawayPostgres::Start(pg);
      if (server.ok()) {
        (*server)->Detach();
      } else {
        s = server.status();
      }
    }
    if (s.ok()) s = WaitHealed();
  }
  Record(std::move(event), s);
  return s;
}

}  // namespace cellar::tools::checker
