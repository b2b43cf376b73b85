#include "services/master/k8s_lease.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
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

// A monotonic clock as absl::Time (never compared with wall-clock times):
// lease deadlines and observations must not move when the wall clock is
// stepped.
absl::Time MonoNow() {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

std::string RandomHex() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device() ^
                      static_cast<uint64_t>(::getpid()));
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16));
}

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

}  // namespace

// The Lease's REST calls over one reused libcurl handle (keep-alive),
// every call bounded by the timeout. Used by the worker thread only.
class KubernetesLeaseElection::Api {
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
    options.holder = absl::StrCat(options.address, "/", ::getpid(), "/", RandomHex());
  }
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto election =
      std::unique_ptr<KubernetesLeaseElection>(new KubernetesLeaseElection(std::move(options)));
  KubernetesLeaseElection* e = election.get();
  e->worker_ = std::thread([e] { e->WorkerLoop(); });
  e->watchdog_ = std::thread([e] { e->WatchdogLoop(); });
  return election;
}

KubernetesLeaseElection::KubernetesLeaseElection(KubernetesLeaseOptions options)
    : options_(std::move(options)), api_(std::make_unique<Api>(options_, lease_name())) {}

KubernetesLeaseElection::~KubernetesLeaseElection() {
  Resign();
  {
    absl::MutexLock l(&mu_);
    exit_ = true;
    cv_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void KubernetesLeaseElection::SetLostCallback(LostCallback callback) {
  absl::MutexLock l(&mu_);
  on_lost_ = std::move(callback);
}

absl::StatusOr<uint64_t> KubernetesLeaseElection::Campaign(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  if (stopping_) return absl::CancelledError("election: resigned");
  if (state_ == State::kPrimary) {
    return absl::FailedPreconditionError("election: already the primary");
  }
  ++waiters_;
  // A new Campaign() tries at once, then at the worker's pace.
  next_attempt_ = absl::InfinitePast();
  const uint64_t start_attempts = attempts_;
  const absl::Time end =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : MonoNow() + timeout;
  cv_.SignalAll();
  while (state_ != State::kPrimary && !stopping_ &&
         !(attempts_ > start_attempts && MonoNow() >= end)) {
    if (attempts_ > start_attempts && end != absl::InfiniteFuture()) {
      cv_.WaitWithTimeout(&mu_, std::max(end - MonoNow(), absl::Milliseconds(1)));
    } else {
      cv_.Wait(&mu_);
    }
  }
  --waiters_;
  if (state_ == State::kPrimary) return epoch_;
  if (stopping_) return absl::CancelledError("election: resigned");
  if (last_error_.empty() && !primary_address_.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "election: another master holds the lease (primary is ", primary_address_, ")"));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "election: not the primary after ", absl::FormatDuration(timeout),
      primary_address_.empty() ? std::string()
                               : absl::StrCat(" (primary is ", primary_address_, ")"),
      last_error_.empty() ? std::string() : absl::StrCat(": ", last_error_)));
}

bool KubernetesLeaseElection::IsPrimary() const {
  absl::MutexLock l(&mu_);
  return state_ == State::kPrimary && MonoNow() < deadline_;
}

uint64_t KubernetesLeaseElection::epoch() const {
  absl::MutexLock l(&mu_);
  return epoch_;
}

std::string KubernetesLeaseElection::PrimaryAddress() const {
  absl::MutexLock l(&mu_);
  return primary_address_;
}

std::string KubernetesLeaseElection::last_error() const {
  absl::MutexLock l(&mu_);
  return last_error_;
}

void KubernetesLeaseElection::Resign() {
  absl::MutexLock l(&mu_);
  if (!stopping_) {
    stopping_ = true;
    if (state_ == State::kPrimary) {
      CELLAR_LOG(INFO) << "election: resigning epoch " << epoch_;
      if (release_on_stop_) {
        release_pending_ = true;
        release_epoch_ = epoch_;
      }
    }
    state_ = State::kStopped;
    cv_.SignalAll();
  }
  // Give the worker a bounded time to hand the Lease back (GET + PUT, and
  // one retry after a conflict), so that a standby can take over at once.
  const absl::Time end = MonoNow() + 4 * options_.http_timeout + absl::Seconds(1);
  while (release_pending_ && !exit_ && MonoNow() < end) {
    cv_.WaitWithTimeout(&mu_, std::max(end - MonoNow(), absl::Milliseconds(1)));
  }
}

void KubernetesLeaseElection::Abandon() {
  absl::MutexLock l(&mu_);
  stopping_ = true;
  release_on_stop_ = false;
  release_pending_ = false;
  cv_.SignalAll();
}

KubernetesLeaseElection::LostCallback KubernetesLeaseElection::EndTermLocked(uint64_t term,
                                                                             const char* why) {
  if (state_ != State::kPrimary || term_ != term) return nullptr;
  CELLAR_LOG(WARNING) << "election: no longer the primary (epoch " << epoch_ << "): " << why;
  state_ = stopping_ ? State::kStopped : State::kStandby;
  if (release_on_stop_) {
    // Our term is over whatever happens next; if the Lease is still ours,
    // giving it back lets a standby take over before it expires.
    release_pending_ = true;
    release_epoch_ = epoch_;
  }
  cv_.SignalAll();
  return on_lost_ ? on_lost_ : [] {};
}

void KubernetesLeaseElection::RecordError(const absl::Status& status) {
  const std::string text(status.message());
  if (text != last_error_) {
    CELLAR_LOG(WARNING) << "election: " << text;
  }
  last_error_ = text;
}

void KubernetesLeaseElection::WorkerLoop() {
  enum class Action { kAttempt, kRenew, kRelease, kExit };
  while (true) {
    Action action;
    uint64_t release_epoch = 0;
    {
      absl::MutexLock l(&mu_);
      while (true) {
        const absl::Time now = MonoNow();
        if (release_pending_) {
          action = Action::kRelease;
          release_epoch = release_epoch_;
          break;
        }
        if (exit_) {
          action = Action::kExit;
          break;
        }
        absl::Duration wait = absl::InfiniteDuration();
        if (state_ == State::kPrimary && !stopping_) {
          if (now >= next_renew_) {
            action = Action::kRenew;
            break;
          }
          wait = next_renew_ - now;
        } else if (state_ == State::kStandby && !stopping_ && waiters_ > 0) {
          if (now >= next_attempt_) {
            action = Action::kAttempt;
            // The next one a retry interval after this one started.
            next_attempt_ = now + options_.retry_interval;
            break;
          }
          wait = next_attempt_ - now;
        }
        if (wait == absl::InfiniteDuration()) {
          cv_.Wait(&mu_);
        } else {
          cv_.WaitWithTimeout(&mu_, wait);
        }
      }
    }
    switch (action) {
      case Action::kExit:
        return;
      case Action::kRelease:
        Release(release_epoch);
        break;
      case Action::kRenew:
        Renew();
        break;
      case Action::kAttempt:
        Attempt();
        break;
    }
  }
}

void KubernetesLeaseElection::Release(uint64_t epoch) {
  absl::Status error;
  bool released = false;
  for (int tries = 0; tries < 2 && !released; ++tries) {
    absl::StatusOr<LeaseRecord> current = api_->Get();
    if (!current.ok()) {
      error = current.status();
      if (absl::IsNotFound(error)) error = absl::OkStatus();
      break;
    }
    if (current->holder != options_.holder || current->epoch != epoch) break;  // not ours
    absl::StatusOr<std::string> body = ReleaseJson(*current, absl::Now());
    if (!body.ok()) {
      error = body.status();
      break;
    }
    absl::StatusOr<LeaseRecord> put = api_->Update(*body);
    if (put.ok()) {
      released = true;
      error = absl::OkStatus();
    } else {
      error = put.status();
      if (!absl::IsAborted(error)) break;  // 409: read again, once
    }
  }
  absl::MutexLock l(&mu_);
  if (!error.ok()) {
    RecordError(error);
  } else if (released) {
    CELLAR_LOG(INFO) << "election: lease of epoch " << epoch << " given back";
  }
  release_pending_ = false;
  cv_.SignalAll();
}

void KubernetesLeaseElection::Attempt() {
  LeaseClaim claim{lease_name(), options_.ns, options_.holder, options_.address, options_.lease,
                   absl::Now()};
  uint64_t won_epoch = 0;
  absl::Time write_started = absl::InfinitePast();
  absl::Status error;
  std::string leader;
  bool leader_known = false;
  bool lost_race = false;

  absl::StatusOr<LeaseRecord> current = api_->Get();
  const absl::Time seen = MonoNow();
  if (!current.ok() && absl::IsNotFound(current.status())) {
    // No Lease yet: create it, holding it. A brand-new Lease's epoch is the
    // current time in ms, above any single-master epoch of the past.
    write_started = MonoNow();
    claim.now = absl::Now();
    absl::StatusOr<LeaseRecord> created = api_->Create(NewLeaseJson(claim));
    if (created.ok()) {
      won_epoch = created->epoch;
      observed_version_ = created->resource_version;
      observed_at_ = MonoNow();
    } else if (absl::IsAborted(created.status())) {
      lost_race = true;  // AlreadyExists: another master created it first
    } else {
      error = created.status();
    }
  } else if (!current.ok()) {
    error = current.status();
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
      write_started = MonoNow();
      claim.now = absl::Now();
      absl::StatusOr<std::string> body = TakeoverJson(*current, claim);
      absl::StatusOr<LeaseRecord> taken =
          body.ok() ? api_->Update(*body) : absl::StatusOr<LeaseRecord>(body.status());
      if (taken.ok()) {
        won_epoch = taken->epoch;
        observed_version_ = taken->resource_version;
        observed_at_ = MonoNow();
        if (!current->holder.empty() && current->holder != options_.holder) {
          CELLAR_LOG(INFO) << "election: took over the lease of " << current->holder
                           << " (no change seen for " << absl::FormatDuration(unchanged)
                           << ")";
        }
      } else if (absl::IsAborted(taken.status())) {
        lost_race = true;  // Conflict: another writer came first
      } else {
        error = taken.status();
      }
    } else {
      leader_known = true;
      leader = current->address;
    }
  }

  absl::MutexLock l(&mu_);
  ++attempts_;
  cv_.SignalAll();
  if (!error.ok()) {
    RecordError(error);
    return;
  }
  last_error_.clear();
  if (won_epoch == 0) {
    if (leader_known) primary_address_ = leader;
    if (lost_race) CELLAR_LOG(INFO) << "election: another master won the race for the lease";
    return;
  }
  const absl::Time deadline = write_started + options_.renew_deadline;
  if (state_ != State::kStandby || stopping_ || waiters_ == 0 || MonoNow() >= deadline) {
    // Nobody wants the term any more, or the call took so long that the
    // term is over on arrival: give it back.
    if (release_on_stop_ || !stopping_) {
      release_pending_ = true;
      release_epoch_ = won_epoch;
    }
    return;
  }
  state_ = State::kPrimary;
  ++term_;
  epoch_ = won_epoch;
  deadline_ = deadline;
  next_renew_ = write_started + options_.renew_interval;
  primary_address_ = options_.address;
  CELLAR_LOG(INFO) << "election: primary of cluster \"" << options_.cluster << "\" with epoch "
                   << won_epoch << " (Lease " << options_.ns << "/" << lease_name() << ", holder "
                   << options_.holder << ")";
}

void KubernetesLeaseElection::Renew() {
  uint64_t term, epoch;
  {
    absl::MutexLock l(&mu_);
    term = term_;
    epoch = epoch_;
  }
  // The term is extended from the start of this renewal: the PUT that
  // makes it count is written later than this.
  const absl::Time started = MonoNow();
  absl::StatusOr<LeaseRecord> current = api_->Get();
  const char* taken = nullptr;
  absl::Status error;
  if (!current.ok()) {
    if (absl::IsNotFound(current.status())) {
      taken = "the Lease was deleted";
    } else {
      error = current.status();
    }
  } else if (current->holder != options_.holder || current->epoch != epoch) {
    taken = "the Lease was taken over";
  } else {
    absl::StatusOr<std::string> body = RenewJson(*current, absl::Now());
    absl::StatusOr<LeaseRecord> put =
        body.ok() ? api_->Update(*body) : absl::StatusOr<LeaseRecord>(body.status());
    if (put.ok()) {
      observed_version_ = put->resource_version;
      observed_at_ = MonoNow();
    } else {
      // 409 included: someone wrote meanwhile; the next GET tells who.
      error = put.status();
    }
  }
  LostCallback lost;
  {
    absl::MutexLock l(&mu_);
    if (state_ != State::kPrimary || term_ != term) return;  // ended meanwhile
    if (taken != nullptr) {
      if (current.ok()) {
        primary_address_ = current->holder.empty() ? std::string() : current->address;
      }
      lost = EndTermLocked(term, taken);
    } else if (!error.ok()) {
      RecordError(error);
      // Keep trying; the watchdog ends the term at its deadline.
      next_renew_ = MonoNow() + std::max(options_.renew_interval / 4, absl::Milliseconds(20));
      return;
    } else {
      last_error_.clear();
      deadline_ = std::max(deadline_, started + options_.renew_deadline);
      next_renew_ = started + options_.renew_interval;
      cv_.SignalAll();
    }
  }
  if (lost) lost();
}

void KubernetesLeaseElection::WatchdogLoop() {
  absl::MutexLock l(&mu_);
  while (!exit_) {
    if (state_ != State::kPrimary) {
      cv_.Wait(&mu_);
      continue;
    }
    const absl::Time now = MonoNow();
    if (now < deadline_) {
      cv_.WaitWithTimeout(&mu_, deadline_ - now);
      continue;
    }
    LostCallback lost = EndTermLocked(term_, "the lease was not renewed in time");
    if (lost) {
      mu_.Unlock();
      lost();
      mu_.Lock();
    }
  }
}

}  // namespace cellar::master
