#include "ledger/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace corridor {
namespace {

std::function<void(const std::string&)>& SyncObserver() {
  static auto* const observer = new std::function<void(const std::string&)>;
  return *observer;
}

absl::Status ErrnoError(const std::string& path, absl::string_view step, int err) {
  const std::string msg = absl::StrCat(path, ": ", step, ": ", strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM || err == EROFS) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

// The directory holding `path` ("." for a bare file name).
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// fsync(fd) retrying on EINTR; 0 or the errno.
int SyncFd(int fd) {
  while (fsync(fd) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    if (err == EACCES)
      return absl::PermissionDeniedError(absl::StrCat(path, ": permission denied"));
    return absl::InternalError(absl::StrCat(path, ": cannot open: ", strerror(err)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat(path, ": read failed"));
  return ss.str();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, int mode) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", counter++);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError(path, "cannot create a file beside it", errno);
  auto fail = [&](absl::string_view step, int err) {
    close(fd);
    unlink(tmp.c_str());
    return ErrnoError(path, step, err);
  };
  for (size_t off = 0; off < data.size();) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write failed", errno);
    }
    off += static_cast<size_t>(n);
  }
  if (int err = SyncFd(fd); err != 0) return fail("fsync failed", err);
  if (SyncObserver()) SyncObserver()(tmp);
  if (close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(path, "close failed", err);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(path, "rename failed", err);
  }
  // The rename is in the directory: sync it, or a power cut may undo it.
  const std::string dir = DirectoryOf(path);
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err = dir_fd < 0 ? errno : SyncFd(dir_fd);
  if (dir_fd >= 0) close(dir_fd);
  if (err != 0) {
    return absl::InternalError(absl::StrCat(path,
                                            ": written, but its directory could not be synced (",
                                            strerror(err), "): a power cut may undo the write"));
  }
  if (SyncObserver()) SyncObserver()(dir);
  return absl::OkStatus();
}

void SetSyncObserverForTesting(std::function<void(const std::string& synced)> observer) {
  SyncObserver() = std::move(observer);
}

}  // namespace corridor
