#ifndef CELLAR_SERVICES_COMMON_STREAM_LIMITER_H_
#define CELLAR_SERVICES_COMMON_STREAM_LIMITER_H_

// Bounds long-lived calls (streams), each of which holds a server thread
// for its whole life: at most `total` at once, and at most `per_caller` for
// any one caller (a token id, "node", or "" when auth is off: then only
// the total applies). A call over a bound is refused with
// RESOURCE_EXHAUSTED naming the bound, before it holds anything.
//
//   absl::StatusOr<StreamLimiter::Slot> slot = limiter.Acquire(principal);
//   if (!slot.ok()) return ToGrpcStatus(slot.status());
//   ... serve the stream; the slot is released when it goes out of scope.
//
// Thread-safe.

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace cellar::common {

class StreamLimiter {
 public:
  // `what` names the streams in refusals ("Watch streams"). Bounds of 0
  // are refused by the callers' flag checks; here 0 means "none allowed".
  StreamLimiter(std::string what, size_t total, size_t per_caller)
      : what_(std::move(what)), total_(total), per_caller_(per_caller) {}

  class Slot {
   public:
    Slot(Slot&& other) noexcept
        : limiter_(other.limiter_), caller_(std::move(other.caller_)) {
      other.limiter_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    ~Slot();

   private:
    friend class StreamLimiter;
    Slot(StreamLimiter* limiter, std::string caller)
        : limiter_(limiter), caller_(std::move(caller)) {}
    StreamLimiter* limiter_;
    std::string caller_;
  };

  absl::StatusOr<Slot> Acquire(absl::string_view caller);

  size_t open() const;

 private:
  void Release(const std::string& caller);

  const std::string what_;
  const size_t total_;
  const size_t per_caller_;
  mutable absl::Mutex mu_;
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, size_t> by_caller_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_STREAM_LIMITER_H_
