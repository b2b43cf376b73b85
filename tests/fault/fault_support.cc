#include "tests/fault/fault_support.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"
#include "tools/pgserver/test_postgres.h"

namespace cellar::fault {

std::vector<std::string> Backends() { return {"sqlite", "postgres"}; }

tools::ClusterTopology DefaultTopology() {
  tools::ClusterTopology t;
  t.masters = 1;
  t.storages = 3;
  t.replicas = 1;
  t.partitions = 12;
  t.cluster_name = "fault";
  t.admin = true;
  return t;
}

namespace {

// Copies the logs of the clusters a failed test started to
// $TEST_UNDECLARED_OUTPUTS_DIR/<test>/<cluster dir>/ (Bazel keeps them in
// bazel-testlogs/.../test.outputs/outputs.zip).
class KeepLogsOnFailure : public ::testing::EmptyTestEventListener {
 public:
  void Add(const std::string& dir) {
    absl::MutexLock l(&mu_);
    dirs_.push_back(dir);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    std::vector<std::string> dirs;
    {
      absl::MutexLock l(&mu_);
      dirs.swap(dirs_);
    }
    const char* out = getenv("TEST_UNDECLARED_OUTPUTS_DIR");
    if (!info.result()->Failed() || out == nullptr) return;
    std::string test = absl::StrCat(info.test_suite_name(), ".", info.name());
    std::replace(test.begin(), test.end(), '/', '_');
    namespace fs = std::filesystem;
    for (const std::string& dir : dirs) {
      std::error_code ec;
      const fs::path target = fs::path(out) / test / fs::path(dir).filename();
      fs::create_directories(target, ec);
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string ext = entry.path().extension();
        if (ext == ".log" || ext == ".json") {
          fs::copy_file(entry.path(), target / entry.path().filename(),
                        fs::copy_options::overwrite_existing, ec);
        }
      }
    }
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> dirs_ ABSL_GUARDED_BY(mu_);
};

KeepLogsOnFailure* LogKeeper() {
  static KeepLogsOnFailure* keeper = [] {
    auto* k = new KeepLogsOnFailure;
    ::testing::UnitTest::GetInstance()->listeners().Append(k);  // owns it
    return k;
  }();
  return keeper;
}

}  // namespace

absl::StatusOr<std::unique_ptr<tools::ProcessCluster>> StartCluster(
    const std::string& backend, tools::ClusterTopology topology) {
  static int counter = 0;
  const char* tmp = getenv("TEST_TMPDIR");
  tools::ProcessClusterOptions options;
  options.dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/cluster-", getpid(), "-",
                             counter, "-", backend);
  options.die_with_parent = true;
  options.ready_timeout = absl::Seconds(30);
  options.stop_timeout = absl::Seconds(15);
  if (backend != "sqlite" && backend != "postgres") {
    return absl::InvalidArgumentError(absl::StrCat("unknown backend ", backend));
  }
  topology.postgres = backend == "postgres";
  if (topology.postgres || topology.election_pg.value_or(topology.masters > 1)) {
    // Storage databases and/or the masters' election lease.
    absl::StatusOr<std::string> conninfo = tools::TestPostgresConninfo();
    if (!conninfo.ok()) return conninfo.status();
    options.postgres_conninfo = *conninfo;
    options.database_prefix = absl::StrCat("fault_", getpid(), "_", counter);
  }
  ++counter;
  options.topology = std::move(topology);
  LogKeeper()->Add(options.dir);
  return tools::ProcessCluster::Up(std::move(options));
}

absl::StatusOr<std::unique_ptr<client::Client>> Connect(const tools::ProcessCluster& cluster,
                                                        absl::Duration rpc_timeout,
                                                        size_t cache_bytes,
                                                        bool report_unreachable) {
  client::ClientOptions options;
  options.master_addresses = cluster.master_addresses();
  options.cluster_name = cluster.cluster_name();
  options.token = cluster.client_token();
  options.tls = cluster.client_tls();
  options.rpc_timeout = rpc_timeout;
  options.cache_bytes = cache_bytes;
  options.report_unreachable = report_unreachable;
  options.connect_timeout = absl::Seconds(15);
  return client::Client::Connect(options);
}

std::string ReadTokenFile(const std::string& path) {
  std::stringstream contents;
  contents << std::ifstream(path).rdbuf();
  return std::string(absl::StripAsciiWhitespace(contents.str()));
}

grpc::Status AdminListNodes(const std::string& admin_address,
                            const common::ChannelSecurity& security,
                            v1::ListNodesResponse* nodes) {
  auto admin = v1::Admin::NewStub(common::MakeChannel(admin_address, security));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  return admin->ListNodes(&context, {}, nodes);
}

std::string UniqueValue(const std::string& prefix, size_t bytes, std::mt19937_64& rng) {
  std::string value = prefix;
  while (value.size() < bytes) {
    const uint64_t r = rng();
    value.append(reinterpret_cast<const char*>(&r),
                 std::min(sizeof(r), bytes - value.size()));
  }
  return value;
}

// --- CommitLedger ---

void CommitLedger::AddAcked(uint64_t tid, const Objects& objects) {
  absl::MutexLock l(&mu_);
  acked_.push_back({tid, objects});
}

void CommitLedger::AddFailed(const Objects& objects, const absl::Status& error) {
  absl::MutexLock l(&mu_);
  failed_.push_back({objects, error});
}

std::vector<CommitLedger::Acked> CommitLedger::acked() const {
  absl::MutexLock l(&mu_);
  return acked_;
}

std::vector<CommitLedger::Failed> CommitLedger::failed() const {
  absl::MutexLock l(&mu_);
  return failed_;
}

size_t CommitLedger::acked_count() const {
  absl::MutexLock l(&mu_);
  return acked_.size();
}

size_t CommitLedger::failed_count() const {
  absl::MutexLock l(&mu_);
  return failed_.size();
}

std::map<std::string, int> CommitLedger::failures_by_code() const {
  absl::MutexLock l(&mu_);
  std::map<std::string, int> out;
  for (const Failed& f : failed_) ++out[absl::StatusCodeToString(f.error.code())];
  return out;
}

std::string CommitLedger::FailureSummary(size_t max_messages) const {
  std::vector<std::string> codes;
  for (const auto& [code, count] : failures_by_code()) {
    codes.push_back(absl::StrCat(code, ": ", count));
  }
  absl::MutexLock l(&mu_);
  std::string out = absl::StrCat(failed_.size(), " failed commit(s) {",
                                 absl::StrJoin(codes, ", "), "}");
  // The first errors, and the first of each code after those.
  std::set<absl::StatusCode> shown;
  for (size_t i = 0; i < failed_.size(); ++i) {
    const absl::StatusCode code = failed_[i].error.code();
    if (i >= max_messages && shown.count(code) > 0) continue;
    shown.insert(code);
    absl::StrAppend(&out, "\n  ", failed_[i].error.ToString());
  }
  return out;
}

size_t CommitLedger::failed_other_than_lock_contention() const {
  absl::MutexLock l(&mu_);
  size_t n = 0;
  for (const Failed& f : failed_) {
    if (f.error.code() != absl::StatusCode::kAborted ||
        common::ErrorReason(f.error) != "LOCK_CONTENTION") {
      ++n;
    }
  }
  return n;
}

std::set<uint64_t> CommitLedger::oids() const {
  absl::MutexLock l(&mu_);
  std::set<uint64_t> out;
  for (const Acked& a : acked_) {
    for (const auto& [oid, data] : a.objects) out.insert(oid);
  }
  for (const Failed& f : failed_) {
    for (const auto& [oid, data] : f.objects) out.insert(oid);
  }
  return out;
}

// --- Workload ---

Workload::Workload(client::Client* client, CommitLedger* ledger, Options options)
    : client_(client), ledger_(ledger), options_(options) {}

Workload::~Workload() { Stop(); }

void Workload::Start() {
  stop_ = false;
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this, i] { Run(i); });
}

void Workload::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

absl::Status Workload::WaitForAcked(size_t n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (acked_.load() < n) {
    if (absl::Now() > deadline) {
      std::vector<std::string> codes;
      for (const auto& [code, count] : ledger_->failures_by_code()) {
        codes.push_back(absl::StrCat(code, ": ", count));
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "only ", acked_.load(), " of ", n, " commits acknowledged within ",
          absl::FormatDuration(timeout), "; failures {", absl::StrJoin(codes, ", "), "}"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::OkStatus();
}

void Workload::Run(int thread) {
  std::mt19937_64 rng(0x5eed + thread * 7919 + reinterpret_cast<uintptr_t>(this));
  std::uniform_real_distribution<double> uniform(0, 1);
  struct Owned {
    uint64_t oid;
    uint64_t serial;
  };
  std::vector<Owned> owned;
  uint64_t n = 0;
  while (!stop_.load()) {
    ++n;
    const int k = 1 + static_cast<int>(rng() % options_.max_objects);
    Objects objects;
    std::map<uint64_t, size_t> updated;  // oid -> index in owned
    bool oid_error = false;
    for (int i = 0; i < k; ++i) {
      if (!owned.empty() && uniform(rng) < options_.update_fraction) {
        const size_t index = rng() % owned.size();
        if (updated.count(owned[index].oid) > 0) continue;
        updated[owned[index].oid] = index;
        objects[owned[index].oid] = "";
      } else {
        absl::StatusOr<uint64_t> oid = client_->NewOid();
        if (!oid.ok()) {
          oid_error = true;
          break;
        }
        objects[*oid] = "";
      }
    }
    if (oid_error || objects.empty()) {
      absl::SleepFor(options_.failure_pause);
      continue;
    }
    auto txn = client_->NewTransaction();
    for (auto& [oid, value] : objects) {
      value = UniqueValue(absl::StrCat("t", thread, "-c", n, "-o", oid, ":"),
                          options_.value_bytes, rng);
      auto it = updated.find(oid);
      txn->Store(oid, it == updated.end() ? 0 : owned[it->second].serial, value);
    }
    absl::StatusOr<uint64_t> tid = txn->Commit();
    if (tid.ok()) {
      ledger_->AddAcked(*tid, objects);
      ++acked_;
      for (const auto& [oid, value] : objects) {
        auto it = updated.find(oid);
        if (it != updated.end()) {
          owned[it->second].serial = *tid;
        } else {
          owned.push_back({oid, *tid});
        }
      }
    } else {
      ledger_->AddFailed(objects, tid.status());
      ++failed_;
      absl::SleepFor(options_.failure_pause);
      // ABORTED (conflict, lock contention) means aborted: the objects
      // keep their serials. After any other error the outcome is unknown
      // until the final check: never touch them again.
      if (tid.status().code() == absl::StatusCode::kAborted) continue;
      std::vector<Owned> kept;
      for (const Owned& o : owned) {
        if (updated.count(o.oid) == 0) kept.push_back(o);
      }
      owned.swap(kept);
    }
    if (options_.pause > absl::ZeroDuration()) absl::SleepFor(options_.pause);
  }
}

// --- Reader ---

Reader::Reader(client::Client* client, const CommitLedger* ledger)
    : client_(client), ledger_(ledger) {}

Reader::~Reader() { Stop(); }

void Reader::Start() {
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void Reader::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> Reader::failure_messages() const {
  absl::MutexLock l(&mu_);
  return messages_;
}

absl::Duration Reader::max_latency() const {
  absl::MutexLock l(&mu_);
  return max_latency_;
}

void Reader::Run() {
  std::mt19937_64 rng(0x7eadULL ^ reinterpret_cast<uintptr_t>(this));
  std::vector<std::pair<uint64_t, uint64_t>> sample;  // (oid, acked tid)
  size_t i = 0;
  while (!stop_.load()) {
    if (i++ % 200 == 0) {
      sample.clear();
      for (const CommitLedger::Acked& a : ledger_->acked()) {
        for (const auto& [oid, data] : a.objects) sample.push_back({oid, a.tid});
      }
    }
    if (sample.empty()) {
      absl::SleepFor(absl::Milliseconds(10));
      i = 0;
      continue;
    }
    const auto [oid, tid] = sample[rng() % sample.size()];
    const absl::Time start = absl::Now();
    absl::StatusOr<client::LoadResult> r = client_->Load(oid);
    const absl::Duration latency = absl::Now() - start;
    ++reads_;
    std::string problem;
    if (!r.ok()) {
      problem = absl::StrCat("load of oid ", oid, ": ", r.status().ToString());
    } else if (r->serial < tid) {
      problem = absl::StrCat("load of oid ", oid, " returned serial ", common::TidHex(r->serial),
                             " older than the acked ", common::TidHex(tid));
    }
    absl::MutexLock l(&mu_);
    max_latency_ = std::max(max_latency_, latency);
    if (!problem.empty()) {
      ++failures_;
      if (messages_.size() < 10) messages_.push_back(problem);
    }
  }
}

// --- Verify ---

std::string VerifyReport::Summary() const {
  std::string s = absl::StrCat(objects, " objects, ", revisions, " revisions, ",
                               replica_reads, " replica reads, ", acked_checked,
                               " acked revisions checked, ", failed_commits,
                               " failed commits (", failed_but_visible,
                               " of them fully visible)");
  if (!problems.empty()) {
    absl::StrAppend(&s, "; ", problems.size(), " problem(s):\n  ");
    const size_t shown = std::min<size_t>(problems.size(), 20);
    absl::StrAppend(&s, absl::StrJoin(problems.begin(), problems.begin() + shown, "\n  "));
  }
  return s;
}

namespace {

using Revisions = std::map<uint64_t, std::string>;  // serial -> data

// Every revision of `oid` on one storage; an object without revisions is
// an empty map.
absl::StatusOr<Revisions> ReadReplica(::cellar::v1::Storage::Stub& stub, uint64_t oid,
                                      absl::Time deadline, size_t* reads) {
  Revisions out;
  ::cellar::v1::HistoryRequest hreq;
  hreq.set_oid(oid);
  hreq.set_limit(1000);
  ::cellar::v1::HistoryResponse hresp;
  grpc::ClientContext hctx;
  hctx.set_deadline(absl::ToChronoTime(deadline));
  absl::Status s = common::FromGrpcStatus(stub.History(&hctx, hreq, &hresp));
  ++*reads;
  if (s.code() == absl::StatusCode::kNotFound) return out;
  if (!s.ok()) return s;
  for (const ::cellar::v1::Revision& rev : hresp.revisions()) {
    ::cellar::v1::LoadRequest lreq;
    lreq.set_oid(oid);
    lreq.set_serial(rev.serial());
    ::cellar::v1::LoadResponse lresp;
    grpc::ClientContext lctx;
    lctx.set_deadline(absl::ToChronoTime(deadline));
    absl::Status ls = common::FromGrpcStatus(stub.Load(&lctx, lreq, &lresp));
    ++*reads;
    if (!ls.ok()) return common::Annotate(ls, absl::StrCat("serial ", common::TidHex(rev.serial())));
    if (lresp.checksum() != common::Checksum(lresp.data())) {
      return absl::DataLossError(
          absl::StrCat("serial ", common::TidHex(rev.serial()), ": checksum mismatch"));
    }
    out[rev.serial()] = lresp.data();
  }
  // The newest revision must be what a load of "now" returns.
  ::cellar::v1::LoadRequest lreq;
  lreq.set_oid(oid);
  lreq.set_before_tid(uint64_t{1} << 63);
  ::cellar::v1::LoadResponse lresp;
  grpc::ClientContext lctx;
  lctx.set_deadline(absl::ToChronoTime(deadline));
  absl::Status ls = common::FromGrpcStatus(stub.Load(&lctx, lreq, &lresp));
  ++*reads;
  if (!ls.ok() && !(out.empty() && ls.code() == absl::StatusCode::kNotFound)) {
    return common::Annotate(ls, "latest");
  }
  if (ls.ok() && (out.empty() || lresp.serial() != out.rbegin()->first)) {
    return absl::InternalError(absl::StrCat("latest Load gives serial ",
                                            common::TidHex(lresp.serial()),
                                            " but History's newest is ",
                                            out.empty() ? "none"
                                                        : common::TidHex(out.rbegin()->first)));
  }
  return out;
}

std::string Describe(const Revisions& revs) {
  std::vector<std::string> parts;
  for (const auto& [serial, data] : revs) {
    parts.push_back(absl::StrCat(common::TidHex(serial), "=", data.substr(0, data.find(':'))));
  }
  return absl::StrCat("[", absl::StrJoin(parts, " "), "]");
}

}  // namespace

VerifyReport Verify(const tools::ProcessCluster& cluster, const CommitLedger& ledger,
                    const VerifyOptions& options, absl::Duration timeout) {
  VerifyReport report;
  const absl::Time deadline = absl::Now() + timeout;
  auto problem = [&](std::string p) { report.problems.push_back(std::move(p)); };

  auto client = Connect(cluster);
  if (!client.ok()) {
    problem(absl::StrCat("connect: ", client.status().ToString()));
    return report;
  }
  if (absl::Status s = (*client)->Sync(); !s.ok()) problem(absl::StrCat("sync: ", s.ToString()));

  auto info = cluster.ClusterInfo();
  if (!info.ok()) {
    problem(absl::StrCat("cluster info: ", info.status().ToString()));
    return report;
  }
  auto pt = common::PartitionTable::FromProto(info->partition_table());
  if (!pt.ok() || pt->num_partitions() == 0) {
    problem("no partition table");
    return report;
  }
  // Running storages and their stubs.
  std::map<uint32_t, std::unique_ptr<::cellar::v1::Storage::Stub>> stubs;
  std::map<uint32_t, std::string> names;
  for (const ::cellar::v1::NodeInfo& n : info->nodes()) {
    if (n.role() != ::cellar::v1::NODE_ROLE_STORAGE) continue;
    std::string name = common::NodeName(n.node_id());
    for (const std::string& s : cluster.storage_names()) {
      if (cluster.address(s) == n.address()) name = s;
    }
    names[n.node_id()] = name;
    if (n.state() == ::cellar::v1::NODE_RUNNING) {
      stubs[n.node_id()] = ::cellar::v1::Storage::NewStub(common::MakeChannel(n.address(), cluster.node_channel()));
    }
  }
  for (const std::string& required : options.required_storages) {
    bool found = false;
    for (const auto& [id, stub] : stubs) found = found || names[id] == required;
    if (!found) problem(absl::StrCat(required, " is required but not RUNNING in the master's view"));
  }

  // Read every object from every readable, running replica; compare.
  std::map<uint64_t, Revisions> content;
  for (uint64_t oid : ledger.oids()) {
    if (absl::Now() > deadline) {
      problem("verification timed out");
      return report;
    }
    ++report.objects;
    const uint32_t partition = pt->PartitionOf(oid);
    std::optional<Revisions> first;
    std::string first_name;
    for (uint32_t node : pt->ReadableNodes(partition)) {
      const std::string& name = names.count(node) ? names[node] : common::NodeName(node);
      auto it = stubs.find(node);
      if (it == stubs.end()) {
        if (options.require_all_cells || options.required_storages.count(name) > 0) {
          problem(absl::StrCat("oid ", oid, ": readable cell of partition ", partition, " on ",
                               name, " is not on a running storage"));
        }
        continue;
      }
      // A storage learns a table change a moment after the master: a cell
      // the master calls readable may still say NOT_READABLE briefly.
      absl::StatusOr<Revisions> revs;
      const absl::Time retry_until = std::min(deadline, absl::Now() + absl::Seconds(5));
      while (true) {
        revs = ReadReplica(*it->second, oid, deadline, &report.replica_reads);
        if (revs.ok() || common::ErrorReason(revs.status()) != "NOT_READABLE" ||
            absl::Now() > retry_until) {
          break;
        }
        absl::SleepFor(absl::Milliseconds(50));
      }
      if (!revs.ok()) {
        problem(absl::StrCat("oid ", oid, " on ", name, ": ", revs.status().ToString()));
        continue;
      }
      if (!first.has_value()) {
        first = *revs;
        first_name = name;
      } else if (*revs != *first) {
        problem(absl::StrCat("replicas differ for oid ", oid, " (partition ", partition, "): ",
                             first_name, " has ", Describe(*first), ", ", name, " has ",
                             Describe(*revs)));
      }
    }
    if (!first.has_value()) {
      problem(absl::StrCat("oid ", oid, ": no replica of partition ", partition, " could be read"));
      continue;
    }
    report.revisions += first->size();
    content[oid] = *std::move(first);
  }

  // 1. Every acked revision is there.
  std::map<uint64_t, uint64_t> last_acked;  // oid -> tid
  std::set<std::pair<uint64_t, uint64_t>> explained;  // (oid, serial)
  for (const CommitLedger::Acked& a : ledger.acked()) {
    for (const auto& [oid, data] : a.objects) {
      ++report.acked_checked;
      last_acked[oid] = std::max(last_acked[oid], a.tid);
      explained.insert({oid, a.tid});
      auto it = content.find(oid);
      if (it == content.end()) continue;  // already reported
      auto rev = it->second.find(a.tid);
      if (rev == it->second.end()) {
        problem(absl::StrCat("acked commit ", common::TidHex(a.tid), " lost: oid ", oid,
                             " has no such revision (has ", Describe(it->second), ")"));
      } else if (rev->second != data) {
        problem(absl::StrCat("acked commit ", common::TidHex(a.tid), ": oid ", oid,
                             " holds other data (", rev->second.substr(0, 24), "...)"));
      }
    }
  }
  // 2. A failed commit is all or nothing.
  for (const CommitLedger::Failed& f : ledger.failed()) {
    ++report.failed_commits;
    std::set<uint64_t> serials;
    size_t visible = 0;
    for (const auto& [oid, data] : f.objects) {
      auto it = content.find(oid);
      if (it == content.end()) continue;
      for (const auto& [serial, value] : it->second) {
        if (value == data) {
          ++visible;
          serials.insert(serial);
          explained.insert({oid, serial});
        }
      }
    }
    if (visible == 0) continue;
    if (visible != f.objects.size() || serials.size() != 1) {
      problem(absl::StrCat("failed commit (", f.error.ToString(), ") is half-visible: ", visible,
                           " of ", f.objects.size(), " objects, in ", serials.size(),
                           " revision(s)"));
    } else {
      ++report.failed_but_visible;
    }
  }
  // Nothing else, and the newest revision is the last acked one or a later
  // fully visible failed commit.
  for (const auto& [oid, revs] : content) {
    for (const auto& [serial, data] : revs) {
      if (explained.count({oid, serial}) == 0) {
        problem(absl::StrCat("oid ", oid, " has a revision ", common::TidHex(serial),
                             " that no commit of the test wrote (", data.substr(0, 24), ")"));
      }
    }
    if (revs.empty()) continue;
    auto acked = last_acked.find(oid);
    if (acked != last_acked.end() && revs.rbegin()->first < acked->second) {
      problem(absl::StrCat("oid ", oid, ": newest revision ", common::TidHex(revs.rbegin()->first),
                           " is older than the last acked ", common::TidHex(acked->second)));
    }
    // Through the client too (routing, snapshot).
    absl::StatusOr<client::LoadResult> r = (*client)->Load(oid);
    if (!r.ok()) {
      problem(absl::StrCat("client Load of oid ", oid, ": ", r.status().ToString()));
    } else if (r->serial != revs.rbegin()->first || r->data != revs.rbegin()->second) {
      problem(absl::StrCat("client Load of oid ", oid, " gives ", common::TidHex(r->serial),
                           ", storages say ", common::TidHex(revs.rbegin()->first)));
    }
  }
  return report;
}

absl::Status WaitForAllCellsUpToDate(const tools::ProcessCluster& cluster,
                                     absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    auto info = cluster.ClusterInfo();
    if (!info.ok()) {
      last = info.status().ToString();
    } else {
      std::vector<std::string> behind;
      for (const v1::PartitionRow& row : info->partition_table().rows()) {
        for (const v1::Cell& cell : row.cells()) {
          if (cell.state() != v1::CELL_UP_TO_DATE) {
            behind.push_back(absl::StrCat(row.partition(), "@", common::NodeName(cell.node_id()),
                                          "=", v1::CellState_Name(cell.state())));
          }
        }
      }
      if (behind.empty()) {
        // The storages learn the table from the master a moment later:
        // wait until every running one has it too.
        const uint64_t ptid = info->partition_table().ptid();
        std::vector<std::string> lagging;
        for (const std::string& name : cluster.storage_names()) {
          bool running = false;
          for (const v1::NodeInfo& n : info->nodes()) {
            running = running || (n.address() == cluster.address(name) &&
                                  n.state() == v1::NODE_RUNNING);
          }
          if (!running) continue;
          auto status = StorageStatus(cluster, name);
          if (!status.ok() || status->ptid() < ptid) {
            lagging.push_back(absl::StrCat(
                name, status.ok() ? absl::StrCat(" at ptid ", status->ptid())
                                  : absl::StrCat(": ", status.status().message())));
          }
        }
        if (lagging.empty()) return absl::OkStatus();
        last = absl::StrCat("every cell UP_TO_DATE at ptid ", ptid, " but ",
                            absl::StrJoin(lagging, ", "));
      } else {
        last = absl::StrCat("cells not UP_TO_DATE: ", absl::StrJoin(behind, " "));
      }
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("not every cell UP_TO_DATE within ", absl::FormatDuration(timeout),
                       ": ", last));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

absl::StatusOr<std::map<uint32_t, v1::CellState>> CellsOf(const tools::ProcessCluster& cluster,
                                                           const std::string& name) {
  auto info = cluster.ClusterInfo();
  if (!info.ok()) return info.status();
  uint32_t id = 0;
  for (const v1::NodeInfo& n : info->nodes()) {
    if (n.role() == v1::NODE_ROLE_STORAGE && n.address() == cluster.address(name)) {
      id = n.node_id();
    }
  }
  if (id == 0) id = cluster.node_id(name);
  std::map<uint32_t, v1::CellState> out;
  for (const v1::PartitionRow& row : info->partition_table().rows()) {
    for (const v1::Cell& cell : row.cells()) {
      if (cell.node_id() == id) out[row.partition()] = cell.state();
    }
  }
  return out;
}

absl::Status WaitForCellsOf(const tools::ProcessCluster& cluster, const std::string& name,
                            v1::CellState state, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    auto cells = CellsOf(cluster, name);
    if (!cells.ok()) {
      last = cells.status().ToString();
    } else {
      bool all = !cells->empty();
      last.clear();
      for (const auto& [p, s] : *cells) {
        all = all && s == state;
        absl::StrAppend(&last, p, "=", v1::CellState_Name(s), " ");
      }
      if (all) return absl::OkStatus();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "cells of ", name, " not all ", v1::CellState_Name(state), " within ",
          absl::FormatDuration(timeout), ": ", last.empty() ? "none" : last));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::StatusOr<v1::GetNodeStatusResponse> StorageStatus(const tools::ProcessCluster& cluster,
                                                        const std::string& name) {
  auto stub = v1::Storage::NewStub(common::MakeChannel(cluster.address(name), cluster.node_channel()));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  v1::GetNodeStatusRequest request;
  v1::GetNodeStatusResponse response;
  absl::Status s = common::FromGrpcStatus(stub->GetNodeStatus(&context, request, &response));
  if (!s.ok()) return common::Annotate(s, absl::StrCat("GetNodeStatus of ", name));
  return response;
}

absl::Status CommitFresh(client::Client& client, CommitLedger& ledger, int count,
                         size_t value_bytes) {
  std::mt19937_64 rng(count * 31 + value_bytes);
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<uint64_t> oid = client.NewOid();
    if (!oid.ok()) return common::Annotate(oid.status(), "NewOid");
    Objects objects = {{*oid, UniqueValue(absl::StrCat("fresh", i, "-o", *oid, ":"),
                                          value_bytes, rng)}};
    auto txn = client.NewTransaction();
    txn->Store(*oid, 0, objects[*oid]);
    absl::StatusOr<uint64_t> tid = txn->Commit();
    if (!tid.ok()) {
      ledger.AddFailed(objects, tid.status());
      return common::Annotate(tid.status(), absl::StrCat("commit ", i + 1, " of ", count));
    }
    ledger.AddAcked(*tid, objects);
  }
  return absl::OkStatus();
}

}  // namespace cellar::fault
