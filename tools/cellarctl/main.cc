// cellarctl: parses the command line and runs one command (commands.h).

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/cellarctl/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<cellar::cellarctl::CommandLine> command_line =
      cellar::cellarctl::ParseCommandLine(args);
  if (!command_line.ok()) {
    std::cerr << "error: " << command_line.status().message()
              << "\n(cellarctl help prints the usage)\n";
    return cellar::cellarctl::kExitUsage;
  }
  cellar::cellarctl::FillFromEnvironment(command_line->global);
  return cellar::cellarctl::Run(
      *command_line, cellar::cellarctl::Io{std::cin, std::cout, std::cerr});
}
