#include "services/common/ttid_token.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "services/common/errors.h"
#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

TEST(TtidTokenTest, KeysAreRandomAndFullSize) {
  const std::string a = NewTtidKey();
  const std::string b = NewTtidKey();
  EXPECT_EQ(a.size(), kTtidKeySize);
  EXPECT_EQ(b.size(), kTtidKeySize);
  EXPECT_NE(a, b);
}

TEST(TtidTokenTest, TokenIsHmacSha256OfTheBigEndianTtid) {
  // Computed independently: printf '\x01\x02\x03\x04\x05\x06\x07\x08' |
  //   openssl dgst -sha256 -hmac key
  EXPECT_EQ(absl::BytesToHexString(TtidToken("key", 0x0102030405060708)),
            "03889f66a8810b45cdcc71fac7c603e7782df75536c816d3f685631e7a41834d");
}

TEST(TtidTokenTest, TokenDependsOnKeyAndTtid) {
  const std::string key = NewTtidKey();
  EXPECT_EQ(TtidToken(key, 42).size(), kTtidTokenSize);
  EXPECT_EQ(TtidToken(key, 42), TtidToken(key, 42));
  EXPECT_NE(TtidToken(key, 42), TtidToken(key, 43));
  EXPECT_NE(TtidToken(key, 42), TtidToken(NewTtidKey(), 42));
}

TEST(TtidTokenTest, CheckAcceptsTheRightTokenOnly) {
  const std::string key = NewTtidKey();
  const std::string token = TtidToken(key, 7);
  EXPECT_THAT(CheckTtidToken(key, 7, token), IsOk());

  absl::Status missing = CheckTtidToken(key, 7, "");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kPermissionDenied,
                                HasSubstr("required")));
  EXPECT_EQ(ErrorReason(missing), kReasonBadTtidToken);

  for (const std::string& bad :
       {TtidToken(key, 8), TtidToken(NewTtidKey(), 7), token.substr(1),
        token + "x", std::string(kTtidTokenSize, '\0')}) {
    absl::Status status = CheckTtidToken(key, 7, bad);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied));
    EXPECT_EQ(ErrorReason(status), kReasonBadTtidToken);
  }
}

TEST(TtidTokenTest, NoKeyYetIsUnavailable) {
  EXPECT_THAT(CheckTtidToken("", 7, TtidToken("", 7)),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace cellar::common
