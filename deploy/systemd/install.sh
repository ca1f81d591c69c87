#!/usr/bin/env bash
# Installs corridord as a systemd service on a Debian bookworm machine, from a build of
# this repository (`make build`, or `make test`). Run as root from the repository's top:
#
#   sudo deploy/systemd/install.sh            # binaries, user, directories, unit; does not start
#
# What it does (each step is safe to repeat; nothing existing is overwritten but the
# binaries, the unit and the documentation):
#   1. the runtime libraries corridord links, from Debian (apt-get, only if missing);
#   2. /usr/local/bin/corridord and /usr/local/bin/corridorctl from build/bin/;
#   3. the system user and group "corridor" (no login shell, no home of its own);
#   4. /etc/corridor (root:corridor, 0750) for node.yaml, certificates and keys;
#      /var/lib/corridor is made by systemd (StateDirectory=) when the service starts;
#   5. /etc/systemd/system/corridord.service, then `systemctl daemon-reload`;
#   6. the operator's documentation in /usr/local/share/doc/corridor/.
# It does not write a node config or keys and does not start the node: docs/operations.md,
# "Install", says what to put in /etc/corridor and how to start it.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=${CORRIDOR_BUILD_DIR:-build}
PREFIX=/usr/local
# The libraries corridord and corridorctl load at run time (Debian bookworm package names,
# the same list as deploy/container/Dockerfile's; tests/deploy_files_test.cc checks both
# against the shared libraries the built binaries load).
RUNTIME_PACKAGES=(
  libgrpc++1.51 libgrpc29 libprotobuf32 librocksdb7.8 libssl3 libabsl20220623
  libyaml-cpp0.7 libsystemd0 libc-ares2 libre2-9 libgflags2.2 libsnappy1v5 liblz4-1
  libzstd1 libbz2-1.0 zlib1g liblzma5 libcap2 libgcrypt20 libgpg-error0 libstdc++6
  libgcc-s1 libc6 ca-certificates
  libmicrohttpd12 libgnutls30 libp11-kit0 libidn2-0 libunistring2 libtasn1-6 libnettle8
  libhogweed6 libgmp10 libffi8
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install: please run as root (sudo $0)" >&2
  exit 1
fi
for b in corridord corridorctl; do
  if [ ! -x "$BUILD/bin/$b" ]; then
    echo "install: $BUILD/bin/$b is missing; build first with 'make build'" >&2
    exit 1
  fi
done

missing=()
for p in "${RUNTIME_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

install -m 0755 "$BUILD/bin/corridord" "$BUILD/bin/corridorctl" "$PREFIX/bin/"
echo "install: $PREFIX/bin/corridord and $PREFIX/bin/corridorctl"

if ! getent passwd corridor >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/corridor --no-create-home \
    --shell /usr/sbin/nologin --comment "Corridor node" corridor
  echo "install: created system user corridor"
fi

install -d -m 0750 -o root -g corridor /etc/corridor
echo "install: /etc/corridor (root:corridor, 0750) for node.yaml, certificates and keys"

install -m 0644 deploy/systemd/corridord.service /etc/systemd/system/corridord.service
install -d -m 0755 "$PREFIX/share/doc/corridor"
install -m 0644 docs/*.md "$PREFIX/share/doc/corridor/"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "install: /etc/systemd/system/corridord.service installed (not started)"
else
  echo "install: /etc/systemd/system/corridord.service installed; systemd is not running here," \
    "so run 'systemctl daemon-reload' on the machine that runs the node"
fi
echo "install: next, docs/operations.md, \"Configure\": put node.yaml and its files in /etc/corridor,"
echo "         then: systemctl enable --now corridord && journalctl -u corridord -f"
