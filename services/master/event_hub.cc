#include "services/master/event_hub.h"

#include <algorithm>
#include <utility>

namespace cellar::master {

std::shared_ptr<EventHub::Subscriber> EventHub::Subscribe(
    uint32_t node_id, bool wants_invalidations, cellar::v1::ClusterSnapshot snapshot) {
  auto subscriber = std::shared_ptr<Subscriber>(
      new Subscriber(this, node_id, wants_invalidations));
  absl::MutexLock l(&mu_);
  snapshot.set_last_tid(last_tid_);
  cellar::v1::ClusterEvent first;
  *first.mutable_snapshot() = std::move(snapshot);
  subscriber->queue_.push_back(std::move(first));
  subscribers_.push_back(subscriber);
  return subscriber;
}

void EventHub::Unsubscribe(const std::shared_ptr<Subscriber>& subscriber) {
  absl::MutexLock l(&mu_);
  subscriber->closed_ = true;
  subscriber->queue_.clear();
  subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), subscriber),
                     subscribers_.end());
}

void EventHub::PushLocked(Subscriber& s, const cellar::v1::ClusterEvent& event) {
  if (s.closed_) return;
  if (s.queue_.size() >= max_queue_) {
    s.closed_ = true;  // a stalled watcher: end its stream
    s.queue_.clear();
    return;
  }
  s.queue_.push_back(event);
}

void EventHub::Publish(const cellar::v1::ClusterEvent& event) {
  absl::MutexLock l(&mu_);
  for (auto& s : subscribers_) PushLocked(*s, event);
}

void EventHub::PublishInvalidation(uint64_t tid, const std::vector<uint64_t>& oids) {
  cellar::v1::ClusterEvent event;
  event.mutable_invalidation()->set_tid(tid);
  event.mutable_invalidation()->mutable_oids()->Add(oids.begin(), oids.end());
  absl::MutexLock l(&mu_);
  last_tid_ = std::max(last_tid_, tid);
  for (auto& s : subscribers_) {
    if (s->wants_invalidations_) PushLocked(*s, event);
  }
}

void EventHub::SetLastTid(uint64_t tid) {
  absl::MutexLock l(&mu_);
  last_tid_ = std::max(last_tid_, tid);
}

void EventHub::ResetLastTid(uint64_t tid) {
  absl::MutexLock l(&mu_);
  last_tid_ = tid;
}

uint64_t EventHub::last_tid() const {
  absl::MutexLock l(&mu_);
  return last_tid_;
}

void EventHub::Close(uint32_t node_id) {
  absl::MutexLock l(&mu_);
  for (auto& s : subscribers_) {
    if (s->node_id_ == node_id) {
      s->closed_ = true;
      s->queue_.clear();
    }
  }
}

bool EventHub::Subscriber::closed() const {
  absl::MutexLock l(&hub_->mu_);
  return closed_;
}

bool EventHub::Next(Subscriber& s, cellar::v1::ClusterEvent* event,
                    absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto ready = [&s]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return s.closed_ || !s.queue_.empty();
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (s.closed_ || s.queue_.empty()) return false;
  *event = std::move(s.queue_.front());
  s.queue_.pop_front();
  return true;
}

}  // namespace cellar::master
