#ifndef CELLAR_SERVICES_MASTER_VERSION_REGISTRY_H_
#define CELLAR_SERVICES_MASTER_VERSION_REGISTRY_H_

// The primary master's view of the software versions in the cluster
// (docs/rollouts.md, "Version registry and quarantine"): per (version,
// track), the nodes registered now by role, health signals in a sliding
// window, and whether the version is quarantined. No gRPC types.
//
// Signals (fed by ClusterManager):
//  - restart: a node registers again while this master still knows it
//    under the same version and track (a node upgraded to another version
//    starts a fresh life and counts nothing). The restart threshold
//    applies to each node apart (a crash loop): a rolling restart of many
//    nodes, once each, quarantines nothing;
//  - down: a connected storage is taken DOWN because it missed its
//    heartbeats, failed the master's probe after an unreachable report, or
//    could not lock a transaction the others locked (not when its stream
//    ends cleanly, nor when an operator kills it).
// A version is quarantined automatically once one of its nodes restarted
// `restarts` times within the last `window`, or `downs` of its storages
// were taken down within it; a threshold of
// 0 disables that signal (it never means "quarantine everything"). An
// operator may quarantine or unquarantine by hand; unquarantining forgets
// the signals counted so far, so it takes as many new ones to quarantine
// again.
//
// Refusals (automatic and manual): never the version of the primary
// master itself (the process making the decisions), and never the only
// version whose storages hold readable cells (quarantine would leave
// reads no other replica to prefer and the planner no node to place new
// cells on). Every decision, refusals included, goes into a bounded
// history (newest last).
//
// Node counts and signal windows live in the primary's memory only: a new
// primary (restart or failover) rebuilds them as nodes register. The
// quarantined keys are persisted by the owner (Quarantined(), generation())
// with the feature flags and given back to a new primary (Restore()).
//
// Thread-compatible: the owner (ClusterManager, under its mutex)
// serializes calls.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/ids.h"

namespace cellar::master {

// A software version on a deployment track ("stable", "canary", "shadow").
struct VersionKey {
  std::string version;
  std::string track;

  friend bool operator<(const VersionKey& a, const VersionKey& b) {
    return std::tie(a.version, a.track) < std::tie(b.version, b.track);
  }
  friend bool operator==(const VersionKey& a, const VersionKey& b) {
    return a.version == b.version && a.track == b.track;
  }
  // "0.2.0/canary".
  std::string ToString() const { return version + "/" + track; }
};

// When signals quarantine a version automatically.
struct QuarantineThresholds {
  // Restarts (re-registrations) of one node within `window` that
  // quarantine its version; 0 = never.
  uint32_t restarts = 3;
  // Storages taken DOWN within `window` that quarantine; 0 = never.
  uint32_t downs = 5;
  // The sliding window. Must be positive.
  absl::Duration window = absl::Minutes(10);
};

// Why a storage was taken DOWN (only some are health signals).
enum class DownCause {
  kMissedHeartbeats,  // signal
  kUnreachable,       // the master's probe failed after a report: signal
  kLockFailed,        // signal
  kStreamEnded,       // a clean exit looks the same: not a signal
  kOperator,          // KillNode: not a signal
};

// One quarantine decision.
struct VersionDecision {
  absl::Time at;
  VersionKey key;
  enum class Action { kQuarantine, kUnquarantine, kRefused };
  Action action = Action::kQuarantine;
  // "auto" for the thresholds, otherwise the operator's identity as the
  // caller gave it (e.g. "operator").
  std::string by;
  std::string reason;
};

// What ListVersions shows of one (version, track).
struct VersionStatus {
  VersionKey key;
  // Registered and connected nodes, by role.
  std::map<common::NodeKind, uint32_t> nodes;
  // Their ids (connected ones), sorted.
  std::vector<uint32_t> node_ids;
  // Signals within the current window: restarts of all nodes, the most
  // restarts of one node, downs.
  uint32_t restarts = 0;
  uint32_t worst_node_restarts = 0;
  uint32_t downs = 0;
  bool quarantined = false;
  std::string reason;         // of the quarantine (empty if not)
  std::string by;             // "auto" or the operator
  absl::Time since = absl::InfinitePast();  // when quarantined
};

class VersionRegistry {
 public:
  // The versions whose storages hold at least one readable cell now.
  using ReadableVersions = std::function<std::set<VersionKey>()>;

  // `clock` (not owned) times signals and decisions; `self` is the
  // primary master's own version; `readable` is called (synchronously,
  // under the owner's serialization) whenever a quarantine is decided.
  VersionRegistry(const common::Clock* clock, QuarantineThresholds thresholds, VersionKey self,
                  ReadableVersions readable);

  // INVALID_ARGUMENT for a non-positive window (a threshold of 0 is
  // fine: that signal is off).
  static absl::Status ValidateThresholds(const QuarantineThresholds& thresholds);

  // A node registered (again). Counts a restart when the node was known
  // under the same key. Returns true if this quarantined `key`.
  bool NodeRegistered(uint32_t node_id, const VersionKey& key);
  // A storage was taken DOWN. Counts a down for the signal causes.
  // Returns true if this quarantined the node's key.
  bool NodeDown(uint32_t node_id, DownCause cause);
  // A node left the registry for good (a client's stream ended, a dropped
  // storage): no longer counted, no signal.
  void NodeForgotten(uint32_t node_id);

  // By hand. INVALID_ARGUMENT for an empty version, track or reason (or
  // `by`); NOT_FOUND for a key no node registered with in this term;
  // FAILED_PRECONDITION for the refusals (the message says why). Returns
  // whether anything changed (false: already quarantined).
  absl::StatusOr<bool> Quarantine(const VersionKey& key, const std::string& by,
                                  const std::string& reason);
  // NOT_FOUND for an unknown key. Returns whether anything changed (false:
  // not quarantined). Forgets the key's signals.
  absl::StatusOr<bool> Unquarantine(const VersionKey& key, const std::string& by,
                                    const std::string& reason);

  // Every key seen in this term, sorted.
  std::vector<VersionStatus> List() const;
  bool IsQuarantined(const VersionKey& key) const;
  // The key a node registered with (false if unknown).
  bool KeyOf(uint32_t node_id, VersionKey* key) const;
  // The keys quarantined now, sorted, each as its decision (action
  // kQuarantine, `at` = since when, by, reason): what the primary persists.
  std::vector<VersionDecision> Quarantined() const;
  // Adopts the quarantines an earlier primary persisted: each key not
  // quarantined here is quarantined as it was (by, reason, since) and the
  // history says "restored"; a quarantine in force is never lifted. The
  // primary master's own version is refused (in the history). Returns the
  // keys it quarantined.
  std::vector<VersionKey> Restore(const std::vector<VersionDecision>& persisted);
  // Rises with every change to the set Quarantined() answers (and with a
  // refused restore, whose key the persisted set must lose).
  uint64_t generation() const { return generation_; }

  // The decisions, oldest first (at most kMaxHistory).
  std::vector<VersionDecision> History() const { return {history_.begin(), history_.end()}; }

  static constexpr size_t kMaxHistory = 100;

 private:
  struct Entry {
    std::deque<std::pair<absl::Time, uint32_t>> restarts;  // (when, node id)
    std::deque<absl::Time> downs;
    bool quarantined = false;
    std::string reason;
    std::string by;
    absl::Time since = absl::InfinitePast();
    // The last automatic refusal's text: not recorded again while it holds.
    std::string refused;
  };
  struct NodeEntry {
    VersionKey key;
    bool connected = false;
  };

  // The entry of `key`, or NOT_FOUND naming it.
  absl::StatusOr<Entry*> Find(const VersionKey& key);
  void Prune(Entry& entry) const;
  static uint32_t WorstNodeRestarts(const Entry& entry);
  // Why `key` may not be quarantined ("" = it may).
  std::string RefusalReason(const VersionKey& key) const;
  // Applies the thresholds to `key` after a signal. True if quarantined now.
  bool MaybeQuarantine(const VersionKey& key);
  void Record(VersionDecision decision);

  const common::Clock* const clock_;
  const QuarantineThresholds thresholds_;
  const VersionKey self_;
  const ReadableVersions readable_;
  absl::btree_map<VersionKey, Entry> versions_;
  absl::btree_map<uint32_t, NodeEntry> nodes_;
  std::deque<VersionDecision> history_;
  uint64_t generation_ = 0;
};

// The display name of a decision's action: "quarantine", "unquarantine",
// "refused".
const char* ActionName(VersionDecision::Action action);

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_VERSION_REGISTRY_H_
