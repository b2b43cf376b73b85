// Micro-benchmarks of SqliteBackend: group-committed writes and loads.
//   bazel run -c opt //services/storage/backend/sqlite:sqlite_backend_benchmark
// The database lives in $TEST_TMPDIR or $TMPDIR (default /tmp); note that
// commit numbers depend on the fsync cost of that file system.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>

#include "absl/strings/str_cat.h"
#include "services/storage/backend/sqlite/sqlite_backend.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {
namespace {

constexpr uint32_t kPartitions = 12;
constexpr uint64_t kTidBase = 0x03f1000000000000;

std::string TempPath(absl::string_view tag) {
  const char* dir = std::getenv("TEST_TMPDIR");
  if (dir == nullptr) dir = std::getenv("TMPDIR");
  if (dir == nullptr) dir = "/tmp";
  static int n = 0;
  return absl::StrCat(dir, "/cellar_bench_", tag, "_", ::getpid(), "_", n++,
                      ".db");
}

void RemoveDb(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
    std::remove((path + suffix).c_str());
  }
}

std::unique_ptr<StorageBackend> OpenOrDie(const std::string& path) {
  SqliteBackend::Options options;
  options.path = path;
  auto backend = SqliteBackend::Open(options);
  if (!backend.ok()) {
    std::fprintf(stderr, "open %s: %s\n", path.c_str(),
                 backend.status().ToString().c_str());
    std::abort();
  }
  return *std::move(backend);
}

VoteRecord MakeVote(uint64_t ttid, uint64_t oid, const std::string& data) {
  VoteRecord v;
  v.ttid = ttid;
  ObjectRecord o;
  o.partition = oid % kPartitions;
  o.oid = oid;
  o.data = data;
  o.checksum = std::string(20, 'c');
  v.objects.push_back(o);
  TransactionRecord t;
  t.partition = ttid % kPartitions;
  t.ttid = ttid;
  t.oids = {oid};
  v.transaction = t;
  return v;
}

// Commits `revisions` rounds of one revision of each of oids 1..objects
// (one transaction each, a round per group commit); the last tid.
uint64_t Fill(StorageBackend& backend, uint64_t objects, int revisions,
              const std::string& data) {
  uint64_t tid = kTidBase;
  for (int rev = 0; rev < revisions; ++rev) {
    std::vector<VoteRecord> votes;
    std::vector<LockRecord> locks;
    for (uint64_t oid = 1; oid <= objects; ++oid) {
      ++tid;
      votes.push_back(MakeVote(tid, oid, data));
      locks.push_back({tid, tid});
    }
    if (!backend.StoreVotes(votes).ok() || !backend.LockTransactions(locks).ok()) {
      std::abort();
    }
  }
  return tid;
}

// One group commit of state.range(0) transactions (1 KiB object each):
// StoreVotes + LockTransactions, i.e. two fsyncs per batch.
void BM_GroupCommit(benchmark::State& state) {
  const std::string path = TempPath("commit");
  auto backend = OpenOrDie(path);
  const std::string data(1024, 'x');
  const int batch = static_cast<int>(state.range(0));
  uint64_t next = 1;
  for (auto _ : state) {
    std::vector<VoteRecord> votes;
    std::vector<LockRecord> locks;
    for (int i = 0; i < batch; ++i, ++next) {
      votes.push_back(MakeVote(kTidBase + next, next, data));
      locks.push_back({kTidBase + next, kTidBase + next});
    }
    if (!backend->StoreVotes(votes).ok() ||
        !backend->LockTransactions(locks).ok()) {
      state.SkipWithError("commit failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  backend.reset();
  RemoveDb(path);
}
BENCHMARK(BM_GroupCommit)->Arg(1)->Arg(16)->Arg(128)->UseRealTime();

// LoadBefore of random objects among 10k with 4 revisions each.
class LoadFixture : public benchmark::Fixture {
 public:
  static constexpr uint64_t kObjects = 10000;

  void SetUp(const benchmark::State& state) override {
    if (state.thread_index() != 0) return;
    path_ = TempPath("load");
    backend_ = OpenOrDie(path_);
    Fill(*backend_, kObjects, 4, std::string(1024, 'y'));
  }

  void TearDown(const benchmark::State& state) override {
    if (state.thread_index() != 0) return;
    backend_.reset();
    RemoveDb(path_);
  }

 protected:
  std::string path_;
  std::unique_ptr<StorageBackend> backend_;
};

BENCHMARK_DEFINE_F(LoadFixture, LoadBefore)(benchmark::State& state) {
  uint64_t x = 88172645463325252ull + state.thread_index();  // xorshift
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const uint64_t oid = 1 + x % kObjects;
    auto loaded =
        backend_->LoadBefore(oid % kPartitions, oid, ~uint64_t{0});
    if (!loaded.ok()) {
      state.SkipWithError("load failed");
      break;
    }
    benchmark::DoNotOptimize(loaded->data.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_REGISTER_F(LoadFixture, LoadBefore)
    ->Threads(1)
    ->Threads(4)
    ->UseRealTime();

// Pack of 10k objects with 5 revisions of 1 KiB each (50k revisions) at
// the last tid: 40k revisions removed, in chunks of state.range(0) oids
// (one write transaction each), partition after partition. Items: the
// revisions removed per second.
void BM_Pack(benchmark::State& state) {
  constexpr uint64_t kObjects = 10000;
  const uint32_t chunk = static_cast<uint32_t>(state.range(0));
  uint64_t removed = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = TempPath("pack");
    auto backend = OpenOrDie(path);
    const uint64_t tid = Fill(*backend, kObjects, 5, std::string(1024, 'p'));
    state.ResumeTiming();
    for (uint32_t p = 0; p < kPartitions; ++p) {
      PackPosition at;
      for (;;) {
        auto done = backend->PackPartition(p, tid, at, chunk);
        if (!done.ok()) {
          state.SkipWithError("pack failed");
          return;
        }
        removed += done->rows_removed;
        if (done->done) break;
        at = done->next;
      }
    }
    state.PauseTiming();
    backend.reset();
    RemoveDb(path);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(removed));
}
BENCHMARK(BM_Pack)->Arg(100)->Arg(500)->Iterations(1)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace cellar::storage

BENCHMARK_MAIN();
