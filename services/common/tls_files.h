#ifndef CELLAR_SERVICES_COMMON_TLS_FILES_H_
#define CELLAR_SERVICES_COMMON_TLS_FILES_H_

// Throwaway certificates for tests and the local harness (tools/cluster
// up --tls), made by running the `openssl` command (it must be on PATH):
// P-256 keys, a self-signed CA, leaf certificates signed by it. For a real
// cluster, make and keep the CA by hand (docs/security.md shows the same
// commands).
//
// Files: <dir>/<name>.pem and <dir>/<name>.key (mode 0600). Thread-
// compatible (distinct names in one directory).

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellar::common {

// A certificate and its key, PEM files.
struct CertificateFiles {
  std::string cert_file;
  std::string key_file;
};

// A new CA whose subject is CN=<name>, valid 10 years. INTERNAL with
// openssl's output if it fails.
absl::StatusOr<CertificateFiles> MakeCertificateAuthority(const std::string& dir,
                                                          const std::string& name);

// A new leaf certificate CN=<name> signed by `ca`, valid 1 year, usable
// for TLS servers and clients, with subject alternative names `sans`
// (openssl syntax: "IP:127.0.0.1", "DNS:localhost",
// "URI:spiffe://cellar/node").
absl::StatusOr<CertificateFiles> IssueCertificate(const CertificateFiles& ca,
                                                  const std::string& dir,
                                                  const std::string& name,
                                                  const std::vector<std::string>& sans);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_TLS_FILES_H_
