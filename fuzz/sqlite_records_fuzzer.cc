// libFuzzer target: the SQLite backend reading back stored records it did
// not write (a damaged or hostile database file).
//
// One SqliteBackend is opened per process on a scratch file. For every
// input the rows of its tables (config, pt, obj, trans, tobj, ttrans,
// tlock, data) are replaced, through a second sqlite3 connection, by rows made of
// the input's records (fuzz_input.h: the selector picks the table, the
// payload gives the columns: 8-byte little-endian integers, then blobs cut
// at the lengths that follow). Then every read of the StorageBackend
// interface runs over them: the partition table, voted transactions and
// their packed oid lists (UnpackOids), committed transactions, objects,
// history, last ids, stats, config. A read may fail (INTERNAL for a
// corrupt record); it must not crash, hang or read out of bounds.

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/fuzz_support.h"
#include "services/storage/backend/sqlite/sqlite_backend.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::fuzz {
namespace {

using storage::StorageBackend;

// Reads columns off a payload: integers (8 bytes, missing bytes are 0) and
// blobs (a 1-byte length, then that many bytes; the last blob takes the
// rest).
class Columns {
 public:
  explicit Columns(absl::string_view bytes) : bytes_(bytes) {}
  int64_t Int() {
    uint64_t v = 0;
    for (int i = 0; i < 8 && !bytes_.empty(); ++i) {
      v |= uint64_t{static_cast<uint8_t>(bytes_[0])} << (8 * i);
      bytes_.remove_prefix(1);
    }
    return static_cast<int64_t>(v);
  }
  // Small integers (partitions, node ids, states) in one byte, so that rows
  // meet each other.
  int64_t Small() {
    if (bytes_.empty()) return 0;
    const int64_t v = static_cast<int8_t>(bytes_[0]);
    bytes_.remove_prefix(1);
    return v;
  }
  absl::string_view Blob() {
    if (bytes_.empty()) return {};
    size_t n = static_cast<uint8_t>(bytes_[0]);
    bytes_.remove_prefix(1);
    if (n > bytes_.size()) n = bytes_.size();
    absl::string_view out = bytes_.substr(0, n);
    bytes_.remove_prefix(n);
    return out;
  }
  absl::string_view Rest() {
    absl::string_view out = bytes_;
    bytes_ = {};
    return out;
  }

 private:
  absl::string_view bytes_;
};

struct Db {
  std::string dir;
  std::unique_ptr<StorageBackend> backend;
  sqlite3* raw = nullptr;
};

Db* OpenDb() {
  auto* db = new Db;
  char tmpl[] = "/tmp/cellar-fuzz-sqlite-XXXXXX";
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = base != nullptr ? absl::StrCat(base, "/sqlite-XXXXXX") : tmpl;
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  db->dir = pattern;
  storage::SqliteBackend::Options options;
  options.path = db->dir + "/storage.db";
  options.read_connections = 1;
  auto backend = storage::SqliteBackend::Open(options);
  if (!backend.ok()) std::abort();
  db->backend = *std::move(backend);
  if (sqlite3_open(options.path.c_str(), &db->raw) != SQLITE_OK) std::abort();
  sqlite3_busy_timeout(db->raw, 5000);
  return db;
}

void Exec(sqlite3* raw, const char* sql) { sqlite3_exec(raw, sql, nullptr, nullptr, nullptr); }

// Sorted, unique, at most 4 (bounds the reads per input).
template <typename T>
void Trim(std::vector<T>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
  if (v->size() > 4) v->resize(4);
}

// Binds `ints` then `blobs` to `sql` and runs it once.
void Insert(sqlite3* raw, const char* sql, const std::vector<int64_t>& ints,
            const std::vector<absl::string_view>& blobs) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(raw, sql, -1, &s, nullptr) != SQLITE_OK) std::abort();
  int i = 1;
  for (int64_t v : ints) sqlite3_bind_int64(s, i++, v);
  for (absl::string_view b : blobs) {
    sqlite3_bind_blob(s, i++, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
  }
  sqlite3_step(s);  // a duplicate key just fails
  sqlite3_finalize(s);
}

// The bytes of an obj or tobj row, in `data` under `id` (0: the row has
// no data row, NULL; an id whose bytes are empty stays dangling: a damaged
// database may have either).
void InsertData(sqlite3* raw, int64_t id, absl::string_view bytes) {
  if (id == 0 || bytes.empty()) return;
  Insert(raw, "INSERT OR REPLACE INTO data (id, data) VALUES (?1, ?2)", {id}, {bytes});
}

}  // namespace
}  // namespace cellar::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cellar::fuzz;  // NOLINT
  static Db* db = OpenDb();
  sqlite3* raw = db->raw;
  Exec(raw, "BEGIN IMMEDIATE");
  Exec(raw,
       "DELETE FROM config WHERE name NOT LIKE 'schema%'; DELETE FROM pt; DELETE FROM obj; "
       "DELETE FROM trans; DELETE FROM tobj; DELETE FROM ttrans; DELETE FROM tlock; "
       "DELETE FROM data;");
  // What to read back: partitions, oids, tids and ttids the rows used.
  std::vector<uint32_t> partitions = {0, 1};
  std::vector<uint64_t> oids = {0}, tids = {1}, ttids = {1};
  RecordReader reader(data, size);
  Record r;
  while (reader.Next(&r)) {
    Columns c(r.payload);
    switch (r.selector % 7) {
      case 0: {
        const int64_t part = c.Small(), node = c.Small(), state = c.Small();
        Insert(raw, "INSERT INTO pt (part, node_id, state) VALUES (?1, ?2, ?3)",
               {part, node, state}, {});
        break;
      }
      case 1: {
        const int64_t part = c.Small(), oid = c.Int(), tid = c.Int(), data_tid = c.Int(),
                      data_id = c.Small();
        const absl::string_view checksum = c.Blob(), bytes = c.Rest();
        InsertData(raw, data_id, bytes);
        Insert(raw,
               "INSERT INTO obj (part, oid, tid, data_tid, data_id, checksum) "
               "VALUES (?1, ?2, ?3, ?4, NULLIF(?5, 0), ?6)",
               {part, oid, tid, data_tid, data_id}, {checksum});
        partitions.push_back(static_cast<uint32_t>(part));
        oids.push_back(static_cast<uint64_t>(oid));
        tids.push_back(static_cast<uint64_t>(tid));
        break;
      }
      case 2: {
        const int64_t part = c.Small(), tid = c.Int(), ttid = c.Int(), packed = c.Small(),
                      bytes = c.Int();
        const absl::string_view user = c.Blob(), description = c.Blob(),
                                extension = c.Blob(), packed_oids = c.Rest();
        Insert(raw,
               "INSERT INTO trans (part, tid, ttid, packed, size, user, description, "
               "extension, oids) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
               {part, tid, ttid, packed, bytes}, {user, description, extension, packed_oids});
        partitions.push_back(static_cast<uint32_t>(part));
        tids.push_back(static_cast<uint64_t>(tid));
        ttids.push_back(static_cast<uint64_t>(ttid));
        break;
      }
      case 3: {
        const int64_t ttid = c.Int(), part = c.Small(), oid = c.Int(), data_tid = c.Int(),
                      data_id = c.Small();
        const absl::string_view checksum = c.Blob(), bytes = c.Rest();
        InsertData(raw, data_id, bytes);
        Insert(raw,
               "INSERT INTO tobj (ttid, part, oid, data_tid, data_id, checksum) "
               "VALUES (?1, ?2, ?3, ?4, NULLIF(?5, 0), ?6)",
               {ttid, part, oid, data_tid, data_id}, {checksum});
        ttids.push_back(static_cast<uint64_t>(ttid));
        oids.push_back(static_cast<uint64_t>(oid));
        break;
      }
      case 4: {
        const int64_t ttid = c.Int(), part = c.Small(), bytes = c.Int();
        const absl::string_view user = c.Blob(), description = c.Blob(),
                                extension = c.Blob(), packed_oids = c.Rest();
        Insert(raw,
               "INSERT INTO ttrans (ttid, part, size, user, description, extension, oids) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
               {ttid, part, bytes}, {user, description, extension, packed_oids});
        ttids.push_back(static_cast<uint64_t>(ttid));
        break;
      }
      case 5: {
        const int64_t ttid = c.Int(), tid = c.Int();
        Insert(raw, "INSERT INTO tlock (ttid, tid) VALUES (?1, ?2)", {ttid, tid}, {});
        ttids.push_back(static_cast<uint64_t>(ttid));
        break;
      }
      case 6: {
        const absl::string_view name = c.Blob(), value = c.Rest();
        if (absl::StartsWith(name, "schema")) break;
        Insert(raw, "INSERT INTO config (name, value) VALUES (CAST(?1 AS TEXT), ?2)", {},
               {name, value});
        break;
      }
    }
  }
  Exec(raw, "COMMIT");
  Trim(&partitions);
  Trim(&oids);
  Trim(&tids);
  Trim(&ttids);

  cellar::storage::StorageBackend& b = *db->backend;
  (void)b.LoadPartitionTable();
  (void)b.GetConfig("node_id");
  (void)b.GetConfig("num_partitions");
  (void)b.ListVotedTransactions();
  (void)b.ListVotedObjects();
  (void)b.GetLastIds();
  (void)b.GetStats();
  (void)b.LastTransactions(100, std::numeric_limits<uint64_t>::max());
  (void)b.GetLastSerials(4, oids);
  for (uint64_t ttid : ttids) {
    (void)b.GetLockedTid(ttid);
    (void)b.FindCommittedTid(ttid);
  }
  for (uint32_t part : partitions) {
    (void)b.ListTransactions(part, 0, std::numeric_limits<uint64_t>::max(), 100);
    (void)b.ListObjects(part, 0, std::numeric_limits<uint64_t>::max(), 100);
    for (uint64_t oid : oids) {
      (void)b.History(part, oid, 100);
      (void)b.LoadBefore(part, oid, std::numeric_limits<uint64_t>::max());
      (void)b.ListObjectsFrom(part, 0, oid, std::numeric_limits<uint64_t>::max(), 100);
      for (uint64_t tid : tids) {
        (void)b.LoadSerial(part, oid, tid);
        (void)b.LoadBefore(part, oid, tid);
      }
    }
  }
  return 0;
}
