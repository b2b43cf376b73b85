#include "services/master/canary_analysis.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/logging.h"

namespace cellar::master {

namespace {

constexpr char kCanaryTrack[] = "canary";
constexpr char kStableTrack[] = "stable";

double Ratio(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0 : static_cast<double>(part) / static_cast<double>(whole);
}

uint64_t Total(const common::LatencyHistogram& h) {
  uint64_t total = 0;
  for (uint64_t n : h) total += n;
  return total;
}

// "" when `canary_p99` passes against `stable_p99`, else why not.
std::string LatencyFailure(const char* what, double canary_p99, double stable_p99,
                           uint64_t stable_calls, const CanaryThresholds& t) {
  if (stable_calls == 0 || canary_p99 == 0) return "";  // no baseline, or no call
  const double floor_ms = absl::ToDoubleMilliseconds(t.latency_floor);
  const double limit = std::max(floor_ms, t.max_latency_ratio * stable_p99);
  if (canary_p99 <= limit) return "";
  return absl::StrFormat("p99 %s latency %gms above %gms (%g x stable's %gms, floor %gms)", what,
                         canary_p99, limit, t.max_latency_ratio, stable_p99, floor_ms);
}

}  // namespace

const char* VerdictName(CanaryVerdict verdict) {
  switch (verdict) {
    case CanaryVerdict::kHold:
      return "hold";
    case CanaryVerdict::kPromote:
      return "promote";
    case CanaryVerdict::kRollback:
      return "rollback";
  }
  return "unknown";
}

int VerdictValue(CanaryVerdict verdict) {
  switch (verdict) {
    case CanaryVerdict::kHold:
      return 0;
    case CanaryVerdict::kPromote:
      return 1;
    case CanaryVerdict::kRollback:
      return 2;
  }
  return 0;
}

const char* OutcomeName(CanaryInterval::Outcome outcome) {
  switch (outcome) {
    case CanaryInterval::Outcome::kPass:
      return "pass";
    case CanaryInterval::Outcome::kFail:
      return "fail";
    case CanaryInterval::Outcome::kNoData:
      return "no_data";
  }
  return "unknown";
}

CanaryAnalysis::CanaryAnalysis(const common::Clock* clock, CanaryThresholds thresholds,
                               Quarantine quarantine, IsQuarantined is_quarantined)
    : clock_(clock),
      thresholds_(thresholds),
      quarantine_(std::move(quarantine)),
      is_quarantined_(std::move(is_quarantined)),
      interval_start_(clock->Now()) {}

absl::Status CanaryAnalysis::ValidateThresholds(const CanaryThresholds& t) {
  if (t.interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the canary analysis interval must be positive, got ", absl::FormatDuration(t.interval)));
  }
  if (!(t.max_error_ratio >= 0 && t.max_error_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the canary max error ratio must be within 0..1, got ", t.max_error_ratio));
  }
  if (!(t.max_latency_ratio >= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the canary max latency ratio must be >= 1, got ", t.max_latency_ratio));
  }
  if (t.latency_floor < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the canary latency floor must not be negative");
  }
  if (t.min_requests == 0) {
    return absl::InvalidArgumentError("the canary min requests must be at least 1");
  }
  if (t.promote_after == 0) {
    return absl::InvalidArgumentError("the canary promote-after count must be at least 1");
  }
  return absl::OkStatus();
}

void CanaryAnalysis::Report(uint32_t node_id, const VersionKey& key,
                            const common::DataPathSample& sample) {
  {
    absl::MutexLock l(&mu_);
    auto [it, first] = nodes_.try_emplace(node_id);
    NodeState& node = it->second;
    common::DataPathSample delta;
    if (first || !(node.key == key)) {
      // A baseline only: the counts were made over a period not known here
      // (or under another version).
    } else if (sample.incarnation == node.last.incarnation &&
               sample.Since(node.last, &delta)) {
      current_[key].Add(delta);
    } else {
      // The process restarted: everything it counted is since then.
      current_[key].Add(sample);
    }
    node.key = key;
    node.last = sample;
    if (key.track == kCanaryTrack) canaries_.try_emplace(key);
  }
  Advance();
}

std::vector<CanaryStatus> CanaryAnalysis::Analysis() {
  Advance();
  absl::MutexLock l(&mu_);
  std::vector<CanaryStatus> out;
  for (const auto& [key, canary] : canaries_) {
    CanaryStatus status;
    status.key = key;
    status.verdict = canary.verdict;
    status.reason = canary.reason;
    status.consecutive_passes = canary.passes;
    status.quarantined = is_quarantined_ ? is_quarantined_(key) : false;
    status.intervals.assign(canary.intervals.begin(), canary.intervals.end());
    out.push_back(std::move(status));
  }
  return out;
}

absl::Time CanaryAnalysis::current_interval_start() const {
  absl::MutexLock l(&mu_);
  return interval_start_;
}

void CanaryAnalysis::Advance() {
  std::vector<std::pair<VersionKey, std::string>> to_quarantine;
  {
    absl::MutexLock l(&mu_);
    to_quarantine = AdvanceLocked();
  }
  for (const auto& [key, why] : to_quarantine) {
    if (!quarantine_) continue;
    if (absl::Status s = quarantine_(key, why); !s.ok()) {
      CELLAR_LOG(WARNING) << "canary " << key.ToString() << " rolled back but not quarantined: "
                          << s;
      continue;
    }
    // Quarantined now: an unquarantine, even before the next interval
    // closes, starts the analysis over.
    absl::MutexLock l(&mu_);
    auto it = canaries_.find(key);
    if (it != canaries_.end()) it->second.seen_quarantined = true;
  }
}

CanaryInterval CanaryAnalysis::Judge(const VersionKey& key, const common::DataPathSample& c,
                                     const common::DataPathSample& stable,
                                     bool quarantined) const {
  CanaryInterval r;
  r.canary = c;
  r.stable = stable;
  const uint64_t requests = c.loads + c.stores;
  r.error_ratio = Ratio(c.load_errors + c.store_errors, requests);
  r.stable_error_ratio =
      Ratio(stable.load_errors + stable.store_errors, stable.loads + stable.stores);
  r.load_p99_ms = common::LatencyQuantileMs(c.load_latency, 0.99);
  r.store_p99_ms = common::LatencyQuantileMs(c.store_latency, 0.99);
  r.stable_load_p99_ms = common::LatencyQuantileMs(stable.load_latency, 0.99);
  r.stable_store_p99_ms = common::LatencyQuantileMs(stable.store_latency, 0.99);
  std::vector<std::string> failures;
  if (quarantined) failures.push_back(absl::StrCat(key.ToString(), " is quarantined"));
  if (c.checksum_failures > 0) {
    failures.push_back(absl::StrCat(c.checksum_failures, " checksum failure(s)"));
  }
  if (requests >= thresholds_.min_requests) {
    if (r.error_ratio > thresholds_.max_error_ratio) {
      failures.push_back(absl::StrFormat("error ratio %.4f above %g (%d errors in %d calls)",
                                         r.error_ratio, thresholds_.max_error_ratio,
                                         c.load_errors + c.store_errors, requests));
    }
    for (const std::string& f :
         {LatencyFailure("load", r.load_p99_ms, r.stable_load_p99_ms,
                         Total(stable.load_latency), thresholds_),
          LatencyFailure("store", r.store_p99_ms, r.stable_store_p99_ms,
                         Total(stable.store_latency), thresholds_)}) {
      if (!f.empty()) failures.push_back(f);
    }
  }
  if (!failures.empty()) {
    r.outcome = CanaryInterval::Outcome::kFail;
    for (const std::string& f : failures) {
      absl::StrAppend(&r.reason, r.reason.empty() ? "" : "; ", f);
    }
  } else if (requests < thresholds_.min_requests) {
    r.outcome = CanaryInterval::Outcome::kNoData;
    r.reason = absl::StrCat(requests, " loads + stores, fewer than ", thresholds_.min_requests);
  } else {
    r.outcome = CanaryInterval::Outcome::kPass;
  }
  return r;
}

std::vector<std::pair<VersionKey, std::string>> CanaryAnalysis::AdvanceLocked() {
  std::vector<std::pair<VersionKey, std::string>> to_quarantine;
  const absl::Time now = clock_->Now();
  if (now - interval_start_ < thresholds_.interval) return to_quarantine;
  common::DataPathSample stable;
  for (const auto& [key, counts] : current_) {
    if (key.track == kStableTrack) stable.Add(counts);
  }
  for (auto& [key, canary] : canaries_) {
    const bool quarantined = is_quarantined_ ? is_quarantined_(key) : false;
    bool lifted = false;
    if (canary.verdict == CanaryVerdict::kRollback) {
      if (quarantined) {
        canary.seen_quarantined = true;
      } else if (canary.seen_quarantined) {
        CELLAR_LOG(INFO) << "canary " << key.ToString()
                         << ": quarantine lifted, the analysis starts over";
        canary = Canary();
        lifted = true;
      }
    }
    auto it = current_.find(key);
    CanaryInterval r;
    if (lifted) {
      // This interval began before the lift: its counts may be the failing
      // build's (seen on Kubernetes: the bad canary's last loads quarantined
      // the fixed build at once). The next interval is the first judged.
      r.outcome = CanaryInterval::Outcome::kNoData;
      r.reason = "the quarantine was lifted during this interval: not judged";
    } else {
      r = Judge(key, it == current_.end() ? common::DataPathSample() : it->second, stable,
                quarantined);
    }
    r.start = interval_start_;
    r.end = now;
    switch (r.outcome) {
      case CanaryInterval::Outcome::kFail:
        canary.passes = 0;
        if (canary.verdict != CanaryVerdict::kRollback) {
          canary.verdict = CanaryVerdict::kRollback;
          canary.reason = r.reason;
          canary.seen_quarantined = quarantined;
          CELLAR_LOG(WARNING) << "canary " << key.ToString() << ": rollback (" << r.reason << ")";
          if (!quarantined) {
            to_quarantine.emplace_back(key, absl::StrCat("canary analysis: ", r.reason));
          }
        }
        break;
      case CanaryInterval::Outcome::kPass:
        if (canary.verdict == CanaryVerdict::kRollback) break;
        ++canary.passes;
        if (canary.passes >= thresholds_.promote_after &&
            canary.verdict != CanaryVerdict::kPromote) {
          canary.verdict = CanaryVerdict::kPromote;
          canary.reason = absl::StrCat(canary.passes, " passing intervals in a row");
          CELLAR_LOG(INFO) << "canary " << key.ToString() << ": promote (" << canary.reason
                           << ")";
        } else if (canary.verdict == CanaryVerdict::kHold) {
          canary.reason = absl::StrCat(canary.passes, " of ", thresholds_.promote_after,
                                       " passing intervals");
        } else {
          canary.reason = absl::StrCat(canary.passes, " passing intervals in a row");
        }
        break;
      case CanaryInterval::Outcome::kNoData:
        if (canary.verdict == CanaryVerdict::kHold) {
          canary.reason = absl::StrCat("no data in the last interval (", r.reason, "); ",
                                       canary.passes, " of ", thresholds_.promote_after,
                                       " passing intervals");
        }
        break;
    }
    canary.intervals.push_back(std::move(r));
    while (canary.intervals.size() > kMaxIntervals) canary.intervals.pop_front();
  }
  current_.clear();
  interval_start_ = now;
  return to_quarantine;
}

}  // namespace cellar::master
