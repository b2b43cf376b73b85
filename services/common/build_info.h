#ifndef CELLAR_SERVICES_COMMON_BUILD_INFO_H_
#define CELLAR_SERVICES_COMMON_BUILD_INFO_H_

// cellar_build_info{version,track,build_id,role} = 1: which build runs
// where, on every process (master, storage, admin). Join it on `instance`
// to label any series with the build (`* on(instance) group_left(build_id)
// cellar_build_info`).
//
// Two ways in, for the two ways processes build their metrics:
//  - RegisterBuildInfo: a gauge on a prometheus::Registry (the storage);
//  - AddBuildInfo: a sample of a CallbackCollector's MetricsBuilder (master
//    and admin), whose const labels carry version and track.
//
// Thread-safe (no state).

#include <string>

#include <prometheus/registry.h>

#include "services/common/collector.h"

namespace cellar::common {

inline constexpr char kBuildInfoName[] = "cellar_build_info";
inline constexpr char kBuildInfoHelp[] =
    "Always 1; the labels say which build runs here (version, track, build_id, role).";
// The build id of processes that are not told one (a local build).
inline constexpr char kDefaultBuildId[] = "dev";

// Registers the gauge, value 1, on `registry`.
void RegisterBuildInfo(prometheus::Registry& registry, const std::string& version,
                       const std::string& track, const std::string& build_id,
                       const std::string& role);

// Adds the sample to `m` (version and track come from its const labels).
void AddBuildInfo(MetricsBuilder& m, const std::string& build_id, const std::string& role);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_BUILD_INFO_H_
