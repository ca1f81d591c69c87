// Executor: a fixed pool of threads that runs posted tasks, so that work
// which follows a durable ledger commit (answering the call, building a
// proof or an export, signing, compacting) never runs on the ledger's
// sequencer thread, which must stay free to commit the next group.
//
// Tasks run in no particular order across threads. Thread-safe.
#ifndef CORRIDOR_SERVER_COMMON_EXECUTOR_H_
#define CORRIDOR_SERVER_COMMON_EXECUTOR_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace corridor {

class Executor {
 public:
  // Starts `threads` (at least 1) worker threads named for logs by `name`.
  Executor(std::string name, int threads);
  // Runs every task already posted, then joins the threads.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. After the destructor has begun, tasks run on the caller's
  // thread instead, so a late completion is never lost.
  void Post(std::function<void()> task);

  // Tasks queued but not started (for tests and metrics).
  size_t queued() const;

 private:
  void Work();
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !tasks_.empty();
  }

  const std::string name_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_COMMON_EXECUTOR_H_
