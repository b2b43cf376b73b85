#ifndef CELLAR_SERVICES_MASTER_TEST_NODES_H_
#define CELLAR_SERVICES_MASTER_TEST_NODES_H_

// Tests of the master's domain objects: registers a node with a
// ClusterManager (cluster name "test") and opens its Watch stream.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"

namespace cellar::master {

// Registers a node of `role` from `address` ("" for clients and admins)
// and watches it (its stream goes to `subs`). Returns its id; 0 (with a
// test failure) if the manager refused. `version`/`track`: what it
// registers with; `node_id`: its stored id (0 = new node).
inline uint32_t RegisterAndWatch(ClusterManager& cluster, cellar::v1::NodeRole role,
                                 const std::string& address,
                                 std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>>& subs,
                                 const std::string& version = "",
                                 const std::string& track = "", uint32_t node_id = 0) {
  cellar::v1::RegisterNodeRequest r;
  r.set_cluster_name("test");
  r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
  r.set_role(role);
  r.set_address(address);
  r.set_version(version);
  r.set_track(track);
  r.set_node_id(node_id);
  auto res = cluster.RegisterNode(r);
  EXPECT_TRUE(res.ok()) << res.status();
  if (!res.ok()) return 0;
  auto sub = cluster.Watch(res->node_id());
  EXPECT_TRUE(sub.ok()) << sub.status();
  if (sub.ok()) subs[res->node_id()] = *sub;
  return res->node_id();
}

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_TEST_NODES_H_
