#ifndef CELLAR_SERVICES_COMMON_SIGNALS_H_
#define CELLAR_SERVICES_COMMON_SIGNALS_H_

// Clean shutdown on SIGINT/SIGTERM for main() functions:
//   BlockTerminationSignals();   // first thing in main, before any thread
//   ... start servers ...
//   int sig = WaitForTerminationSignal();   // then shut down cleanly

namespace cellar::common {

// Blocks SIGINT and SIGTERM in this thread and every thread it creates.
void BlockTerminationSignals();

// Waits for SIGINT or SIGTERM; returns the signal number.
int WaitForTerminationSignal();

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_SIGNALS_H_
