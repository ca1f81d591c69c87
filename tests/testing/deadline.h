// Deadlines for tests that wait on real work (RPCs, uploads, nodes starting), scaled
// for sanitizer builds. Test-only; thread-safe.
//
// A ThreadSanitizer build runs Corridor 5-15 times slower than the optimised build
// (every memory access is checked; corridord and corridorctl are TSan builds too), so
// a deadline sized for `make test` can expire under `make test-tsan` although nothing
// is wrong. ScaledDeadline() multiplies a deadline by DeadlineScale():
//   - 4 in a ThreadSanitizer build (detected at compile time, -fsanitize=thread),
//   - 1 otherwise (the optimised and the ASan+UBSan builds keep their deadlines),
//   - or the value of CORRIDOR_TEST_DEADLINE_SCALE (a number >= 1), if set, for a
//     slower machine.
// Only deadlines that bound waiting are scaled; no test checks that something is fast.
#ifndef CORRIDOR_TESTS_TESTING_DEADLINE_H_
#define CORRIDOR_TESTS_TESTING_DEADLINE_H_

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"

namespace corridor::testing {

inline double DeadlineScale() {
  static const double scale = [] {
    double v = 0;
    if (const char* env = std::getenv("CORRIDOR_TEST_DEADLINE_SCALE");
        env != nullptr && absl::SimpleAtod(env, &v) && v >= 1) {
      return v;
    }
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
    return 4.0;
#endif
#endif
    return 1.0;
  }();
  return scale;
}

inline absl::Duration ScaledDeadline(absl::Duration d) { return d * DeadlineScale(); }

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_DEADLINE_H_
