// Instruction counts per operation under valgrind's callgrind: starts a
// whole cluster in this process (tools/local/local_cluster.h: master, 2
// SQLite storages, replicas 1, like the bench defaults; PostgreSQL
// databases with --pg), warms up, then runs exactly --n operations of one
// kind from 1 client, sequentially, between CALLGRIND_START_INSTRUMENTATION
// and CALLGRIND_STOP_INSTRUMENTATION. Run it as
//   valgrind --tool=callgrind --instr-atstart=no callgrind_driver --op=tiny_commit --n=200
// so only the measured loop is counted, in every thread of the process
// (client and servers). Instrumentation is global; callgrind's "collect"
// state (CALLGRIND_TOGGLE_COLLECT, --collect-atstart) is per thread and
// would miss the server threads, hence --instr-atstart=no.
// tools/bench/callgrind runs it and prints the table; docs/performance.md.
//
// Operations (inputs are deterministic: fixed sizes, fixed seed):
//   tiny_commit    a transaction of 1 new object of --object_bytes
//   bulk_commit    a transaction of --bulk_objects new objects
//   load_uncached  Load() of a random object (seeded) of --load_objects
//                  written before (client cache disabled), checked
//   idle           1 s of sleep (N seconds in all): the background work
//                  (heartbeats, timers, replication loops) per second,
//                  which every run also counts for as long as it lasts
// Outside valgrind the instrumentation macros do nothing: the driver then
// just runs the loop and prints its wall time, and (both ways) the user and
// system CPU and context switches of the whole process per operation
// (getrusage; docs/performance.md, "Tenth session").
//
// This file and its BUILD.bazel are self-contained (only public targets)
// so that tools/bench/callgrind can copy them into a worktree of an older
// commit and build the same driver there. Keep to APIs both have.
// callgrind_driver_secure is the same file with CELLAR_CALLGRIND_SECURE:
// its --secure runs the cluster with TLS, mTLS and tokens (the auth + TLS
// cost, docs/performance.md); an older tree need not build it.

#include <sys/resource.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "services/common/logging.h"
#ifdef CELLAR_CALLGRIND_SECURE
#include "tools/credentials/throwaway_credentials.h"
#endif
#include "tools/local/local_cluster.h"
#include "tools/pgserver/throwaway_postgres.h"

ABSL_FLAG(std::string, op, "tiny_commit",
          "tiny_commit, bulk_commit, load_uncached, or idle (--n seconds of background work)");
ABSL_FLAG(int, n, 100, "Measured operations");
ABSL_FLAG(int, warmup, 50, "Operations of the same kind before the measured ones");
ABSL_FLAG(int, storages, 2, "Storage nodes");
ABSL_FLAG(uint32_t, replicas, 1, "Replicas (copies = replicas + 1)");
ABSL_FLAG(uint32_t, partitions, 12, "Partitions");
ABSL_FLAG(int, object_bytes, 300, "Bytes per object");
ABSL_FLAG(int, bulk_objects, 100, "Objects per bulk transaction");
ABSL_FLAG(int, load_objects, 1000, "Objects written before load_uncached");
ABSL_FLAG(std::string, pg, "",
          "libpq conninfo of a PostgreSQL server (superuser): the storages use fresh "
          "databases on it instead of SQLite files");
ABSL_FLAG(int, pg_writer_threads, 4, "Group-commit writer threads per PostgreSQL storage");
ABSL_FLAG(std::string, tmp_dir, "", "Parent of the temporary SQLite directory ($TMPDIR)");
ABSL_FLAG(bool, verbose, false, "Show the cluster's INFO logs");
#ifdef CELLAR_CALLGRIND_SECURE
ABSL_FLAG(bool, secure, false,
          "Secure the cluster like `cellar local --secure`: TLS on every port, mTLS between "
          "the nodes, tokens (each node its own authenticator); the client sends a token "
          "over TLS");
ABSL_FLAG(bool, secure_tls, true,
          "With --secure: TLS and mTLS too (false: tokens and the cluster secret over "
          "plaintext, to tell the cost of authentication from that of TLS)");
#endif
ABSL_FLAG(bool, absl_deadlock_detection, true,
          "Leave Abseil's mutex deadlock detection as the library has it (on in Debian's "
          "build, as in every cellar binary); false: turn it off, to measure what it costs");

namespace {

using cellar::client::Client;

#define DRIVER_RETURN_IF_ERROR(expr)      \
  do {                                    \
    absl::Status _s = (expr);             \
    if (!_s.ok()) return _s;              \
  } while (0)

// Deterministic contents of object `oid`: `size` bytes.
std::string ObjectData(uint64_t oid, int size) {
  std::string data(size, '\0');
  uint64_t x = oid * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data[i] = static_cast<char>('a' + x % 26);
  }
  return data;
}

struct Written {
  uint64_t oid;
  uint64_t tid;
};

class Driver {
 public:
  Driver(Client* client, int object_bytes) : client_(client), object_bytes_(object_bytes) {}

  // One transaction of `objects` new objects.
  absl::Status Commit(int objects) {
    oids_.clear();
    std::unique_ptr<cellar::client::Transaction> txn = client_->NewTransaction();
    for (int i = 0; i < objects; ++i) {
      absl::StatusOr<uint64_t> oid = client_->NewOid();
      if (!oid.ok()) return oid.status();
      oids_.push_back(*oid);
      txn->Store(*oid, /*base_serial=*/0, ObjectData(*oid, object_bytes_));
    }
    absl::StatusOr<uint64_t> tid = txn->Commit();
    if (!tid.ok()) return tid.status();
    for (uint64_t oid : oids_) written_.push_back({oid, *tid});
    return absl::OkStatus();
  }

  // Load() of a random written object, checked.
  absl::Status Load() {
    const Written& w = written_[pick_(random_)];
    absl::StatusOr<cellar::client::LoadResult> r = client_->Load(w.oid);
    if (!r.ok()) return r.status();
    if (r->serial != w.tid || r->data != ObjectData(w.oid, object_bytes_)) {
      return absl::DataLossError(absl::StrCat("oid ", w.oid, ": serial ", r->serial,
                                              " (committed as ", w.tid, ") or data differ"));
    }
    return absl::OkStatus();
  }

  void PrepareLoads() { pick_ = std::uniform_int_distribution<size_t>(0, written_.size() - 1); }

 private:
  Client* const client_;
  const int object_bytes_;
  std::vector<uint64_t> oids_;
  std::vector<Written> written_;
  std::mt19937_64 random_{42};
  std::uniform_int_distribution<size_t> pick_;
};

absl::Status Run(const std::string& op, int n, int warmup) {
  const int storages = absl::GetFlag(FLAGS_storages);
  const int object_bytes = absl::GetFlag(FLAGS_object_bytes);
  const int bulk_objects = absl::GetFlag(FLAGS_bulk_objects);
  const std::string pg = absl::GetFlag(FLAGS_pg);

  cellar::tools::LocalClusterOptions options;
  options.storages = storages;
  options.replicas = absl::GetFlag(FLAGS_replicas);
  options.partitions = absl::GetFlag(FLAGS_partitions);
  options.writer_threads = 1;
  options.start_timeout = absl::Seconds(300);  // slow under valgrind

  std::string tmp = absl::GetFlag(FLAGS_tmp_dir);
  if (tmp.empty()) tmp = std::filesystem::temp_directory_path().string();
  const std::string dir = absl::StrCat(tmp, "/cellar-callgrind-", ::getpid());
  std::vector<std::string> databases;
  if (pg.empty()) {
    std::filesystem::create_directories(dir);
    for (int i = 0; i < storages; ++i) {
      options.storage_backends.push_back(absl::StrCat("sqlite://", dir, "/storage-", i, ".db"));
    }
  } else {
    options.writer_threads = absl::GetFlag(FLAGS_pg_writer_threads);
    for (int i = 0; i < storages; ++i) {
      const std::string name = absl::StrCat("cellar_callgrind_", ::getpid(), "_s", i);
      absl::StatusOr<std::string> conninfo = cellar::tools::CreatePostgresDatabase(pg, name);
      if (!conninfo.ok()) return conninfo.status();
      databases.push_back(name);
      options.storage_backends.push_back(*conninfo);
    }
  }
  options.data_dir = dir;
  std::string token;
  std::optional<cellar::common::TlsClientConfig> client_tls;
#ifdef CELLAR_CALLGRIND_SECURE
  if (absl::GetFlag(FLAGS_secure)) {
    const std::string secure = dir + "/secure";
    std::filesystem::create_directories(secure);
    if (absl::Status s = cellar::tools::WriteThrowawayAuth(secure, "callgrind_driver"); !s.ok()) {
      return s;
    }
    if (absl::Status s = cellar::tools::WriteThrowawayTls(secure); !s.ok()) return s;
    if (absl::Status s = cellar::tools::ThrowawayAuthSetup(secure).status(); !s.ok()) return s;
    const bool with_tls = absl::GetFlag(FLAGS_secure_tls);
    options.make_auth = [secure, with_tls] {
      cellar::common::AuthSetup setup = *cellar::tools::ThrowawayAuthSetup(secure);
      if (!with_tls) {
        setup.tls_server.reset();
        setup.tls_client.reset();
      }
      return setup;
    };
    std::ifstream in(secure + "/client.token");
    in >> token;
    cellar::common::TlsClientConfig tls;
    tls.ca_file = secure + "/tls/ca.pem";
    if (with_tls) client_tls = tls;
  }
#endif

  std::cerr << "[callgrind_driver] starting a cluster (" << storages << " storages on "
            << (pg.empty() ? "SQLite" : "PostgreSQL") << ", " << options.replicas
            << " replica(s), " << options.partitions << " partitions"
            << (client_tls.has_value() ? ", TLS + tokens" : "") << ")" << std::endl;
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<cellar::tools::LocalCluster>> cluster =
        cellar::tools::LocalCluster::Start(options);
    if (!cluster.ok()) return cluster.status();
    cellar::client::ClientOptions client_options;
    client_options.master_addresses = {(*cluster)->master_address()};
    client_options.cluster_name = options.cluster_name;
    client_options.cache_bytes = 0;  // every load goes to a storage
    client_options.token = token;
    client_options.tls = client_tls;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(client_options));
    if (!client.ok()) return client.status();
    Driver driver(client->get(), object_bytes);

    std::function<absl::Status()> one;
    std::function<absl::Status()> warm;  // the warm-up operation
    if (op == "tiny_commit") {
      one = [&] { return driver.Commit(1); };
    } else if (op == "bulk_commit") {
      one = [&] { return driver.Commit(bulk_objects); };
    } else if (op == "load_uncached") {
      const int load_objects = std::max(1, absl::GetFlag(FLAGS_load_objects));
      std::cerr << "[callgrind_driver] writing " << load_objects << " objects to load"
                << std::endl;
      for (int written = 0; written < load_objects; written += bulk_objects) {
        DRIVER_RETURN_IF_ERROR(driver.Commit(std::min(bulk_objects, load_objects - written)));
      }
      driver.PrepareLoads();
      one = [&] { return driver.Load(); };
    }
    if (op == "idle") {
      // Background work only (heartbeats, timers): 1 s per "operation",
      // after tiny commits as warm-up.
      one = [] {
        absl::SleepFor(absl::Seconds(1));
        return absl::OkStatus();
      };
      warm = [&] { return driver.Commit(1); };
    } else {
      warm = one;
    }
    std::cerr << "[callgrind_driver] warm-up: " << warmup << " x "
              << (op == "idle" ? "tiny_commit" : op) << std::endl;
    for (int i = 0; i < warmup; ++i) DRIVER_RETURN_IF_ERROR(warm());

    std::cerr << "[callgrind_driver] measured: " << n << " x " << op << std::endl;
    const absl::Time start = absl::Now();
    struct rusage before {};
    getrusage(RUSAGE_SELF, &before);
    CALLGRIND_START_INSTRUMENTATION;
    absl::Status loop = absl::OkStatus();
    for (int i = 0; i < n && loop.ok(); ++i) loop = one();
    CALLGRIND_STOP_INSTRUMENTATION;
    struct rusage after {};
    getrusage(RUSAGE_SELF, &after);
    const absl::Duration elapsed = absl::Now() - start;
    DRIVER_RETURN_IF_ERROR(loop);
    // The whole process (every thread: client and servers) during the
    // loop, per operation: user and system CPU, voluntary context switches
    // (a thread blocked: futex waits, epoll, I/O) and involuntary ones
    // (preempted). Meaningful natively; under valgrind the CPU is
    // valgrind's and its threads are serialised.
    auto micros = [](const struct timeval& a, const struct timeval& b) {
      return (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_usec - a.tv_usec);
    };
    std::cerr << "[callgrind_driver] per " << op << ": user "
              << micros(before.ru_utime, after.ru_utime) / n << " us, system "
              << micros(before.ru_stime, after.ru_stime) / n << " us, voluntary switches "
              << static_cast<double>(after.ru_nvcsw - before.ru_nvcsw) / n
              << ", involuntary " << static_cast<double>(after.ru_nivcsw - before.ru_nivcsw) / n
              << std::endl;
    // tools/bench/callgrind reads the seconds from this line.
    std::cerr << "[callgrind_driver] " << n << " x " << op << " in "
              << absl::ToDoubleSeconds(elapsed) << " s ("
              << (RUNNING_ON_VALGRIND ? "under valgrind" : "native") << ")" << std::endl;
    (*client)->Close();
    (*cluster)->Shutdown();
    return absl::OkStatus();
  }();
  for (const std::string& name : databases) {
    cellar::tools::DropPostgresDatabase(pg, name).IgnoreError();
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "callgrind_driver --op=tiny_commit|bulk_commit|load_uncached --n=N [--pg=CONNINFO]: "
      "N operations between CALLGRIND_START/STOP_INSTRUMENTATION");
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_verbose)) {
    cellar::common::SetMinLogSeverity(cellar::common::LogSeverity::kWarning);
  }
  if (!absl::GetFlag(FLAGS_absl_deadlock_detection)) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  const std::string op = absl::GetFlag(FLAGS_op);
  if (op != "tiny_commit" && op != "bulk_commit" && op != "load_uncached" && op != "idle") {
    std::cerr << "callgrind_driver: unknown --op=" << op << std::endl;
    return 1;
  }
  const int n = absl::GetFlag(FLAGS_n);
  if (n <= 0 || absl::GetFlag(FLAGS_warmup) < 0) {
    std::cerr << "callgrind_driver: --n must be positive, --warmup not negative" << std::endl;
    return 1;
  }
  absl::Status status = Run(op, n, absl::GetFlag(FLAGS_warmup));
  if (!status.ok()) {
    std::cerr << "callgrind_driver: " << status << std::endl;
    return 1;
  }
  return 0;
}
