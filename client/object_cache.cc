#include "client/object_cache.h"

#include <algorithm>
#include <utility>

namespace cellar::client {

ObjectCache::ObjectCache(size_t max_bytes, uint64_t last_tid)
    : max_bytes_(max_bytes), last_tid_(last_tid) {}

std::optional<CachedRevision> ObjectCache::LookupBefore(uint64_t oid,
                                                        uint64_t before_tid) {
  absl::MutexLock lock(&mu_);
  auto obj = objects_.find(oid);
  if (obj == objects_.end()) return std::nullopt;
  Revisions& revisions = obj->second;
  // The newest cached revision with serial < before_tid is the only
  // candidate: an older one would end at or before it.
  auto it = revisions.lower_bound(before_tid);
  if (it == revisions.begin()) return std::nullopt;
  --it;
  Entry& entry = it->second;
  const bool valid = entry.next_serial != 0
                         ? before_tid <= entry.next_serial
                         : before_tid - 1 <= last_tid_;
  if (!valid) return std::nullopt;
  TouchLocked(entry);
  return CachedRevision{it->first, entry.next_serial, entry.data};
}

std::optional<CachedRevision> ObjectCache::LookupSerial(uint64_t oid,
                                                        uint64_t serial) {
  absl::MutexLock lock(&mu_);
  auto obj = objects_.find(oid);
  if (obj == objects_.end()) return std::nullopt;
  auto it = obj->second.find(serial);
  if (it == obj->second.end()) return std::nullopt;
  TouchLocked(it->second);
  return CachedRevision{it->first, it->second.next_serial, it->second.data};
}

ObjectCache::LoadTicket ObjectCache::BeginLoad(uint64_t oid) {
  absl::MutexLock lock(&mu_);
  ++in_flight_[oid].count;
  return LoadTicket{oid, generation_};
}

void ObjectCache::EndLoadLocked(const LoadTicket& ticket) {
  auto it = in_flight_.find(ticket.oid);
  if (it == in_flight_.end()) return;
  if (--it->second.count <= 0) in_flight_.erase(it);
}

uint64_t ObjectCache::EndLoad(const LoadTicket& ticket, uint64_t serial,
                              uint64_t next_serial, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  if (next_serial == 0) {
    auto it = in_flight_.find(ticket.oid);
    if (it != in_flight_.end()) {
      for (uint64_t tid : it->second.invalidated) {
        if (tid > serial && (next_serial == 0 || tid < next_serial)) {
          next_serial = tid;
        }
      }
    }
  }
  EndLoadLocked(ticket);
  if (ticket.generation == generation_) {
    InsertLocked(ticket.oid, serial, next_serial, data);
  }
  return next_serial;
}

void ObjectCache::CancelLoad(const LoadTicket& ticket) {
  absl::MutexLock lock(&mu_);
  EndLoadLocked(ticket);
}

void ObjectCache::Insert(uint64_t oid, uint64_t serial, uint64_t next_serial,
                         absl::string_view data) {
  absl::MutexLock lock(&mu_);
  InsertLocked(oid, serial, next_serial, data);
}

void ObjectCache::InsertLocked(uint64_t oid, uint64_t serial,
                               uint64_t next_serial, absl::string_view data) {
  const size_t size = data.size() + kRevisionOverhead;
  if (max_bytes_ == 0 || size > max_bytes_) return;
  if (next_serial != 0 && next_serial <= serial) return;  // nonsense
  Revisions& revisions = objects_[oid];
  auto same = revisions.find(serial);
  if (same != revisions.end()) {
    // Same revision: a known next_serial beats "current".
    if (same->second.next_serial == 0) same->second.next_serial = next_serial;
    TouchLocked(same->second);
    return;
  }
  // Keep at most one current revision, and never a "current" revision
  // older than another cached one.
  for (auto it = revisions.begin(); it != revisions.end();) {
    auto next = std::next(it);
    if (it->second.next_serial == 0 && it->first < serial) {
      EraseLocked(oid, revisions, it);
    } else if (next_serial == 0 && it->first > serial) {
      // We hold a newer revision: this one is not current any more.
      TouchLocked(it->second);
      return;
    }
    it = next;
  }
  lru_.push_front(LruKey{oid, serial});
  Entry entry;
  entry.next_serial = next_serial;
  entry.data = std::string(data);
  entry.lru = lru_.begin();
  revisions.emplace(serial, std::move(entry));
  bytes_ += size;
  ++count_;
  EvictLocked();
}

void ObjectCache::EraseLocked(uint64_t oid, Revisions& revisions,
                              Revisions::iterator it) {
  bytes_ -= it->second.data.size() + kRevisionOverhead;
  --count_;
  lru_.erase(it->second.lru);
  revisions.erase(it);
}

void ObjectCache::TouchLocked(Entry& entry) {
  lru_.splice(lru_.begin(), lru_, entry.lru);
}

void ObjectCache::EvictLocked() {
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    const LruKey key = lru_.back();
    auto obj = objects_.find(key.oid);
    auto it = obj->second.find(key.serial);
    EraseLocked(key.oid, obj->second, it);
    if (obj->second.empty()) objects_.erase(obj);
  }
}

void ObjectCache::Invalidate(uint64_t tid, const std::vector<uint64_t>& oids) {
  absl::MutexLock lock(&mu_);
  for (uint64_t oid : oids) {
    auto flight = in_flight_.find(oid);
    if (flight != in_flight_.end()) flight->second.invalidated.push_back(tid);
    auto obj = objects_.find(oid);
    if (obj == objects_.end()) continue;
    for (auto& [serial, entry] : obj->second) {
      if (entry.next_serial == 0 && serial < tid) entry.next_serial = tid;
    }
  }
  last_tid_ = std::max(last_tid_, tid);
}

void ObjectCache::Clear(uint64_t last_tid) {
  absl::MutexLock lock(&mu_);
  objects_.clear();
  lru_.clear();
  bytes_ = 0;
  count_ = 0;
  ++generation_;
  last_tid_ = last_tid;
}

uint64_t ObjectCache::last_tid() const {
  absl::MutexLock lock(&mu_);
  return last_tid_;
}

size_t ObjectCache::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

size_t ObjectCache::revision_count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

}  // namespace cellar::client
