#include "server/store.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ledger/rocksdb_ledger.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace corridor {

absl::Status FromRocksStatus(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
    return absl::FailedPreconditionError(
        absl::StrCat(msg, " (is another corridord using this data_dir?)"));
  }
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<NodeStore>> NodeStore::Open(
    const std::string& dir, const std::vector<std::string>& extra_families) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;

  std::set<std::string> names = {rocksdb::kDefaultColumnFamilyName, kMetaFamily};
  names.insert(extra_families.begin(), extra_families.end());
  // Keep families created by other versions too: RocksDB refuses to open otherwise.
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(options, dir, &existing).ok()) {
    names.insert(existing.begin(), existing.end());
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) {
    // The ledger's families have their own tuning (bounded memtables).
    descriptors.emplace_back(n, absl::StartsWith(n, "ledger_")
                                    ? ledger::LedgerColumnFamilyOptions(n)
                                    : rocksdb::ColumnFamilyOptions(options));
  }
  std::unique_ptr<NodeStore> store(new NodeStore);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(rocksdb::DBOptions(options), dir, descriptors, &store->handles_, &raw);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("opening the database in ", dir));
  store->db_.reset(raw);
  for (size_t i = 0; i < descriptors.size(); ++i) {
    store->families_[descriptors[i].name] = store->handles_[i];
  }
  return store;
}

NodeStore::~NodeStore() {
  if (!db_) return;
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

rocksdb::ColumnFamilyHandle* NodeStore::family(const std::string& name) const {
  auto it = families_.find(name);
  return it == families_.end() ? nullptr : it->second;
}

absl::StatusOr<std::string> NodeStore::GetMeta(const std::string& key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), family(kMetaFamily), key, &value);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("reading ", key));
  return value;
}

absl::Status NodeStore::PutMeta(const std::map<std::string, std::string>& values) {
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : values) batch.Put(family(kMetaFamily), k, v);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocksStatus(db_->Write(wo, &batch), "writing node state");
}

}  // namespace corridor
