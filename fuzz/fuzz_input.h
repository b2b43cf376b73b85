#ifndef CELLAR_FUZZ_FUZZ_INPUT_H_
#define CELLAR_FUZZ_FUZZ_INPUT_H_

// The fuzz targets' input format: a sequence of records, each
//   1 byte   selector (which rpc or record kind; taken modulo the count)
//   2 bytes  length n, little endian
//   n bytes  payload (a serialized protobuf message, or raw record bytes)
// A truncated last record takes whatever bytes remain. Records past
// kMaxRecords are ignored, so an input costs a bounded number of calls.
// Seeds are written by //fuzz:make_seeds with the same format (AppendRecord).
//
// Thread-compatible (a plain reader over the caller's bytes).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace cellar::fuzz {

inline constexpr int kMaxRecords = 16;

// The ttid key the storage fuzzer's fake master hands out (seeds carry
// tokens made with it: common::TtidToken).
inline constexpr char kFuzzTtidKey[] = "cellar-fuzz-ttid-key";

struct Record {
  uint8_t selector = 0;
  absl::string_view payload;
};

class RecordReader {
 public:
  RecordReader(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  // The next record, false at the end of the input or after kMaxRecords.
  bool Next(Record* record) {
    if (pos_ >= size_ || count_ >= kMaxRecords) return false;
    ++count_;
    record->selector = static_cast<uint8_t>(data_[pos_++]);
    size_t n = 0;
    if (size_ - pos_ >= 2) {
      n = static_cast<uint8_t>(data_[pos_]) |
          (static_cast<size_t>(static_cast<uint8_t>(data_[pos_ + 1])) << 8);
      pos_ += 2;
    } else {
      n = size_ - pos_;
    }
    if (n > size_ - pos_) n = size_ - pos_;
    record->payload = absl::string_view(data_ + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  int count_ = 0;
};

// Appends one record (payloads longer than 65535 bytes are cut).
inline void AppendRecord(uint8_t selector, absl::string_view payload, std::string* out) {
  if (payload.size() > 0xffff) payload = payload.substr(0, 0xffff);
  out->push_back(static_cast<char>(selector));
  out->push_back(static_cast<char>(payload.size() & 0xff));
  out->push_back(static_cast<char>(payload.size() >> 8));
  out->append(payload.data(), payload.size());
}

}  // namespace cellar::fuzz

#endif  // CELLAR_FUZZ_FUZZ_INPUT_H_
