// KubernetesLeaseElection against a real kube-apiserver (no mocks):
// $CELLAR_TEST_K8S_API (+ _TOKEN_FILE, _CA_FILE, optional
// _DENIED_TOKEN_FILE) or a throwaway etcd + kube-apiserver started by
// testdata/apiserver_fixture.sh; the tests that need a server are skipped,
// saying why, when there is none. Short leases (1-2 s), bounded waits.

#include "services/master/k8s_lease.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/status_matchers.h"
#include "services/master/k8s_lease_record.h"
#include "services/master/lease_election_test_util.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::cellar::master::lease_testing::DualPrimaryWatcher;
using ::cellar::master::lease_testing::Eventually;
using ::cellar::master::lease_testing::LostRecorder;
using ::testing::HasSubstr;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// The API server the tests use, found or started once per test binary.
struct ApiServer {
  std::string url;
  std::string token_file;
  std::string denied_token_file;  // "" when unknown
  std::string ca_file;
  std::string ns = "default";
};

class ApiServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!Env("CELLAR_TEST_K8S_API").empty()) {
      server_.url = Env("CELLAR_TEST_K8S_API");
      server_.token_file = Env("CELLAR_TEST_K8S_TOKEN_FILE");
      server_.ca_file = Env("CELLAR_TEST_K8S_CA_FILE");
      server_.denied_token_file = Env("CELLAR_TEST_K8S_DENIED_TOKEN_FILE");
      if (!Env("CELLAR_TEST_K8S_NAMESPACE").empty()) server_.ns = Env("CELLAR_TEST_K8S_NAMESPACE");
      available_ = true;
      return;
    }
    std::string script = "services/master/testdata/apiserver_fixture.sh";
    if (!Env("TEST_SRCDIR").empty()) {
      script = absl::StrCat(Env("TEST_SRCDIR"), "/",
                            Env("TEST_WORKSPACE").empty() ? "cellar" : Env("TEST_WORKSPACE"), "/",
                            script);
    }
    std::string base = Env("TEST_TMPDIR").empty() ? "/tmp" : Env("TEST_TMPDIR");
    std::string templ = base + "/k8s-fixture-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
      skip_reason_ = "cannot make a temporary directory";
      return;
    }
    dir_ = templ;
    script_ = script;
    std::fprintf(stderr, "k8s_lease_test: starting etcd + kube-apiserver (%s start %s)\n",
                 script.c_str(), dir_.c_str());
    const std::string command = absl::StrCat(script, " start ", dir_, " ", ::getpid());
    FILE* out = ::popen(command.c_str(), "r");
    if (out == nullptr) {
      skip_reason_ = "cannot run " + script;
      return;
    }
    std::string text;
    char buf[512];
    while (std::fgets(buf, sizeof buf, out) != nullptr) text += buf;
    const int status = ::pclose(out);
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (rc == 3) {
      skip_reason_ =
          "no kube-apiserver or etcd binary (see testdata/apiserver_fixture.sh), and "
          "CELLAR_TEST_K8S_API is unset";
      return;
    }
    if (rc != 0) {
      start_error_ = absl::StrCat("apiserver_fixture.sh start failed (exit ", rc, "): ", text);
      return;
    }
    std::map<std::string, std::string> kv;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(line, absl::MaxSplits('=', 1));
      kv[p.first] = p.second;
    }
    server_.url = kv["url"];
    server_.token_file = kv["admin_token_file"];
    server_.denied_token_file = kv["denied_token_file"];
    server_.ca_file = kv["ca_file"];
    available_ = !server_.url.empty();
    if (!available_) start_error_ = "apiserver_fixture.sh printed no url: " + text;
  }

  void TearDown() override {
    if (dir_.empty()) return;
    const std::string command = absl::StrCat(script_, " stop ", dir_);
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "k8s_lease_test: %s failed\n", command.c_str());
    }
  }

  static ApiServerEnvironment* Get() { return instance_; }
  static void Set(ApiServerEnvironment* e) { instance_ = e; }

  bool available() const { return available_; }
  const std::string& skip_reason() const { return skip_reason_; }
  const std::string& start_error() const { return start_error_; }
  const ApiServer& server() const { return server_; }

 private:
  static ApiServerEnvironment* instance_;
  bool available_ = false;
  std::string skip_reason_;
  std::string start_error_;
  std::string dir_;
  std::string script_;
  ApiServer server_;
};

ApiServerEnvironment* ApiServerEnvironment::instance_ = nullptr;

[[maybe_unused]] const ::testing::Environment* const kEnvironment = [] {
  auto* e = new ApiServerEnvironment;
  ApiServerEnvironment::Set(e);
  return ::testing::AddGlobalTestEnvironment(e);
}();

// A plain HTTP session with the API server (admin token), to look at the
// Lease as stored and to delete it.
class Inspector {
 public:
  explicit Inspector(const ApiServer& server) : server_(server) {}

  // {HTTP code, body}; code 0 on a transport error.
  std::pair<long, std::string> Call(const char* method, const std::string& path) {
    CURL* curl = curl_easy_init();
    std::string body;
    std::ifstream in(server_.token_file);
    std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    token = std::string(absl::StripAsciiWhitespace(token));
    curl_slist* headers = nullptr;
    const std::string auth = "Authorization: Bearer " + token;
    headers = curl_slist_append(headers, auth.c_str());
    const std::string url = server_.url + path;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (!server_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, server_.ca_file.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION,
                     +[](char* d, size_t s, size_t n, void* out) {
                       static_cast<std::string*>(out)->append(d, s * n);
                       return s * n;
                     });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    long code = 0;
    if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return {code, body};
  }

  std::string LeasePath(const std::string& cluster) {
    return absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", server_.ns, "/leases/",
                        cluster, "-master");
  }

  // The Lease as stored (a failure if it can't be read).
  LeaseRecord Lease(const std::string& cluster) {
    auto [code, body] = Call("GET", LeasePath(cluster));
    EXPECT_EQ(code, 200) << body;
    absl::StatusOr<LeaseRecord> r = ParseLease(body);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : LeaseRecord{};
  }

  void Delete(const std::string& cluster) {
    auto [code, body] = Call("DELETE", LeasePath(cluster));
    EXPECT_EQ(code, 200) << body;
  }

 private:
  const ApiServer& server_;
};

// A TCP relay in front of the API server that can be paused: while
// paused it moves no byte in either direction (connections stay open, so
// HTTP calls through it hang until their timeout), like a primary cut off
// from the API server or a stalled process.
class PausableProxy {
 public:
  PausableProxy(const std::string& host, int port) : upstream_port_(port) {
    (void)host;  // always 127.0.0.1 with the fixture
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listener_, 16);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accepter_ = std::thread([this] { AcceptLoop(); });
  }
  ~PausableProxy() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    accepter_.join();
    for (std::thread& t : pumps_) t.join();
  }
  int port() const { return port_; }
  void set_paused(bool paused) { paused_ = paused; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) continue;
      const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(upstream);
        continue;
      }
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  void Pump(int a, int b) {
    char buf[16384];
    while (!stop_) {
      if (paused_) {
        absl::SleepFor(absl::Milliseconds(10));
        continue;
      }
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      if (paused_) continue;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::read(p[i].fd, buf, sizeof buf);
        if (n <= 0 || ::write(p[1 - i].fd, buf, static_cast<size_t>(n)) != n) closed = true;
      }
      if (closed) break;
    }
    ::close(a);
    ::close(b);
  }

  const int upstream_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::thread accepter_;
  std::vector<std::thread> pumps_;  // accepter thread only, joined after it
};

class K8sLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ApiServerEnvironment* env = ApiServerEnvironment::Get();
    ASSERT_NE(env, nullptr);
    ASSERT_EQ(env->start_error(), "");
    if (!env->available()) GTEST_SKIP() << "no Kubernetes API server: " << env->skip_reason();
    server_ = env->server();
    static std::atomic<int> counter{0};
    cluster_ = absl::StrCat("t", ::getpid(), "-", counter++);
  }

  KubernetesLeaseOptions Options(const std::string& address, absl::Duration lease) {
    KubernetesLeaseOptions options;
    options.api_server = server_.url;
    options.ns = server_.ns;
    options.token_file = server_.token_file;
    options.ca_file = server_.ca_file;
    options.cluster = cluster_;
    options.address = address;
    options.lease = lease;
    return options;
  }

  std::unique_ptr<KubernetesLeaseElection> Make(const std::string& address,
                                                absl::Duration lease = absl::Seconds(2)) {
    return Make(Options(address, lease));
  }
  std::unique_ptr<KubernetesLeaseElection> Make(KubernetesLeaseOptions options) {
    absl::StatusOr<std::unique_ptr<KubernetesLeaseElection>> e =
        KubernetesLeaseElection::Create(std::move(options));
    EXPECT_THAT(e, IsOk());
    return e.ok() ? *std::move(e) : nullptr;
  }

  ApiServer server_;
  std::string cluster_;
};

// --- Without an API server ---

TEST(K8sLeaseOptionsTest, RejectsBadOptions) {
  KubernetesLeaseOptions options;
  options.api_server = "https://127.0.0.1:1";
  options.ns = "default";
  options.lease = absl::ZeroDuration();
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.lease = absl::Seconds(2);
  options.renew_deadline = absl::Seconds(2);
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("renew deadline")));
  options.renew_deadline = absl::ZeroDuration();
  options.renew_interval = absl::Seconds(1.5);
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.renew_interval = absl::ZeroDuration();
  options.cluster = "Not_A_Name";
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cluster name")));
  options.cluster = "cellar";
  options.api_server = "127.0.0.1:6443";
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("https://")));
  options.api_server = "https://127.0.0.1:1";
  auto e = KubernetesLeaseElection::Create(options);
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ((*e)->options().renew_deadline, absl::Seconds(4) / 3);
  EXPECT_EQ((*e)->options().renew_interval, absl::Milliseconds(400));
  EXPECT_EQ((*e)->options().retry_interval, absl::Milliseconds(400));
  EXPECT_EQ((*e)->options().http_timeout, absl::Seconds(2) / 3);
  EXPECT_EQ((*e)->lease_name(), "cellar-master");
  EXPECT_FALSE((*e)->holder().empty());
}

TEST(K8sLeaseOptionsTest, InClusterDefaults) {
  const std::string saved_host = Env("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  KubernetesLeaseOptions options;
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("KUBERNETES_SERVICE_HOST")));

  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  const std::string dir = Env("TEST_TMPDIR").empty() ? "/tmp" : Env("TEST_TMPDIR");
  options.namespace_file = absl::StrCat(dir, "/k8s_lease_test_namespace_", ::getpid());
  std::remove(options.namespace_file.c_str());
  EXPECT_THAT(KubernetesLeaseElection::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(options.namespace_file)));
  std::ofstream(options.namespace_file) << "prod\n";
  auto e = KubernetesLeaseElection::Create(options);
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ((*e)->options().api_server, "https://[fd00::1]:443");
  EXPECT_EQ((*e)->options().ns, "prod");
  EXPECT_EQ((*e)->options().token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ((*e)->options().ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  std::remove(options.namespace_file.c_str());
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  if (!saved_host.empty()) ::setenv("KUBERNETES_SERVICE_HOST", saved_host.c_str(), 1);
}

TEST(K8sLeaseOptionsTest, UnreachableApiServerIsNotPrimary) {
  KubernetesLeaseOptions options;
  options.api_server = "https://127.0.0.1:1";
  options.ns = "default";
  options.token_file = "";
  options.ca_file = "";
  options.lease = absl::Seconds(1);
  auto e = KubernetesLeaseElection::Create(options);
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT((*e)->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("127.0.0.1")));
  EXPECT_FALSE((*e)->IsPrimary());
  EXPECT_THAT((*e)->last_error(), HasSubstr("GET https://127.0.0.1:1/apis/coordination.k8s.io"));
}

// --- Against the API server ---

TEST_F(K8sLeaseTest, OneOfTwoWinsAndRenews) {
  auto a = Make("a:7100");
  auto b = Make("b:7100");
  ASSERT_TRUE(a && b);
  const uint64_t before_ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());
  // A brand-new Lease: epoch = its creation time in ms.
  EXPECT_GE(*ea, before_ms);
  EXPECT_LE(*ea, static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())));
  EXPECT_TRUE(a->IsPrimary());
  EXPECT_EQ(a->PrimaryAddress(), "a:7100");
  EXPECT_THAT(a->Campaign(absl::ZeroDuration()), StatusIs(absl::StatusCode::kFailedPrecondition));

  Inspector k8s(server_);
  LeaseRecord stored = k8s.Lease(cluster_);
  EXPECT_EQ(stored.holder, a->holder());
  EXPECT_EQ(stored.epoch, *ea);
  EXPECT_EQ(stored.address, "a:7100");
  EXPECT_EQ(stored.lease_duration_seconds, 2);
  EXPECT_EQ(stored.transitions, 0);

  // Renewed over two lease lengths: still primary with the same epoch,
  // and the other master is refused and learns who leads.
  EXPECT_THAT(b->Campaign(absl::Seconds(4)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("a:7100")));
  EXPECT_TRUE(a->IsPrimary());
  EXPECT_FALSE(b->IsPrimary());
  EXPECT_EQ(b->PrimaryAddress(), "a:7100");
  LeaseRecord renewed = k8s.Lease(cluster_);
  EXPECT_EQ(renewed.holder, a->holder());
  EXPECT_EQ(renewed.epoch, *ea);
  EXPECT_NE(renewed.renew_time, stored.renew_time);
  EXPECT_EQ(renewed.acquire_time, stored.acquire_time);
}

TEST_F(K8sLeaseTest, EpochsGrowAcrossTermsAndAcrossAFreshLease) {
  Inspector k8s(server_);
  std::vector<uint64_t> epochs;
  for (const char* address : {"a:1", "b:1", "c:1"}) {
    auto e = Make(address, absl::Seconds(10));
    ASSERT_TRUE(e);
    absl::StatusOr<uint64_t> epoch = e->Campaign(absl::Seconds(10));
    ASSERT_THAT(epoch, IsOk()) << address;
    if (!epochs.empty()) {
      EXPECT_EQ(*epoch, epochs.back() + 1) << address;
    }
    epochs.push_back(*epoch);
    EXPECT_EQ(k8s.Lease(cluster_).epoch, *epoch);
    e->Resign();  // hands over at once: each next one wins without waiting 10 s
  }
  EXPECT_EQ(k8s.Lease(cluster_).transitions, 2);
  EXPECT_EQ(k8s.Lease(cluster_).holder, "");

  // The Lease is deleted (a new namespace, an operator): a fresh one starts
  // at the time in ms, still above every epoch before.
  k8s.Delete(cluster_);
  absl::SleepFor(absl::Milliseconds(5));
  auto d = Make("d:1", absl::Seconds(10));
  ASSERT_TRUE(d);
  absl::StatusOr<uint64_t> ed = d->Campaign(absl::Seconds(10));
  ASSERT_THAT(ed, IsOk());
  EXPECT_GT(*ed, epochs.back());
  EXPECT_EQ(k8s.Lease(cluster_).transitions, 0);
}

TEST_F(K8sLeaseTest, ResignHandsOverAtOnce) {
  auto a = Make("a:1", absl::Seconds(10));
  auto b = Make("b:1", absl::Seconds(10));
  ASSERT_TRUE(a && b);
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());
  // B is a standby watching the Lease.
  EXPECT_THAT(b->Campaign(absl::Milliseconds(500)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("a:1")));
  a->Resign();
  EXPECT_FALSE(a->IsPrimary());
  EXPECT_THAT(a->Campaign(absl::ZeroDuration()), StatusIs(absl::StatusCode::kCancelled));
  Inspector k8s(server_);
  EXPECT_EQ(k8s.Lease(cluster_).holder, "");
  // Well within the 10 s lease: the Lease was given back.
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> eb = b->Campaign(absl::Seconds(5));
  ASSERT_THAT(eb, IsOk());
  // A new Campaign() tries at once (not after the 2 s retry interval).
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(*eb, *ea + 1);
  EXPECT_EQ(k8s.Lease(cluster_).holder, b->holder());
  EXPECT_EQ(k8s.Lease(cluster_).transitions, 1);
}

// The primary stops renewing (dies without giving the Lease back). Even
// though the Lease's renewTime is long past, a standby that starts looking
// only now must observe it unchanged for a whole lease on its own clock.
TEST_F(K8sLeaseTest, StandbyTakesOverOnlyAfterALeaseOnItsOwnClock) {
  const absl::Duration lease = absl::Seconds(2);
  auto a = Make("a:1", lease);
  auto b = Make("b:1", lease);
  ASSERT_TRUE(a && b);
  LostRecorder a_lost(*a);
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());
  const absl::Time a_won_at = absl::Now();

  a->Abandon();
  ASSERT_TRUE(Eventually([&] { return a_lost.count() == 1; }));
  EXPECT_FALSE(a->IsPrimary());
  // renew_deadline (2/3 of the lease) after its last renewal started.
  EXPECT_LT(a_lost.at() - a_won_at, lease) << "stepped down late";
  Inspector k8s(server_);
  EXPECT_EQ(k8s.Lease(cluster_).holder, a->holder());  // not given back
  absl::SleepFor(lease + absl::Milliseconds(500));      // renewTime now older than a lease

  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> eb = b->Campaign(absl::Seconds(20));
  const absl::Time b_won_at = absl::Now();
  ASSERT_THAT(eb, IsOk());
  EXPECT_GE(b_won_at - start, lease) << "took over before observing a whole lease";
  EXPECT_LT(b_won_at - start, lease + absl::Seconds(5));
  EXPECT_EQ(*eb, *ea + 1);
  EXPECT_EQ(k8s.Lease(cluster_).holder, b->holder());
  EXPECT_EQ(k8s.Lease(cluster_).transitions, 1);
  EXPECT_EQ(b->PrimaryAddress(), "b:1");
  EXPECT_LT(a_lost.at(), b_won_at);
  EXPECT_EQ(a_lost.count(), 1);
}

// The primary is cut off from the API server (a relay in front of it stops
// moving bytes: its calls hang until their timeout) while a standby keeps
// watching. The primary steps down (lost callback, from the watchdog)
// before the standby wins, and the two are never primary at once.
TEST_F(K8sLeaseTest, StalledPrimaryStepsDownBeforeTheStandbyWins) {
  const absl::Duration lease = absl::Seconds(2);
  const std::string hostport(absl::StripPrefix(server_.url, "https://"));
  const std::vector<std::string> parts = absl::StrSplit(hostport, ':');
  ASSERT_EQ(parts.size(), 2u) << server_.url;
  int upstream_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(parts[1], &upstream_port));
  PausableProxy proxy(parts[0], upstream_port);
  KubernetesLeaseOptions a_options = Options("a:1", lease);
  a_options.api_server = absl::StrCat("https://127.0.0.1:", proxy.port());
  auto a = Make(a_options);
  auto b = Make("b:1", lease);
  ASSERT_TRUE(a && b);
  LostRecorder a_lost(*a);
  absl::StatusOr<uint64_t> ea = a->Campaign(absl::Seconds(10));
  ASSERT_THAT(ea, IsOk());

  DualPrimaryWatcher watcher(*a, *b);
  absl::StatusOr<uint64_t> eb;
  absl::Time b_won_at;
  std::thread standby([&] {
    eb = b->Campaign(absl::Seconds(20));
    b_won_at = absl::Now();
  });
  absl::SleepFor(absl::Seconds(1));  // B has seen A renew
  EXPECT_TRUE(a->IsPrimary());
  EXPECT_FALSE(b->IsPrimary());
  const absl::Time paused_at = absl::Now();
  proxy.set_paused(true);

  ASSERT_TRUE(Eventually([&] { return a_lost.count() > 0; }));
  EXPECT_FALSE(a->IsPrimary());
  standby.join();
  ASSERT_THAT(eb, IsOk());
  EXPECT_EQ(*eb, *ea + 1);
  EXPECT_LT(a_lost.at(), b_won_at);
  EXPECT_LT(a_lost.at() - paused_at, lease) << "stepped down late";
  // A's last renewal was written before the pause (at most a renew
  // interval and a call before it) and B saw it after: B waited a whole
  // lease since.
  EXPECT_GE(b_won_at - paused_at,
            lease - a->options().renew_interval - absl::Milliseconds(500));
  EXPECT_EQ(watcher.Stop(), 0);

  // Reconnected, the deposed primary finds B's live term and stays out.
  proxy.set_paused(false);
  EXPECT_THAT(a->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("b:1")));
  EXPECT_TRUE(b->IsPrimary());
}

// Several masters racing for the same Lease: for a brand-new one (POST,
// 409 AlreadyExists for the losers) and for a given-back one (PUT with the
// same resourceVersion, 409 Conflict for the losers). Exactly one wins.
TEST_F(K8sLeaseTest, RacesHaveExactlyOneWinner) {
  constexpr int kCandidates = 3;
  std::vector<std::unique_ptr<KubernetesLeaseElection>> masters;
  for (int i = 0; i < kCandidates; ++i) {
    masters.push_back(Make(absl::StrCat("m", i, ":1"), absl::Seconds(10)));
    ASSERT_TRUE(masters.back());
  }
  auto race = [&](const std::vector<int>& who) {
    std::vector<absl::StatusOr<uint64_t>> results(who.size(), absl::UnknownError("not run"));
    absl::Notification go;
    std::vector<std::thread> threads;
    for (size_t i = 0; i < who.size(); ++i) {
      threads.emplace_back([&, i] {
        go.WaitForNotification();
        results[i] = masters[who[i]]->Campaign(absl::ZeroDuration());
      });
    }
    go.Notify();
    for (std::thread& t : threads) t.join();
    return results;
  };
  Inspector k8s(server_);

  std::vector<absl::StatusOr<uint64_t>> first = race({0, 1, 2});
  int winner = -1;
  for (int i = 0; i < kCandidates; ++i) {
    if (first[i].ok()) {
      EXPECT_EQ(winner, -1) << "two winners";
      winner = i;
    } else {
      EXPECT_THAT(first[i], StatusIs(absl::StatusCode::kDeadlineExceeded)) << i;
    }
  }
  ASSERT_NE(winner, -1);
  EXPECT_EQ(k8s.Lease(cluster_).holder, masters[winner]->holder());
  const uint64_t first_epoch = *first[winner];

  masters[winner]->Resign();
  std::vector<int> rest;
  for (int i = 0; i < kCandidates; ++i) {
    if (i != winner) rest.push_back(i);
  }
  std::vector<absl::StatusOr<uint64_t>> second = race(rest);
  int second_winner = -1;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (second[i].ok()) {
      EXPECT_EQ(second_winner, -1) << "two winners";
      second_winner = rest[i];
      EXPECT_EQ(*second[i], first_epoch + 1);
    } else {
      EXPECT_THAT(second[i], StatusIs(absl::StatusCode::kDeadlineExceeded)) << rest[i];
    }
  }
  ASSERT_NE(second_winner, -1);
  EXPECT_EQ(k8s.Lease(cluster_).holder, masters[second_winner]->holder());
  for (int i = 0; i < kCandidates; ++i) {
    EXPECT_EQ(masters[i]->IsPrimary(), i == second_winner) << i;
  }
}

TEST_F(K8sLeaseTest, TokenWithoutPermissionIsAClearError) {
  if (server_.denied_token_file.empty()) {
    GTEST_SKIP() << "no token without permission (CELLAR_TEST_K8S_DENIED_TOKEN_FILE)";
  }
  KubernetesLeaseOptions options = Options("a:1", absl::Seconds(2));
  options.token_file = server_.denied_token_file;
  auto e = Make(options);
  ASSERT_TRUE(e);
  EXPECT_THAT(e->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       testing::AllOf(HasSubstr("HTTP 403 Forbidden"),
                                      HasSubstr("cannot get resource \"leases\""),
                                      HasSubstr("get, create and update"))));
  EXPECT_FALSE(e->IsPrimary());

  // An unknown token: 401.
  const std::string bad_token = absl::StrCat(
      Env("TEST_TMPDIR").empty() ? "/tmp" : Env("TEST_TMPDIR"), "/bad-token-", ::getpid());
  std::ofstream(bad_token) << "not-a-token\n";
  options.token_file = bad_token;
  auto f = Make(options);
  ASSERT_TRUE(f);
  EXPECT_THAT(f->Campaign(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("HTTP 401")));
  EXPECT_THAT(f->last_error(), HasSubstr("token"));
}

}  // namespace
}  // namespace cellar::master
