#include "services/storage/backend/postgres/postgres_backend.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/errors.h"
#include "services/common/status_macros.h"
#include "services/storage/backend/pack_plan.h"

namespace cellar::storage {
namespace {

constexpr int64_t kMaxInt8 = std::numeric_limits<int64_t>::max();
constexpr uint64_t kMaxInt4 = std::numeric_limits<int32_t>::max();
// Bulk statements send at most this many bytes of payload per array
// parameter (PostgreSQL's limit for one value is 1 GB); bigger batches are
// split into several statements of the same pipeline (same transaction).
constexpr size_t kMaxBatchBytes = size_t{64} << 20;
// Undo back-pointer chains longer than this are reported as corruption.
constexpr int kMaxBackPointerHops = 64;

// ---------------------------------------------------------------------------
// Schema.

// Recomputes `pstats` from `obj` (a scan: at migration and after a
// truncate only; otherwise a trigger keeps it up to date).
constexpr char kFillPstatsSql[] =
    "INSERT INTO pstats (partition, objects, revisions, bytes)"
    " SELECT o.partition, count(*) FILTER (WHERE"
    "  (o.data_id IS NOT NULL OR o.data_tid <> 0) AND NOT EXISTS"
    "  (SELECT 1 FROM obj n WHERE n.partition = o.partition"
    "   AND n.oid = o.oid AND n.tid > o.tid)),"
    " count(*), COALESCE(sum(octet_length(d.data)), 0)"
    " FROM obj o LEFT JOIN data d ON d.id = o.data_id GROUP BY o.partition";

// Migration steps: steps[i] brings a database from version i to i + 1, in
// one database transaction together with the new "schema_version" row.
// Never edit a released step; append a new one and bump kSchemaVersion.
const std::vector<std::vector<const char*>>& MigrationSteps() {
  static const auto* steps = new std::vector<std::vector<const char*>>{
      // 0 -> 1: the initial schema.
      {
          "CREATE TABLE config ("
          " name text PRIMARY KEY,"
          " value bytea NOT NULL)",
          // The persisted partition table (its ptid is config "ptid").
          // bigint: node ids use all 32 bits (role tag in the top byte).
          "CREATE TABLE pt ("
          " partition bigint NOT NULL,"
          " node_id bigint NOT NULL,"
          " state int NOT NULL,"
          " PRIMARY KEY (partition, node_id))",
          // Committed object revisions. `data` is '' for deletions and
          // undo back-pointers (data_tid <> 0).
          "CREATE TABLE obj ("
          " partition int NOT NULL,"
          " oid bigint NOT NULL,"
          " tid bigint NOT NULL,"
          " data_tid bigint NOT NULL,"
          " checksum bytea NOT NULL,"
          " data bytea NOT NULL,"
          " PRIMARY KEY (partition, oid, tid))",
          "CREATE INDEX obj_partition_tid_oid ON obj (partition, tid, oid)",
          // Committed transaction records; oids: little-endian uint64s.
          // size: bytes of the record's metadata (user, description,
          // extension, oids), derived, hence equal on every replica.
          "CREATE TABLE trans ("
          " partition int NOT NULL,"
          " tid bigint NOT NULL,"
          " ttid bigint NOT NULL,"
          " packed boolean NOT NULL,"
          " \"user\" bytea NOT NULL,"
          " description bytea NOT NULL,"
          " extension bytea NOT NULL,"
          " oids bytea NOT NULL,"
          " size bigint GENERATED ALWAYS AS (octet_length(\"user\")"
          "   + octet_length(description) + octet_length(extension)"
          "   + octet_length(oids)) STORED,"
          " PRIMARY KEY (partition, tid))",
          "CREATE INDEX trans_ttid ON trans (ttid)",
          "CREATE INDEX trans_tid ON trans (tid)",
          // Temporary (voted, not yet locked) records.
          "CREATE TABLE tobj ("
          " ttid bigint NOT NULL,"
          " partition int NOT NULL,"
          " oid bigint NOT NULL,"
          " data_tid bigint NOT NULL,"
          " checksum bytea NOT NULL,"
          " data bytea NOT NULL,"
          " PRIMARY KEY (ttid, oid))",
          "CREATE TABLE ttrans ("
          " ttid bigint PRIMARY KEY,"
          " partition int NOT NULL,"
          " \"user\" bytea NOT NULL,"
          " description bytea NOT NULL,"
          " extension bytea NOT NULL,"
          " oids bytea NOT NULL)",
      },
      // 1 -> 2: ttid -> tid of the transactions this node locked
      // (verification after a crash).
      {
          "CREATE TABLE tlock ("
          " ttid bigint PRIMARY KEY,"
          " tid bigint NOT NULL)",
      },
      // 2 -> 3: `size` becomes the transaction's total object data, as its
      // client sent it (TransactionRecord::size_bytes), stored with the
      // record; it replaces the generated metadata size, which nothing
      // read. Rows written before keep 0.
      {
          "ALTER TABLE trans DROP COLUMN size",
          "ALTER TABLE trans ADD COLUMN size bigint NOT NULL DEFAULT 0",
          "ALTER TABLE ttrans ADD COLUMN size bigint NOT NULL DEFAULT 0",
      },
      // 3 -> 4: object bytes move to `data`, written once (by a vote or an
      // import) and referenced by obj / tobj rows (data_id NULL: no
      // bytes); the lock then moves metadata only. obj and tobj are
      // rebuilt (rather than altered) so the old bytes are freed at once.
      {
          "CREATE SEQUENCE data_id_seq",
          "CREATE TABLE data ("
          " id bigint PRIMARY KEY,"
          " data bytea NOT NULL)",
          "ALTER SEQUENCE data_id_seq OWNED BY data.id",
          "CREATE TABLE obj4 ("
          " partition int NOT NULL,"
          " oid bigint NOT NULL,"
          " tid bigint NOT NULL,"
          " data_tid bigint NOT NULL,"
          " checksum bytea NOT NULL,"
          " data_id bigint,"
          " PRIMARY KEY (partition, oid, tid))",
          "INSERT INTO obj4 SELECT partition, oid, tid, data_tid, checksum,"
          " CASE WHEN octet_length(data) > 0 THEN nextval('data_id_seq') END"
          " FROM obj",
          "INSERT INTO data (id, data) SELECT n.data_id, o.data FROM obj o"
          " JOIN obj4 n USING (partition, oid, tid)"
          " WHERE n.data_id IS NOT NULL",
          "DROP TABLE obj",
          "ALTER TABLE obj4 RENAME TO obj",
          "ALTER TABLE obj RENAME CONSTRAINT obj4_pkey TO obj_pkey",
          "CREATE INDEX obj_partition_tid_oid ON obj (partition, tid, oid)",
          "CREATE TABLE tobj4 ("
          " ttid bigint NOT NULL,"
          " partition int NOT NULL,"
          " oid bigint NOT NULL,"
          " data_tid bigint NOT NULL,"
          " checksum bytea NOT NULL,"
          " data_id bigint,"
          " PRIMARY KEY (ttid, oid))",
          "INSERT INTO tobj4 SELECT ttid, partition, oid, data_tid, checksum,"
          " CASE WHEN octet_length(data) > 0 THEN nextval('data_id_seq') END"
          " FROM tobj",
          "INSERT INTO data (id, data) SELECT n.data_id, t.data FROM tobj t"
          " JOIN tobj4 n USING (ttid, oid) WHERE n.data_id IS NOT NULL",
          "DROP TABLE tobj",
          "ALTER TABLE tobj4 RENAME TO tobj",
          "ALTER TABLE tobj RENAME CONSTRAINT tobj4_pkey TO tobj_pkey",
      },
      // 4 -> 5: per-partition counts (GetPartitionStats). `pstats` is
      // append-only: a statement-level trigger adds one row of deltas per
      // partition for each statement that inserts committed object rows
      // (a lock, an import), so concurrent writers never wait for each
      // other on a counter row; reads add the rows up and fold them into
      // one row per partition. Deletes (a dropped partition, a truncate)
      // fix the rows themselves.
      {
          "CREATE TABLE pstats ("
          " partition int NOT NULL,"
          " objects bigint NOT NULL,"
          " revisions bigint NOT NULL,"
          " bytes bigint NOT NULL)",
          kFillPstatsSql,
          // objects: per oid inserted, whether its latest revision is
          // live now minus whether it was before the statement (its
          // latest revision among the rows not inserted by it).
          "CREATE FUNCTION cellar_obj_pstats() RETURNS trigger"
          " LANGUAGE plpgsql AS $$ BEGIN"
          " INSERT INTO pstats (partition, objects, revisions, bytes)"
          " SELECT x.partition, sum(x.objects), sum(x.revisions),"
          "  sum(x.bytes) FROM ("
          "  SELECT n.partition, 0::int8 AS objects, 1::int8 AS revisions,"
          "   COALESCE((SELECT octet_length(d.data) FROM data d"
          "    WHERE d.id = n.data_id), 0)::int8 AS bytes FROM new_rows n"
          "  UNION ALL"
          "  SELECT k.partition,"
          "   COALESCE((SELECT (o.data_id IS NOT NULL OR o.data_tid <> 0)::int"
          "    FROM obj o WHERE o.partition = k.partition AND o.oid = k.oid"
          "    ORDER BY o.tid DESC LIMIT 1), 0)"
          "   - COALESCE((SELECT (o.data_id IS NOT NULL OR o.data_tid <> 0)::int"
          "    FROM obj o WHERE o.partition = k.partition AND o.oid = k.oid"
          "    AND o.tid <> ALL (k.tids)"
          "    ORDER BY o.tid DESC LIMIT 1), 0), 0, 0"
          "  FROM (SELECT partition, oid, array_agg(tid) AS tids FROM new_rows"
          "   GROUP BY partition, oid) k"
          " ) x GROUP BY x.partition;"
          " RETURN NULL; END $$",
          "CREATE TRIGGER obj_pstats AFTER INSERT ON obj"
          " REFERENCING NEW TABLE AS new_rows"
          " FOR EACH STATEMENT EXECUTE FUNCTION cellar_obj_pstats()",
      },
      // 5 -> 6: the partitions a lock committed, with its ttid -> tid record
      // (packed like oids; empty: every stored object), so that a later
      // primary completes the commit on the other voters with the same
      // partitions.
      {
          "ALTER TABLE tlock ADD COLUMN partitions bytea NOT NULL DEFAULT ''",
      },
  };
  return *steps;
}

// ---------------------------------------------------------------------------
// Prepared statements (prepared once per pooled connection).

enum Stmt : int {
  kGetConfig,
  kSetConfig,
  kDeletePt,
  kInsertPt,
  kLoadPt,
  kDeleteTobj,
  kDeleteTtrans,
  kInsertTobj,
  kInsertTtrans,
  kLock,
  kSyncCommitOff,
  kListVoted,
  kListVotedObjects,
  kFindCommitted,
  kLastSerials,
  kLoadBefore,
  kLoadSerial,
  kLoadData,
  kHistory,
  kLastTransactions,
  kLastIds,
  kStats,
  kListTransactions,
  kListObjects,
  kListObjectsFrom,
  kLockedTid,
  kForgetLocks,
  kSetTransactionOids,
  kImportTrans,
  kImportObj,
  kDeletePartitionObj,
  kDeletePartitionTrans,
  kTruncateObj,
  kTruncateTrans,
  kTruncateTobj,
  kTruncateTtrans,
  kTruncateTlock,
  kTruncatePstats,
  kFillPstats,
  kDeletePartitionPstats,
  kFoldPstats,
  kPartitionStats,
  kGetTransaction,
  kScanTransactions,
  kPackRows,
  kPackRewrite,
  kPackDeleteObj,
  kPackDeleteData,
  kPackStats,
  kPackListTrans,
  kPackMarkTrans,
  kNumStatements,
};

struct StatementDef {
  std::string name;
  std::string sql;
};

// Rows of `arrays` unnested AS v(`columns`, n) (n: the row's position),
// and ids(n, id): a new data id for each row with bytes (v.data not '').
// v is re-read by each use (cheap: the parameters), never materialized
// with its bytes.
std::string WithDataIds(absl::string_view arrays, absl::string_view columns) {
  return absl::StrCat(
      "WITH v AS NOT MATERIALIZED (SELECT * FROM unnest(", arrays,
      ") WITH ORDINALITY AS v(", columns,
      ", n)), ids AS MATERIALIZED (SELECT n, nextval('data_id_seq') AS id"
      " FROM v WHERE octet_length(v.data) > 0)");
}

// Deletes the rows of `table` (obj or tobj) matching `condition` and the
// bytes only they referenced: one statement.
std::string DeleteWithData(absl::string_view table,
                           absl::string_view condition) {
  return absl::StrCat("WITH gone AS (DELETE FROM ", table, " WHERE ",
                      condition,
                      " RETURNING data_id) DELETE FROM data"
                      " WHERE id IN (SELECT data_id FROM gone)");
}

// One load: always one row. Columns: tid, data_tid, checksum, data,
// next_tid, then the back-pointer target d_tid, d_data_tid, d_checksum,
// d_data (NULL if none), then `known` (the oid has any revision).
std::string LoadSql(absl::string_view tid_condition,
                    absl::string_view order_by) {
  return absl::StrCat(
      "SELECT r.tid, r.data_tid, r.checksum, r.data, r.next_tid,"
      " r.d_tid, r.d_data_tid, r.d_checksum, r.d_data,"
      " CASE WHEN r.tid IS NULL THEN EXISTS (SELECT 1 FROM obj"
      "   WHERE partition = $1::int4 AND oid = $2::int8) ELSE true END"
      " FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
      "  SELECT o.tid, o.data_tid, o.checksum, od.data,"
      "   (SELECT min(n.tid) FROM obj n WHERE n.partition = o.partition"
      "     AND n.oid = o.oid AND n.tid > o.tid) AS next_tid,"
      "   d.tid AS d_tid, d.data_tid AS d_data_tid, d.checksum AS d_checksum,"
      "   dd.data AS d_data"
      "  FROM obj o LEFT JOIN data od ON od.id = o.data_id"
      "  LEFT JOIN obj d ON o.data_tid <> 0"
      "   AND d.partition = o.partition AND d.oid = o.oid"
      "   AND d.tid = o.data_tid"
      "  LEFT JOIN data dd ON dd.id = d.data_id"
      "  WHERE o.partition = $1::int4 AND o.oid = $2::int8 AND ",
      tid_condition, order_by, " LIMIT 1) AS r ON true");
}

const std::vector<StatementDef>& Statements() {
  static const auto* statements = [] {
    auto* s = new std::vector<StatementDef>(kNumStatements);
    auto def = [s](Stmt stmt, absl::string_view name, std::string sql) {
      (*s)[stmt] = StatementDef{absl::StrCat("cellar_", name), std::move(sql)};
    };
    def(kGetConfig, "get_config",
        "SELECT value FROM config WHERE name = $1::text");
    def(kSetConfig, "set_config",
        "INSERT INTO config (name, value) VALUES ($1::text, $2::bytea)"
        " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value");
    def(kDeletePt, "delete_pt", "DELETE FROM pt");
    def(kInsertPt, "insert_pt",
        "INSERT INTO pt (partition, node_id, state)"
        " SELECT * FROM unnest($1::int8[], $2::int8[], $3::int4[])");
    // The ptid row first (partition -1), then the cells in order: one
    // statement, one snapshot.
    def(kLoadPt, "load_pt",
        "SELECT -1::int8, -1::int8, -1, value FROM config WHERE name = 'ptid'"
        " UNION ALL SELECT partition, node_id, state, NULL::bytea FROM pt"
        " ORDER BY 1, 2");
    def(kDeleteTobj, "delete_tobj",
        DeleteWithData("tobj", "ttid = ANY($1::int8[])"));
    def(kDeleteTtrans, "delete_ttrans",
        "DELETE FROM ttrans WHERE ttid = ANY($1::int8[])");
    // The only write of the bytes: the lock moves metadata.
    def(kInsertTobj, "insert_tobj",
        absl::StrCat(
            WithDataIds("$1::int8[], $2::int4[], $3::int8[], $4::int8[],"
                        " $5::bytea[], $6::bytea[]",
                        "ttid, partition, oid, data_tid, checksum, data"),
            ", d AS (INSERT INTO data (id, data)"
            "   SELECT ids.id, v.data FROM v JOIN ids USING (n))"
            " INSERT INTO tobj (ttid, partition, oid, data_tid, checksum,"
            " data_id) SELECT v.ttid, v.partition, v.oid, v.data_tid,"
            " v.checksum, ids.id FROM v LEFT JOIN ids USING (n)"));
    def(kInsertTtrans, "insert_ttrans",
        "INSERT INTO ttrans (ttid, partition, \"user\", description,"
        " extension, oids, size) SELECT * FROM unnest($1::int8[], $2::int4[],"
        " $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::int8[])");
    // Moves temporary records into place with their final tid: one
    // statement (atomic). Object rows take their bytes by reference
    // (data_id): no data is written, so a lock needs no room its vote did
    // not take. Rows already in place (a lock replayed after a re-vote, or
    // rows imported by replication) are kept with their bytes, and the
    // vote's copy goes. The ttid -> tid record is written for ttids that
    // had temporary rows (every part of the statement sees the snapshot
    // from before the deletes). ($3, $4): (ttid, partition) pairs, the
    // partitions each commit touches; a ttid with pairs commits only its
    // object rows of those partitions, the others go with their bytes.
    // $5: the same partitions per lock, packed for tlock (GetLock).
    def(kLock, "lock",
        "WITH l AS (SELECT * FROM unnest($1::int8[], $2::int8[], $5::bytea[])"
        "   AS l(ttid, tid, partitions)),"
        " k AS (SELECT * FROM unnest($3::int8[], $4::int4[]) AS k(ttid, partition)),"
        " tl AS (INSERT INTO tlock (ttid, tid, partitions)"
        "   SELECT l.ttid, l.tid, l.partitions FROM l"
        "   WHERE EXISTS (SELECT 1 FROM tobj t WHERE t.ttid = l.ttid)"
        "   OR EXISTS (SELECT 1 FROM ttrans t WHERE t.ttid = l.ttid)"
        "   ON CONFLICT (ttid) DO UPDATE SET tid = EXCLUDED.tid,"
        "   partitions = EXCLUDED.partitions),"
        " a AS (DELETE FROM tobj t USING l WHERE t.ttid = l.ttid"
        "   RETURNING t.ttid, t.partition, t.oid, l.tid, t.data_tid, t.checksum,"
        "   t.data_id),"
        " o AS (SELECT partition, oid, tid, data_tid, checksum, data_id FROM a"
        "   WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.ttid = a.ttid)"
        "   OR EXISTS (SELECT 1 FROM k WHERE k.ttid = a.ttid"
        "   AND k.partition = a.partition)),"
        " tr AS (DELETE FROM ttrans t USING l WHERE t.ttid = l.ttid"
        "   RETURNING t.partition, l.tid, t.ttid, t.\"user\", t.description,"
        "   t.extension, t.oids, t.size),"
        " io AS (INSERT INTO obj (partition, oid, tid, data_tid, checksum,"
        "   data_id) SELECT * FROM o ON CONFLICT DO NOTHING"
        "   RETURNING data_id),"
        " dd AS (DELETE FROM data WHERE id IN"
        "   (SELECT data_id FROM a EXCEPT SELECT data_id FROM io))"
        " INSERT INTO trans (partition, tid, ttid, packed, \"user\","
        " description, extension, oids, size)"
        " SELECT partition, tid, ttid, false, \"user\", description,"
        " extension, oids, size FROM tr ON CONFLICT DO NOTHING");
    def(kSyncCommitOff, "sync_commit_off",
        "SELECT set_config('synchronous_commit', 'off', true)");
    def(kListVoted, "list_voted",
        "SELECT ttid FROM ttrans UNION SELECT ttid FROM tobj ORDER BY 1");
    // One statement, one snapshot; oid NULL: the transaction record.
    def(kListVotedObjects, "list_voted_objects",
        "SELECT ttid, NULL::int8 FROM ttrans UNION ALL"
        " SELECT ttid, oid FROM tobj");
    def(kFindCommitted, "find_committed",
        "SELECT tid FROM trans WHERE ttid = $1::int8 ORDER BY tid LIMIT 1");
    def(kLastSerials, "last_serials",
        "SELECT COALESCE((SELECT max(o.tid) FROM obj o"
        "   WHERE o.partition = u.p AND o.oid = u.o), 0)"
        " FROM unnest($1::int4[], $2::int8[]) WITH ORDINALITY AS u(p, o, n)"
        " ORDER BY u.n");
    def(kLoadBefore, "load_before",
        LoadSql("o.tid <= $3::int8", " ORDER BY o.tid DESC"));
    def(kLoadSerial, "load_serial", LoadSql("o.tid = $3::int8", ""));
    def(kLoadData, "load_data",
        "SELECT o.data_tid, o.checksum, d.data FROM obj o"
        " LEFT JOIN data d ON d.id = o.data_id"
        " WHERE o.partition = $1::int4 AND o.oid = $2::int8"
        " AND o.tid = $3::int8");
    // Column 4 is NULL when the back-pointer's target is missing.
    def(kHistory, "history",
        "SELECT o.tid, o.data_tid, COALESCE(octet_length(od.data), 0)::int8,"
        " d.data_tid, CASE WHEN d.tid IS NOT NULL"
        "  THEN COALESCE(octet_length(dd.data), 0) END::int8"
        " FROM obj o LEFT JOIN data od ON od.id = o.data_id"
        " LEFT JOIN obj d ON o.data_tid <> 0"
        "  AND d.partition = o.partition AND d.oid = o.oid"
        "  AND d.tid = o.data_tid"
        " LEFT JOIN data dd ON dd.id = d.data_id"
        " WHERE o.partition = $1::int4 AND o.oid = $2::int8"
        " ORDER BY o.tid DESC LIMIT $3::int8");
    def(kLastTransactions, "last_transactions",
        "SELECT partition, tid, ttid, packed, \"user\", description,"
        " extension, oids, size FROM trans WHERE tid <= $1::int8"
        " ORDER BY tid DESC, partition LIMIT $2::int8");
    // Per-partition maxima through the indexes (a loose index scan over
    // the partitions), not a scan of obj.
    def(kLastIds, "last_ids",
        "WITH RECURSIVE parts AS ("
        "  SELECT (SELECT min(partition) FROM obj) AS p"
        "  UNION ALL SELECT (SELECT min(partition) FROM obj"
        "    WHERE partition > parts.p) FROM parts WHERE parts.p IS NOT NULL)"
        " SELECT"
        "  COALESCE(GREATEST("
        "   (SELECT max((SELECT max(tid) FROM obj WHERE partition = parts.p))"
        "     FROM parts WHERE p IS NOT NULL),"
        "   (SELECT max(tid) FROM trans)), 0)::int8,"
        "  COALESCE(GREATEST("
        "   (SELECT max((SELECT max(oid) FROM obj WHERE partition = parts.p))"
        "     FROM parts WHERE p IS NOT NULL),"
        "   (SELECT max(oid) FROM tobj)), 0)::int8,"
        "  COALESCE(GREATEST((SELECT max(ttid) FROM ttrans),"
        "   (SELECT max(ttid) FROM tobj)), 0)::int8");
    def(kStats, "stats",
        "SELECT (SELECT count(*) FROM obj)::int8,"
        " (SELECT count(*) FROM trans)::int8,"
        " (SELECT COALESCE(sum(octet_length(d.data)), 0)"
        "   FROM obj o JOIN data d ON d.id = o.data_id)::int8,"
        " (SELECT count(*) FROM data)::int8");
    def(kListTransactions, "list_transactions",
        "SELECT partition, tid, ttid, packed, \"user\", description,"
        " extension, oids, size FROM trans WHERE partition = $1::int4"
        " AND tid >= $2::int8 AND tid <= $3::int8 ORDER BY tid"
        " LIMIT $4::int8");
    def(kListObjects, "list_objects",
        "SELECT o.partition, o.oid, o.tid, o.data_tid, o.checksum, d.data"
        " FROM obj o LEFT JOIN data d ON d.id = o.data_id"
        " WHERE o.partition = $1::int4 AND o.tid >= $2::int8"
        " AND o.tid <= $3::int8 ORDER BY o.tid, o.oid LIMIT $4::int8");
    def(kListObjectsFrom, "list_objects_from",
        "SELECT o.partition, o.oid, o.tid, o.data_tid, o.checksum, d.data"
        " FROM obj o LEFT JOIN data d ON d.id = o.data_id"
        " WHERE o.partition = $1::int4"
        " AND (o.tid, o.oid) >= ($2::int8, $3::int8)"
        " AND o.tid <= $4::int8 ORDER BY o.tid, o.oid LIMIT $5::int8");
    def(kLockedTid, "locked_tid",
        "SELECT tid, partitions FROM tlock WHERE ttid = $1::int8");
    def(kSetTransactionOids, "set_transaction_oids",
        "UPDATE trans SET oids = $3::bytea WHERE partition = $1::int4"
        " AND tid = $2::int8");
    def(kForgetLocks, "forget_locks",
        "DELETE FROM tlock WHERE ttid = ANY($1::int8[])");
    def(kImportTrans, "import_trans",
        "INSERT INTO trans (partition, tid, ttid, packed, \"user\","
        " description, extension, oids, size) SELECT * FROM unnest("
        " $1::int4[], $2::int8[], $3::int8[], $4::bool[], $5::bytea[],"
        " $6::bytea[], $7::bytea[], $8::bytea[], $9::int8[])"
        " ON CONFLICT DO NOTHING");
    // Rows already there are kept with their bytes: only the rows
    // inserted get theirs.
    def(kImportObj, "import_obj",
        absl::StrCat(
            WithDataIds("$1::int4[], $2::int8[], $3::int8[], $4::int8[],"
                        " $5::bytea[], $6::bytea[]",
                        "partition, oid, tid, data_tid, checksum, data"),
            ", io AS (INSERT INTO obj (partition, oid, tid, data_tid,"
            "   checksum, data_id) SELECT v.partition, v.oid, v.tid,"
            "   v.data_tid, v.checksum, ids.id FROM v LEFT JOIN ids USING (n)"
            "   ON CONFLICT DO NOTHING RETURNING data_id)"
            " INSERT INTO data (id, data) SELECT ids.id, v.data"
            " FROM v JOIN ids USING (n)"
            " WHERE ids.id IN (SELECT data_id FROM io)"));
    def(kDeletePartitionObj, "delete_partition_obj",
        DeleteWithData("obj", "partition = $1::int4"));
    def(kDeletePartitionTrans, "delete_partition_trans",
        "DELETE FROM trans WHERE partition = $1::int4");
    def(kTruncateObj, "truncate_obj",
        DeleteWithData("obj", "tid > $1::int8"));
    def(kTruncateTrans, "truncate_trans",
        "DELETE FROM trans WHERE tid > $1::int8");
    def(kTruncateTobj, "truncate_tobj", DeleteWithData("tobj", "true"));
    def(kTruncateTtrans, "truncate_ttrans", "DELETE FROM ttrans");
    def(kTruncateTlock, "truncate_tlock",
        "DELETE FROM tlock WHERE tid > $1::int8");
    def(kTruncatePstats, "truncate_pstats", "DELETE FROM pstats");
    def(kFillPstats, "fill_pstats", kFillPstatsSql);
    def(kDeletePartitionPstats, "delete_partition_pstats",
        "DELETE FROM pstats WHERE partition = $1::int4");
    // One row per partition again; rows added meanwhile by other
    // transactions are not in this snapshot and stay.
    def(kFoldPstats, "fold_pstats",
        "WITH gone AS (DELETE FROM pstats RETURNING *)"
        " INSERT INTO pstats (partition, objects, revisions, bytes)"
        " SELECT partition, sum(objects), sum(revisions), sum(bytes)"
        " FROM gone GROUP BY partition");
    def(kPartitionStats, "partition_stats",
        "SELECT partition::int8, sum(objects)::int8, sum(revisions)::int8,"
        " sum(bytes)::int8 FROM pstats GROUP BY partition"
        " HAVING sum(revisions) > 0 ORDER BY partition");
    // Pack (PackPartition): the revisions of up to $3 oids from $2.
    def(kPackRows, "pack_rows",
        "SELECT o.oid, o.tid, o.data_tid, COALESCE(o.data_id, 0)::int8,"
        " o.checksum, COALESCE(octet_length(d.data), 0)::int8"
        " FROM obj o LEFT JOIN data d ON d.id = o.data_id"
        " WHERE o.partition = $1::int4 AND o.oid IN (SELECT DISTINCT oid"
        " FROM obj WHERE partition = $1::int4 AND oid >= $2::int8"
        " ORDER BY oid LIMIT $3::int8) ORDER BY o.oid, o.tid");
    def(kPackRewrite, "pack_rewrite",
        "UPDATE obj o SET data_tid = v.data_tid,"
        " data_id = CASE WHEN v.take THEN NULLIF(v.data_id, 0)"
        "  ELSE o.data_id END,"
        " checksum = CASE WHEN v.take THEN v.checksum ELSE o.checksum END"
        " FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int8[],"
        "  $6::bool[], $7::bytea[])"
        "  AS v(oid, tid, data_tid, data_id, take, checksum)"
        " WHERE o.partition = $1::int4 AND o.oid = v.oid AND o.tid = v.tid");
    def(kPackDeleteObj, "pack_delete_obj",
        "DELETE FROM obj o USING unnest($2::int8[], $3::int8[]) AS v(oid, tid)"
        " WHERE o.partition = $1::int4 AND o.oid = v.oid AND o.tid <= v.tid");
    def(kPackDeleteData, "pack_delete_data",
        "DELETE FROM data WHERE id = ANY($1::int8[])");
    def(kPackStats, "pack_stats",
        "INSERT INTO pstats (partition, objects, revisions, bytes)"
        " VALUES ($1::int4, $2::int8, $3::int8, $4::int8)");
    def(kPackListTrans, "pack_list_trans",
        "SELECT tid, packed FROM trans WHERE partition = $1::int4"
        " AND tid >= $2::int8 AND tid < $3::int8 ORDER BY tid LIMIT $4::int8");
    def(kPackMarkTrans, "pack_mark_trans",
        "UPDATE trans SET packed = true WHERE partition = $1::int4"
        " AND tid >= $2::int8 AND tid <= $3::int8 AND NOT packed");
    // trans_tid: a range of the tid index (a tid has one record, so the
    // incremental sort on partition is per tid), never a sort of the table.
    def(kScanTransactions, "scan_transactions",
        "SELECT partition, tid, ttid, packed, \"user\", description,"
        " extension, oids, size FROM trans WHERE tid >= $1::int8"
        " AND tid <= $2::int8 ORDER BY tid, partition LIMIT $3::int8");
    def(kGetTransaction, "get_transaction",
        "SELECT partition, tid, ttid, packed, \"user\", description,"
        " extension, oids, size FROM trans WHERE tid = $1::int8"
        " ORDER BY partition LIMIT 1");
    return s;
  }();
  return *statements;
}

// ---------------------------------------------------------------------------
// libpq helpers.

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// PostgreSQL type OIDs of binary array elements.
constexpr uint32_t kBoolOid = 16;
constexpr uint32_t kByteaOid = 17;
constexpr uint32_t kInt8Oid = 20;
constexpr uint32_t kInt4Oid = 23;

void AppendBigEndian32(uint32_t v, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}
void AppendBigEndian64(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

// Binary-format statement parameters. Bytes passed by reference
// (Bytea/Text) must outlive the call.
class Params {
 public:
  Params() = default;
  Params(Params&&) = default;
  Params& operator=(Params&&) = default;

  Params& Int4(int32_t v) {
    std::string buffer;
    AppendBigEndian32(static_cast<uint32_t>(v), &buffer);
    return Own(std::move(buffer));
  }
  Params& Int8(int64_t v) {
    std::string buffer;
    AppendBigEndian64(static_cast<uint64_t>(v), &buffer);
    return Own(std::move(buffer));
  }
  // text's binary format is its bytes.
  Params& Text(absl::string_view v) { return Ref(v); }
  Params& Bytea(absl::string_view v) { return Ref(v); }

  Params& Int4Array(const std::vector<int32_t>& values) {
    std::string buffer = ArrayHeader(kInt4Oid, values.size());
    for (int32_t v : values) {
      AppendBigEndian32(4, &buffer);
      AppendBigEndian32(static_cast<uint32_t>(v), &buffer);
    }
    return Own(std::move(buffer));
  }
  Params& Int8Array(const std::vector<int64_t>& values) {
    std::string buffer = ArrayHeader(kInt8Oid, values.size());
    for (int64_t v : values) {
      AppendBigEndian32(8, &buffer);
      AppendBigEndian64(static_cast<uint64_t>(v), &buffer);
    }
    return Own(std::move(buffer));
  }
  Params& BoolArray(const std::vector<bool>& values) {
    std::string buffer = ArrayHeader(kBoolOid, values.size());
    for (bool v : values) {
      AppendBigEndian32(1, &buffer);
      buffer.push_back(v ? 1 : 0);
    }
    return Own(std::move(buffer));
  }
  Params& ByteaArray(const std::vector<absl::string_view>& values) {
    size_t size = 20;
    for (absl::string_view v : values) size += 4 + v.size();
    std::string buffer = ArrayHeader(kByteaOid, values.size());
    buffer.reserve(size);
    for (absl::string_view v : values) {
      AppendBigEndian32(static_cast<uint32_t>(v.size()), &buffer);
      buffer.append(v.data(), v.size());
    }
    return Own(std::move(buffer));
  }

  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  // array_recv's format: ndim, has-nulls flag, element type, then per
  // dimension its length and lower bound (an empty array has ndim 0).
  static std::string ArrayHeader(uint32_t element_oid, size_t count) {
    std::string buffer;
    AppendBigEndian32(count == 0 ? 0 : 1, &buffer);
    AppendBigEndian32(0, &buffer);
    AppendBigEndian32(element_oid, &buffer);
    if (count > 0) {
      AppendBigEndian32(static_cast<uint32_t>(count), &buffer);
      AppendBigEndian32(1, &buffer);
    }
    return buffer;
  }
  Params& Own(std::string buffer) {
    owned_.push_back(std::move(buffer));
    return Ref(owned_.back());
  }
  Params& Ref(absl::string_view v) {
    // A null pointer would be SQL NULL: '' must point somewhere.
    values_.push_back(v.data() != nullptr ? v.data() : "");
    lengths_.push_back(static_cast<int>(v.size()));
    formats_.push_back(1);
    return *this;
  }

  std::deque<std::string> owned_;  // stable addresses
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

// One statement of a call.
struct Call {
  Stmt stmt;
  Params params;
};

uint64_t ReadBigEndian(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

bool IsNull(const PGresult* r, int row, int col) {
  return PQgetisnull(r, row, col) != 0;
}
// Binary result decoding; types are fixed by the statements' casts. NULL
// reads as 0 / "".
int64_t GetInt8(const PGresult* r, int row, int col) {
  if (IsNull(r, row, col) || PQgetlength(r, row, col) != 8) return 0;
  return static_cast<int64_t>(ReadBigEndian(PQgetvalue(r, row, col), 8));
}
int32_t GetInt4(const PGresult* r, int row, int col) {
  if (IsNull(r, row, col) || PQgetlength(r, row, col) != 4) return 0;
  return static_cast<int32_t>(ReadBigEndian(PQgetvalue(r, row, col), 4));
}
bool GetBool(const PGresult* r, int row, int col) {
  if (IsNull(r, row, col) || PQgetlength(r, row, col) != 1) return false;
  return PQgetvalue(r, row, col)[0] != 0;
}
std::string GetBytes(const PGresult* r, int row, int col) {
  if (IsNull(r, row, col)) return "";
  return std::string(PQgetvalue(r, row, col), PQgetlength(r, row, col));
}

std::string EncodeOids(const std::vector<uint64_t>& oids) {
  std::string out;
  out.reserve(oids.size() * 8);
  for (uint64_t oid : oids) {
    for (int i = 0; i < 8; ++i)
      out.push_back(static_cast<char>(oid >> (8 * i)));
  }
  return out;
}
std::vector<uint64_t> DecodeOids(absl::string_view bytes) {
  std::vector<uint64_t> oids(bytes.size() / 8);
  for (size_t k = 0; k < oids.size(); ++k) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
      v = (v << 8) | static_cast<unsigned char>(bytes[k * 8 + i]);
    }
    oids[k] = v;
  }
  return oids;
}

std::string TrimMessage(const char* message) {
  return std::string(
      absl::StripTrailingAsciiWhitespace(message != nullptr ? message : ""));
}

// The status for a failed statement (see the header for the mapping).
absl::Status PgError(PGconn* conn, const PGresult* result,
                     absl::string_view context) {
  const char* sqlstate = result != nullptr
                             ? PQresultErrorField(result, PG_DIAG_SQLSTATE)
                             : nullptr;
  std::string message = TrimMessage(
      result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn));
  if (message.empty()) message = TrimMessage(PQerrorMessage(conn));
  const std::string text = absl::StrCat("postgresql: ", context, ": ", message);
  if (sqlstate == nullptr || PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(text);  // client-side / connection loss
  }
  const absl::string_view state(sqlstate);
  if (absl::StartsWith(state, "08") ||         // connection exception
      absl::StartsWith(state, "53") ||         // insufficient resources
      absl::StartsWith(state, "57P") ||        // shutdown, crash recovery
      state == "40001" || state == "40P01" ||  // serialization, deadlock
      state == "55P03") {                      // lock not available
    return absl::UnavailableError(text);
  }
  if (state == "57014") return absl::DeadlineExceededError(text);  // cancel
  if (absl::StartsWith(state, "22")) return absl::InvalidArgumentError(text);
  return absl::InternalError(text);
}

bool ResultOk(const PGresult* result) {
  const ExecStatusType status = PQresultStatus(result);
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

// One statement, one round trip.
absl::StatusOr<Result> ExecOne(PGconn* conn, const Call& call) {
  const StatementDef& def = Statements()[call.stmt];
  Result result(PQexecPrepared(conn, def.name.c_str(), call.params.size(),
                               call.params.values(), call.params.lengths(),
                               call.params.formats(), /*resultFormat=*/1));
  if (result == nullptr || !ResultOk(result.get())) {
    return PgError(conn, result.get(), def.name);
  }
  return result;
}

// Several statements in one pipeline: one round trip and one implicit
// transaction (committed at the sync point, or rolled back as a whole if
// any statement fails).
absl::StatusOr<std::vector<Result>> ExecPipeline(
    PGconn* conn, const std::vector<Call>& calls) {
  if (calls.size() == 1) {
    CELLAR_ASSIGN_OR_RETURN(Result result, ExecOne(conn, calls[0]));
    std::vector<Result> results;
    results.push_back(std::move(result));
    return results;
  }
  if (PQenterPipelineMode(conn) != 1) {
    return PgError(conn, nullptr, "entering pipeline mode");
  }
  for (const Call& call : calls) {
    const StatementDef& def = Statements()[call.stmt];
    if (PQsendQueryPrepared(conn, def.name.c_str(), call.params.size(),
                            call.params.values(), call.params.lengths(),
                            call.params.formats(), /*resultFormat=*/1) != 1) {
      // The connection is unusable now; the pool drops it.
      return absl::UnavailableError(
          absl::StrCat("postgresql: sending ", def.name, ": ",
                       TrimMessage(PQerrorMessage(conn))));
    }
  }
  if (PQpipelineSync(conn) != 1) {
    return absl::UnavailableError(absl::StrCat(
        "postgresql: pipeline sync: ", TrimMessage(PQerrorMessage(conn))));
  }
  std::vector<Result> results;
  absl::Status first_error;
  for (const Call& call : calls) {
    Result result(PQgetResult(conn));
    if (result == nullptr) {
      return absl::UnavailableError(absl::StrCat(
          "postgresql: no result for ", Statements()[call.stmt].name, ": ",
          TrimMessage(PQerrorMessage(conn))));
    }
    const ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_PIPELINE_ABORTED && !ResultOk(result.get()) &&
        first_error.ok()) {
      first_error = PgError(conn, result.get(), Statements()[call.stmt].name);
    }
    results.push_back(std::move(result));
    // Each statement's results end with a null.
    Result end(PQgetResult(conn));
    if (end != nullptr) {
      return absl::UnavailableError(
          absl::StrCat("postgresql: unexpected extra result for ",
                       Statements()[call.stmt].name));
    }
  }
  // Then the sync point: the commit. An error here (e.g. at commit) comes
  // before the sync result.
  for (int i = 0; i < 4; ++i) {
    Result result(PQgetResult(conn));
    if (result == nullptr) {
      if (PQstatus(conn) != CONNECTION_OK) {
        return PgError(conn, nullptr, "pipeline commit");
      }
      continue;
    }
    if (PQresultStatus(result.get()) == PGRES_PIPELINE_SYNC) {
      if (PQexitPipelineMode(conn) != 1) {
        return PgError(conn, nullptr, "leaving pipeline mode");
      }
      if (!first_error.ok()) return first_error;
      return results;
    }
    if (first_error.ok()) {
      first_error = PgError(conn, result.get(), "pipeline commit");
    }
  }
  return absl::UnavailableError("postgresql: pipeline sync result missing");
}

// libraries don't print: server notices are dropped.
void IgnoreNotice(void*, const char*) {}

// False if `conn` is known to be closed. Reads what the server sent to
// the idle session without blocking: a terminated session typically has
// an error message and then EOF waiting, which takes two reads to see.
bool SessionAlive(PGconn* conn) {
  return PQconsumeInput(conn) == 1 && PQconsumeInput(conn) == 1 &&
         PQstatus(conn) == CONNECTION_OK;
}

// Connects with `options`; `role` is appended to application_name.
absl::StatusOr<PGconn*> Connect(const PostgresBackend::Options& options,
                                absl::string_view role) {
  const std::string timeout = absl::StrCat(std::max<int64_t>(
      1,
      absl::ToInt64Seconds(options.connect_timeout + absl::Milliseconds(999))));
  const std::string application_name =
      absl::StrCat(options.application_name, "/", role);
  // Ours first: what the connection string says wins.
  // TCP keepalives notice a dead server/network in ~25 s (ignored on unix
  // sockets).
  const char* keywords[] = {"connect_timeout",
                            "application_name",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "dbname",
                            nullptr};
  const char* values[] = {timeout.c_str(),
                          application_name.c_str(),
                          "10",
                          "5",
                          "3",
                          options.conninfo.c_str(),
                          nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) {
    return absl::ResourceExhaustedError("postgresql: out of memory");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(absl::StrCat(
        "postgresql: cannot connect: ", TrimMessage(PQerrorMessage(conn))));
    PQfinish(conn);
    return status;
  }
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  return conn;
}

// Runs a constant statement (no data) on `conn`.
absl::Status ExecConstant(PGconn* conn, const char* sql) {
  Result result(PQexec(conn, sql));
  if (result == nullptr || !ResultOk(result.get())) {
    return PgError(conn, result.get(), sql);
  }
  return absl::OkStatus();
}

absl::Status CheckOid(uint64_t oid) {
  if (oid > static_cast<uint64_t>(kMaxInt8)) {
    return absl::InvalidArgumentError(
        absl::StrCat("oid ", oid, " is >= 2^63: not storable in PostgreSQL"));
  }
  return absl::OkStatus();
}
absl::Status CheckTid(uint64_t tid, absl::string_view what) {
  if (tid == 0 || tid > static_cast<uint64_t>(kMaxInt8)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", tid, " is out of range [1, 2^63-1]"));
  }
  return absl::OkStatus();
}
absl::Status CheckDataTid(uint64_t data_tid) {
  if (data_tid > static_cast<uint64_t>(kMaxInt8)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data_tid ", data_tid, " is >= 2^63"));
  }
  return absl::OkStatus();
}
absl::Status CheckPartition(uint64_t partition) {
  if (partition > kMaxInt4) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", partition, " is >= 2^31"));
  }
  return absl::OkStatus();
}
// An upper bound: tids above 2^63-1 don't exist, so it means "no bound".
int64_t ClampTid(uint64_t tid) {
  return static_cast<int64_t>(std::min<uint64_t>(tid, kMaxInt8));
}

TransactionRecord ReadTransaction(const PGresult* r, int row) {
  TransactionRecord t;
  t.partition = static_cast<uint32_t>(GetInt4(r, row, 0));
  t.tid = static_cast<uint64_t>(GetInt8(r, row, 1));
  t.ttid = static_cast<uint64_t>(GetInt8(r, row, 2));
  t.packed = GetBool(r, row, 3);
  t.user = GetBytes(r, row, 4);
  t.description = GetBytes(r, row, 5);
  t.extension = GetBytes(r, row, 6);
  t.oids = DecodeOids(GetBytes(r, row, 7));
  t.size_bytes = static_cast<uint64_t>(GetInt8(r, row, 8));
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl: the ownership session, the pool and the statement runner.

class PostgresBackend::Impl {
 public:
  explicit Impl(const Options& options) : options_(options) {}

  ~Impl() {
    absl::MutexLock lock(&mu_);
    for (PGconn* conn : idle_) PQfinish(conn);
    idle_.clear();
    absl::MutexLock owner_lock(&owner_mu_);
    if (owner_ != nullptr) {
      // Closing the session releases the advisory lock, but the server
      // notices the close asynchronously: unlock first, so that a node
      // reopening the database right after (a restart) is not refused.
      const std::string key = absl::StrCat(kOwnershipLockKey);
      const char* params[] = {key.c_str()};
      Result unlocked(PQexecParams(owner_, "SELECT pg_advisory_unlock($1::int8)", 1, nullptr,
                                   params, nullptr, nullptr, 0));
      PQfinish(owner_);
    }
    owner_ = nullptr;
  }

  // Connects the ownership session and takes the lock.
  absl::Status TakeOwnership() {
    absl::MutexLock lock(&owner_mu_);
    return TakeOwnershipLocked();
  }

  // Creates or migrates the schema (on the ownership session, so two
  // nodes never migrate at once).
  absl::Status MigrateSchema() {
    absl::MutexLock lock(&owner_mu_);
    PGconn* conn = owner_;
    int version = 0;
    {
      Result exists(PQexec(conn, "SELECT to_regclass('config') IS NOT NULL"));
      if (exists == nullptr || !ResultOk(exists.get())) {
        return PgError(conn, exists.get(), "schema check");
      }
      if (std::strcmp(PQgetvalue(exists.get(), 0, 0), "t") == 0) {
        const char* params[] = {"schema_version"};
        Result row(PQexecParams(conn,
                                "SELECT convert_from(value, 'UTF8') FROM"
                                " config WHERE name = $1",
                                1, nullptr, params, nullptr, nullptr, 0));
        if (row == nullptr || !ResultOk(row.get())) {
          return PgError(conn, row.get(), "reading schema_version");
        }
        if (PQntuples(row.get()) == 1 &&
            !absl::SimpleAtoi(PQgetvalue(row.get(), 0, 0), &version)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "database ", PQdb(conn), ": unreadable schema_version '",
              PQgetvalue(row.get(), 0, 0), "'"));
        }
      }
    }
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", PQdb(conn), " has schema version ", version,
                       ", newer than this build's ", kSchemaVersion,
                       ": upgrade cellar before opening it"));
    }
    const auto& steps = MigrationSteps();
    static_assert(kSchemaVersion >= 1, "schema versions start at 1");
    if (steps.size() != static_cast<size_t>(kSchemaVersion)) {
      return absl::InternalError(
          absl::StrCat("postgresql: ", steps.size(),
                       " migration steps for schema version ", kSchemaVersion));
    }
    for (int v = version; v < kSchemaVersion; ++v) {
      CELLAR_RETURN_IF_ERROR(ExecConstant(conn, "BEGIN"));
      absl::Status status;
      for (const char* sql : steps[v]) {
        status = ExecConstant(conn, sql);
        if (!status.ok()) break;
      }
      if (status.ok()) {
        const std::string value = absl::StrCat(v + 1);
        const char* params[] = {"schema_version", value.c_str()};
        Result result(PQexecParams(
            conn,
            "INSERT INTO config (name, value) VALUES ($1, convert_to($2,"
            " 'UTF8')) ON CONFLICT (name) DO UPDATE SET value ="
            " EXCLUDED.value",
            2, nullptr, params, nullptr, nullptr, 0));
        if (result == nullptr || !ResultOk(result.get())) {
          status = PgError(conn, result.get(), "writing schema_version");
        }
      }
      if (status.ok()) status = ExecConstant(conn, "COMMIT");
      if (!status.ok()) {
        (void)ExecConstant(conn, "ROLLBACK");
        return absl::Status(
            status.code(), absl::StrCat("migrating the schema from version ", v,
                                        ": ", status.message()));
      }
    }
    return absl::OkStatus();
  }

  // Runs `calls` on a pooled connection: one statement, or one pipeline
  // (one transaction). Writes first check that this node still owns the
  // database.
  absl::StatusOr<std::vector<Result>> Run(const std::vector<Call>& calls,
                                          bool write) {
    if (write) CELLAR_RETURN_IF_ERROR(CheckOwnership());
    CELLAR_ASSIGN_OR_RETURN(Pooled pooled, Acquire());
    absl::StatusOr<std::vector<Result>> results =
        ExecPipeline(pooled.conn, calls);
    const bool lost = PQstatus(pooled.conn) != CONNECTION_OK;
    Release(pooled.conn);
    // A pooled connection that died while idle (server restart, session
    // terminated) fails its next call: retry once on a fresh connection.
    // Safe for every operation here: they are idempotent, and a statement
    // that fails this way did not commit or committed completely.
    if (!results.ok() && lost && !pooled.fresh) {
      CELLAR_ASSIGN_OR_RETURN(pooled, Acquire());
      results = ExecPipeline(pooled.conn, calls);
      Release(pooled.conn);
    }
    return results;
  }

  absl::StatusOr<Result> RunOne(Call call, bool write) {
    std::vector<Call> calls;
    calls.push_back(std::move(call));
    CELLAR_ASSIGN_OR_RETURN(std::vector<Result> results, Run(calls, write));
    return std::move(results[0]);
  }

  // Follows undo back-pointers from revision `data_tid` of `oid` to the
  // revision that holds the bytes; sets data and checksum.
  absl::Status ResolveChain(uint32_t partition, uint64_t oid, uint64_t data_tid,
                            std::string* data, std::string* checksum) {
    uint64_t tid = data_tid;
    for (int hop = 0; hop < kMaxBackPointerHops; ++hop) {
      Params params;
      params.Int4(static_cast<int32_t>(partition))
          .Int8(static_cast<int64_t>(oid))
          .Int8(static_cast<int64_t>(tid));
      CELLAR_ASSIGN_OR_RETURN(
          Result r, RunOne(Call{kLoadData, std::move(params)}, false));
      if (PQntuples(r.get()) != 1) {
        return absl::DataLossError(absl::StrCat(
            "oid ", oid, ": undo back-pointer to missing revision ", tid));
      }
      const uint64_t next = static_cast<uint64_t>(GetInt8(r.get(), 0, 0));
      if (next == 0) {
        *data = GetBytes(r.get(), 0, 2);
        *checksum = GetBytes(r.get(), 0, 1);
        return absl::OkStatus();
      }
      if (next >= tid) break;  // must point back in time
      tid = next;
    }
    return absl::DataLossError(
        absl::StrCat("oid ", oid, ": undo back-pointer chain from revision ",
                     data_tid, " is too long or loops"));
  }

  // Pool use right now (connections being opened count as in use).
  PoolUsage Usage() {
    absl::MutexLock lock(&mu_);
    PoolUsage usage;
    usage.idle = static_cast<int>(idle_.size());
    usage.in_use = open_ - usage.idle;
    return usage;
  }

 private:
  absl::Status TakeOwnershipLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(owner_mu_) {
    if (owner_ != nullptr) {
      PQfinish(owner_);
      owner_ = nullptr;
    }
    CELLAR_ASSIGN_OR_RETURN(PGconn * conn, Connect(options_, "owner"));
    const std::string key = absl::StrCat(kOwnershipLockKey);
    const char* params[] = {key.c_str()};
    Result result(PQexecParams(conn, "SELECT pg_try_advisory_lock($1::int8)", 1,
                               nullptr, params, nullptr, nullptr, 0));
    if (result == nullptr || !ResultOk(result.get())) {
      absl::Status status = PgError(conn, result.get(), "ownership lock");
      PQfinish(conn);
      return status;
    }
    if (std::strcmp(PQgetvalue(result.get(), 0, 0), "t") != 0) {
      std::string holder = WhoHoldsOwnership(conn);
      absl::Status status = absl::FailedPreconditionError(absl::StrCat(
          "database \"", PQdb(conn), "\" is in use by another storage node",
          holder.empty() ? "" : absl::StrCat(" (", holder, ")")));
      PQfinish(conn);
      return status;
    }
    owner_ = conn;
    return absl::OkStatus();
  }

  // "pid 123, application_name ..., client ..." of the lock holder, or "".
  static std::string WhoHoldsOwnership(PGconn* conn) {
    const std::string hi = absl::StrCat(
        static_cast<uint32_t>(static_cast<uint64_t>(kOwnershipLockKey) >> 32));
    const std::string lo = absl::StrCat(
        static_cast<uint32_t>(static_cast<uint64_t>(kOwnershipLockKey)));
    const char* params[] = {hi.c_str(), lo.c_str()};
    Result result(PQexecParams(
        conn,
        "SELECT 'pid ' || a.pid || ', application_name ' ||"
        " a.application_name || ', client ' ||"
        " COALESCE(host(a.client_addr), 'local')"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database"
        "   WHERE datname = current_database())"
        " AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 1",
        2, nullptr, params, nullptr, nullptr, 0));
    if (result == nullptr || !ResultOk(result.get()) ||
        PQntuples(result.get()) == 0) {
      return "";
    }
    return PQgetvalue(result.get(), 0, 0);
  }

  // OK while the ownership session is alive; re-takes the lock if the
  // session died (FAILED_PRECONDITION if someone else took it).
  absl::Status CheckOwnership() {
    absl::MutexLock lock(&owner_mu_);
    if (owner_ != nullptr && SessionAlive(owner_)) return absl::OkStatus();
    absl::Status status = TakeOwnershipLocked();
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("lost the database ownership session: ",
                                       status.message()));
    }
    return absl::OkStatus();
  }

  struct Pooled {
    PGconn* conn = nullptr;
    bool fresh = false;  // just opened
  };

  // A pooled connection, opening one if below pool_size; waits at most
  // acquire_timeout.
  absl::StatusOr<Pooled> Acquire() {
    const absl::Time deadline = absl::Now() + options_.acquire_timeout;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        while (!idle_.empty()) {
          PGconn* conn = idle_.back();
          idle_.pop_back();
          // Notices a closed connection without a round trip (most of the
          // time: see Run() for the rest).
          if (SessionAlive(conn)) return Pooled{conn, false};
          PQfinish(conn);
          --open_;
        }
        if (open_ < options_.pool_size) {
          ++open_;
          break;  // open a new one, outside the lock
        }
        if (cv_.WaitWithDeadline(&mu_, deadline) && absl::Now() >= deadline) {
          return absl::UnavailableError(
              absl::StrCat("postgresql: no free connection within ",
                           absl::FormatDuration(options_.acquire_timeout),
                           " (pool of ", options_.pool_size, ")"));
        }
      }
    }
    absl::StatusOr<PGconn*> conn = OpenPooled();
    if (!conn.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      cv_.Signal();
      return conn.status();
    }
    return Pooled{*conn, true};
  }

  void Release(PGconn* conn) {
    const bool healthy = PQstatus(conn) == CONNECTION_OK &&
                         PQtransactionStatus(conn) == PQTRANS_IDLE &&
                         PQpipelineStatus(conn) == PQ_PIPELINE_OFF;
    absl::MutexLock lock(&mu_);
    if (healthy) {
      idle_.push_back(conn);
    } else {
      PQfinish(conn);
      --open_;
    }
    cv_.Signal();
  }

  // A new pooled connection with every statement prepared.
  absl::StatusOr<PGconn*> OpenPooled() {
    CELLAR_ASSIGN_OR_RETURN(PGconn * conn, Connect(options_, "pool"));
    absl::Status status = PrepareSession(conn);
    if (!status.ok()) {
      PQfinish(conn);
      return status;
    }
    return conn;
  }

  static absl::Status PrepareSession(PGconn* conn) {
    // Durability is the contract: a server-wide synchronous_commit = off
    // is overridden for our sessions (other durable levels are kept).
    Result setting(PQexec(conn, "SHOW synchronous_commit"));
    if (setting == nullptr || !ResultOk(setting.get())) {
      return PgError(conn, setting.get(), "SHOW synchronous_commit");
    }
    if (std::strcmp(PQgetvalue(setting.get(), 0, 0), "off") == 0) {
      CELLAR_RETURN_IF_ERROR(
          ExecConstant(conn, "SET synchronous_commit TO on"));
    }
    for (const StatementDef& def : Statements()) {
      Result result(
          PQprepare(conn, def.name.c_str(), def.sql.c_str(), 0, nullptr));
      if (result == nullptr || !ResultOk(result.get())) {
        return PgError(conn, result.get(),
                       absl::StrCat("preparing ", def.name));
      }
    }
    return absl::OkStatus();
  }

  const Options options_;

  absl::Mutex owner_mu_;
  PGconn* owner_ ABSL_GUARDED_BY(owner_mu_) = nullptr;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::vector<PGconn*> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + in use + being opened
};

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<StorageBackend>> PostgresBackend::Open(
    const Options& options) {
  if (options.conninfo.empty()) {
    return absl::InvalidArgumentError(
        "PostgresBackend: Options::conninfo is required");
  }
  if (options.pool_size < 1 ||
      options.acquire_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "PostgresBackend: pool_size must be >= 1 and acquire_timeout > 0");
  }
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.conninfo.c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error != nullptr ? TrimMessage(error) : "";
    PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat("PostgresBackend: bad connection string: ", message));
  }
  PQconninfoFree(parsed);

  auto impl = std::make_unique<Impl>(options);
  CELLAR_RETURN_IF_ERROR(impl->TakeOwnership());
  CELLAR_RETURN_IF_ERROR(impl->MigrateSchema());
  // One pooled connection now: fails early if statements don't prepare.
  CELLAR_RETURN_IF_ERROR(
      impl->RunOne(Call{kListVoted, Params()}, false).status());
  return std::unique_ptr<StorageBackend>(new PostgresBackend(std::move(impl)));
}

PostgresBackend::PostgresBackend(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

PostgresBackend::~PostgresBackend() = default;

absl::StatusOr<std::optional<std::string>> PostgresBackend::GetConfig(
    absl::string_view key) {
  CELLAR_RETURN_IF_ERROR(CheckConfigKey(key));
  Params params;
  params.Text(key);
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kGetConfig, std::move(params)}, false));
  if (PQntuples(r.get()) == 0) return std::optional<std::string>();
  return std::optional<std::string>(GetBytes(r.get(), 0, 0));
}

absl::Status PostgresBackend::SetConfig(absl::string_view key,
                                        absl::string_view value) {
  CELLAR_RETURN_IF_ERROR(CheckConfigKey(key));
  Params params;
  params.Text(key).Bytea(value);
  return impl_->RunOne(Call{kSetConfig, std::move(params)}, true).status();
}

absl::Status PostgresBackend::SavePartitionTable(
    const PartitionTableRecord& table) {
  if (table.ptid > static_cast<uint64_t>(kMaxInt8)) {
    return absl::InvalidArgumentError("ptid >= 2^63");
  }
  std::vector<int64_t> partitions, nodes;
  std::vector<int32_t> states;
  for (const CellRecord& cell : table.cells) {
    partitions.push_back(cell.partition);
    nodes.push_back(cell.node_id);
    states.push_back(cell.state);
  }
  const std::string ptid = absl::StrCat(table.ptid);
  std::vector<Call> calls;
  calls.push_back(Call{kDeletePt, Params()});
  Params cells;
  cells.Int8Array(partitions).Int8Array(nodes).Int4Array(states);
  calls.push_back(Call{kInsertPt, std::move(cells)});
  Params config;
  config.Text("ptid").Bytea(ptid);
  calls.push_back(Call{kSetConfig, std::move(config)});
  return impl_->Run(calls, true).status();
}

absl::StatusOr<PartitionTableRecord> PostgresBackend::LoadPartitionTable() {
  CELLAR_ASSIGN_OR_RETURN(Result r,
                          impl_->RunOne(Call{kLoadPt, Params()}, false));
  PartitionTableRecord table;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    if (GetInt8(r.get(), row, 0) < 0) {
      const std::string ptid = GetBytes(r.get(), row, 3);
      if (!absl::SimpleAtoi(ptid, &table.ptid)) {
        return absl::InternalError(
            absl::StrCat("postgresql: unreadable ptid '", ptid, "'"));
      }
      continue;
    }
    CellRecord cell;
    cell.partition = static_cast<uint32_t>(GetInt8(r.get(), row, 0));
    cell.node_id = static_cast<uint32_t>(GetInt8(r.get(), row, 1));
    cell.state = GetInt4(r.get(), row, 2);
    table.cells.push_back(cell);
  }
  return table;
}

absl::Status PostgresBackend::StoreVotes(const std::vector<VoteRecord>& votes) {
  if (votes.empty()) return absl::OkStatus();
  std::vector<int64_t> ttids;
  absl::flat_hash_set<uint64_t> seen_ttids;
  // Temporary transaction records.
  std::vector<int64_t> t_ttids;
  std::vector<int32_t> t_partitions;
  std::vector<absl::string_view> t_users, t_descriptions, t_extensions, t_oids;
  std::vector<int64_t> t_sizes;
  std::deque<std::string> encoded_oids;
  for (const VoteRecord& vote : votes) {
    CELLAR_RETURN_IF_ERROR(CheckTid(vote.ttid, "ttid"));
    if (!seen_ttids.insert(vote.ttid).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("StoreVotes: ttid ", vote.ttid, " appears twice"));
    }
    ttids.push_back(static_cast<int64_t>(vote.ttid));
    absl::flat_hash_set<uint64_t> seen_oids;
    for (const ObjectRecord& object : vote.objects) {
      CELLAR_RETURN_IF_ERROR(CheckOid(object.oid));
      CELLAR_RETURN_IF_ERROR(CheckPartition(object.partition));
      CELLAR_RETURN_IF_ERROR(CheckDataTid(object.data_tid));
      if (!seen_oids.insert(object.oid).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("StoreVotes: oid ", object.oid,
                         " appears twice in ttid ", vote.ttid));
      }
    }
    if (vote.transaction.has_value()) {
      const TransactionRecord& t = *vote.transaction;
      CELLAR_RETURN_IF_ERROR(CheckPartition(t.partition));
      t_ttids.push_back(static_cast<int64_t>(vote.ttid));
      t_partitions.push_back(static_cast<int32_t>(t.partition));
      t_users.push_back(t.user);
      t_descriptions.push_back(t.description);
      t_extensions.push_back(t.extension);
      encoded_oids.push_back(EncodeOids(t.oids));
      t_oids.push_back(encoded_oids.back());
      t_sizes.push_back(static_cast<int64_t>(t.size_bytes));
    }
  }

  // Replace: drop what earlier votes of these ttids wrote, then insert.
  std::vector<Call> calls;
  {
    Params p;
    p.Int8Array(ttids);
    calls.push_back(Call{kDeleteTobj, std::move(p)});
    Params q;
    q.Int8Array(ttids);
    calls.push_back(Call{kDeleteTtrans, std::move(q)});
  }
  // Objects, in batches of at most kMaxBatchBytes of payload.
  std::vector<int64_t> o_ttids, o_oids, o_data_tids;
  std::vector<int32_t> o_partitions;
  std::vector<absl::string_view> o_checksums, o_data;
  size_t batch_bytes = 0;
  auto flush_objects = [&] {
    if (o_ttids.empty()) return;
    Params p;
    p.Int8Array(o_ttids)
        .Int4Array(o_partitions)
        .Int8Array(o_oids)
        .Int8Array(o_data_tids)
        .ByteaArray(o_checksums)
        .ByteaArray(o_data);
    calls.push_back(Call{kInsertTobj, std::move(p)});
    o_ttids.clear();
    o_partitions.clear();
    o_oids.clear();
    o_data_tids.clear();
    o_checksums.clear();
    o_data.clear();
    batch_bytes = 0;
  };
  for (const VoteRecord& vote : votes) {
    for (const ObjectRecord& object : vote.objects) {
      const size_t bytes = object.data.size() + object.checksum.size() + 64;
      if (batch_bytes + bytes > kMaxBatchBytes) flush_objects();
      o_ttids.push_back(static_cast<int64_t>(vote.ttid));
      o_partitions.push_back(static_cast<int32_t>(object.partition));
      o_oids.push_back(static_cast<int64_t>(object.oid));
      o_data_tids.push_back(static_cast<int64_t>(object.data_tid));
      o_checksums.push_back(object.checksum);
      o_data.push_back(object.data);
      batch_bytes += bytes;
    }
  }
  flush_objects();
  if (!t_ttids.empty()) {
    Params p;
    p.Int8Array(t_ttids)
        .Int4Array(t_partitions)
        .ByteaArray(t_users)
        .ByteaArray(t_descriptions)
        .ByteaArray(t_extensions)
        .ByteaArray(t_oids)
        .Int8Array(t_sizes);
    calls.push_back(Call{kInsertTtrans, std::move(p)});
  }
  return impl_->Run(calls, true).status();
}

absl::Status PostgresBackend::LockTransactions(
    const std::vector<LockRecord>& locks) {
  if (locks.empty()) return absl::OkStatus();
  absl::flat_hash_map<uint64_t, uint64_t> tid_of;
  std::vector<int64_t> ttids, tids, kept_ttids;
  std::vector<int32_t> kept_partitions;
  std::vector<std::string> packed;  // tlock.partitions, one per lock
  packed.reserve(locks.size());
  for (const LockRecord& lock : locks) {
    CELLAR_RETURN_IF_ERROR(CheckTid(lock.ttid, "ttid"));
    CELLAR_RETURN_IF_ERROR(CheckTid(lock.tid, "tid"));
    auto [it, inserted] = tid_of.emplace(lock.ttid, lock.tid);
    if (!inserted) {
      if (it->second != lock.tid) {
        return absl::InvalidArgumentError(absl::StrCat(
            "LockTransactions: ttid ", lock.ttid, " locked with two tids"));
      }
      continue;  // the same lock twice
    }
    ttids.push_back(static_cast<int64_t>(lock.ttid));
    tids.push_back(static_cast<int64_t>(lock.tid));
    for (uint32_t partition : lock.partitions) {
      kept_ttids.push_back(static_cast<int64_t>(lock.ttid));
      kept_partitions.push_back(static_cast<int32_t>(partition));
    }
    packed.push_back(
        EncodeOids(std::vector<uint64_t>(lock.partitions.begin(), lock.partitions.end())));
  }
  const std::vector<absl::string_view> packed_views(packed.begin(), packed.end());
  Params params;
  params.Int8Array(ttids).Int8Array(tids).Int8Array(kept_ttids).Int4Array(kept_partitions)
      .ByteaArray(packed_views);
  return impl_->RunOne(Call{kLock, std::move(params)}, true).status();
}

absl::Status PostgresBackend::AbortTransaction(uint64_t ttid) {
  if (ttid > static_cast<uint64_t>(kMaxInt8)) return absl::OkStatus();
  // Not durable on purpose (see the header): one round trip, no fsync wait.
  std::vector<Call> calls;
  // The same statements as a re-vote's: the vote's bytes go too.
  calls.push_back(Call{kSyncCommitOff, Params()});
  Params p;
  p.Int8Array({static_cast<int64_t>(ttid)});
  calls.push_back(Call{kDeleteTobj, std::move(p)});
  Params q;
  q.Int8Array({static_cast<int64_t>(ttid)});
  calls.push_back(Call{kDeleteTtrans, std::move(q)});
  return impl_->Run(calls, true).status();
}

absl::StatusOr<std::vector<uint64_t>> PostgresBackend::ListVotedTransactions() {
  CELLAR_ASSIGN_OR_RETURN(Result r,
                          impl_->RunOne(Call{kListVoted, Params()}, false));
  std::vector<uint64_t> ttids;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    ttids.push_back(static_cast<uint64_t>(GetInt8(r.get(), row, 0)));
  }
  return ttids;
}

absl::StatusOr<std::vector<VotedTransaction>> PostgresBackend::ListVotedObjects() {
  CELLAR_ASSIGN_OR_RETURN(Result r,
                          impl_->RunOne(Call{kListVotedObjects, Params()}, false));
  std::map<uint64_t, std::vector<uint64_t>> voted;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    std::vector<uint64_t>& oids = voted[static_cast<uint64_t>(GetInt8(r.get(), row, 0))];
    if (!IsNull(r.get(), row, 1)) {
      oids.push_back(static_cast<uint64_t>(GetInt8(r.get(), row, 1)));
    }
  }
  return SortedVotedTransactions(std::move(voted));
}

absl::StatusOr<uint64_t> PostgresBackend::FindCommittedTid(uint64_t ttid) {
  if (ttid > static_cast<uint64_t>(kMaxInt8)) return uint64_t{0};
  Params params;
  params.Int8(static_cast<int64_t>(ttid));
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kFindCommitted, std::move(params)}, false));
  if (PQntuples(r.get()) == 0) return uint64_t{0};
  return static_cast<uint64_t>(GetInt8(r.get(), 0, 0));
}

absl::StatusOr<LockRecord> PostgresBackend::GetLock(uint64_t ttid) {
  LockRecord lock;
  if (ttid > static_cast<uint64_t>(kMaxInt8)) return lock;
  Params params;
  params.Int8(static_cast<int64_t>(ttid));
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kLockedTid, std::move(params)}, false));
  if (PQntuples(r.get()) == 0) return lock;
  lock.ttid = ttid;
  lock.tid = static_cast<uint64_t>(GetInt8(r.get(), 0, 0));
  const std::string packed = GetBytes(r.get(), 0, 1);
  if (packed.size() % 8 != 0) {
    return absl::InternalError(
        absl::StrCat("corrupt tlock.partitions: ", packed.size(), " bytes"));
  }
  for (uint64_t p : DecodeOids(packed)) {
    if (p > std::numeric_limits<uint32_t>::max()) {
      return absl::InternalError(absl::StrCat("corrupt tlock.partitions: partition ", p));
    }
    lock.partitions.push_back(static_cast<uint32_t>(p));
  }
  return lock;
}

absl::Status PostgresBackend::SetTransactionOids(uint32_t partition, uint64_t tid,
                                                 const std::vector<uint64_t>& oids) {
  if (tid > static_cast<uint64_t>(kMaxInt8) || partition > kMaxInt4) return absl::OkStatus();
  const std::string packed = EncodeOids(oids);
  Params params;
  params.Int4(static_cast<int32_t>(partition)).Int8(static_cast<int64_t>(tid)).Bytea(packed);
  return impl_->RunOne(Call{kSetTransactionOids, std::move(params)}, true).status();
}

absl::Status PostgresBackend::ForgetLocks(const std::vector<uint64_t>& ttids) {
  std::vector<int64_t> values;
  for (uint64_t ttid : ttids) {
    if (ttid <= static_cast<uint64_t>(kMaxInt8)) {
      values.push_back(static_cast<int64_t>(ttid));
    }
  }
  if (values.empty()) return absl::OkStatus();
  Params params;
  params.Int8Array(values);
  return impl_->RunOne(Call{kForgetLocks, std::move(params)}, true).status();
}

absl::StatusOr<std::vector<uint64_t>> PostgresBackend::GetLastSerials(
    uint32_t num_partitions, const std::vector<uint64_t>& oids) {
  if (num_partitions == 0 || num_partitions - 1 > kMaxInt4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GetLastSerials: bad number of partitions ", num_partitions));
  }
  if (oids.empty()) return std::vector<uint64_t>();
  std::vector<int32_t> partitions;
  std::vector<int64_t> signed_oids;
  for (uint64_t oid : oids) {
    CELLAR_RETURN_IF_ERROR(CheckOid(oid));
    partitions.push_back(static_cast<int32_t>(oid % num_partitions));
    signed_oids.push_back(static_cast<int64_t>(oid));
  }
  Params params;
  params.Int4Array(partitions).Int8Array(signed_oids);
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kLastSerials, std::move(params)}, false));
  if (PQntuples(r.get()) != static_cast<int>(oids.size())) {
    return absl::InternalError("postgresql: last_serials: wrong row count");
  }
  std::vector<uint64_t> serials;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    serials.push_back(static_cast<uint64_t>(GetInt8(r.get(), row, 0)));
  }
  return serials;
}

namespace {

// Turns a load_before/load_serial row into a LoadedObject (back-pointer
// targets one hop away are resolved here; longer chains by `resolve`).
template <typename Resolve>
absl::StatusOr<LoadedObject> ReadLoad(const PGresult* r, uint64_t oid,
                                      absl::string_view missing_reason,
                                      absl::string_view missing_message,
                                      Resolve resolve) {
  if (PQntuples(r) != 1) {
    return absl::InternalError("postgresql: load: wrong row count");
  }
  if (IsNull(r, 0, 0)) {
    if (!GetBool(r, 0, 9)) {
      return common::ErrorWithReason(
          absl::StatusCode::kNotFound, common::kReasonNoSuchObject,
          absl::StrCat("oid ", oid, " has no committed revision"));
    }
    return common::ErrorWithReason(absl::StatusCode::kNotFound, missing_reason,
                                   missing_message);
  }
  LoadedObject object;
  object.oid = oid;
  object.serial = static_cast<uint64_t>(GetInt8(r, 0, 0));
  object.data_tid = static_cast<uint64_t>(GetInt8(r, 0, 1));
  object.next_serial = static_cast<uint64_t>(GetInt8(r, 0, 4));
  if (object.data_tid == 0) {
    object.checksum = GetBytes(r, 0, 2);
    object.data = GetBytes(r, 0, 3);
    return object;
  }
  if (IsNull(r, 0, 5)) {
    return absl::DataLossError(absl::StrCat(
        "oid ", oid, " revision ", object.serial,
        ": undo back-pointer to missing revision ", object.data_tid));
  }
  const uint64_t target_data_tid = static_cast<uint64_t>(GetInt8(r, 0, 6));
  if (target_data_tid == 0) {
    object.checksum = GetBytes(r, 0, 7);
    object.data = GetBytes(r, 0, 8);
    return object;
  }
  CELLAR_RETURN_IF_ERROR(
      resolve(target_data_tid, &object.data, &object.checksum));
  return object;
}

}  // namespace

absl::StatusOr<LoadedObject> PostgresBackend::LoadBefore(uint32_t partition,
                                                         uint64_t oid,
                                                         uint64_t before_tid) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  CELLAR_RETURN_IF_ERROR(CheckOid(oid));
  // tid < before_tid, i.e. tid <= before_tid - 1 (-1: nothing qualifies).
  const int64_t max_tid = before_tid == 0 ? -1 : ClampTid(before_tid - 1);
  Params params;
  params.Int4(static_cast<int32_t>(partition))
      .Int8(static_cast<int64_t>(oid))
      .Int8(max_tid);
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kLoadBefore, std::move(params)}, false));
  return ReadLoad(
      r.get(), oid, common::kReasonNoEarlierRevision,
      absl::StrCat("oid ", oid, " has no revision before tid ", before_tid),
      [&](uint64_t data_tid, std::string* data, std::string* checksum) {
        return impl_->ResolveChain(partition, oid, data_tid, data, checksum);
      });
}

absl::StatusOr<LoadedObject> PostgresBackend::LoadSerial(uint32_t partition,
                                                         uint64_t oid,
                                                         uint64_t serial) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  CELLAR_RETURN_IF_ERROR(CheckOid(oid));
  CELLAR_RETURN_IF_ERROR(CheckDataTid(serial));
  Params params;
  params.Int4(static_cast<int32_t>(partition))
      .Int8(static_cast<int64_t>(oid))
      .Int8(static_cast<int64_t>(serial));
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kLoadSerial, std::move(params)}, false));
  return ReadLoad(
      r.get(), oid, common::kReasonNoSuchRevision,
      absl::StrCat("oid ", oid, " has no revision ", serial),
      [&](uint64_t data_tid, std::string* data, std::string* checksum) {
        return impl_->ResolveChain(partition, oid, data_tid, data, checksum);
      });
}

absl::StatusOr<std::vector<HistoryEntry>> PostgresBackend::History(
    uint32_t partition, uint64_t oid, uint32_t limit) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  CELLAR_RETURN_IF_ERROR(CheckOid(oid));
  Params params;
  params.Int4(static_cast<int32_t>(partition))
      .Int8(static_cast<int64_t>(oid))
      .Int8(limit);
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kHistory, std::move(params)}, false));
  std::vector<HistoryEntry> entries;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    HistoryEntry entry;
    entry.serial = static_cast<uint64_t>(GetInt8(r.get(), row, 0));
    entry.data_tid = static_cast<uint64_t>(GetInt8(r.get(), row, 1));
    if (entry.data_tid == 0) {
      entry.size_bytes = static_cast<uint64_t>(GetInt8(r.get(), row, 2));
    } else if (!IsNull(r.get(), row, 4) && GetInt8(r.get(), row, 3) == 0) {
      entry.size_bytes = static_cast<uint64_t>(GetInt8(r.get(), row, 4));
    } else if (!IsNull(r.get(), row, 4)) {
      std::string data, checksum;
      CELLAR_RETURN_IF_ERROR(impl_->ResolveChain(
          partition, oid, static_cast<uint64_t>(GetInt8(r.get(), row, 3)),
          &data, &checksum));
      entry.size_bytes = data.size();
    }
    // A deletion, or an undo back to one (or to a missing revision).
    entry.deleted = entry.size_bytes == 0;
    entries.push_back(entry);
  }
  return entries;
}

absl::StatusOr<std::vector<TransactionRecord>>
PostgresBackend::LastTransactions(uint32_t limit, uint64_t before_tid) {
  const int64_t max_tid = before_tid == 0 ? kMaxInt8 : ClampTid(before_tid - 1);
  Params params;
  params.Int8(max_tid).Int8(limit);
  CELLAR_ASSIGN_OR_RETURN(
      Result r,
      impl_->RunOne(Call{kLastTransactions, std::move(params)}, false));
  std::vector<TransactionRecord> transactions;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    transactions.push_back(ReadTransaction(r.get(), row));
  }
  return transactions;
}

std::optional<PoolUsage> PostgresBackend::GetPoolUsage() { return impl_->Usage(); }

absl::StatusOr<LastIds> PostgresBackend::GetLastIds() {
  CELLAR_ASSIGN_OR_RETURN(Result r,
                          impl_->RunOne(Call{kLastIds, Params()}, false));
  LastIds ids;
  ids.last_tid = static_cast<uint64_t>(GetInt8(r.get(), 0, 0));
  ids.last_oid = static_cast<uint64_t>(GetInt8(r.get(), 0, 1));
  ids.last_ttid = static_cast<uint64_t>(GetInt8(r.get(), 0, 2));
  return ids;
}

absl::StatusOr<BackendStats> PostgresBackend::GetStats() {
  CELLAR_ASSIGN_OR_RETURN(Result r,
                          impl_->RunOne(Call{kStats, Params()}, false));
  BackendStats stats;
  stats.object_count = static_cast<uint64_t>(GetInt8(r.get(), 0, 0));
  stats.transaction_count = static_cast<uint64_t>(GetInt8(r.get(), 0, 1));
  stats.data_bytes = static_cast<uint64_t>(GetInt8(r.get(), 0, 2));
  stats.data_rows = static_cast<uint64_t>(GetInt8(r.get(), 0, 3));
  return stats;
}

absl::StatusOr<std::optional<TransactionRecord>> PostgresBackend::GetTransaction(
    uint64_t tid) {
  CELLAR_RETURN_IF_ERROR(CheckTid(tid, "tid"));
  Params params;
  params.Int8(static_cast<int64_t>(tid));
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kGetTransaction, std::move(params)}, false));
  if (PQntuples(r.get()) == 0) return std::optional<TransactionRecord>();
  return std::optional<TransactionRecord>(ReadTransaction(r.get(), 0));
}

absl::StatusOr<std::vector<TransactionRecord>> PostgresBackend::ScanTransactions(
    uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  if (min_tid > static_cast<uint64_t>(kMaxInt8) || min_tid > max_tid || limit == 0) {
    return std::vector<TransactionRecord>();
  }
  Params params;
  params.Int8(static_cast<int64_t>(min_tid)).Int8(ClampTid(max_tid)).Int8(limit);
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kScanTransactions, std::move(params)}, false));
  std::vector<TransactionRecord> transactions;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    transactions.push_back(ReadTransaction(r.get(), row));
  }
  return transactions;
}

absl::StatusOr<std::vector<PartitionStats>> PostgresBackend::GetPartitionStats() {
  // Folding keeps the table at about one row per partition; it changes no
  // sum, so it is not a data write (no ownership check needed).
  CELLAR_RETURN_IF_ERROR(impl_->RunOne(Call{kFoldPstats, Params()}, false).status());
  CELLAR_ASSIGN_OR_RETURN(Result r,
                          impl_->RunOne(Call{kPartitionStats, Params()}, false));
  std::vector<PartitionStats> out;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    out.push_back(PartitionStats{static_cast<uint32_t>(GetInt8(r.get(), row, 0)),
                                 static_cast<uint64_t>(GetInt8(r.get(), row, 1)),
                                 static_cast<uint64_t>(GetInt8(r.get(), row, 2)),
                                 static_cast<uint64_t>(GetInt8(r.get(), row, 3))});
  }
  return out;
}

absl::StatusOr<std::vector<TransactionRecord>>
PostgresBackend::ListTransactions(uint32_t partition, uint64_t min_tid,
                                  uint64_t max_tid, uint32_t limit) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  if (min_tid > static_cast<uint64_t>(kMaxInt8) || min_tid > max_tid) {
    return std::vector<TransactionRecord>();
  }
  Params params;
  params.Int4(static_cast<int32_t>(partition))
      .Int8(static_cast<int64_t>(min_tid))
      .Int8(ClampTid(max_tid))
      .Int8(limit);
  CELLAR_ASSIGN_OR_RETURN(
      Result r,
      impl_->RunOne(Call{kListTransactions, std::move(params)}, false));
  std::vector<TransactionRecord> transactions;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    transactions.push_back(ReadTransaction(r.get(), row));
  }
  return transactions;
}

absl::StatusOr<std::vector<ObjectRecord>> PostgresBackend::ListObjects(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  if (min_tid > static_cast<uint64_t>(kMaxInt8) || min_tid > max_tid) {
    return std::vector<ObjectRecord>();
  }
  Params params;
  params.Int4(static_cast<int32_t>(partition))
      .Int8(static_cast<int64_t>(min_tid))
      .Int8(ClampTid(max_tid))
      .Int8(limit);
  CELLAR_ASSIGN_OR_RETURN(
      Result r, impl_->RunOne(Call{kListObjects, std::move(params)}, false));
  std::vector<ObjectRecord> objects;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    ObjectRecord object;
    object.partition = static_cast<uint32_t>(GetInt4(r.get(), row, 0));
    object.oid = static_cast<uint64_t>(GetInt8(r.get(), row, 1));
    object.tid = static_cast<uint64_t>(GetInt8(r.get(), row, 2));
    object.data_tid = static_cast<uint64_t>(GetInt8(r.get(), row, 3));
    object.checksum = GetBytes(r.get(), row, 4);
    object.data = GetBytes(r.get(), row, 5);
    objects.push_back(std::move(object));
  }
  return objects;
}

absl::StatusOr<std::vector<ObjectRecord>> PostgresBackend::ListObjectsFrom(
    uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
    uint32_t limit) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  if (min_tid > static_cast<uint64_t>(kMaxInt8) || min_tid > max_tid ||
      limit == 0) {
    return std::vector<ObjectRecord>();
  }
  Params params;
  params.Int4(static_cast<int32_t>(partition))
      .Int8(static_cast<int64_t>(min_tid))
      .Int8(static_cast<int64_t>(min_oid))
      .Int8(ClampTid(max_tid))
      .Int8(limit);
  CELLAR_ASSIGN_OR_RETURN(
      Result r,
      impl_->RunOne(Call{kListObjectsFrom, std::move(params)}, false));
  std::vector<ObjectRecord> objects;
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    ObjectRecord object;
    object.partition = static_cast<uint32_t>(GetInt4(r.get(), row, 0));
    object.oid = static_cast<uint64_t>(GetInt8(r.get(), row, 1));
    object.tid = static_cast<uint64_t>(GetInt8(r.get(), row, 2));
    object.data_tid = static_cast<uint64_t>(GetInt8(r.get(), row, 3));
    object.checksum = GetBytes(r.get(), row, 4);
    object.data = GetBytes(r.get(), row, 5);
    objects.push_back(std::move(object));
  }
  return objects;
}

absl::Status PostgresBackend::ImportCommitted(
    const std::vector<TransactionRecord>& transactions,
    const std::vector<ObjectRecord>& objects) {
  if (transactions.empty() && objects.empty()) return absl::OkStatus();
  std::vector<Call> calls;
  std::deque<std::string> encoded_oids;
  {
    std::vector<int32_t> partitions;
    std::vector<int64_t> tids, ttids, sizes;
    std::vector<bool> packed;
    std::vector<absl::string_view> users, descriptions, extensions, oids;
    size_t batch_bytes = 0;
    auto flush = [&] {
      if (tids.empty()) return;
      Params p;
      p.Int4Array(partitions)
          .Int8Array(tids)
          .Int8Array(ttids)
          .BoolArray(packed)
          .ByteaArray(users)
          .ByteaArray(descriptions)
          .ByteaArray(extensions)
          .ByteaArray(oids)
          .Int8Array(sizes);
      calls.push_back(Call{kImportTrans, std::move(p)});
      partitions.clear();
      tids.clear();
      ttids.clear();
      sizes.clear();
      packed.clear();
      users.clear();
      descriptions.clear();
      extensions.clear();
      oids.clear();
      batch_bytes = 0;
    };
    for (const TransactionRecord& t : transactions) {
      CELLAR_RETURN_IF_ERROR(CheckPartition(t.partition));
      CELLAR_RETURN_IF_ERROR(CheckTid(t.tid, "tid"));
      CELLAR_RETURN_IF_ERROR(CheckDataTid(t.ttid));
      encoded_oids.push_back(EncodeOids(t.oids));
      const size_t bytes = t.user.size() + t.description.size() +
                           t.extension.size() + encoded_oids.back().size() + 64;
      if (batch_bytes + bytes > kMaxBatchBytes) flush();
      partitions.push_back(static_cast<int32_t>(t.partition));
      tids.push_back(static_cast<int64_t>(t.tid));
      ttids.push_back(static_cast<int64_t>(t.ttid));
      packed.push_back(t.packed);
      users.push_back(t.user);
      descriptions.push_back(t.description);
      extensions.push_back(t.extension);
      oids.push_back(encoded_oids.back());
      sizes.push_back(static_cast<int64_t>(t.size_bytes));
      batch_bytes += bytes;
    }
    flush();
  }
  {
    std::vector<int32_t> partitions;
    std::vector<int64_t> oids, tids, data_tids;
    std::vector<absl::string_view> checksums, data;
    size_t batch_bytes = 0;
    auto flush = [&] {
      if (tids.empty()) return;
      Params p;
      p.Int4Array(partitions)
          .Int8Array(oids)
          .Int8Array(tids)
          .Int8Array(data_tids)
          .ByteaArray(checksums)
          .ByteaArray(data);
      calls.push_back(Call{kImportObj, std::move(p)});
      partitions.clear();
      oids.clear();
      tids.clear();
      data_tids.clear();
      checksums.clear();
      data.clear();
      batch_bytes = 0;
    };
    for (const ObjectRecord& o : objects) {
      CELLAR_RETURN_IF_ERROR(CheckPartition(o.partition));
      CELLAR_RETURN_IF_ERROR(CheckOid(o.oid));
      CELLAR_RETURN_IF_ERROR(CheckTid(o.tid, "tid"));
      CELLAR_RETURN_IF_ERROR(CheckDataTid(o.data_tid));
      const size_t bytes = o.data.size() + o.checksum.size() + 64;
      if (batch_bytes + bytes > kMaxBatchBytes) flush();
      partitions.push_back(static_cast<int32_t>(o.partition));
      oids.push_back(static_cast<int64_t>(o.oid));
      tids.push_back(static_cast<int64_t>(o.tid));
      data_tids.push_back(static_cast<int64_t>(o.data_tid));
      checksums.push_back(o.checksum);
      data.push_back(o.data);
      batch_bytes += bytes;
    }
    flush();
  }
  return impl_->Run(calls, true).status();
}

absl::StatusOr<PackChunk> PostgresBackend::PackPartition(uint32_t partition,
                                                         uint64_t pack_tid,
                                                         const PackPosition& from,
                                                         uint32_t max_items) {
  CELLAR_RETURN_IF_ERROR(CheckPackArguments(pack_tid, max_items));
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  const int32_t part = static_cast<int32_t>(partition);
  PackChunk chunk;
  chunk.next = from;
  if (!from.transactions) {
    // The rows are read first and changed by one pipeline after: only
    // rows older than pack_tid go, and no write adds any to a readable
    // cell (new commits have larger tids; replication writes only cells
    // that are not readable, which the node does not pack).
    Params read;
    read.Int4(part).Int8(ClampTid(from.next)).Int8(int64_t{max_items} + 1);
    CELLAR_ASSIGN_OR_RETURN(Result r, impl_->RunOne(Call{kPackRows, std::move(read)}, false));
    std::vector<std::pair<uint64_t, std::vector<PackRow>>> oids;
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      const uint64_t oid = static_cast<uint64_t>(GetInt8(r.get(), row, 0));
      if (oids.empty() || oids.back().first != oid) oids.emplace_back(oid, std::vector<PackRow>());
      oids.back().second.push_back(PackRow{
          static_cast<uint64_t>(GetInt8(r.get(), row, 1)),
          static_cast<uint64_t>(GetInt8(r.get(), row, 2)), GetInt8(r.get(), row, 3),
          GetBytes(r.get(), row, 4), static_cast<uint64_t>(GetInt8(r.get(), row, 5))});
    }
    const bool more = oids.size() > max_items;
    if (more) oids.pop_back();
    std::vector<int64_t> rw_oids, rw_tids, rw_data_tids, rw_data_ids, del_oids, del_tids,
        freed;
    std::vector<bool> rw_take;
    std::vector<std::string> rw_checksums;
    int64_t objects_delta = 0;
    for (const auto& [oid, rows] : oids) {
      OidPackPlan plan = PlanOidPack(rows, pack_tid);
      if (plan.removed_tids.empty()) continue;
      for (const PackRewrite& rw : plan.rewrites) {
        rw_oids.push_back(static_cast<int64_t>(oid));
        rw_tids.push_back(static_cast<int64_t>(rw.tid));
        rw_data_tids.push_back(static_cast<int64_t>(rw.data_tid));
        rw_data_ids.push_back(rw.data_id);
        rw_take.push_back(rw.source_tid != 0);
        rw_checksums.push_back(rw.checksum);
      }
      del_oids.push_back(static_cast<int64_t>(oid));
      del_tids.push_back(static_cast<int64_t>(plan.removed_tids.back()));
      freed.insert(freed.end(), plan.freed_data_ids.begin(), plan.freed_data_ids.end());
      chunk.rows_removed += plan.removed_tids.size();
      chunk.bytes_removed += plan.bytes_freed;
      objects_delta += plan.objects_delta;
    }
    if (chunk.rows_removed != 0) {
      std::vector<absl::string_view> checksums(rw_checksums.begin(), rw_checksums.end());
      std::vector<Call> calls;
      Params rewrite;
      rewrite.Int4(part).Int8Array(rw_oids).Int8Array(rw_tids).Int8Array(rw_data_tids)
          .Int8Array(rw_data_ids).BoolArray(rw_take).ByteaArray(checksums);
      calls.push_back(Call{kPackRewrite, std::move(rewrite)});
      Params del;
      del.Int4(part).Int8Array(del_oids).Int8Array(del_tids);
      calls.push_back(Call{kPackDeleteObj, std::move(del)});
      Params data;
      data.Int8Array(freed);
      calls.push_back(Call{kPackDeleteData, std::move(data)});
      Params stats;
      stats.Int4(part).Int8(objects_delta)
          .Int8(-static_cast<int64_t>(chunk.rows_removed))
          .Int8(-static_cast<int64_t>(chunk.bytes_removed));
      calls.push_back(Call{kPackStats, std::move(stats)});
      CELLAR_RETURN_IF_ERROR(impl_->Run(calls, true).status());
    }
    if (more) {
      chunk.next = PackPosition{false, oids.back().first + 1};
      return chunk;
    }
    chunk.next = PackPosition{true, 0};
  }
  Params list;
  list.Int4(part).Int8(ClampTid(chunk.next.next)).Int8(ClampTid(pack_tid))
      .Int8(int64_t{max_items});
  CELLAR_ASSIGN_OR_RETURN(Result r, impl_->RunOne(Call{kPackListTrans, std::move(list)}, false));
  const int examined = PQntuples(r.get());
  uint64_t last = 0;
  for (int row = 0; row < examined; ++row) {
    last = static_cast<uint64_t>(GetInt8(r.get(), row, 0));
    if (!GetBool(r.get(), row, 1)) ++chunk.transactions_marked;
  }
  if (chunk.transactions_marked != 0) {
    Params mark;
    mark.Int4(part).Int8(ClampTid(chunk.next.next)).Int8(static_cast<int64_t>(last));
    CELLAR_RETURN_IF_ERROR(impl_->RunOne(Call{kPackMarkTrans, std::move(mark)}, true).status());
  }
  if (examined == static_cast<int>(max_items)) {
    chunk.next = PackPosition{true, last + 1};
  } else {
    chunk.done = true;
  }
  return chunk;
}

absl::Status PostgresBackend::DeletePartition(uint32_t partition) {
  CELLAR_RETURN_IF_ERROR(CheckPartition(partition));
  std::vector<Call> calls;
  Params p;
  p.Int4(static_cast<int32_t>(partition));
  calls.push_back(Call{kDeletePartitionObj, std::move(p)});
  Params q;
  q.Int4(static_cast<int32_t>(partition));
  calls.push_back(Call{kDeletePartitionTrans, std::move(q)});
  Params r;
  r.Int4(static_cast<int32_t>(partition));
  calls.push_back(Call{kDeletePartitionPstats, std::move(r)});
  return impl_->Run(calls, true).status();
}

absl::Status PostgresBackend::Truncate(uint64_t tid) {
  std::vector<Call> calls;
  Params p;
  p.Int8(ClampTid(tid));
  calls.push_back(Call{kTruncateObj, std::move(p)});
  Params q;
  q.Int8(ClampTid(tid));
  calls.push_back(Call{kTruncateTrans, std::move(q)});
  calls.push_back(Call{kTruncateTobj, Params()});
  calls.push_back(Call{kTruncateTtrans, Params()});
  Params r;
  r.Int8(ClampTid(tid));
  calls.push_back(Call{kTruncateTlock, std::move(r)});
  // The counts are recomputed (a scan; truncation is rare and offline).
  calls.push_back(Call{kTruncatePstats, Params()});
  calls.push_back(Call{kFillPstats, Params()});
  return impl_->Run(calls, true).status();
}

}  // namespace cellar::storage
