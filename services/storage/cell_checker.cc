#include "services/storage/cell_checker.h"

#include <openssl/evp.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cellar::storage {
namespace {

// Incremental SHA-1 (OpenSSL EVP).
class Sha1 {
 public:
  Sha1() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    EVP_DigestInit_ex(ctx_.get(), EVP_sha1(), nullptr);
  }
  void Add(const std::string& bytes) {
    EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size());
  }
  void Add(uint64_t value) {
    unsigned char be[8];
    for (int i = 0; i < 8; ++i) be[i] = static_cast<unsigned char>(value >> (56 - 8 * i));
    EVP_DigestUpdate(ctx_.get(), be, sizeof(be));
  }
  std::string Finish() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &size);
    return std::string(reinterpret_cast<const char*>(digest), size);
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

}  // namespace

CellChecker::CellChecker(StorageBackend* backend, uint32_t object_page)
    : backend_(backend), object_page_(object_page == 0 ? 1000 : object_page) {}

absl::StatusOr<CellCheckResult> CellChecker::Check(const CellCheckRequest& request) const {
  if (request.min_tid > request.max_tid) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_tid: ", request.min_tid, " is above max_tid ", request.max_tid));
  }
  if (request.max_transactions > kMaxCheckTransactions) {
    return absl::InvalidArgumentError(absl::StrCat("max_transactions: ",
                                                   request.max_transactions, " is above ",
                                                   kMaxCheckTransactions));
  }
  const uint32_t cap =
      request.max_transactions == 0 ? kDefaultCheckTransactions : request.max_transactions;

  // Transaction records: at most `cap`, which bounds the range.
  absl::StatusOr<std::vector<TransactionRecord>> transactions =
      backend_->ListTransactions(request.partition, request.min_tid, request.max_tid, cap);
  if (!transactions.ok()) return transactions.status();
  uint64_t last_tid = request.max_tid;
  if (transactions->size() >= cap) last_tid = transactions->back().tid;

  // Object revisions, page by page, stopping before the (cap + 1)-th
  // distinct tid.
  CellCheckResult result;
  Sha1 oid_hash, data_hash;
  uint64_t distinct_tids = 0;
  uint64_t previous_tid = 0;
  bool any = false;
  uint64_t from_tid = request.min_tid, from_oid = 0;
  bool more = true;
  while (more) {
    absl::StatusOr<std::vector<ObjectRecord>> page = backend_->ListObjectsFrom(
        request.partition, from_tid, from_oid, last_tid, object_page_);
    if (!page.ok()) return page.status();
    more = page->size() >= object_page_;
    for (const ObjectRecord& o : *page) {
      if (!any || o.tid != previous_tid) {
        if (distinct_tids == cap) {  // cut the range before this tid
          last_tid = previous_tid;
          more = false;
          break;
        }
        ++distinct_tids;
        previous_tid = o.tid;
        any = true;
      }
      ++result.object_count;
      oid_hash.Add(o.tid);
      oid_hash.Add(o.oid);
      if (request.with_data) {
        data_hash.Add(o.tid);
        data_hash.Add(o.oid);
        data_hash.Add(o.data_tid);
        data_hash.Add(o.checksum);
        data_hash.Add(static_cast<uint64_t>(o.data.size()));
        data_hash.Add(o.data);
      }
    }
    if (more && !page->empty()) {
      from_tid = page->back().tid;
      from_oid = page->back().oid + 1;
      if (from_oid == 0) {  // oid wrapped: the next tid
        if (from_tid == last_tid) break;
        ++from_tid;
      }
    }
  }

  Sha1 tid_hash;
  for (const TransactionRecord& t : *transactions) {
    if (t.tid > last_tid) break;
    ++result.transaction_count;
    tid_hash.Add(t.tid);
  }
  result.tid_hash = tid_hash.Finish();
  result.oid_hash = oid_hash.Finish();
  if (request.with_data) result.data_hash = data_hash.Finish();
  result.last_tid = last_tid;
  return result;
}

}  // namespace cellar::storage
