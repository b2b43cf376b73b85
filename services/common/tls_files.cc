#include "services/common/tls_files.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace cellar::common {
namespace {

// Runs openssl with `args`, its output in <dir>/openssl.log.
absl::Status RunOpenssl(const std::string& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = dir + "/openssl.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, "openssl", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    return absl::FailedPreconditionError("cannot run openssl (is it installed?)");
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::stringstream output;
  output << std::ifstream(log).rdbuf();
  args.erase(args.begin());
  return absl::InternalError(
      absl::StrCat("openssl ", absl::StrJoin(args, " "), " failed: ", output.str()));
}

std::vector<std::string> NewKey(const std::string& key_file) {
  return {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", key_file};
}

}  // namespace

absl::StatusOr<CertificateFiles> MakeCertificateAuthority(const std::string& dir,
                                                          const std::string& name) {
  CertificateFiles ca{absl::StrCat(dir, "/", name, ".pem"), absl::StrCat(dir, "/", name, ".key")};
  std::vector<std::string> args = {"req", "-x509"};
  for (std::string& a : NewKey(ca.key_file)) args.push_back(std::move(a));
  for (const char* a : {"-days", "3650", "-subj"}) args.push_back(a);
  args.push_back("/CN=" + name);
  args.push_back("-out");
  args.push_back(ca.cert_file);
  absl::Status s = RunOpenssl(dir, std::move(args));
  if (!s.ok()) return s;
  chmod(ca.key_file.c_str(), 0600);
  return ca;
}

absl::StatusOr<CertificateFiles> IssueCertificate(const CertificateFiles& ca,
                                                  const std::string& dir,
                                                  const std::string& name,
                                                  const std::vector<std::string>& sans) {
  CertificateFiles leaf{absl::StrCat(dir, "/", name, ".pem"),
                        absl::StrCat(dir, "/", name, ".key")};
  const std::string csr = absl::StrCat(dir, "/", name, ".csr");
  const std::string ext = absl::StrCat(dir, "/", name, ".ext");
  {
    std::ofstream out(ext, std::ios::trunc);
    out << "basicConstraints=critical,CA:FALSE\n"
        << "keyUsage=critical,digitalSignature,keyEncipherment\n"
        << "extendedKeyUsage=serverAuth,clientAuth\n";
    if (!sans.empty()) out << "subjectAltName=" << absl::StrJoin(sans, ",") << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", ext));
  }
  std::vector<std::string> args = {"req"};
  for (std::string& a : NewKey(leaf.key_file)) args.push_back(std::move(a));
  for (std::string a : {std::string("-subj"), "/CN=" + name, std::string("-out"), csr}) {
    args.push_back(std::move(a));
  }
  absl::Status s = RunOpenssl(dir, std::move(args));
  if (!s.ok()) return s;
  chmod(leaf.key_file.c_str(), 0600);
  s = RunOpenssl(dir, {"x509", "-req", "-in", csr, "-CA", ca.cert_file, "-CAkey", ca.key_file,
                       "-CAcreateserial", "-days", "365", "-extfile", ext, "-out",
                       leaf.cert_file});
  if (!s.ok()) return s;
  unlink(csr.c_str());
  unlink(ext.c_str());
  return leaf;
}

}  // namespace cellar::common
