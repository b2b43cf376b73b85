#include "services/master/pg_lease.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace cellar::master {
namespace {

std::string Trim(const char* message) {
  return std::string(absl::StripTrailingAsciiWhitespace(message != nullptr ? message : ""));
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// The table is created once per database; concurrent creators are
// serialized by a transaction-level advisory lock (CREATE TABLE IF NOT
// EXISTS alone can fail when two sessions race on the catalog).
constexpr char kCreateSql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(4242170301);"
    "CREATE TABLE IF NOT EXISTS cellar_master_lease ("
    " cluster text PRIMARY KEY,"
    " holder text NOT NULL,"
    " address text NOT NULL,"
    " epoch bigint NOT NULL,"
    " expires_at timestamptz NOT NULL);"
    "COMMIT";

struct Statement {
  const char* name;
  const char* sql;
};

// $1 cluster, $2 holder, $3 address, $4 lease in ms. A new row starts at
// the server's time in ms; a takeover (expired lease, or our own holder
// starting a new term) gets the previous epoch + 1. Returns the epoch, or
// no row when another holder's lease is live.
constexpr Statement kAcquire = {
    "cellar_lease_acquire",
    "INSERT INTO cellar_master_lease AS l (cluster, holder, address, epoch, expires_at)"
    " VALUES ($1::text, $2::text, $3::text,"
    "   GREATEST(1, floor(extract(epoch FROM now()) * 1000))::bigint,"
    "   now() + $4::bigint * interval '1 millisecond')"
    " ON CONFLICT (cluster) DO UPDATE"
    "   SET holder = EXCLUDED.holder, address = EXCLUDED.address,"
    "       epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at"
    "   WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder"
    " RETURNING epoch"};

// $1 cluster, $2 holder, $3 epoch, $4 lease in ms. Extends a live term of
// ours; no row if the term is over (expired or taken).
constexpr Statement kRenew = {
    "cellar_lease_renew",
    "UPDATE cellar_master_lease"
    " SET expires_at = now() + $4::bigint * interval '1 millisecond'"
    " WHERE cluster = $1::text AND holder = $2::text AND epoch = $3::bigint"
    "   AND expires_at > now()"
    " RETURNING epoch"};

// $1 cluster, $2 holder, $3 epoch. Gives a term back (a standby may take
// over at once); a no-op if the term is no longer ours.
constexpr Statement kRelease = {
    "cellar_lease_release",
    "UPDATE cellar_master_lease SET expires_at = '-infinity'"
    " WHERE cluster = $1::text AND holder = $2::text AND epoch = $3::bigint"};

// $1 cluster. The holder's address and whether its lease is live.
constexpr Statement kLeader = {
    "cellar_lease_leader",
    "SELECT address, expires_at > now() FROM cellar_master_lease WHERE cluster = $1::text"};

constexpr Statement kStatements[] = {kAcquire, kRenew, kRelease, kLeader};

// One libpq connection, (re)opened on demand, with every wait bounded.
// Used by the worker thread only.
class Db {
 public:
  Db(std::string conninfo, absl::Duration timeout)
      : conninfo_(std::move(conninfo)), timeout_(timeout) {}
  ~Db() { Close(); }

  // Runs prepared statement `stmt` with text parameters; returns its
  // (tuples) result. UNAVAILABLE on connection trouble, DEADLINE_EXCEEDED
  // when the call took longer than the timeout (the connection is then
  // dropped), INTERNAL for other SQL errors.
  absl::StatusOr<Result> Exec(const Statement& stmt, const std::vector<std::string>& params) {
    // The server's statement_timeout normally answers first (keeping the
    // session); the client-side bound is the backstop for a dead link.
    const absl::Time deadline =
        LeaseMonoNow() + timeout_ + std::max(timeout_ / 2, absl::Milliseconds(200));
    if (conn_ == nullptr) {
      absl::Status s = Open(deadline);
      if (!s.ok()) return s;
    }
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p.c_str());
    if (PQsendQueryPrepared(conn_, stmt.name, static_cast<int>(values.size()), values.data(),
                            nullptr, nullptr, 0) == 0) {
      return Fail(absl::StrCat(stmt.name, ": ", Trim(PQerrorMessage(conn_))));
    }
    return Collect(stmt.name, deadline);
  }

  void Close() {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }

 private:
  absl::Status Open(absl::Time deadline) {
    // libpq's connect_timeout counts whole seconds (at least 2).
    const std::string connect_timeout = absl::StrCat(
        std::max<int64_t>(2, absl::ToInt64Seconds(timeout_ + absl::Milliseconds(999))));
    // Server-side bound on every statement (a renewal stuck on a row lock
    // gives up on its own); the client-side wait below is the backstop.
    const std::string options =
        absl::StrCat("-c statement_timeout=", absl::ToInt64Milliseconds(timeout_));
    // Ours first: what the connection string says wins.
    const char* keywords[] = {"connect_timeout", "application_name", "options",
                              "keepalives_idle", "keepalives_interval", "keepalives_count",
                              "dbname", nullptr};
    const char* values[] = {connect_timeout.c_str(), "cellar-master/lease", options.c_str(),
                            "5", "2", "2", conninfo_.c_str(), nullptr};
    conn_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (conn_ == nullptr) return absl::ResourceExhaustedError("postgresql: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
      absl::Status s = absl::UnavailableError(
          absl::StrCat("postgresql: cannot connect: ", Trim(PQerrorMessage(conn_))));
      Close();
      return s;
    }
    // "relation already exists, skipping" and the like: not worth a line.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    if (PQsendQuery(conn_, kCreateSql) == 0) {
      return Fail(absl::StrCat("create table: ", Trim(PQerrorMessage(conn_))));
    }
    absl::StatusOr<Result> created = Collect("create table", deadline);
    if (!created.ok()) {
      Close();
      return created.status();
    }
    for (const Statement& stmt : kStatements) {
      if (PQsendPrepare(conn_, stmt.name, stmt.sql, 0, nullptr) == 0) {
        return Fail(absl::StrCat("prepare ", stmt.name, ": ", Trim(PQerrorMessage(conn_))));
      }
      absl::StatusOr<Result> prepared = Collect(stmt.name, deadline);
      if (!prepared.ok()) {
        Close();
        return prepared.status();
      }
    }
    return absl::OkStatus();
  }

  absl::Status Fail(const std::string& message) {
    Close();
    return absl::UnavailableError(absl::StrCat("postgresql: ", message));
  }

  // Waits (bounded) until a result can be read without blocking.
  absl::Status WaitReady(absl::Time deadline, const char* what) {
    while (true) {
      const int flushed = PQflush(conn_);
      if (flushed < 0) return Fail(absl::StrCat(what, ": ", Trim(PQerrorMessage(conn_))));
      if (PQconsumeInput(conn_) == 0) {
        return Fail(absl::StrCat(what, ": ", Trim(PQerrorMessage(conn_))));
      }
      if (flushed == 0 && !PQisBusy(conn_)) return absl::OkStatus();
      const absl::Duration left = deadline - LeaseMonoNow();
      if (left <= absl::ZeroDuration()) {
        if (PGcancel* cancel = PQgetCancel(conn_)) {
          char error[256];
          PQcancel(cancel, error, sizeof error);
          PQfreeCancel(cancel);
        }
        Close();
        return absl::DeadlineExceededError(absl::StrCat(
            "postgresql: ", what, ": no answer within ", absl::FormatDuration(timeout_)));
      }
      pollfd fd{};
      fd.fd = PQsocket(conn_);
      fd.events = static_cast<short>(POLLIN | (flushed == 1 ? POLLOUT : 0));
      ::poll(&fd, 1,
             static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1, 1000)));
    }
  }

  // Reads every result of the query sent; returns the last one.
  absl::StatusOr<Result> Collect(const char* what, absl::Time deadline) {
    Result last;
    absl::Status error;
    while (true) {
      absl::Status ready = WaitReady(deadline, what);
      if (!ready.ok()) return ready;
      Result r(PQgetResult(conn_));
      if (r == nullptr) break;
      const ExecStatusType status = PQresultStatus(r.get());
      if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && error.ok()) {
        const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
        const std::string message =
            absl::StrCat("postgresql: ", what, ": ", Trim(PQresultErrorMessage(r.get())));
        if (state != nullptr && std::string(state) == "57014") {  // statement_timeout
          error = absl::DeadlineExceededError(message);
        } else if (state == nullptr || std::string(state).rfind("08", 0) == 0 ||
                   std::string(state).rfind("57P", 0) == 0 ||
                   std::string(state).rfind("53", 0) == 0 ||
                   std::string(state) == "40001" || std::string(state) == "40P01") {
          error = absl::UnavailableError(message);
        } else {
          error = absl::InternalError(message);
        }
      }
      last = std::move(r);
    }
    if (PQstatus(conn_) != CONNECTION_OK) Close();
    if (!error.ok()) return error;
    return last;
  }

  const std::string conninfo_;
  const absl::Duration timeout_;
  PGconn* conn_ = nullptr;
};

// The lease row's statements (LeaseElection's worker thread only).
class PgBackend final : public LeaseBackend {
 public:
  explicit PgBackend(PostgresLeaseOptions options)
      : options_(std::move(options)), db_(options_.conninfo, options_.db_timeout) {}

  Acquired Acquire() override {
    Acquired out;
    const int64_t lease_ms = absl::ToInt64Milliseconds(options_.lease);
    // The term is counted from before the statement was sent: the server's
    // now() (start of the lease) is later than this.
    out.term_start = LeaseMonoNow();
    absl::StatusOr<Result> r = db_.Exec(
        kAcquire, {options_.cluster, options_.holder, options_.address, absl::StrCat(lease_ms)});
    if (r.ok() && PQntuples(r->get()) == 1) {
      if (!absl::SimpleAtoi(PQgetvalue(r->get(), 0, 0), &out.epoch) || out.epoch == 0) {
        out.epoch = 0;
        out.error = absl::InternalError("election: bad epoch in the lease row");
      }
    } else if (!r.ok()) {
      out.error = r.status();
    }
    if (out.error.ok() && out.epoch == 0) {
      absl::StatusOr<Result> who = db_.Exec(kLeader, {options_.cluster});
      if (who.ok() && PQntuples(who->get()) == 1) {
        out.primary_address =
            std::string(PQgetvalue(who->get(), 0, 1)) == "t" ? PQgetvalue(who->get(), 0, 0) : "";
      } else if (!who.ok()) {
        out.error = who.status();
      }
    }
    return out;
  }

  Renewed Renew(uint64_t epoch) override {
    Renewed out;
    absl::StatusOr<Result> r =
        db_.Exec(kRenew, {options_.cluster, options_.holder, absl::StrCat(epoch),
                          absl::StrCat(absl::ToInt64Milliseconds(options_.lease))});
    if (!r.ok()) {
      out.error = r.status();
    } else if (PQntuples(r->get()) != 1) {
      out.lost = "the lease expired or was taken over";
    }
    return out;
  }

  Released Release(uint64_t epoch) override {
    absl::StatusOr<Result> r =
        db_.Exec(kRelease, {options_.cluster, options_.holder, absl::StrCat(epoch)});
    Released out;
    if (!r.ok()) {
      out.error = r.status();
    } else {
      out.released = true;
    }
    return out;
  }

  void Close() override { db_.Close(); }

 private:
  const PostgresLeaseOptions options_;
  Db db_;
};

// The state machine's timing: a term lasts `lease - margin` from before
// the statement that won or renewed it was sent.
LeaseTiming Timing(const PostgresLeaseOptions& options) {
  LeaseTiming t;
  t.cluster = options.cluster;
  t.description = absl::StrCat("holder ", options.holder);
  t.address = options.address;
  t.term = options.lease - options.step_down_margin;
  t.renew_interval = options.renew_interval;
  t.retry_interval = options.retry_interval;
  t.release_wait = options.db_timeout + absl::Seconds(1);
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresLeaseElection>> PostgresLeaseElection::Create(
    PostgresLeaseOptions options) {
  if (options.conninfo.empty()) {
    return absl::InvalidArgumentError("election: a PostgreSQL connection string is required");
  }
  if (options.cluster.empty()) return absl::InvalidArgumentError("election: cluster required");
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("election: the lease must be positive");
  }
  if (options.renew_interval == absl::ZeroDuration()) options.renew_interval = options.lease / 3;
  if (options.retry_interval == absl::ZeroDuration()) options.retry_interval = options.lease / 3;
  if (options.step_down_margin == absl::ZeroDuration()) {
    options.step_down_margin = options.lease / 5;
  }
  if (options.db_timeout == absl::ZeroDuration()) options.db_timeout = options.lease / 3;
  if (options.step_down_margin < absl::ZeroDuration() ||
      options.step_down_margin >= options.lease) {
    return absl::InvalidArgumentError(absl::StrCat(
        "election: the step-down margin (", absl::FormatDuration(options.step_down_margin),
        ") must be shorter than the lease (", absl::FormatDuration(options.lease), ")"));
  }
  if (options.renew_interval <= absl::ZeroDuration() ||
      options.renew_interval >= options.lease - options.step_down_margin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "election: renew every ", absl::FormatDuration(options.renew_interval),
        " can't keep a lease of ", absl::FormatDuration(options.lease), " with a margin of ",
        absl::FormatDuration(options.step_down_margin)));
  }
  if (options.retry_interval <= absl::ZeroDuration() ||
      options.db_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("election: intervals must be positive");
  }
  if (options.holder.empty()) {
    options.holder = DefaultLeaseHolder(options.address);
  }
  return std::unique_ptr<PostgresLeaseElection>(new PostgresLeaseElection(std::move(options)));
}

PostgresLeaseElection::PostgresLeaseElection(PostgresLeaseOptions options)
    : LeaseElection(Timing(options), std::make_unique<PgBackend>(options)),
      options_(std::move(options)) {}

PostgresLeaseElection::~PostgresLeaseElection() = default;

}  // namespace cellar::master
