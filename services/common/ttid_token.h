#ifndef CELLAR_SERVICES_COMMON_TTID_TOKEN_H_
#define CELLAR_SERVICES_COMMON_TTID_TOKEN_H_

// Ttid tokens: proof that the primary master issued a ttid in its current
// term, checked by storages without a round trip to the master.
//
// The primary makes a random key per term (NewTtidKey) and gives it to
// storages at registration (RegisterNodeResponse.ttid_key, storage role
// only). Begin returns TtidToken(key, ttid) = HMAC-SHA256(key, ttid as 8
// big-endian bytes); clients send it with every Store, Vote and client
// AbortTransaction of the transaction; storages verify it with
// CheckTtidToken (constant-time comparison). The key is a secret: never
// logged, never sent to clients or admins.
//
// Thread-safe (pure functions).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cellar::common {

// Size of a key and of a token (SHA-256).
inline constexpr size_t kTtidKeySize = 32;
inline constexpr size_t kTtidTokenSize = 32;

// A new random key (kTtidKeySize bytes from the OpenSSL CSPRNG). Aborts the
// process if the CSPRNG fails (no safe fallback).
std::string NewTtidKey();

// HMAC-SHA256(key, ttid as 8 big-endian bytes): kTtidTokenSize raw bytes.
std::string TtidToken(absl::string_view key, uint64_t ttid);

// OK if `token` is TtidToken(key, ttid) (constant-time comparison). An
// empty key (none received yet) verifies nothing: UNAVAILABLE (retry once
// the node has registered). A missing or wrong token: PERMISSION_DENIED
// with reason BAD_TTID_TOKEN, saying which (never the expected value).
absl::Status CheckTtidToken(absl::string_view key, uint64_t ttid,
                            absl::string_view token);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_TTID_TOKEN_H_
