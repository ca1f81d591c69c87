// Test helpers for absl::Status / absl::StatusOr.
#ifndef CORRIDOR_TESTS_TESTING_STATUS_MATCHERS_H_
#define CORRIDOR_TESTS_TESTING_STATUS_MATCHERS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace corridor::testing {
inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace corridor::testing

#define CORRIDOR_CONCAT_INNER_(a, b) a##b
#define CORRIDOR_CONCAT_(a, b) CORRIDOR_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr)                                               \
  do {                                                                \
    const absl::Status _ok_st = ::corridor::testing::GetStatus(expr); \
    ASSERT_TRUE(_ok_st.ok()) << _ok_st;                               \
  } while (0)
#define EXPECT_OK(expr)                                               \
  do {                                                                \
    const absl::Status _ok_st = ::corridor::testing::GetStatus(expr); \
    EXPECT_TRUE(_ok_st.ok()) << _ok_st;                               \
  } while (0)

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(CORRIDOR_CONCAT_(_status_or_, __LINE__), lhs, rexpr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();       \
  lhs = std::move(statusor).value()

// Asserts that `expr` failed with `code` and that its message contains `substr`.
#define EXPECT_STATUS(expr, want_code, want_substr)                                    \
  do {                                                                                 \
    const absl::Status _st = ::corridor::testing::GetStatus(expr);                     \
    EXPECT_EQ(_st.code(), want_code) << _st;                                           \
    EXPECT_NE(std::string(_st.message()).find(want_substr), std::string::npos) << _st; \
  } while (0)

#endif  // CORRIDOR_TESTS_TESTING_STATUS_MATCHERS_H_
