#include "services/storage/backend/sqlite/sqlite_backend.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/status_macros.h"
#include "services/storage/backend/pack_plan.h"

namespace cellar::storage {
namespace sqlite_internal {
namespace {

// The status for SQLite result code `rc` while doing `what`.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const int primary = rc & 0xff;
  absl::StatusCode code;
  switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOMEM:
      code = absl::StatusCode::kUnavailable;
      break;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case SQLITE_NOTADB:
      code = absl::StatusCode::kFailedPrecondition;
      break;
    default:
      code = absl::StatusCode::kInternal;
  }
  const char* detail =
      (db != nullptr && sqlite3_errcode(db) == rc) ? sqlite3_errmsg(db)
                                                   : sqlite3_errstr(rc);
  return absl::Status(code, absl::StrCat("sqlite: ", what, ": ", detail,
                                         " (code ", rc, ")"));
}

}  // namespace

// A prepared statement borrowed from a Connection's cache. Bind, then
// Step() / Run(); the destructor resets it for the next user. Blob and
// text bindings reference the caller's bytes (SQLITE_STATIC): they must
// outlive the statement's use.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(other.stmt_), bind_rc_(other.bind_rc_) {
    other.stmt_ = nullptr;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Statement& Bind(int index, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  Statement& BindU64(int index, uint64_t value) {
    return Bind(index, static_cast<int64_t>(value));
  }
  Statement& BindBlob(int index, absl::string_view bytes) {
    // A null pointer would bind NULL, not an empty blob.
    const char* p = bytes.data() != nullptr ? bytes.data() : "";
    Check(sqlite3_bind_blob64(stmt_, index, p, bytes.size(), SQLITE_STATIC));
    return *this;
  }
  Statement& BindNull(int index) {
    Check(sqlite3_bind_null(stmt_, index));
    return *this;
  }
  Statement& BindText(int index, absl::string_view text) {
    const char* p = text.data() != nullptr ? text.data() : "";
    Check(sqlite3_bind_text64(stmt_, index, p, text.size(), SQLITE_STATIC,
                              SQLITE_UTF8));
    return *this;
  }

  // True if a row is available, false when done.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) {
      return SqliteError(db_, bind_rc_, absl::StrCat("bind ", Sql()));
    }
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, Sql());
  }

  // Steps to completion (for statements that return no rows).
  absl::Status Run() {
    while (true) {
      CELLAR_ASSIGN_OR_RETURN(bool row, Step());
      if (!row) return absl::OkStatus();
    }
  }

  bool IsNull(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  uint64_t U64(int col) const { return static_cast<uint64_t>(Int(col)); }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    if (p == nullptr || n <= 0) return std::string();
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  std::string Sql() const {
    const char* sql = sqlite3_sql(stmt_);
    return sql != nullptr ? std::string(sql) : std::string("statement");
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

// One SQLite connection with a cache of prepared statements. Not
// thread-safe: used by one thread at a time (the writer under its mutex,
// readers leased from the pool).
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, int flags, int busy_timeout_ms) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db,
                                   flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status s = SqliteError(db, rc, absl::StrCat("open ", path));
      sqlite3_close_v2(db);
      return s;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_timeout_ms);
    return std::unique_ptr<Connection>(new Connection(db));
  }

  ~Connection() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs fixed SQL text (DDL, pragmas, BEGIN/COMMIT): never data.
  absl::Status Exec(const char* sql) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, sql);
    return absl::OkStatus();
  }

  // The cached prepared statement for `sql` (a string constant).
  absl::StatusOr<Statement> Prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                        &stmt, nullptr);
      if (rc != SQLITE_OK) {
        return SqliteError(db_, rc, absl::StrCat("prepare ", sql));
      }
      it = cache_.emplace(sql, stmt).first;
    }
    return Statement(db_, it->second);
  }

  // The rowid of the last row inserted on this connection.
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

  // Rolls back the open transaction, if any (after a failure).
  void RollbackQuietly() {
    if (!sqlite3_get_autocommit(db_)) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  // Keyed by the SQL text's address: every caller passes a constant.
  absl::flat_hash_map<const char*, sqlite3_stmt*> cache_;
};

}  // namespace sqlite_internal

namespace {

using sqlite_internal::Connection;
using sqlite_internal::Statement;
using ::cellar::common::ErrorWithReason;
using ::cellar::common::FormatOid;
using ::cellar::common::kMaxTid;
using ::cellar::common::TidHex;

constexpr char kSchemaVersionKey[] = "schema_version";
constexpr char kPtidKey[] = "ptid";
// Undo back-pointer chains longer than this are treated as corruption.
constexpr int kMaxUndoChain = 64;

// Recomputes `pstats` from `obj` (a scan: at migration and after a
// truncate only; otherwise the trigger below keeps it up to date).
#define CELLAR_SQLITE_FILL_PSTATS                                           \
  "INSERT INTO pstats (part, objects, revisions, bytes) "                   \
  "SELECT o.part, "                                                         \
  "  sum((o.data_id IS NOT NULL OR o.data_tid <> 0) AND NOT EXISTS "        \
  "    (SELECT 1 FROM obj n WHERE n.part = o.part AND n.oid = o.oid "       \
  "     AND n.tid > o.tid)), "                                              \
  "  count(*), "                                                            \
  "  ifnull(sum((SELECT length(d.data) FROM data d WHERE d.id = o.data_id)), 0) " \
  "FROM obj o GROUP BY o.part;"

// Schema migrations: step i brings a database from version i to i + 1.
// Later versions append steps here (never edit a released step).
struct Migration {
  int to_version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1,
     "CREATE TABLE config ("
     "  name TEXT PRIMARY KEY NOT NULL,"
     "  value BLOB NOT NULL);"
     "CREATE TABLE pt ("
     "  part INTEGER NOT NULL,"
     "  node_id INTEGER NOT NULL,"
     "  state INTEGER NOT NULL,"
     "  PRIMARY KEY (part, node_id)) WITHOUT ROWID;"
     "CREATE TABLE obj ("
     "  part INTEGER NOT NULL,"
     "  oid INTEGER NOT NULL,"
     "  tid INTEGER NOT NULL,"
     "  data_tid INTEGER NOT NULL,"
     "  checksum BLOB NOT NULL,"
     "  data BLOB NOT NULL,"
     "  PRIMARY KEY (part, oid, tid));"
     "CREATE INDEX obj_part_tid ON obj (part, tid, oid);"
     "CREATE TABLE trans ("
     "  part INTEGER NOT NULL,"
     "  tid INTEGER NOT NULL,"
     "  ttid INTEGER NOT NULL,"
     "  packed INTEGER NOT NULL,"
     "  user BLOB NOT NULL,"
     "  description BLOB NOT NULL,"
     "  extension BLOB NOT NULL,"
     "  oids BLOB NOT NULL,"
     "  PRIMARY KEY (part, tid));"
     "CREATE INDEX trans_ttid ON trans (ttid);"
     "CREATE INDEX trans_tid ON trans (tid);"
     "CREATE TABLE tobj ("
     "  ttid INTEGER NOT NULL,"
     "  part INTEGER NOT NULL,"
     "  oid INTEGER NOT NULL,"
     "  data_tid INTEGER NOT NULL,"
     "  checksum BLOB NOT NULL,"
     "  data BLOB NOT NULL,"
     "  PRIMARY KEY (ttid, oid));"
     "CREATE TABLE ttrans ("
     "  ttid INTEGER PRIMARY KEY NOT NULL,"
     "  part INTEGER NOT NULL,"
     "  user BLOB NOT NULL,"
     "  description BLOB NOT NULL,"
     "  extension BLOB NOT NULL,"
     "  oids BLOB NOT NULL);"},
    // ttid -> tid of the transactions this node locked (verification).
    {2,
     "CREATE TABLE tlock ("
     "  ttid INTEGER PRIMARY KEY NOT NULL,"
     "  tid INTEGER NOT NULL);"},
    // The transaction's total data size, stored with its record (rows of
    // older versions keep 0).
    {3,
     "ALTER TABLE trans ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE ttrans ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"},
    // Object bytes move to `data`, written once (by a vote or an import);
    // obj / tobj rows reference them by data_id (NULL: no bytes) and lose
    // their rowid (small rows, clustered by their key). Existing bytes get
    // the id of their row: obj's rowid, tobj's above every obj rowid.
    {4,
     "CREATE TABLE data ("
     "  id INTEGER PRIMARY KEY,"
     "  data BLOB NOT NULL);"
     "INSERT INTO data (id, data) "
     "  SELECT rowid, data FROM obj WHERE length(data) > 0;"
     "INSERT INTO data (id, data) "
     "  SELECT rowid + (SELECT ifnull(max(rowid), 0) FROM obj), data "
     "  FROM tobj WHERE length(data) > 0;"
     "CREATE TABLE obj4 ("
     "  part INTEGER NOT NULL,"
     "  oid INTEGER NOT NULL,"
     "  tid INTEGER NOT NULL,"
     "  data_tid INTEGER NOT NULL,"
     "  checksum BLOB NOT NULL,"
     "  data_id INTEGER,"
     "  PRIMARY KEY (part, oid, tid)) WITHOUT ROWID;"
     "INSERT INTO obj4 (part, oid, tid, data_tid, checksum, data_id) "
     "  SELECT part, oid, tid, data_tid, checksum, "
     "    CASE WHEN length(data) > 0 THEN rowid END FROM obj;"
     "CREATE TABLE tobj4 ("
     "  ttid INTEGER NOT NULL,"
     "  part INTEGER NOT NULL,"
     "  oid INTEGER NOT NULL,"
     "  data_tid INTEGER NOT NULL,"
     "  checksum BLOB NOT NULL,"
     "  data_id INTEGER,"
     "  PRIMARY KEY (ttid, oid)) WITHOUT ROWID;"
     "INSERT INTO tobj4 (ttid, part, oid, data_tid, checksum, data_id) "
     "  SELECT ttid, part, oid, data_tid, checksum, "
     "    CASE WHEN length(data) > 0 "
     "      THEN rowid + (SELECT ifnull(max(rowid), 0) FROM obj) END "
     "  FROM tobj;"
     "DROP TABLE obj;"
     "DROP TABLE tobj;"
     "ALTER TABLE obj4 RENAME TO obj;"
     "ALTER TABLE tobj4 RENAME TO tobj;"
     "CREATE INDEX obj_part_tid ON obj (part, tid, oid);"},
    // Per-partition counts, kept by the two writes that insert committed
    // object rows (LockTransactions: one statement per lock, before its
    // rows move; ImportCommitted: per row), in the same database
    // transaction: +revisions, + their bytes, and the change of "latest
    // revision is not a deletion" of each oid (none when a newer revision
    // exists already). Deletes (a dropped partition, a truncate) fix the
    // counts themselves.
    {5,
     "CREATE TABLE pstats ("
     "  part INTEGER PRIMARY KEY NOT NULL,"
     "  objects INTEGER NOT NULL,"
     "  revisions INTEGER NOT NULL,"
     "  bytes INTEGER NOT NULL);"
     CELLAR_SQLITE_FILL_PSTATS},
    // The partitions a lock committed, with its ttid -> tid record (packed
    // like oids; empty: every stored object), so that a later primary
    // completes the commit on the other voters with the same partitions.
    {6, "ALTER TABLE tlock ADD COLUMN partitions BLOB NOT NULL DEFAULT x'';"},
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kSchemaVersion,
              "one migration step per schema version");

std::string PackOids(const std::vector<uint64_t>& oids) {
  std::string out;
  out.reserve(oids.size() * 8);
  for (uint64_t oid : oids) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(oid >> (8 * i)));
  }
  return out;
}

absl::StatusOr<std::vector<uint64_t>> UnpackOids(absl::string_view bytes) {
  if (bytes.size() % 8 != 0) {
    return absl::InternalError(
        absl::StrCat("corrupt trans.oids: ", bytes.size(), " bytes"));
  }
  std::vector<uint64_t> oids(bytes.size() / 8);
  for (size_t n = 0; n < oids.size(); ++n) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= uint64_t{static_cast<unsigned char>(bytes[n * 8 + i])} << (8 * i);
    }
    oids[n] = v;
  }
  return oids;
}

// tlock.partitions: packed as oids are.
std::string PackPartitions(const std::vector<uint32_t>& partitions) {
  return PackOids(std::vector<uint64_t>(partitions.begin(), partitions.end()));
}

absl::StatusOr<std::vector<uint32_t>> UnpackPartitions(absl::string_view bytes) {
  absl::StatusOr<std::vector<uint64_t>> values = UnpackOids(bytes);
  if (!values.ok()) {
    return absl::InternalError(absl::StrCat("corrupt tlock.partitions: ", bytes.size(), " bytes"));
  }
  std::vector<uint32_t> out;
  out.reserve(values->size());
  for (uint64_t v : *values) {
    if (v > std::numeric_limits<uint32_t>::max()) {
      return absl::InternalError(absl::StrCat("corrupt tlock.partitions: partition ", v));
    }
    out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

// tid <= bound, as a signed column bound: `before` exclusive, 0 matches
// nothing (-1), anything above kMaxTid matches everything.
int64_t InclusiveBoundBefore(uint64_t before) {
  if (before == 0) return -1;
  if (before - 1 > kMaxTid) return static_cast<int64_t>(kMaxTid);
  return static_cast<int64_t>(before - 1);
}

absl::Status CheckTid(uint64_t tid, absl::string_view what) {
  if (tid == 0 || tid > kMaxTid) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", TidHex(tid), " is not a valid tid (1..",
                     TidHex(kMaxTid), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckDataTid(const ObjectRecord& o) {
  if (o.data_tid > kMaxTid) {
    return absl::InvalidArgumentError(
        absl::StrCat("oid ", FormatOid(o.oid), ": data_tid ",
                     TidHex(o.data_tid), " is not a valid tid"));
  }
  return absl::OkStatus();
}

// Reads a TransactionRecord from columns part, tid, ttid, packed, user,
// description, extension, oids, size.
absl::StatusOr<TransactionRecord> ReadTransaction(const Statement& s) {
  TransactionRecord t;
  t.partition = static_cast<uint32_t>(s.U64(0));
  t.tid = s.U64(1);
  t.ttid = s.U64(2);
  t.packed = s.Int(3) != 0;
  t.user = s.Blob(4);
  t.description = s.Blob(5);
  t.extension = s.Blob(6);
  CELLAR_ASSIGN_OR_RETURN(t.oids, UnpackOids(s.Blob(7)));
  t.size_bytes = s.U64(8);
  return t;
}

// Every row of `s` (ReadTransaction's columns), appended to `out`.
absl::Status ReadTransactions(Statement& s, std::vector<TransactionRecord>* out) {
  while (true) {
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::OkStatus();
    CELLAR_ASSIGN_OR_RETURN(TransactionRecord t, ReadTransaction(s));
    out->push_back(std::move(t));
  }
}

absl::StatusOr<std::optional<std::string>> ReadConfig(Connection& c,
                                                      absl::string_view key) {
  CELLAR_ASSIGN_OR_RETURN(
      Statement s, c.Prepare("SELECT value FROM config WHERE name = ?1"));
  s.BindText(1, key);
  CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(s.Blob(0));
}

absl::Status WriteConfig(Connection& c, absl::string_view key,
                         absl::string_view value) {
  CELLAR_ASSIGN_OR_RETURN(
      Statement s,
      c.Prepare("INSERT OR REPLACE INTO config (name, value) VALUES (?1, ?2)"));
  return s.BindText(1, key).BindBlob(2, value).Run();
}

// Writes `bytes` as a new `data` row: its id, or nullopt (nothing
// written) for no bytes (a deletion or an undo record).
absl::StatusOr<std::optional<int64_t>> InsertData(Connection& c,
                                                  absl::string_view bytes) {
  if (bytes.empty()) return std::optional<int64_t>();
  // Not RETURNING: SQLite buffers returned rows in a temporary table.
  CELLAR_ASSIGN_OR_RETURN(Statement s,
                          c.Prepare("INSERT INTO data (data) VALUES (?1)"));
  CELLAR_RETURN_IF_ERROR(s.BindBlob(1, bytes).Run());
  return std::optional<int64_t>(c.LastInsertRowid());
}

// Binds a data id (NULL for none) at `index`.
Statement& BindDataId(Statement& s, int index, std::optional<int64_t> id) {
  return id.has_value() ? s.Bind(index, *id) : s.BindNull(index);
}

// Whether `ttid` has temporary records (one probe: cheaper than the three
// deletes of DropVoteLocked for a first vote).
absl::StatusOr<bool> HasVoteLocked(Connection& c, uint64_t ttid) {
  CELLAR_ASSIGN_OR_RETURN(
      Statement s,
      c.Prepare("SELECT EXISTS (SELECT 1 FROM tobj WHERE ttid = ?1) "
                "OR EXISTS (SELECT 1 FROM ttrans WHERE ttid = ?1)"));
  CELLAR_ASSIGN_OR_RETURN(bool row, s.BindU64(1, ttid).Step());
  return row && s.Int(0) != 0;
}

// Drops the temporary records of `ttid` and the bytes only they held.
absl::Status DropVoteLocked(Connection& c, uint64_t ttid) {
  for (const char* sql :
       {"DELETE FROM data WHERE id IN "
        "(SELECT data_id FROM tobj WHERE ttid = ?1)",
        "DELETE FROM tobj WHERE ttid = ?1",
        "DELETE FROM ttrans WHERE ttid = ?1"}) {
    CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
    CELLAR_RETURN_IF_ERROR(s.BindU64(1, ttid).Run());
  }
  return absl::OkStatus();
}

// Creates or migrates the schema; refuses newer versions. Runs in one
// write transaction on `c` (the writer).
absl::Status MigrateLocked(Connection& c, const std::string& path) {
  bool exists = false;
  {
    CELLAR_ASSIGN_OR_RETURN(
        Statement has_config,
        c.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                  "name = 'config'"));
    CELLAR_ASSIGN_OR_RETURN(exists, has_config.Step());
  }  // reset before any DDL
  int version = 0;
  if (exists) {
    CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> value,
                            ReadConfig(c, kSchemaVersionKey));
    if (!value.has_value() || !absl::SimpleAtoi(*value, &version) ||
        version < 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database ", path, " has a config table but no valid ",
          kSchemaVersionKey, ": not a cellar database?"));
    }
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", path, " has schema version ", version,
        ", newer than this build's ", kSchemaVersion,
        ": run a newer cellar version"));
  }
  for (const Migration& m : kMigrations) {
    if (m.to_version <= version) continue;
    CELLAR_RETURN_IF_ERROR(c.Exec(m.sql));
    CELLAR_RETURN_IF_ERROR(
        WriteConfig(c, kSchemaVersionKey, absl::StrCat(m.to_version)));
  }
  return absl::OkStatus();
}

}  // namespace

// --- Lifecycle ---

absl::StatusOr<std::unique_ptr<StorageBackend>> SqliteBackend::Open(
    const Options& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("sqlite backend: path is empty");
  }
  if (options.path == ":memory:" || absl::StartsWith(options.path, "file:")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sqlite backend: path must be a file name, not ", options.path));
  }
  if (options.read_connections < 1 || options.read_connections > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite backend: read_connections must be in 1..256, not ",
                     options.read_connections));
  }
  if (options.busy_timeout_ms < 0) {
    return absl::InvalidArgumentError(
        "sqlite backend: busy_timeout_ms must be >= 0");
  }
  if (options.max_page_count < 0) {
    return absl::InvalidArgumentError(
        "sqlite backend: max_page_count must be >= 0");
  }

  // Ownership: one backend per database, in this process or any other.
  const std::string lock_path = options.path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open lock file ", lock_path, ": ", std::strerror(err)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", options.path,
                       " is in use by another storage node"));
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot lock ", lock_path, ": ", std::strerror(err)));
  }
  // From here on the backend owns the lock: early returns release it.
  std::unique_ptr<SqliteBackend> backend(new SqliteBackend(options.path, fd));

  CELLAR_ASSIGN_OR_RETURN(
      std::unique_ptr<Connection> writer,
      Connection::Open(options.path,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                       options.busy_timeout_ms));
  {
    // journal_mode returns the mode now in effect: check it took.
    CELLAR_ASSIGN_OR_RETURN(Statement s,
                            writer->Prepare("PRAGMA journal_mode = WAL"));
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    const std::string mode = row ? s.Blob(0) : "";
    if (mode != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", options.path,
                       ": cannot switch to WAL mode (got \"", mode, "\")"));
    }
  }
  // In WAL mode, FULL fsyncs the WAL at every commit: a write that
  // returned OK survives power loss.
  CELLAR_RETURN_IF_ERROR(writer->Exec("PRAGMA synchronous = FULL"));
  if (options.max_page_count > 0) {
    // A pragma takes no parameters: the number is formatted here.
    const std::string cap =
        absl::StrCat("PRAGMA max_page_count = ", options.max_page_count);
    CELLAR_RETURN_IF_ERROR(writer->Exec(cap.c_str()));
  }
  CELLAR_RETURN_IF_ERROR(writer->Exec("BEGIN IMMEDIATE"));
  absl::Status migrated = MigrateLocked(*writer, options.path);
  if (migrated.ok()) migrated = writer->Exec("COMMIT");
  if (!migrated.ok()) {
    writer->RollbackQuietly();
    return migrated;
  }

  for (int i = 0; i < options.read_connections; ++i) {
    CELLAR_ASSIGN_OR_RETURN(
        std::unique_ptr<Connection> reader,
        Connection::Open(options.path, SQLITE_OPEN_READWRITE,
                         options.busy_timeout_ms));
    CELLAR_RETURN_IF_ERROR(reader->Exec("PRAGMA query_only = 1"));
    backend->readers_.push_back(std::move(reader));
  }
  {
    absl::MutexLock lock(&backend->pool_mu_);
    for (auto& reader : backend->readers_) {
      backend->free_readers_.push_back(reader.get());
    }
  }
  {
    absl::MutexLock lock(&backend->writer_mu_);
    backend->writer_ = std::move(writer);
  }
  return std::unique_ptr<StorageBackend>(std::move(backend));
}

SqliteBackend::SqliteBackend(std::string path, int lock_fd)
    : path_(std::move(path)), lock_fd_(lock_fd) {}

SqliteBackend::~SqliteBackend() {
  // Readers first: the last connection to close checkpoints the WAL.
  {
    absl::MutexLock lock(&pool_mu_);
    free_readers_.clear();
  }
  readers_.clear();
  {
    absl::MutexLock lock(&writer_mu_);
    writer_.reset();
  }
  ::close(lock_fd_);  // releases the flock
}

std::string SqliteBackend::Kind() const { return "sqlite"; }

absl::StatusOr<std::optional<DiskUsage>> SqliteBackend::GetDiskUsage() {
  // The volume of the database's directory (the WAL and lock file live
  // there too).
  const size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? std::string(".")
                          : slash == 0                ? std::string("/")
                                                      : path_.substr(0, slash);
  struct statvfs vfs;
  if (statvfs(dir.c_str(), &vfs) != 0) {
    return absl::UnavailableError(
        absl::StrCat("statvfs(", dir, "): ", std::strerror(errno)));
  }
  DiskUsage usage;
  usage.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  usage.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  return std::optional<DiskUsage>(usage);
}

std::optional<PoolUsage> SqliteBackend::GetPoolUsage() {
  absl::MutexLock l(&pool_mu_);
  PoolUsage usage;
  usage.idle = static_cast<int>(free_readers_.size());
  usage.in_use = static_cast<int>(readers_.size()) - usage.idle;
  return usage;
}

// --- Connection use ---

Connection* SqliteBackend::AcquireReader() {
  pool_mu_.LockWhen(absl::Condition(
      +[](std::vector<Connection*>* free) { return !free->empty(); },
      &free_readers_));
  Connection* reader = free_readers_.back();
  free_readers_.pop_back();
  pool_mu_.Unlock();
  return reader;
}

void SqliteBackend::ReleaseReader(Connection* reader) {
  absl::MutexLock lock(&pool_mu_);
  free_readers_.push_back(reader);
}

template <typename Body>
absl::Status SqliteBackend::Write(absl::string_view what, Body body) {
  absl::MutexLock lock(&writer_mu_);
  Connection& c = *writer_;
  absl::Status s = c.Exec("BEGIN IMMEDIATE");
  if (s.ok()) s = body(c);
  if (s.ok()) s = c.Exec("COMMIT");
  if (!s.ok()) {
    c.RollbackQuietly();
    return common::Annotate(s, what);
  }
  return s;
}

template <typename Body>
absl::Status SqliteBackend::Read(absl::string_view what, Body body) {
  Connection* c = AcquireReader();
  absl::Status s = c->Exec("BEGIN");
  if (s.ok()) s = body(*c);
  if (s.ok()) {
    s = c->Exec("COMMIT");
  } else {
    c->RollbackQuietly();
  }
  ReleaseReader(c);
  if (!s.ok() && s.code() != absl::StatusCode::kNotFound) {
    return common::Annotate(s, what);
  }
  return s;
}

// --- Configuration ---

absl::StatusOr<std::optional<std::string>> SqliteBackend::GetConfig(
    absl::string_view key) {
  CELLAR_RETURN_IF_ERROR(CheckConfigKey(key));
  std::optional<std::string> value;
  CELLAR_RETURN_IF_ERROR(Read("GetConfig", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(value, ReadConfig(c, key));
    return absl::OkStatus();
  }));
  return value;
}

absl::Status SqliteBackend::SetConfig(absl::string_view key,
                                      absl::string_view value) {
  CELLAR_RETURN_IF_ERROR(CheckConfigKey(key));
  if (key == kSchemaVersionKey || key == kPtidKey) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"", key, "\" is reserved by the sqlite backend"));
  }
  return Write("SetConfig", [&](Connection& c) {
    return WriteConfig(c, key, value);
  });
}

// --- Partition table ---

absl::Status SqliteBackend::SavePartitionTable(
    const PartitionTableRecord& table) {
  return Write("SavePartitionTable", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(Statement clear, c.Prepare("DELETE FROM pt"));
    CELLAR_RETURN_IF_ERROR(clear.Run());
    for (const CellRecord& cell : table.cells) {
      CELLAR_ASSIGN_OR_RETURN(
          Statement insert,
          c.Prepare("INSERT OR REPLACE INTO pt (part, node_id, state) "
                    "VALUES (?1, ?2, ?3)"));
      insert.Bind(1, cell.partition).Bind(2, cell.node_id).Bind(3, cell.state);
      CELLAR_RETURN_IF_ERROR(insert.Run());
    }
    return WriteConfig(c, kPtidKey, absl::StrCat(table.ptid));
  });
}

absl::StatusOr<PartitionTableRecord> SqliteBackend::LoadPartitionTable() {
  PartitionTableRecord table;
  CELLAR_RETURN_IF_ERROR(
      Read("LoadPartitionTable", [&](Connection& c) -> absl::Status {
        CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> ptid,
                                ReadConfig(c, kPtidKey));
        if (ptid.has_value() && !absl::SimpleAtoi(*ptid, &table.ptid)) {
          return absl::InternalError(
              absl::StrCat("corrupt ptid in config: \"", *ptid, "\""));
        }
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("SELECT part, node_id, state FROM pt "
                      "ORDER BY part, node_id"));
        while (true) {
          CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          table.cells.push_back(CellRecord{static_cast<uint32_t>(s.U64(0)),
                                           static_cast<uint32_t>(s.U64(1)),
                                           static_cast<int>(s.Int(2))});
        }
        return absl::OkStatus();
      }));
  return table;
}

// --- Commit path ---

absl::Status SqliteBackend::StoreVotes(const std::vector<VoteRecord>& votes) {
  for (const VoteRecord& vote : votes) {
    CELLAR_RETURN_IF_ERROR(CheckTid(vote.ttid, "ttid"));
    for (const ObjectRecord& o : vote.objects) {
      CELLAR_RETURN_IF_ERROR(CheckDataTid(o));
    }
  }
  if (votes.empty()) return absl::OkStatus();
  return Write("StoreVotes", [&](Connection& c) -> absl::Status {
    for (const VoteRecord& vote : votes) {
      // A re-vote replaces whatever an earlier vote stored.
      CELLAR_ASSIGN_OR_RETURN(bool revote, HasVoteLocked(c, vote.ttid));
      if (revote) CELLAR_RETURN_IF_ERROR(DropVoteLocked(c, vote.ttid));
      // The only write of the bytes: the lock moves metadata.
      for (const ObjectRecord& o : vote.objects) {
        CELLAR_ASSIGN_OR_RETURN(std::optional<int64_t> data_id,
                                InsertData(c, o.data));
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("INSERT INTO tobj "
                      "(ttid, part, oid, data_tid, checksum, data_id) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
        s.BindU64(1, vote.ttid)
            .Bind(2, o.partition)
            .BindU64(3, o.oid)
            .BindU64(4, o.data_tid)
            .BindBlob(5, o.checksum);
        CELLAR_RETURN_IF_ERROR(BindDataId(s, 6, data_id).Run());
      }
      if (vote.transaction.has_value()) {
        const TransactionRecord& t = *vote.transaction;
        const std::string oids = PackOids(t.oids);
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("INSERT OR REPLACE INTO ttrans "
                      "(ttid, part, user, description, extension, oids, size) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"));
        s.BindU64(1, vote.ttid)
            .Bind(2, t.partition)
            .BindBlob(3, t.user)
            .BindBlob(4, t.description)
            .BindBlob(5, t.extension)
            .BindBlob(6, oids)
            .BindU64(7, t.size_bytes);
        CELLAR_RETURN_IF_ERROR(s.Run());
      }
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteBackend::LockTransactions(
    const std::vector<LockRecord>& locks) {
  for (const LockRecord& lock : locks) {
    CELLAR_RETURN_IF_ERROR(CheckTid(lock.tid, "tid"));
  }
  if (locks.empty()) return absl::OkStatus();
  return Write("LockTransactions", [&](Connection& c) -> absl::Status {
    for (const LockRecord& lock : locks) {
      // Whatever temporary rows exist move into place; none (already
      // locked, or nothing held here) is a no-op. The ttid -> tid record
      // first, while the temporary rows still tell whether we held any.
      // Object rows take their bytes by reference (data_id): no data is
      // written, so a lock needs no room its vote did not take. A row
      // already in place (imported by replication) keeps its own bytes
      // and the vote's copy goes.
      if (!lock.partitions.empty()) {
        // Object records of partitions the commit leaves out go, with the
        // bytes only they held, before anything moves. Almost never any:
        // one lookup of the vote's partitions (a json_each filter on every
        // lock cost about 8 % of a tiny commit's instructions).
        std::vector<int64_t> strays;
        {
          CELLAR_ASSIGN_OR_RETURN(
              Statement s, c.Prepare("SELECT DISTINCT part FROM tobj WHERE ttid = ?1"));
          s.BindU64(1, lock.ttid);
          while (true) {
            CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
            if (!row) break;
            if (absl::c_find(lock.partitions, s.U64(0)) == lock.partitions.end()) {
              strays.push_back(s.Int(0));
            }
          }
        }
        for (int64_t part : strays) {
          for (const char* sql :
               {"DELETE FROM data WHERE id IN (SELECT data_id FROM tobj WHERE ttid = ?1 "
                "AND part = ?2)",
                "DELETE FROM tobj WHERE ttid = ?1 AND part = ?2"}) {
            CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
            CELLAR_RETURN_IF_ERROR(s.BindU64(1, lock.ttid).Bind(2, part).Run());
          }
        }
      }
      {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("INSERT OR REPLACE INTO tlock (ttid, tid, partitions) SELECT ?1, ?2, ?3 "
                      "WHERE EXISTS (SELECT 1 FROM tobj WHERE ttid = ?1) "
                      "OR EXISTS (SELECT 1 FROM ttrans WHERE ttid = ?1)"));
        const std::string partitions = PackPartitions(lock.partitions);
        CELLAR_RETURN_IF_ERROR(
            s.BindU64(1, lock.ttid).BindU64(2, lock.tid).BindBlob(3, partitions).Run());
      }
      for (const char* sql :
           {"DELETE FROM data WHERE id IN (SELECT t.data_id FROM tobj t "
            "WHERE t.ttid = ?1 AND EXISTS (SELECT 1 FROM obj o "
            "WHERE o.part = t.part AND o.oid = t.oid AND o.tid = ?2))",
            // The counts of the rows about to move in (not those in
            // place already), against the committed rows before them.
            "INSERT INTO pstats (part, objects, revisions, bytes) "
            "SELECT t.part, sum(CASE WHEN EXISTS (SELECT 1 FROM obj o "
            "  WHERE o.part = t.part AND o.oid = t.oid AND o.tid > ?2) THEN 0 "
            "  ELSE (t.data_id IS NOT NULL OR t.data_tid <> 0) - ifnull("
            "   (SELECT o.data_id IS NOT NULL OR o.data_tid <> 0 FROM obj o "
            "    WHERE o.part = t.part AND o.oid = t.oid AND o.tid < ?2 "
            "    ORDER BY o.tid DESC LIMIT 1), 0) END), count(*), "
            " ifnull(sum((SELECT length(d.data) FROM data d "
            "  WHERE d.id = t.data_id)), 0) "
            "FROM tobj t WHERE t.ttid = ?1 AND NOT EXISTS (SELECT 1 FROM obj o "
            " WHERE o.part = t.part AND o.oid = t.oid AND o.tid = ?2) "
            "GROUP BY t.part "
            "ON CONFLICT (part) DO UPDATE SET "
            " objects = objects + excluded.objects, "
            " revisions = revisions + excluded.revisions, "
            " bytes = bytes + excluded.bytes",
            "INSERT OR IGNORE INTO obj "
            "(part, oid, tid, data_tid, checksum, data_id) "
            "SELECT part, oid, ?2, data_tid, checksum, data_id "
            "FROM tobj WHERE ttid = ?1",
            "INSERT OR REPLACE INTO trans "
            "(part, tid, ttid, packed, user, description, extension, oids, "
            "size) "
            "SELECT part, ?2, ttid, 0, user, description, extension, oids, "
            "size FROM ttrans WHERE ttid = ?1"}) {
        CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
        CELLAR_RETURN_IF_ERROR(s.BindU64(1, lock.ttid).BindU64(2, lock.tid).Run());
      }
      for (const char* sql : {"DELETE FROM tobj WHERE ttid = ?1",
                              "DELETE FROM ttrans WHERE ttid = ?1"}) {
        CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
        CELLAR_RETURN_IF_ERROR(s.BindU64(1, lock.ttid).Run());
      }
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteBackend::AbortTransaction(uint64_t ttid) {
  return Write("AbortTransaction",
               [&](Connection& c) { return DropVoteLocked(c, ttid); });
}

absl::StatusOr<std::vector<uint64_t>> SqliteBackend::ListVotedTransactions() {
  std::vector<uint64_t> ttids;
  CELLAR_RETURN_IF_ERROR(
      Read("ListVotedTransactions", [&](Connection& c) -> absl::Status {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s, c.Prepare("SELECT ttid FROM tobj UNION "
                                   "SELECT ttid FROM ttrans ORDER BY 1"));
        while (true) {
          CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          ttids.push_back(s.U64(0));
        }
        return absl::OkStatus();
      }));
  return ttids;
}

absl::StatusOr<std::vector<VotedTransaction>> SqliteBackend::ListVotedObjects() {
  std::map<uint64_t, std::vector<uint64_t>> voted;
  CELLAR_RETURN_IF_ERROR(Read("ListVotedObjects", [&](Connection& c) -> absl::Status {
    voted.clear();  // a retried read starts over
    // One read transaction: both tables from the same snapshot.
    CELLAR_ASSIGN_OR_RETURN(Statement s,
                            c.Prepare("SELECT ttid, 0, 0 FROM ttrans UNION ALL "
                                      "SELECT ttid, oid, 1 FROM tobj"));
    while (true) {
      CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      std::vector<uint64_t>& oids = voted[s.U64(0)];
      if (s.U64(2) != 0) oids.push_back(s.U64(1));
    }
    return absl::OkStatus();
  }));
  return SortedVotedTransactions(std::move(voted));
}

absl::StatusOr<uint64_t> SqliteBackend::FindCommittedTid(uint64_t ttid) {
  uint64_t tid = 0;
  CELLAR_RETURN_IF_ERROR(
      Read("FindCommittedTid", [&](Connection& c) -> absl::Status {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s, c.Prepare("SELECT tid FROM trans WHERE ttid = ?1 "
                                   "ORDER BY tid LIMIT 1"));
        CELLAR_ASSIGN_OR_RETURN(bool row, s.BindU64(1, ttid).Step());
        if (row) tid = s.U64(0);
        return absl::OkStatus();
      }));
  return tid;
}

absl::StatusOr<LockRecord> SqliteBackend::GetLock(uint64_t ttid) {
  LockRecord lock;
  if (ttid > kMaxTid) return lock;
  CELLAR_RETURN_IF_ERROR(Read("GetLock", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s, c.Prepare("SELECT tid, partitions FROM tlock WHERE ttid = ?1"));
    CELLAR_ASSIGN_OR_RETURN(bool row, s.BindU64(1, ttid).Step());
    if (!row) return absl::OkStatus();
    lock.ttid = ttid;
    lock.tid = s.U64(0);
    CELLAR_ASSIGN_OR_RETURN(lock.partitions, UnpackPartitions(s.Blob(1)));
    return absl::OkStatus();
  }));
  return lock;
}

absl::Status SqliteBackend::SetTransactionOids(uint32_t partition, uint64_t tid,
                                               const std::vector<uint64_t>& oids) {
  if (tid > kMaxTid) return absl::OkStatus();
  const std::string packed = PackOids(oids);
  return Write("SetTransactionOids", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s, c.Prepare("UPDATE trans SET oids = ?3 WHERE part = ?1 AND tid = ?2"));
    return s.Bind(1, partition).BindU64(2, tid).BindBlob(3, packed).Run();
  });
}

absl::Status SqliteBackend::ForgetLocks(const std::vector<uint64_t>& ttids) {
  if (ttids.empty()) return absl::OkStatus();
  return Write("ForgetLocks", [&](Connection& c) -> absl::Status {
    for (uint64_t ttid : ttids) {
      if (ttid > kMaxTid) continue;
      CELLAR_ASSIGN_OR_RETURN(Statement s,
                              c.Prepare("DELETE FROM tlock WHERE ttid = ?1"));
      CELLAR_RETURN_IF_ERROR(s.BindU64(1, ttid).Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<uint64_t>> SqliteBackend::GetLastSerials(
    uint32_t num_partitions, const std::vector<uint64_t>& oids) {
  if (num_partitions == 0) {
    return absl::InvalidArgumentError("GetLastSerials: num_partitions is 0");
  }
  std::vector<uint64_t> serials;
  serials.reserve(oids.size());
  if (oids.empty()) return serials;
  CELLAR_RETURN_IF_ERROR(
      Read("GetLastSerials", [&](Connection& c) -> absl::Status {
        for (uint64_t oid : oids) {
          CELLAR_ASSIGN_OR_RETURN(
              Statement s,
              c.Prepare("SELECT tid FROM obj WHERE part = ?1 AND oid = ?2 "
                        "ORDER BY tid DESC LIMIT 1"));
          s.Bind(1, oid % num_partitions).BindU64(2, oid);
          CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
          serials.push_back(row ? s.U64(0) : 0);
        }
        return absl::OkStatus();
      }));
  return serials;
}

// --- Reads ---

absl::StatusOr<LoadedObject> SqliteBackend::LoadRevision(Connection& c,
                                                         uint32_t partition,
                                                         uint64_t oid,
                                                         uint64_t tid,
                                                         bool exact) {
  LoadedObject out;
  out.oid = oid;
  bool found = false;
  {
    // `exact`: revision `tid`; else the newest with tid < `tid`.
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare(exact ? "SELECT o.tid, o.data_tid, o.checksum, d.data "
                          "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                          "WHERE o.part = ?1 AND o.oid = ?2 AND o.tid = ?3"
                        : "SELECT o.tid, o.data_tid, o.checksum, d.data "
                          "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                          "WHERE o.part = ?1 AND o.oid = ?2 AND o.tid <= ?3 "
                          "ORDER BY o.tid DESC LIMIT 1"));
    s.Bind(1, partition).BindU64(2, oid);
    if (exact) {
      s.BindU64(3, tid);
    } else {
      s.Bind(3, InclusiveBoundBefore(tid));
    }
    CELLAR_ASSIGN_OR_RETURN(found, s.Step());
    if (found) {
      out.serial = s.U64(0);
      out.data_tid = s.U64(1);
      out.checksum = s.Blob(2);
      out.data = s.Blob(3);
    }
  }
  if (!found) {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare("SELECT 1 FROM obj WHERE part = ?1 AND oid = ?2 LIMIT 1"));
    CELLAR_ASSIGN_OR_RETURN(bool exists,
                            s.Bind(1, partition).BindU64(2, oid).Step());
    if (!exists) {
      return ErrorWithReason(
          absl::StatusCode::kNotFound, common::kReasonNoSuchObject,
          absl::StrCat("oid ", FormatOid(oid), " does not exist"));
    }
    if (exact) {
      return ErrorWithReason(absl::StatusCode::kNotFound,
                             common::kReasonNoSuchRevision,
                             absl::StrCat("oid ", FormatOid(oid),
                                          " has no revision ", TidHex(tid)));
    }
    return ErrorWithReason(
        absl::StatusCode::kNotFound, common::kReasonNoEarlierRevision,
        absl::StrCat("oid ", FormatOid(oid), " has no revision before ",
                     TidHex(tid)));
  }
  {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare("SELECT tid FROM obj WHERE part = ?1 AND oid = ?2 AND "
                  "tid > ?3 ORDER BY tid LIMIT 1"));
    s.Bind(1, partition).BindU64(2, oid).BindU64(3, out.serial);
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) out.next_serial = s.U64(0);
  }
  // Undo: the data (and its checksum) come from the revision pointed at.
  uint64_t data_tid = out.data_tid;
  for (int hops = 0; data_tid != 0; ++hops) {
    if (hops == kMaxUndoChain) {
      return absl::InternalError(
          absl::StrCat("oid ", FormatOid(oid), " revision ",
                       TidHex(out.serial), ": undo chain too long"));
    }
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare("SELECT o.data_tid, o.checksum, d.data "
                  "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                  "WHERE o.part = ?1 AND o.oid = ?2 AND o.tid = ?3"));
    s.Bind(1, partition).BindU64(2, oid).BindU64(3, data_tid);
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return absl::InternalError(absl::StrCat(
          "oid ", FormatOid(oid), " revision ", TidHex(out.serial),
          ": undo back-pointer to missing revision ", TidHex(data_tid)));
    }
    data_tid = s.U64(0);
    out.checksum = s.Blob(1);
    out.data = s.Blob(2);
  }
  return out;
}

absl::StatusOr<LoadedObject> SqliteBackend::LoadBefore(uint32_t partition,
                                                       uint64_t oid,
                                                       uint64_t before_tid) {
  LoadedObject out;
  CELLAR_RETURN_IF_ERROR(Read("LoadBefore", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        out, LoadRevision(c, partition, oid, before_tid, /*exact=*/false));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<LoadedObject> SqliteBackend::LoadSerial(uint32_t partition,
                                                       uint64_t oid,
                                                       uint64_t serial) {
  LoadedObject out;
  CELLAR_RETURN_IF_ERROR(Read("LoadSerial", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        out, LoadRevision(c, partition, oid, serial, /*exact=*/true));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<HistoryEntry>> SqliteBackend::History(
    uint32_t partition, uint64_t oid, uint32_t limit) {
  std::vector<HistoryEntry> entries;
  CELLAR_RETURN_IF_ERROR(Read("History", [&](Connection& c) -> absl::Status {
    {
      CELLAR_ASSIGN_OR_RETURN(
          Statement s,
          c.Prepare("SELECT o.tid, o.data_tid, ifnull(length(d.data), 0) "
                    "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                    "WHERE o.part = ?1 AND o.oid = ?2 ORDER BY o.tid DESC "
                    "LIMIT ?3"));
      s.Bind(1, partition).BindU64(2, oid).Bind(3, limit);
      while (true) {
        CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        HistoryEntry e;
        e.serial = s.U64(0);
        e.data_tid = s.U64(1);
        e.size_bytes = s.U64(2);
        e.deleted = e.data_tid == 0 && e.size_bytes == 0;
        entries.push_back(e);
      }
    }
    // Undo revisions report the size of the data they re-use.
    for (HistoryEntry& e : entries) {
      uint64_t data_tid = e.data_tid;
      for (int hops = 0; data_tid != 0 && hops < kMaxUndoChain; ++hops) {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("SELECT o.data_tid, ifnull(length(d.data), 0) "
                      "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                      "WHERE o.part = ?1 AND o.oid = ?2 AND o.tid = ?3"));
        s.Bind(1, partition).BindU64(2, oid).BindU64(3, data_tid);
        CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;  // dangling: report the record's own size
        data_tid = s.U64(0);
        e.size_bytes = s.U64(1);
      }
    }
    return absl::OkStatus();
  }));
  return entries;
}

absl::StatusOr<std::vector<TransactionRecord>> SqliteBackend::LastTransactions(
    uint32_t limit, uint64_t before_tid) {
  const int64_t bound = before_tid == 0 ? static_cast<int64_t>(kMaxTid)
                                        : InclusiveBoundBefore(before_tid);
  std::vector<TransactionRecord> out;
  CELLAR_RETURN_IF_ERROR(
      Read("LastTransactions", [&](Connection& c) -> absl::Status {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("SELECT part, tid, ttid, packed, user, description, "
                      "extension, oids, size "
                      "FROM trans WHERE tid <= ?1 "
                      "ORDER BY tid DESC, part DESC LIMIT ?2"));
        s.Bind(1, bound).Bind(2, limit);
        return ReadTransactions(s, &out);
      }));
  return out;
}

absl::StatusOr<LastIds> SqliteBackend::GetLastIds() {
  LastIds ids;
  CELLAR_RETURN_IF_ERROR(Read("GetLastIds", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare("SELECT max(ifnull((SELECT max(tid) FROM obj), 0), "
                  "           ifnull((SELECT max(tid) FROM trans), 0)), "
                  "       max(ifnull((SELECT max(oid) FROM obj), 0), "
                  "           ifnull((SELECT max(oid) FROM tobj), 0)), "
                  "       max(ifnull((SELECT max(ttid) FROM tobj), 0), "
                  "           ifnull((SELECT max(ttid) FROM ttrans), 0))"));
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      ids.last_tid = s.U64(0);
      ids.last_oid = s.U64(1);
      ids.last_ttid = s.U64(2);
    }
    return absl::OkStatus();
  }));
  return ids;
}

absl::StatusOr<BackendStats> SqliteBackend::GetStats() {
  BackendStats stats;
  CELLAR_RETURN_IF_ERROR(Read("GetStats", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare("SELECT (SELECT count(*) FROM obj), "
                  "       (SELECT count(*) FROM trans), "
                  "       (SELECT ifnull(sum(length(d.data)), 0) "
                  "        FROM obj o JOIN data d ON d.id = o.data_id), "
                  "       (SELECT count(*) FROM data)"));
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      stats.object_count = s.U64(0);
      stats.transaction_count = s.U64(1);
      stats.data_bytes = s.U64(2);
      stats.data_rows = s.U64(3);
    }
    return absl::OkStatus();
  }));
  return stats;
}

absl::StatusOr<std::optional<TransactionRecord>> SqliteBackend::GetTransaction(
    uint64_t tid) {
  CELLAR_RETURN_IF_ERROR(CheckTid(tid, "tid"));
  std::optional<TransactionRecord> out;
  CELLAR_RETURN_IF_ERROR(Read("GetTransaction", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s, c.Prepare("SELECT part, tid, ttid, packed, user, description, "
                               "extension, oids, size FROM trans WHERE tid = ?1 "
                               "ORDER BY part LIMIT 1"));
    s.BindU64(1, tid);
    CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      CELLAR_ASSIGN_OR_RETURN(out, ReadTransaction(s));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<TransactionRecord>> SqliteBackend::ScanTransactions(
    uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  std::vector<TransactionRecord> out;
  if (min_tid > kMaxTid || min_tid > max_tid || limit == 0) return out;
  if (max_tid > kMaxTid) max_tid = kMaxTid;
  CELLAR_RETURN_IF_ERROR(Read("ScanTransactions", [&](Connection& c) -> absl::Status {
    // trans_tid: a range of the tid index, never a sort of the table.
    CELLAR_ASSIGN_OR_RETURN(
        Statement s, c.Prepare("SELECT part, tid, ttid, packed, user, description, "
                               "extension, oids, size FROM trans INDEXED BY trans_tid "
                               "WHERE tid >= ?1 AND tid <= ?2 "
                               "ORDER BY tid, part LIMIT ?3"));
    s.BindU64(1, min_tid).BindU64(2, max_tid).Bind(3, limit);
    return ReadTransactions(s, &out);
  }));
  return out;
}

absl::StatusOr<std::vector<PartitionStats>> SqliteBackend::GetPartitionStats() {
  std::vector<PartitionStats> out;
  CELLAR_RETURN_IF_ERROR(Read("GetPartitionStats", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s, c.Prepare("SELECT part, objects, revisions, bytes FROM pstats "
                               "WHERE revisions > 0 ORDER BY part"));
    while (true) {
      CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      out.push_back(PartitionStats{static_cast<uint32_t>(s.U64(0)), s.U64(1), s.U64(2),
                                   s.U64(3)});
    }
    return absl::OkStatus();
  }));
  return out;
}

// --- Partition-level operations ---

absl::StatusOr<std::vector<TransactionRecord>> SqliteBackend::ListTransactions(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  std::vector<TransactionRecord> out;
  if (min_tid > kMaxTid || min_tid > max_tid || limit == 0) return out;
  if (max_tid > kMaxTid) max_tid = kMaxTid;
  CELLAR_RETURN_IF_ERROR(
      Read("ListTransactions", [&](Connection& c) -> absl::Status {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("SELECT part, tid, ttid, packed, user, description, "
                      "extension, oids, size FROM trans WHERE part = ?1 AND "
                      "tid >= ?2 AND tid <= ?3 ORDER BY tid LIMIT ?4"));
        s.Bind(1, partition).BindU64(2, min_tid).BindU64(3, max_tid).Bind(4,
                                                                          limit);
        return ReadTransactions(s, &out);
      }));
  return out;
}

absl::StatusOr<std::vector<ObjectRecord>> SqliteBackend::ListObjects(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  std::vector<ObjectRecord> out;
  if (min_tid > kMaxTid || min_tid > max_tid || limit == 0) return out;
  if (max_tid > kMaxTid) max_tid = kMaxTid;
  CELLAR_RETURN_IF_ERROR(Read("ListObjects", [&](Connection& c) -> absl::Status {
    CELLAR_ASSIGN_OR_RETURN(
        Statement s,
        c.Prepare("SELECT o.oid, o.tid, o.data_tid, o.checksum, d.data "
                  "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                  "WHERE o.part = ?1 AND o.tid >= ?2 AND o.tid <= ?3 "
                  "ORDER BY o.tid, o.oid LIMIT ?4"));
    s.Bind(1, partition).BindU64(2, min_tid).BindU64(3, max_tid).Bind(4, limit);
    while (true) {
      CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ObjectRecord o;
      o.partition = partition;
      o.oid = s.U64(0);
      o.tid = s.U64(1);
      o.data_tid = s.U64(2);
      o.checksum = s.Blob(3);
      o.data = s.Blob(4);
      out.push_back(std::move(o));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<ObjectRecord>> SqliteBackend::ListObjectsFrom(
    uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
    uint32_t limit) {
  std::vector<ObjectRecord> out;
  if (min_tid > kMaxTid || min_tid > max_tid || limit == 0) return out;
  if (max_tid > kMaxTid) max_tid = kMaxTid;
  CELLAR_RETURN_IF_ERROR(
      Read("ListObjectsFrom", [&](Connection& c) -> absl::Status {
        // Same order as ListObjects (oids are signed 64-bit columns).
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("SELECT o.oid, o.tid, o.data_tid, o.checksum, d.data "
                      "FROM obj o LEFT JOIN data d ON d.id = o.data_id "
                      "WHERE o.part = ?1 AND o.tid <= ?4 AND "
                      "(o.tid > ?2 OR (o.tid = ?2 AND o.oid >= ?3)) "
                      "ORDER BY o.tid, o.oid LIMIT ?5"));
        s.Bind(1, partition)
            .BindU64(2, min_tid)
            .BindU64(3, min_oid)
            .BindU64(4, max_tid)
            .Bind(5, limit);
        while (true) {
          CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          ObjectRecord o;
          o.partition = partition;
          o.oid = s.U64(0);
          o.tid = s.U64(1);
          o.data_tid = s.U64(2);
          o.checksum = s.Blob(3);
          o.data = s.Blob(4);
          out.push_back(std::move(o));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::Status SqliteBackend::ImportCommitted(
    const std::vector<TransactionRecord>& transactions,
    const std::vector<ObjectRecord>& objects) {
  for (const TransactionRecord& t : transactions) {
    CELLAR_RETURN_IF_ERROR(CheckTid(t.tid, "transaction tid"));
  }
  for (const ObjectRecord& o : objects) {
    CELLAR_RETURN_IF_ERROR(CheckTid(o.tid, "object tid"));
    CELLAR_RETURN_IF_ERROR(CheckDataTid(o));
  }
  if (transactions.empty() && objects.empty()) return absl::OkStatus();
  return Write("ImportCommitted", [&](Connection& c) -> absl::Status {
    for (const TransactionRecord& t : transactions) {
      const std::string oids = PackOids(t.oids);
      CELLAR_ASSIGN_OR_RETURN(
          Statement s,
          c.Prepare("INSERT OR IGNORE INTO trans (part, tid, ttid, packed, "
                    "user, description, extension, oids, size) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"));
      s.Bind(1, t.partition)
          .BindU64(2, t.tid)
          .BindU64(3, t.ttid)
          .Bind(4, t.packed ? 1 : 0)
          .BindBlob(5, t.user)
          .BindBlob(6, t.description)
          .BindBlob(7, t.extension)
          .BindBlob(8, oids)
          .BindU64(9, t.size_bytes);
      CELLAR_RETURN_IF_ERROR(s.Run());
    }
    for (const ObjectRecord& o : objects) {
      {
        // An existing row is kept (with its bytes): nothing to write.
        CELLAR_ASSIGN_OR_RETURN(
            Statement s, c.Prepare("SELECT 1 FROM obj WHERE part = ?1 AND "
                                   "oid = ?2 AND tid = ?3"));
        s.Bind(1, o.partition).BindU64(2, o.oid).BindU64(3, o.tid);
        CELLAR_ASSIGN_OR_RETURN(bool exists, s.Step());
        if (exists) continue;
      }
      {
        // The counts, against the committed rows before this one.
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("INSERT INTO pstats (part, objects, revisions, bytes) "
                      "VALUES (?1, CASE WHEN EXISTS (SELECT 1 FROM obj "
                      "  WHERE part = ?1 AND oid = ?2 AND tid > ?3) THEN 0 "
                      "  ELSE ?4 - ifnull((SELECT data_id IS NOT NULL OR "
                      "   data_tid <> 0 FROM obj WHERE part = ?1 AND oid = ?2 "
                      "   AND tid < ?3 ORDER BY tid DESC LIMIT 1), 0) END, 1, ?5) "
                      "ON CONFLICT (part) DO UPDATE SET "
                      " objects = objects + excluded.objects, "
                      " revisions = revisions + 1, bytes = bytes + excluded.bytes"));
        const bool live = !o.data.empty() || o.data_tid != 0;
        s.Bind(1, o.partition)
            .BindU64(2, o.oid)
            .BindU64(3, o.tid)
            .Bind(4, live ? 1 : 0)
            .BindU64(5, o.data.size());
        CELLAR_RETURN_IF_ERROR(s.Run());
      }
      CELLAR_ASSIGN_OR_RETURN(std::optional<int64_t> data_id,
                              InsertData(c, o.data));
      CELLAR_ASSIGN_OR_RETURN(
          Statement s,
          c.Prepare("INSERT INTO obj (part, oid, tid, data_tid, checksum, "
                    "data_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
      s.Bind(1, o.partition)
          .BindU64(2, o.oid)
          .BindU64(3, o.tid)
          .BindU64(4, o.data_tid)
          .BindBlob(5, o.checksum);
      CELLAR_RETURN_IF_ERROR(BindDataId(s, 6, data_id).Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<PackChunk> SqliteBackend::PackPartition(uint32_t partition,
                                                       uint64_t pack_tid,
                                                       const PackPosition& from,
                                                       uint32_t max_items) {
  CELLAR_RETURN_IF_ERROR(CheckPackArguments(pack_tid, max_items));
  PackChunk chunk;
  absl::Status s = Write("PackPartition", [&](Connection& c) -> absl::Status {
    chunk = PackChunk{};
    chunk.next = from;
    if (!from.transactions) {
      std::vector<uint64_t> oids;
      {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s, c.Prepare("SELECT DISTINCT oid FROM obj WHERE part = ?1 "
                                   "AND oid >= ?2 ORDER BY oid LIMIT ?3"));
        s.Bind(1, partition).BindU64(2, from.next).Bind(3, int64_t{max_items} + 1);
        for (;;) {
          CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          oids.push_back(s.U64(0));
        }
      }
      const bool more = oids.size() > max_items;
      if (more) oids.pop_back();
      int64_t objects_delta = 0;
      for (uint64_t oid : oids) {
        std::vector<PackRow> rows;
        {
          CELLAR_ASSIGN_OR_RETURN(
              Statement s,
              c.Prepare("SELECT o.tid, o.data_tid, ifnull(o.data_id, 0), o.checksum, "
                        "ifnull(length(d.data), 0) FROM obj o "
                        "LEFT JOIN data d ON d.id = o.data_id "
                        "WHERE o.part = ?1 AND o.oid = ?2 ORDER BY o.tid"));
          s.Bind(1, partition).BindU64(2, oid);
          for (;;) {
            CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
            if (!row) break;
            rows.push_back(PackRow{s.U64(0), s.U64(1), s.Int(2), s.Blob(3), s.U64(4)});
          }
        }
        OidPackPlan plan = PlanOidPack(rows, pack_tid);
        if (plan.removed_tids.empty()) continue;
        for (const PackRewrite& rw : plan.rewrites) {
          CELLAR_ASSIGN_OR_RETURN(
              Statement s,
              rw.source_tid != 0
                  ? c.Prepare("UPDATE obj SET data_tid = ?4, data_id = ?5, checksum = ?6 "
                              "WHERE part = ?1 AND oid = ?2 AND tid = ?3")
                  : c.Prepare("UPDATE obj SET data_tid = ?4 "
                              "WHERE part = ?1 AND oid = ?2 AND tid = ?3"));
          s.Bind(1, partition).BindU64(2, oid).BindU64(3, rw.tid).BindU64(4, rw.data_tid);
          if (rw.source_tid != 0) {
            if (rw.data_id != 0) {
              s.Bind(5, rw.data_id);
            } else {
              s.BindNull(5);
            }
            s.BindBlob(6, rw.checksum);
          }
          CELLAR_RETURN_IF_ERROR(s.Run());
        }
        for (int64_t id : plan.freed_data_ids) {
          CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare("DELETE FROM data WHERE id = ?1"));
          CELLAR_RETURN_IF_ERROR(s.Bind(1, id).Run());
        }
        {
          CELLAR_ASSIGN_OR_RETURN(
              Statement s,
              c.Prepare("DELETE FROM obj WHERE part = ?1 AND oid = ?2 AND tid <= ?3"));
          CELLAR_RETURN_IF_ERROR(
              s.Bind(1, partition).BindU64(2, oid).BindU64(3, plan.removed_tids.back()).Run());
        }
        chunk.rows_removed += plan.removed_tids.size();
        chunk.bytes_removed += plan.bytes_freed;
        objects_delta += plan.objects_delta;
      }
      if (chunk.rows_removed != 0) {
        CELLAR_ASSIGN_OR_RETURN(
            Statement s,
            c.Prepare("UPDATE pstats SET objects = objects + ?2, revisions = revisions - ?3, "
                      "bytes = bytes - ?4 WHERE part = ?1"));
        CELLAR_RETURN_IF_ERROR(s.Bind(1, partition)
                                   .Bind(2, objects_delta)
                                   .BindU64(3, chunk.rows_removed)
                                   .BindU64(4, chunk.bytes_removed)
                                   .Run());
      }
      if (more) {
        chunk.next = PackPosition{false, oids.back() + 1};
        return absl::OkStatus();
      }
      chunk.next = PackPosition{true, 0};
    }
    // Transaction records with tid < pack_tid, a chunk of them.
    uint64_t last = 0;
    uint32_t examined = 0;
    {
      CELLAR_ASSIGN_OR_RETURN(
          Statement s, c.Prepare("SELECT tid, packed FROM trans WHERE part = ?1 AND "
                                 "tid >= ?2 AND tid < ?3 ORDER BY tid LIMIT ?4"));
      s.Bind(1, partition).BindU64(2, chunk.next.next).BindU64(3, pack_tid)
          .Bind(4, int64_t{max_items});
      for (;;) {
        CELLAR_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        ++examined;
        last = s.U64(0);
        if (s.Int(1) == 0) ++chunk.transactions_marked;
      }
    }
    if (chunk.transactions_marked != 0) {
      CELLAR_ASSIGN_OR_RETURN(
          Statement s, c.Prepare("UPDATE trans SET packed = 1 WHERE part = ?1 AND "
                                 "tid >= ?2 AND tid <= ?3 AND packed = 0"));
      CELLAR_RETURN_IF_ERROR(
          s.Bind(1, partition).BindU64(2, chunk.next.next).BindU64(3, last).Run());
    }
    if (examined == max_items) {
      chunk.next = PackPosition{true, last + 1};
    } else {
      chunk.done = true;
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return chunk;
}

absl::Status SqliteBackend::DeletePartition(uint32_t partition) {
  return Write("DeletePartition", [&](Connection& c) -> absl::Status {
    for (const char* sql : {"DELETE FROM data WHERE id IN "
                            "(SELECT data_id FROM obj WHERE part = ?1)",
                            "DELETE FROM obj WHERE part = ?1",
                            "DELETE FROM pstats WHERE part = ?1",
                            "DELETE FROM trans WHERE part = ?1"}) {
      CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
      CELLAR_RETURN_IF_ERROR(s.Bind(1, partition).Run());
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteBackend::Truncate(uint64_t tid) {
  const int64_t bound =
      static_cast<int64_t>(tid > kMaxTid ? kMaxTid : tid);
  return Write("Truncate", [&](Connection& c) -> absl::Status {
    for (const char* sql : {"DELETE FROM data WHERE id IN "
                            "(SELECT data_id FROM obj WHERE tid > ?1)",
                            "DELETE FROM obj WHERE tid > ?1",
                            "DELETE FROM trans WHERE tid > ?1",
                            "DELETE FROM tlock WHERE tid > ?1"}) {
      CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
      CELLAR_RETURN_IF_ERROR(s.Bind(1, bound).Run());
    }
    // Every temporary record goes: votes in doubt are cancelled. The
    // counts are recomputed (a scan; truncation is rare and offline).
    for (const char* sql : {"DELETE FROM data WHERE id IN "
                            "(SELECT data_id FROM tobj)",
                            "DELETE FROM tobj", "DELETE FROM ttrans",
                            "DELETE FROM pstats", CELLAR_SQLITE_FILL_PSTATS}) {
      CELLAR_ASSIGN_OR_RETURN(Statement s, c.Prepare(sql));
      CELLAR_RETURN_IF_ERROR(s.Run());
    }
    return absl::OkStatus();
  });
}

}  // namespace cellar::storage
