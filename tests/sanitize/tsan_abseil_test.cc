// Checks, in the ThreadSanitizer build only, that TSan sees abseil's synchronisation.
//
// Debian's libabsl_*.so are not instrumented: with them, TSan does not see absl::Mutex,
// CondVar or Await and reports every access they guard as a race. The TSan build links
// against an abseil built with -fsanitize=thread (deploy/build-tsan-abseil.sh) and finds
// it first through a DT_RPATH. If that ever stops being so, the tests below fail: the
// first directly, the others because TSan reports a race (and ctest-sanitize fails on
// any report).
#include <link.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace corridor {
namespace {

std::vector<std::string> LoadedAbseilLibraries() {
  std::vector<std::string> paths;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        std::string path = info->dlpi_name ? info->dlpi_name : "";
        if (path.find("/libabsl_") != std::string::npos) {
          static_cast<std::vector<std::string>*>(data)->push_back(path);
        }
        return 0;
      },
      &paths);
  return paths;
}

TEST(TsanAbseil, EveryLoadedAbseilLibraryIsTheInstrumentedBuild) {
  // Referencing gRPC makes sure its own abseil dependencies are loaded too.
  grpc::ChannelArguments args;
  args.SetInt("corridor.unused", 1);
  std::vector<std::string> loaded = LoadedAbseilLibraries();
  EXPECT_THAT(loaded, testing::Contains(testing::HasSubstr("libabsl_synchronization.so")));
  for (const std::string& path : loaded) {
    EXPECT_THAT(path, testing::StartsWith(CORRIDOR_TSAN_ABSEIL_DIR "/lib/"));
  }
}

TEST(TsanAbseil, MutexOrdersAccesses) {
  absl::Mutex mu;
  int counter = 0;  // Guarded by mu; TSan reports a race if it cannot see mu.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        absl::MutexLock lock(&mu);
        ++counter;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(counter, 4000);
}

TEST(TsanAbseil, AwaitAndCondVarOrderAccesses) {
  absl::Mutex mu;
  absl::CondVar cv;
  std::string message;  // Written before `ready`, read after it, without mu held.
  bool ready = false;
  bool taken = false;
  std::thread producer([&] {
    message = "hello";
    absl::MutexLock lock(&mu);
    ready = true;
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&ready));
  }
  EXPECT_EQ(message, "hello");
  std::thread consumer([&] {
    absl::MutexLock lock(&mu);
    while (!taken) cv.Wait(&mu);
    message += " again";
  });
  {
    absl::MutexLock lock(&mu);
    taken = true;
    cv.Signal();
  }
  consumer.join();
  producer.join();
  EXPECT_EQ(message, "hello again");
}

TEST(TsanAbseil, NotificationOrdersAccesses) {
  absl::Notification done;
  int value = 0;
  std::thread worker([&] {
    value = 42;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(value, 42);
  worker.join();
}

}  // namespace
}  // namespace corridor
