#!/usr/bin/env bash
# Builds Debian's own abseil (the source package of the installed libabsl20220623, with
# Debian's patches) with -fsanitize=thread and installs its shared libraries into a
# directory of the TSan build tree.
#
# Why: Debian's libabsl_*.so are not instrumented, so ThreadSanitizer cannot see
# absl::Mutex, absl::CondVar or Mutex::Await, in our code or in gRPC (whose gpr_mu and
# grpc_core::Mutex are absl::Mutex), and reports thousands of false races. The TSan test
# run puts these libraries ahead of the system ones (LD_LIBRARY_PATH, set by CMake on
# every test), so our code and gRPC share one instrumented absl::Mutex.
#
# ABI: same source, same Debian patches (inline namespace `debian3`, ABSL_OPTION_HARDENED,
# absl::optional/string_view/any/variant as their own types, SONAME 20220623) and the same
# CMake options debian/rules passes (C++17, shared libraries; ABSL_PROPAGATE_CXX_STD left
# unset as Debian does). Only the compiler (clang, which TSan needs) and the flags differ.
#
# Usage: deploy/build-tsan-abseil.sh <install-dir>
# Idempotent: if <install-dir> already holds a build of the installed version with the
# same flags, does nothing. Needs a deb-src entry for bookworm and dpkg-dev
# (`deploy/setup.sh --sanitize` adds both). Downloads only the Debian source package.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 <install-dir>" >&2
  exit 2
fi
PREFIX="$(mkdir -p "$1" && cd "$1" && pwd)"
WORK="${PREFIX}.work"
JOBS="${JOBS:-$(nproc)}"

# The source package of the installed runtime, at exactly the installed version.
VERSION="$(dpkg-query -W -f='${source:Version}' libabsl20220623)"
SOURCE="$(dpkg-query -W -f='${source:Package}' libabsl20220623)"
FLAGS="-O2 -gline-tables-only -fsanitize=thread -fno-omit-frame-pointer"
STAMP_TEXT="${SOURCE} ${VERSION} clang ${FLAGS}"
STAMP="${PREFIX}/.corridor-tsan-abseil"

if [ -f "${STAMP}" ] && [ "$(cat "${STAMP}")" = "${STAMP_TEXT}" ]; then
  echo "tsan-abseil: ${PREFIX} already holds ${STAMP_TEXT}"
  exit 0
fi

echo "tsan-abseil: building ${SOURCE} ${VERSION} with -fsanitize=thread into ${PREFIX}"
start=$(date +%s)
rm -rf "${WORK}" "${PREFIX:?}"/*
mkdir -p "${WORK}"
cd "${WORK}"
if ! apt-get source -q --download-only "${SOURCE}=${VERSION}" >/dev/null; then
  echo "tsan-abseil: cannot download source package ${SOURCE}=${VERSION}." >&2
  echo "  Run 'deploy/setup.sh --sanitize' (adds a deb-src entry for bookworm), or upgrade" >&2
  echo "  libabsl20220623 if the mirror no longer carries this version." >&2
  exit 1
fi
# Unpack and apply Debian's patches (debian/patches/series).
dpkg-source --no-check -x ./*.dsc src >/dev/null

# The options debian/rules gives its shared build (see src/debian/rules), minus the tests.
cmake -S src -B build -G Ninja \
  -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_STANDARD=17 \
  -DBUILD_SHARED_LIBS=ON \
  -DBUILD_TESTING=OFF \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="${FLAGS}" -DCMAKE_CXX_FLAGS="${FLAGS}" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
  -DCMAKE_INSTALL_PREFIX="${PREFIX}" -DCMAKE_INSTALL_LIBDIR=lib >/dev/null
cmake --build build -j "${JOBS}"
cmake --install build >/dev/null

# Every SONAME the system provides must be here too, or a system library would be mixed in.
missing=0
for lib in /usr/lib/*-linux-gnu/libabsl_*.so.20220623; do
  if [ ! -e "${PREFIX}/lib/$(basename "${lib}")" ]; then
    echo "tsan-abseil: missing $(basename "${lib}")" >&2
    missing=1
  fi
done
[ "${missing}" -eq 0 ] || exit 1

rm -rf "${WORK}"
echo "${STAMP_TEXT}" >"${STAMP}"
echo "tsan-abseil: done in $(($(date +%s) - start)) s: $(ls "${PREFIX}"/lib/libabsl_*.so.20220623 | wc -l) libraries"
