// libFuzzer target: cellar.v1.Storage requests, straight into the adapter.
//
// Each input is a sequence of records (fuzz_input.h): the selector picks the
// rpc, the payload is parsed as its request message (an unparsable payload
// is skipped, as gRPC would refuse it) and handed to StorageService, which
// validates it and calls a StorageNode over an in-memory backend. The node
// is built fresh for every input (so a crash reproduces from its input
// alone) with a persisted partition table: node 1 owns partitions 0-2
// (UP_TO_DATE), node 2 partition 3, master epoch 5, registered with a fake
// master that gives it the ttid key kFuzzTtidKey (seeds carry valid
// ttid tokens). Replicate (a server stream) is not called.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/fuzz_support.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/fake_clock.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/master_link.h"
#include "services/storage/storage_node.h"
#include "services/storage/storage_service.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::fuzz {
namespace {

namespace v1 = ::cellar::v1;
using storage::StorageBackend;

// The primary master as the node sees it: registration answers node 1,
// epoch 5, RUNNING, the persisted table and kFuzzTtidKey; Watch streams
// nothing and returns on Cancel; heartbeats and reports succeed.
class FakeMasterLink final : public storage::MasterLink {
 public:
  absl::StatusOr<v1::RegisterNodeResponse> RegisterNode(
      const v1::RegisterNodeRequest&) override {
    v1::RegisterNodeResponse response;
    response.set_node_id(1);
    response.set_epoch(5);
    response.set_cluster_state(v1::CLUSTER_RUNNING);
    response.set_ttid_key(kFuzzTtidKey);
    v1::PartitionTable* pt = response.mutable_partition_table();
    pt->set_ptid(3);
    pt->set_num_partitions(4);
    for (uint32_t p = 0; p < 4; ++p) {
      v1::PartitionRow* row = pt->add_rows();
      row->set_partition(p);
      v1::Cell* cell = row->add_cells();
      cell->set_node_id(p < 3 ? 1 : 2);
      cell->set_state(v1::CELL_UP_TO_DATE);
    }
    return response;
  }
  absl::StatusOr<v1::GetClusterInfoResponse> GetClusterInfo() override {
    return absl::UnavailableError("no cluster info (fuzzing)");
  }
  absl::Status Watch(uint32_t, const std::function<void(const v1::ClusterEvent&)>&) override {
    watching_.Notify();
    cancelled_.WaitForNotification();
    return absl::CancelledError("cancelled");
  }
  absl::Status Heartbeat(uint32_t, const std::vector<uint64_t>&,
                         const common::DataPathSample&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<v1::ReportReplicationResponse> ReportReplication(
      const v1::ReportReplicationRequest&) override {
    return v1::ReportReplicationResponse();
  }
  void Cancel() override {
    absl::MutexLock l(&mu_);
    if (!cancelled_.HasBeenNotified()) cancelled_.Notify();
  }
  // True once the node registered and opened its watch.
  bool AwaitWatching() { return watching_.WaitForNotificationWithTimeout(absl::Seconds(10)); }

 private:
  absl::Mutex mu_;
  absl::Notification watching_, cancelled_;
};

std::unique_ptr<StorageBackend> SeededBackend() {
  auto backend = std::make_unique<storage::testing::MemoryBackend>();
  (void)backend->SetConfig("node_id", "1");
  (void)backend->SetConfig("num_partitions", "4");
  (void)backend->SetConfig("num_replicas", "0");
  (void)backend->SetConfig("master_epoch", "5");
  storage::PartitionTableRecord table;
  table.ptid = 3;
  for (uint32_t p = 0; p < 4; ++p) {
    table.cells.push_back({p, p < 3 ? 1u : 2u, v1::CELL_UP_TO_DATE});
  }
  (void)backend->SavePartitionTable(table);
  return backend;
}

}  // namespace
}  // namespace cellar::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cellar::fuzz;  // NOLINT
  namespace v1 = ::cellar::v1;
  using cellar::storage::StorageService;
  static cellar::common::FakeClock clock;
  cellar::storage::StorageNodeOptions node_options;
  node_options.max_object_bytes = 1000;
  node_options.unvoted_timeout = absl::ZeroDuration();
  auto link = std::make_unique<FakeMasterLink>();
  FakeMasterLink* master = link.get();
  auto node = cellar::storage::StorageNode::Open(node_options, SeededBackend(), std::move(link),
                                                 &clock, /*metrics=*/nullptr);
  if (!node.ok()) __builtin_trap();  // the seeded state must always open
  (*node)->StartMasterLoop("127.0.0.1:1");
  if (!master->AwaitWatching()) __builtin_trap();  // registration must succeed
  cellar::storage::StorageServiceOptions options;
  options.lock_wait_timeout = absl::Milliseconds(1);
  StorageService service(node->get(), options);

  RecordReader reader(data, size);
  Record r;
  while (reader.Next(&r)) {
    switch (r.selector % 15) {
      case 0: Call(r.payload, &service, &StorageService::Store); break;
      case 1: Call(r.payload, &service, &StorageService::Vote); break;
      case 2: Call(r.payload, &service, &StorageService::AbortTransaction); break;
      case 3: Call(r.payload, &service, &StorageService::LockTransaction); break;
      case 4: Call(r.payload, &service, &StorageService::UnlockTransaction); break;
      case 5: Call(r.payload, &service, &StorageService::Load); break;
      case 6: Call(r.payload, &service, &StorageService::History); break;
      case 7: Call(r.payload, &service, &StorageService::LastTransactions); break;
      case 8: Call(r.payload, &service, &StorageService::GetNodeStatus); break;
      case 9: Call(r.payload, &service, &StorageService::GetTransactionOutcome); break;
      case 10: Call(r.payload, &service, &StorageService::CheckCell); break;
      case 11: Call(r.payload, &service, &StorageService::TruncateData); break;
      case 12: Call(r.payload, &service, &StorageService::SaveMasterState); break;
      case 13: Call(r.payload, &service, &StorageService::Shutdown); break;
      case 14: Call(r.payload, &service, &StorageService::LoadMany); break;
    }
  }
  return 0;
}
