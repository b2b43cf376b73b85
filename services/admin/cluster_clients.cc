#include "services/admin/cluster_clients.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"

namespace cellar::admin {
namespace {

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<ClusterTarget>> ParseClusterList(absl::string_view text) {
  std::vector<ClusterTarget> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.second.empty() && part.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("clusters: \"", part, "\" is not name=host:port[;host:port]"));
    }
    ClusterTarget target;
    target.name = std::string(absl::StripAsciiWhitespace(kv.first));
    for (absl::string_view address : absl::StrSplit(kv.second, ';', absl::SkipWhitespace())) {
      target.master_addresses.emplace_back(absl::StripAsciiWhitespace(address));
    }
    out.push_back(std::move(target));
  }
  if (out.empty()) return absl::InvalidArgumentError("clusters: the list is empty");
  return out;
}

absl::StatusOr<std::unique_ptr<ClusterClients>> ClusterClients::Create(
    std::vector<ClusterTarget> clusters, absl::Duration rpc_timeout,
    common::ChannelSecurity node_channel) {
  if (clusters.empty()) {
    return absl::InvalidArgumentError("clusters: at least one cluster is required");
  }
  absl::flat_hash_set<std::string> names;
  for (const ClusterTarget& c : clusters) {
    if (!ValidName(c.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clusters: name \"", c.name, "\" must be 1-63 characters of [A-Za-z0-9._-]"));
    }
    if (!names.insert(c.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("clusters: \"", c.name, "\" is repeated"));
    }
    if (c.master_addresses.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("clusters: \"", c.name, "\" has no master address"));
    }
    for (const std::string& a : c.master_addresses) {
      if (a.empty() || a.find(':') == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "clusters: \"", c.name, "\": master address \"", a, "\" is not host:port"));
      }
    }
  }
  return std::unique_ptr<ClusterClients>(
      new ClusterClients(std::move(clusters), rpc_timeout, std::move(node_channel)));
}

ClusterClients::ClusterClients(std::vector<ClusterTarget> clusters, absl::Duration rpc_timeout,
                               common::ChannelSecurity node_channel)
    : clusters_(std::move(clusters)),
      rpc_timeout_(rpc_timeout),
      node_channel_(std::move(node_channel)) {
  absl::MutexLock l(&mu_);
  for (const ClusterTarget& c : clusters_) {
    masters_.emplace_back();
    for (const std::string& address : c.master_addresses) {
      masters_.back().push_back(
          cellar::v1::Master::NewStub(common::MakeChannel(address, node_channel_)));
    }
  }
}

std::shared_ptr<cellar::v1::Master::Stub> ClusterClients::MasterStub(size_t cluster,
                                                                     size_t master) {
  absl::MutexLock l(&mu_);
  return masters_[cluster][master];
}

void ClusterClients::MasterCallFailed(size_t cluster, size_t master, const grpc::Status& status) {
  if (!common::RedialAfter(status.error_code())) return;
  absl::MutexLock l(&mu_);
  masters_[cluster][master] = cellar::v1::Master::NewStub(
      common::MakeChannel(clusters_[cluster].master_addresses[master], node_channel_));
}

void ClusterClients::ForgetRestartedStorages(const cellar::v1::GetClusterInfoResponse& info) {
  absl::MutexLock l(&mu_);
  for (const cellar::v1::NodeInfo& node : info.nodes()) {
    if (node.role() != cellar::v1::NODE_ROLE_STORAGE || node.address().empty()) continue;
    auto [it, added] = registered_.try_emplace(node.address(), node.registered_unix_ms());
    if (added || it->second == node.registered_unix_ms()) continue;
    it->second = node.registered_unix_ms();
    storages_.erase(node.address());
  }
}

absl::StatusOr<size_t> ClusterClients::Find(absl::string_view cluster) const {
  if (cluster.empty()) return 0;
  for (size_t i = 0; i < clusters_.size(); ++i) {
    if (clusters_[i].name == cluster) return i;
  }
  std::vector<std::string> names;
  for (const ClusterTarget& c : clusters_) names.push_back(c.name);
  return absl::NotFoundError(absl::StrCat("cluster: no cluster named ", common::Quoted(cluster),
                                          " (configured: ", absl::StrJoin(names, ", "), ")"));
}

absl::StatusOr<std::string> ClusterClients::Resolve(absl::string_view cluster) const {
  absl::StatusOr<size_t> i = Find(cluster);
  if (!i.ok()) return i.status();
  return clusters_[*i].name;
}

absl::StatusOr<cellar::v1::GetClusterInfoResponse> ClusterClients::GetClusterInfo(
    absl::string_view cluster) {
  absl::StatusOr<size_t> i = Find(cluster);
  if (!i.ok()) return i.status();
  std::vector<std::string> errors;
  for (size_t j = 0; j < masters_[*i].size(); ++j) {
    grpc::ClientContext context;
    common::SetDeadline(&context, rpc_timeout_);
    cellar::v1::GetClusterInfoResponse info;
    grpc::Status s = MasterStub(*i, j)->GetClusterInfo(&context, {}, &info);
    if (s.ok()) {
      ForgetRestartedStorages(info);
      return info;
    }
    MasterCallFailed(*i, j, s);
    errors.push_back(absl::StrCat(clusters_[*i].master_addresses[j], ": ", s.error_message()));
  }
  return absl::UnavailableError(absl::StrCat("cluster \"", clusters_[*i].name,
                                             "\": no master answered (",
                                             absl::StrJoin(errors, "; "), ")"));
}

absl::StatusOr<cellar::v1::ClusterState> ClusterClients::StartCluster(absl::string_view cluster) {
  cellar::v1::StartClusterResponse response;
  absl::Status s = CallMaster(cluster, [&](cellar::v1::Master::Stub* master,
                                           grpc::ClientContext* context) {
    return master->StartCluster(context, {}, &response);
  });
  if (!s.ok()) return s;
  return response.cluster_state();
}

absl::Status ClusterClients::CallMaster(
    absl::string_view cluster,
    const std::function<grpc::Status(cellar::v1::Master::Stub*, grpc::ClientContext*)>& call,
    absl::Duration timeout) {
  absl::StatusOr<size_t> i = Find(cluster);
  if (!i.ok()) return i.status();
  std::vector<std::string> errors;
  for (size_t j = 0; j < masters_[*i].size(); ++j) {
    grpc::ClientContext context;
    common::SetDeadline(&context, timeout > absl::ZeroDuration() ? timeout : rpc_timeout_);
    grpc::Status s = call(MasterStub(*i, j).get(), &context);
    if (s.ok()) return absl::OkStatus();
    MasterCallFailed(*i, j, s);
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      return common::FromGrpcStatus(s);
    }
    errors.push_back(absl::StrCat(clusters_[*i].master_addresses[j], ": ", s.error_message()));
  }
  return absl::UnavailableError(absl::StrCat("cluster \"", clusters_[*i].name,
                                             "\": no master answered (",
                                             absl::StrJoin(errors, "; "), ")"));
}

std::shared_ptr<cellar::v1::Storage::Stub> ClusterClients::StorageStub(const std::string& address) {
  absl::MutexLock l(&mu_);
  auto& stub = storages_[address];
  if (stub == nullptr) {
    stub = cellar::v1::Storage::NewStub(common::MakeChannel(address, node_channel_));
  }
  return stub;
}

}  // namespace cellar::admin
