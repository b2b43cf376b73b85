#include "services/storage/backend/pack_plan.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "services/common/ids.h"

namespace cellar::storage {
namespace {

// Undo back-pointer chains longer than this are left alone (corruption;
// the loads report it).
constexpr int kMaxUndoChain = 64;

}  // namespace

absl::Status CheckPackArguments(uint64_t pack_tid, uint32_t max_items) {
  if (pack_tid == 0 || pack_tid > common::kMaxTid) {
    return absl::InvalidArgumentError(
        absl::StrCat("pack tid ", pack_tid, " is not a valid tid"));
  }
  if (max_items == 0) {
    return absl::InvalidArgumentError("pack chunk: max_items must be > 0");
  }
  return absl::OkStatus();
}

OidPackPlan PlanOidPack(const std::vector<PackRow>& rows, uint64_t pack_tid) {
  OidPackPlan plan;
  // k: index of the revision current at pack_tid.
  size_t k = 0;
  bool any = false;
  for (size_t i = 0; i < rows.size() && rows[i].tid <= pack_tid; ++i) {
    k = i;
    any = true;
  }
  if (!any || k == 0) return plan;
  std::map<uint64_t, size_t> removed;  // tid -> index
  for (size_t i = 0; i < k; ++i) removed.emplace(rows[i].tid, i);
  // Removed revision -> the kept revision that took its bytes.
  std::map<uint64_t, uint64_t> owner;
  for (size_t i = k; i < rows.size(); ++i) {
    const PackRow& row = rows[i];
    if (row.data_tid == 0 || row.data_tid >= rows[k].tid) continue;
    auto target = removed.find(row.data_tid);
    for (int hops = 0; target != removed.end() &&
                       rows[target->second].data_tid != 0;
         ++hops) {
      if (hops == kMaxUndoChain) {
        target = removed.end();
        break;
      }
      target = removed.find(rows[target->second].data_tid);
    }
    if (target == removed.end()) continue;  // already dangling: left as is
    const PackRow& t = rows[target->second];
    PackRewrite rw;
    rw.tid = row.tid;
    auto [it, first] = owner.emplace(t.tid, row.tid);
    if (first) {
      rw.source_tid = t.tid;
      rw.data_id = t.data_id;
      rw.checksum = t.checksum;
      if (t.data_id == 0 && i + 1 == rows.size()) plan.objects_delta = -1;
    } else {
      rw.data_tid = it->second;
    }
    plan.rewrites.push_back(std::move(rw));
  }
  for (size_t i = 0; i < k; ++i) {
    plan.removed_tids.push_back(rows[i].tid);
    if (rows[i].data_id != 0 && owner.count(rows[i].tid) == 0) {
      plan.freed_data_ids.push_back(rows[i].data_id);
      plan.bytes_freed += rows[i].data_len;
    }
  }
  return plan;
}

}  // namespace cellar::storage
