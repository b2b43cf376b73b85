// libFuzzer target: cellar.v1.Master requests, straight into the adapter.
//
// Each input is a sequence of records (fuzz_input.h): the selector picks the
// rpc, the payload is parsed as its request and handed to MasterService over
// a fresh ClusterManager + TransactionCoordinator + EventHub (4 partitions,
// no replicas, epoch 5, the cluster starts once one storage registered) and a storage
// caller that answers every lock, unlock and abort with OK and every outcome
// query with "unknown". Built fresh per input, so a crash reproduces from
// its input alone. A selector with its top bit set (0x80) fills a zero
// node_id / ttid in the request with the last node id RegisterNode or the
// last ttid Begin returned, so that inputs reach a commit without guessing
// the ids the master makes up. Not called: Watch (a server stream); the replica check
// and truncate rpcs answer UNIMPLEMENTED here (no checker or truncator).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/fuzz_support.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/fake_clock.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/master_service.h"
#include "services/master/ok_storage_caller.h"
#include "services/master/transaction_coordinator.h"

namespace cellar::fuzz {
namespace {

namespace v1 = ::cellar::v1;
using master::MasterService;
using master::StorageTarget;

// Every storage answers at once and succeeds, except shutdowns.
class FuzzStorageCaller final : public master::OkStorageCaller {
 public:
  absl::Status Shutdown(const StorageTarget&, const std::string&) override {
    return absl::UnavailableError("no storage (fuzzing)");
  }
};

// The ids the master handed out, for requests that ask to fill them in.
struct LastIds {
  uint32_t node_id = 0;
  uint64_t ttid = 0;
};

template <typename M>
auto FillNodeId(M* m, const LastIds& ids, int) -> decltype(m->node_id(), void()) {
  if (m->node_id() == 0) m->set_node_id(ids.node_id);
}
template <typename M>
void FillNodeId(M*, const LastIds&, long) {}
template <typename M>
auto FillTtid(M* m, const LastIds& ids, int) -> decltype(m->ttid(), void()) {
  if (m->ttid() == 0) m->set_ttid(ids.ttid);
}
template <typename M>
void FillTtid(M*, const LastIds&, long) {}

template <typename M>
auto Remember(const M& m, LastIds* ids, int) -> decltype(m.node_id(), void()) {
  if (m.node_id() != 0) ids->node_id = m.node_id();
}
template <typename M>
void Remember(const M&, LastIds*, long) {}
template <typename M>
auto RememberTtid(const M& m, LastIds* ids, int) -> decltype(m.ttid(), void()) {
  if (m.ttid() != 0) ids->ttid = m.ttid();
}
template <typename M>
void RememberTtid(const M&, LastIds*, long) {}

// Call with the ids filled in (selector bit 0x80) and remembered.
template <typename Request, typename Response>
void Call(const Record& r, MasterService* service,
          grpc::Status (MasterService::*method)(grpc::ServerContext*, const Request*, Response*),
          LastIds* ids) {
  Request request;
  if (!request.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) return;
  if (r.selector & 0x80) {
    FillNodeId(&request, *ids, 0);
    FillTtid(&request, *ids, 0);
  }
  Response response;
  grpc::Status status;
  (void)CallRpc(request.SerializeAsString(), service, method, &response, &status);
  if (!status.ok()) return;
  Remember(response, ids, 0);
  RememberTtid(response, ids, 0);
}

}  // namespace
}  // namespace cellar::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cellar::fuzz;  // NOLINT
  namespace v1 = ::cellar::v1;
  using cellar::master::MasterService;
  cellar::common::FakeClock clock;
  cellar::master::EventHub hub(1000);
  cellar::master::ClusterOptions cluster_options;
  cluster_options.num_partitions = 4;
  cluster_options.num_replicas = 0;
  cluster_options.autostart = 1;
  cluster_options.epoch = 5;
  cellar::master::ClusterManager cluster(cluster_options, &clock, &hub);
  FuzzStorageCaller storages;
  cellar::master::CoordinatorOptions coordinator_options;
  coordinator_options.partial_lock_retry = absl::Milliseconds(1);
  cellar::master::TransactionCoordinator coordinator(&clock, &cluster, &storages, &hub,
                                                     coordinator_options);
  MasterService service(&cluster, &coordinator, &hub, &storages);

  LastIds ids;
  RecordReader reader(data, size);
  Record r;
  while (reader.Next(&r)) {
    switch (r.selector % 16) {
      case 0: Call(r, &service, &MasterService::RegisterNode, &ids); break;
      case 1: Call(r, &service, &MasterService::AllocateOids, &ids); break;
      case 2: Call(r, &service, &MasterService::Begin, &ids); break;
      case 3: Call(r, &service, &MasterService::Finish, &ids); break;
      case 4: Call(r, &service, &MasterService::Abort, &ids); break;
      case 5: Call(r, &service, &MasterService::GetTransactionStatus, &ids); break;
      case 6: Call(r, &service, &MasterService::GetClusterInfo, &ids); break;
      case 7: Call(r, &service, &MasterService::StartCluster, &ids); break;
      case 8: Call(r, &service, &MasterService::Heartbeat, &ids); break;
      case 9: Call(r, &service, &MasterService::ReportReplication, &ids); break;
      case 10: Call(r, &service, &MasterService::SetClusterState, &ids); break;
      case 11: Call(r, &service, &MasterService::ChangePartitionTable, &ids); break;
      case 12: Call(r, &service, &MasterService::KillNode, &ids); break;
      case 13: Call(r, &service, &MasterService::CheckReplicas, &ids); break;
      case 14: Call(r, &service, &MasterService::RepairCell, &ids); break;
      case 15: Call(r, &service, &MasterService::Truncate, &ids); break;
    }
  }
  return 0;
}
