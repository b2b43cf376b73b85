// libFuzzer target: cellar.v1.Admin requests, straight into the adapter.
//
// Each input is a sequence of records (fuzz_input.h): the selector picks the
// rpc, the payload is parsed as its request and handed to AdminService,
// which validates it, resolves the cluster and calls its master. The one
// configured cluster ("cellar") has a master address where nothing listens
// (127.0.0.1:1, refused at once), so what is covered is the admin's own
// part: request validation, cluster resolution, the alert index and the
// mapping of a master that does not answer. Built once per process (the
// service keeps no per-request state besides the alert index).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/fuzz_support.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/admin/admin_service.h"
#include "services/admin/alert_index.h"
#include "services/admin/cluster_clients.h"
#include "services/common/fake_clock.h"

namespace cellar::fuzz {
namespace {

using admin::AdminService;

struct Admin {
  common::FakeClock clock;
  std::unique_ptr<admin::ClusterClients> clusters;
  std::unique_ptr<admin::AlertIndex> alerts;
  std::unique_ptr<AdminService> service;
};

Admin* MakeAdmin() {
  auto* a = new Admin;
  auto clusters = admin::ClusterClients::Create({{"cellar", {"127.0.0.1:1"}}},
                                                absl::Milliseconds(200));
  if (!clusters.ok()) std::abort();
  a->clusters = *std::move(clusters);
  a->alerts = std::make_unique<admin::AlertIndex>(&a->clock);
  a->service = std::make_unique<AdminService>(a->clusters.get(), a->alerts.get(), &a->clock);
  return a;
}

}  // namespace
}  // namespace cellar::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cellar::fuzz;  // NOLINT
  using cellar::admin::AdminService;
  static Admin* admin = MakeAdmin();
  AdminService* s = admin->service.get();
  RecordReader reader(data, size);
  Record r;
  while (reader.Next(&r)) {
    switch (r.selector % 22) {
      case 0: Call(r.payload, s, &AdminService::GetClusterStatus); break;
      case 1: Call(r.payload, s, &AdminService::ListNodes); break;
      case 2: Call(r.payload, s, &AdminService::GetNode); break;
      case 3: Call(r.payload, s, &AdminService::GetPartitionTable); break;
      case 4: Call(r.payload, s, &AdminService::StartCluster); break;
      case 5: Call(r.payload, s, &AdminService::LastTransactions); break;
      case 6: Call(r.payload, s, &AdminService::ObjectHistory); break;
      case 7: Call(r.payload, s, &AdminService::ListClusters); break;
      case 8: Call(r.payload, s, &AdminService::ListAlerts); break;
      case 9: Call(r.payload, s, &AdminService::AcknowledgeAlert); break;
      case 10: Call(r.payload, s, &AdminService::DeleteAlert); break;
      case 11: Call(r.payload, s, &AdminService::SetClusterState); break;
      case 12: Call(r.payload, s, &AdminService::TweakPartitionTable); break;
      case 13: Call(r.payload, s, &AdminService::AddStorages); break;
      case 14: Call(r.payload, s, &AdminService::DropStorage); break;
      case 15: Call(r.payload, s, &AdminService::SetReplicas); break;
      case 16: Call(r.payload, s, &AdminService::KillNode); break;
      case 17: Call(r.payload, s, &AdminService::CheckReplicas); break;
      case 18: Call(r.payload, s, &AdminService::GetCheckStatus); break;
      case 19: Call(r.payload, s, &AdminService::RepairCell); break;
      case 20: Call(r.payload, s, &AdminService::Truncate); break;
      case 21: Call(r.payload, s, &AdminService::StopNode); break;
    }
  }
  return 0;
}
