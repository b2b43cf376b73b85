#ifndef CELLAR_SERVICES_MASTER_EVENT_HUB_H_
#define CELLAR_SERVICES_MASTER_EVENT_HUB_H_

// Ordered fan-out of cluster events to Watch streams. Each subscriber has
// its own bounded queue; events reach every subscriber in publication
// order. Invalidations are published in tid order by the coordinator, and
// the hub keeps the last published tid so that a new subscriber's snapshot
// and the invalidations after it meet exactly.
//
// A subscriber whose queue overflows (a stalled client) is closed: its
// Watch stream ends, and the client reconnects and drops its cache.
//
// Lock order: callers may hold their own mutex while calling the hub; the
// hub never calls out while holding its mutex. Thread-safe.

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"

namespace cellar::master {

class EventHub {
 public:
  class Subscriber;

  // `max_queue`: events a subscriber may have pending before it is closed.
  explicit EventHub(size_t max_queue = 100000) : max_queue_(max_queue) {}

  // Adds a subscriber whose first event is `snapshot` (with last_tid set by
  // the hub). Invalidations go only to subscribers that want them.
  std::shared_ptr<Subscriber> Subscribe(uint32_t node_id, bool wants_invalidations,
                                        cellar::v1::ClusterSnapshot snapshot);
  void Unsubscribe(const std::shared_ptr<Subscriber>& subscriber);

  // Queues `event` for every subscriber.
  void Publish(const cellar::v1::ClusterEvent& event);

  // Queues an invalidation for every subscriber that wants them and makes
  // `tid` the last committed tid.
  void PublishInvalidation(uint64_t tid, const std::vector<uint64_t>& oids);

  // Sets the last committed tid (recovery).
  void SetLastTid(uint64_t tid);
  // Truncate: sets the last committed tid to `tid`, even below the current
  // one (SetLastTid only raises it).
  void ResetLastTid(uint64_t tid);
  uint64_t last_tid() const;

  // Closes the subscribers of `node_id` (their streams end).
  void Close(uint32_t node_id);

  // Waits up to `timeout` for the next event. Returns false on timeout or
  // when the subscriber is closed (then closed() is true).
  bool Next(Subscriber& subscriber, cellar::v1::ClusterEvent* event,
            absl::Duration timeout);

  class Subscriber {
   public:
    uint32_t node_id() const { return node_id_; }
    bool closed() const;

   private:
    friend class EventHub;
    Subscriber(EventHub* hub, uint32_t node_id, bool wants_invalidations)
        : hub_(hub), node_id_(node_id), wants_invalidations_(wants_invalidations) {}
    EventHub* hub_;
    const uint32_t node_id_;
    const bool wants_invalidations_;
    // Guarded by hub_->mu_.
    std::deque<cellar::v1::ClusterEvent> queue_;
    bool closed_ = false;
  };

 private:
  void PushLocked(Subscriber& s, const cellar::v1::ClusterEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_queue_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_ ABSL_GUARDED_BY(mu_);
  uint64_t last_tid_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_EVENT_HUB_H_
