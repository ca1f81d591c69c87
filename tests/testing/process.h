// Running corridord and corridorctl as real processes from tests.
// Test-only; not thread-safe.
#ifndef CORRIDOR_TESTS_TESTING_PROCESS_H_
#define CORRIDOR_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace corridor::testing {

// Path of a built binary (corridord, corridorctl).
std::string BinaryPath(const std::string& name);

struct CommandResult {
  int exit_code = -1;  // -1 if it did not exit normally
  std::string out;
  std::string err;
};

// Runs a command to completion (killed after `timeout`), capturing its output.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(60));

// A background process whose stderr goes to a file. The destructor kills it.
class Subprocess {
 public:
  Subprocess(const std::vector<std::string>& argv, const std::string& log_path);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig` and waits up to `timeout` for exit; returns the exit code, or
  // 128+signal if killed by a signal, or -1 if it had to be SIGKILLed.
  int Stop(int sig, absl::Duration timeout = absl::Seconds(15));
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::string log_path_;
};

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_PROCESS_H_
