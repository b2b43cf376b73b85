#ifndef CELLAR_TOOLS_CLUSTER_CHECKER_WORKLOAD_H_
#define CELLAR_TOOLS_CLUSTER_CHECKER_WORKLOAD_H_

// The checked workloads: N clients (each its own client::Client session
// and thread) run random operations against a cluster and record each one
// in a History (history.h); Finish() then reads the final state the
// checker (checker.h) needs.
//
// bank: `accounts` objects holding `initial_balance` each. A client either
//   transfers 1..5 from one random account to another (reads both at its
//   snapshot, stores both on the serials read, commits; a conflict is a
//   failed operation and the next iteration tries again), or reads every
//   account at ONE snapshot S (LoadBefore(oid, S + 1)).
// set: `lists` shared list objects. A client either adds an element (a
//   new object whose oid is the element, plus an append of that oid to a
//   random list, read at its snapshot, in one commit) or reads one list
//   at its snapshot.
//
// A client's snapshot is Client::snapshot() when the operation starts.
//
// Finish(): with no client running, a fresh client Syncs and reads every
// account/list at one snapshot, then LoadSerial's every write of every
// acknowledged commit (in parallel over the clients' sessions), then
// stores every object once more (batches of 50, retrying conflicts and
// unavailability until `lock_bound`; a batch that never commits is retried
// object by object and what still fails is reported locked).
//
// Thread-safety: Start/Stop/Finish from one thread; acknowledged() and
// counts from any.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "tools/cluster/checker/checker.h"
#include "tools/cluster/checker/history.h"

namespace cellar::tools::checker {

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kBank;
  // Concurrent clients (default 4).
  int clients = 4;
  // Bank: accounts and the starting balance of each (defaults 8 and 100).
  int accounts = 8;
  int64_t initial_balance = 100;
  // Set: shared lists (default 4).
  int lists = 4;
  // Share of operations that are reads (default 0.3).
  double read_fraction = 0.3;
  // Seeds each client's random choices (client k uses seed * 1000 + k).
  uint64_t seed = 1;
  // Pause of a client after an error other than a conflict (default 50 ms).
  absl::Duration failure_pause = absl::Milliseconds(50);
  // Bound of the final store-everything pass (default 60 s).
  absl::Duration lock_bound = absl::Seconds(60);
  // Masters, cluster name, rpc_timeout (default 5 s here) of every client.
  client::ClientOptions client;
};

class Workload {
 public:
  // Connects the clients (and a setup client) and creates the accounts or
  // lists in one commit (retried until connect_timeout).
  static absl::StatusOr<std::unique_ptr<Workload>> Create(WorkloadOptions options,
                                                          History* history);
  ~Workload();  // Stop()

  void Start();
  void Stop();

  // See the file comment. Bounded by `timeout` plus lock_bound.
  FinalState Finish(absl::Duration timeout);

  // What the checker needs (operations from the history).
  CheckInput Input(FinalState final_state) const;

  const std::vector<uint64_t>& objects() const { return objects_; }

 private:
  Workload(WorkloadOptions options, History* history);
  void Run(int client);
  Operation BankRead(client::Client& c);
  Operation Transfer(client::Client& c, std::mt19937_64& rng, uint64_t tag);
  Operation ListRead(client::Client& c, std::mt19937_64& rng);
  Operation Add(client::Client& c, std::mt19937_64& rng);
  void Commit(client::Transaction& txn, Operation& op);
  // Stores every object once (see the file comment); returns those that
  // could not be stored, with the last error.
  std::map<uint64_t, std::string> StoreEverything(client::Client& c, const std::vector<uint64_t>& oids);

  const WorkloadOptions options_;
  History* const history_;
  std::vector<std::unique_ptr<client::Client>> clients_;
  // Accounts or lists.
  std::vector<uint64_t> objects_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace cellar::tools::checker

#endif  // CELLAR_TOOLS_CLUSTER_CHECKER_WORKLOAD_H_
