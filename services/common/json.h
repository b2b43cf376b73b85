#ifndef CELLAR_SERVICES_COMMON_JSON_H_
#define CELLAR_SERVICES_COMMON_JSON_H_

// JSON string literals for the hand-written JSON of the tools and the
// audit log (no JSON library in Debian's set that we link).

#include <string>

#include "absl/strings/string_view.h"

namespace cellar::common {

// True if `s` is well-formed UTF-8 (no overlong forms, at most U+10FFFF).
bool IsValidUtf8(absl::string_view s);

// `s` as a JSON string literal, quotes included: '"', '\\' and control
// characters (and DEL) escaped, so the result never holds a line break.
// Valid UTF-8 passes through; otherwise every byte >= 0x80 is read as
// Latin-1 and escaped as \u00XX (lossy but valid JSON; use base64 where
// exactness matters).
std::string JsonString(absl::string_view s);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_JSON_H_
