#ifndef CELLAR_TOOLS_PROMETHEUS_LOAD_GENERATOR_H_
#define CELLAR_TOOLS_PROMETHEUS_LOAD_GENERATOR_H_

// A small, time-bounded load generator for a running cellar cluster, used
// by tools/prometheus/check to make every metric move: commits (new objects
// and updates of a small hot set), conflicts (concurrent updates of the hot
// set, plus a deliberate stale-serial update every `stale_every` updates),
// loads (with the client cache off, so they reach the storages), loads of
// objects that were never stored (NOT_FOUND), Admin calls and, half-way,
// one Admin.Pack at the newest tid committed so far (the hot set's older
// revisions go, so the pack metrics move).
//
//   LoadOptions options;
//   options.master_address = "127.0.0.1:17100";
//   options.duration = absl::Seconds(20);
//   absl::StatusOr<LoadReport> report = RunLoad(options);
//
// RunLoad blocks for about `duration` (plus at most one RPC timeout). It
// fails (UNAVAILABLE / DEADLINE_EXCEEDED) if no client could connect or
// if the hot set could not be created; errors during the run are counted,
// not returned. Thread-safe: independent calls don't share state.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cellar::tools {

struct LoadOptions {
  // Primary master (host:port). Default 127.0.0.1:7100.
  std::string master_address = "127.0.0.1:7100";
  // Admin service (host:port); empty: no Admin calls. Default empty.
  std::string admin_address;
  // Cluster name. Default "cellar".
  std::string cluster_name = "cellar";
  // How long to run. Default 20 s.
  absl::Duration duration = absl::Seconds(20);
  // Worker threads, each with its own client session. Default 4.
  int threads = 4;
  // Objects in the shared hot set that workers update. Default 16.
  int hot_objects = 16;
  // Every N-th update of a worker uses a stale serial (a certain
  // conflict); 0: never. Default 10.
  int stale_every = 10;
  // With admin_address: one Admin.Pack half-way through. Default true.
  bool pack = true;
  // Deadline of every RPC. Default 5 s.
  absl::Duration rpc_timeout = absl::Seconds(5);
};

// What happened, counted by the client side.
struct LoadReport {
  uint64_t commits = 0;
  // Commits refused with ABORTED (conflict or lock contention).
  uint64_t conflicts = 0;
  // Commits that failed otherwise.
  uint64_t commit_errors = 0;
  uint64_t loads = 0;
  uint64_t loads_not_found = 0;
  uint64_t load_errors = 0;
  uint64_t admin_calls = 0;
  uint64_t admin_errors = 0;
  // Admin.Pack calls that succeeded.
  uint64_t packs = 0;
  absl::Duration elapsed;
  // The first unexpected error ("load: UNAVAILABLE: ..."), empty if none.
  std::string first_error;
};

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

// One line, e.g. "1234 commits (61.7/s), 56 conflicts, 0 commit errors, ...".
std::string FormatReport(const LoadReport& report);

}  // namespace cellar::tools

#endif  // CELLAR_TOOLS_PROMETHEUS_LOAD_GENERATOR_H_
