#include "fuzz/fuzz_support.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "services/common/logging.h"

namespace cellar::fuzz {

void QuietLogs() {
  common::SetMinLogSeverity(common::LogSeverity::kFatal);
  google::protobuf::SetLogHandler(nullptr);
}

void TraceCall(absl::string_view rpc, const grpc::Status& status) {
  static const bool trace = std::getenv("CELLAR_FUZZ_TRACE") != nullptr;
  if (!trace) return;
  std::fprintf(stderr, "%.*s: %d %s\n", static_cast<int>(rpc.size()), rpc.data(),
               static_cast<int>(status.error_code()), status.error_message().c_str());
}

}  // namespace cellar::fuzz

// Every target's initialisation (libFuzzer and replay_main call it once):
// quiet logs. In the library (alwayslink) so that no target repeats it.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cellar::fuzz::QuietLogs();
  return 0;
}
