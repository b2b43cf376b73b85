#include "services/master/k8s_lease.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/common/logging.h"

namespace cellar::master {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("kubernetes: cannot read the ", what, " file ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

// A DNS-1123 subdomain (names of Leases and namespaces).
bool IsDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '.')) return false;
  }
  return absl::ascii_isalnum(name.front()) && absl::ascii_isalnum(name.back());
}

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// The Lease's REST calls over one reused libcurl handle (keep-alive),
// every call bounded by the timeout. Used by the worker thread only.
class Api {
 public:
  Api(const KubernetesLeaseOptions& options, std::string name)
      : options_(options),
        name_(std::move(name)),
        collection_(absl::StrCat(absl::StripSuffix(options.api_server, "/"),
                                 "/apis/coordination.k8s.io/v1/namespaces/", options.ns,
                                 "/leases")),
        curl_(curl_easy_init()) {}
  ~Api() {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }

  // NOT_FOUND when there is no Lease.
  absl::StatusOr<LeaseRecord> Get() {
    return Call("GET", absl::StrCat(collection_, "/", name_), nullptr);
  }
  // ABORTED (AlreadyExists) when another master created it first.
  absl::StatusOr<LeaseRecord> Create(const std::string& body) {
    return Call("POST", collection_, &body);
  }
  // ABORTED (Conflict) when the Lease changed since it was read.
  absl::StatusOr<LeaseRecord> Update(const std::string& body) {
    return Call("PUT", absl::StrCat(collection_, "/", name_), &body);
  }

 private:
  absl::StatusOr<LeaseRecord> Call(const char* method, const std::string& url,
                                   const std::string* body) {
    const std::string what = absl::StrCat(method, " ", url);
    if (curl_ == nullptr) return absl::ResourceExhaustedError("kubernetes: curl_easy_init failed");
    std::string token;
    if (!options_.token_file.empty()) {
      // Re-read every time: projected service-account tokens rotate.
      absl::StatusOr<std::string> t = ReadSmallFile(options_.token_file, "token");
      if (!t.ok()) return t.status();
      token = *std::move(t);
    }
    curl_easy_reset(curl_);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (body != nullptr) headers = curl_slist_append(headers, "Content-Type: application/json");
    const std::string authorization = absl::StrCat("Authorization: Bearer ", token);
    if (!token.empty()) headers = curl_slist_append(headers, authorization.c_str());
    std::string reply;
    char error[CURL_ERROR_SIZE] = {};
    const long timeout_ms = static_cast<long>(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.http_timeout)));
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method);
    if (body != nullptr) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    }
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, "cellar-master/lease");
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &AppendBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "https,http");
    if (!options_.ca_file.empty()) {
      curl_easy_setopt(curl_, CURLOPT_CAINFO, options_.ca_file.c_str());
    }
    const CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      const std::string message = absl::StrCat("kubernetes: ", what, ": ",
                                               error[0] != 0 ? error : curl_easy_strerror(rc));
      if (rc == CURLE_OPERATION_TIMEDOUT) {
        return absl::DeadlineExceededError(
            absl::StrCat(message, " (timeout ", absl::FormatDuration(options_.http_timeout), ")"));
      }
      return absl::UnavailableError(message);
    }
    long code = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) return ApiError(code, reply, what);
    absl::StatusOr<LeaseRecord> record = ParseLease(reply);
    if (!record.ok()) {
      return absl::Status(record.status().code(),
                          absl::StrCat(what, ": ", record.status().message()));
    }
    return record;
  }

  const KubernetesLeaseOptions& options_;
  const std::string name_;
  const std::string collection_;
  CURL* const curl_;
};

// The Lease's calls and the standby's expiry judgement (LeaseElection's
// worker thread only).
class K8sBackend final : public LeaseBackend {
 public:
  explicit K8sBackend(KubernetesLeaseOptions options)
      : options_(std::move(options)),
        name_(options_.cluster + "-master"),
        api_(options_, name_) {}

  Acquired Acquire() override {
    Acquired out;
    LeaseClaim claim{name_, options_.ns, options_.holder, options_.address, options_.lease,
                     absl::Now()};
    absl::StatusOr<LeaseRecord> current = api_.Get();
    const absl::Time seen = LeaseMonoNow();
    if (!current.ok() && absl::IsNotFound(current.status())) {
      // No Lease yet: create it, holding it. A brand-new Lease's epoch is the
      // current time in ms, above any single-master epoch of the past.
      out.term_start = LeaseMonoNow();
      claim.now = absl::Now();
      absl::StatusOr<LeaseRecord> created = api_.Create(NewLeaseJson(claim));
      if (created.ok()) {
        out.epoch = created->epoch;
        observed_version_ = created->resource_version;
        observed_at_ = LeaseMonoNow();
      } else if (absl::IsAborted(created.status())) {
        // AlreadyExists: another master created it first.
        CELLAR_LOG(INFO) << "election: another master won the race for the lease";
      } else {
        out.error = created.status();
      }
    } else if (!current.ok()) {
      out.error = current.status();
    } else {
      // The expiry clock is ours: the time since this resourceVersion was
      // first seen here. renewTime (another host's clock) is never used.
      if (current->resource_version != observed_version_) {
        observed_version_ = current->resource_version;
        observed_at_ = seen;
      }
      const absl::Duration expiry =
          std::max(options_.lease, absl::Seconds(current->lease_duration_seconds));
      const bool free = current->holder.empty() || current->holder == options_.holder;
      const absl::Duration unchanged = seen - observed_at_;
      if (free || unchanged >= expiry) {
        out.term_start = LeaseMonoNow();
        claim.now = absl::Now();
        absl::StatusOr<std::string> body = TakeoverJson(*current, claim);
        absl::StatusOr<LeaseRecord> taken =
            body.ok() ? api_.Update(*body) : absl::StatusOr<LeaseRecord>(body.status());
        if (taken.ok()) {
          out.epoch = taken->epoch;
          observed_version_ = taken->resource_version;
          observed_at_ = LeaseMonoNow();
          if (!current->holder.empty() && current->holder != options_.holder) {
            CELLAR_LOG(INFO) << "election: took over the lease of " << current->holder
                             << " (no change seen for " << absl::FormatDuration(unchanged)
                             << ")";
          }
        } else if (absl::IsAborted(taken.status())) {
          // Conflict: another writer came first.
          CELLAR_LOG(INFO) << "election: another master won the race for the lease";
        } else {
          out.error = taken.status();
        }
      } else {
        out.primary_address = current->address;
      }
    }
    return out;
  }

  Renewed Renew(uint64_t epoch) override {
    Renewed out;
    absl::StatusOr<LeaseRecord> current = api_.Get();
    if (!current.ok()) {
      if (absl::IsNotFound(current.status())) {
        out.lost = "the Lease was deleted";
      } else {
        out.error = current.status();
      }
    } else if (current->holder != options_.holder || current->epoch != epoch) {
      out.lost = "the Lease was taken over";
      out.primary_address = current->holder.empty() ? std::string() : current->address;
    } else {
      absl::StatusOr<std::string> body = RenewJson(*current, absl::Now());
      absl::StatusOr<LeaseRecord> put =
          body.ok() ? api_.Update(*body) : absl::StatusOr<LeaseRecord>(body.status());
      if (put.ok()) {
        observed_version_ = put->resource_version;
        observed_at_ = LeaseMonoNow();
      } else {
        // 409 included: someone wrote meanwhile; the next GET tells who.
        out.error = put.status();
      }
    }
    return out;
  }

  Released Release(uint64_t epoch) override {
    Released out;
    for (int tries = 0; tries < 2 && !out.released; ++tries) {
      absl::StatusOr<LeaseRecord> current = api_.Get();
      if (!current.ok()) {
        out.error = current.status();
        if (absl::IsNotFound(out.error)) out.error = absl::OkStatus();
        break;
      }
      if (current->holder != options_.holder || current->epoch != epoch) break;  // not ours
      absl::StatusOr<std::string> body = ReleaseJson(*current, absl::Now());
      if (!body.ok()) {
        out.error = body.status();
        break;
      }
      absl::StatusOr<LeaseRecord> put = api_.Update(*body);
      if (put.ok()) {
        out.released = true;
        out.error = absl::OkStatus();
      } else {
        out.error = put.status();
        if (!absl::IsAborted(out.error)) break;  // 409: read again, once
      }
    }
    return out;
  }

 private:
  const KubernetesLeaseOptions options_;
  const std::string name_;
  Api api_;
  // The Lease as last seen, and when (monotonic) its resourceVersion was
  // first seen: the standby's expiry clock.
  std::string observed_version_;
  absl::Time observed_at_ = absl::InfinitePast();
};

// The state machine's timing: a term lasts renew_deadline from the start
// of the write that won it or of the last successful renewal; a standby
// waits a whole lease after it saw that write.
LeaseTiming Timing(const KubernetesLeaseOptions& options) {
  LeaseTiming t;
  t.cluster = options.cluster;
  t.description = absl::StrCat("Lease ", options.ns, "/", options.cluster, "-master, holder ",
                               options.holder);
  t.address = options.address;
  t.term = options.renew_deadline;
  t.renew_interval = options.renew_interval;
  t.retry_interval = options.retry_interval;
  // GET + PUT, and one retry after a conflict.
  t.release_wait = 4 * options.http_timeout + absl::Seconds(1);
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KubernetesLeaseElection>> KubernetesLeaseElection::Create(
    KubernetesLeaseOptions options) {
  if (options.api_server.empty()) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (host == nullptr || *host == 0 || port == nullptr || *port == 0) {
      return absl::InvalidArgumentError(
          "election: not in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset): give the "
          "API server's URL");
    }
    const std::string h = host;
    options.api_server = absl::StrCat("https://", absl::StrContains(h, ':') ? "[" + h + "]" : h,
                                      ":", port);
  }
  if (!absl::StartsWith(options.api_server, "https://") &&
      !absl::StartsWith(options.api_server, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "election: the API server must be an https:// URL, got \"", options.api_server, "\""));
  }
  if (options.ns.empty()) {
    absl::StatusOr<std::string> ns = ReadSmallFile(options.namespace_file, "namespace");
    if (!ns.ok() || ns->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "election: no namespace given and none in ", options.namespace_file,
          " (not in a pod?)"));
    }
    options.ns = *std::move(ns);
  }
  if (!IsDnsName(options.ns)) {
    return absl::InvalidArgumentError(
        absl::StrCat("election: \"", options.ns, "\" is not a Kubernetes namespace name"));
  }
  if (options.cluster.empty() || !IsDnsName(options.cluster + "-master")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "election: the Lease \"", options.cluster,
        "-master\" needs a cluster name of lower-case letters, digits, '-' and '.'"));
  }
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("election: the lease must be positive");
  }
  if (options.renew_deadline == absl::ZeroDuration()) {
    options.renew_deadline = options.lease * 2 / 3;
  }
  if (options.renew_interval == absl::ZeroDuration()) options.renew_interval = options.lease / 5;
  if (options.retry_interval == absl::ZeroDuration()) options.retry_interval = options.lease / 5;
  if (options.http_timeout == absl::ZeroDuration()) {
    options.http_timeout = options.renew_deadline / 2;
  }
  if (options.renew_deadline <= absl::ZeroDuration() || options.renew_deadline >= options.lease) {
    return absl::InvalidArgumentError(absl::StrCat(
        "election: the renew deadline (", absl::FormatDuration(options.renew_deadline),
        ") must be shorter than the lease (", absl::FormatDuration(options.lease), ")"));
  }
  if (options.renew_interval <= absl::ZeroDuration() ||
      options.renew_interval >= options.renew_deadline) {
    return absl::InvalidArgumentError(absl::StrCat(
        "election: renew every ", absl::FormatDuration(options.renew_interval),
        " can't meet a renew deadline of ", absl::FormatDuration(options.renew_deadline)));
  }
  if (options.retry_interval <= absl::ZeroDuration() ||
      options.http_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("election: intervals must be positive");
  }
  if (options.holder.empty()) {
    options.holder = DefaultLeaseHolder(options.address);
  }
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return std::unique_ptr<KubernetesLeaseElection>(
      new KubernetesLeaseElection(std::move(options)));
}

KubernetesLeaseElection::KubernetesLeaseElection(KubernetesLeaseOptions options)
    : LeaseElection(Timing(options), std::make_unique<K8sBackend>(options)),
      options_(std::move(options)) {}

KubernetesLeaseElection::~KubernetesLeaseElection() = default;

}  // namespace cellar::master
