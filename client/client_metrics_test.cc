#include "client/client_metrics.h"

#include <atomic>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

namespace cellar::client {
namespace {

using ::testing::HasSubstr;

std::string Scrape(const prometheus::Collectable& c) {
  return prometheus::TextSerializer().Serialize(c.Collect());
}

TEST(ClientMetricsTest, ExportsTheStatsReadAtScrapeTime) {
  ClientStats stats;
  stats.cache_hits = 7;
  stats.cache_misses = 3;
  stats.commits = 12;
  stats.conflicts = 2;
  stats.reconnects = 1;
  auto metrics = MakeClientMetrics([&] { return stats; }, {{"app", "shop"}});
  std::string text = Scrape(*metrics);
  EXPECT_THAT(text, HasSubstr("# TYPE cellar_client_cache_hits_total counter"));
  EXPECT_THAT(text, HasSubstr("cellar_client_cache_hits_total{app=\"shop\"} 7"));
  EXPECT_THAT(text, HasSubstr("cellar_client_cache_misses_total{app=\"shop\"} 3"));
  EXPECT_THAT(text, HasSubstr("cellar_client_commits_total{app=\"shop\"} 12"));
  EXPECT_THAT(text, HasSubstr("cellar_client_conflicts_total{app=\"shop\"} 2"));
  EXPECT_THAT(text, HasSubstr("cellar_client_commit_failures_total{app=\"shop\"} 0"));
  EXPECT_THAT(text, HasSubstr("cellar_client_reconnects_total{app=\"shop\"} 1"));

  // Read again at the next scrape.
  stats.cache_hits = 100;
  text = Scrape(*metrics);
  EXPECT_THAT(text, HasSubstr("cellar_client_cache_hits_total{app=\"shop\"} 100"));
}

}  // namespace
}  // namespace cellar::client
