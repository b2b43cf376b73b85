#include "services/common/errors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/grpc_status.h"

namespace cellar::common {
namespace {

TEST(ErrorsTest, ConflictCarriesReasonAndSerialsThroughGrpc) {
  const absl::Status conflict = ConflictError(0x12, 0x300, 0x200);
  EXPECT_EQ(conflict.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorReason(conflict), "CONFLICT");

  const grpc::Status wire = ToGrpcStatus(conflict);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_FALSE(wire.error_details().empty());

  const absl::Status back = FromGrpcStatus(wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorReason(back), "CONFLICT");
  const std::optional<ConflictInfo> info = GetConflict(back);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->oid, 0x12u);
  EXPECT_EQ(info->current_serial, 0x300u);
  EXPECT_EQ(info->base_serial, 0x200u);
}

TEST(ErrorsTest, ReasonOnlyErrorsAndPlainErrors) {
  const absl::Status nf = ErrorWithReason(absl::StatusCode::kNotFound,
                                          kReasonNoSuchObject, "oid 0x5 unknown");
  const absl::Status back = FromGrpcStatus(ToGrpcStatus(nf));
  EXPECT_EQ(back.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(back.message(), "oid 0x5 unknown");
  EXPECT_EQ(ErrorReason(back), "NO_SUCH_OBJECT");
  EXPECT_FALSE(GetConflict(back).has_value());

  const absl::Status plain = absl::InvalidArgumentError("bad");
  EXPECT_EQ(ErrorReason(FromGrpcStatus(ToGrpcStatus(plain))), "");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(ErrorsTest, AnnotateKeepsPayloads) {
  const absl::Status s = Annotate(ConflictError(1, 2, 3), "storage S1");
  EXPECT_THAT(std::string(s.message()), ::testing::StartsWith("storage S1: conflict"));
  EXPECT_TRUE(GetConflict(s).has_value());
}

}  // namespace
}  // namespace cellar::common
