#include "client/client.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/common/channel.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace cellar::client {
namespace {

using ::cellar::v1::ClusterEvent;
using ::cellar::v1::ClusterSnapshot;

constexpr uint32_t kOidBatch = 100;
// Per Storage.Store call (storage.proto: at most 10000 objects; keep well
// under the 64 MiB message limit).
constexpr int kMaxObjectsPerStore = 10000;
constexpr size_t kMaxBytesPerStore = size_t{32} << 20;
constexpr absl::Duration kInitialBackoff = absl::Milliseconds(50);

// Errors that no retry fixes: the first connection round gives up on them.
bool IsFatalRegistrationError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

// Errors after which the outcome of Finish is unknown.
bool IsTransportError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

// A read that another replica may serve.
bool TryNextReplica(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

std::string StorageName(uint32_t node_id) {
  return common::NodeName('S', node_id);
}

}  // namespace

struct Client::Session {
  size_t master_index = 0;
  std::shared_ptr<MasterStub> stub;
  uint32_t node_id = 0;
  // RegisterNodeResponse.epoch (used if the snapshot carries none).
  uint64_t epoch = 0;
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReaderInterface<ClusterEvent>> reader;
};

Client::Client(ClientOptions options, const common::ChannelSecurity& security)
    : options_(std::move(options)),
      security_(security),
      view_([security](const std::string& address) {
        return std::shared_ptr<ClusterView::StorageStub>(
            ::cellar::v1::Storage::NewStub(common::MakeChannel(address, security)));
      }),
      cache_(options_.cache_bytes) {
  for (size_t i = 0; i < options_.master_addresses.size(); ++i) {
    master_stubs_.push_back(NewMasterStub(i));
  }
}

std::shared_ptr<Client::MasterStub> Client::NewMasterStub(size_t index) const {
  return std::shared_ptr<MasterStub>(::cellar::v1::Master::NewStub(
      common::MakeChannel(options_.master_addresses[index], security_)));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.master_addresses.empty()) {
    return absl::InvalidArgumentError("no master address given");
  }
  common::TlsFileNames names;
  names.ca = "tls.ca_file";
  names.cert = "tls.cert_file";
  names.key = "tls.key_file";
  absl::StatusOr<common::ChannelSecurity> security =
      common::MakeChannelSecurity(options.token, options.tls, names);
  if (!security.ok()) return security.status();
  std::unique_ptr<Client> client(new Client(std::move(options), *security));
  Client* c = client.get();
  c->watch_thread_ = std::thread([c] { c->WatchLoop(); });
  absl::Status error;
  {
    absl::MutexLock lock(&c->mu_);
    auto done = [c]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
      return c->connected_ || !c->fatal_error_.ok();
    };
    c->mu_.AwaitWithTimeout(absl::Condition(&done),
                            c->options_.connect_timeout);
    if (c->connected_) return client;
    if (!c->fatal_error_.ok()) {
      error = c->fatal_error_;
    } else {
      error = absl::UnavailableError(absl::StrCat(
          "no master of cluster '", c->options_.cluster_name,
          "' answered with a snapshot within ",
          absl::FormatDuration(c->options_.connect_timeout), " (tried ",
          absl::StrJoin(c->options_.master_addresses, ", "), ")",
          c->last_connect_error_.ok()
              ? std::string()
              : absl::StrCat(": ", c->last_connect_error_.ToString())));
    }
  }
  client->Close();
  return error;
}

Client::~Client() { Close(); }

void Client::Close() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (watch_context_ != nullptr) watch_context_->TryCancel();
  }
  if (watch_thread_.joinable() &&
      watch_thread_.get_id() != std::this_thread::get_id()) {
    watch_thread_.join();
  }
  EndReports();
}

// ---------------------------------------------------------------------------
// Unreachable storages (Master.ReportUnreachable).

struct Client::ReportCall {
  grpc::ClientContext context;
  ::cellar::v1::ReportUnreachableRequest request;
  ::cellar::v1::ReportUnreachableResponse response;
  // Keeps the channel alive until the callback ran.
  std::shared_ptr<MasterStub> stub;
};

void Client::MaybeReportUnreachable(uint32_t node_id, const absl::Status& status) {
  if (!options_.report_unreachable) return;
  ::cellar::v1::UnreachableReason reason;
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    reason = ::cellar::v1::UNREACHABLE_DEADLINE_EXCEEDED;
  } else if (status.code() == absl::StatusCode::kUnavailable &&
             common::ErrorReason(status).empty()) {
    // An UNAVAILABLE with a reason (NOT_READABLE ...) came from a storage
    // that is up.
    reason = ::cellar::v1::UNREACHABLE_UNAVAILABLE;
  } else {
    return;
  }
  std::shared_ptr<MasterStub> stub;
  uint32_t self = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!connected_ || closing_ || master_ == nullptr) return;
    stub = master_;
    self = node_id_;
  }
  auto* call = new ReportCall;
  {
    absl::MutexLock lock(&report_mu_);
    const absl::Time now = absl::Now();
    auto [last, first] = last_report_.try_emplace(node_id, now);
    if (reports_ended_ ||
        (!first && now - last->second < options_.report_unreachable_interval)) {
      delete call;
      return;
    }
    last->second = now;
    report_calls_.insert(call);
  }
  call->stub = std::move(stub);
  call->request.set_node_id(node_id);
  call->request.set_reason(reason);
  call->request.set_reporter_node_id(self);
  common::SetDeadline(&call->context, std::min(options_.rpc_timeout, absl::Seconds(5)));
  unreachable_reports_.fetch_add(1, std::memory_order_relaxed);
  call->stub->async()->ReportUnreachable(
      &call->context, &call->request, &call->response, [this, call](grpc::Status s) {
        if (!s.ok()) unreachable_reports_failed_.fetch_add(1, std::memory_order_relaxed);
        absl::MutexLock lock(&report_mu_);
        report_calls_.erase(call);
        delete call;
      });
}

void Client::EndReports() {
  absl::MutexLock lock(&report_mu_);
  reports_ended_ = true;
  for (ReportCall* call : report_calls_) call->context.TryCancel();
  report_mu_.Await(absl::Condition(
      +[](absl::flat_hash_set<ReportCall*>* calls) { return calls->empty(); },
      &report_calls_));
}

// ---------------------------------------------------------------------------
// Session and Watch stream.

absl::StatusOr<std::unique_ptr<Client::Session>> Client::EstablishSession() {
  absl::Status last_error = absl::UnavailableError("no master address");
  bool any_fatal = false;
  absl::Status fatal;
  for (size_t i = 0; i < master_stubs_.size(); ++i) {
    const std::string& address = options_.master_addresses[i];
    auto session = std::make_unique<Session>();
    session->master_index = i;
    session->stub = master_stubs_[i];

    ::cellar::v1::RegisterNodeRequest request;
    request.set_cluster_name(options_.cluster_name);
    request.set_protocol_version(::cellar::v1::PROTOCOL_VERSION_1);
    request.set_role(::cellar::v1::NODE_ROLE_CLIENT);
    request.set_version(options_.version);
    request.set_build_id("dev");
    request.set_track(options_.track);
    ::cellar::v1::RegisterNodeResponse response;
    grpc::ClientContext register_context;
    common::SetDeadline(&register_context, std::min(options_.rpc_timeout,
                                                    options_.connect_timeout));
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return absl::CancelledError("client closed");
      watch_context_ = &register_context;
    }
    const grpc::Status registered =
        session->stub->RegisterNode(&register_context, request, &response);
    absl::Status status = common::FromGrpcStatus(registered);
    {
      absl::MutexLock lock(&mu_);
      watch_context_ = nullptr;
    }
    if (!status.ok()) {
      last_error = common::Annotate(status, absl::StrCat("master ", address));
      if (common::RedialAfter(registered.error_code())) master_stubs_[i] = NewMasterStub(i);
      if (IsFatalRegistrationError(status) && !any_fatal) {
        any_fatal = true;
        fatal = last_error;
      }
      continue;
    }
    session->node_id = response.node_id();
    session->epoch = response.epoch();

    session->context = std::make_unique<grpc::ClientContext>();
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return absl::CancelledError("client closed");
      watch_context_ = session->context.get();
    }
    ::cellar::v1::WatchRequest watch;
    watch.set_node_id(session->node_id);
    session->reader = session->stub->Watch(session->context.get(), watch);
    ClusterEvent first;
    const bool got = session->reader->Read(&first);
    if (!got || !first.has_snapshot()) {
      if (got) session->context->TryCancel();
      absl::Status end = common::FromGrpcStatus(session->reader->Finish());
      {
        absl::MutexLock lock(&mu_);
        watch_context_ = nullptr;
      }
      last_error = common::Annotate(
          !got && !end.ok()
              ? end
              : absl::UnavailableError("Watch did not start with a snapshot"),
          absl::StrCat("master ", address, " Watch"));
      continue;
    }
    InstallSession(*session, first.snapshot());
    return session;
  }
  // Every master failed: a refusal (wrong cluster, protocol) is what the
  // caller needs to see.
  return any_fatal ? fatal : last_error;
}

void Client::InstallSession(const Session& session,
                            const ClusterSnapshot& snapshot) {
  absl::Status status = view_.Reset(snapshot);
  if (!status.ok()) {
    CELLAR_LOG(WARNING) << "bad partition table in the master's snapshot: "
                        << status;
  }
  {
    absl::MutexLock lock(&mu_);
    master_ = session.stub;
    node_id_ = session.node_id;
    epoch_ = snapshot.epoch() != 0 ? snapshot.epoch() : session.epoch;
  }
  TakeSnapshot(snapshot);
  absl::MutexLock lock(&mu_);
  ++sessions_;
  connected_ = true;
}

void Client::TakeSnapshot(const ClusterSnapshot& snapshot) {
  // Invalidations may have been lost: clear the cache, at the client's
  // snapshot, which never decreases (semantics rule 6).
  uint64_t kept;
  {
    absl::MutexLock lock(&mu_);
    master_last_tid_ = snapshot.last_tid();
    if (snapshot.last_tid() < snapshot_) {
      CELLAR_LOG(INFO) << "the master reports last tid "
                       << common::TidHex(snapshot.last_tid())
                       << ", behind this client's snapshot "
                       << common::TidHex(snapshot_)
                       << " (a new primary still recovering, or a truncation):"
                          " keeping the snapshot";
    }
    snapshot_ = std::max(snapshot_, snapshot.last_tid());
    kept = snapshot_;
  }
  cache_.Clear(kept);
}

void Client::WatchLoop() {
  absl::Duration backoff = kInitialBackoff;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (closing_) break;
    }
    absl::StatusOr<std::unique_ptr<Session>> session = EstablishSession();
    if (!session.ok()) {
      absl::MutexLock lock(&mu_);
      last_connect_error_ = session.status();
      if (closing_) break;
      if (sessions_ == 0 && IsFatalRegistrationError(session.status())) {
        fatal_error_ = session.status();
        break;
      }
      if (sessions_ > 0) {
        CELLAR_LOG(WARNING) << "reconnecting to the master: "
                            << session.status();
      }
      mu_.AwaitWithTimeout(absl::Condition(&closing_), backoff);
      backoff = std::min(backoff * 2, options_.max_reconnect_backoff);
      continue;
    }
    backoff = kInitialBackoff;
    if ((*session)->master_index != 0 || sessions() > 1) {
      CELLAR_LOG(INFO) << "client " << common::NodeName('C', (*session)->node_id)
                       << " connected to master "
                       << options_.master_addresses[(*session)->master_index];
    }
    ClusterEvent event;
    while ((*session)->reader->Read(&event)) HandleEvent(event);
    const absl::Status end =
        common::FromGrpcStatus((*session)->reader->Finish());
    bool closing;
    {
      absl::MutexLock lock(&mu_);
      watch_context_ = nullptr;
      connected_ = false;
      closing = closing_;
    }
    if (!closing) {
      // The master may be restarting: dial it afresh (a new DNS resolution).
      master_stubs_[(*session)->master_index] = NewMasterStub((*session)->master_index);
      CELLAR_LOG(WARNING) << "master Watch stream ended ("
                          << (end.ok() ? std::string("OK") : end.ToString())
                          << "): re-registering, cache cleared";
    }
  }
  absl::MutexLock lock(&mu_);
  connected_ = false;
}

uint64_t Client::sessions() const {
  absl::MutexLock lock(&mu_);
  return sessions_;
}

void Client::HandleEvent(const ClusterEvent& event) {
  switch (event.event_case()) {
    case ClusterEvent::kSnapshot: {
      absl::Status status = view_.Reset(event.snapshot());
      if (!status.ok()) {
        CELLAR_LOG(WARNING) << "bad partition table in snapshot: " << status;
      }
      if (event.snapshot().epoch() != 0) {
        absl::MutexLock lock(&mu_);
        epoch_ = event.snapshot().epoch();
      }
      TakeSnapshot(event.snapshot());
      feature_flags_.Adopt(event.snapshot().feature_flags());
      break;
    }
    case ClusterEvent::kFeatureFlags:
      feature_flags_.Adopt(event.feature_flags());
      break;
    case ClusterEvent::kPartitionTableDelta: {
      absl::Status status = view_.ApplyDelta(event.partition_table_delta());
      if (!status.ok()) RefreshTable();
      break;
    }
    case ClusterEvent::kPartitionTable: {
      absl::Status status = view_.ReplaceTable(event.partition_table());
      if (!status.ok()) {
        CELLAR_LOG(WARNING) << "bad partition table from the master: "
                            << status;
        RefreshTable();
      }
      break;
    }
    case ClusterEvent::kNode:
      view_.UpdateNode(event.node());
      break;
    case ClusterEvent::kClusterState: {
      view_.SetClusterState(event.cluster_state());
      // Wakes waiters on the state (CommittedTidAfterReconnect).
      absl::MutexLock lock(&mu_);
      break;
    }
    case ClusterEvent::kInvalidation: {
      const uint64_t tid = event.invalidation().tid();
      std::vector<uint64_t> oids(event.invalidation().oids().begin(),
                                 event.invalidation().oids().end());
      cache_.Invalidate(tid, oids);
      std::shared_ptr<const InvalidationListener> listener;
      {
        absl::MutexLock lock(&mu_);
        snapshot_ = std::max(snapshot_, tid);
        master_last_tid_ = std::max(master_last_tid_, tid);
        listener = listener_;
      }
      if (listener != nullptr && *listener) (*listener)(tid, oids);
      break;
    }
    case ClusterEvent::EVENT_NOT_SET:
      break;
  }
}

void Client::RefreshTable() {
  absl::StatusOr<::cellar::v1::GetClusterInfoResponse> info = ClusterInfo();
  if (!info.ok()) {
    CELLAR_LOG(WARNING) << "could not fetch the partition table: "
                        << info.status();
    return;
  }
  absl::Status status = view_.ReplaceTable(info->partition_table());
  if (!status.ok()) {
    CELLAR_LOG(WARNING) << "bad partition table from GetClusterInfo: "
                        << status;
  }
  view_.ReplaceNodes(std::vector<::cellar::v1::NodeInfo>(
      info->nodes().begin(), info->nodes().end()));
  view_.SetClusterState(info->cluster_state());
}

// ---------------------------------------------------------------------------
// Accessors.

std::shared_ptr<Client::MasterStub> Client::master() const {
  absl::MutexLock lock(&mu_);
  return master_;
}

uint64_t Client::snapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

uint32_t Client::node_id() const {
  absl::MutexLock lock(&mu_);
  return node_id_;
}

::cellar::v1::ClusterState Client::cluster_state() const {
  return view_.cluster_state();
}

bool Client::connected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

uint64_t Client::session_count() const { return sessions(); }

absl::Status Client::AwaitSession(uint64_t min_sessions,
                                  absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, min_sessions]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || (connected_ && sessions_ >= min_sessions);
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (closing_) return absl::CancelledError("client closed");
  if (!ready()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "no session #", min_sessions, " within ", absl::FormatDuration(timeout),
        last_connect_error_.ok()
            ? std::string()
            : absl::StrCat(": ", last_connect_error_.ToString())));
  }
  return absl::OkStatus();
}

void Client::SetInvalidationListener(InvalidationListener listener) {
  auto shared = listener ? std::make_shared<const InvalidationListener>(
                               std::move(listener))
                         : nullptr;
  absl::MutexLock lock(&mu_);
  listener_ = std::move(shared);
}

ClientStats Client::stats() const {
  ClientStats s;
  s.cache_hits = cache_hits_.load();
  s.cache_misses = cache_misses_.load();
  s.checksum_failures = checksum_failures_.load();
  s.commits = commits_.load();
  s.conflicts = conflicts_.load();
  s.commit_failures = commit_failures_.load();
  const uint64_t sessions = session_count();
  s.reconnects = sessions > 0 ? sessions - 1 : 0;
  s.unreachable_reports = unreachable_reports_.load();
  s.unreachable_reports_failed = unreachable_reports_failed_.load();
  s.preallocated_ttids_used = preallocated_ttids_used_.load();
  return s;
}

bool Client::WaitForSnapshot(uint64_t tid, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [this, tid]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return snapshot_ >= tid || closing_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  return snapshot_ >= tid;
}

absl::Status Client::AwaitConnected() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || (connected_ && master_ != nullptr);
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), options_.rpc_timeout);
  if (closing_) return absl::CancelledError("client closed");
  if (ready()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "not connected to the master (reconnecting for ",
      absl::FormatDuration(options_.rpc_timeout), ")",
      last_connect_error_.ok() ? std::string()
                               : absl::StrCat(": ", last_connect_error_.ToString())));
}

absl::Status Client::AwaitMasterCaughtUp(uint64_t tid) {
  absl::MutexLock lock(&mu_);
  // A RUNNING primary has resolved the in-doubt commits and published its
  // last tid before it got there (in stream order): a lower one then is a
  // truncation's, nothing to wait for.
  auto caught_up = [this, tid]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || master_last_tid_ >= tid ||
           view_.cluster_state() == ::cellar::v1::CLUSTER_RUNNING;
  };
  mu_.AwaitWithTimeout(absl::Condition(&caught_up), options_.rpc_timeout);
  if (closing_) return absl::CancelledError("client closed");
  if (caught_up()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "the master's last tid ", common::TidHex(master_last_tid_),
      " is still behind this client's snapshot ", common::TidHex(tid),
      " after ", absl::FormatDuration(options_.rpc_timeout),
      " and the cluster is not RUNNING (a new primary still recovering?): "
      "retry later"));
}

// ---------------------------------------------------------------------------
// Master calls.

absl::StatusOr<uint64_t> Client::NewOid() {
  absl::MutexLock lock(&oid_mu_);
  // A new batch needs a master: across a restart or failover, wait for it.
  if (oids_left_ == 0) CELLAR_RETURN_IF_ERROR(AwaitConnected());
  std::shared_ptr<MasterStub> stub;
  uint64_t epoch;
  {
    absl::MutexLock session_lock(&mu_);
    stub = master_;
    epoch = epoch_;
  }
  if (oids_left_ > 0 && oid_epoch_ != epoch) {
    // Reserved under an earlier primary: a new one may hand them out
    // again (semantics rule 7).
    CELLAR_LOG(INFO) << "dropping " << oids_left_
                     << " unused OIDs allocated under master epoch "
                     << oid_epoch_ << " (now " << epoch << ")";
    oids_left_ = 0;
  }
  if (oids_left_ == 0) {
    if (stub == nullptr) return absl::UnavailableError("not connected");
    ::cellar::v1::AllocateOidsRequest request;
    request.set_count(kOidBatch);
    ::cellar::v1::AllocateOidsResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status =
        common::FromGrpcStatus(stub->AllocateOids(&context, request, &response));
    if (!status.ok()) return common::Annotate(status, "AllocateOids");
    if (response.count() == 0) {
      return absl::InternalError("AllocateOids returned no OID");
    }
    next_oid_ = response.first_oid();
    oids_left_ = response.count();
    oid_epoch_ = epoch;
  }
  --oids_left_;
  return next_oid_++;
}

absl::StatusOr<::cellar::v1::GetClusterInfoResponse> Client::ClusterInfo() {
  std::shared_ptr<MasterStub> stub = master();
  if (stub == nullptr) return absl::UnavailableError("not connected");
  ::cellar::v1::GetClusterInfoResponse response;
  grpc::ClientContext context;
  common::SetDeadline(&context, options_.rpc_timeout);
  absl::Status status = common::FromGrpcStatus(stub->GetClusterInfo(
      &context, ::cellar::v1::GetClusterInfoRequest(), &response));
  if (!status.ok()) return common::Annotate(status, "GetClusterInfo");
  return response;
}

absl::Status Client::Sync() {
  CELLAR_ASSIGN_OR_RETURN(::cellar::v1::GetClusterInfoResponse info,
                          ClusterInfo());
  if (!WaitForSnapshot(info.last_tid(), options_.rpc_timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "snapshot ", common::TidHex(snapshot()), " did not reach the master's ",
        common::TidHex(info.last_tid()), " within ",
        absl::FormatDuration(options_.rpc_timeout)));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Reads.

absl::StatusOr<LoadResult> Client::Load(uint64_t oid) {
  return LoadBefore(oid, snapshot() + 1);
}

absl::StatusOr<LoadResult> Client::LoadBefore(uint64_t oid,
                                              uint64_t before_tid) {
  if (before_tid == 0) {
    return absl::InvalidArgumentError("before_tid must be positive");
  }
  if (std::optional<CachedRevision> hit = cache_.LookupBefore(oid, before_tid)) {
    cache_hits_.fetch_add(1, std::memory_order_relaxed);
    return LoadResult{oid, hit->serial, hit->next_serial, std::move(hit->data)};
  }
  cache_misses_.fetch_add(1, std::memory_order_relaxed);
  // What the master has not published yet may not be readable everywhere
  // (a new primary resolves in-doubt commits first).
  CELLAR_RETURN_IF_ERROR(
      AwaitMasterCaughtUp(std::min(before_tid - 1, snapshot())));
  ::cellar::v1::LoadRequest request;
  request.set_oid(oid);
  request.set_before_tid(before_tid);
  return LoadFromStorage(oid, request);
}

absl::StatusOr<LoadResult> Client::LoadSerial(uint64_t oid, uint64_t serial) {
  if (std::optional<CachedRevision> hit = cache_.LookupSerial(oid, serial)) {
    cache_hits_.fetch_add(1, std::memory_order_relaxed);
    return LoadResult{oid, hit->serial, hit->next_serial, std::move(hit->data)};
  }
  cache_misses_.fetch_add(1, std::memory_order_relaxed);
  ::cellar::v1::LoadRequest request;
  request.set_oid(oid);
  request.set_serial(serial);
  return LoadFromStorage(oid, request);
}

std::vector<absl::StatusOr<LoadResult>> Client::LoadMany(
    const std::vector<uint64_t>& oids) {
  return LoadManyBefore(oids, snapshot() + 1);
}

std::vector<absl::StatusOr<LoadResult>> Client::LoadManyBefore(
    const std::vector<uint64_t>& oids, uint64_t before_tid) {
  std::vector<absl::StatusOr<LoadResult>> results(
      oids.size(), absl::InvalidArgumentError("before_tid must be positive"));
  if (before_tid == 0) return results;
  std::vector<size_t> misses;
  for (size_t i = 0; i < oids.size(); ++i) {
    if (std::optional<CachedRevision> hit = cache_.LookupBefore(oids[i], before_tid)) {
      cache_hits_.fetch_add(1, std::memory_order_relaxed);
      results[i] = LoadResult{oids[i], hit->serial, hit->next_serial, std::move(hit->data)};
    } else {
      cache_misses_.fetch_add(1, std::memory_order_relaxed);
      misses.push_back(i);
    }
  }
  if (misses.empty()) return results;
  if (absl::Status caught_up = AwaitMasterCaughtUp(std::min(before_tid - 1, snapshot()));
      !caught_up.ok()) {
    for (size_t i : misses) results[i] = caught_up;
    return results;
  }
  // Each miss goes to the first storage Load would try; what that storage
  // cannot serve is loaded alone, trying every replica.
  std::map<uint32_t, std::vector<size_t>> by_node;
  std::vector<size_t> fallback;
  for (size_t i : misses) {
    const std::vector<uint32_t> nodes = view_.ReadNodesFor(oids[i]);
    if (nodes.empty()) {
      fallback.push_back(i);
    } else {
      by_node[nodes.front()].push_back(i);
    }
  }
  for (const auto& [node_id, indexes] : by_node) {
    LoadManyFrom(node_id, oids, indexes, before_tid, &results, &fallback);
  }
  for (size_t i : fallback) {
    ::cellar::v1::LoadRequest request;
    request.set_oid(oids[i]);
    request.set_before_tid(before_tid);
    results[i] = LoadFromStorage(oids[i], request);
  }
  return results;
}

void Client::LoadManyFrom(uint32_t node_id, const std::vector<uint64_t>& oids,
                          const std::vector<size_t>& indexes, uint64_t before_tid,
                          std::vector<absl::StatusOr<LoadResult>>* results,
                          std::vector<size_t>* fallback) {
  constexpr size_t kMaxOidsPerCall = 1000;  // Storage.LoadMany's limit
  std::shared_ptr<ClusterView::StorageStub> stub = view_.Stub(node_id);
  size_t next = 0;
  while (stub != nullptr && next < indexes.size()) {
    const size_t end = std::min(indexes.size(), next + kMaxOidsPerCall);
    ::cellar::v1::LoadManyRequest request;
    request.set_before_tid(before_tid);
    std::vector<ObjectCache::LoadTicket> tickets;
    for (size_t k = next; k < end; ++k) {
      request.add_oids(oids[indexes[k]]);
      tickets.push_back(cache_.BeginLoad(oids[indexes[k]]));
    }
    ::cellar::v1::LoadManyResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    const grpc::Status status = stub->LoadMany(&context, request, &response);
    const size_t answered = static_cast<size_t>(response.results_size());
    if (!status.ok()) MaybeReportUnreachable(node_id, common::FromGrpcStatus(status));
    if (!status.ok() || answered == 0 || answered > end - next) {
      // UNIMPLEMENTED (a storage of an older version), unreachable, or a
      // malformed answer: load these one by one.
      for (const ObjectCache::LoadTicket& t : tickets) cache_.CancelLoad(t);
      break;
    }
    for (size_t j = 0; j < tickets.size(); ++j) {
      const size_t i = indexes[next + j];
      if (j >= answered) {  // over the answer's size budget: asked again
        cache_.CancelLoad(tickets[j]);
        continue;
      }
      ::cellar::v1::LoadManyResult* r = response.mutable_results(static_cast<int>(j));
      if (r->code() != 0) {
        cache_.CancelLoad(tickets[j]);
        const absl::StatusCode code = r->code() <= 16 ? static_cast<absl::StatusCode>(r->code())
                                                      : absl::StatusCode::kUnknown;
        const absl::Status error = common::ErrorWithReason(code, r->reason(), r->message());
        if (TryNextReplica(error)) {
          fallback->push_back(i);
        } else {
          (*results)[i] = error;  // as Load answers it (NOT_FOUND, ...)
        }
        continue;
      }
      ::cellar::v1::LoadResponse* revision = r->mutable_revision();
      if (revision->oid() != oids[i] ||
          !common::ChecksumMatches(revision->data(), revision->checksum())) {
        cache_.CancelLoad(tickets[j]);
        checksum_failures_.fetch_add(1, std::memory_order_relaxed);
        CELLAR_LOG(WARNING) << "checksum or oid mismatch in LoadMany of oid "
                            << common::FormatOid(oids[i]) << " from " << StorageName(node_id)
                            << ": trying another replica";
        fallback->push_back(i);
        continue;
      }
      const uint64_t next_serial = cache_.EndLoad(tickets[j], revision->serial(),
                                                  revision->next_serial(), revision->data());
      (*results)[i] = LoadResult{oids[i], revision->serial(), next_serial,
                                 std::move(*revision->mutable_data())};
    }
    next += answered;
  }
  fallback->insert(fallback->end(), indexes.begin() + static_cast<std::ptrdiff_t>(next),
                   indexes.end());
}

absl::StatusOr<LoadResult> Client::LoadFromStorage(
    uint64_t oid, const ::cellar::v1::LoadRequest& request) {
  const std::vector<uint32_t> nodes = view_.ReadNodesFor(oid);
  if (nodes.empty()) {
    return common::ErrorWithReason(
        absl::StatusCode::kUnavailable, common::kReasonNotReadable,
        absl::StrCat("no readable cell for oid ", common::FormatOid(oid),
                     " (partition ", view_.table()->PartitionOf(oid), ")"));
  }
  const ObjectCache::LoadTicket ticket = cache_.BeginLoad(oid);
  absl::Status last_error;
  bool only_checksum_failures = true;
  for (uint32_t node_id : nodes) {
    std::shared_ptr<ClusterView::StorageStub> stub = view_.Stub(node_id);
    if (stub == nullptr) continue;
    ::cellar::v1::LoadResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status =
        common::FromGrpcStatus(stub->Load(&context, request, &response));
    if (status.ok()) {
      if (!common::ChecksumMatches(response.data(), response.checksum())) {
        checksum_failures_.fetch_add(1, std::memory_order_relaxed);
        CELLAR_LOG(WARNING) << "checksum mismatch loading oid "
                            << common::FormatOid(oid) << " serial "
                            << common::TidHex(response.serial()) << " from "
                            << StorageName(node_id)
                            << ": trying another replica";
        last_error = common::ErrorWithReason(
            absl::StatusCode::kDataLoss, common::kReasonChecksumMismatch,
            absl::StrCat("checksum mismatch for oid ", common::FormatOid(oid),
                         " on ", StorageName(node_id)));
        continue;
      }
      const uint64_t next_serial =
          cache_.EndLoad(ticket, response.serial(), response.next_serial(),
                         response.data());
      return LoadResult{oid, response.serial(), next_serial,
                        std::move(*response.mutable_data())};
    }
    if (!TryNextReplica(status)) {
      cache_.CancelLoad(ticket);
      return status;
    }
    MaybeReportUnreachable(node_id, status);
    only_checksum_failures = false;
    last_error = common::Annotate(status, StorageName(node_id));
  }
  cache_.CancelLoad(ticket);
  if (last_error.ok()) {
    return common::ErrorWithReason(
        absl::StatusCode::kUnavailable, common::kReasonNotReadable,
        absl::StrCat("no reachable readable cell for oid ",
                     common::FormatOid(oid)));
  }
  if (!only_checksum_failures &&
      last_error.code() == absl::StatusCode::kDataLoss) {
    // Mixed failures: the retryable one is more useful to the caller.
    return absl::UnavailableError(absl::StrCat(
        "no replica of oid ", common::FormatOid(oid),
        " answered correctly (last: ", last_error.message(), ")"));
  }
  return last_error;
}

absl::Status Client::CallReadReplicas(
    uint64_t id, const std::string& what,
    const std::function<grpc::Status(ClusterView::StorageStub&, grpc::ClientContext*)>&
        call) {
  absl::Status last_error = common::ErrorWithReason(
      absl::StatusCode::kUnavailable, common::kReasonNotReadable,
      absl::StrCat("no readable cell for ", what));
  for (uint32_t node_id : view_.ReadNodesFor(id)) {
    std::shared_ptr<ClusterView::StorageStub> stub = view_.Stub(node_id);
    if (stub == nullptr) continue;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status = common::FromGrpcStatus(call(*stub, &context));
    if (status.ok()) return status;
    if (!TryNextReplica(status)) return status;
    MaybeReportUnreachable(node_id, status);
    last_error = common::Annotate(status, StorageName(node_id));
  }
  return last_error;
}

absl::StatusOr<std::vector<::cellar::v1::Revision>> Client::History(
    uint64_t oid, uint32_t limit) {
  ::cellar::v1::HistoryRequest request;
  request.set_oid(oid);
  request.set_limit(limit);
  ::cellar::v1::HistoryResponse response;
  CELLAR_RETURN_IF_ERROR(CallReadReplicas(
      oid, absl::StrCat("oid ", common::FormatOid(oid)),
      [&](ClusterView::StorageStub& stub, grpc::ClientContext* context) {
        return stub.History(context, request, &response);
      }));
  return std::vector<::cellar::v1::Revision>(response.revisions().begin(),
                                             response.revisions().end());
}

absl::StatusOr<::cellar::v1::TransactionInfo> Client::GetTransaction(uint64_t tid) {
  if (tid == 0 || tid > common::kMaxTid) {
    return absl::InvalidArgumentError(
        absl::StrCat("tid: required, at most ", common::TidHex(common::kMaxTid)));
  }
  // The record lives in partition(ttid), which is partition(tid).
  ::cellar::v1::GetTransactionRequest request;
  request.set_tid(tid);
  ::cellar::v1::GetTransactionResponse response;
  CELLAR_RETURN_IF_ERROR(CallReadReplicas(
      tid, absl::StrCat("transaction ", common::TidHex(tid)),
      [&](ClusterView::StorageStub& stub, grpc::ClientContext* context) {
        return stub.GetTransaction(context, request, &response);
      }));
  return response.transaction();
}

absl::StatusOr<ClusterSize> Client::Size() {
  const std::vector<uint32_t> nodes = view_.RunningStorageNodes();
  ClusterSize size;
  size.num_partitions = view_.table()->num_partitions();
  std::set<uint32_t> counted;
  absl::Status last_error = absl::UnavailableError("no running storage node");
  bool answered = false;
  for (uint32_t node_id : nodes) {
    std::shared_ptr<ClusterView::StorageStub> stub = view_.Stub(node_id);
    if (stub == nullptr) continue;
    ::cellar::v1::GetPartitionStatsResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status = common::FromGrpcStatus(
        stub->GetPartitionStats(&context, ::cellar::v1::GetPartitionStatsRequest(), &response));
    if (!status.ok()) {
      last_error = common::Annotate(status, StorageName(node_id));
      continue;
    }
    answered = true;
    for (const ::cellar::v1::PartitionStats& p : response.partitions()) {
      if (!p.readable() || !counted.insert(p.partition()).second) continue;
      size.objects += p.objects();
      size.revisions += p.revisions();
      size.bytes += p.bytes();
    }
  }
  if (!answered) return last_error;
  size.partitions = static_cast<uint32_t>(counted.size());
  return size;
}

absl::StatusOr<std::vector<::cellar::v1::TransactionInfo>>
Client::LastTransactions(uint32_t limit) {
  const std::vector<uint32_t> nodes = view_.RunningStorageNodes();
  if (nodes.empty()) {
    return absl::UnavailableError("no running storage node");
  }
  ::cellar::v1::LastTransactionsRequest request;
  request.set_limit(limit);
  // Nothing past this client's snapshot: a storage may hold a commit the
  // master has not published yet (semantics rule R6).
  if (const uint64_t snap = snapshot(); snap != 0 && snap < common::kMaxTid) {
    request.set_before_tid(snap + 1);
  }
  std::map<uint64_t, ::cellar::v1::TransactionInfo, std::greater<uint64_t>>
      merged;
  absl::Status last_error;
  int answered = 0;
  for (uint32_t node_id : nodes) {
    std::shared_ptr<ClusterView::StorageStub> stub = view_.Stub(node_id);
    if (stub == nullptr) continue;
    ::cellar::v1::LastTransactionsResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status = common::FromGrpcStatus(
        stub->LastTransactions(&context, request, &response));
    if (!status.ok()) {
      CELLAR_LOG(WARNING) << "LastTransactions on " << StorageName(node_id)
                          << ": " << status;
      last_error = common::Annotate(status, StorageName(node_id));
      continue;
    }
    ++answered;
    for (const auto& txn : response.transactions()) {
      merged.emplace(txn.tid(), txn);
    }
  }
  if (answered == 0) {
    return last_error.ok() ? absl::UnavailableError("no storage answered")
                           : last_error;
  }
  std::vector<::cellar::v1::TransactionInfo> out;
  const size_t max = limit == 0 ? 10 : limit;
  for (auto& [tid, txn] : merged) {
    if (out.size() >= max) break;
    out.push_back(std::move(txn));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Commit.

std::unique_ptr<Transaction> Client::NewTransaction() {
  return std::make_unique<Transaction>(static_cast<TransactionCommitter*>(this));
}

namespace {

// One storage node's part of a commit: its Store calls (the last votes).
struct StoreCall {
  uint32_t node_id = 0;
  std::shared_ptr<ClusterView::StorageStub> stub;
  std::vector<::cellar::v1::StoreRequest> batches;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<::cellar::v1::StoreResponse> responses;
  size_t next = 0;
  grpc::Status status;
};

// Shared with the gRPC callbacks, which may outlive the committing call.
struct StoreRound {
  absl::Mutex mu;
  size_t pending ABSL_GUARDED_BY(mu) = 0;
  std::vector<StoreCall> calls;
  absl::Duration timeout;
};

// The conflict checks one storage's store batches report (semantics rule
// 2): a partition counts when every batch holding its objects checked it,
// at the oldest table version any of them used.
void AddConflictChecks(const StoreCall& call, uint32_t num_partitions,
                       ::cellar::v1::FinishRequest* request) {
  std::map<uint32_t, uint64_t> checked;  // partition -> oldest ptid
  std::set<uint32_t> unchecked;
  for (size_t b = 0; b < call.batches.size() && b < call.responses.size(); ++b) {
    const ::cellar::v1::StoreResponse& response = call.responses[b];
    const std::set<uint32_t> said(response.checked_partitions().begin(),
                                  response.checked_partitions().end());
    for (const ::cellar::v1::ObjectToStore& object : call.batches[b].objects()) {
      const uint32_t p = static_cast<uint32_t>(object.oid() % num_partitions);
      if (!said.count(p)) {
        unchecked.insert(p);
        continue;
      }
      auto [it, inserted] = checked.try_emplace(p, response.checked_ptid());
      if (!inserted) it->second = std::min(it->second, response.checked_ptid());
    }
  }
  for (const auto& [p, ptid] : checked) {
    if (unchecked.count(p)) continue;
    ::cellar::v1::ConflictCheck* check = request->add_conflict_checks();
    check->set_partition(p);
    check->set_node_id(call.node_id);
    check->set_ptid(ptid);
  }
}

void IssueNextBatch(const std::shared_ptr<StoreRound>& round, size_t index) {
  StoreCall& call = round->calls[index];
  const size_t batch = call.next;
  common::SetDeadline(call.contexts[batch].get(), round->timeout);
  call.stub->async()->Store(
      call.contexts[batch].get(), &call.batches[batch],
      &call.responses[batch], [round, index](grpc::Status status) {
        StoreCall& call = round->calls[index];
        if (status.ok() && ++call.next < call.batches.size()) {
          IssueNextBatch(round, index);
          return;
        }
        call.status = std::move(status);
        absl::MutexLock lock(&round->mu);
        --round->pending;
      });
}

}  // namespace

absl::Status Client::AbortOnMaster(
    MasterStub* master, uint32_t node_id, uint64_t ttid,
    const std::vector<uint32_t>& storage_node_ids) {
  ::cellar::v1::AbortRequest request;
  request.set_node_id(node_id);
  request.set_ttid(ttid);
  for (uint32_t id : storage_node_ids) request.add_storage_node_ids(id);
  ::cellar::v1::AbortResponse response;
  grpc::ClientContext context;
  common::SetDeadline(&context, options_.rpc_timeout);
  absl::Status status =
      common::FromGrpcStatus(master->Abort(&context, request, &response));
  if (!status.ok()) {
    CELLAR_LOG(WARNING) << "Abort of ttid " << common::TidHex(ttid)
                        << " failed: " << status;
  }
  return status;
}

absl::StatusOr<::cellar::v1::GetTransactionStatusResponse> Client::AskOutcome(
    MasterStub* master, uint32_t node_id, uint64_t ttid, absl::Duration timeout) {
  ::cellar::v1::GetTransactionStatusRequest request;
  request.set_ttid(ttid);
  request.set_node_id(node_id);
  ::cellar::v1::GetTransactionStatusResponse response;
  grpc::ClientContext context;
  common::SetDeadline(&context, timeout);
  absl::Status status = common::FromGrpcStatus(
      master->GetTransactionStatus(&context, request, &response));
  if (!status.ok()) return common::Annotate(status, "GetTransactionStatus");
  return response;
}

absl::StatusOr<uint64_t> Client::ResolveFinishFailure(
    MasterStub* master, uint32_t node_id, uint64_t session, uint64_t ttid,
    const std::vector<uint32_t>& involved, const absl::Status& finish_error) {
  using ::cellar::v1::TRANSACTION_ABORTED;
  using ::cellar::v1::TRANSACTION_COMMITTED;
  const absl::Status failed = common::Annotate(finish_error, "Finish");
  // Without an answer, the commit may have gone through: ask first.
  const bool no_answer = IsTransportError(finish_error);
  if (no_answer) {
    absl::StatusOr<::cellar::v1::GetTransactionStatusResponse> outcome =
        AskOutcome(master, node_id, ttid, options_.rpc_timeout);
    if (outcome.ok() && outcome->outcome() == TRANSACTION_COMMITTED) {
      return outcome->tid();
    }
    if (outcome.ok() && outcome->outcome() == TRANSACTION_ABORTED) {
      return failed;
    }
  }
  // An abort the primary accepts settles it; it refuses it with
  // FAILED_PRECONDITION once a final tid was picked: the commit is then
  // under way, ask until it settles (bounded).
  const absl::Status aborted = AbortOnMaster(master, node_id, ttid, involved);
  if (aborted.ok()) return failed;
  bool lost_master = IsTransportError(aborted);
  if (aborted.code() == absl::StatusCode::kFailedPrecondition) {
    const absl::Time deadline = absl::Now() + options_.rpc_timeout;
    absl::Duration pause = absl::Milliseconds(20);
    while (true) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      absl::StatusOr<::cellar::v1::GetTransactionStatusResponse> outcome =
          AskOutcome(master, node_id, ttid, left);
      if (outcome.ok() && outcome->outcome() == TRANSACTION_COMMITTED) {
        return outcome->tid();
      }
      if (outcome.ok() && outcome->outcome() == TRANSACTION_ABORTED) {
        return failed;
      }
      if (!outcome.ok()) {
        lost_master = IsTransportError(outcome.status());
        break;
      }
      absl::SleepFor(std::min(pause, deadline - absl::Now()));
      pause = std::min(pause * 2, absl::Milliseconds(500));
    }
  } else if (!no_answer) {
    // The master answered Finish with a refusal: its verdict stands.
    return failed;
  }
  if (lost_master) {
    // That master cannot tell (gone in a failover?): ask the next one.
    const uint64_t tid = CommittedTidAfterReconnect(session, ttid);
    if (tid != 0) return tid;
  }
  return common::ErrorWithReason(
      absl::StatusCode::kUnavailable, common::kReasonOutcomeUnknown,
      absl::StrCat("the outcome of transaction ", common::TidHex(ttid),
                   " is unknown: Finish failed (", finish_error.message(),
                   ") and the primary could not tell whether it committed; "
                   "it may have: read its objects before retrying"));
}

uint64_t Client::CommittedTidAfterReconnect(uint64_t session, uint64_t ttid) {
  // Bounded by rpc_timeout: the new session, then the question.
  const absl::Time deadline = absl::Now() + options_.rpc_timeout;
  if (!AwaitSession(session + 1, options_.rpc_timeout).ok()) return 0;
  {
    // A new primary verifies (resolves in-doubt ttids) before RUNNING, and
    // asks the storages only once RUNNING: ask it then.
    absl::MutexLock lock(&mu_);
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closing_ || !connected_ ||
             view_.cluster_state() == ::cellar::v1::CLUSTER_RUNNING;
    };
    mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
  }
  std::shared_ptr<MasterStub> stub = master();
  if (stub == nullptr) return 0;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  // A master that never saw the ttid asks the storages whether one locked
  // it (Master.GetTransactionStatus); UNKNOWN is left unknown (no abort:
  // a storage holding the lock may be down). Asked as this session's node.
  absl::StatusOr<::cellar::v1::GetTransactionStatusResponse> response =
      AskOutcome(stub.get(), node_id(), ttid, left);
  if (!response.ok() || response->outcome() != ::cellar::v1::TRANSACTION_COMMITTED) {
    return 0;
  }
  CELLAR_LOG(INFO) << "ttid " << common::TidHex(ttid)
                   << " whose Finish answer was lost committed as "
                   << common::TidHex(response->tid()) << " (asked the new master)";
  return response->tid();
}

absl::StatusOr<uint64_t> Client::CommitTransaction(const TransactionData& data) {
  absl::StatusOr<uint64_t> tid = RunCommit(data);
  if (tid.ok()) {
    commits_.fetch_add(1, std::memory_order_relaxed);
  } else if (tid.status().code() == absl::StatusCode::kAborted) {
    conflicts_.fetch_add(1, std::memory_order_relaxed);
  } else {
    commit_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  return tid;
}

absl::StatusOr<uint64_t> Client::RunCommit(const TransactionData& data) {
  // Across a master restart or failover: wait for the next session.
  CELLAR_RETURN_IF_ERROR(AwaitConnected());
  // The application read at the snapshot: commit through a master that
  // knows it (semantics rule 6).
  CELLAR_RETURN_IF_ERROR(AwaitMasterCaughtUp(snapshot()));
  std::shared_ptr<MasterStub> master;
  uint32_t node_id;
  uint64_t session;
  uint64_t ttid = 0;
  std::string ttid_token;
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return absl::CancelledError("client closed");
    if (!connected_ || master_ == nullptr) {
      return absl::UnavailableError(
          "not connected to the master (reconnecting)");
    }
    master = master_;
    node_id = node_id_;
    session = sessions_;
    // A ttid handed out with the previous Finish (docs/protocol.md,
    // "Pre-allocated ttids"): this session's only (an earlier session's was
    // aborted when it ended, and after a failover its token is refused),
    // and only while RUNNING (otherwise Begin holds the call until it is;
    // the ttid is kept for a later commit).
    if (preallocated_.has_value() && preallocated_->session != session) {
      preallocated_.reset();
    }
    if (preallocated_.has_value() &&
        view_.cluster_state() == ::cellar::v1::CLUSTER_RUNNING) {
      ttid = preallocated_->ttid;
      ttid_token = std::move(preallocated_->token);
      preallocated_.reset();
    }
  }
  if (ttid != 0) preallocated_ttids_used_.fetch_add(1, std::memory_order_relaxed);

  // 1. Begin: the ttid and its token (storages refuse a ttid without it).
  if (ttid == 0) {
    ::cellar::v1::BeginRequest request;
    request.set_node_id(node_id);
    ::cellar::v1::BeginResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status =
        common::FromGrpcStatus(master->Begin(&context, request, &response));
    if (!status.ok()) return common::Annotate(status, "Begin");
    ttid = response.ttid();
    ttid_token = response.ttid_token();
  }

  // 2. Plan: every writable cell of each object's partition; the
  // transaction record on every writable cell of partition(ttid).
  std::shared_ptr<const common::PartitionTable> table = view_.table();
  const uint32_t num_partitions = table->num_partitions();
  if (num_partitions == 0) {
    AbortOnMaster(master.get(), node_id, ttid, {}).IgnoreError();
    return absl::UnavailableError("no partition table yet");
  }
  struct NodePlan {
    std::vector<size_t> objects;  // indexes into data.objects
    bool metadata = false;
  };
  std::map<uint32_t, NodePlan> plan;
  std::set<uint32_t> partitions;
  absl::Status plan_error;
  for (size_t i = 0; i < data.objects.size() && plan_error.ok(); ++i) {
    const uint32_t partition = table->PartitionOf(data.objects[i].oid);
    partitions.insert(partition);
    const std::vector<uint32_t> writable = table->WritableNodes(partition);
    if (writable.empty()) {
      plan_error = absl::UnavailableError(
          absl::StrCat("partition ", partition, " has no writable cell"));
    }
    for (uint32_t node : writable) plan[node].objects.push_back(i);
  }
  const uint32_t ttid_partition = table->PartitionOf(ttid);
  partitions.insert(ttid_partition);
  const std::vector<uint32_t> record_nodes = table->WritableNodes(ttid_partition);
  if (record_nodes.empty() && plan_error.ok()) {
    plan_error = absl::UnavailableError(absl::StrCat(
        "partition ", ttid_partition, " has no writable cell"));
  }
  for (uint32_t node : record_nodes) plan[node].metadata = true;
  std::vector<uint32_t> involved;
  for (const auto& [node, unused] : plan) involved.push_back(node);
  if (!plan_error.ok()) {
    AbortOnMaster(master.get(), node_id, ttid, involved).IgnoreError();
    return plan_error;
  }

  // 3. Store + vote on every involved storage, in parallel.
  ::cellar::v1::TransactionMetadata metadata;
  metadata.set_user(data.user);
  metadata.set_description(data.description);
  metadata.set_extension(data.extension);
  std::vector<std::string> checksums;
  checksums.reserve(data.objects.size());
  uint64_t size_bytes = 0;
  for (const StagedObject& object : data.objects) {
    checksums.push_back(object.check_only ? "" : common::Checksum(object.data));
    if (object.check_only) continue;  // read, not written
    metadata.add_oids(object.oid);
    size_bytes += object.data.size();
  }
  // Kept with the transaction record, for LastTransactions' SIZE.
  metadata.set_size_bytes(size_bytes);
  auto round = std::make_shared<StoreRound>();
  round->timeout = options_.rpc_timeout;
  std::map<uint32_t, absl::Status> results;
  for (const auto& [node, node_plan] : plan) {
    std::shared_ptr<ClusterView::StorageStub> stub = view_.Stub(node);
    if (stub == nullptr) {
      results[node] = absl::UnavailableError(
          absl::StrCat(StorageName(node), " has no known address"));
      continue;
    }
    StoreCall call;
    call.node_id = node;
    call.stub = std::move(stub);
    auto new_batch = [&]() {
      ::cellar::v1::StoreRequest& request = call.batches.emplace_back();
      request.set_ttid(ttid);
      request.set_ttid_token(ttid_token);
      request.set_client_node_id(node_id);
    };
    new_batch();
    size_t batch_bytes = 0;
    for (size_t index : node_plan.objects) {
      const StagedObject& object = data.objects[index];
      if (call.batches.back().objects_size() > 0 &&
          (call.batches.back().objects_size() >= kMaxObjectsPerStore ||
           batch_bytes + object.data.size() > kMaxBytesPerStore)) {
        new_batch();
        batch_bytes = 0;
      }
      ::cellar::v1::ObjectToStore* out = call.batches.back().add_objects();
      out->set_oid(object.oid);
      out->set_base_serial(object.base_serial);
      out->set_data(object.data);
      out->set_checksum(checksums[index]);
      out->set_check_only(object.check_only);
      batch_bytes += object.data.size();
    }
    ::cellar::v1::StoreRequest& last = call.batches.back();
    last.set_vote(true);
    if (node_plan.metadata) *last.mutable_metadata() = metadata;
    for (size_t b = 0; b < call.batches.size(); ++b) {
      call.contexts.push_back(std::make_unique<grpc::ClientContext>());
    }
    call.responses.resize(call.batches.size());
    round->calls.push_back(std::move(call));
  }
  {
    absl::MutexLock lock(&round->mu);
    round->pending = round->calls.size();
  }
  for (size_t i = 0; i < round->calls.size(); ++i) IssueNextBatch(round, i);
  {
    absl::MutexLock lock(&round->mu);
    round->mu.Await(absl::Condition(
        +[](size_t* pending) { return *pending == 0; }, &round->pending));
  }
  for (const StoreCall& call : round->calls) {
    results[call.node_id] = common::Annotate(
        common::FromGrpcStatus(call.status),
        absl::StrCat("Store on ", StorageName(call.node_id)));
  }

  // 4. Decide: any refusal aborts; unreachable or unresponsive nodes are
  // tolerated when every touched partition kept a voter (semantics rule 8).
  std::set<uint32_t> voted;
  absl::Status failure;
  absl::Status unavailable;
  for (const auto& [node, status] : results) {
    if (status.ok()) {
      voted.insert(node);
    } else if (status.code() == absl::StatusCode::kUnavailable ||
               status.code() == absl::StatusCode::kDeadlineExceeded) {
      // Unreachable, or too slow to answer (a stopped process keeps its
      // connections open): commit without it if every partition keeps a
      // voter. The master then marks its cells OUT_OF_DATE and aborts
      // whatever it may still store for this ttid (rule 8).
      unavailable = status;
      MaybeReportUnreachable(node, status);
    } else if (failure.ok() ||
               (status.code() == absl::StatusCode::kAborted &&
                failure.code() != absl::StatusCode::kAborted)) {
      failure = status;
    }
  }
  if (failure.ok() && !unavailable.ok()) {
    for (uint32_t partition : partitions) {
      const std::vector<uint32_t> writable = table->WritableNodes(partition);
      if (std::none_of(writable.begin(), writable.end(),
                       [&](uint32_t n) { return voted.count(n) > 0; })) {
        failure = absl::UnavailableError(absl::StrCat(
            "no cell of partition ", partition, " voted (",
            unavailable.message(), ")"));
        break;
      }
    }
    static common::LogRateLimit limit(absl::Seconds(10));
    if (uint64_t dropped = 0; failure.ok() && limit.Allow(absl::Now(), &dropped)) {
      CELLAR_LOG(WARNING) << "committing ttid " << common::TidHex(ttid)
                          << " without some replicas: " << unavailable
                          << common::Dropped(dropped);
    }
  }
  if (failure.ok()) {
    absl::MutexLock lock(&mu_);
    if (sessions_ != session || !connected_) {
      failure = absl::UnavailableError(
          "connection to the master lost during the commit");
    }
  }
  if (common::ErrorReason(failure) == common::kReasonBadTtidToken) {
    // A storage registered with a newer primary since Begin: the
    // transaction belongs to a past term. Retry it all.
    failure = common::ErrorWithReason(
        absl::StatusCode::kAborted, common::kReasonBadTtidToken,
        absl::StrCat(failure.message(),
                     " (begun under an earlier master term: retry the "
                     "transaction)"));
  }
  if (!failure.ok()) {
    AbortOnMaster(master.get(), node_id, ttid, involved).IgnoreError();
    return failure;
  }

  // 5. Finish.
  uint64_t tid = 0;
  {
    ::cellar::v1::FinishRequest request;
    request.set_node_id(node_id);
    request.set_ttid(ttid);
    for (uint32_t node : voted) request.add_voted_node_ids(node);
    for (const StagedObject& object : data.objects) {
      if (!object.check_only) request.add_oids(object.oid);  // invalidated
    }
    for (uint32_t partition : partitions) request.add_partitions(partition);
    request.set_ptid(table->ptid());
    // Votes count per partition: a storage votes for the partitions whose
    // part it received, nothing else.
    std::map<uint32_t, std::set<uint32_t>> voters;
    for (uint32_t node : voted) {
      const NodePlan& node_plan = plan[node];
      for (size_t index : node_plan.objects) {
        voters[table->PartitionOf(data.objects[index].oid)].insert(node);
      }
      if (node_plan.metadata) voters[ttid_partition].insert(node);
    }
    for (const auto& [partition, nodes] : voters) {
      ::cellar::v1::PartitionVoters* entry = request.add_partition_voters();
      entry->set_partition(partition);
      for (uint32_t node : nodes) entry->add_node_ids(node);
    }
    for (const StoreCall& call : round->calls) {
      if (voted.count(call.node_id)) AddConflictChecks(call, num_partitions, &request);
    }
    bool ask = false;
    if (options_.preallocate_ttid) {
      absl::MutexLock lock(&mu_);
      ask = !preallocated_.has_value() && !preallocation_asked_;
      preallocation_asked_ = preallocation_asked_ || ask;
    }
    request.set_want_next_ttid(ask);
    ::cellar::v1::FinishResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, options_.rpc_timeout);
    absl::Status status =
        common::FromGrpcStatus(master->Finish(&context, request, &response));
    if (ask) {
      absl::MutexLock lock(&mu_);
      preallocation_asked_ = false;
      // Kept for this session only: if it ended meanwhile, the master
      // aborted the ttid with it.
      if (status.ok() && response.next_ttid() != 0 && sessions_ == session && connected_) {
        preallocated_ = PreallocatedTtid{response.next_ttid(), response.next_ttid_token(),
                                         session};
      }
    }
    if (status.ok()) {
      tid = response.tid();
    } else {
      CELLAR_ASSIGN_OR_RETURN(tid, ResolveFinishFailure(master.get(), node_id,
                                                        session, ttid, involved,
                                                        status));
    }
  }

  // 6. Read-your-writes: the master pushes invalidations before answering.
  if (!WaitForSnapshot(tid, options_.commit_wait_timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "transaction committed as tid ", common::FormatTid(tid),
        " but its invalidation did not reach this client within ",
        absl::FormatDuration(options_.commit_wait_timeout)));
  }
  return tid;
}

}  // namespace cellar::client
