#include "server/node/backup.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ledger/base/file.h"
#include "ledger/crypto/crypto.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/utilities/checkpoint.h"
#include "server/store/store.h"

namespace corridor {

namespace fs = std::filesystem;

namespace {

constexpr char kManifestMagic[] = "corridor-backup 1";

bool HasDotComponent(const std::string& path) {
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") return true;
  }
  return false;
}

// `inner` is `outer` or below it (both canonical, absolute).
bool Within(const fs::path& inner, const fs::path& outer) {
  return std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end()).first == outer.end();
}

// The canonical form of `path`, whose last component may not exist yet.
fs::path Canonical(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::path(path).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  fs::path parent = fs::weakly_canonical(p.parent_path(), ec);
  return parent / p.filename();
}

absl::StatusOr<std::string> FileSha256Hex(const fs::path& path, uint64_t* size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InternalError(absl::StrCat("cannot read ", path.string()));
  Sha256Hasher hasher;
  std::string buffer(1 << 20, '\0');
  *size = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    hasher.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    *size += static_cast<uint64_t>(n);
  }
  if (in.bad()) return absl::InternalError(absl::StrCat("cannot read ", path.string()));
  return HexEncode(DigestBytes(hasher.Finish()));
}

// Every regular file under `root` (relative paths, sorted); InvalidArgument
// for anything that is neither a file nor a directory.
absl::StatusOr<std::vector<std::string>> ListFiles(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_directory()) continue;
    if (!it->is_regular_file() || it->is_symlink()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the backup holds something that is not a regular file: ",
                       it->path().lexically_relative(root).string()));
    }
    out.push_back(it->path().lexically_relative(root).generic_string());
  }
  if (ec)
    return absl::InternalError(absl::StrCat("cannot list ", root.string(), ": ", ec.message()));
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status SyncPath(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return absl::InternalError(absl::StrCat("cannot sync ", path.string()));
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::Status CopySynced(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  if (ec || !fs::copy_file(from, to, fs::copy_options::none, ec) || ec) {
    return absl::InternalError(absl::StrCat("cannot copy ", from.string(), " to ", to.string(),
                                            ec ? ": " + ec.message() : ""));
  }
  return SyncPath(to, false);
}

// A RocksDB checkpoint of `db` in `dir` (which must not exist): hard links to
// its table files where the file system allows, copies otherwise.
absl::Status TakeCheckpoint(rocksdb::DB* db, const fs::path& dir, const char* what) {
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db, &raw);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  if (s.ok()) s = checkpoint->CreateCheckpoint(dir.string(), /*log_size_for_flush=*/0);
  if (!s.ok()) {
    return FromRocksStatus(s, absl::StrCat("taking a consistent copy of the ", what));
  }
  return absl::OkStatus();
}

// The ledger size, root (hex) and latest checkpoint in the database at `dir`.
absl::Status ReadLedgerState(const fs::path& dir, BackupManifest* manifest,
                             std::string* checkpoint_note) {
  auto state = PeekDatabase(dir.string(), ledger::kStateFamily, {"head", "checkpoint"});
  if (!state.ok()) return state.status();
  auto head = state->find("head");
  if (head == state->end()) {
    manifest->ledger_size = 0;
    manifest->ledger_root_hex = HexEncode(DigestBytes(Sha256("")));
  } else if (head->second.size() != 8 + 32) {
    return absl::DataLossError("the ledger head in the backup is damaged");
  } else {
    uint64_t size = 0;
    for (int i = 0; i < 8; ++i) size = (size << 8) | static_cast<uint8_t>(head->second[i]);
    manifest->ledger_size = size;
    manifest->ledger_root_hex = HexEncode(head->second.substr(8));
  }
  auto note = state->find("checkpoint");
  *checkpoint_note = note == state->end() ? "" : note->second;
  auto format = PeekDatabase(dir.string(), NodeStore::kMetaFamily, {kFormatVersionKey});
  if (!format.ok()) return format.status();
  manifest->data_format = 1;
  if (auto it = format->find(kFormatVersionKey); it != format->end()) {
    if (!absl::SimpleAtoi(it->second, &manifest->data_format)) {
      return absl::DataLossError("the data format version in the backup is damaged");
    }
  }
  return absl::OkStatus();
}

absl::Status ListWithDigests(const fs::path& root, BackupManifest* manifest) {
  auto files = ListFiles(root);
  if (!files.ok()) return files.status();
  for (const std::string& f : *files) {
    if (f == kManifestFile) continue;
    BackupManifest::File entry{f, 0, ""};
    auto sha = FileSha256Hex(root / f, &entry.size);
    if (!sha.ok()) return sha.status();
    entry.sha256_hex = *sha;
    manifest->files.push_back(std::move(entry));
  }
  return absl::OkStatus();
}

absl::Status WriteBackupFiles(rocksdb::DB* db, rocksdb::DB* keystore, const fs::path& out,
                              BackupManifest* manifest, std::string* checkpoint_note) {
  std::error_code ec;
  fs::create_directory(out, ec);
  // Only the node's user reads a backup (ciphertext and wrapped keys, still).
  if (!ec) fs::permissions(out, fs::perms::owner_all, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create the backup directory: ", ec.message()));
  if (auto st = TakeCheckpoint(db, out / "db", "database"); !st.ok()) return st;
  // After the database: every key a case in db/ is sealed under is older.
  if (auto st = TakeCheckpoint(keystore, out / "keystore", "key store"); !st.ok()) return st;
  if (auto st = ReadLedgerState(out / "db", manifest, checkpoint_note); !st.ok()) return st;
  if (auto st = WriteFileAtomically((out / kCheckpointNoteFile).string(), *checkpoint_note, 0600);
      !st.ok()) {
    return st;
  }
  if (auto st = ListWithDigests(out, manifest); !st.ok()) return st;
  return WriteFileAtomically((out / kManifestFile).string(), FormatManifest(*manifest), 0600);
}

}  // namespace

std::string FormatManifest(const BackupManifest& m) {
  std::string out =
      absl::StrCat(kManifestMagic, "\n", "data-format ", m.data_format, "\n", "created-unix ",
                   m.created_unix, "\n", "federation ", m.federation, "\n", "org ", m.org, "\n",
                   "ledger-size ", m.ledger_size, "\n", "ledger-root ", m.ledger_root_hex, "\n");
  for (const auto& f : m.files) {
    absl::StrAppend(&out, "file ", f.sha256_hex, " ", f.size, " ", f.path, "\n");
  }
  return out;
}

namespace {

bool IsHex64(absl::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == absl::string_view::npos;
}

// One "file" line's fields into `f`; false if they do not follow the format.
bool ParseFileLine(absl::string_view rest, BackupManifest::File* f) {
  std::vector<std::string> parts = absl::StrSplit(rest, absl::MaxSplits(' ', 2));
  if (parts.size() != 3 || !IsHex64(parts[0]) || !absl::SimpleAtoi(parts[1], &f->size) ||
      parts[2].empty() || parts[2][0] == '/' || HasDotComponent(parts[2])) {
    return false;
  }
  f->sha256_hex = parts[0];
  f->path = parts[2];
  return true;
}

}  // namespace

absl::StatusOr<BackupManifest> ParseManifest(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (lines.empty() || lines[0] != kManifestMagic || !lines.back().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kManifestFile, " is not a Corridor backup manifest (line 1 must be \"",
                     kManifestMagic, "\", and the file must end with a new line)"));
  }
  lines.pop_back();
  BackupManifest m;
  std::map<std::string, std::string> fields;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<std::string, std::string> kv = absl::StrSplit(lines[i], absl::MaxSplits(' ', 1));
    BackupManifest::File f;
    const bool ok = kv.first == "file" ? ParseFileLine(kv.second, &f)
                                       : !kv.second.empty() && fields.emplace(kv).second;
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(kManifestFile, " line ", i + 1, " does not follow the format"));
    }
    if (kv.first == "file") m.files.push_back(std::move(f));
  }
  m.federation = fields["federation"];
  m.org = fields["org"];
  m.ledger_root_hex = fields["ledger-root"];
  if (!absl::SimpleAtoi(fields["data-format"], &m.data_format) ||
      !absl::SimpleAtoi(fields["created-unix"], &m.created_unix) ||
      !absl::SimpleAtoi(fields["ledger-size"], &m.ledger_size) || !IsHex64(m.ledger_root_hex) ||
      m.org.empty() || m.federation.empty() || fields.size() != 6) {
    return absl::InvalidArgumentError(
        absl::StrCat(kManifestFile,
                     " lacks one of data-format, created-unix, federation, org, ledger-size "
                     "and ledger-root, or has another field"));
  }
  return m;
}

absl::Status CheckBackupTarget(const std::string& out_dir, const std::string& data_dir) {
  if (out_dir.empty()) return absl::InvalidArgumentError("give the backup directory (--out DIR)");
  if (out_dir.size() > kMaxBackupPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the backup directory's path is longer than ", kMaxBackupPathBytes, " bytes"));
  }
  if (out_dir[0] != '/') {
    return absl::InvalidArgumentError(
        "the backup directory must be an absolute path (it is on the node's machine, and the "
        "node does not resolve paths against a working directory)");
  }
  if (std::any_of(out_dir.begin(), out_dir.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }) ||
      HasDotComponent(out_dir)) {
    return absl::InvalidArgumentError(
        "the backup directory's path may not hold control characters or \".\" / \"..\" parts");
  }
  const fs::path out = Canonical(out_dir);
  const fs::path data = Canonical(data_dir);
  if (Within(out, data) || Within(data, out)) {
    return absl::InvalidArgumentError(
        "the backup directory is inside the node's data directory (or holds it); choose a "
        "directory elsewhere, ideally on another disk");
  }
  std::error_code ec;
  if (!fs::is_directory(out.parent_path(), ec)) {
    return absl::FailedPreconditionError(
        "the backup directory's parent does not exist on the node's machine; create it first");
  }
  if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec))) {
    return absl::FailedPreconditionError(
        "the backup directory already exists and is not empty; a backup is never written over "
        "another: give a new directory");
  }
  return absl::OkStatus();
}

absl::Status BackupGate::TryEnter() {
  absl::MutexLock lock(&mu_);
  if (busy_) {
    return absl::FailedPreconditionError(
        "another backup of this node is being made; wait until it has finished, then try again");
  }
  busy_ = true;
  return absl::OkStatus();
}

void BackupGate::Leave() {
  absl::MutexLock lock(&mu_);
  busy_ = false;
}

void BackupGate::AwaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* busy) { return !*busy; }, &busy_));
}

absl::StatusOr<BackupManifest> WriteBackup(rocksdb::DB* db, rocksdb::DB* keystore,
                                           const std::string& out_dir, const v1::NodeConfig& config,
                                           absl::Time now, std::string* checkpoint_note) {
  if (auto st = CheckBackupTarget(out_dir, config.data_dir()); !st.ok()) return st;
  const fs::path out = Canonical(out_dir);
  std::error_code ec;
  const bool existed = fs::exists(out, ec);
  BackupManifest manifest;
  manifest.created_unix = absl::ToUnixSeconds(now);
  manifest.federation = config.federation();
  manifest.org = config.org();
  absl::Status st = WriteBackupFiles(db, keystore, out, &manifest, checkpoint_note);
  if (!st.ok()) {
    // Nothing half-written is left looking like a backup.
    for (const char* part : {"db", "keystore", kCheckpointNoteFile, kManifestFile}) {
      fs::remove_all(out / part, ec);
    }
    if (!existed) fs::remove(out, ec);
    return st;
  }
  return manifest;
}

namespace {

absl::Status CheckListedFiles(const fs::path& root, const BackupManifest& m) {
  auto files = ListFiles(root);
  if (!files.ok()) return files.status();
  std::vector<std::string> listed = {kManifestFile};
  for (const auto& f : m.files) listed.push_back(f.path);
  std::sort(listed.begin(), listed.end());
  if (*files != listed) {
    return absl::FailedPreconditionError(
        "the backup's files are not the ones its manifest lists (a file is missing or one was "
        "added); use a complete backup, as the node wrote it");
  }
  for (const auto& f : m.files) {
    uint64_t size = 0;
    auto sha = FileSha256Hex(root / f.path, &size);
    if (!sha.ok()) return sha.status();
    if (*sha != f.sha256_hex || size != f.size) {
      return absl::DataLossError(absl::StrCat(
          "the backup's file ", f.path,
          " differs from its manifest (changed or damaged since the backup); use another backup"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VerifiedBackup> VerifyBackup(const std::string& dir) {
  VerifiedBackup out;
  auto text = ReadFileToString((fs::path(dir) / kManifestFile).string());
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat(dir, " holds no ", kManifestFile,
                     ": it is not a complete backup (the manifest is written last)"));
  }
  out.manifest_text = *text;
  auto manifest = ParseManifest(*text);
  if (!manifest.ok()) return manifest.status();
  out.manifest = *std::move(manifest);
  if (out.manifest.data_format > kDataFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("the backup is in data format version ", out.manifest.data_format,
                     ", written by a newer corridord; this corridord reads up to version ",
                     kDataFormatVersion, ". Restore it with the newer corridord"));
  }
  if (auto st = CheckListedFiles(dir, out.manifest); !st.ok()) return st;
  auto note = ReadFileToString((fs::path(dir) / kCheckpointNoteFile).string());
  if (!note.ok()) return note.status();
  out.checkpoint_note = *note;
  return out;
}

namespace {

absl::Status CheckEmptyDataDir(const std::string& data_dir) {
  std::error_code ec;
  if (fs::exists(data_dir, ec) &&
      (!fs::is_directory(data_dir, ec) || !fs::is_empty(data_dir, ec))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data_dir ", data_dir,
        " is not empty; a restore never writes over a data directory: move it away first "
        "(e.g. mv ",
        data_dir, " ", data_dir, ".before-restore) and run the restore again"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> RestoreBackup(const std::string& backup_dir,
                                          const v1::NodeConfig& config) {
  auto backup = VerifyBackup(backup_dir);
  if (!backup.ok()) return backup.status();
  const BackupManifest& m = backup->manifest;
  if (m.federation != config.federation() || m.org != config.org()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the backup is of org \"", m.org, "\" in federation \"", m.federation,
        "\", not of this node (\"", config.org(), "\" in \"", config.federation(), "\")"));
  }
  if (auto st = CheckEmptyDataDir(config.data_dir()); !st.ok()) return st;
  const fs::path data = config.data_dir();
  std::error_code ec;
  fs::create_directories(data, ec);
  fs::permissions(data, fs::perms::owner_all, ec);
  for (const auto& f : m.files) {
    fs::path to;
    if (absl::StartsWith(f.path, "db/")) {
      to = data / f.path.substr(3);
    } else if (absl::StartsWith(f.path, "keystore/")) {
      to = data / f.path;
    } else {
      continue;
    }
    if (auto st = CopySynced(fs::path(backup_dir) / f.path, to); !st.ok()) return st;
  }
  if (auto st =
          WriteFileAtomically((data / kRestorePendingFile).string(), backup->manifest_text, 0600);
      !st.ok()) {
    return st;
  }
  for (const fs::path& d : {data / "keystore", data}) {
    if (auto st = SyncPath(d, true); !st.ok()) return st;
  }
  return absl::StrCat("restored the backup of ",
                      absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(m.created_unix),
                                       absl::UTCTimeZone()),
                      " (ledger size ", m.ledger_size, ", ", m.files.size(), " files) into ",
                      config.data_dir(),
                      "; start the node: it verifies the ledger and records the restore");
}

}  // namespace corridor
