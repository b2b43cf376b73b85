#ifndef CELLAR_SERVICES_COMMON_COLLECTOR_H_
#define CELLAR_SERVICES_COMMON_COLLECTOR_H_

// Builds Prometheus families at scrape time from a callback that reads
// domain state (no cost on hot paths). Register it on a MetricsEndpoint.
//
//   auto c = std::make_shared<CallbackCollector>([&](MetricsBuilder& m) {
//     m.Gauge("cellar_master_transactions_active", "Open transactions.", {}, n);
//   });
//
// Thread-safe if the callback is.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace cellar::common {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Accumulates samples; samples of one name form one family.
class MetricsBuilder {
 public:
  explicit MetricsBuilder(MetricLabels const_labels) : const_labels_(std::move(const_labels)) {}
  void Gauge(const std::string& name, const std::string& help, const MetricLabels& labels,
             double value);
  void Counter(const std::string& name, const std::string& help, const MetricLabels& labels,
               double value);
  std::vector<prometheus::MetricFamily> Take() { return std::move(families_); }

 private:
  void Add(const std::string& name, const std::string& help, prometheus::MetricType type,
           const MetricLabels& labels, double value);
  MetricLabels const_labels_;
  std::vector<prometheus::MetricFamily> families_;
};

class CallbackCollector final : public prometheus::Collectable {
 public:
  using Callback = std::function<void(MetricsBuilder&)>;
  // `const_labels` (e.g. version, track) go on every sample that has no
  // label of the same name itself.
  CallbackCollector(MetricLabels const_labels, Callback callback)
      : const_labels_(std::move(const_labels)), callback_(std::move(callback)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  MetricLabels const_labels_;
  Callback callback_;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_COLLECTOR_H_
