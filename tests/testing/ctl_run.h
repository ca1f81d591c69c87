// corridorctl run in the test's process through ctl::Main, as the command line
// would run it, with its exit code and both streams. Test-only; thread-safe
// (each run has its own streams).
#ifndef CORRIDOR_TESTS_TESTING_CTL_RUN_H_
#define CORRIDOR_TESTS_TESTING_CTL_RUN_H_

#include <cstdlib>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "client/ctl/ctl.h"
#include "gtest/gtest.h"

namespace corridor::testing {

struct CtlRun {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::ostream& operator<<(std::ostream& os, const CtlRun& r) {
  return os << "exit " << r.code << "\nstdout:\n" << r.out << "stderr:\n" << r.err;
}

// Runs corridorctl with `argv` (without the program name).
inline CtlRun Ctl(const std::vector<std::string>& argv) {
  std::ostringstream out, err;
  CtlRun r;
  r.code = ctl::Main(argv, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// Unsets every environment variable corridorctl would take an option from
// (the node, the user's certificate, the roster, the stewards' keys), so a
// test's commands use only what the test gives them, never the environment
// of whoever runs it.
inline void ClearCtlEnvironment() {
  for (const char* v : {"CORRIDOR_NODE", "CORRIDOR_CERT", "CORRIDOR_KEY", "CORRIDOR_CA",
                        "CORRIDOR_ROSTER", "CORRIDOR_STEWARDS"}) {
    unsetenv(v);
  }
}

// What a person must never be shown: status codes and C++ names instead of
// words. Expects `message` to be non-empty and free of them.
inline void ExpectWords(const std::string& message) {
  EXPECT_FALSE(message.empty());
  for (const char* jargon : {"INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED",
                             "StatusCode", "absl::", "grpc::", "std::"}) {
    EXPECT_FALSE(absl::StrContains(message, jargon)) << jargon << " in: " << message;
  }
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_CTL_RUN_H_
