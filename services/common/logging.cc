#include "services/common/logging.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cellar::common {
namespace {

std::atomic<int> min_severity{0};

char SeverityLetter(LogSeverity s) {
  switch (s) {
    case LogSeverity::kInfo:
      return 'I';
    case LogSeverity::kWarning:
      return 'W';
    case LogSeverity::kError:
      return 'E';
    case LogSeverity::kFatal:
      return 'F';
  }
  return '?';
}

}  // namespace

std::string OneLine(absl::string_view message, size_t limit) {
  const std::string note = absl::StrCat("... (", message.size(), " bytes)");
  // Escapes what it can within `budget`; true if all of `message` fit.
  std::string out;
  auto escape = [&](size_t budget) {
    out.clear();
    for (const char ch : message) {
      const unsigned char c = static_cast<unsigned char>(ch);
      const size_t width = c == '\n' ? 2 : (c < 0x20 || c == 0x7f) ? 4 : 1;
      if (out.size() + width > budget) return false;
      if (c == '\n') {
        out += "\\n";
      } else if (width == 4) {
        absl::StrAppendFormat(&out, "\\x%02x", c);
      } else {
        out.push_back(ch);
      }
    }
    return true;
  };
  if (escape(limit)) return out;
  escape(limit > note.size() ? limit - note.size() : 0);
  out += note;
  return out;
}

std::string Quoted(absl::string_view input) {
  std::string out = absl::StrCat(
      "\"", OneLine(input.substr(0, kMaxQuotedBytes), 4 * kMaxQuotedBytes), "\"");
  if (input.size() > kMaxQuotedBytes) absl::StrAppend(&out, "... (", input.size(), " bytes)");
  return out;
}

bool LogRateLimit::Allow(absl::Time now, uint64_t* dropped) {
  absl::MutexLock lock(&mu_);
  if (now < next_) {
    ++dropped_;
    return false;
  }
  next_ = now + period_;
  *dropped = dropped_;
  dropped_ = 0;
  return true;
}

std::string Dropped(uint64_t dropped) {
  if (dropped == 0) return "";
  return absl::StrCat(" (", dropped, " similar message", dropped == 1 ? "" : "s",
                      " not logged)");
}

void SetMinLogSeverity(LogSeverity severity) {
  min_severity.store(static_cast<int>(severity));
}

LogMessage::LogMessage(LogSeverity severity, const char* file, int line)
    : severity_(severity) {
  const char* base = std::strrchr(file, '/');
  stream_ << SeverityLetter(severity)
          << absl::FormatTime("%m%d %H:%M:%E6S", absl::Now(), absl::UTCTimeZone())
          << " " << (base ? base + 1 : file) << ":" << line << "] ";
  header_size_ = stream_.str().size();
}

LogMessage::~LogMessage() {
  if (static_cast<int>(severity_) >= min_severity.load() ||
      severity_ == LogSeverity::kFatal) {
    const std::string text = stream_.str();
    const std::string line = absl::StrCat(
        absl::string_view(text).substr(0, header_size_),
        OneLine(absl::string_view(text).substr(header_size_), kMaxLogMessageBytes), "\n");
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  }
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace cellar::common
