#include "services/common/tls_config.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace cellar::common {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::unique_ptr<BIO, BioFree> MemBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of `path` (there may be more: a chain or bundle).
absl::StatusOr<std::unique_ptr<X509, X509Free>> ReadCertificate(const std::string& path,
                                                                absl::string_view name) {
  absl::StatusOr<std::string> pem = ReadPem(path, name);
  if (!pem.ok()) return pem.status();
  auto bio = MemBio(*pem);
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": '", path, "' holds no PEM certificate"));
  }
  return cert;
}

absl::Status CheckKeyPair(const std::string& cert_file, const std::string& key_file,
                          const TlsFileNames& names) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        cert_file.empty() ? absl::StrCat(names.cert, ": required with ", names.key)
                          : absl::StrCat(names.key, ": required with ", names.cert));
  }
  if (cert_file.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<X509, X509Free>> cert = ReadCertificate(cert_file, names.cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> pem = ReadPem(key_file, names.key);
  if (!pem.ok()) return pem.status();
  auto bio = MemBio(*pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        names.key, ": '", key_file, "' holds no PEM private key (or it is encrypted)"));
  }
  const bool match = X509_check_private_key(cert->get(), key.get()) == 1;
  ERR_clear_error();
  if (!match) {
    return absl::InvalidArgumentError(absl::StrCat(names.key, ": '", key_file,
                                                   "' is not the key of the certificate in ",
                                                   names.cert, " '", cert_file, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckInterval(absl::Duration interval) {
  if (interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("tls reload interval: at least 1 s");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTlsServerConfig(const TlsServerConfig& config, const TlsFileNames& names) {
  if (config.cert_file.empty() && config.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(names.cert, " and ", names.key, ": required for TLS"));
  }
  absl::Status s = CheckKeyPair(config.cert_file, config.key_file, names);
  if (!s.ok()) return s;
  if (!config.client_ca_file.empty()) {
    s = ReadCertificate(config.client_ca_file, names.client_ca).status();
    if (!s.ok()) return s;
  } else if (config.require_client_cert) {
    return absl::InvalidArgumentError(
        absl::StrCat(names.client_ca, ": required to require client certificates"));
  }
  return CheckInterval(config.reload_interval);
}

absl::Status CheckTlsClientConfig(const TlsClientConfig& config, const TlsFileNames& names) {
  if (config.ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        names.ca, ": required for TLS (the CA that signed the servers' certificates)"));
  }
  absl::Status s = ReadCertificate(config.ca_file, names.ca).status();
  if (!s.ok()) return s;
  s = CheckKeyPair(config.cert_file, config.key_file, names);
  if (!s.ok()) return s;
  return CheckInterval(config.reload_interval);
}

}  // namespace cellar::common
