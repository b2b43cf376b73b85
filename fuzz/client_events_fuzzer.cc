// libFuzzer target: the client's handling of what the master streams to it.
//
// Each record of the input (fuzz_input.h) is a serialized
// cellar.v1.ClusterEvent (selector even) or GetClusterInfoResponse (odd),
// applied the way Client::HandleEvent and Client::RefreshTable apply them:
// to a ClusterView (snapshot, partition-table delta, whole table, node,
// cluster state) and an ObjectCache (invalidations). After each, the
// routing queries a commit or a load makes run over the result, and
// common::PartitionTable round-trips the table. Storage stubs are never
// dialled (the stub factory returns null).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/cluster_view.h"
#include "client/object_cache.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/fuzz_support.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/partition_table.h"

namespace cellar::fuzz {
namespace {

namespace v1 = ::cellar::v1;

void Query(const client::ClusterView& view, client::ObjectCache* cache, uint64_t oid) {
  (void)view.ReadNodesFor(oid);
  (void)view.RunningStorageNodes();
  (void)view.cluster_state();
  (void)view.epoch();
  std::shared_ptr<const common::PartitionTable> table = view.table();
  if (!table->empty()) {
    const uint32_t p = table->PartitionOf(oid);
    (void)table->WritableNodes(p);
    (void)table->ReadableNodes(p);
    (void)table->NodeIds();
    auto again = common::PartitionTable::FromProto(table->ToProto());
    if (!again.ok()) __builtin_trap();  // what the view accepted must round-trip
  }
  for (uint32_t node : view.RunningStorageNodes()) {
    v1::NodeInfo info;
    (void)view.GetNode(node, &info);
    (void)view.Stub(node);
  }
  (void)cache->LookupBefore(oid, cache->last_tid() + 1);
}

}  // namespace
}  // namespace cellar::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cellar::fuzz;  // NOLINT
  namespace v1 = ::cellar::v1;
  cellar::client::ClusterView view(
      [](const std::string&) { return std::shared_ptr<cellar::client::ClusterView::StorageStub>(); });
  cellar::client::ObjectCache cache(1 << 20);
  cache.Insert(1, 5, 0, "one");
  cache.Insert(2, 5, 0, "two");
  RecordReader reader(data, size);
  Record r;
  uint64_t oid = 1;
  while (reader.Next(&r)) {
    if (r.selector % 2 == 0) {
      v1::ClusterEvent event;
      if (!event.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) continue;
      switch (event.event_case()) {
        case v1::ClusterEvent::kSnapshot:
          (void)view.Reset(event.snapshot());
          if (event.snapshot().last_tid() != 0) cache.Clear(event.snapshot().last_tid());
          break;
        case v1::ClusterEvent::kPartitionTableDelta:
          (void)view.ApplyDelta(event.partition_table_delta());
          break;
        case v1::ClusterEvent::kPartitionTable:
          (void)view.ReplaceTable(event.partition_table());
          break;
        case v1::ClusterEvent::kNode:
          view.UpdateNode(event.node());
          break;
        case v1::ClusterEvent::kClusterState:
          view.SetClusterState(event.cluster_state());
          break;
        case v1::ClusterEvent::kInvalidation: {
          std::vector<uint64_t> oids(event.invalidation().oids().begin(),
                                     event.invalidation().oids().end());
          cache.Invalidate(event.invalidation().tid(), oids);
          if (!oids.empty()) oid = oids[0];
          break;
        }
        default:
          break;
      }
    } else {
      v1::GetClusterInfoResponse info;
      if (!info.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) continue;
      (void)view.ReplaceTable(info.partition_table());
      std::vector<v1::NodeInfo> nodes(info.nodes().begin(), info.nodes().end());
      view.ReplaceNodes(nodes);
      view.SetClusterState(info.cluster_state());
    }
    Query(view, &cache, oid);
  }
  return 0;
}
