#include "server/store/store.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ledger/base/log.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace corridor {

// Follows RocksDB's background errors: the database is read-only from the
// first until a recovery ends well. Runs on RocksDB's threads (writers,
// flushes, compactions): only records and unlinks.
class NodeStore::Listener : public rocksdb::EventListener {
 public:
  explicit Listener(NodeStore* store) : store_(store) {}
  const char* Name() const override { return "CorridorNodeStore"; }
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    if (error == nullptr || error->ok()) return;
    {
      absl::MutexLock lock(&store_->mu_);
      // RocksDB's own text goes to the log; health() reaches users.
      store_->background_error_ = ledger::FromRocksStatus(*error, "the database cannot write");
      if (store_->background_error_.code() != absl::StatusCode::kUnavailable) {
        store_->background_error_ = absl::UnavailableError(store_->background_error_.message());
      }
    }
    if (error->IsNoSpace()) store_->ReleaseReserve("the disk is full");
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (info.new_bg_error.ok()) Recovered();
  }
  void OnErrorRecoveryCompleted(rocksdb::Status old_error) override {
    old_error.PermitUncheckedError();
    Recovered();
  }

 private:
  void Recovered() {
    absl::MutexLock lock(&store_->mu_);
    store_->background_error_ = absl::OkStatus();
  }
  NodeStore* const store_;
};

namespace {

// A RocksDB info log that writes nothing: a read-only look at a directory
// must not leave a LOG file behind.
class SilentLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

bool HasDatabase(const std::string& dir) {
  struct stat st;
  return ::stat((dir + "/CURRENT").c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> PeekDatabase(
    const std::string& dir, const std::string& family, const std::vector<std::string>& keys) {
  if (!HasDatabase(dir)) return absl::NotFoundError(absl::StrCat("no database in ", dir));
  rocksdb::Options options;
  options.info_log = std::make_shared<SilentLogger>();
  options.create_if_missing = false;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, dir, &names);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("reading the database in ", dir));
  std::map<std::string, std::string> out;
  if (std::find(names.begin(), names.end(), family) == names.end()) return out;
  std::vector<rocksdb::ColumnFamilyDescriptor> wanted = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(options)}};
  if (family != rocksdb::kDefaultColumnFamilyName) {
    wanted.push_back({family, rocksdb::ColumnFamilyOptions(options)});
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::OpenForReadOnly(options, dir, wanted, &handles, &raw);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("reading the database in ", dir));
  std::unique_ptr<rocksdb::DB> db(raw);
  absl::Status result;
  for (const std::string& key : keys) {
    std::string value;
    s = db->Get(rocksdb::ReadOptions(), handles.back(), key, &value);
    if (s.ok()) {
      out[key] = std::move(value);
    } else if (!s.IsNotFound()) {
      result = FromRocksStatus(s, absl::StrCat("reading ", key, " in ", dir));
      break;
    }
  }
  for (auto* h : handles) (void)db->DestroyColumnFamilyHandle(h);
  if (!result.ok()) return result;
  return out;
}

absl::StatusOr<std::optional<uint64_t>> CheckDataFormat(const std::string& dir) {
  auto meta = PeekDatabase(dir, NodeStore::kMetaFamily, {kFormatVersionKey});
  if (absl::IsNotFound(meta.status())) return std::optional<uint64_t>();
  if (!meta.ok()) return meta.status();
  auto it = meta->find(kFormatVersionKey);
  if (it == meta->end()) return std::optional<uint64_t>(1);
  uint64_t version = 0;
  if (it->second.empty() || it->second.size() > 20 ||
      it->second.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(it->second, &version)) {
    return absl::DataLossError(absl::StrCat(
        "the data directory ", dir,
        " has a damaged format version (it is not a number); restore it from a backup"));
  }
  if (version > kDataFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the data directory ", dir, " is in data format version ", version,
        ", written by a newer corridord; this corridord reads data format versions up to ",
        kDataFormatVersion,
        ". Install the newer corridord again (or restore a backup this version made); nothing "
        "in the data directory was changed"));
  }
  return std::optional<uint64_t>(version);
}

NodeStore::NodeStore(std::string dir, NodeStoreOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<NodeStore>> NodeStore::Open(
    const std::string& dir, const std::vector<std::string>& extra_families,
    NodeStoreOptions store_options) {
  if (store_options.env == nullptr) store_options.env = rocksdb::Env::Default();
  // The format check reads through the real file system; tests that inject an
  // environment (power loss) make their own directories.
  std::optional<uint64_t> format;
  if (store_options.env == rocksdb::Env::Default()) {
    auto checked = CheckDataFormat(dir);
    if (!checked.ok()) return checked.status();
    format = *checked;
  }
  std::unique_ptr<NodeStore> store(new NodeStore(dir, std::move(store_options)));
  store->fs_ = store->options_.env->GetFileSystem();
  // Give the reserve back before opening if the disk is short of room
  // (filled up before or since the last stop): opening needs a little.
  uint64_t free_bytes = 0;
  if (!store->fs_->GetFreeSpace(dir, rocksdb::IOOptions(), &free_bytes, nullptr).ok() ||
      free_bytes < 2 * store->options_.reserve_bytes) {
    (void)store->fs_->DeleteFile(dir + "/" + kReserveFile, rocksdb::IOOptions(), nullptr);
  }

  ledger::LedgerDbOptions db_options;
  db_options.families = extra_families;
  db_options.families.push_back(kMetaFamily);
  rocksdb::Options& options = db_options.options;
  options = rocksdb::Options();
  options.env = store->options_.env;
  options.paranoid_checks = true;
  // Opening replays the WAL into memtables without flushing them, so a
  // restart on a nearly full disk needs only a few KiB (new MANIFEST,
  // OPTIONS and WAL files), which the released reserve gives.
  options.avoid_flush_during_recovery = true;
  // OpenLedgerDb adds ledger::NewManualRecoveryListener(): recovery from a
  // full disk is driven by the ledger and by KeepReserve
  // (ledger::ResumeWhenRoom), not by RocksDB's own retries.
  options.listeners.push_back(std::make_shared<Listener>(store.get()));
  db_options.family_options = [base =
                                   rocksdb::ColumnFamilyOptions(options)](const std::string& name) {
    rocksdb::ColumnFamilyOptions family = base;
    // Evidence is written once in large sealed chunks and read rarely: small
    // memtables keep what concurrent uploads cost in memory low.
    if (name == "evidence") family.write_buffer_size = 16 << 20;
    return family;
  };
  auto db = ledger::OpenLedgerDb(dir, std::move(db_options));
  if (!db.ok()) return db.status();
  store->db_ = *std::move(db);
  if (auto st = store->StampFormat(format.has_value()); !st.ok()) return st;
  // The reserve is written by the background thread, first thing, so that
  // writing it does not delay the start.
  if (store->options_.reserve_bytes > 0) {
    absl::MutexLock lock(&store->mu_);
    store->reserve_ = absl::FailedPreconditionError("the space reserve is not written yet");
  }
  store->keeper_ = std::thread([s = store.get()] { s->KeepReserve(); });
  return store;
}

NodeStore::~NodeStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (keeper_.joinable()) keeper_.join();
  db_.reset();
}

rocksdb::ColumnFamilyHandle* NodeStore::family(const std::string& name) const {
  auto it = db_->families.find(name);
  return it == db_->families.end() ? nullptr : it->second;
}

absl::Status NodeStore::StampFormat(bool existed) {
  auto stored = GetMeta(kFormatVersionKey);
  if (stored.ok()) return absl::OkStatus();
  if (!absl::IsNotFound(stored.status())) return stored.status();
  if (existed) {
    unversioned_ = true;  // the caller records the upgrade with the version
    return absl::OkStatus();
  }
  return PutMeta({{kFormatVersionKey, absl::StrCat(kDataFormatVersion)}});
}

absl::StatusOr<std::string> NodeStore::GetMeta(const std::string& key) const {
  std::string value;
  rocksdb::Status s = db()->Get(rocksdb::ReadOptions(), family(kMetaFamily), key, &value);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("reading ", key));
  return value;
}

absl::StatusOr<uint64_t> NodeStore::GetMetaNumber(const std::string& key) const {
  auto value = GetMeta(key);
  if (!value.ok()) return value.status();
  uint64_t n = 0;
  const bool digits = !value->empty() && value->size() <= 20 &&
                      value->find_first_not_of("0123456789") == std::string::npos;
  if (!digits || !absl::SimpleAtoi(*value, &n)) {
    return absl::DataLossError(
        absl::StrCat("the node state \"", key, "\" in ", dir_,
                     " is damaged (it is not a number); restore the data directory from a backup"));
  }
  return n;
}

absl::Status NodeStore::PutMeta(const std::map<std::string, std::string>& values) {
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : values) batch.Put(family(kMetaFamily), k, v);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocksStatus(db()->Write(wo, &batch), "writing node state");
}

}  // namespace corridor

namespace corridor {

absl::Status NodeStore::health() const {
  absl::MutexLock lock(&mu_);
  return background_error_;
}

absl::Status NodeStore::reserve_ok() const {
  absl::MutexLock lock(&mu_);
  return reserve_;
}

void NodeStore::ReleaseReserve(absl::string_view why) {
  if (options_.reserve_bytes == 0) return;
  // No reserve_mu_ here: this runs inside RocksDB's error handling and must
  // not wait for a reserve being written; RestoreReserve notices.
  rocksdb::IOStatus s = fs_->DeleteFile(dir_ + "/" + kReserveFile, rocksdb::IOOptions(), nullptr);
  {
    absl::MutexLock lock(&mu_);
    reserve_ = absl::FailedPreconditionError(absl::StrCat("the space reserve was released: ", why));
  }
  log::Warn("store.reserve_released",
            {{"reason", std::string(why)}, {"deleted", s.ok() ? "yes" : s.ToString()}});
}

absl::Status NodeStore::RestoreReserve() {
  if (options_.reserve_bytes == 0) return absl::OkStatus();
  absl::MutexLock reserve_lock(&reserve_mu_);
  const std::string path = dir_ + "/" + kReserveFile;
  const rocksdb::IOOptions io;
  uint64_t size = 0;
  if (fs_->GetFileSize(path, io, &size, nullptr).ok() && size == options_.reserve_bytes) {
    absl::MutexLock lock(&mu_);
    reserve_ = absl::OkStatus();
    return reserve_;
  }
  auto fail = [&](absl::Status st) {
    (void)fs_->DeleteFile(path, io, nullptr);
    absl::MutexLock lock(&mu_);
    reserve_ = st;
    return st;
  };
  if (!health().ok()) return fail(absl::FailedPreconditionError("the database cannot write"));
  uint64_t free_bytes = 0;
  if (fs_->GetFreeSpace(dir_, io, &free_bytes, nullptr).ok() &&
      free_bytes < 2 * options_.reserve_bytes) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat("only ", free_bytes >> 20, " MiB free; the reserve of ",
                     options_.reserve_bytes >> 20, " MiB needs twice that")));
  }
  {
    absl::MutexLock lock(&mu_);
    reserve_ = absl::OkStatus();  // a release from here on marks it missing again
  }
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = fs_->NewWritableFile(path, rocksdb::FileOptions(), &file, nullptr);
  // Allocate the blocks without writing them (fallocate, then set the
  // size), or where the file system cannot, write zeros.
  rocksdb::IOStatus allocated = s;
  if (s.ok()) allocated = file->Allocate(0, options_.reserve_bytes, io, nullptr);
  if (allocated.ok()) allocated = file->Truncate(options_.reserve_bytes, io, nullptr);
  const std::string zeros(allocated.ok() ? 0 : 1 << 20, '\0');
  for (uint64_t left = options_.reserve_bytes; s.ok() && !allocated.ok() && left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, zeros.size()));
    s = file->Append(rocksdb::Slice(zeros.data(), n), io, nullptr);
    left -= n;
  }
  if (s.ok()) s = file->Fsync(io, nullptr);
  if (file) {
    rocksdb::IOStatus c = file->Close(io, nullptr);
    if (s.ok()) s = c;
  }
  if (!s.ok()) {
    return fail(FromRocksStatus(s, absl::StrCat("writing the space reserve ", path)));
  }
  absl::MutexLock lock(&mu_);
  if (!reserve_.ok()) {  // released while being written
    (void)fs_->DeleteFile(path, io, nullptr);
    return reserve_;
  }
  log::Info("store.reserve_kept", {{"bytes", options_.reserve_bytes}});
  return reserve_;
}

void NodeStore::KeepReserve() {
  for (bool first = true;; first = false) {
    bool stopped_writing;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ ||
          (!first && mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.check_interval))) {
        return;
      }
      stopped_writing = !background_error_.ok();
      if (reserve_.ok() && !stopped_writing) continue;
    }
    // RocksDB stopped writing with no ledger commit failing (an idle node,
    // or a failed flush): resume it here, once there is room.
    if (stopped_writing && !ledger::ResumeWhenRoom(db()).ok()) continue;
    if (absl::Status st = RestoreReserve(); !st.ok() && first) {
      log::Warn("store.reserve_missing", {{"reason", st.message()}});
    }
  }
}

}  // namespace corridor
