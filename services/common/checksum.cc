#include "services/common/checksum.h"

#include <openssl/sha.h>

#include "absl/strings/escaping.h"

namespace cellar::common {

std::string Checksum(absl::string_view data) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

bool ChecksumMatches(absl::string_view data, absl::string_view checksum) {
  return checksum.size() == kChecksumSize && Checksum(data) == checksum;
}

std::string HexBytes(absl::string_view bytes) {
  return absl::BytesToHexString(bytes);
}

}  // namespace cellar::common
