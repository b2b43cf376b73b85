#include "tools/cluster/checker/workload.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/errors.h"
#include "services/common/logging.h"

namespace cellar::tools::checker {
namespace {

constexpr size_t kLockBatch = 50;

bool Retryable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kFailedPrecondition ||
         s.code() == absl::StatusCode::kAborted;
}

// Reads `oids` at one snapshot into op.reads; false (op failed) on error.
bool ReadAtSnapshot(client::Client& c, const std::vector<uint64_t>& oids, Operation& op) {
  op.snapshot = c.snapshot();
  for (uint64_t oid : oids) {
    absl::StatusOr<client::LoadResult> r = c.LoadBefore(oid, op.snapshot + 1);
    if (!r.ok()) {
      op.outcome = Outcome::kFailed;
      op.error = r.status().ToString();
      op.reads.clear();
      return false;
    }
    op.reads.push_back(ReadValue{oid, r->serial, r->data});
  }
  return true;
}

}  // namespace

Workload::Workload(WorkloadOptions options, History* history)
    : options_(std::move(options)), history_(history) {}

Workload::~Workload() { Stop(); }

absl::StatusOr<std::unique_ptr<Workload>> Workload::Create(WorkloadOptions options,
                                                           History* history) {
  std::unique_ptr<Workload> w(new Workload(std::move(options), history));
  const WorkloadOptions& o = w->options_;
  if (o.clients < 1 || o.accounts < 2 || o.lists < 1) {
    return absl::InvalidArgumentError("need at least 1 client, 2 accounts and 1 list");
  }
  for (int i = 0; i < o.clients; ++i) {
    absl::StatusOr<std::unique_ptr<client::Client>> c = client::Client::Connect(o.client);
    if (!c.ok()) return common::Annotate(c.status(), absl::StrCat("client ", i, " connect"));
    w->clients_.push_back(std::move(*c));
  }
  client::Client& c = *w->clients_[0];
  const int count = o.kind == WorkloadKind::kBank ? o.accounts : o.lists;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<uint64_t> oid = c.NewOid();
    if (!oid.ok()) return common::Annotate(oid.status(), "NewOid");
    w->objects_.push_back(*oid);
  }
  const absl::Time deadline = absl::Now() + o.client.connect_timeout;
  absl::Status last;
  do {
    auto txn = c.NewTransaction();
    txn->SetDescription("checker setup");
    for (uint64_t oid : w->objects_) {
      txn->Store(oid, 0,
                 o.kind == WorkloadKind::kBank ? BankValue(o.initial_balance, 0)
                                               : ListValue({}, 0));
    }
    absl::StatusOr<uint64_t> tid = txn->Commit();
    if (tid.ok()) return w;
    last = tid.status();
    absl::SleepFor(absl::Milliseconds(200));
  } while (absl::Now() < deadline);
  return common::Annotate(last, "creating the workload's objects");
}

void Workload::Start() {
  stop_ = false;
  for (int i = 0; i < options_.clients; ++i) threads_.emplace_back([this, i] { Run(i); });
}

void Workload::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Workload::Run(int index) {
  client::Client& c = *clients_[index];
  std::mt19937_64 rng(options_.seed * 1000 + index);
  std::uniform_real_distribution<double> coin(0, 1);
  uint64_t seq = 0;
  while (!stop_) {
    const bool read = coin(rng) < options_.read_fraction;
    Operation op;
    if (options_.kind == WorkloadKind::kBank) {
      op = read ? BankRead(c)
                : Transfer(c, rng, static_cast<uint64_t>(index + 1) * 1000000000 + ++seq);
    } else {
      op = read ? ListRead(c, rng) : Add(c, rng);
    }
    op.client = index;
    op.end = absl::Now();
    const bool failed = op.outcome != Outcome::kOk;
    const bool conflict = failed && absl::StrContains(op.error, "ABORTED");
    history_->Add(std::move(op));
    if (failed && !conflict) absl::SleepFor(options_.failure_pause);
  }
}

Operation Workload::BankRead(client::Client& c) {
  Operation op;
  op.start = absl::Now();
  op.type = OpType::kBankRead;
  ReadAtSnapshot(c, objects_, op);
  return op;
}

Operation Workload::Transfer(client::Client& c, std::mt19937_64& rng, uint64_t tag) {
  Operation op;
  op.start = absl::Now();
  op.type = OpType::kTransfer;
  const size_t from = rng() % objects_.size();
  size_t to = rng() % (objects_.size() - 1);
  if (to >= from) ++to;
  const int64_t amount = 1 + static_cast<int64_t>(rng() % 5);
  if (!ReadAtSnapshot(c, {objects_[from], objects_[to]}, op)) return op;
  std::optional<int64_t> a = ParseBankValue(op.reads[0].data);
  std::optional<int64_t> b = ParseBankValue(op.reads[1].data);
  if (!a || !b) {
    op.outcome = Outcome::kFailed;
    op.error = "unparsable account value (not committed)";
    return op;
  }
  op.writes = {{objects_[from], BankValue(*a - amount, tag)},
               {objects_[to], BankValue(*b + amount, tag)}};
  auto txn = c.NewTransaction();
  txn->SetDescription(absl::StrCat("transfer ", amount));
  txn->Store(op.writes[0].oid, op.reads[0].serial, op.writes[0].data);
  txn->Store(op.writes[1].oid, op.reads[1].serial, op.writes[1].data);
  Commit(*txn, op);
  return op;
}

Operation Workload::ListRead(client::Client& c, std::mt19937_64& rng) {
  Operation op;
  op.start = absl::Now();
  op.type = OpType::kListRead;
  op.list = static_cast<int>(rng() % objects_.size());
  ReadAtSnapshot(c, {objects_[op.list]}, op);
  return op;
}

Operation Workload::Add(client::Client& c, std::mt19937_64& rng) {
  Operation op;
  op.start = absl::Now();
  op.type = OpType::kAdd;
  op.list = static_cast<int>(rng() % objects_.size());
  absl::StatusOr<uint64_t> oid = c.NewOid();
  if (!oid.ok()) {
    op.outcome = Outcome::kFailed;
    op.error = common::Annotate(oid.status(), "NewOid").ToString();
    return op;
  }
  op.element = *oid;
  if (!ReadAtSnapshot(c, {objects_[op.list]}, op)) return op;
  std::optional<std::vector<uint64_t>> elements = ParseListValue(op.reads[0].data);
  if (!elements) {
    op.outcome = Outcome::kFailed;
    op.error = "unparsable list value (not committed)";
    return op;
  }
  elements->push_back(op.element);
  op.writes = {{objects_[op.list], ListValue(*elements, op.element)},
               {op.element, ElementValue(op.element)}};
  auto txn = c.NewTransaction();
  txn->SetDescription(absl::StrCat("add ", op.element));
  txn->Store(op.writes[0].oid, op.reads[0].serial, op.writes[0].data);
  txn->Store(op.element, 0, op.writes[1].data);
  Commit(*txn, op);
  return op;
}

void Workload::Commit(client::Transaction& txn, Operation& op) {
  absl::StatusOr<uint64_t> tid = txn.Commit();
  if (tid.ok()) {
    op.outcome = Outcome::kOk;
    op.tid = *tid;
    return;
  }
  op.error = tid.status().ToString();
  op.outcome = ClassifyCommitError(tid.status(), &op.tid);
}

FinalState Workload::Finish(absl::Duration timeout) {
  Stop();
  FinalState s;
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<std::unique_ptr<client::Client>> fresh = client::Client::Connect(options_.client);
  if (!fresh.ok()) {
    s.read_error = fresh.status().ToString();
    return s;
  }
  client::Client& c = **fresh;
  do {
    absl::Status synced = c.Sync();
    Operation op;
    if (synced.ok() && ReadAtSnapshot(c, objects_, op)) {
      s.read = true;
      s.snapshot = op.snapshot;
      s.objects = std::move(op.reads);
      break;
    }
    s.read_error = synced.ok() ? op.error : synced.ToString();
    absl::SleepFor(absl::Milliseconds(500));
  } while (absl::Now() < deadline);
  if (!s.read) return s;

  // Every write of every acknowledged commit, by LoadSerial.
  struct Key {
    uint64_t oid, tid;
  };
  std::vector<Key> keys;
  std::set<uint64_t> all_oids(objects_.begin(), objects_.end());
  for (const Operation& op : history_->operations()) {
    for (const WriteValue& w : op.writes) {
      all_oids.insert(w.oid);
      if (op.outcome == Outcome::kOk) keys.push_back({w.oid, op.tid});
    }
  }
  absl::Mutex mu;
  std::vector<std::thread> readers;
  for (size_t t = 0; t < clients_.size(); ++t) {
    readers.emplace_back([&, t] {
      client::Client& rc = *clients_[t];
      for (size_t i = t; i < keys.size(); i += clients_.size()) {
        absl::StatusOr<client::LoadResult> r;
        do {
          r = rc.LoadSerial(keys[i].oid, keys[i].tid);
          if (r.ok() || r.status().code() == absl::StatusCode::kNotFound) break;
          absl::SleepFor(absl::Milliseconds(100));
        } while (Retryable(r.status()) && absl::Now() < deadline);
        absl::MutexLock lock(&mu);
        if (r.ok()) {
          s.revisions[{keys[i].oid, keys[i].tid}] = r->data;
        } else if (r.status().code() != absl::StatusCode::kNotFound) {
          s.revision_errors[{keys[i].oid, keys[i].tid}] = r.status().ToString();
        }
      }
    });
  }
  for (std::thread& t : readers) t.join();

  s.locked = StoreEverything(c, std::vector<uint64_t>(all_oids.begin(), all_oids.end()));
  return s;
}

std::map<uint64_t, std::string> Workload::StoreEverything(client::Client& c,
                                                const std::vector<uint64_t>& oids) {
  // One commit storing `batch` on its current revisions, retried until
  // `deadline`.
  auto store = [&c](const std::vector<uint64_t>& batch, absl::Time deadline) {
    absl::Status last;
    do {
      const uint64_t snapshot = c.snapshot();
      auto txn = c.NewTransaction();
      txn->SetDescription("checker: store everything (lock check)");
      absl::Status read;
      for (uint64_t oid : batch) {
        absl::StatusOr<client::LoadResult> r = c.LoadBefore(oid, snapshot + 1);
        if (r.ok()) {
          txn->Store(oid, r->serial, r->data);
        } else if (r.status().code() == absl::StatusCode::kNotFound) {
          txn->Store(oid, 0, "checker: never committed");
        } else {
          read = r.status();
          break;
        }
      }
      if (read.ok()) {
        absl::StatusOr<uint64_t> tid = txn->Commit();
        if (tid.ok()) return absl::OkStatus();
        last = tid.status();
      } else {
        last = read;
      }
      absl::SleepFor(absl::Milliseconds(200));
    } while (absl::Now() < deadline);
    return last;
  };
  const absl::Time deadline = absl::Now() + options_.lock_bound;
  std::map<uint64_t, std::string> locked;
  for (size_t i = 0; i < oids.size(); i += kLockBatch) {
    std::vector<uint64_t> batch(oids.begin() + i,
                                oids.begin() + std::min(oids.size(), i + kLockBatch));
    absl::Status s = store(batch, deadline);
    if (s.ok()) continue;
    CELLAR_LOG(WARNING) << "checker: a batch of " << batch.size()
                        << " objects could not be stored within the bound (" << s
                        << "); trying them one by one";
    for (uint64_t oid : batch) {
      absl::Status one = store({oid}, absl::Now() + 2 * options_.client.rpc_timeout);
      if (!one.ok()) {
        CELLAR_LOG(WARNING) << "checker: oid " << oid << " still can't be stored: " << one;
        locked[oid] = one.ToString();
      }
    }
  }
  return locked;
}

CheckInput Workload::Input(FinalState final_state) const {
  CheckInput in;
  in.kind = options_.kind;
  if (options_.kind == WorkloadKind::kBank) {
    in.accounts = objects_;
    in.total = options_.initial_balance * static_cast<int64_t>(objects_.size());
  } else {
    in.lists = objects_;
  }
  in.operations = history_->operations();
  in.final_state = std::move(final_state);
  return in;
}

}  // namespace cellar::tools::checker
