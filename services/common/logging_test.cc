#include "services/common/logging.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/common/grpc_status.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(LoggingTest, OneLineEscapesWhatCouldForgeALine) {
  EXPECT_EQ(OneLine("node \"S1\" joined", 100), "node \"S1\" joined");
  EXPECT_EQ(OneLine("a\nI1207 06:00:00.000000 fake.cc:1] forged\r\x1b[2J", 100),
            "a\\nI1207 06:00:00.000000 fake.cc:1] forged\\x0d\\x1b[2J");
  EXPECT_EQ(OneLine(std::string("nul\0byte", 8), 100), "nul\\x00byte");
}

TEST(LoggingTest, OneLineIsBounded) {
  const std::string huge(1 << 20, 'v');
  const std::string line = OneLine(huge, 64);
  EXPECT_EQ(line, absl::StrCat(std::string(45, 'v'), "... (1048576 bytes)"));
  EXPECT_EQ(line.size(), 64u);
  // Escapes count too.
  EXPECT_EQ(OneLine(std::string(100, '\n'), 64).size(), 64u - 1);
  EXPECT_EQ(OneLine("short", 64), "short");
}

TEST(LoggingTest, QuotedInputIsBounded) {
  EXPECT_EQ(Quoted("S1"), "\"S1\"");
  EXPECT_EQ(Quoted("a\nb"), "\"a\\nb\"");
  EXPECT_EQ(Quoted(std::string(1 << 20, 'v')),
            absl::StrCat("\"", std::string(kMaxQuotedBytes, 'v'), "\"... (1048576 bytes)"));
}

TEST(LoggingTest, ALoggedFieldCannotForgeALine) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/log.", getpid());
  const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(file, 0);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(file, STDERR_FILENO);
  CELLAR_LOG(WARNING) << "node name " << "S1\nE1207 06:00:00.000000 master.cc:1] forged";
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(file);
  std::ifstream in(path);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(contents.begin(), contents.end(), '\n'), 1) << contents;
  EXPECT_THAT(contents, HasSubstr("] node name S1\\nE1207"));
}

TEST(LoggingTest, AStatusMessageLeavesOnOneBoundedLine) {
  // A handler echoing hostile input: the caller and the log see one line.
  const grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(
      absl::StrCat("bad name: ", std::string(100'000, 'x'), "\nforged")));
  EXPECT_THAT(s.error_message(), Not(HasSubstr("\n")));
  EXPECT_LE(s.error_message().size(), kMaxStatusMessageBytes + 32);
  EXPECT_THAT(s.error_message(), HasSubstr("bytes)"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(LogRateLimitTest, OneLinePerPeriodAndTheCountOfTheRest) {
  LogRateLimit limit(absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  uint64_t dropped = 99;
  EXPECT_TRUE(limit.Allow(t0, &dropped));
  EXPECT_EQ(dropped, 0u);
  EXPECT_FALSE(limit.Allow(t0 + absl::Seconds(1), &dropped));
  EXPECT_FALSE(limit.Allow(t0 + absl::Seconds(9), &dropped));
  EXPECT_TRUE(limit.Allow(t0 + absl::Seconds(10), &dropped));
  EXPECT_EQ(dropped, 2u);
  EXPECT_EQ(Dropped(dropped), " (2 similar messages not logged)");
  EXPECT_TRUE(limit.Allow(t0 + absl::Seconds(30), &dropped));
  EXPECT_EQ(dropped, 0u);
  EXPECT_EQ(Dropped(0), "");
  EXPECT_EQ(Dropped(1), " (1 similar message not logged)");
}

}  // namespace
}  // namespace cellar::common
