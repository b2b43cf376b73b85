#include "services/common/collector.h"

namespace cellar::common {

void MetricsBuilder::Add(const std::string& name, const std::string& help,
                         prometheus::MetricType type, const MetricLabels& labels,
                         double value) {
  prometheus::MetricFamily* family = nullptr;
  for (auto& f : families_) {
    if (f.name == name) family = &f;
  }
  if (family == nullptr) {
    families_.push_back(prometheus::MetricFamily{name, help, type, {}});
    family = &families_.back();
  }
  prometheus::ClientMetric metric;
  for (const auto& [k, v] : const_labels_) {
    // A sample's own label of the same name wins (e.g. the version of the
    // nodes a master counts, not the master's).
    bool own = false;
    for (const auto& label : labels) own = own || label.first == k;
    if (!own) metric.label.push_back({k, v});
  }
  for (const auto& [k, v] : labels) metric.label.push_back({k, v});
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family->metric.push_back(std::move(metric));
}

void MetricsBuilder::Gauge(const std::string& name, const std::string& help,
                           const MetricLabels& labels, double value) {
  Add(name, help, prometheus::MetricType::Gauge, labels, value);
}

void MetricsBuilder::Counter(const std::string& name, const std::string& help,
                             const MetricLabels& labels, double value) {
  Add(name, help, prometheus::MetricType::Counter, labels, value);
}

std::vector<prometheus::MetricFamily> CallbackCollector::Collect() const {
  MetricsBuilder builder(const_labels_);
  callback_(builder);
  return builder.Take();
}

}  // namespace cellar::common
