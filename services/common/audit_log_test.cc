#include "services/common/audit_log.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

AuditRecord Record() {
  AuditRecord r;
  r.time = absl::FromUnixMicros(1'796'000'000'123'456);
  r.method = "/cellar.v1.Admin/SetReplicas";
  r.principal = "token 1a2b3c4d";
  r.role = "admin";
  r.peer = "ipv4:127.0.0.1:40122";
  r.request = "replicas: 2";
  r.code = "OK";
  return r;
}

TEST(AuditLogTest, OnlyAdminActionsAreAudited) {
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Admin/SetReplicas"));
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Admin/Truncate"));
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Master/Truncate"));
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Storage/Shutdown"));
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Admin/SetFeatureFlag"));
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Admin/DeleteFeatureFlag"));
  EXPECT_TRUE(IsAuditedMethod("/cellar.v1.Master/SetFeatureFlag"));
  EXPECT_FALSE(IsAuditedMethod("/cellar.v1.Admin/ListFeatureFlags"));
  EXPECT_FALSE(IsAuditedMethod("/cellar.v1.Admin/GetClusterStatus"));
  EXPECT_FALSE(IsAuditedMethod("/cellar.v1.Master/Begin"));
  EXPECT_FALSE(IsAuditedMethod("/cellar.v1.Storage/LockTransaction"));
  EXPECT_FALSE(IsAuditedMethod("/grpc.health.v1.Health/Check"));
  EXPECT_FALSE(IsAuditedMethod("/no.Such/Method"));
}

TEST(AuditLogTest, ARecordIsOneJsonLine) {
  EXPECT_EQ(AuditRecordJson(Record()),
            "{\"time\":\"2026-11-30T00:53:20.123456Z\","
            "\"method\":\"/cellar.v1.Admin/SetReplicas\","
            "\"principal\":\"token 1a2b3c4d\",\"role\":\"admin\","
            "\"peer\":\"ipv4:127.0.0.1:40122\",\"request\":\"replicas: 2\","
            "\"code\":\"OK\",\"message\":\"\"}");
}

TEST(AuditLogTest, HostileStringsCannotForgeOrGrowALine) {
  AuditRecord r = Record();
  r.message = std::string("bad\n{\"forged\":\"line\"}\r\t\x01\xff", 25);
  r.request = std::string(100'000, 'x');
  const std::string json = AuditRecordJson(r);
  EXPECT_THAT(json, Not(HasSubstr("\n")));
  EXPECT_THAT(json, HasSubstr("bad\\n{\\\"forged\\\":\\\"line\\\"}\\r\\t\\u0001\\u00ff"));
  EXPECT_THAT(json, HasSubstr("... (100000 bytes)"));
  EXPECT_LT(json.size(), kMaxAuditRequestBytes + kMaxAuditMessageBytes + 512);
  for (char c : json) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(c);
  }
}

TEST(AuditLogTest, AppendsOneLinePerActionAndCountsIt) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/audit.", getpid());
  prometheus::Registry registry;
  {
    auto log = AuditLog::Open(path, &registry);
    ASSERT_TRUE(log.ok()) << log.status();
    (*log)->Write(Record());
    AuditRecord refused = Record();
    refused.code = "INVALID_ARGUMENT";
    (*log)->Write(refused);
  }
  {  // reopened: appends, keeps what was there
    auto log = AuditLog::Open(path, nullptr);
    ASSERT_TRUE(log.ok()) << log.status();
    (*log)->Write(Record());
  }
  std::ifstream in(path);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines = absl::StrSplit(contents, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << contents;
  EXPECT_THAT(lines[1], HasSubstr("\"code\":\"INVALID_ARGUMENT\""));
  int counted = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != "cellar_audit_actions_total") continue;
    for (const auto& metric : family.metric) counted += static_cast<int>(metric.counter.value);
  }
  EXPECT_EQ(counted, 2);
}

TEST(AuditLogTest, AnUnwritablePathIsAClearError) {
  auto log = AuditLog::Open("/nonexistent-dir/audit.log", nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(log.status().message()),
              HasSubstr("--audit_log_file: cannot open /nonexistent-dir/audit.log"));
}

}  // namespace
}  // namespace cellar::common
