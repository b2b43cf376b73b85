// The Lease JSON <-> record logic of the Kubernetes election, without an
// API server: parsing, the epoch rule, what each write changes and keeps,
// and the mapping of API errors to status codes.

#include "services/master/k8s_lease_record.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A Lease as the API server returns it, held by "a" with epoch 41.
constexpr char kLease[] = R"({
  "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
  "metadata": {"name": "prod-master", "namespace": "db", "resourceVersion": "1234",
               "uid": "u-1", "labels": {"team": "storage"},
               "annotations": {"cellar.io/epoch": "41", "cellar.io/address": "a:7100",
                               "other": "kept"},
               "managedFields": [{"manager": "curl"}]},
  "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10,
           "acquireTime": "2026-12-07T06:00:00.000000Z",
           "renewTime": "2026-12-07T06:00:05.000000Z", "leaseTransitions": 3}
})";

const absl::Time kNow = absl::FromUnixMicros(1796623200123456);  // 2026-12-07T06:00:00.123456Z

LeaseClaim Claim(const std::string& holder) {
  return LeaseClaim{"prod-master", "db", holder, holder + ":7100", absl::Milliseconds(1500), kNow};
}

TEST(LeaseRecordTest, ParsesWhatCellarKeeps) {
  absl::StatusOr<LeaseRecord> r = ParseLease(kLease);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->resource_version, "1234");
  EXPECT_EQ(r->holder, "a");
  EXPECT_EQ(r->lease_duration_seconds, 10);
  EXPECT_EQ(r->transitions, 3);
  EXPECT_EQ(r->epoch, 41u);
  EXPECT_EQ(r->address, "a:7100");
  EXPECT_EQ(r->renew_time, "2026-12-07T06:00:05.000000Z");
}

TEST(LeaseRecordTest, ReleasedLeaseWithoutHolderOrAnnotations) {
  absl::StatusOr<LeaseRecord> r = ParseLease(
      R"({"kind":"Lease","metadata":{"resourceVersion":"7"},"spec":{}})");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->holder, "");
  EXPECT_EQ(r->epoch, 0u);
  EXPECT_EQ(r->transitions, 0);
}

TEST(LeaseRecordTest, RefusesWhatIsNotALease) {
  EXPECT_THAT(ParseLease("not json"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(ParseLease(R"({"kind":"Status","metadata":{}})"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("Status")));
  EXPECT_THAT(ParseLease(R"({"kind":"Lease","metadata":{}})"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("resourceVersion")));
  // A bad epoch is never guessed at: epochs must only grow.
  for (const char* bad : {R"("x")", R"("0")", R"("-3")", "12"}) {
    EXPECT_THAT(ParseLease(std::string(R"({"kind":"Lease","metadata":{"resourceVersion":"1",)"
                                       R"("annotations":{"cellar.io/epoch":)") +
                           bad + "}}}"),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("cellar.io/epoch")))
        << bad;
  }
}

TEST(LeaseRecordTest, MicroTimeAndSeconds) {
  EXPECT_EQ(FormatMicroTime(kNow), "2026-12-07T06:00:00.123456Z");
  EXPECT_EQ(LeaseSeconds(absl::Milliseconds(1500)), 2);
  EXPECT_EQ(LeaseSeconds(absl::Seconds(10)), 10);
  EXPECT_EQ(LeaseSeconds(absl::Milliseconds(1)), 1);
}

TEST(LeaseRecordTest, NewLeaseStartsAtTheTimeInMillis) {
  const std::string body = NewLeaseJson(Claim("b"));
  Json j = Json::parse(body);
  EXPECT_EQ(j["kind"], "Lease");
  EXPECT_EQ(j["apiVersion"], "coordination.k8s.io/v1");
  EXPECT_EQ(j["metadata"]["name"], "prod-master");
  EXPECT_EQ(j["metadata"]["namespace"], "db");
  EXPECT_FALSE(j["metadata"].contains("resourceVersion"));
  EXPECT_EQ(j["metadata"]["annotations"]["cellar.io/epoch"], "1796623200123");
  EXPECT_EQ(j["spec"]["holderIdentity"], "b");
  EXPECT_EQ(j["spec"]["leaseDurationSeconds"], 2);
  EXPECT_EQ(j["spec"]["leaseTransitions"], 0);
  EXPECT_EQ(j["spec"]["acquireTime"], "2026-12-07T06:00:00.123456Z");
  EXPECT_EQ(j["spec"]["renewTime"], "2026-12-07T06:00:00.123456Z");
  // What the server would return parses back to the same epoch.
  j["metadata"]["resourceVersion"] = "1";
  absl::StatusOr<LeaseRecord> r = ParseLease(j.dump());
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->epoch, 1796623200123u);
  EXPECT_EQ(r->address, "b:7100");
}

TEST(LeaseRecordTest, TakeoverIsEpochPlusOneInTheSameWrite) {
  absl::StatusOr<LeaseRecord> current = ParseLease(kLease);
  ASSERT_THAT(current, IsOk());
  absl::StatusOr<std::string> body = TakeoverJson(*current, Claim("b"));
  ASSERT_THAT(body, IsOk());
  Json j = Json::parse(*body);
  EXPECT_EQ(j["metadata"]["resourceVersion"], "1234");  // optimistic concurrency
  EXPECT_EQ(j["metadata"]["annotations"]["cellar.io/epoch"], "42");
  EXPECT_EQ(j["metadata"]["annotations"]["cellar.io/address"], "b:7100");
  EXPECT_EQ(j["metadata"]["annotations"]["other"], "kept");
  EXPECT_EQ(j["metadata"]["labels"]["team"], "storage");
  EXPECT_FALSE(j["metadata"].contains("managedFields"));
  EXPECT_EQ(j["spec"]["holderIdentity"], "b");
  EXPECT_EQ(j["spec"]["leaseTransitions"], 4);
  EXPECT_EQ(j["spec"]["leaseDurationSeconds"], 2);
  EXPECT_EQ(j["spec"]["acquireTime"], "2026-12-07T06:00:00.123456Z");
  EXPECT_EQ(j["spec"]["renewTime"], "2026-12-07T06:00:00.123456Z");

  // The same holder taking a new term: a new epoch, no transition.
  body = TakeoverJson(*current, Claim("a"));
  ASSERT_THAT(body, IsOk());
  j = Json::parse(*body);
  EXPECT_EQ(j["metadata"]["annotations"]["cellar.io/epoch"], "42");
  EXPECT_EQ(j["spec"]["leaseTransitions"], 3);
}

TEST(LeaseRecordTest, NextEpoch) {
  LeaseRecord r;
  r.epoch = 41;
  EXPECT_EQ(NextEpoch(r, kNow), 42u);
  // A Lease made by hand (no annotation): start at the time in ms, like a
  // brand-new one.
  r.epoch = 0;
  EXPECT_EQ(NextEpoch(r, kNow), 1796623200123u);
}

TEST(LeaseRecordTest, RenewOnlyMovesRenewTime) {
  absl::StatusOr<LeaseRecord> current = ParseLease(kLease);
  ASSERT_THAT(current, IsOk());
  absl::StatusOr<std::string> body = RenewJson(*current, kNow + absl::Seconds(1));
  ASSERT_THAT(body, IsOk());
  Json j = Json::parse(*body);
  Json before = Json::parse(kLease);
  EXPECT_EQ(j["spec"]["renewTime"], "2026-12-07T06:00:01.123456Z");
  j["spec"]["renewTime"] = before["spec"]["renewTime"];
  before["metadata"].erase("managedFields");
  EXPECT_EQ(j, before);
}

TEST(LeaseRecordTest, ReleaseClearsTheHolderAndKeepsTheEpoch) {
  absl::StatusOr<LeaseRecord> current = ParseLease(kLease);
  ASSERT_THAT(current, IsOk());
  absl::StatusOr<std::string> body = ReleaseJson(*current, kNow);
  ASSERT_THAT(body, IsOk());
  Json j = Json::parse(*body);
  EXPECT_EQ(j["spec"]["holderIdentity"], "");
  EXPECT_EQ(j["spec"]["leaseDurationSeconds"], 1);
  EXPECT_EQ(j["spec"]["renewTime"], "2026-12-07T06:00:00.123456Z");
  EXPECT_EQ(j["metadata"]["resourceVersion"], "1234");
  EXPECT_EQ(j["metadata"]["annotations"]["cellar.io/epoch"], "41");
  // The next term continues from it.
  j["metadata"]["resourceVersion"] = "1235";
  absl::StatusOr<LeaseRecord> released = ParseLease(j.dump());
  ASSERT_THAT(released, IsOk());
  EXPECT_EQ(released->holder, "");
  EXPECT_EQ(NextEpoch(*released, kNow), 42u);
}

TEST(LeaseRecordTest, WritesNeedAResourceVersion) {
  LeaseRecord r;
  r.raw = R"({"kind":"Lease","metadata":{},"spec":{}})";
  EXPECT_THAT(RenewJson(r, kNow), StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(TakeoverJson(r, Claim("b")), StatusIs(absl::StatusCode::kInternal));
}

TEST(LeaseRecordTest, ApiErrors) {
  const std::string forbidden =
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,)"
      R"("message":"leases.coordination.k8s.io \"c-master\" is forbidden: User \"x\" cannot get)"
      R"( resource \"leases\""})";
  EXPECT_THAT(ApiError(403, forbidden, "GET /x"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       testing::AllOf(HasSubstr("GET /x: HTTP 403 Forbidden"),
                                      HasSubstr("cannot get resource"),
                                      HasSubstr("get, create and update"))));
  EXPECT_THAT(ApiError(401, R"({"kind":"Status","reason":"Unauthorized"})", "GET /x"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("token")));
  EXPECT_THAT(ApiError(409, R"({"kind":"Status","reason":"Conflict"})", "PUT /x"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("Conflict")));
  EXPECT_THAT(ApiError(409, R"({"kind":"Status","reason":"AlreadyExists"})", "POST /x"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("AlreadyExists")));
  EXPECT_THAT(ApiError(404, R"({"kind":"Status","reason":"NotFound"})", "GET /x"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ApiError(503, "<html>\nbusy</html>", "GET /x"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("<html> busy")));
  EXPECT_THAT(ApiError(429, "", "GET /x"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(ApiError(422, R"({"kind":"Status","reason":"Invalid"})", "PUT /x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Invalid")));
}

}  // namespace
}  // namespace cellar::master
