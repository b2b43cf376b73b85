#include "services/common/build_info.h"

#include <prometheus/gauge.h>

namespace cellar::common {

void RegisterBuildInfo(prometheus::Registry& registry, const std::string& version,
                       const std::string& track, const std::string& build_id,
                       const std::string& role) {
  prometheus::BuildGauge()
      .Name(kBuildInfoName)
      .Help(kBuildInfoHelp)
      .Register(registry)
      .Add({{"version", version}, {"track", track}, {"build_id", build_id}, {"role", role}})
      .Set(1);
}

void AddBuildInfo(MetricsBuilder& m, const std::string& build_id, const std::string& role) {
  m.Gauge(kBuildInfoName, kBuildInfoHelp, {{"build_id", build_id}, {"role", role}}, 1);
}

}  // namespace cellar::common
