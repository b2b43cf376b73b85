#include "tools/prometheus/load_generator.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/common/channel.h"

namespace cellar::tools {
namespace {

// Atomic counterparts of LoadReport's fields.
struct Counters {
  std::atomic<uint64_t> commits{0}, conflicts{0}, commit_errors{0}, loads{0},
      loads_not_found{0}, load_errors{0}, admin_calls{0}, admin_errors{0}, packs{0};
  // The newest tid committed by any worker.
  std::atomic<uint64_t> last_tid{0};
  absl::Mutex mu;
  std::string first_error ABSL_GUARDED_BY(mu);

  // Counts an unexpected error in `counter` and keeps the first message.
  void Error(std::atomic<uint64_t>& counter, const char* what, const absl::Status& status) {
    ++counter;
    absl::MutexLock l(&mu);
    if (first_error.empty()) first_error = absl::StrCat(what, ": ", status.ToString());
  }
};

// The hot set: objects every worker updates, with the serial each was
// created with (stale once the object was updated).
struct HotObject {
  uint64_t oid = 0;
  uint64_t first_serial = 0;
};

client::ClientOptions ClientOptionsFor(const LoadOptions& options) {
  client::ClientOptions c;
  c.master_addresses = {options.master_address};
  c.cluster_name = options.cluster_name;
  c.cache_bytes = 0;  // every load reaches a storage
  c.rpc_timeout = options.rpc_timeout;
  c.connect_timeout = options.rpc_timeout;
  c.commit_wait_timeout = options.rpc_timeout;
  return c;
}

std::string Payload(int worker, uint64_t i) {
  std::string data = absl::StrCat("cellar-load worker ", worker, " op ", i, " ");
  data.resize(256, 'x');
  return data;
}

void CountCommit(const absl::StatusOr<uint64_t>& tid, Counters* counters) {
  if (tid.ok()) {
    ++counters->commits;
    uint64_t seen = counters->last_tid.load();
    while (seen < *tid && !counters->last_tid.compare_exchange_weak(seen, *tid)) {
    }
  } else if (tid.status().code() == absl::StatusCode::kAborted) {
    ++counters->conflicts;
  } else {
    counters->Error(counters->commit_errors, "commit", tid.status());
  }
}

void Worker(int index, const LoadOptions& options, client::Client* c,
            const std::vector<HotObject>& hot, absl::Time deadline, Counters* counters) {
  std::mt19937_64 rng(static_cast<uint64_t>(index) * 7919 + 1);
  uint64_t updates = 0;
  for (uint64_t i = 0; absl::Now() < deadline; ++i) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 5) {
      // Read-modify-write of a hot object: concurrent workers conflict now
      // and then; every stale_every-th update uses a stale serial.
      const HotObject& h = hot[rng() % hot.size()];
      uint64_t base = 0;
      const bool stale = options.stale_every > 0 && ++updates % options.stale_every == 0;
      absl::StatusOr<client::LoadResult> current = c->Load(h.oid);
      ++counters->loads;
      if (!current.ok()) {
        counters->Error(counters->load_errors, "load", current.status());
        continue;
      }
      base = current->serial;
      if (stale && h.first_serial != current->serial) base = h.first_serial;
      auto txn = c->NewTransaction();
      txn->SetUser("cellar-load");
      txn->Store(h.oid, base, Payload(index, i));
      CountCommit(txn->Commit(), counters);
    } else if (op < 7) {
      // A new object.
      absl::StatusOr<uint64_t> oid = c->NewOid();
      if (!oid.ok()) {
        counters->Error(counters->commit_errors, "new oid", oid.status());
        continue;
      }
      auto txn = c->NewTransaction();
      txn->Store(*oid, 0, Payload(index, i));
      CountCommit(txn->Commit(), counters);
    } else if (op < 9) {
      absl::StatusOr<client::LoadResult> r = c->Load(hot[rng() % hot.size()].oid);
      ++counters->loads;
      if (!r.ok()) counters->Error(counters->load_errors, "load", r.status());
    } else {
      // An oid that was allocated but never stored: NOT_FOUND.
      absl::StatusOr<uint64_t> oid = c->NewOid();
      if (!oid.ok()) continue;
      absl::StatusOr<client::LoadResult> r = c->Load(*oid);
      ++counters->loads;
      if (r.status().code() == absl::StatusCode::kNotFound) {
        ++counters->loads_not_found;
      } else if (!r.ok()) {
        counters->Error(counters->load_errors, "load of a missing object", r.status());
      }
    }
  }
}

void AdminLoop(const LoadOptions& options, absl::Time halfway, absl::Time deadline,
               Counters* counters) {
  auto stub = cellar::v1::Admin::NewStub(common::MakeChannel(options.admin_address));
  bool packed = !options.pack;
  for (int i = 0; absl::Now() < deadline; ++i) {
    grpc::ClientContext context;
    common::SetDeadline(&context, options.rpc_timeout);
    grpc::Status s;
    if (!packed && absl::Now() >= halfway && counters->last_tid.load() != 0) {
      // Everything the workers replaced before now goes.
      packed = true;
      cellar::v1::AdminPackRequest request;
      request.set_pack_tid(counters->last_tid.load());
      cellar::v1::AdminPackResponse response;
      s = stub->Pack(&context, request, &response);
      if (s.ok()) ++counters->packs;
      ++counters->admin_calls;
      if (!s.ok()) {
        counters->Error(counters->admin_errors, "admin pack",
                        absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                                     s.error_message()));
      }
      continue;
    }
    switch (i % 3) {
      case 0: {
        cellar::v1::GetClusterStatusResponse response;
        s = stub->GetClusterStatus(&context, {}, &response);
        break;
      }
      case 1: {
        cellar::v1::ListNodesResponse response;
        s = stub->ListNodes(&context, {}, &response);
        break;
      }
      default: {
        cellar::v1::GetPartitionTableResponse response;
        s = stub->GetPartitionTable(&context, {}, &response);
        break;
      }
    }
    ++counters->admin_calls;
    if (!s.ok()) {
      counters->Error(counters->admin_errors, "admin",
                      absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                                   s.error_message()));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

}  // namespace

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options) {
  if (options.threads < 1 || options.hot_objects < 1) {
    return absl::InvalidArgumentError("threads and hot_objects must be at least 1");
  }
  const absl::Time start = absl::Now();
  std::vector<std::unique_ptr<client::Client>> clients;
  for (int i = 0; i < options.threads; ++i) {
    absl::StatusOr<std::unique_ptr<client::Client>> c =
        client::Client::Connect(ClientOptionsFor(options));
    if (!c.ok()) return c.status();
    clients.push_back(*std::move(c));
  }

  // The hot set, created in one transaction.
  std::vector<HotObject> hot(options.hot_objects);
  auto txn = clients[0]->NewTransaction();
  txn->SetDescription("cellar-load hot set");
  for (HotObject& h : hot) {
    absl::StatusOr<uint64_t> oid = clients[0]->NewOid();
    if (!oid.ok()) return oid.status();
    h.oid = *oid;
    txn->Store(h.oid, 0, "hot");
  }
  absl::StatusOr<uint64_t> tid = txn->Commit();
  if (!tid.ok()) return tid.status();
  for (HotObject& h : hot) h.first_serial = *tid;
  // Every session must see the hot set before loading it (a snapshot older
  // than its commit answers NOT_FOUND, NO_EARLIER_REVISION).
  for (auto& c : clients) {
    if (absl::Status s = c->Sync(); !s.ok()) return s;
  }

  Counters counters;
  ++counters.commits;
  const absl::Time deadline = start + options.duration;
  std::vector<std::thread> threads;
  for (int i = 0; i < options.threads; ++i) {
    threads.emplace_back(Worker, i, std::cref(options), clients[i].get(), std::cref(hot),
                         deadline, &counters);
  }
  if (!options.admin_address.empty()) {
    threads.emplace_back(AdminLoop, std::cref(options), start + options.duration / 2, deadline,
                         &counters);
  }
  for (std::thread& t : threads) t.join();
  for (auto& c : clients) c->Close();

  LoadReport report;
  report.commits = counters.commits;
  report.conflicts = counters.conflicts;
  report.commit_errors = counters.commit_errors;
  report.loads = counters.loads;
  report.loads_not_found = counters.loads_not_found;
  report.load_errors = counters.load_errors;
  report.admin_calls = counters.admin_calls;
  report.admin_errors = counters.admin_errors;
  report.packs = counters.packs;
  report.elapsed = absl::Now() - start;
  {
    absl::MutexLock l(&counters.mu);
    report.first_error = counters.first_error;
  }
  return report;
}

std::string FormatReport(const LoadReport& r) {
  const double seconds = std::max(absl::ToDoubleSeconds(r.elapsed), 1e-9);
  return absl::StrFormat(
      "%d commits (%.1f/s), %d conflicts, %d commit errors, %d loads (%.1f/s, %d not "
      "found, %d errors), %d admin calls (%d errors, %d packs) in %.1f s",
      r.commits, r.commits / seconds, r.conflicts, r.commit_errors, r.loads,
      r.loads / seconds, r.loads_not_found, r.load_errors, r.admin_calls, r.admin_errors,
      r.packs, seconds) +
         (r.first_error.empty() ? "" : absl::StrCat("; first error: ", r.first_error));
}

}  // namespace cellar::tools
