#include "tests/testing/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <thread>

#include "absl/time/clock.h"
#include "ledger/crypto/crypto.h"

namespace corridor::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    // Nothing else of the test's crosses: above all not ctest's output pipe, which a
    // child left running (a node outliving a test that died) would otherwise hold open,
    // so that ctest waits for it until the test's timeout instead of reporting the death.
    close_range(3, ~0U, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for `pid` until `deadline`; true if it exited.
bool WaitUntil(pid_t pid, absl::Time deadline, int* status) {
  while (true) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string BinaryPath(const std::string& name) {
  return std::string(CORRIDOR_BIN_DIR) + "/" + name;
}

CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout) {
  char out_tmpl[] = "/tmp/corridor-out-XXXXXX";
  char err_tmpl[] = "/tmp/corridor-err-XXXXXX";
  int out_fd = mkstemp(out_tmpl);
  int err_fd = mkstemp(err_tmpl);
  pid_t pid = Spawn(argv, out_fd, err_fd);
  CommandResult result;
  int status = 0;
  if (WaitUntil(pid, absl::Now() + timeout, &status)) {
    result.exit_code = DecodeStatus(status);
  } else {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  close(out_fd);
  close(err_fd);
  result.out = ReadFileToString(out_tmpl).value_or("");
  result.err = ReadFileToString(err_tmpl).value_or("");
  unlink(out_tmpl);
  unlink(err_tmpl);
  return result;
}

Subprocess::Subprocess(const std::vector<std::string>& argv, const std::string& log_path)
    : log_path_(log_path) {
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_ = Spawn(argv, fd, fd);
  close(fd);
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exited_) Stop(SIGKILL, absl::Seconds(5));
}

bool Subprocess::running() {
  if (exited_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
  return !exited_;
}

int Subprocess::Stop(int sig, absl::Duration timeout) {
  if (!exited_) {
    kill(pid_, sig);
    if (!WaitUntil(pid_, absl::Now() + timeout, &status_)) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
      exited_ = true;
      return -1;
    }
    exited_ = true;
  }
  return DecodeStatus(status_);
}

std::string Subprocess::Log() const { return ReadFileToString(log_path_).value_or(""); }

}  // namespace corridor::testing
