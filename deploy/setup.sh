#!/usr/bin/env bash
# Installs the Debian bookworm packages Corridor needs to build, test and run.
# Idempotent: installs only what is missing, and says what it is doing.
# Nothing but Debian packages is downloaded.
#
# --sanitize: also what `make test-sanitize` needs to build abseil with -fsanitize=thread
# from Debian's source package: dpkg-dev, and a deb-src entry for the bookworm suites this
# machine already uses (same mirror), in /etc/apt/sources.list.d/corridor-deb-src.sources.
set -euo pipefail

SANITIZE=0
case "${1:-}" in
  "") ;;
  --sanitize) SANITIZE=1 ;;
  *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
esac

PACKAGES=(
  # toolchain
  clang g++ cmake ninja-build make pkg-config ccache clang-format
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssl-dev librocksdb-dev libabsl-dev libyaml-cpp-dev
  # sd_notify: corridord tells systemd when it serves (deploy/systemd/)
  libsystemd-dev
  # the Prometheus metrics endpoint (server/node/metrics_endpoint.*): an embedded HTTP server
  libmicrohttpd-dev
  # keys in an HSM: the PKCS#11 header (p11-kit's pkcs11.h; the module is loaded with dlopen),
  # and SoftHSM2, the software token hsm_test signs through (docs/operations.md)
  libp11-kit-dev softhsm2
  # tests and benchmarks (iproute2: the multi-host test's network namespaces)
  libgtest-dev libgmock-dev libbenchmark-dev iproute2
  # libFuzzer and sanitizer runtimes for clang
  libclang-rt-14-dev
)
if [ "$SANITIZE" -eq 1 ]; then
  # apt-get source and dpkg-source, for deploy/build-tsan-abseil.sh
  PACKAGES+=(dpkg-dev)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi
need_root() {
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "setup: not root and no sudo; please run as root: $0 $*" >&2
    exit 1
  fi
}
export DEBIAN_FRONTEND=noninteractive

# Source entries for the Debian bookworm suites apt already fetches binaries from, on the
# same mirror, so that `apt-get source` finds the installed abseil's source package.
DEB_SRC_LIST=/etc/apt/sources.list.d/corridor-deb-src.sources
add_deb_src() {
  local entries
  entries="$(apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' |
    awk '$1 == "deb" && $3 ~ /^bookworm(-updates|-security)?$/ { print $2, $3 }' | sort -u)"
  if [ -z "$entries" ]; then
    echo "setup: apt has no Debian bookworm suite configured; cannot add deb-src entries" >&2
    exit 1
  fi
  echo "setup: adding deb-src entries for: $(echo "$entries" | tr '\n' ' ')"
  {
    echo "# Added by Corridor's deploy/setup.sh --sanitize: Debian source packages, for"
    echo "# deploy/build-tsan-abseil.sh. Same mirror and suites as the binary entries."
    echo "$entries" | while read -r uri suite; do
      printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' "$uri" "$suite"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n'
    done
  } | $SUDO tee "$DEB_SRC_LIST" >/dev/null
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} required Debian packages are installed."
else
  echo "setup: installing ${#missing[@]} missing Debian package(s): ${missing[*]}"
  need_root
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "$SANITIZE" -eq 1 ] && ! apt-cache showsrc abseil 2>/dev/null | grep -q '^Package: abseil'; then
  need_root --sanitize
  add_deb_src
  $SUDO apt-get update -q
fi
echo "setup: done."
