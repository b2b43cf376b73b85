#ifndef CELLAR_SERVICES_COMMON_SIGNALS_H_
#define CELLAR_SERVICES_COMMON_SIGNALS_H_

// Clean shutdown on SIGINT/SIGTERM for main() functions:
//   BlockTerminationSignals();   // first thing in main, before any thread
//   ... start servers ...
//   int sig = WaitForTerminationSignal();   // then shut down cleanly
//   ... Shutdown() ...;
//   ExitAfterShutdown(0);

namespace cellar::common {

// Blocks SIGINT and SIGTERM in this thread and every thread it creates.
void BlockTerminationSignals();

// Waits for SIGINT or SIGTERM; returns the signal number.
int WaitForTerminationSignal();

// Ends the process once its servers are shut down and its data closed:
// flushes stdout/stderr and exits with `code` without running the
// remaining destructors. The metrics endpoint's web server (civetweb)
// takes one to several seconds to stop (its threads poll), and a planned
// restart (Kubernetes' SIGTERM) should cost well under a second.
[[noreturn]] void ExitAfterShutdown(int code);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_SIGNALS_H_
