#include "ledger/testing/power_loss_fs.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace corridor::ledger::testing {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// One spelling per path: no repeated or trailing slashes.
std::string Normalize(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

absl::Status Failed(const IOStatus& s, absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat("power-loss reboot: ", what, " ", path, ": ", s.ToString()));
}

}  // namespace

// A file open for writing: appends and truncations update its FileState under
// the file system's lock, syncs go through SyncFile.
class PowerLossFileSystem::File : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  File(std::unique_ptr<rocksdb::FSWritableFile> f, PowerLossFileSystem* fs,
       std::shared_ptr<FileState> state)
      : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), state_(std::move(state)) {}

  IOStatus Append(const Slice& d, const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->StepLocked()) return Off();
    IOStatus s = target()->Append(d, o, dbg);
    if (s.ok()) state_->size += d.size();
    return s;
  }
  IOStatus Append(const Slice& d, const IOOptions& o, const rocksdb::DataVerificationInfo& v,
                  IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->StepLocked()) return Off();
    IOStatus s = target()->Append(d, o, v, dbg);
    if (s.ok()) state_->size += d.size();
    return s;
  }
  IOStatus PositionedAppend(const Slice& d, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->StepLocked()) return Off();
    IOStatus s = target()->PositionedAppend(d, offset, o, dbg);
    if (s.ok()) state_->size = std::max(state_->size, offset + d.size());
    return s;
  }
  IOStatus PositionedAppend(const Slice& d, uint64_t offset, const IOOptions& o,
                            const rocksdb::DataVerificationInfo& v, IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->StepLocked()) return Off();
    IOStatus s = target()->PositionedAppend(d, offset, o, v, dbg);
    if (s.ok()) state_->size = std::max(state_->size, offset + d.size());
    return s;
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->StepLocked()) return Off();
    IOStatus s = target()->Truncate(size, o, dbg);
    if (s.ok()) {
      state_->size = size;
      state_->durable = std::min(state_->durable, size);
    }
    return s;
  }
  IOStatus Flush(const IOOptions& o, IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->off_) return Off();
    return target()->Flush(o, dbg);
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->SyncFile(state_, [&] { return target()->Sync(o, dbg); });
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->SyncFile(state_, [&] { return target()->Fsync(o, dbg); });
  }
  // sync_file_range: writes back, persists nothing in the model.
  IOStatus RangeSync(uint64_t offset, uint64_t n, const IOOptions& o,
                     IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->off_) return Off();
    return target()->RangeSync(offset, n, o, dbg);
  }
  IOStatus Allocate(uint64_t offset, uint64_t len, const IOOptions& o,
                    IODebugContext* dbg) override {
    absl::MutexLock lock(&fs_->mu_);
    if (fs_->off_) return Off();
    return target()->Allocate(offset, len, o, dbg);
  }
  // Closing releases the descriptor also after the cut (it writes nothing
  // the model keeps: Reboot truncates to the durable length anyway).
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = target()->Close(o, dbg);
    absl::MutexLock lock(&fs_->mu_);
    return fs_->off_ ? Off() : s;
  }

 private:
  PowerLossFileSystem* const fs_;
  const std::shared_ptr<FileState> state_;
};

// A directory handle: its fsyncs make the names created in it durable.
class PowerLossFileSystem::Directory : public rocksdb::FSDirectoryWrapper {
 public:
  Directory(std::unique_ptr<rocksdb::FSDirectory> d, PowerLossFileSystem* fs, std::string name)
      : FSDirectoryWrapper(std::move(d)), fs_(fs), name_(std::move(name)) {}

  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return fs_->SyncDir(name_, [&] { return FSDirectoryWrapper::Fsync(o, dbg); });
  }
  // Counted as a full directory fsync whatever the reason given (on btrfs the
  // real call may sync only the renamed file, which also persists its name).
  IOStatus FsyncWithDirOptions(const IOOptions& o, IODebugContext* dbg,
                               const rocksdb::DirFsyncOptions& d) override {
    return fs_->SyncDir(name_, [&] { return FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, d); });
  }

 private:
  PowerLossFileSystem* const fs_;
  const std::string name_;
};

PowerLossFileSystem::PowerLossFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
    : FileSystemWrapper(std::move(base)) {}

IOStatus PowerLossFileSystem::Off() { return IOStatus::IOError("power is off (PowerCut)"); }

void PowerLossFileSystem::set_syncs_lie(bool lie) {
  absl::MutexLock lock(&mu_);
  syncs_lie_ = lie;
}

void PowerLossFileSystem::PowerCut() {
  absl::MutexLock lock(&mu_);
  off_ = true;
}

void PowerLossFileSystem::PowerCutAt(uint64_t step) {
  absl::MutexLock lock(&mu_);
  cut_at_ = steps_ + step;
}

bool PowerLossFileSystem::powered() const {
  absl::MutexLock lock(&mu_);
  return !off_;
}

uint64_t PowerLossFileSystem::steps() const {
  absl::MutexLock lock(&mu_);
  return steps_;
}

bool PowerLossFileSystem::StepLocked() {
  if (off_) return true;
  if (++steps_ == cut_at_) off_ = true;
  return off_;
}

template <typename SyncFn>
IOStatus PowerLossFileSystem::SyncFile(const std::shared_ptr<FileState>& state, SyncFn sync) {
  uint64_t upto;
  bool lie;
  {
    absl::MutexLock lock(&mu_);
    if (StepLocked()) return Off();
    upto = state->size;
    lie = syncs_lie_;
  }
  IOStatus s = sync();
  absl::MutexLock lock(&mu_);
  if (off_) return Off();
  if (s.ok() && !lie) state->durable = std::max(state->durable, std::min(upto, state->size));
  return s;
}

template <typename SyncFn>
IOStatus PowerLossFileSystem::SyncDir(const std::string& dir, SyncFn sync) {
  uint64_t upto;
  {
    absl::MutexLock lock(&mu_);
    if (StepLocked()) return Off();
    upto = seq_;
  }
  IOStatus s = sync();
  absl::MutexLock lock(&mu_);
  if (off_) return Off();
  if (!s.ok()) return s;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.seq <= upto && Parent(it->first) == dir) {
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  return s;
}

std::shared_ptr<PowerLossFileSystem::FileState> PowerLossFileSystem::TrackLocked(
    const std::string& f, bool created, uint64_t size) {
  if (created) pending_[f] = PendingName{++seq_, "", std::nullopt};
  auto state = std::make_shared<FileState>();
  state->size = size;
  state->durable = created ? 0 : size;
  files_[f] = state;
  return state;
}

IOStatus PowerLossFileSystem::NewWritableFile(const std::string& fname,
                                              const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                                              IODebugContext* dbg) {
  const std::string f = Normalize(fname);
  absl::MutexLock lock(&mu_);
  if (StepLocked()) return Off();
  const bool existed = files_.count(f) > 0 || target()->FileExists(f, IOOptions(), dbg).ok();
  IOStatus s = target()->NewWritableFile(f, o, r, dbg);
  if (!s.ok()) return s;
  // An existing file is emptied; the model keeps the emptying (durable 0).
  std::shared_ptr<FileState> state = TrackLocked(f, !existed, 0);
  *r = std::make_unique<File>(std::move(*r), this, std::move(state));
  return s;
}

IOStatus PowerLossFileSystem::ReopenWritableFile(const std::string& fname,
                                                 const rocksdb::FileOptions& o,
                                                 std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                 IODebugContext* dbg) {
  const std::string f = Normalize(fname);
  absl::MutexLock lock(&mu_);
  if (StepLocked()) return Off();
  uint64_t size = 0;
  const bool existed = target()->GetFileSize(f, IOOptions(), &size, dbg).ok();
  IOStatus s = target()->ReopenWritableFile(f, o, r, dbg);
  if (!s.ok()) return s;
  auto known = files_.find(f);
  std::shared_ptr<FileState> state =
      known != files_.end() ? known->second : TrackLocked(f, !existed, existed ? size : 0);
  *r = std::make_unique<File>(std::move(*r), this, std::move(state));
  return s;
}

IOStatus PowerLossFileSystem::ReuseWritableFile(const std::string& fname,
                                                const std::string& old_fname,
                                                const rocksdb::FileOptions& o,
                                                std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                IODebugContext* dbg) {
  const std::string f = Normalize(fname), old_f = Normalize(old_fname);
  absl::MutexLock lock(&mu_);
  if (StepLocked()) return Off();
  std::optional<std::string> replaced = DurableContentsLocked(f);
  IOStatus s = target()->ReuseWritableFile(f, old_f, o, r, dbg);
  if (!s.ok()) return s;
  RenameLocked(old_f, f, std::move(replaced));  // a rename, then the contents start over
  auto state = std::make_shared<FileState>();
  files_[f] = state;
  *r = std::make_unique<File>(std::move(*r), this, std::move(state));
  return s;
}

IOStatus PowerLossFileSystem::NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                              IODebugContext* dbg) {
  {
    absl::MutexLock lock(&mu_);
    if (off_) return Off();
  }
  return target()->NewRandomRWFile(f, o, r, dbg);  // not tracked (see the header)
}

IOStatus PowerLossFileSystem::NewDirectory(const std::string& name, const IOOptions& o,
                                           std::unique_ptr<rocksdb::FSDirectory>* r,
                                           IODebugContext* dbg) {
  IOStatus s = target()->NewDirectory(name, o, r, dbg);
  if (s.ok()) *r = std::make_unique<Directory>(std::move(*r), this, Normalize(name));
  return s;
}

std::optional<std::string> PowerLossFileSystem::DurableContentsLocked(const std::string& f) {
  auto pending = pending_.find(f);
  if (pending != pending_.end()) return pending->second.replaced;
  std::string data;
  if (!rocksdb::ReadFileToString(target(), f, &data).ok()) return std::nullopt;
  auto known = files_.find(f);
  if (known != files_.end()) data.resize(std::min<uint64_t>(data.size(), known->second->durable));
  return data;
}

void PowerLossFileSystem::RenameLocked(const std::string& src, const std::string& dst,
                                       std::optional<std::string> replaced) {
  PendingName name{++seq_, src, std::move(replaced)};
  auto src_pending = pending_.find(src);
  if (src_pending != pending_.end()) {
    name.restore_from = src_pending->second.restore_from;  // "" if src was never durable
    pending_.erase(src_pending);
  }
  files_.erase(dst);
  auto known = files_.find(src);
  if (known != files_.end()) {
    files_[dst] = known->second;
    files_.erase(known);
  }
  pending_[dst] = std::move(name);
}

IOStatus PowerLossFileSystem::RenameFile(const std::string& src_name, const std::string& dst_name,
                                         const IOOptions& o, IODebugContext* dbg) {
  const std::string src = Normalize(src_name), dst = Normalize(dst_name);
  absl::MutexLock lock(&mu_);
  if (StepLocked()) return Off();
  std::optional<std::string> replaced = DurableContentsLocked(dst);  // before it is replaced
  IOStatus s = target()->RenameFile(src, dst, o, dbg);
  if (s.ok()) RenameLocked(src, dst, std::move(replaced));
  return s;
}

IOStatus PowerLossFileSystem::DeleteFile(const std::string& fname, const IOOptions& o,
                                         IODebugContext* dbg) {
  const std::string f = Normalize(fname);
  absl::MutexLock lock(&mu_);
  if (StepLocked()) return Off();
  IOStatus s = target()->DeleteFile(f, o, dbg);
  if (s.ok()) {
    files_.erase(f);
    pending_.erase(f);
  }
  return s;
}

IOStatus PowerLossFileSystem::Truncate(const std::string& fname, size_t size, const IOOptions& o,
                                       IODebugContext* dbg) {
  const std::string f = Normalize(fname);
  absl::MutexLock lock(&mu_);
  if (StepLocked()) return Off();
  IOStatus s = target()->Truncate(f, size, o, dbg);
  auto known = files_.find(f);
  if (s.ok() && known != files_.end()) {
    known->second->size = size;
    known->second->durable = std::min<uint64_t>(known->second->durable, size);
  }
  return s;
}

IOStatus PowerLossFileSystem::CreateDir(const std::string& d, const IOOptions& o,
                                        IODebugContext* dbg) {
  {
    absl::MutexLock lock(&mu_);
    if (off_) return Off();
  }
  return target()->CreateDir(d, o, dbg);
}

IOStatus PowerLossFileSystem::CreateDirIfMissing(const std::string& d, const IOOptions& o,
                                                 IODebugContext* dbg) {
  {
    absl::MutexLock lock(&mu_);
    if (off_) return Off();
  }
  return target()->CreateDirIfMissing(d, o, dbg);
}

IOStatus PowerLossFileSystem::DeleteDir(const std::string& d, const IOOptions& o,
                                        IODebugContext* dbg) {
  {
    absl::MutexLock lock(&mu_);
    if (off_) return Off();
  }
  return target()->DeleteDir(d, o, dbg);
}

IOStatus PowerLossFileSystem::LinkFile(const std::string& src, const std::string& dst,
                                       const IOOptions& o, IODebugContext* dbg) {
  {
    absl::MutexLock lock(&mu_);
    if (off_) return Off();
  }
  return target()->LinkFile(src, dst, o, dbg);
}

absl::Status PowerLossFileSystem::UndoNamesLocked() {
  std::vector<std::pair<std::string, PendingName>> names(pending_.begin(), pending_.end());
  std::sort(names.begin(), names.end(),
            [](const auto& a, const auto& b) { return a.second.seq > b.second.seq; });
  for (auto& [path, name] : names) {
    if (!name.restore_from.empty()) {
      IOStatus s = target()->RenameFile(path, name.restore_from, IOOptions(), nullptr);
      if (!s.ok()) return Failed(s, "renaming back", path);
      auto known = files_.find(path);
      if (known != files_.end()) {
        files_[name.restore_from] = known->second;
        files_.erase(known);
      }
      ++last_reboot_.renames_undone;
    } else {
      IOStatus s = target()->DeleteFile(path, IOOptions(), nullptr);
      if (!s.ok() && !s.IsNotFound()) return Failed(s, "removing", path);
      files_.erase(path);
      ++last_reboot_.files_removed;
    }
    if (name.replaced.has_value()) {
      IOStatus s = rocksdb::WriteStringToFile(target(), *name.replaced, path, /*should_sync=*/true);
      if (!s.ok()) return Failed(s, "restoring", path);
      files_.erase(path);
    }
  }
  pending_.clear();
  return absl::OkStatus();
}

absl::Status PowerLossFileSystem::TruncateLocked() {
  for (const auto& [path, state] : files_) {
    uint64_t size = 0;
    if (!target()->GetFileSize(path, IOOptions(), &size, nullptr).ok()) continue;  // deleted
    if (size <= state->durable) continue;
    // Through a reopened file: not every file system truncates by name.
    std::unique_ptr<rocksdb::FSWritableFile> f;
    IOStatus s = target()->ReopenWritableFile(path, rocksdb::FileOptions(), &f, nullptr);
    if (s.ok()) s = f->Truncate(state->durable, IOOptions(), nullptr);
    if (s.ok()) s = f->Close(IOOptions(), nullptr);
    if (!s.ok()) return Failed(s, "truncating", path);
    last_reboot_.bytes_dropped += size - state->durable;
    ++last_reboot_.files_truncated;
  }
  files_.clear();
  return absl::OkStatus();
}

absl::Status PowerLossFileSystem::Reboot() {
  absl::MutexLock lock(&mu_);
  if (!off_) return absl::FailedPreconditionError("Reboot() needs a PowerCut() first");
  last_reboot_ = RebootStats();
  if (absl::Status st = UndoNamesLocked(); !st.ok()) return st;
  if (absl::Status st = TruncateLocked(); !st.ok()) return st;
  off_ = false;
  cut_at_ = 0;
  return absl::OkStatus();
}

}  // namespace corridor::ledger::testing
