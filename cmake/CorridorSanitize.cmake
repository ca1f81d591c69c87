# CORRIDOR_SANITIZE=thread|address builds everything with a sanitizer (thread: clang only;
# address: clang or gcc, and `make test-asan` uses gcc):
#   thread   ThreadSanitizer. Needs an abseil built with -fsanitize=thread in
#            CORRIDOR_TSAN_ABSEIL_DIR (deploy/build-tsan-abseil.sh); every executable finds
#            it ahead of the system's libabsl_*.so through a DT_RPATH, which, unlike
#            DT_RUNPATH, also applies to the libraries gRPC loads, so our code and gRPC use
#            one instrumented absl::Mutex.
#   address  AddressSanitizer + UndefinedBehaviorSanitizer; any UB report is fatal.
# Tests are run with ${CMAKE_BINARY_DIR}/ctest-sanitize, which sets the *SAN_OPTIONS
# (any report fails) and checks that no process, subprocesses included, reported anything.
set(CORRIDOR_SANITIZE "" CACHE STRING "Sanitizer build: thread, address (ASan+UBSan) or empty")
set_property(CACHE CORRIDOR_SANITIZE PROPERTY STRINGS "" thread address)

if(CORRIDOR_SANITIZE STREQUAL "")
  return()
endif()
if(NOT CORRIDOR_SANITIZE MATCHES "^(thread|address)$")
  message(FATAL_ERROR "CORRIDOR_SANITIZE must be thread or address, not '${CORRIDOR_SANITIZE}'")
endif()
if(CORRIDOR_SANITIZE STREQUAL "thread" AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CORRIDOR_SANITIZE=thread needs clang (the TSan abseil is built with it)")
endif()

set(CORRIDOR_SANITIZER_DIR "${PROJECT_SOURCE_DIR}/tests/sanitize")
if(CORRIDOR_SANITIZE STREQUAL "thread")
  set(CORRIDOR_TSAN_ABSEIL_DIR "${CMAKE_BINARY_DIR}/absl-tsan" CACHE PATH
      "abseil built with -fsanitize=thread (deploy/build-tsan-abseil.sh)")
  if(NOT EXISTS "${CORRIDOR_TSAN_ABSEIL_DIR}/lib/libabsl_synchronization.so.20220623")
    message(FATAL_ERROR "No TSan abseil in ${CORRIDOR_TSAN_ABSEIL_DIR}; run "
                        "deploy/build-tsan-abseil.sh ${CORRIDOR_TSAN_ABSEIL_DIR} (make test-sanitize does)")
  endif()
  set(sanitize_flags -fsanitize=thread)
  add_link_options(-Wl,--disable-new-dtags "-Wl,-rpath,${CORRIDOR_TSAN_ABSEIL_DIR}/lib")
  set(CORRIDOR_SANITIZER_ENV
      "TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=${CORRIDOR_SANITIZER_DIR}/tsan.supp")
else()
  set(sanitize_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined)
  # Allocation stacks use the fast unwinder: fast_unwind_on_malloc=0 (whole stacks through
  # Debian's libraries, built without frame pointers) made the suite several times slower
  # under ASan; set it by hand when a leak report needs attributing (docs/testing.md).
  set(CORRIDOR_SANITIZER_ENV
      "ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1"
      "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
endif()
add_compile_options(${sanitize_flags} -fno-omit-frame-pointer)
add_link_options(${sanitize_flags})

# ctest-sanitize: ctest with the sanitizer's options, every report written under
# sanitizer-reports/, and a failure if any process wrote one.
list(JOIN CORRIDOR_SANITIZER_ENV "\nexport " CORRIDOR_SANITIZER_EXPORTS)
configure_file(${PROJECT_SOURCE_DIR}/cmake/ctest-sanitize.in ${CMAKE_BINARY_DIR}/ctest-sanitize
               @ONLY FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
               GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
