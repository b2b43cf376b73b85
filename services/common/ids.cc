#include "services/common/ids.h"

#include <cctype>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cellar::common {
namespace {

constexpr double kLowScale = 4294967296.0 / 60.0;  // 2^32 / 60

}  // namespace

Tid TidFromTime(absl::Time t) {
  const absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
  if (cs.year() < 1900) return 0;
  const uint64_t minutes =
      ((((static_cast<uint64_t>(cs.year() - 1900) * 12 + (cs.month() - 1)) * 31 +
         (cs.day() - 1)) *
            24 +
        cs.hour()) *
           60 +
       cs.minute());
  const absl::Time minute_start =
      absl::FromCivil(absl::CivilMinute(cs), absl::UTCTimeZone());
  const double seconds = absl::ToDoubleSeconds(t - minute_start);
  uint64_t low = static_cast<uint64_t>(seconds * kLowScale);
  if (low > 0xffffffffu) low = 0xffffffffu;
  return (minutes << 32) | low;
}

absl::Time TimeFromTid(Tid tid) {
  uint64_t minutes = tid >> 32;
  const uint64_t low = tid & 0xffffffffu;
  const int minute = static_cast<int>(minutes % 60);
  minutes /= 60;
  const int hour = static_cast<int>(minutes % 24);
  minutes /= 24;
  const int day = static_cast<int>(minutes % 31) + 1;
  minutes /= 31;
  const int month = static_cast<int>(minutes % 12) + 1;
  minutes /= 12;
  const int64_t year = static_cast<int64_t>(minutes) + 1900;
  const absl::Time start = absl::FromCivil(
      absl::CivilMinute(year, month, day, hour, minute), absl::UTCTimeZone());
  return start + absl::Nanoseconds(std::llround(low / kLowScale * 1e9));
}

std::string TidHex(Tid tid) { return absl::StrFormat("0x%016x", tid); }

std::string TidTime(Tid tid) {
  // Round to the microsecond printed: the TID's low bits truncate (~14 ns).
  const absl::Time t = TimeFromTid(tid);
  const absl::Time rounded =
      absl::FromUnixMicros(static_cast<int64_t>(
          std::llround(absl::ToDoubleMicroseconds(t - absl::UnixEpoch()))));
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", rounded, absl::UTCTimeZone());
}

std::string FormatTid(Tid tid) {
  return absl::StrCat(TidHex(tid), " (", TidTime(tid), ")");
}

std::string FormatOid(Oid oid) { return absl::StrFormat("0x%x", oid); }

bool ParseUint64(absl::string_view text, uint64_t* out) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return false;
  if (absl::StartsWith(text, "0x") || absl::StartsWith(text, "0X")) {
    text.remove_prefix(2);
    if (text.empty() || text.size() > 16) return false;
    uint64_t v = 0;
    for (char c : text) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
      v = (v << 4) | static_cast<uint64_t>(
                         std::isdigit(static_cast<unsigned char>(c))
                             ? c - '0'
                             : (std::tolower(static_cast<unsigned char>(c)) - 'a' + 10));
    }
    *out = v;
    return true;
  }
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(text, out);
}

std::string NodeName(char role_letter, uint32_t node_id) {
  return absl::StrCat(std::string(1, role_letter), NodeIndex(node_id));
}

std::string NodeName(uint32_t node_id) {
  static const char kLetters[] = {'S', 'M', 'A', 'C'};
  const uint32_t kind = node_id >> 24;
  return NodeName(kind < 4 ? kLetters[kind] : '?', node_id);
}

}  // namespace cellar::common
