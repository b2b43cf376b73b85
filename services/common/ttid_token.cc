#include "services/common/ttid_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::common {

std::string NewTtidKey() {
  std::string key(kTtidKeySize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()),
                 static_cast<int>(key.size())) != 1) {
    CELLAR_LOG(ERROR) << "RAND_bytes failed: cannot make a ttid key";
    std::abort();
  }
  return key;
}

std::string TtidToken(absl::string_view key, uint64_t ttid) {
  unsigned char message[8];
  for (int i = 0; i < 8; ++i) {
    message[i] = static_cast<unsigned char>(ttid >> (56 - 8 * i));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), message,
       sizeof(message), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

absl::Status CheckTtidToken(absl::string_view key, uint64_t ttid,
                            absl::string_view token) {
  if (key.empty()) {
    return absl::UnavailableError(
        "no ttid key yet (this node has not registered with the primary "
        "master): retry");
  }
  if (token.empty()) {
    return ErrorWithReason(
        absl::StatusCode::kPermissionDenied, kReasonBadTtidToken,
        absl::StrCat("ttid_token: required (from Begin) for ttid ",
                     TidHex(ttid)));
  }
  const std::string expected = TtidToken(key, ttid);
  if (token.size() != expected.size() ||
      CRYPTO_memcmp(token.data(), expected.data(), expected.size()) != 0) {
    return ErrorWithReason(
        absl::StatusCode::kPermissionDenied, kReasonBadTtidToken,
        absl::StrCat("ttid_token: not issued for ttid ", TidHex(ttid),
                     " by the primary master of this term (begun under "
                     "another master? retry the transaction)"));
  }
  return absl::OkStatus();
}

}  // namespace cellar::common
