#include "ledger/rocksdb/rocksdb_key_spaces.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "ledger/rocksdb/rocksdb_status.h"

namespace corridor::ledger {

RocksDbKeySpaces::RocksDbKeySpaces(std::map<std::string, rocksdb::ColumnFamilyHandle*> families,
                                   std::set<std::string> reserved)
    : families_(families.begin(), families.end()), reserved_(reserved.begin(), reserved.end()) {}

absl::Status RocksDbKeySpaces::Check(const Mutation& m) const {
  for (const Mutation::Op& op : m.ops()) {
    if (reserved_.count(op.space) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the change writes key space \"", op.space, "\", one of the ledger's own"));
    }
    auto it = families_.find(op.space);
    if (it == families_.end() || it->second == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("the change writes key space \"", op.space,
                                                     "\", which this ledger was not given"));
    }
  }
  return absl::OkStatus();
}

absl::Status RocksDbKeySpaces::AddTo(const Mutation& m, rocksdb::WriteBatch* batch) const {
  if (absl::Status st = Check(m); !st.ok()) return st;
  for (const Mutation::Op& op : m.ops()) {
    rocksdb::ColumnFamilyHandle* cf = families_.find(op.space)->second;
    rocksdb::Status s;
    switch (op.kind) {
      case Mutation::Op::Kind::kPut:
        s = batch->Put(cf, op.key, op.value);
        break;
      case Mutation::Op::Kind::kDelete:
        s = batch->Delete(cf, op.key);
        break;
      case Mutation::Op::Kind::kDeleteRange:
        s = batch->DeleteRange(cf, op.key, op.value);
        break;
    }
    if (!s.ok()) return FromRocksStatus(s, "preparing a change");
  }
  return absl::OkStatus();
}

absl::Status WriteMutation(rocksdb::DB* db,
                           const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
                           const Mutation& m, bool sync) {
  if (m.empty()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  if (absl::Status st = RocksDbKeySpaces(families).AddTo(m, &batch); !st.ok()) return st;
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocksStatus(db->Write(wo, &batch), "writing to the database");
}

}  // namespace corridor::ledger
