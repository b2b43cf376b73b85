#include "tools/bench/bench_cluster.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/common/auth_tokens.h"
#include "services/common/status_macros.h"

namespace cellar::bench {
namespace {

// Appends `count` client tokens to the cluster's tokens file (every node
// re-reads it within a second); returns them.
absl::StatusOr<std::vector<std::string>> AddTokens(const std::string& tokens_file, int count) {
  std::vector<std::string> tokens;
  std::ofstream file(tokens_file, std::ios::app);
  for (int i = 0; i < count; ++i) {
    CELLAR_ASSIGN_OR_RETURN(common::NewToken token,
                            common::MakeToken(common::Role::kClient,
                                              absl::StrCat("tools/bench client ", i + 2)));
    file << token.line;
    tokens.push_back(std::move(token.token));
  }
  file.close();
  if (!file) return absl::InternalError(absl::StrCat("cannot append to ", tokens_file));
  return tokens;
}

// utime + stime of `pid` in seconds (0 if it is gone).
double ProcessCpu(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return 0;
  // The command may hold spaces: fields count from after its ')'.
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> fields =
      absl::StrSplit(line.substr(paren + 2), ' ', absl::SkipEmpty());
  // state is field 3 of the full line (index 0 here); utime 14, stime 15.
  if (fields.size() < 13) return 0;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BenchCluster>> BenchCluster::Start(
    const BenchClusterOptions& options) {
  auto bench = std::unique_ptr<BenchCluster>(new BenchCluster());
  tools::ProcessClusterOptions cluster;
  cluster.dir = options.dir;
  cluster.die_with_parent = true;
  CELLAR_ASSIGN_OR_RETURN(cluster.binaries, tools::FindClusterBinaries(options.argv0));
  tools::ClusterTopology& topology = cluster.topology;
  topology.storages = options.storages;
  topology.replicas = options.replicas;
  topology.partitions = options.partitions;
  topology.cluster_name = "bench";
  topology.auth = options.secure;
  topology.tls = options.secure;
  if (options.secure && options.rate_limit_per_second > 0) {
    for (auto* flags : {&topology.master_flags, &topology.storage_flags, &topology.admin_flags}) {
      flags->push_back(absl::StrCat("--rate_limit=", options.rate_limit_per_second));
      if (options.rate_limit_burst > 0) {
        flags->push_back(absl::StrCat("--rate_limit_burst=", options.rate_limit_burst));
      }
    }
  }
  CELLAR_ASSIGN_OR_RETURN(bench->cluster_, tools::ProcessCluster::Up(std::move(cluster)));
  for (const std::string& name : bench->cluster_->node_names()) {
    bench->pids_.push_back(bench->cluster_->pid(name));
  }
  if (!options.secure) return bench;

  bench->ca_file_ = options.dir + "/tls/ca.pem";
  bench->tokens_.push_back(bench->cluster_->client_token());
  CELLAR_ASSIGN_OR_RETURN(std::vector<std::string> more,
                          AddTokens(options.dir + "/tokens", options.client_tokens - 1));
  bench->tokens_.insert(bench->tokens_.end(), more.begin(), more.end());
  // Every node re-reads the tokens file within a second; wait until the
  // last token connects (its master and storages accept it), bounded.
  if (!more.empty()) {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (true) {
      absl::SleepFor(absl::Milliseconds(1100));
      absl::StatusOr<std::unique_ptr<client::Client>> client =
          ConnectClient(bench->Target("", static_cast<int>(bench->tokens_.size()) - 1));
      if (client.ok()) {
        (*client)->Close();
        break;
      }
      if (absl::Now() > deadline) return client.status();
    }
  }
  return bench;
}

BenchCluster::~BenchCluster() {
  if (cluster_ != nullptr) cluster_->Down().IgnoreError();
}

CellarTarget BenchCluster::Target(const std::string& backend, int token) const {
  CellarTarget target;
  target.master_addresses = cluster_->master_addresses();
  target.cluster_name = cluster_->cluster_name();
  target.backend = backend;
  target.cluster_cpu_seconds = [this] { return CPU(); };
  if (!ca_file_.empty()) {
    target.token = tokens_.at(token);
    common::TlsClientConfig tls;
    tls.ca_file = ca_file_;
    target.tls = tls;
  }
  return target;
}

double BenchCluster::CPU() const {
  double total = 0;
  for (pid_t pid : pids_) total += ProcessCpu(pid);
  return total;
}

}  // namespace cellar::bench
