#ifndef CELLAR_SERVICES_COMMON_HTTP_GET_H_
#define CELLAR_SERVICES_COMMON_HTTP_GET_H_

// Tests: one HTTP GET with libcurl, as Prometheus scrapes a metrics port.

#include <string>

namespace cellar::common {

struct HttpAnswer {
  long status = 0;  // HTTP status; 0: no answer (error says why)
  std::string body;
  std::string error;
};

// GET `url` (10 s timeout); a non-empty `password`: basic auth as user
// "prometheus".
HttpAnswer HttpGet(const std::string& url, const std::string& password = "");

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_HTTP_GET_H_
