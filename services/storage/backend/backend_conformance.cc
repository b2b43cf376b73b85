#include "services/storage/backend/backend_conformance.h"

#include <memory>
#include <string>
#include <utility>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/status_matchers.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;

}  // namespace

std::string BackendConformanceParamName(
    const ::testing::TestParamInfo<BackendConformanceParam>& info) {
  return info.param.name;
}

void BackendConformanceTest::SetUp() {
  auto store = GetParam().make_store();
  ASSERT_THAT(store, IsOk());
  store_ = *std::move(store);
  auto backend = store_->Open();
  ASSERT_THAT(backend, IsOk());
  backend_ = *std::move(backend);
}

void BackendConformanceTest::TearDown() {
  backend_.reset();
  store_.reset();
}

void BackendConformanceTest::Reopen() {
  backend_.reset();
  auto backend = store_->Open();
  ASSERT_THAT(backend, IsOk());
  backend_ = *std::move(backend);
}

}  // namespace cellar::storage
