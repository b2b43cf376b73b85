#ifndef CELLAR_SERVICES_COMMON_LOGGING_H_
#define CELLAR_SERVICES_COMMON_LOGGING_H_

// A tiny logging shim (Debian's Abseil has no absl/log):
//   CELLAR_LOG(INFO) << "storage S1 joined";
// Writes one line to stderr: "I1122 02:30:12.123456 file.cc:42] message".
// FATAL aborts after logging. Thread-safe (one write(2) per line).
// A message is one line whatever it holds: control characters are escaped
// (\n, \xNN) and it is cut at kMaxLogMessageBytes, so a logged field from a
// peer can neither forge a line nor flood the log.
// Log an error once, at the boundary that handles it.

#include <sstream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellar::common {

enum class LogSeverity { kInfo, kWarning, kError, kFatal };

inline constexpr size_t kMaxLogMessageBytes = 4096;

// `message` on one line: '\n' as "\n", other control characters as "\xNN",
// at most `limit` bytes: if cut, the full size is noted ("... (N bytes)")
// within the limit.
std::string OneLine(absl::string_view message, size_t limit);

// How much of a caller's input an error message quotes (Quoted).
inline constexpr size_t kMaxQuotedBytes = 40;

// A caller's input quoted for an error message, bounded: the first
// kMaxQuotedBytes on one line, the full size noted if cut
// ("\"abc...\"... (N bytes)"). An error must not echo unbounded input.
std::string Quoted(absl::string_view input);

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
  size_t header_size_ = 0;
};

// Drops log lines below `severity` (default kInfo). For quiet tests/tools.
void SetMinLogSeverity(LogSeverity severity);

// Keeps a message that can repeat per request (a peer down, every commit
// failing the same way) to one line per period, without losing the count:
//   static common::LogRateLimit limit(absl::Seconds(10));
//   if (uint64_t dropped = 0; limit.Allow(absl::Now(), &dropped)) {
//     CELLAR_LOG(WARNING) << "..." << common::Dropped(dropped);
//   }
class LogRateLimit {
 public:
  explicit LogRateLimit(absl::Duration period) : period_(period) {}
  // True for the first call and then once `period` has passed since the
  // last true; *dropped = the calls answered false in between.
  bool Allow(absl::Time now, uint64_t* dropped);

 private:
  const absl::Duration period_;
  absl::Mutex mu_;
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

// " (N similar messages not logged)", or "" for 0.
std::string Dropped(uint64_t dropped);

}  // namespace cellar::common

#define CELLAR_LOG_SEVERITY_INFO ::cellar::common::LogSeverity::kInfo
#define CELLAR_LOG_SEVERITY_WARNING ::cellar::common::LogSeverity::kWarning
#define CELLAR_LOG_SEVERITY_ERROR ::cellar::common::LogSeverity::kError
#define CELLAR_LOG_SEVERITY_FATAL ::cellar::common::LogSeverity::kFatal

#define CELLAR_LOG(severity)                                                \
  ::cellar::common::LogMessage(CELLAR_LOG_SEVERITY_##severity, __FILE__, \
                               __LINE__)                                   \
      .stream()

#endif  // CELLAR_SERVICES_COMMON_LOGGING_H_
