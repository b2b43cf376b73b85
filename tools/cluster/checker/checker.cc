#include "tools/cluster/checker/checker.h"

#include <algorithm>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/common/ids.h"

namespace cellar::tools::checker {
namespace {

constexpr absl::string_view kBankPrefix = "balance ";
constexpr absl::string_view kListPrefix = "list ";

std::string Tid(uint64_t tid) { return common::TidHex(tid); }

// Accumulates violations by kind.
class Findings {
 public:
  explicit Findings(Verdict* verdict) : verdict_(verdict) {}
  void Add(const std::string& kind, uint64_t op_id, std::string message) {
    auto& list = by_kind_[kind];
    list.push_back(Violation{kind, op_id, std::move(message)});
  }
  void Finish() {
    for (const char* kind : {"lost", "invariant", "stale", "locked"}) {
      auto& list = by_kind_[kind];
      std::stable_sort(list.begin(), list.end(), [](const Violation& a, const Violation& b) {
        return a.op_id < b.op_id;
      });
      for (auto& v : list) verdict_->violations.push_back(std::move(v));
    }
  }

 private:
  Verdict* verdict_;
  std::map<std::string, std::vector<Violation>> by_kind_;
};

std::string Elements(const std::vector<uint64_t>& elements, size_t max = 8) {
  if (elements.size() <= max) return absl::StrCat("[", absl::StrJoin(elements, ","), "]");
  std::vector<uint64_t> tail(elements.end() - max, elements.end());
  return absl::StrCat("[", elements.size(), " elements, ...", absl::StrJoin(tail, ","), "]");
}

// A read of one list revision.
struct ListRead {
  uint64_t serial = 0;
  uint64_t op_id = 0;  // 0: the final read
  std::vector<uint64_t> elements;
};

// Per-client memory for the stale-read check.
struct ClientMemory {
  uint64_t max_seen = 0;
  uint64_t max_seen_op = 0;
  absl::flat_hash_map<uint64_t, std::pair<uint64_t, uint64_t>> known;  // oid -> (serial, op)
};

void CheckStale(const std::vector<const Operation*>& ops, Findings& f, size_t* stale) {
  std::map<int, ClientMemory> clients;
  for (const Operation* op : ops) {
    ClientMemory& m = clients[op->client];
    bool is_stale = false;
    std::string why;
    if (!op->reads.empty() && op->snapshot < m.max_seen) {
      is_stale = true;
      why = absl::StrCat("read at snapshot ", Tid(op->snapshot), " after client ", op->client,
                         " had seen tid ", Tid(m.max_seen), " (op ", m.max_seen_op, ")");
    }
    for (const ReadValue& r : op->reads) {
      auto it = m.known.find(r.oid);
      if (!is_stale && it != m.known.end() && r.serial < it->second.first) {
        is_stale = true;
        why = absl::StrCat("read oid ", common::FormatOid(r.oid), " at revision ", Tid(r.serial),
                           ", older than revision ", Tid(it->second.first),
                           " the same client saw in op ", it->second.second);
      }
    }
    if (is_stale) {
      ++*stale;
      f.Add("stale", op->id, absl::StrCat(DescribeOp(*op), ": ", why));
    }
    for (const ReadValue& r : op->reads) {
      auto& k = m.known[r.oid];
      if (r.serial > k.first) k = {r.serial, op->id};
    }
    if (!op->reads.empty() && op->snapshot > m.max_seen) {
      m.max_seen = op->snapshot;
      m.max_seen_op = op->id;
    }
    // A commit acknowledged late ("committed as tid T but its invalidation
    // did not reach this client") said itself that the client's snapshot
    // may lag: it doesn't raise what the client has seen.
    if (op->outcome == Outcome::kOk && op->tid != 0 && op->error.empty()) {
      for (const WriteValue& w : op->writes) {
        auto& k = m.known[w.oid];
        if (op->tid > k.first) k = {op->tid, op->id};
      }
      if (op->tid > m.max_seen) {
        m.max_seen = op->tid;
        m.max_seen_op = op->id;
      }
    }
  }
}

}  // namespace

std::string BankValue(int64_t balance, uint64_t tag) {
  return absl::StrCat(kBankPrefix, balance, " tag ", tag);
}

std::optional<int64_t> ParseBankValue(absl::string_view data) {
  if (!absl::ConsumePrefix(&data, kBankPrefix)) return std::nullopt;
  data = data.substr(0, data.find(' '));
  int64_t balance = 0;
  if (!absl::SimpleAtoi(data, &balance)) return std::nullopt;
  return balance;
}

std::string ListValue(const std::vector<uint64_t>& elements, uint64_t tag) {
  return absl::StrCat(kListPrefix, absl::StrJoin(elements, ","), " tag ", tag);
}

std::optional<std::vector<uint64_t>> ParseListValue(absl::string_view data) {
  if (!absl::ConsumePrefix(&data, kListPrefix)) return std::nullopt;
  data = data.substr(0, data.find(' '));
  std::vector<uint64_t> out;
  for (absl::string_view part : absl::StrSplit(data, ',', absl::SkipEmpty())) {
    uint64_t e = 0;
    if (!absl::SimpleAtoi(part, &e)) return std::nullopt;
    out.push_back(e);
  }
  return out;
}

std::string ElementValue(uint64_t element) { return absl::StrCat("element ", element); }

std::string DescribeOp(const Operation& op) {
  std::string out = absl::StrCat("op ", op.id, " (client ", op.client, ", ", OpTypeName(op.type),
                                 ", ", OutcomeName(op.outcome));
  if (op.tid != 0) absl::StrAppend(&out, ", tid ", Tid(op.tid));
  if (op.snapshot != 0) absl::StrAppend(&out, ", snapshot ", Tid(op.snapshot));
  if (op.list >= 0) absl::StrAppend(&out, ", list ", op.list);
  if (op.element != 0) absl::StrAppend(&out, ", element ", op.element);
  return out + ")";
}

std::string Verdict::FirstViolation() const {
  const Violation* first = nullptr;
  for (const Violation& v : violations) {
    const uint64_t key = v.op_id == 0 ? UINT64_MAX : v.op_id;
    if (first == nullptr || key < (first->op_id == 0 ? UINT64_MAX : first->op_id)) first = &v;
  }
  return first == nullptr ? "" : absl::StrCat(first->kind, ": ", first->message);
}

Verdict Check(const CheckInput& input) {
  Verdict verdict;
  Findings f(&verdict);
  std::vector<const Operation*> ops;
  for (const Operation& op : input.operations) ops.push_back(&op);
  std::sort(ops.begin(), ops.end(),
            [](const Operation* a, const Operation* b) { return a->id < b->id; });
  const FinalState& fin = input.final_state;
  if (!fin.read) {
    ++verdict.invariant;
    f.Add("invariant", 0, absl::StrCat("no final state: ", fin.read_error));
  }

  // Reads newer than their snapshot.
  for (const Operation* op : ops) {
    for (const ReadValue& r : op->reads) {
      if (r.serial > op->snapshot) {
        ++verdict.invariant;
        f.Add("invariant", op->id,
              absl::StrCat(DescribeOp(*op), ": oid ", common::FormatOid(r.oid), " revision ",
                           Tid(r.serial), " is newer than the snapshot"));
        break;
      }
    }
  }

  // Lost: every write of every acknowledged commit is still there.
  absl::flat_hash_set<uint64_t> lost_ops;
  for (const Operation* op : ops) {
    if (op->outcome != Outcome::kOk || op->writes.empty() || !fin.read) continue;
    for (const WriteValue& w : op->writes) {
      const auto key = std::make_pair(w.oid, op->tid);
      if (fin.revision_errors.count(key)) continue;
      auto it = fin.revisions.find(key);
      std::string why;
      if (it == fin.revisions.end()) {
        why = "is gone";
      } else if (it->second != w.data) {
        why = absl::StrCat("holds \"", it->second.substr(0, 60), "\" instead of \"",
                           w.data.substr(0, 60), "\"");
      } else {
        continue;
      }
      if (lost_ops.insert(op->id).second) {
        ++verdict.lost;
        f.Add("lost", op->id,
              absl::StrCat(DescribeOp(*op), ": its revision of oid ", common::FormatOid(w.oid),
                           " ", why));
      }
    }
  }

  if (input.kind == WorkloadKind::kBank) {
    auto check_sum = [&](const std::vector<ReadValue>& reads, uint64_t op_id,
                         const std::string& what) {
      int64_t sum = 0;
      std::vector<std::string> parts;
      for (const ReadValue& r : reads) {
        std::optional<int64_t> b = ParseBankValue(r.data);
        if (!b) {
          ++verdict.invariant;
          f.Add("invariant", op_id, absl::StrCat(what, ": unparsable account value \"",
                                                 r.data.substr(0, 60), "\""));
          return;
        }
        sum += *b;
        parts.push_back(absl::StrCat(*b));
      }
      if (reads.size() != input.accounts.size() || sum != input.total) {
        ++verdict.invariant;
        f.Add("invariant", op_id,
              absl::StrCat(what, ": ", reads.size(), " accounts sum to ", sum, " instead of ",
                           input.total, " (balances ", absl::StrJoin(parts, ","), ")"));
      }
    };
    for (const Operation* op : ops) {
      if (op->type == OpType::kBankRead && op->outcome == Outcome::kOk) {
        check_sum(op->reads, op->id, DescribeOp(*op));
      }
    }
    if (fin.read) {
      check_sum(fin.objects, 0, absl::StrCat("final read at ", Tid(fin.snapshot)));
    }
  } else {
    absl::flat_hash_map<uint64_t, int> list_index;
    for (size_t i = 0; i < input.lists.size(); ++i) list_index[input.lists[i]] = i;
    std::vector<std::vector<ListRead>> reads(input.lists.size());
    auto add_read = [&](const ReadValue& r, uint64_t op_id, const std::string& what) {
      auto it = list_index.find(r.oid);
      if (it == list_index.end()) return;
      std::optional<std::vector<uint64_t>> elements = ParseListValue(r.data);
      if (!elements) {
        ++verdict.invariant;
        f.Add("invariant", op_id,
              absl::StrCat(what, ": unparsable list value \"", r.data.substr(0, 60), "\""));
        return;
      }
      reads[it->second].push_back(ListRead{r.serial, op_id, std::move(*elements)});
    };
    absl::flat_hash_map<uint64_t, const Operation*> describe;
    for (const Operation* op : ops) {
      describe[op->id] = op;
      for (const ReadValue& r : op->reads) add_read(r, op->id, DescribeOp(*op));
    }
    std::vector<std::vector<uint64_t>> final_lists(input.lists.size());
    std::vector<bool> have_final(input.lists.size(), false);
    if (fin.read) {
      for (const ReadValue& r : fin.objects) {
        add_read(r, 0, absl::StrCat("final read at ", Tid(fin.snapshot)));
        auto it = list_index.find(r.oid);
        if (it != list_index.end() && !reads[it->second].empty() &&
            reads[it->second].back().op_id == 0) {
          final_lists[it->second] = reads[it->second].back().elements;
          have_final[it->second] = true;
        }
      }
    }
    auto what = [&](uint64_t op_id) {
      return op_id == 0 ? std::string("the final read") : DescribeOp(*describe[op_id]);
    };
    // Acknowledged adds per list, by tid.
    std::vector<std::vector<const Operation*>> acked(input.lists.size());
    for (const Operation* op : ops) {
      if (op->type == OpType::kAdd && op->outcome == Outcome::kOk && op->list >= 0 &&
          op->list < static_cast<int>(input.lists.size())) {
        acked[op->list].push_back(op);
      }
    }
    for (size_t l = 0; l < input.lists.size(); ++l) {
      std::sort(acked[l].begin(), acked[l].end(),
                [](const Operation* a, const Operation* b) { return a->tid < b->tid; });
      auto& rs = reads[l];
      std::stable_sort(rs.begin(), rs.end(),
                       [](const ListRead& a, const ListRead& b) { return a.serial < b.serial; });
      for (size_t i = 0; i < rs.size(); ++i) {
        const ListRead& r = rs[i];
        absl::flat_hash_set<uint64_t> present(r.elements.begin(), r.elements.end());
        if (present.size() != r.elements.size()) {
          ++verdict.invariant;
          f.Add("invariant", r.op_id,
                absl::StrCat(what(r.op_id), ": list ", l, " revision ", Tid(r.serial),
                             " holds a duplicate element: ", Elements(r.elements)));
        }
        for (const Operation* add : acked[l]) {
          if (add->tid > r.serial) break;
          if (!present.count(add->element)) {
            ++verdict.invariant;
            f.Add("invariant", r.op_id,
                  absl::StrCat(what(r.op_id), ": list ", l, " revision ", Tid(r.serial),
                               " misses element ", add->element, " acknowledged at ",
                               Tid(add->tid), " by op ", add->id));
            break;
          }
        }
        if (i == 0) continue;
        const ListRead& prev = rs[i - 1];
        const bool same = prev.serial == r.serial;
        const bool ok = same ? prev.elements == r.elements
                             : prev.elements.size() <= r.elements.size() &&
                                   std::equal(prev.elements.begin(), prev.elements.end(),
                                              r.elements.begin());
        if (!ok) {
          ++verdict.invariant;
          f.Add("invariant", r.op_id != 0 ? r.op_id : prev.op_id,
                absl::StrCat("list ", l, ": ", what(prev.op_id), " read revision ",
                             Tid(prev.serial), " = ", Elements(prev.elements), ", ",
                             same ? "which differs from the same revision read by "
                                  : "which is not a prefix of the later revision read by ",
                             what(r.op_id), " at ", Tid(r.serial), " = ",
                             Elements(r.elements)));
        }
      }
    }
    // Elements are oids from Client::NewOid: one given to two adds means an
    // OID handed out twice (semantics rule 7).
    absl::flat_hash_map<uint64_t, const Operation*> first_add;
    absl::flat_hash_set<uint64_t> reused;
    for (const Operation* op : ops) {
      if (op->type != OpType::kAdd || op->element == 0) continue;
      auto [it, inserted] = first_add.emplace(op->element, op);
      if (!inserted) {
        reused.insert(op->element);
        ++verdict.invariant;
        f.Add("invariant", op->id,
              absl::StrCat(DescribeOp(*op), ": element (oid) ", op->element,
                           " was already given to ", DescribeOp(*it->second),
                           ": an OID handed out twice"));
      }
    }
    // The final lists: every acknowledged element present, no failed one.
    for (const Operation* op : ops) {
      if (op->type != OpType::kAdd || op->list < 0 ||
          op->list >= static_cast<int>(input.lists.size()) || !have_final[op->list]) {
        continue;
      }
      const auto& final_list = final_lists[op->list];
      const bool present =
          std::find(final_list.begin(), final_list.end(), op->element) != final_list.end();
      if (op->outcome == Outcome::kOk && !present && lost_ops.insert(op->id).second) {
        ++verdict.lost;
        f.Add("lost", op->id,
              absl::StrCat(DescribeOp(*op), ": element ", op->element,
                           " is not in the final list ", op->list));
      } else if (op->outcome == Outcome::kFailed && present && !reused.count(op->element)) {
        ++verdict.invariant;
        f.Add("invariant", op->id,
              absl::StrCat(DescribeOp(*op), ": element ", op->element,
                           " of a commit that failed (", op->error, ") is in the final list ",
                           op->list));
      }
    }
  }

  CheckStale(ops, f, &verdict.stale);

  for (const auto& [oid, why] : fin.locked) {
    ++verdict.locked;
    f.Add("locked", 0,
          absl::StrCat("oid ", common::FormatOid(oid), " could not be stored: ", why));
  }
  f.Finish();
  return verdict;
}

}  // namespace cellar::tools::checker
