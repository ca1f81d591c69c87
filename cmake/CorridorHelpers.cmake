# corridor_cc_test(NAME <name> SRCS <files...> DEPS <libs...> [LABELS <labels...>]
#                  [TIMEOUT <seconds>] [RUN_SERIAL])
# Builds one GoogleTest binary and registers every test in it with ctest, labelled
# LABELS, or `unit` when none is given.
# RUN_SERIAL: ctest runs its tests alone (a test that loads every core).
function(corridor_cc_test)
  cmake_parse_arguments(T "RUN_SERIAL" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SRCS})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} corridor_testing
                        GTest::gmock GTest::gtest GTest::gtest_main)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(props TIMEOUT ${T_TIMEOUT})
  if(NOT T_LABELS)
    set(T_LABELS unit)  # tests beside the code: `ctest -L unit`
  endif()
  list(APPEND props LABELS "${T_LABELS}")
  if(T_RUN_SERIAL)
    list(APPEND props RUN_SERIAL TRUE)
  endif()
  # corridorctl's audit commands keep the auditor's saved checkpoints
  # (client/ctl/audit_state.h): never in the real home directory from a test.
  # Tests that check checkpoints give --state DIR of their own.
  list(APPEND props ENVIRONMENT
       "CORRIDOR_AUDIT_STATE=${CMAKE_BINARY_DIR}/test-audit-state/${T_NAME}")
  gtest_discover_tests(${T_NAME}
    DISCOVERY_TIMEOUT 60
    PROPERTIES ${props})
  # Tests that start corridord / corridorctl find them here, and test data in the source tree.
  target_compile_definitions(${T_NAME} PRIVATE
    CORRIDOR_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
    CORRIDOR_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endfunction()
include(GoogleTest)
