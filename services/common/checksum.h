#ifndef CELLAR_SERVICES_COMMON_CHECKSUM_H_
#define CELLAR_SERVICES_COMMON_CHECKSUM_H_

// Object checksums: SHA-1 of the stored bytes (20 raw bytes), verified on
// store, on replication and on load. Thread-safe.

#include <string>

#include "absl/strings/string_view.h"

namespace cellar::common {

inline constexpr size_t kChecksumSize = 20;

// SHA-1 of `data`, 20 raw bytes.
std::string Checksum(absl::string_view data);

// True if `checksum` is the SHA-1 of `data`.
bool ChecksumMatches(absl::string_view data, absl::string_view checksum);

// Lower-case hex of raw bytes (for messages).
std::string HexBytes(absl::string_view bytes);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_CHECKSUM_H_
