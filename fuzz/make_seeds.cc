// Writes the seed corpus of every fuzz target (fuzz_input.h format) from
// real request and answer messages, the ones the client, the storages and
// the master exchange in a commit and a load:
//   bazel run //fuzz:make_seeds -- "$PWD/fuzz/corpus"
// Existing seed files of the same name are overwritten; crash regressions
// (crash-*) are left alone.

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "protos/cellar/v1/admin.pb.h"
#include "protos/cellar/v1/master.pb.h"
#include "protos/cellar/v1/storage.pb.h"
#include "services/common/checksum.h"
#include "services/common/ttid_token.h"

namespace cellar::fuzz {
namespace {

namespace v1 = ::cellar::v1;

constexpr uint64_t kTtid = 0x03f1a2b3c4d5e600;  // a ttid the master could give
constexpr uint64_t kTid = kTtid + 0x100;
constexpr uint32_t kClient = 0x04000001;
constexpr uint64_t kEpoch = 5;  // the storage fuzzer's persisted epoch

std::string dir;

class Seed {
 public:
  template <typename M>
  Seed& Add(uint8_t selector, const M& message) {
    AppendRecord(selector, message.SerializeAsString(), &bytes_);
    return *this;
  }
  Seed& Raw(uint8_t selector, const std::string& payload) {
    AppendRecord(selector, payload, &bytes_);
    return *this;
  }
  void Write(const std::string& target, const std::string& name) {
    const std::string path = dir + "/" + target + "/seed-" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes_;
    if (!out) {
      std::fprintf(stderr, "make_seeds: cannot write %s\n", path.c_str());
      std::exit(1);
    }
    std::printf("%s (%zu bytes)\n", path.c_str(), bytes_.size());
  }

 private:
  std::string bytes_;
};

v1::ObjectToStore Obj(uint64_t oid, uint64_t base, const std::string& data) {
  v1::ObjectToStore o;
  o.set_oid(oid);
  o.set_base_serial(base);
  o.set_data(data);
  o.set_checksum(common::Checksum(data));
  return o;
}

v1::PartitionTable Table() {
  v1::PartitionTable pt;
  pt.set_ptid(3);
  pt.set_num_partitions(4);
  pt.set_num_replicas(1);
  for (uint32_t p = 0; p < 4; ++p) {
    auto* row = pt.add_rows();
    row->set_partition(p);
    for (uint32_t n : {1u, 2u}) {
      auto* cell = row->add_cells();
      cell->set_node_id(n);
      cell->set_state(p == 3 && n == 2 ? v1::CELL_OUT_OF_DATE : v1::CELL_UP_TO_DATE);
    }
  }
  return pt;
}

v1::NodeInfo Node(uint32_t id, v1::NodeRole role, const std::string& address) {
  v1::NodeInfo n;
  n.set_node_id(id);
  n.set_role(role);
  n.set_address(address);
  n.set_state(v1::NODE_RUNNING);
  n.set_version("0.1.0");
  n.set_build_id("dev");
  n.set_track("stable");
  n.set_registered_unix_ms(1800000000000);
  return n;
}

// Storage selectors: see storage_service_fuzzer.cc.
void StorageSeeds() {
  const std::string t = "storage_service";
  v1::StoreRequest store;
  store.set_ttid(kTtid);
  store.set_client_node_id(kClient);
  store.set_ttid_token(common::TtidToken(kFuzzTtidKey, kTtid));
  *store.add_objects() = Obj(1, 0, "hello");
  *store.add_objects() = Obj(5, 0, "world");
  v1::TransactionMetadata meta;
  meta.set_user("alice");
  meta.set_description("first commit");
  meta.set_extension("\x80\x03}q\x00.");
  meta.add_oids(1);
  meta.add_oids(5);
  meta.set_size_bytes(10);
  v1::VoteRequest vote;
  vote.set_ttid(kTtid);
  vote.set_client_node_id(kClient);
  vote.set_ttid_token(common::TtidToken(kFuzzTtidKey, kTtid));
  *vote.mutable_metadata() = meta;
  v1::LockTransactionRequest lock;
  lock.set_epoch(kEpoch);
  lock.set_ttid(kTtid);
  lock.set_tid(kTid);
  lock.set_min_ptid(3);
  v1::UnlockTransactionRequest unlock;
  unlock.set_epoch(kEpoch);
  unlock.set_ttid(kTtid);
  unlock.set_tid(kTid);
  v1::LoadRequest load;
  load.set_oid(1);
  load.set_before_tid(~uint64_t{0});
  v1::LoadRequest load_serial;
  load_serial.set_oid(5);
  load_serial.set_serial(kTid);
  v1::HistoryRequest history;
  history.set_oid(1);
  history.set_limit(10);
  v1::LastTransactionsRequest last;
  last.set_limit(10);
  v1::GetTransactionOutcomeRequest outcome;
  outcome.set_ttid(kTtid);
  v1::LoadManyRequest load_many;
  load_many.add_oids(1);
  load_many.add_oids(5);
  load_many.add_oids(1);
  load_many.set_before_tid(~uint64_t{0});
  Seed()
      .Add(0, store).Add(1, vote).Add(3, lock).Add(4, unlock)
      .Add(5, load).Add(5, load_serial).Add(6, history).Add(7, last).Add(9, outcome)
      .Add(14, load_many)
      .Write(t, "commit-and-read");

  v1::StoreRequest store_vote = store;
  store_vote.set_vote(true);
  *store_vote.mutable_metadata() = meta;
  v1::AbortTransactionRequest abort;
  abort.set_ttid(kTtid);
  abort.set_epoch(kEpoch);
  abort.set_ttid_token(common::TtidToken(kFuzzTtidKey, kTtid));
  Seed().Add(0, store_vote).Add(9, outcome).Add(2, abort).Add(9, outcome).Write(t, "vote-then-abort");

  v1::StoreRequest undo;  // an undo: data_serial names an older revision
  undo.set_ttid(kTtid + 0x200);
  undo.set_client_node_id(kClient);
  undo.set_ttid_token(common::TtidToken(kFuzzTtidKey, kTtid + 0x200));
  v1::ObjectToStore o;
  o.set_oid(1);
  o.set_base_serial(kTid);
  o.set_data_serial(kTid);
  o.set_checksum(common::Checksum("hello"));
  *undo.add_objects() = o;
  undo.set_vote(true);
  v1::TransactionMetadata undo_meta;
  undo_meta.add_oids(1);
  *undo.mutable_metadata() = undo_meta;
  Seed().Add(0, store).Add(1, vote).Add(3, lock).Add(4, unlock).Add(0, undo).Write(t, "undo");

  v1::GetNodeStatusRequest status;
  v1::CheckCellRequest check;
  check.set_partition(1);
  check.set_max_tid(~uint64_t{0});
  check.set_max_transactions(100);
  check.set_with_data(true);
  check.set_epoch(kEpoch);
  v1::SaveMasterStateRequest save;
  save.set_epoch(kEpoch);
  save.set_oid_high_water(1000);
  v1::TruncateDataRequest truncate;
  truncate.set_tid(kTid);
  truncate.set_epoch(kEpoch);
  v1::ShutdownRequest shutdown;
  shutdown.set_reason("maintenance");
  shutdown.set_node_id(1);  // the fuzzed storage's own id
  Seed()
      .Add(0, store).Add(1, vote).Add(3, lock).Add(4, unlock)
      .Add(8, status).Add(10, check).Add(12, save).Add(11, truncate).Add(13, shutdown)
      .Write(t, "operator");
}

// Master selectors: see master_service_fuzzer.cc (0x80: fill in ids).
void MasterSeeds() {
  const std::string t = "master_service";
  v1::RegisterNodeRequest storage;
  storage.set_cluster_name("cellar");
  storage.set_protocol_version(v1::PROTOCOL_VERSION_1);
  storage.set_role(v1::NODE_ROLE_STORAGE);
  storage.set_address("127.0.0.1:7201");
  storage.set_version("0.1.0");
  storage.set_build_id("dev");
  storage.set_track("stable");
  v1::RegisterNodeRequest client;
  client.set_cluster_name("cellar");
  client.set_protocol_version(v1::PROTOCOL_VERSION_1);
  client.set_role(v1::NODE_ROLE_CLIENT);
  client.set_version("0.1.0");
  v1::StartClusterRequest start;
  v1::GetClusterInfoRequest info;
  v1::AllocateOidsRequest oids;
  oids.set_count(10);
  v1::BeginRequest begin;  // node_id filled in
  v1::FinishRequest finish;  // node_id, ttid filled in
  finish.add_voted_node_ids(1);
  finish.add_oids(1);
  finish.set_ptid(1);
  for (uint32_t p = 0; p < 4; ++p) {
    finish.add_partitions(p);
    auto* voters = finish.add_partition_voters();
    voters->set_partition(p);
    voters->add_node_ids(1);
  }
  auto* check = finish.add_conflict_checks();
  check->set_partition(1);
  check->set_node_id(1);
  check->set_ptid(1);
  v1::GetTransactionStatusRequest txn_status;
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_node_id(1);
  Seed()
      .Add(0, storage).Add(7, start).Add(0, client).Add(6, info).Add(1, oids)
      .Add(0x82, begin).Add(0x83, finish).Add(0x85, txn_status).Add(8, heartbeat)
      .Write(t, "start-and-commit");

  v1::AbortRequest abort;
  abort.add_storage_node_ids(1);
  Seed()
      .Add(0, storage).Add(7, start).Add(0, client).Add(0x82, begin).Add(0x84, abort)
      .Add(0x85, txn_status)
      .Write(t, "begin-abort");

  v1::RegisterNodeRequest storage2 = storage;
  storage2.set_address("127.0.0.1:7202");
  v1::PartitionTable recovered = Table();
  *storage2.mutable_partition_table() = recovered;
  storage2.set_last_tid(kTid);
  storage2.set_last_oid(5);
  storage2.add_voted_ttids(kTtid);
  storage2.set_highest_epoch(2);
  v1::ReportReplicationRequest report;
  report.set_node_id(2);
  v1::SetClusterStateRequest state;
  state.set_state(v1::CLUSTER_RUNNING);
  v1::ChangePartitionTableRequest change;
  change.set_operation(v1::PT_TWEAK);
  change.set_dry_run(true);
  v1::KillNodeRequest kill;
  kill.set_node_id(2);
  Seed()
      .Add(0, storage).Add(0, storage2).Add(7, start).Add(9, report).Add(10, state)
      .Add(11, change).Add(12, kill).Add(6, info)
      .Write(t, "recovery-and-operator");
}

void ClientSeeds() {
  const std::string t = "client_events";
  v1::ClusterEvent snapshot;
  auto* s = snapshot.mutable_snapshot();
  s->set_cluster_state(v1::CLUSTER_RUNNING);
  *s->mutable_partition_table() = Table();
  *s->add_nodes() = Node(1, v1::NODE_ROLE_STORAGE, "127.0.0.1:7201");
  *s->add_nodes() = Node(2, v1::NODE_ROLE_STORAGE, "127.0.0.1:7202");
  *s->add_nodes() = Node(0x01000001, v1::NODE_ROLE_MASTER, "127.0.0.1:7100");
  s->set_last_tid(kTid);
  s->set_epoch(kEpoch);
  v1::ClusterEvent delta;
  delta.mutable_partition_table_delta()->set_ptid(4);
  auto* change = delta.mutable_partition_table_delta()->add_changes();
  change->set_partition(3);
  change->set_node_id(2);
  change->set_state(v1::CELL_UP_TO_DATE);
  v1::ClusterEvent node;
  *node.mutable_node() = Node(2, v1::NODE_ROLE_STORAGE, "127.0.0.1:7302");
  node.mutable_node()->set_state(v1::NODE_DOWN);
  v1::ClusterEvent invalidation;
  invalidation.mutable_invalidation()->set_tid(kTid + 1);
  invalidation.mutable_invalidation()->add_oids(1);
  invalidation.mutable_invalidation()->add_oids(5);
  v1::ClusterEvent state;
  state.set_cluster_state(v1::CLUSTER_VERIFYING);
  v1::ClusterEvent table;
  *table.mutable_partition_table() = Table();
  table.mutable_partition_table()->set_ptid(9);
  Seed().Add(0, snapshot).Add(0, delta).Add(0, node).Add(0, invalidation).Add(0, state)
      .Add(0, table).Write(t, "watch-stream");
  v1::GetClusterInfoResponse info;
  info.set_cluster_state(v1::CLUSTER_RUNNING);
  *info.mutable_partition_table() = Table();
  *info.add_nodes() = Node(1, v1::NODE_ROLE_STORAGE, "127.0.0.1:7201");
  info.set_last_tid(kTid);
  Seed().Add(0, snapshot).Add(1, info).Add(0, delta).Write(t, "refresh");
}

std::string U64(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}
std::string Blob(const std::string& b) { return std::string(1, static_cast<char>(b.size())) + b; }

// Rows as the SQLite backend writes them (columns: sqlite_records_fuzzer.cc).
void SqliteSeeds() {
  const std::string t = "sqlite_records";
  Seed seed;
  for (uint8_t p = 0; p < 4; ++p) {
    seed.Raw(0, std::string{static_cast<char>(p), 1, static_cast<char>(v1::CELL_UP_TO_DATE)});
  }
  seed.Raw(6, Blob("node_id") + "1").Raw(6, Blob("num_partitions") + "4")
      .Raw(6, Blob("num_replicas") + "0").Raw(6, Blob("master_epoch") + "5");
  // obj: part, oid, tid, data_tid, data_id (its bytes in `data`), checksum, data.
  seed.Raw(1, std::string(1, 1) + U64(1) + U64(kTid) + U64(0) + std::string(1, 1) +
                  Blob(common::Checksum("hello")) + "hello");
  seed.Raw(1, std::string(1, 1) + U64(5) + U64(kTid) + U64(0) + std::string(1, 2) +
                  Blob(common::Checksum("world")) + "world");
  seed.Raw(1, std::string(1, 1) + U64(1) + U64(kTid + 0x200) + U64(kTid) + std::string(1, 0) +
                  Blob("") + "");
  // trans: part, tid, ttid, packed, size, user, description, extension, oids.
  seed.Raw(2, std::string(1, 1) + U64(kTid) + U64(kTtid) + std::string(1, 0) + U64(10) +
                  Blob("alice") + Blob("first commit") + Blob("") + U64(1) + U64(5));
  // tobj + ttrans (a vote), tlock (a lock).
  seed.Raw(3, U64(kTtid + 0x300) + std::string(1, 2) + U64(6) + U64(0) + std::string(1, 3) +
                  Blob(common::Checksum("voted")) + "voted");
  seed.Raw(4, U64(kTtid + 0x300) + std::string(1, 2) + U64(5) + Blob("bob") + Blob("") +
                  Blob("") + U64(6));
  seed.Raw(5, U64(kTtid) + U64(kTid));
  seed.Write(t, "committed-voted-locked");
  // A corrupt oid list (not a multiple of 8 bytes) and a negative tid.
  Seed()
      .Raw(2, std::string(1, 0) + U64(~uint64_t{0}) + U64(kTtid) + std::string(1, 1) + U64(0) +
                  Blob("") + Blob("") + Blob("") + "12345")
      .Write(t, "corrupt-oids");
}

// Admin selectors: see admin_service_fuzzer.cc.
void AdminSeeds() {
  const std::string t = "admin_service";
  v1::GetClusterStatusRequest status;
  status.set_cluster("cellar");
  v1::ListNodesRequest nodes;
  v1::GetNodeRequest node;
  node.set_name("S1");
  v1::GetPartitionTableRequest table;
  v1::AdminLastTransactionsRequest last;
  last.set_limit(10);
  v1::ObjectHistoryRequest history;
  history.set_oid(1);
  history.set_limit(10);
  v1::ListClustersRequest clusters;
  v1::ListAlertsRequest alerts;
  alerts.set_min_severity(v1::ALERT_WARNING);
  Seed()
      .Add(0, status).Add(1, nodes).Add(2, node).Add(3, table).Add(5, last).Add(6, history)
      .Add(7, clusters).Add(8, alerts)
      .Write(t, "reads");
  v1::AcknowledgeAlertRequest ack;
  ack.set_id("storage_down:S1");
  ack.set_by("alice");
  v1::DeleteAlertRequest del;
  del.set_id("storage_down:S1");
  v1::AdminSetClusterStateRequest state;
  state.set_state(v1::CLUSTER_RUNNING);
  v1::TweakPartitionTableRequest tweak;
  tweak.set_dry_run(true);
  v1::AddStoragesRequest add;
  add.add_names("S3");
  add.set_dry_run(true);
  v1::DropStorageRequest drop;
  drop.set_name("S2");
  v1::SetReplicasRequest replicas;
  replicas.set_replicas(1);
  replicas.set_dry_run(true);
  v1::AdminKillNodeRequest kill;
  kill.set_node_id(2);
  v1::CheckReplicasRequest check;
  v1::GetCheckStatusRequest check_status;
  v1::AdminRepairCellRequest repair;
  repair.set_partition(1);
  repair.set_name("S2");
  repair.set_source_name("S1");
  v1::AdminTruncateRequest truncate;
  truncate.set_tid(kTid);
  v1::StopNodeRequest stop;
  stop.set_name("S2");
  stop.set_reason("maintenance");
  Seed()
      .Add(9, ack).Add(10, del).Add(11, state).Add(12, tweak).Add(13, add).Add(14, drop)
      .Add(15, replicas).Add(16, kill).Add(17, check).Add(18, check_status).Add(19, repair)
      .Add(20, truncate).Add(21, stop)
      .Write(t, "operator");
}

}  // namespace
}  // namespace cellar::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds CORPUS_DIR (e.g. $PWD/fuzz/corpus)\n");
    return 2;
  }
  cellar::fuzz::dir = argv[1];
  cellar::fuzz::StorageSeeds();
  cellar::fuzz::MasterSeeds();
  cellar::fuzz::ClientSeeds();
  cellar::fuzz::SqliteSeeds();
  cellar::fuzz::AdminSeeds();
  return 0;
}
