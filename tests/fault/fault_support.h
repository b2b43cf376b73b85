#ifndef CELLAR_TESTS_FAULT_FAULT_SUPPORT_H_
#define CELLAR_TESTS_FAULT_FAULT_SUPPORT_H_

// Helpers of the multi-process fault tests (testonly): a cluster of real
// processes per test (tools/cluster), a commit workload that remembers
// what was acknowledged and what failed, and the end-of-scenario checks
// every fault test runs (docs/topologies.md):
//
//  1. every acknowledged commit is readable: each acked revision (oid,
//     tid, data) is still there, and the current revision of each object
//     is its last acked one (or a later commit that failed on the client
//     side but went through, see 2);
//  2. nothing unacknowledged is half-visible: the objects of a commit that
//     returned an error are either all visible, in one revision with one
//     tid, or none is;
//  3. replicas compare equal: every object is read directly from each
//     running storage holding a readable cell of its partition
//     (Storage.History + Storage.Load of each revision) and the revision
//     lists (serial + data) must be identical.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "protos/cellar/v1/admin.pb.h"
#include "protos/cellar/v1/storage.pb.h"
#include "services/common/channel.h"
#include "tools/cluster/process_cluster.h"

namespace cellar::fault {

// "sqlite" and "postgres".
std::vector<std::string> Backends();

// Topology defaults of the fault tests: 12 partitions, replicas 1, 3
// storages, an admin, cluster name "fault".
tools::ClusterTopology DefaultTopology();

// A cluster of real processes in a fresh directory under $TEST_TMPDIR, on
// SQLite files or on databases of the test PostgreSQL server
// ($CELLAR_TEST_PG, else a throwaway one). Children die with the test.
// When the test fails, the cluster's logs (and cluster.json) are copied
// to $TEST_UNDECLARED_OUTPUTS_DIR/<test>/ (Bazel: test.outputs/outputs.zip).
absl::StatusOr<std::unique_ptr<tools::ProcessCluster>> StartCluster(
    const std::string& backend, tools::ClusterTopology topology);

// A client of the cluster; `rpc_timeout` bounds every call (short, so that
// calls to a SIGSTOPped node give up quickly). No cache by default.
// `report_unreachable`: ClientOptions::report_unreachable.
absl::StatusOr<std::unique_ptr<client::Client>> Connect(
    const tools::ProcessCluster& cluster, absl::Duration rpc_timeout = absl::Seconds(5),
    size_t cache_bytes = 0, bool report_unreachable = true);

// What a commit wrote.
using Objects = std::map<uint64_t, std::string>;

// Thread-safe record of commits.
class CommitLedger {
 public:
  struct Acked {
    uint64_t tid;
    Objects objects;
  };
  struct Failed {
    Objects objects;
    absl::Status error;
  };

  void AddAcked(uint64_t tid, const Objects& objects);
  void AddFailed(const Objects& objects, const absl::Status& error);

  std::vector<Acked> acked() const;
  std::vector<Failed> failed() const;
  size_t acked_count() const;
  size_t failed_count() const;
  // Failure counts by status code name ("UNAVAILABLE": 3, ...).
  std::map<std::string, int> failures_by_code() const;
  // Failures other than ABORTED / LOCK_CONTENTION. Today a client that
  // updates an object right after its own acknowledged commit of it may
  // get LOCK_CONTENTION: the master answers Finish before the storages
  // unlock (UnlockAsync) and wait-die aborts the younger store instead of
  // waiting for the finished holder. Tests tolerate it (the workload goes
  // on with the next commit) and count everything else.
  size_t failed_other_than_lock_contention() const;
  // "N failed {CODE: n, ...}", the first `max_messages` errors and the
  // first error of every other code.
  std::string FailureSummary(size_t max_messages = 5) const;
  // Every oid written (acked or not).
  std::set<uint64_t> oids() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<Acked> acked_ ABSL_GUARDED_BY(mu_);
  std::vector<Failed> failed_ ABSL_GUARDED_BY(mu_);
};

// Committer threads over one client. Each thread owns its objects (no
// conflicts between threads): a commit writes 1..max_objects objects, new
// ones or updates of the thread's earlier ones (on their last acked
// serial), each with a unique value. Failed commits are recorded and the
// thread goes on with the next one (new values: a retry is a new commit
// for the checks). After an ABORTED commit the objects keep their serials;
// after any other error their state is unknown until the final check and
// they are never updated again.
class Workload {
 public:
  struct Options {
    int threads = 2;
    int max_objects = 3;
    // Share of objects in a commit that update an existing one.
    double update_fraction = 0.5;
    // Size of each value, bytes (at least the unique prefix).
    size_t value_bytes = 100;
    // Pause between two commits of a thread (default none).
    absl::Duration pause = absl::ZeroDuration();
    // Pause after a failed commit.
    absl::Duration failure_pause = absl::Milliseconds(50);
  };

  Workload(client::Client* client, CommitLedger* ledger, Options options);
  ~Workload();  // Stop()

  void Start();
  void Stop();
  // Waits until at least `n` commits were acked since Start (DEADLINE_EXCEEDED
  // with the failure counts otherwise).
  absl::Status WaitForAcked(size_t n, absl::Duration timeout);
  size_t acked() const { return acked_.load(); }
  size_t failed() const { return failed_.load(); }

 private:
  void Run(int thread);

  client::Client* const client_;
  CommitLedger* const ledger_;
  const Options options_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> acked_{0};
  std::atomic<size_t> failed_{0};
  std::vector<std::thread> threads_;
};

// Loads random acked objects in a loop and counts failures (for "the
// cluster keeps serving reads" during a fault).
class Reader {
 public:
  Reader(client::Client* client, const CommitLedger* ledger);
  ~Reader();  // Stop()
  void Start();
  void Stop();
  size_t reads() const { return reads_.load(); }
  // Failed loads (error or wrong data), with the first few messages.
  size_t failures() const { return failures_.load(); }
  std::vector<std::string> failure_messages() const;
  absl::Duration max_latency() const;

 private:
  void Run();

  client::Client* const client_;
  const CommitLedger* const ledger_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> reads_{0};
  std::atomic<size_t> failures_{0};
  mutable absl::Mutex mu_;
  std::vector<std::string> messages_ ABSL_GUARDED_BY(mu_);
  absl::Duration max_latency_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

struct VerifyOptions {
  // Storage names (S2, ...) that must take part in the replica comparison
  // (a readable cell of theirs that can't be read is a problem). Others
  // that are not running are skipped.
  std::set<std::string> required_storages;
  // If true, every storage holding a readable cell must be compared (the
  // cluster is whole again). Default false.
  bool require_all_cells = false;
};

// What the final checks found.
struct VerifyReport {
  size_t objects = 0;
  size_t revisions = 0;
  size_t replica_reads = 0;
  size_t acked_checked = 0;
  size_t failed_commits = 0;
  size_t failed_but_visible = 0;
  std::vector<std::string> problems;
  bool ok() const { return problems.empty(); }
  // Counts, and the first problems.
  std::string Summary() const;
};

// The three checks (see the file comment), with a fresh client after a
// Sync. Bounded by `timeout`. Call it with no workload running (a commit
// made while it reads would show up as a problem).
VerifyReport Verify(const tools::ProcessCluster& cluster, const CommitLedger& ledger,
                    const VerifyOptions& options = {},
                    absl::Duration timeout = absl::Seconds(60));

// Waits until every cell of the partition table is UP_TO_DATE (a node
// that missed commits caught up) and every running storage holds that
// table (Storage.GetNodeStatus ptid). DEADLINE_EXCEEDED saying what lags.
absl::Status WaitForAllCellsUpToDate(const tools::ProcessCluster& cluster,
                                     absl::Duration timeout);

// States of the cells of storage `name` (partition -> state), from the
// master's partition table.
absl::StatusOr<std::map<uint32_t, v1::CellState>> CellsOf(const tools::ProcessCluster& cluster,
                                                           const std::string& name);

// Waits until every cell of storage `name` is in `state` (e.g.
// OUT_OF_DATE after it missed commits). DEADLINE_EXCEEDED with the states.
absl::Status WaitForCellsOf(const tools::ProcessCluster& cluster, const std::string& name,
                            v1::CellState state, absl::Duration timeout);

// Storage.GetNodeStatus of storage `name`.
absl::StatusOr<v1::GetNodeStatusResponse> StorageStatus(const tools::ProcessCluster& cluster,
                                                        const std::string& name);

// Commits `count` single-object transactions of fresh objects through
// `client`, recording them; returns the first error.
absl::Status CommitFresh(client::Client& client, CommitLedger& ledger, int count,
                         size_t value_bytes = 100);

// The token in `path` (e.g. <dir>/admin.token), whitespace stripped; ""
// if unreadable.
std::string ReadTokenFile(const std::string& path);

// Admin.ListNodes at `admin_address` with `security` (5 s deadline).
grpc::Status AdminListNodes(const std::string& admin_address,
                            const common::ChannelSecurity& security,
                            v1::ListNodesResponse* nodes);

// A value that can't be compressed, with a readable prefix.
std::string UniqueValue(const std::string& prefix, size_t bytes, std::mt19937_64& rng);

}  // namespace cellar::fault

#endif  // CELLAR_TESTS_FAULT_FAULT_SUPPORT_H_
