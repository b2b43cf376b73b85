#ifndef CELLAR_SERVICES_MASTER_CALL_HOLDER_H_
#define CELLAR_SERVICES_MASTER_CALL_HOLDER_H_

// Delayed acceptance (docs/operations.md, "Waiting instead of refusing"):
// a call that reaches the master while it cannot serve it *yet* (the
// cluster RECOVERING or VERIFYING on its way to RUNNING; this master a
// standby while no master holds the lease) is held: its handler waits and
// serves it as soon as it can, instead of refusing it and making the
// caller poll. Whoever waits re-checks the real condition before serving:
// holding only delays a call, it never serves one against a state that
// could not serve it at once.
//
// This class only bounds the holds; the waiting is the caller's:
//
//   std::optional<CallHolder::Hold> hold = holder->TryHold(absl::Now(), deadline);
//   if (!hold) return refusal;                 // over the bound: refuse at once, as before
//   ... wait for the condition until hold->until() ...
//   if (still not servable) return hold->Expired(refusal, absl::Now());
//
// Each hold ends at the earliest of: the caller's deadline less
// `reply_margin` (the caller then gets this master's answer, not its own
// timer's bare DEADLINE_EXCEEDED) and `max_hold` after it began. At most
// `max_held` calls are held at once: each holds a thread of the gRPC
// synchronous server, which has no thread limit of its own.
//
// Thread-safe.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellar::master {

struct CallHolderOptions {
  // Longest a call is held. Default 10 s. Zero: never hold (every such
  // call is refused at once, the behaviour before holding).
  absl::Duration max_hold = absl::Seconds(10);
  // Most calls held at once; a call beyond is refused at once. Default 128.
  int max_held = 128;
  // A hold ends this long before the caller's deadline. Default 50 ms.
  absl::Duration reply_margin = absl::Milliseconds(50);
};

// What the holder counted (metrics).
struct CallHolderStats {
  int held_now = 0;
  uint64_t held = 0;          // holds granted
  uint64_t expired = 0;       // holds that ended unserved (deadline or max_hold)
  uint64_t over_bound = 0;    // refused at once: max_held calls were held
};

class CallHolder {
 public:
  explicit CallHolder(CallHolderOptions options = {}) : options_(options) {}
  CallHolder(const CallHolder&) = delete;
  CallHolder& operator=(const CallHolder&) = delete;

  // One held call; releases its place when destroyed. Move-only.
  class Hold {
   public:
    Hold(Hold&& other) noexcept;
    Hold& operator=(Hold&& other) noexcept;
    ~Hold();

    // When to stop waiting.
    absl::Time until() const { return until_; }
    // The answer for a call still not servable at until(): the caller's
    // deadline came first: DEADLINE_EXCEEDED with `refusal`'s message and
    // reason; else (max_hold) `refusal`'s code, reason and message. Both
    // say how long the call was held. Counted as expired.
    absl::Status Expired(const absl::Status& refusal, absl::Time now);

   private:
    friend class CallHolder;
    Hold(CallHolder* holder, absl::Time start, absl::Time until, bool by_deadline)
        : holder_(holder), start_(start), until_(until), by_deadline_(by_deadline) {}
    CallHolder* holder_;
    absl::Time start_;
    absl::Time until_;
    bool by_deadline_;
  };

  // A hold for a call arriving at `now` with `deadline` (InfiniteFuture
  // without one). nullopt, and the call is to be refused at once, when
  // max_held calls are held already, max_hold is zero, or the deadline
  // leaves no time to wait.
  std::optional<Hold> TryHold(absl::Time now, absl::Time deadline);

  const CallHolderOptions& options() const { return options_; }
  CallHolderStats stats() const;

 private:
  void Release();

  const CallHolderOptions options_;
  mutable absl::Mutex mu_;
  CallHolderStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_CALL_HOLDER_H_
