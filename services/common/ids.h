#ifndef CELLAR_SERVICES_COMMON_IDS_H_
#define CELLAR_SERVICES_COMMON_IDS_H_

// Identifiers: OIDs, TIDs (ZODB timestamp format) and node names.
// Thread-safe (pure functions).

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cellar::common {

using Oid = uint64_t;
using Tid = uint64_t;

// The largest TID: fits a signed 64-bit SQL column.
inline constexpr Tid kMaxTid = (uint64_t{1} << 63) - 1;
// The largest master epoch a node accepts (epochs are milliseconds or
// election terms, far below it): a larger one, from a bug or a forged
// call, would wrap the next epoch (+1) to 0 or fence every real master
// out for good. INVALID_ARGUMENT above it.
inline constexpr uint64_t kMaxEpoch = uint64_t{1} << 62;
// TID 0 means "none" on the wire (no next serial, no base serial).
inline constexpr Tid kNoTid = 0;

// The ZODB TID of a point in time: high 32 bits count minutes since
// 1900-01-01 UTC (every month counted as 31 days), low 32 bits the second
// within the minute scaled by 2^32/60. Times before 1900 give 0.
Tid TidFromTime(absl::Time t);

// The UTC time a TID stands for (inverse of TidFromTime, to ~14 ns).
absl::Time TimeFromTid(Tid tid);

// "0x03e1b2c4d5e6f708" (16 hex digits).
std::string TidHex(Tid tid);

// "2026-11-22T02:30:12.123456Z" (UTC, microseconds).
std::string TidTime(Tid tid);

// "0x03e1b2c4d5e6f708 (2026-11-22T02:30:12.123456Z)": how tools print TIDs.
std::string FormatTid(Tid tid);

// "0x12" style OID (minimal hex digits).
std::string FormatOid(Oid oid);

// Parses "0x1f", "31" (decimal) or "1f" with a 0x prefix required for hex
// digits a-f to avoid ambiguity. Returns false on junk or overflow.
bool ParseUint64(absl::string_view text, uint64_t* out);

// Node ids carry their role in the top byte (as in NEO), so ids of
// different roles never collide, even when a restarted master hands out
// client ids before the storages (whose ids persist) have come back:
//   storage 0x00nnnnnn, master 0x01nnnnnn, admin 0x02nnnnnn, client 0x03nnnnnn.
enum class NodeKind : uint32_t { kStorage = 0, kMaster = 1, kAdmin = 2, kClient = 3 };
inline uint32_t MakeNodeId(NodeKind kind, uint32_t index) {
  return (static_cast<uint32_t>(kind) << 24) | (index & 0xffffffu);
}
inline uint32_t NodeIndex(uint32_t node_id) { return node_id & 0xffffffu; }
inline NodeKind NodeKindOf(uint32_t node_id) {
  return static_cast<NodeKind>(node_id >> 24);
}

// Node names as NEO prints them: S1 (storage), M1 (master), A1 (admin),
// C1 (client), from the role byte of the id.
std::string NodeName(uint32_t node_id);

// As above with an explicit role letter ('S', 'M', 'A', 'C'); the index is
// the id's low 24 bits.
std::string NodeName(char role_letter, uint32_t node_id);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_IDS_H_
