#ifndef CELLAR_CLIENT_OBJECT_CACHE_H_
#define CELLAR_CLIENT_OBJECT_CACHE_H_

// The client's object cache: revisions of objects keyed by
// (oid, serial, next_serial), bounded by bytes, kept coherent by
// invalidations (semantics.md "Reads (MVCC)").
//
// A revision is valid for a read "before b" (ZODB loadBefore) when
//   serial < b <= next_serial                       (next_serial known), or
//   next_serial == 0 and serial < b <= last_tid()+1 (current revision).
// last_tid() is the tid of the last invalidation applied (or the snapshot
// given to Clear): a current revision is only known to be current up to it.
//
// Loads race with invalidations: a load that started before the
// invalidation of tid T may come back with next_serial == 0 for a revision
// that T replaced. BeginLoad/EndLoad track in-flight loads per oid and
// record the invalidation tids seen meanwhile; EndLoad then stores
// next_serial = the smallest such tid above the loaded serial. Clear()
// starts a new generation: loads begun before it are not cached.
//
// Eviction: least recently used revision first, until the accounted bytes
// (data size + a fixed per-revision overhead) fit max_bytes. A revision
// larger than max_bytes is never cached.
//
// Thread-safe.

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace cellar::client {

// One cached revision of an object.
struct CachedRevision {
  uint64_t serial = 0;
  // TID of the next revision; 0 = current (as of the cache's last_tid()).
  uint64_t next_serial = 0;
  std::string data;
};

class ObjectCache {
 public:
  // Bytes accounted per revision on top of its data.
  static constexpr size_t kRevisionOverhead = 64;

  // Identifies one in-flight load (BeginLoad → EndLoad/CancelLoad).
  struct LoadTicket {
    uint64_t oid = 0;
    uint64_t generation = 0;
  };

  // `max_bytes` == 0 disables caching. `last_tid` is the initial snapshot.
  explicit ObjectCache(size_t max_bytes, uint64_t last_tid = 0);

  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  // The revision valid for a read before `before_tid`, if cached.
  std::optional<CachedRevision> LookupBefore(uint64_t oid, uint64_t before_tid);
  // The revision with exactly `serial`, if cached.
  std::optional<CachedRevision> LookupSerial(uint64_t oid, uint64_t serial);

  // Call before sending a load for `oid`, then exactly one of EndLoad /
  // CancelLoad with the ticket.
  LoadTicket BeginLoad(uint64_t oid);
  // Caches what the load returned (next_serial adjusted for invalidations
  // seen since BeginLoad; not cached at all if Clear ran meanwhile).
  // Returns the next_serial that was cached (or would have been).
  uint64_t EndLoad(const LoadTicket& ticket, uint64_t serial,
                   uint64_t next_serial, absl::string_view data);
  void CancelLoad(const LoadTicket& ticket);

  // Caches a revision known to be right (no in-flight tracking).
  void Insert(uint64_t oid, uint64_t serial, uint64_t next_serial,
              absl::string_view data);

  // Transaction `tid` changed `oids`: their current revisions get
  // next_serial = tid; last_tid() becomes max(last_tid(), tid).
  void Invalidate(uint64_t tid, const std::vector<uint64_t>& oids);

  // Drops everything (invalidations may have been lost) and sets
  // last_tid() = `last_tid`. In-flight loads will not be cached.
  void Clear(uint64_t last_tid);

  uint64_t last_tid() const;
  // Accounted bytes and number of cached revisions.
  size_t bytes() const;
  size_t revision_count() const;
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct LruKey {
    uint64_t oid;
    uint64_t serial;
  };
  struct Entry {
    uint64_t next_serial = 0;
    std::string data;
    std::list<LruKey>::iterator lru;
  };
  struct InFlight {
    int count = 0;
    // Invalidation tids of this oid seen while loads were in flight.
    std::vector<uint64_t> invalidated;
  };
  using Revisions = std::map<uint64_t, Entry>;  // by serial

  void InsertLocked(uint64_t oid, uint64_t serial, uint64_t next_serial,
                    absl::string_view data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(uint64_t oid, Revisions& revisions, Revisions::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchLocked(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndLoadLocked(const LoadTicket& ticket) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_bytes_;
  mutable absl::Mutex mu_;
  uint64_t last_tid_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Revisions> objects_ ABSL_GUARDED_BY(mu_);
  // Front = most recently used.
  std::list<LruKey> lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::client

#endif  // CELLAR_CLIENT_OBJECT_CACHE_H_
