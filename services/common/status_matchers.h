#ifndef CELLAR_SERVICES_COMMON_STATUS_MATCHERS_H_
#define CELLAR_SERVICES_COMMON_STATUS_MATCHERS_H_

// gMock matchers for absl::Status / absl::StatusOr (testonly).
//   EXPECT_THAT(storage.Store(...), StatusIs(absl::StatusCode::kAborted));
//   EXPECT_THAT(result, IsOk());

#include <ostream>

#include <gmock/gmock.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellar::common {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P(StatusIs, code,
          std::string("has status code ") +
              absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& s = ::cellar::common::GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has status code ") +
               absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& s = ::cellar::common::GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.code() == code &&
         ::testing::Matches(message_matcher)(std::string(s.message()));
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::cellar::common::GetStatus(arg);
  *result_listener << "whose status is " << s;
  return s.ok();
}

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_STATUS_MATCHERS_H_
