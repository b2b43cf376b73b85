#include "services/storage/backend/backend_uri.h"

#include <cstdlib>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/status_matchers.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

std::string TmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

TEST(BackendUriTest, SqliteAbsolutePath) {
  auto backend = OpenBackendFromUri(absl::StrCat("sqlite://", TmpDir(), "/abs.db"));
  ASSERT_THAT(backend, IsOk());
  EXPECT_EQ((*backend)->Kind(), "sqlite");
}

TEST(BackendUriTest, RejectsWhatItDoesNotKnow) {
  for (const std::string uri : {"", "mysql://x", "/tmp/file.db", "sqlite://"}) {
    EXPECT_THAT(OpenBackendFromUri(uri), StatusIs(absl::StatusCode::kInvalidArgument))
        << uri;
  }
  EXPECT_THAT(OpenBackendFromUri("file.db"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sqlite:///")));
}

TEST(BackendUriTest, PostgresFormsReachLibpq) {
  // No server listens there: the URI was understood as PostgreSQL, the
  // connection fails (UNAVAILABLE), never INVALID_ARGUMENT for the form.
  auto backend = OpenBackendFromUri(
      "host=/nonexistent-cellar-socket-dir dbname=nothing connect_timeout=1");
  EXPECT_FALSE(backend.ok());
  EXPECT_NE(backend.status().code(), absl::StatusCode::kInvalidArgument)
      << backend.status();
}

}  // namespace
}  // namespace cellar::storage
