// Helpers shared by the ledger tests: a fake clock, temp directories, and
// the RFC 9162 reference tree hash computed straight from the definition.
#ifndef CORRIDOR_LEDGER_TESTING_LEDGER_TEST_UTIL_H_
#define CORRIDOR_LEDGER_TESTING_LEDGER_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "ledger/merkle.h"

namespace corridor::ledger::testing {

// A clock that moves only when told to. Thread-safe.
class FakeClock {
 public:
  absl::Time Now() const {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  std::function<absl::Time()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1790000000);
};

// A fresh directory under the test temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = absl::StrCat(::testing::TempDir(), "/ledger_test_", getpid(), "_", counter++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// MTH(D[lo:hi]) straight from RFC 9162 §2.1.1.
inline merkle::Hash ReferenceRoot(const std::vector<std::string>& entries, uint64_t lo,
                                  uint64_t hi) {
  if (hi == lo) return merkle::EmptyRoot();
  if (hi - lo == 1) return merkle::HashLeaf(entries[lo]);
  uint64_t k = 1;
  while (k * 2 < hi - lo) k *= 2;
  return merkle::HashChildren(ReferenceRoot(entries, lo, lo + k),
                              ReferenceRoot(entries, lo + k, hi));
}

}  // namespace corridor::ledger::testing

#endif  // CORRIDOR_LEDGER_TESTING_LEDGER_TEST_UTIL_H_
